-- The lake's journal (src/lake/journal.rs): the append-chained access_log and
-- finding_history archived by whole links of append_chain
-- (`table=<t>/date=<YYYY-MM-DD>/links-<first>-<last>.parquet`, manifest
-- `manifests/<t>-links-<first>-<last>.json`), and snapshots of findings (mutable: their
-- history is the chained finding_history). These rows stay in the database too: nothing
-- here is evicted.

-- Links of one table archived together. Chosen here before a file is written, so a run
-- that crashes is finished with the same files.
CREATE TABLE lake_links (
    table_name VARCHAR NOT NULL,            -- access_log, finding_history
    first_link BIGINT NOT NULL,             -- append_chain.link
    last_link BIGINT NOT NULL,
    first_id BIGINT NOT NULL,               -- the rows: ids first_id..last_id
    last_id BIGINT NOT NULL,
    lake VARCHAR NOT NULL,                  -- where (a directory or URL, never a credential)
    planned_at TIMESTAMPTZ NOT NULL,
    manifest VARCHAR,                       -- its path in the lake, once written
    manifest_sha256 VARCHAR,
    files INTEGER,
    rows BIGINT,
    bytes BIGINT,
    archived_at TIMESTAMPTZ,                -- read back: every link's rows_digest recomputed and matched
    PRIMARY KEY (table_name, first_link)
);

-- Each file of archived links (lake_files is keyed by ingest batches, which retention reads).
CREATE TABLE lake_link_files (
    table_name VARCHAR NOT NULL,
    first_link BIGINT NOT NULL,             -- lake_links
    path VARCHAR NOT NULL,                  -- relative to the lake
    day DATE NOT NULL,
    rows BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    sha256 VARCHAR NOT NULL,
    PRIMARY KEY (path)
);

-- A snapshot of every row of findings as of an archive run (taken when findings changed
-- since the last one), one file, planned here before it is written.
CREATE TABLE lake_snapshots (
    snapshot BIGINT PRIMARY KEY,            -- 1, 2, ...
    table_name VARCHAR NOT NULL,            -- findings
    path VARCHAR NOT NULL,                  -- relative to the lake
    lake VARCHAR NOT NULL,
    planned_at TIMESTAMPTZ NOT NULL,        -- the run that took it
    manifest VARCHAR,
    manifest_sha256 VARCHAR,
    rows BIGINT,
    bytes BIGINT,
    sha256 VARCHAR,
    archived_at TIMESTAMPTZ                 -- read back and matched
);
