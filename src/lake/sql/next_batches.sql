-- The committed batches after the last segment (planned or archived) that detection has
-- absorbed (so the rows typed from them are all there), with their row counts, in order.
SELECT b.batch_id, b.cosmos_rows + b.signin_rows + b.raw_rows + b.quarantined_rows AS rows
FROM ingest_batches b
WHERE b.batch_id > coalesce((SELECT max(last_batch) FROM lake_segments), -1)
  AND b.batch_id <= coalesce((SELECT absorbed_batch FROM detection_state WHERE id = 1), -1)
ORDER BY b.batch_id
