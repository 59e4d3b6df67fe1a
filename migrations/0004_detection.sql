-- Detection: what the rule engine (src/rules) derives from committed ingest batches, and
-- the findings it raises. Rules in queries/ read these tables as well as the public ones.
--
-- The derived tables absorb every ingest batch exactly once, in batch order, in one
-- transaction with `detection_state.absorbed_batch`. Their aggregates (sums, minima,
-- maxima) do not depend on the order the data arrived in, so history replayed from
-- files gives the same tables as live traffic.

CREATE TABLE detection_state (
    id INTEGER PRIMARY KEY,                 -- always 1
    absorbed_batch BIGINT NOT NULL,         -- every ingest batch up to this one is absorbed
    absorbed_at TIMESTAMPTZ                 -- wall clock of the last absorb
);
INSERT INTO detection_state VALUES (1, 0, NULL);

-- request_context, materialised for requests with a principal (same column meanings).
-- Kept current as batches are absorbed; requests after a late sign-in are recomputed.
CREATE TABLE request_signins (
    request_row BIGINT NOT NULL,            -- cosmos_requests.rowid
    time TIMESTAMPTZ NOT NULL,
    principal_id VARCHAR NOT NULL,
    account VARCHAR,
    client_ip VARCHAR,
    operation VARCHAR,
    status_code INTEGER,
    signin_row BIGINT,                      -- signins.rowid
    signin_id VARCHAR,
    signin_time TIMESTAMPTZ,
    signin_kind VARCHAR,
    signin_ip VARCHAR,
    signin_country VARCHAR,
    signin_city VARCHAR,
    signin_app_id VARCHAR,
    signin_app_name VARCHAR,
    signin_risk_level VARCHAR,
    signin_risk_level_aggregated VARCHAR,
    signin_risk_state VARCHAR,
    signin_ca_status VARCHAR,
    signin_resource_id VARCHAR,
    signin_resource_name VARCHAR,
    ip_signin_time TIMESTAMPTZ              -- latest sign-in from client_ip in the 7 days before, or NULL
);

-- Events per stream per hour: a stream is a Cosmos DB account (cosmos:<account>), a
-- sign-in log (signins:<category>) or another category (raw:<category>).
CREATE TABLE stream_hours (
    stream VARCHAR NOT NULL,
    hour TIMESTAMPTZ NOT NULL,
    events BIGINT NOT NULL,
    first_time TIMESTAMPTZ NOT NULL,
    first_row BIGINT,                       -- rowid of the first event (in cosmos_requests, signins or raw_events)
    last_time TIMESTAMPTZ NOT NULL,
    last_row BIGINT,
    PRIMARY KEY (stream, hour)
);

-- What each subject did per hour. A subject is a principal id, or for key-based requests
-- `key:<account>/<client ip>` (see the request_subject macro).
CREATE TABLE activity_hours (
    subject VARCHAR NOT NULL,
    hour TIMESTAMPTZ NOT NULL,
    requests BIGINT NOT NULL,
    read_requests BIGINT NOT NULL,          -- Read, Query, ReadFeed
    read_bytes BIGINT NOT NULL,             -- response bytes of those
    deletes BIGINT NOT NULL,
    denied BIGINT NOT NULL,                 -- status 403
    metadata_requests BIGINT NOT NULL,      -- on Database or Collection resources
    signins BIGINT NOT NULL,
    failed_signins BIGINT NOT NULL,
    first_request_time TIMESTAMPTZ,
    first_request_row BIGINT,               -- cosmos_requests.rowid
    PRIMARY KEY (subject, hour)
);

-- When a subject first (and last) showed a value. Facets:
--   collection  principal, 'account/database/collection' it sent a request to (cosmos_requests)
--   user_agent  principal, user_agent_family of its requests                 (cosmos_requests)
--   key_client  account, client IP of key-based requests                     (cosmos_requests)
--   data        principal, ''  its requests                                  (cosmos_requests)
--   country     principal, country of its successful sign-ins                (signins)
--   signin      principal, ''  its successful sign-ins                       (signins)
CREATE TABLE first_seen (
    subject VARCHAR NOT NULL,
    facet VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    first_time TIMESTAMPTZ NOT NULL,
    first_row BIGINT,                       -- rowid of the first event
    last_time TIMESTAMPTZ NOT NULL,
    events BIGINT NOT NULL,
    PRIMARY KEY (subject, facet, value)
);

-- Every address seen in cosmos_requests.client_ip or signins.ip_address, as 32 hex digits
-- of its 128-bit value (IPv4 as ::ffff:a.b.c.d) so CIDR ranges compare as text.
CREATE TABLE ip_addresses (
    ip VARCHAR PRIMARY KEY,
    version INTEGER,                        -- 4 or 6; NULL if it is not an address
    ip_hex VARCHAR
);

-- Address lists: `trusted` (configuration) and `threat_intel` (files in the threat
-- intelligence folder), loaded by the engine when it starts.
CREATE TABLE network_lists (
    list VARCHAR NOT NULL,
    source VARCHAR NOT NULL,                -- the file (or `config`)
    entry VARCHAR NOT NULL,                 -- as written: an address or a CIDR range
    lo_hex VARCHAR NOT NULL,
    hi_hex VARCHAR NOT NULL
);

-- The event-time clock of the data: rules use it, never the wall clock.
CREATE VIEW data_clock AS
SELECT
    min(first_time) AS history_start,
    max(last_time) AS history_end,
    max(last_time) FILTER (WHERE stream LIKE 'signins:%') AS signins_until,
    max(last_time) FILTER (WHERE stream LIKE 'cosmos:%') AS requests_until
FROM stream_hours;

-- What each rule was last evaluated with; a changed rule (text, parameters, lists) is
-- evaluated again over all history.
CREATE TABLE rule_state (
    rule_id VARCHAR PRIMARY KEY,
    definition VARCHAR NOT NULL,            -- hash of what the rule's results depend on
    evaluated_at TIMESTAMPTZ NOT NULL
);

CREATE SEQUENCE finding_ids START 1;

-- One row per incident: a rule, a principal (or none) and an entity key. Events that
-- match again update it; they do not raise another.
CREATE TABLE findings (
    id BIGINT PRIMARY KEY DEFAULT nextval('finding_ids'),
    fingerprint VARCHAR NOT NULL UNIQUE,    -- md5 of rule, principal and entity
    rule_id VARCHAR NOT NULL,
    title VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,              -- low, medium, high, critical
    principal_id VARCHAR,                   -- NULL when no principal is behind it (keys, sprays, streams)
    entity VARCHAR NOT NULL,                -- the rest of the incident key: ip=..., account=..., stream=...
    first_seen TIMESTAMPTZ NOT NULL,        -- event time of the earliest evidence
    last_seen TIMESTAMPTZ NOT NULL,         -- event time of the latest evidence (or the end of a gap)
    count BIGINT NOT NULL,                  -- evidence events
    evidence STRUCT("table" VARCHAR, row_id BIGINT)[] NOT NULL, -- the first 1,000 by time; all in finding_evidence
    summary VARCHAR,                        -- the rule's detail for the latest evidence
    status VARCHAR NOT NULL,                -- open, acknowledged, resolved, suppressed, withdrawn
    status_by VARCHAR,
    status_at TIMESTAMPTZ,
    status_comment VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,        -- wall clock
    updated_at TIMESTAMPTZ NOT NULL         -- wall clock
);

-- Every evidence event of every finding.
CREATE TABLE finding_evidence (
    fingerprint VARCHAR NOT NULL,
    rule_id VARCHAR NOT NULL,
    evidence_table VARCHAR NOT NULL,        -- cosmos_requests, signins, raw_events
    row_id BIGINT,                          -- rowid in that table
    time TIMESTAMPTZ NOT NULL,              -- event time
    end_time TIMESTAMPTZ,                   -- for evidence that spans time (a gap)
    principal_id VARCHAR,
    entity VARCHAR NOT NULL,
    detail VARCHAR
);

-- Every status change, by people and by TokenTrail (raised, withdrawn, reopened).
CREATE TABLE finding_history (
    finding_id BIGINT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,        -- wall clock
    changed_by VARCHAR NOT NULL,            -- who; `tokentrail` for the engine
    from_status VARCHAR,
    to_status VARCHAR NOT NULL,
    comment VARCHAR
);
