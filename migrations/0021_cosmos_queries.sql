-- Cosmos DB `QueryRuntimeStatistics` and `ControlPlaneRequests`, typed. Both arrive like
-- every other record and are stored whole in `raw_events` (chained, exactly once);
-- `src/rules/cosmos_logs.rs` types each one in the transaction that absorbs its batch, as
-- migration 13's changes are, each row pointing back at its raw row (`raw_row`).
-- Names and ids are compared lower-cased: Azure sends them in any case.

-- One row per QueryRuntimeStatistics record: a query's text (obfuscated by Cosmos DB unless
-- the account enabled full-text query logging), joined to its data-plane request by activity id.
CREATE TABLE cosmos_queries (
    time TIMESTAMPTZ NOT NULL,
    account VARCHAR,                        -- lower case
    subscription_id VARCHAR,                -- lower case
    resource_group VARCHAR,                 -- lower case
    database_name VARCHAR,
    collection_name VARCHAR,
    activity_id VARCHAR,                    -- lower case; cosmos_requests.activity_id of its request
    correlated_activity_id VARCHAR,         -- lower case; the executions of one query share it
    partition_key_range_id VARCHAR,
    query_text VARCHAR,                     -- the query (from {"query":..., "parameters":...} when so sent)
    parameters JSON,                        -- the parameters the query text carried, if any
    raw_row BIGINT NOT NULL,                -- raw_events.rowid of the record
    batch_id BIGINT NOT NULL
);

-- One row per ControlPlaneRequests record: what was changed on an account through Azure
-- Resource Manager, with the settings that matter for security it carried.
CREATE TABLE cosmos_control_requests (
    time TIMESTAMPTZ NOT NULL,
    kind VARCHAR NOT NULL,                  -- key_rotation, account_create, account_update, account_delete,
                                            -- network_update, region_failover, role_assignment, role_definition,
                                            -- diagnostic_settings, resource_create|update|delete, other
    operation VARCHAR NOT NULL,             -- operationName as sent (SqlContainersUpdate, AccountUpdateStart, ...)
    operation_type VARCHAR,
    account VARCHAR,                        -- lower case
    subscription_id VARCHAR,
    resource_group VARCHAR,
    api_kind VARCHAR,                       -- Sql, MongoDB, Cassandra, Gremlin, Table
    resource_type VARCHAR,                  -- ApiKindResourceType: Database, Container, ...
    resource_uri VARCHAR,
    resource_details VARCHAR,               -- ResourceDetails as sent: the request body
    activity_id VARCHAR,                    -- lower case
    http_method VARCHAR,
    http_status INTEGER,
    result VARCHAR,
    caller_id VARCHAR,                      -- the caller's object id, when the record names one
    caller_ip VARCHAR,
    role_assignment_principal_id VARCHAR,   -- role assignments: who was granted
    role_definition_id VARCHAR,
    public_network_access VARCHAR,          -- Enabled, Disabled, SecuredByPerimeter
    ip_rules VARCHAR,                       -- IpRangeFilter / ipRules, comma-separated
    virtual_network_filter BOOLEAN,
    disable_local_auth BOOLEAN,
    disable_key_based_metadata_write_access BOOLEAN,
    key_kind VARCHAR,                       -- key rotations: primary, secondary, primaryReadonly, secondaryReadonly
    full_text_query BOOLEAN,                -- whether full-text query logging is (being) enabled
    raw_row BIGINT NOT NULL,
    batch_id BIGINT NOT NULL
);

-- Each query beside its data-plane request (same activity id) and the sign-in that issued the
-- request's token: who sent this query text, from where, after which sign-in.
CREATE VIEW cosmos_query_requests AS
SELECT
    q.rowid AS query_row, q.time, q.account, q.database_name, q.collection_name, q.activity_id,
    q.partition_key_range_id, q.query_text, q.parameters, q.raw_row,
    r.rowid AS request_row, r.time AS request_time, r.operation, r.status_code, r.principal_id,
    r.client_ip, r.user_agent, r.auth_token_type, r.request_charge, r.response_length,
    s.signin_row, s.signin_id, s.signin_time, s.signin_ip, s.signin_country, s.signin_risk_level, s.signin_app_name
FROM cosmos_queries q
LEFT JOIN cosmos_requests r ON lower(r.activity_id) = q.activity_id
LEFT JOIN request_signins s ON s.request_row = r.rowid;
