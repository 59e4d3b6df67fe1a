-- Inventory: what each identity MAY do in Cosmos DB, with history. `src/inventory/` reads
-- it from Azure Resource Manager (or from `az` output files) as snapshots; each snapshot is
-- one `inventory_runs` row and, in the same transaction, the changes it saw:
--   * a current row (valid_to IS NULL) the snapshot no longer contains gets valid_to = the
--     snapshot's time; a changed one is closed and a new version opened;
--   * an unchanged row is left alone (its valid_from is when it was first seen);
--   * rows of what the snapshot did not read (a subscription that answered 403, an
--     account whose lists were not in the files) stay as they were: unknown is not removed.
-- Names and ids are lower case (Azure sends them in any case). `run_id` is the run that
-- opened the row. At time T the rows in force are
--   valid_from <= T AND (valid_to IS NULL OR valid_to > T).

CREATE TABLE inventory_runs (
    run_id BIGINT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,        -- the snapshot's time: valid_from / valid_to of what it changed
    finished_at TIMESTAMPTZ NOT NULL,
    origin VARCHAR NOT NULL,                -- 'arm' (Azure Resource Manager) or 'file' (az output)
    subscriptions_ok INTEGER NOT NULL,      -- subscriptions (or files) read whole
    subscriptions_failed INTEGER NOT NULL,  -- subscriptions not read (denied, throttled out, refused nextLink)
    problems JSON                           -- [{"subscription_id", "status", "message"}]
);

-- Cosmos DB accounts and their settings that decide who gets in.
CREATE TABLE cosmos_accounts (
    account VARCHAR NOT NULL,               -- account name, lower case
    resource_id VARCHAR NOT NULL,           -- ARM id, lower case
    subscription_id VARCHAR NOT NULL,
    resource_group VARCHAR,                 -- lower case
    location VARCHAR,
    disable_local_auth BOOLEAN,             -- true: account keys and resource tokens refused
    public_network_access VARCHAR,          -- Enabled, Disabled, SecuredByPerimeter
    ip_rules VARCHAR[],                     -- ipRules[].ipAddressOrRange, sorted
    virtual_network_rules VARCHAR[],        -- virtualNetworkRules[].id, lower case, sorted
    disable_key_based_metadata_write_access BOOLEAN,
    valid_from TIMESTAMPTZ NOT NULL,
    valid_to TIMESTAMPTZ,
    run_id BIGINT NOT NULL
);

-- Cosmos DB data-plane role definitions (built-in and custom), per account.
CREATE TABLE data_role_definitions (
    role_definition_id VARCHAR NOT NULL,    -- the GUID, lower case
    account VARCHAR NOT NULL,
    subscription_id VARCHAR NOT NULL,
    resource_id VARCHAR NOT NULL,           -- the definition's ARM id, lower case
    role_name VARCHAR,
    role_type VARCHAR,                      -- BuiltInRole or CustomRole
    assignable_scopes VARCHAR[],            -- lower case
    data_actions VARCHAR[],                 -- as defined, wildcards (*) included
    not_data_actions VARCHAR[],
    valid_from TIMESTAMPTZ NOT NULL,
    valid_to TIMESTAMPTZ,
    run_id BIGINT NOT NULL
);

-- Cosmos DB data-plane role assignments: principal × role × scope (the account, a
-- database or a container, as a full ARM path). A principal may be a group: it is
-- recorded as the group's object id (expanding it needs Microsoft Graph).
CREATE TABLE data_role_assignments (
    assignment_id VARCHAR NOT NULL,         -- ARM id, lower case
    account VARCHAR NOT NULL,
    subscription_id VARCHAR NOT NULL,
    principal_id VARCHAR NOT NULL,          -- object id, lower case
    role_definition_id VARCHAR NOT NULL,    -- the GUID, lower case
    scope VARCHAR NOT NULL,                 -- ARM path, lower case
    valid_from TIMESTAMPTZ NOT NULL,
    valid_to TIMESTAMPTZ,
    run_id BIGINT NOT NULL
);

-- Azure (control-plane) role assignments on a subscription, a resource group holding an
-- account, or an account or below: who may list the keys, change the account or its roles.
CREATE TABLE azure_role_assignments (
    assignment_id VARCHAR NOT NULL,         -- ARM id, lower case
    subscription_id VARCHAR NOT NULL,
    principal_id VARCHAR NOT NULL,          -- object id, lower case
    principal_type VARCHAR,                 -- User, Group, ServicePrincipal, ForeignGroup, Device
    role_definition_id VARCHAR NOT NULL,    -- the GUID, lower case
    role_name VARCHAR,                      -- when known (the built-ins, or as `az` printed it)
    scope VARCHAR NOT NULL,                 -- lower case
    valid_from TIMESTAMPTZ NOT NULL,
    valid_to TIMESTAMPTZ,
    run_id BIGINT NOT NULL
);

-- Whether a data action is granted by a role's data actions minus its not-data actions,
-- with `*` as a wildcard (`.../containers/*` grants `.../containers/items/read`); names
-- compared in lower case.
CREATE MACRO data_action_allowed(data_actions, not_data_actions, action) AS
    EXISTS (SELECT 1 FROM unnest(coalesce(data_actions, []::VARCHAR[])) AS g(p) WHERE lower(action) GLOB lower(g.p))
    AND NOT EXISTS (
        SELECT 1 FROM unnest(coalesce(not_data_actions, []::VARCHAR[])) AS n(p) WHERE lower(action) GLOB lower(n.p)
    );

-- Whether a role assigned at `scope` applies to `path` (a scope applies to itself and
-- everything under it: account → /dbs/{db} → /dbs/{db}/colls/{coll}).
CREATE MACRO scope_covers(scope, path) AS
    lower(path) = lower(scope) OR starts_with(lower(path), rtrim(lower(scope), '/') || '/');

-- The assignments' history the grants read: the inventory's versions as they are here;
-- migration 15 dates them by the Activity log.
CREATE VIEW data_role_assignment_history AS
SELECT assignment_id, account, subscription_id, principal_id, role_definition_id, scope, valid_from, valid_to,
       'inventory' AS origin
FROM data_role_assignments;

-- One row per data-plane role assignment version joined to the version of its role that
-- was in force at the same time: valid_from/valid_to are the overlap of the two. The two
-- built-in roles are known even when no definition was read (a file of assignments only).
CREATE VIEW data_access_grants AS
WITH builtin(role_definition_id, role_name, role_type, data_actions, not_data_actions) AS (
    VALUES
    ('00000000-0000-0000-0000-000000000001', 'Cosmos DB Built-in Data Reader', 'BuiltInRole',
     ['Microsoft.DocumentDB/databaseAccounts/readMetadata',
      'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery',
      'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/readChangeFeed',
      'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read'], []::VARCHAR[]),
    ('00000000-0000-0000-0000-000000000002', 'Cosmos DB Built-in Data Contributor', 'BuiltInRole',
     ['Microsoft.DocumentDB/databaseAccounts/readMetadata',
      'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/*',
      'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/*'], []::VARCHAR[])
)
SELECT
    a.principal_id, a.account, a.subscription_id, a.assignment_id, a.scope, a.role_definition_id,
    coalesce(d.role_name, b.role_name) AS role_name,
    coalesce(d.role_type, b.role_type) AS role_type,
    CASE WHEN d.role_definition_id IS NULL THEN b.data_actions ELSE d.data_actions END AS data_actions,
    CASE WHEN d.role_definition_id IS NULL THEN b.not_data_actions ELSE d.not_data_actions END AS not_data_actions,
    greatest(a.valid_from, coalesce(d.valid_from, a.valid_from)) AS valid_from,
    CASE
        WHEN a.valid_to IS NULL THEN d.valid_to
        WHEN d.valid_to IS NULL THEN a.valid_to
        ELSE least(a.valid_to, d.valid_to)
    END AS valid_to,
    a.origin
FROM data_role_assignment_history a
LEFT JOIN data_role_definitions d
    ON d.account = a.account AND d.role_definition_id = a.role_definition_id
   AND d.valid_from < coalesce(a.valid_to, 'infinity'::TIMESTAMPTZ)
   AND a.valid_from < coalesce(d.valid_to, 'infinity'::TIMESTAMPTZ)
LEFT JOIN builtin b ON b.role_definition_id = a.role_definition_id;

-- Who could read the items of container X on day D (the scope covers the container's path,
-- the role grants items/read, both in force at D):
--   SELECT DISTINCT principal_id, role_name, scope FROM data_access_grants
--   WHERE valid_from <= D AND (valid_to IS NULL OR valid_to > D)
--     AND scope_covers(scope, '/subscriptions/S/resourcegroups/RG/providers/microsoft.documentdb/databaseaccounts/A/dbs/DB/colls/X')
--     AND data_action_allowed(data_actions, not_data_actions,
--                             'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read');
-- `data_readers_at(path, D)` is that query.
CREATE MACRO data_readers_at(path, as_of) AS TABLE
SELECT DISTINCT principal_id, role_name, scope, assignment_id
FROM data_access_grants
WHERE valid_from <= as_of AND (valid_to IS NULL OR valid_to > as_of)
  AND scope_covers(scope, path)
  AND data_action_allowed(data_actions, not_data_actions,
                          'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read');
