-- Tamper evidence: every committed ingest batch is chained. `Writer::commit` stores the
-- batch's digests in the same transaction as its rows (src/evidence/chain.rs):
--   rows_digest   SHA-256 over the batch's ingest_batches row and, per public table, the
--                 row count and the sorted SHA-256 of each row's canonical encoding
--   chain_digest  SHA-256 over the previous batch's chain_digest, batch_id and rows_digest
-- `tokentrail verify` recomputes both from the stored rows; evidence packs carry the head.
CREATE TABLE ingest_chain (
    batch_id BIGINT PRIMARY KEY,            -- ingest_batches.batch_id
    version INTEGER NOT NULL,               -- canonical encoding version (1)
    cosmos_digest VARCHAR NOT NULL,         -- hex SHA-256 of the batch's cosmos_requests rows
    signin_digest VARCHAR NOT NULL,
    raw_digest VARCHAR NOT NULL,
    quarantine_digest VARCHAR NOT NULL,
    rows_digest VARCHAR NOT NULL,
    chain_digest VARCHAR NOT NULL
);

-- Where each source stood after each batch (checkpoints keeps only the latest), so an
-- evidence pack can state the partitions, sequence numbers and file offsets it covers.
CREATE TABLE ingest_positions (
    batch_id BIGINT NOT NULL,
    source_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    byte_offset BIGINT,
    line BIGINT,
    sequence_number BIGINT,
    event_time TIMESTAMPTZ,
    PRIMARY KEY (batch_id, source_id)
);
