-- Where each Cosmos DB request and sign-in came from, and a digest of its bytes, so that an
-- auditor can trace a row (an evidence sample) to the original log record: the same
-- position raw_events and quarantine keep, and the SHA-256 of the record's own bytes exactly
-- as received (for an envelope, the record's span inside it; for a bare record, its line
-- without the line break and surrounding blanks). The batch is not enough to name the
-- source: one commit of a directory ingest holds several files. Rows stored before this
-- migration keep NULLs (the integrity chain leaves NULL columns out, so their digests hold).
ALTER TABLE cosmos_requests ADD COLUMN source VARCHAR;          -- file path as given to ingest, or eventhubs:<namespace>/<hub>
ALTER TABLE cosmos_requests ADD COLUMN line BIGINT;             -- line in the file (1-based)
ALTER TABLE cosmos_requests ADD COLUMN record_index INTEGER;    -- position in its {"records":[...]} envelope (0-based)
ALTER TABLE cosmos_requests ADD COLUMN partition VARCHAR;       -- Event Hubs partition
ALTER TABLE cosmos_requests ADD COLUMN sequence_number BIGINT;  -- Event Hubs sequence number
ALTER TABLE cosmos_requests ADD COLUMN record_sha256 BLOB USING COMPRESSION uncompressed; -- SHA-256 of the record's bytes as received (random: compression only spends time)

ALTER TABLE signins ADD COLUMN source VARCHAR;
ALTER TABLE signins ADD COLUMN line BIGINT;
ALTER TABLE signins ADD COLUMN record_index INTEGER;
ALTER TABLE signins ADD COLUMN partition VARCHAR;
ALTER TABLE signins ADD COLUMN sequence_number BIGINT;
ALTER TABLE signins ADD COLUMN record_sha256 BLOB USING COMPRESSION uncompressed;

-- A stable id for an event, from where it came from:
--   <file>:<line>[#<record_index>]                       a line of a file
--   <eventhubs:namespace/hub>/<partition>@<sequence>[#<record_index>]   an Event Hubs event
--   <table> batch <batch_id> row <rowid>                 rows without a position (stored
--                                                        before migration 17, or generated)
CREATE MACRO record_event_id(tbl, source, line, record_index, partition, sequence_number, batch_id, row_id) AS
    CASE
        WHEN line IS NOT NULL THEN source || ':' || line::VARCHAR
        WHEN sequence_number IS NOT NULL THEN source || '/' || coalesce(partition, '') || '@' || sequence_number::VARCHAR
        ELSE tbl || ' batch ' || batch_id::VARCHAR || ' row ' || row_id::VARCHAR
    END || CASE WHEN (line IS NOT NULL OR sequence_number IS NOT NULL) AND record_index IS NOT NULL
        THEN '#' || record_index::VARCHAR ELSE '' END;
