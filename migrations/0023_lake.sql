-- The Parquet lake (src/lake/): committed ingest batches archived in segments of whole
-- batches, each table's rows of a segment as one Parquet file per day
-- (`table=<t>/date=<YYYY-MM-DD>/batches-<first>-<last>.parquet`) with a manifest
-- (`manifests/batches-<first>-<last>.json`). A segment's batches are chosen here before
-- a file is written, so a run that crashes is resumed with the same files.
CREATE TABLE lake_segments (
    first_batch BIGINT PRIMARY KEY,
    last_batch BIGINT NOT NULL,
    lake VARCHAR NOT NULL,                  -- where (a directory or URL, never a credential)
    planned_at TIMESTAMPTZ NOT NULL,
    manifest VARCHAR,                       -- its path in the lake, once written
    manifest_sha256 VARCHAR,
    files INTEGER,
    rows BIGINT,
    bytes BIGINT,
    verified_at TIMESTAMPTZ                 -- read back: every batch's digests match ingest_chain
);

-- Each file of a verified segment, so readers find a table's days without listing the lake.
CREATE TABLE lake_files (
    first_batch BIGINT NOT NULL,            -- lake_segments
    path VARCHAR NOT NULL,                  -- relative to the lake
    table_name VARCHAR NOT NULL,
    day DATE NOT NULL,
    rows BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    sha256 VARCHAR NOT NULL,
    PRIMARY KEY (path)
);

-- Retention: a table's rows of one batch of a verified segment deleted from this file, in
-- the same transaction as the delete. They are answered from the lake from then on.
CREATE TABLE lake_evictions (
    batch_id BIGINT NOT NULL,
    table_name VARCHAR NOT NULL,
    first_batch BIGINT NOT NULL,            -- its lake_segments row
    rows BIGINT NOT NULL,
    first_day DATE NOT NULL,                -- the days of the rows (as in the files' date=)
    last_day DATE NOT NULL,
    evicted_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (batch_id, table_name)
);
