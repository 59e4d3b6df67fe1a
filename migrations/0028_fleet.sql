-- Rules over everyone's counts (src/rules/fleet.rs). Instances sharing balanced hubs each
-- store part of a principal's requests: Azure spreads them over every partition. Each
-- segment an instance puts in the shared lake (migration 26) carries its partial
-- aggregates: its requests' activity_hours and first_seen rows. Every instance loads every
-- segment's partials once, so any instance can take the rules lease and judge the
-- principals over everyone's counts; the holder reads the rows behind a finding from the
-- segments' files, and keeps a copy of those it names as evidence.

-- What a claim says beyond its events: when its rows are, and its files (JSON), so that
-- a reader of a period finds its segments without reading every claim again.
ALTER TABLE hub_segments ADD COLUMN first_time TIMESTAMPTZ;
ALTER TABLE hub_segments ADD COLUMN last_time TIMESTAMPTZ;
ALTER TABLE hub_segments ADD COLUMN files VARCHAR;
-- Its partials are in fleet_activity and fleet_first_seen (loaded in the same transaction).
ALTER TABLE hub_segments ADD COLUMN partials_loaded BOOLEAN DEFAULT false;
-- Its requests are in fleet_requests (the rules lease holder's rows of recent days).
ALTER TABLE hub_segments ADD COLUMN rows_loaded BOOLEAN DEFAULT false;

-- activity_hours' request columns over every instance's segments.
CREATE TABLE fleet_activity (
    subject VARCHAR NOT NULL,
    hour TIMESTAMPTZ NOT NULL,
    requests BIGINT NOT NULL,
    read_requests BIGINT NOT NULL,
    read_bytes BIGINT NOT NULL,
    deletes BIGINT NOT NULL,
    denied BIGINT NOT NULL,
    metadata_requests BIGINT NOT NULL,
    first_request_time TIMESTAMPTZ,
    first_request_row BIGINT,               -- fleet row id (fleet_requests.fleet_id)
    PRIMARY KEY (subject, hour)
);

-- first_seen's request facets (collection, user_agent, key_client, data) over every
-- instance's segments.
CREATE TABLE fleet_first_seen (
    subject VARCHAR NOT NULL,
    facet VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    first_time TIMESTAMPTZ NOT NULL,
    first_row BIGINT,                       -- fleet row id of the first event
    last_time TIMESTAMPTZ NOT NULL,
    events BIGINT NOT NULL,
    PRIMARY KEY (subject, facet, value)
);

-- Every instance's requests as the rules lease holder reads them, copied from the shared
-- lake's segments: those of the rules' recent periods (dropped after two days), and for
-- good those a finding names (`kept`), so its evidence stays readable here whoever stored
-- it. fleet_id is the row's id across instances (a hash of its event position: source,
-- partition, sequence number, record index).
CREATE TABLE fleet_requests AS SELECT * FROM cosmos_requests LIMIT 0;
ALTER TABLE fleet_requests ADD COLUMN fleet_id BIGINT;
ALTER TABLE fleet_requests ADD COLUMN copied_at TIMESTAMPTZ;
ALTER TABLE fleet_requests ADD COLUMN kept BOOLEAN DEFAULT false;

-- A request's id across instances: a hash of its event position, the same on every
-- instance that stored it (63 bits, so it is a BIGINT).
CREATE MACRO fleet_row_id(source, partition, sequence_number, record_index) AS
    (hash(source, partition, sequence_number, record_index) >> 1)::BIGINT;
