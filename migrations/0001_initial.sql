-- The public tables: what rules, the UI and users' own SQL read.
-- Names marked STABLE are a promise to users; keep them.
-- Every `time` is TIMESTAMPTZ in UTC. Empty ids on the wire are stored as NULL.

-- One row per Cosmos DB data-plane request (category DataPlaneRequests).
CREATE TABLE cosmos_requests (
    time TIMESTAMPTZ NOT NULL,              -- STABLE
    account VARCHAR,                        -- Cosmos DB account name, lower case
    subscription_id VARCHAR,
    resource_group VARCHAR,
    region VARCHAR,
    operation VARCHAR,                      -- STABLE: Read, Query, ReadFeed, Create, Upsert, Delete, ...
    status_code INTEGER,                    -- STABLE
    duration_ms DOUBLE,
    request_charge DOUBLE,                  -- request units
    request_length BIGINT,                  -- STABLE: bytes
    response_length BIGINT,                 -- STABLE: bytes
    client_ip VARCHAR,                      -- STABLE
    user_agent VARCHAR,                     -- STABLE
    principal_id VARCHAR,                   -- STABLE: Entra object id (aadPrincipalId); NULL for key or resource-token auth
    role_assignment_id VARCHAR,             -- Cosmos DB RBAC role assignment that allowed it
    auth_token_type VARCHAR,                -- STABLE: AADToken, PrimaryMasterKey, ResourceToken, ...
    key_type VARCHAR,
    connection_mode VARCHAR,                -- Gateway or Direct
    database_name VARCHAR,                  -- STABLE
    collection_name VARCHAR,                -- STABLE
    request_resource_type VARCHAR,
    request_resource_id VARCHAR,
    partition_id VARCHAR,
    activity_id VARCHAR,
    resource_token_permission_id VARCHAR,
    resource_token_permission_mode VARCHAR,
    resource_token_user_rid VARCHAR,
    level VARCHAR,
    batch_id BIGINT NOT NULL                -- the ingest batch that stored it (ingest_batches)
);

-- One row per Entra ID sign-in, all four logs.
CREATE TABLE signins (
    time TIMESTAMPTZ NOT NULL,              -- STABLE: properties.createdDateTime (else time)
    kind VARCHAR NOT NULL,                  -- STABLE: user_interactive, user_noninteractive, service_principal, managed_identity
    category VARCHAR NOT NULL,              -- the log it came from, as sent
    signin_id VARCHAR,                      -- properties.id
    tenant_id VARCHAR,
    principal_id VARCHAR,                   -- STABLE: userId for users, servicePrincipalId otherwise (= Cosmos aadPrincipalId)
    principal_name VARCHAR,                 -- UPN for users, service principal name otherwise
    user_display_name VARCHAR,
    app_id VARCHAR,
    app_display_name VARCHAR,
    ip_address VARCHAR,                     -- STABLE: NULL for managed identities
    country VARCHAR,                        -- STABLE: ISO country code
    state VARCHAR,
    city VARCHAR,
    latitude DOUBLE,
    longitude DOUBLE,
    autonomous_system_number BIGINT,
    error_code INTEGER,                     -- STABLE: 0 is success
    failure_reason VARCHAR,
    risk_level VARCHAR,                     -- STABLE: riskLevelDuringSignIn (none, low, medium, high, hidden)
    risk_level_aggregated VARCHAR,
    risk_state VARCHAR,
    risk_detail VARCHAR,
    risk_event_types VARCHAR[],
    conditional_access_status VARCHAR,
    is_interactive BOOLEAN,
    resource_id VARCHAR,                    -- the resource (app id) the token is for
    resource_display_name VARCHAR,
    resource_tenant_id VARCHAR,
    home_tenant_id VARCHAR,
    authentication_requirement VARCHAR,
    client_app_used VARCHAR,
    user_agent VARCHAR,
    device_os VARCHAR,
    device_browser VARCHAR,
    unique_token_identifier VARCHAR,
    incoming_token_type VARCHAR,
    authentication_protocol VARCHAR,
    credential_key_id VARCHAR,
    cross_tenant_access_type VARCHAR,
    user_type VARCHAR,
    correlation_id VARCHAR,
    log_time TIMESTAMPTZ,                   -- the record's top-level time
    batch_id BIGINT NOT NULL
);

-- Records of every other category (QueryRuntimeStatistics, AuditLogs, ...), kept whole.
CREATE TABLE raw_events (
    time TIMESTAMPTZ,                       -- STABLE: the record's time, NULL if it has none we can read
    category VARCHAR NOT NULL,              -- STABLE
    source VARCHAR NOT NULL,                -- file path, or namespace/hub
    line BIGINT,                            -- line in the file
    record_index INTEGER,                   -- position in its {"records":[...]} envelope
    partition VARCHAR,                      -- Event Hubs partition
    sequence_number BIGINT,                 -- Event Hubs sequence number
    record JSON NOT NULL,
    batch_id BIGINT NOT NULL
);

-- Records that could not be read: their bytes, why, and where they came from.
CREATE TABLE quarantine (
    time TIMESTAMPTZ NOT NULL,              -- STABLE: when it was quarantined
    reason VARCHAR NOT NULL,
    category VARCHAR,                       -- if it could be read
    source VARCHAR NOT NULL,
    line BIGINT,
    record_index INTEGER,
    partition VARCHAR,
    sequence_number BIGINT,
    raw BLOB NOT NULL,                      -- the bytes as received (first 1 MiB if truncated)
    raw_size BIGINT NOT NULL,
    truncated BOOLEAN NOT NULL,
    batch_id BIGINT NOT NULL
);

-- One row per committed ingest transaction.
CREATE TABLE ingest_batches (
    batch_id BIGINT PRIMARY KEY,
    committed_at TIMESTAMPTZ NOT NULL,
    source_id VARCHAR NOT NULL,
    position VARCHAR NOT NULL,              -- where the source stood after this batch, readable
    cosmos_rows BIGINT NOT NULL,
    signin_rows BIGINT NOT NULL,
    raw_rows BIGINT NOT NULL,
    quarantined_rows BIGINT NOT NULL
);

-- Where each source stands; written in the same transaction as the rows it produced.
CREATE TABLE checkpoints (
    source_id VARCHAR PRIMARY KEY,          -- file:<path>, generator:<seed>, eventhubs:<ns>/<hub>/<group>/<partition>
    kind VARCHAR NOT NULL,                  -- file, generator, eventhubs
    byte_offset BIGINT,                     -- files: bytes of the (decompressed) file consumed
    line BIGINT,                            -- files: lines consumed
    fingerprint VARCHAR,                    -- files: xxh3-128 of the consumed bytes
    complete BOOLEAN NOT NULL,              -- files: read to the end
    sequence_number BIGINT,                 -- Event Hubs
    event_offset VARCHAR,                   -- Event Hubs
    event_time TIMESTAMPTZ,                 -- generator: generated up to; Event Hubs: enqueued time
    updated_at TIMESTAMPTZ NOT NULL,
    batch_id BIGINT NOT NULL
);
