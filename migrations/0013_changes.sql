-- Control-plane and directory changes: the Azure Activity log and Entra ID AuditLogs,
-- typed. Both arrive like every other record and are stored whole in `raw_events` (chained,
-- exactly once); `src/rules/changes.rs` types each one, in the transaction that absorbs its
-- batch, into the tables below, which point back at their raw row (`raw_row`, the
-- `raw_events` rowid: append-only, so stable). Dispatch is on the record's shape, not only
-- its category: the Activity log's top-level `category` is Write, Delete or Action.
-- Names are compared lower-cased: Azure sends them in any case.

-- One row per Activity log event. An operation is usually two events with one
-- correlation id: `Start` (carrying the request body) and `Success` or `Failure`.
CREATE TABLE control_changes (
    time TIMESTAMPTZ NOT NULL,
    kind VARCHAR NOT NULL,                  -- list_keys, read_only_keys, list_connection_strings, regenerate_key,
                                            -- data_role_assignment_write|delete, data_role_definition_write|delete,
                                            -- role_assignment_write|delete, account_write, account_delete,
                                            -- diagnostic_setting_write|delete, other
    operation VARCHAR NOT NULL,             -- operationName, lower case
    result VARCHAR,                         -- resultType: Start, Accept, Success, Failure
    status VARCHAR,                         -- properties.statusCode (or resultSignature)
    subscription_id VARCHAR,
    resource_group VARCHAR,                 -- lower case
    account VARCHAR,                        -- Cosmos DB account, lower case, when the resource is one or under one
    resource_id VARCHAR NOT NULL,           -- lower case
    caller_id VARCHAR,                      -- object id of the caller (claims oid), lower case
    caller_app_id VARCHAR,                  -- the application the caller used (claims appid)
    caller_name VARCHAR,                    -- upn, else name, else the caller field
    caller_ip VARCHAR,
    target_principal_id VARCHAR,            -- role assignments: who was granted
    target_principal_type VARCHAR,          -- User, Group, ServicePrincipal (Azure role assignments)
    role_definition_id VARCHAR,             -- the role's GUID, lower case
    scope VARCHAR,                          -- role assignments: where the role applies, lower case
    disable_local_auth BOOLEAN,             -- account writes: the requested value
    public_network_access VARCHAR,          -- account writes
    disabled_logs VARCHAR[],                -- diagnostic settings writes: log categories set to enabled = false
    correlation_id VARCHAR,
    event_category VARCHAR,                 -- properties.eventCategory (Administrative, ...)
    category VARCHAR,                       -- the record's category as sent (Write, Delete, Action)
    raw_row BIGINT NOT NULL,                -- raw_events.rowid of the record
    batch_id BIGINT NOT NULL
);

-- One row per Entra ID audit record.
CREATE TABLE directory_changes (
    time TIMESTAMPTZ NOT NULL,              -- properties.activityDateTime, else time
    kind VARCHAR NOT NULL,                  -- group_member_added, group_member_removed, app_role_assigned,
                                            -- app_role_removed, sp_credentials_changed, app_credentials_changed,
                                            -- consent, other
    operation VARCHAR NOT NULL,             -- operationName as sent ("Add member to group")
    audit_category VARCHAR,                 -- properties.category (GroupManagement, ...)
    result VARCHAR,                         -- properties.result, lower case
    tenant_id VARCHAR,
    actor_id VARCHAR,                       -- initiatedBy.user.id, else initiatedBy.app.servicePrincipalId
    actor_kind VARCHAR,                     -- user or app
    actor_name VARCHAR,                     -- userPrincipalName, else displayName
    actor_ip VARCHAR,
    target_id VARCHAR,                      -- the first target (the member, the service principal, the application)
    target_type VARCHAR,                    -- User, Group, ServicePrincipal, Application, ...
    target_name VARCHAR,
    target_app_id VARCHAR,                  -- additionalDetails AppId, or the target's appId
    group_id VARCHAR,                       -- group membership: the group
    modified JSON,                          -- every target's modifiedProperties, old and new values decoded
    correlation_id VARCHAR,
    raw_row BIGINT NOT NULL,
    batch_id BIGINT NOT NULL
);

-- Whether a change succeeded: the Activity log's final event, or an audit record's result.
CREATE MACRO change_succeeded(result) AS lower(coalesce(result, '')) IN ('success', 'succeeded');

-- One row per Activity log operation that finished: its final event (Success, Failure, ...),
-- with what only its Start event carries (the request body: who was granted which role
-- where, the account's new settings) filled in from the events of its correlation id.
CREATE VIEW control_operations AS
WITH bodies AS (
    SELECT
        correlation_id, operation,
        any_value(target_principal_id) AS target_principal_id,
        any_value(target_principal_type) AS target_principal_type,
        any_value(role_definition_id) AS role_definition_id,
        any_value(scope) AS scope,
        any_value(disable_local_auth) AS disable_local_auth,
        any_value(public_network_access) AS public_network_access,
        any_value(disabled_logs) AS disabled_logs
    FROM control_changes
    WHERE correlation_id IS NOT NULL
    GROUP BY correlation_id, operation
)
SELECT
    e.rowid AS change_row, e.time, e.kind, e.operation, e.result, change_succeeded(e.result) AS succeeded,
    e.status, e.subscription_id, e.resource_group, e.account, e.resource_id,
    e.caller_id, e.caller_app_id, e.caller_name, e.caller_ip,
    coalesce(e.target_principal_id, b.target_principal_id) AS target_principal_id,
    coalesce(e.target_principal_type, b.target_principal_type) AS target_principal_type,
    coalesce(e.role_definition_id, b.role_definition_id) AS role_definition_id,
    coalesce(e.scope, b.scope) AS scope,
    coalesce(e.disable_local_auth, b.disable_local_auth) AS disable_local_auth,
    coalesce(e.public_network_access, b.public_network_access) AS public_network_access,
    coalesce(e.disabled_logs, b.disabled_logs) AS disabled_logs,
    e.correlation_id, e.raw_row
FROM control_changes e
LEFT JOIN bodies b ON b.correlation_id = e.correlation_id AND b.operation = e.operation
WHERE lower(coalesce(e.result, '')) NOT IN ('start', 'accept', 'started', 'accepted');

-- Who changed what, both logs in one shape: a principal's page lists the changes it made
-- (`actor_id`) and the changes made to it (`target_id`).
CREATE VIEW identity_changes AS
SELECT
    'control_changes' AS source, change_row, time, kind, operation, result, succeeded,
    caller_id AS actor_id, caller_name AS actor_name, caller_ip AS actor_ip,
    target_principal_id AS target_id, coalesce(account, resource_id) AS target_name,
    role_definition_id AS role, scope, raw_row
FROM control_operations
WHERE kind <> 'other'
UNION ALL
SELECT
    'directory_changes', rowid, time, kind, operation, result, change_succeeded(result),
    actor_id, actor_name, actor_ip, target_id, coalesce(target_name, target_type), group_id, NULL, raw_row
FROM directory_changes;

-- The built-in roles that read Cosmos DB data or its keys, by GUID: data-plane roles
-- (kind 'data') and Azure roles that carry listKeys or readonlykeys (kind 'keys').
CREATE TABLE cosmos_roles (
    role_definition_id VARCHAR PRIMARY KEY,
    role_name VARCHAR NOT NULL,
    kind VARCHAR NOT NULL
);
INSERT INTO cosmos_roles VALUES
    ('00000000-0000-0000-0000-000000000001', 'Cosmos DB Built-in Data Reader', 'data'),
    ('00000000-0000-0000-0000-000000000002', 'Cosmos DB Built-in Data Contributor', 'data'),
    ('8e3af657-a8ff-443c-a75c-2fe8c4bcb635', 'Owner', 'keys'),
    ('b24988ac-6180-42a0-ab88-20f7382dd24c', 'Contributor', 'keys'),
    ('5bd9cd88-fe45-4216-938b-f97437e15450', 'DocumentDB Account Contributor', 'keys'),
    ('fbdf93bf-df7d-467e-a4d2-9458aa1360c8', 'Cosmos DB Account Reader Role', 'keys');
