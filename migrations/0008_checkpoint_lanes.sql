-- Two ingest writers ("lanes", src/store/mod.rs) store alternate batches with their
-- transactions open at once, committing in batch order. Both would replace a source's
-- one row in `checkpoints`, and two open transactions replacing the same row conflict.
-- So each source keeps a row per lane (batch_id % 2): a batch replaces only its own
-- lane's row, which the batch two before it wrote and committed. `checkpoints` is now a
-- view of the latest of a source's rows, with the columns it had (`ingest_status`, which
-- reads it, is bound when queried, so it reads the view from now on).
CREATE TABLE source_checkpoints (
    source_id VARCHAR NOT NULL,             -- file:<path>, generator:<seed>, eventhubs:<ns>/<hub>/<group>/<partition>
    lane TINYINT NOT NULL,                  -- batch_id % 2
    kind VARCHAR NOT NULL,                  -- file, generator, eventhubs
    byte_offset BIGINT,                     -- files: bytes of the (decompressed) file consumed
    line BIGINT,                            -- files: lines consumed
    fingerprint VARCHAR,                    -- files: xxh3-128 of the consumed bytes
    complete BOOLEAN NOT NULL,              -- files: read to the end
    sequence_number BIGINT,                 -- Event Hubs
    event_offset VARCHAR,                   -- Event Hubs
    event_time TIMESTAMPTZ,                 -- generator: generated up to; Event Hubs: enqueued time
    updated_at TIMESTAMPTZ NOT NULL,
    batch_id BIGINT NOT NULL,
    PRIMARY KEY (source_id, lane)
);

INSERT INTO source_checkpoints
SELECT source_id, batch_id % 2, kind, byte_offset, line, fingerprint, complete, sequence_number,
       event_offset, event_time, updated_at, batch_id
FROM checkpoints;

DROP TABLE checkpoints;

-- Where each source stands: its row of the latest committed batch.
CREATE VIEW checkpoints AS
SELECT source_id, kind, byte_offset, line, fingerprint, complete, sequence_number, event_offset,
       event_time, updated_at, batch_id
FROM source_checkpoints
QUALIFY row_number() OVER (PARTITION BY source_id ORDER BY batch_id DESC) = 1;
