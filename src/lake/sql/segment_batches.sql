-- A segment's batches with their chain digests (none for a batch from before migration 7).
SELECT b.batch_id, epoch_us(b.committed_at), b.source_id, b.position,
       b.cosmos_rows, b.signin_rows, b.raw_rows, b.quarantined_rows,
       c.version, c.cosmos_digest, c.signin_digest, c.raw_digest, c.quarantine_digest, c.rows_digest, c.chain_digest
FROM ingest_batches b LEFT JOIN ingest_chain c USING (batch_id)
WHERE b.batch_id BETWEEN ? AND ?
ORDER BY b.batch_id
