-- The HTTP API: its self-audit trail and the SQL console's saved queries.

-- Every API call and UI action, one row each, written by the service (src/api/audit.rs)
-- after the response status is known. No endpoint changes or deletes these rows.
CREATE SEQUENCE access_log_id;
CREATE TABLE access_log (
    id BIGINT PRIMARY KEY DEFAULT nextval('access_log_id'),
    time TIMESTAMPTZ NOT NULL,
    oid VARCHAR,                 -- the caller's object id (NULL when not authenticated)
    tid VARCHAR,                 -- the caller's tenant id
    name VARCHAR,                -- display name at the time (informational; oid + tid identify)
    role VARCHAR,                -- the role that granted the call
    method VARCHAR NOT NULL,
    endpoint VARCHAR NOT NULL,   -- the route template, e.g. /api/findings/{id}
    path VARCHAR NOT NULL,       -- the path as requested
    parameters JSON,             -- query string parameters and, for SQL, the statement
    status INTEGER NOT NULL,     -- HTTP status returned
    rows BIGINT,                 -- rows returned, when the endpoint returns rows
    duration_ms DOUBLE NOT NULL,
    client_ip VARCHAR,
    user_agent VARCHAR,
    auth VARCHAR                 -- bearer | session | none | development
);

CREATE SEQUENCE saved_query_id;
CREATE TABLE saved_queries (
    id BIGINT PRIMARY KEY DEFAULT nextval('saved_query_id'),
    name VARCHAR NOT NULL,
    sql VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_by_oid VARCHAR NOT NULL,
    created_by_tid VARCHAR NOT NULL,
    created_by_name VARCHAR
);
