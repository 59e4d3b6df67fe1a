-- Access evidence (SOC 2 CC6.2/CC6.3, issue 30): lists of leavers, and the role-assignment
-- history as it stood at a point in time, so that a pack's entitlement populations give the
-- same rows whenever they are run again. A point in time is two bounds:
--   as_of    the last ingest batch read: Activity log and AuditLogs rows of later batches
--            are left out;
--   made_at  when the pack was made: inventory runs started after it are left out, and a
--            row they closed (valid_to later than made_at) counts as still in force.
-- The views of migrations 13 to 15 are redefined on top of these macros with no bound
-- (the largest batch id, 'infinity'), so they keep their columns and meaning.

-- One row per leavers list imported (`tokentrail leavers import`, `POST /api/leavers`).
CREATE SEQUENCE leaver_list_ids START 1;
CREATE TABLE leaver_lists (
    list_id BIGINT PRIMARY KEY DEFAULT nextval('leaver_list_ids'),
    loaded_at TIMESTAMPTZ NOT NULL,
    loaded_by VARCHAR NOT NULL,             -- who imported it: the OS user, or name (oid, tid) over the API
    file_name VARCHAR NOT NULL,             -- as given (the upload's name over the API)
    sha256 VARCHAR NOT NULL,                -- of the file's bytes, lower-case hex
    rows INTEGER NOT NULL                   -- leavers it lists
);

-- One row per leaver of a list, values as written (bound, never read as SQL or formulas).
CREATE TABLE leavers_listed (
    list_id BIGINT NOT NULL,
    line INTEGER NOT NULL,                  -- the line of the file (the header is line 1)
    principal_id VARCHAR,                   -- Entra ID object id, lower case when a GUID
    upn VARCHAR,                            -- user principal name (or e-mail) as written
    name VARCHAR,
    left_at TIMESTAMPTZ NOT NULL,           -- when they left (a date alone is its midnight UTC)
    PRIMARY KEY (list_id, line)
);

-- The Activity log's finished operations (control_operations) from batches up to `as_of`.
CREATE MACRO control_operations_at(as_of) AS TABLE
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
    WHERE correlation_id IS NOT NULL AND batch_id <= as_of
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
    e.correlation_id, e.raw_row, e.batch_id
FROM control_changes e
LEFT JOIN bodies b ON b.correlation_id = e.correlation_id AND b.operation = e.operation
WHERE e.batch_id <= as_of AND lower(coalesce(e.result, '')) NOT IN ('start', 'accept', 'started', 'accepted');

CREATE OR REPLACE VIEW control_operations AS
SELECT * EXCLUDE (batch_id) FROM control_operations_at(9223372036854775807);

-- role_assignment_history (migration 15) at a point in time: the Activity log up to batch
-- `as_of`, the inventory runs started at or before `made_at`.
CREATE MACRO role_assignment_history_at(as_of, made_at) AS TABLE
WITH ops AS MATERIALIZED (
    SELECT * FROM control_operations_at(as_of)
    WHERE succeeded AND kind IN ('data_role_assignment_write', 'role_assignment_write',
                                 'data_role_assignment_delete', 'role_assignment_delete')
),
writes AS (
    SELECT CASE kind WHEN 'role_assignment_write' THEN 'azure' ELSE 'data' END AS plane,
           resource_id AS assignment_id, account, subscription_id, target_principal_id AS principal_id,
           target_principal_type AS principal_type, role_definition_id, scope, time
    FROM ops
    WHERE kind IN ('data_role_assignment_write', 'role_assignment_write') AND target_principal_id IS NOT NULL
),
deletes AS (
    SELECT resource_id AS assignment_id, time
    FROM ops
    WHERE kind IN ('data_role_assignment_delete', 'role_assignment_delete')
),
runs AS (
    SELECT run_id FROM inventory_runs WHERE started_at <= made_at
),
snapshots AS (
    SELECT *, lag(valid_to) OVER (PARTITION BY assignment_id ORDER BY valid_from) AS previous_end
    FROM (
        SELECT 'data' AS plane, assignment_id, account, subscription_id, principal_id, NULL AS principal_type,
               role_definition_id, scope, valid_from, CASE WHEN valid_to > made_at THEN NULL ELSE valid_to END AS valid_to
        FROM data_role_assignments
        WHERE run_id IN (SELECT run_id FROM runs)
        UNION ALL
        SELECT 'azure', assignment_id, NULL, subscription_id, principal_id, principal_type,
               role_definition_id, scope, valid_from, CASE WHEN valid_to > made_at THEN NULL ELSE valid_to END
        FROM azure_role_assignments
        WHERE run_id IN (SELECT run_id FROM runs)
    )
),
folded AS (
    SELECT
        s.plane, s.assignment_id, s.account, s.subscription_id, s.principal_id, s.principal_type,
        s.role_definition_id, s.scope,
        coalesce((
            SELECT max(w.time) FROM writes w
            WHERE w.assignment_id = s.assignment_id AND w.time <= s.valid_from
              AND w.time > coalesce(s.previous_end, '-infinity'::TIMESTAMPTZ)
        ), s.valid_from) AS valid_from,
        coalesce((
            SELECT min(d.time) FROM deletes d
            WHERE d.assignment_id = s.assignment_id AND d.time >= s.valid_from
              AND d.time < coalesce(s.valid_to, 'infinity'::TIMESTAMPTZ)
        ), s.valid_to) AS valid_to,
        'inventory' AS origin
    FROM snapshots s
)
SELECT * FROM folded
UNION ALL
SELECT
    w.plane, w.assignment_id, w.account, w.subscription_id, w.principal_id, w.principal_type,
    w.role_definition_id, w.scope, w.time,
    (SELECT min(d.time) FROM deletes d WHERE d.assignment_id = w.assignment_id AND d.time >= w.time),
    'activity_log'
FROM writes w
WHERE NOT EXISTS (
    SELECT 1 FROM folded f
    WHERE f.assignment_id = w.assignment_id AND w.time >= f.valid_from
      AND w.time < utc_add(coalesce(f.valid_to, 'infinity'::TIMESTAMPTZ), INTERVAL 1 SECOND)
)
-- a later write of an assignment the log already holds is an update, not another row
  AND w.time = (
      SELECT min(x.time) FROM writes x
      WHERE x.assignment_id = w.assignment_id
        AND NOT EXISTS (SELECT 1 FROM deletes d WHERE d.assignment_id = w.assignment_id AND d.time > x.time AND d.time < w.time)
  );

CREATE OR REPLACE VIEW role_assignment_history AS
SELECT * FROM role_assignment_history_at(9223372036854775807, 'infinity'::TIMESTAMPTZ);

-- data_access_grants (migration 14) at a point in time.
CREATE MACRO data_access_grants_at(as_of, made_at) AS TABLE
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
),
assignments AS (
    SELECT * FROM role_assignment_history_at(as_of, made_at) WHERE plane = 'data'
),
definitions AS (
    SELECT * REPLACE (CASE WHEN valid_to > made_at THEN NULL ELSE valid_to END AS valid_to)
    FROM data_role_definitions
    WHERE run_id IN (SELECT run_id FROM inventory_runs WHERE started_at <= made_at)
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
FROM assignments a
LEFT JOIN definitions d
    ON d.account = a.account AND d.role_definition_id = a.role_definition_id
   AND d.valid_from < coalesce(a.valid_to, 'infinity'::TIMESTAMPTZ)
   AND a.valid_from < coalesce(d.valid_to, 'infinity'::TIMESTAMPTZ)
LEFT JOIN builtin b ON b.role_definition_id = a.role_definition_id;

CREATE OR REPLACE VIEW data_access_grants AS
SELECT * FROM data_access_grants_at(9223372036854775807, 'infinity'::TIMESTAMPTZ);

-- access_review_of (migration 15) at a point in time: the assignments, groups and requests
-- as known at (as_of, made_at). The body is migration 15's, moved here; access_review_of
-- is this macro without bounds.
CREATE MACRO access_review_at(who, since, until, as_of, made_at) AS TABLE
WITH grants AS MATERIALIZED (
    SELECT g.*,
        -- older than the period: granted before it, or already there at the first inventory
        -- (whose snapshot time says when it was seen, not when it was granted)
        g.valid_from < since OR (g.origin = 'inventory'
            AND g.valid_from <= (SELECT min(started_at) FROM inventory_runs WHERE started_at <= made_at)) AS predates,
        (SELECT history_start FROM data_clock) <= since AS covered,
        nullif(regexp_extract(g.scope, '/dbs/([^/]+)', 1), '') AS scope_db,
        nullif(regexp_extract(g.scope, '/colls/([^/]+)', 1), '') AS scope_coll,
        g.principal_id IN (
            SELECT principal_id FROM role_assignment_history_at(as_of, made_at)
            WHERE plane = 'azure' AND lower(principal_type) IN ('group', 'foreigngroup')
            UNION
            SELECT group_id FROM directory_changes WHERE group_id IS NOT NULL AND batch_id <= as_of
        ) AS is_group
    FROM data_access_grants_at(as_of, made_at) g
    WHERE g.valid_from <= until AND (g.valid_to IS NULL OR g.valid_to > until)
      AND (who IS NULL OR g.principal_id = who)
),
usage AS MATERIALIZED (
    -- grouped before the assignments are looked at: few rows per principal
    SELECT principal_id, account, coalesce(database_name, '') AS db, coalesce(collection_name, '') AS coll,
           data_action_of(operation, request_resource_type) AS action, count(*) AS requests, max(time) AS last_time
    FROM cosmos_requests
    WHERE time >= since AND time < until AND principal_id IS NOT NULL AND batch_id <= as_of
      AND principal_id IN (SELECT principal_id FROM grants)
      AND coalesce(status_code, 0) NOT IN (401, 403)
    GROUP BY ALL
),
-- which assignment grants which of the actions used: few of each, so judged pair by pair
-- here rather than inside the join with the usage
allowed AS MATERIALIZED (
    SELECT g.assignment_id, a.action
    FROM grants g, (SELECT DISTINCT action FROM usage) a
    WHERE data_action_allowed(g.data_actions, g.not_data_actions, a.action)
),
used AS (
    SELECT g.assignment_id,
        sum(u.requests) AS requests,
        max(u.last_time) AS last_use,
        list(DISTINCT u.action ORDER BY u.action) AS used_actions,
        bool_and(data_action_reads(u.action)) AS only_reads,
        count(DISTINCT u.db) AS databases,
        count(DISTINCT u.db || '/' || u.coll) AS containers,
        min(u.db) AS one_db,
        min(u.coll) AS one_coll
    FROM grants g
    JOIN usage u ON u.principal_id = g.principal_id AND u.account = g.account
        AND (g.scope_db IS NULL OR lower(u.db) = g.scope_db)
        AND (g.scope_coll IS NULL OR lower(u.coll) = g.scope_coll)
    JOIN allowed x ON x.assignment_id = g.assignment_id AND x.action = u.action
    GROUP BY g.assignment_id
)
SELECT
    g.principal_id, g.account, g.assignment_id, g.role_definition_id, g.role_name, g.scope, g.data_actions,
    g.valid_from AS granted_since, g.origin, g.is_group,
    coalesce(u.requests, 0) AS requests, u.last_use, coalesce(u.used_actions, []::VARCHAR[]) AS used_actions,
    CASE
        WHEN g.is_group THEN 'group'
        WHEN u.requests IS NULL AND g.predates AND g.covered THEN 'remove'
        WHEN u.requests IS NULL AND g.predates THEN 'unused so far'
        WHEN u.requests IS NULL THEN 'keep'
        WHEN u.only_reads AND len(list_filter(g.data_actions, lambda a: NOT data_action_reads(a))) > 0 THEN 'reader'
        WHEN g.scope_coll IS NULL AND u.containers = 1 THEN 'narrow scope'
        ELSE 'keep'
    END AS recommendation,
    CASE
        WHEN g.is_group THEN 'a group: its members'' requests carry their own ids; expand it with Microsoft Graph to review it'
        WHEN u.requests IS NULL AND g.predates AND g.covered THEN 'not used since ' || strftime(since::TIMESTAMP, '%Y-%m-%d')
            || ': remove the assignment'
        WHEN u.requests IS NULL AND g.predates THEN 'not used in the logs TokenTrail holds (from '
            || coalesce(strftime((SELECT history_start FROM data_clock)::TIMESTAMP, '%Y-%m-%d'), 'none') || '): too short to judge'
        WHEN u.requests IS NULL THEN 'granted within the period and not used yet'
        WHEN u.only_reads AND len(list_filter(g.data_actions, lambda a: NOT data_action_reads(a))) > 0
            THEN 'only read: assign Cosmos DB Built-in Data Reader (00000000-0000-0000-0000-000000000001) at '
                || CASE WHEN u.containers = 1 THEN 'dbs/' || u.one_db || '/colls/' || u.one_coll
                        WHEN u.databases = 1 THEN 'dbs/' || u.one_db ELSE 'the account' END
                || ' instead'
        WHEN g.scope_coll IS NULL AND u.containers = 1
            THEN 'used in one container only: assign it at dbs/' || u.one_db || '/colls/' || u.one_coll
        ELSE 'used as granted'
    END AS advice
FROM grants g
LEFT JOIN used u USING (assignment_id);

CREATE OR REPLACE MACRO access_review_of(who, since, until) AS TABLE
SELECT * FROM access_review_at(who, since, until, 9223372036854775807, 'infinity'::TIMESTAMPTZ);

-- Each principal's name and kind (user, service_principal, managed_identity, group,
-- unknown) as known at (as_of, made_at): sign-ins first (they tell a managed identity from
-- another service principal), then the directory's audit records (targets, groups), then
-- the Activity log's and the inventory's principal types.
CREATE MACRO principal_directory_at(as_of, made_at) AS TABLE
WITH facts AS (
    SELECT lower(principal_id) AS principal_id, principal_name AS name,
           CASE WHEN kind LIKE 'user%' THEN 'user' ELSE kind END AS kind, time, 1 AS source
    FROM signins WHERE principal_id IS NOT NULL AND batch_id <= as_of
    UNION ALL
    SELECT lower(target_id), target_name,
           CASE lower(target_type) WHEN 'user' THEN 'user' WHEN 'group' THEN 'group'
                WHEN 'serviceprincipal' THEN 'service_principal' END, time, 2
    FROM directory_changes WHERE target_id IS NOT NULL AND batch_id <= as_of
    UNION ALL
    SELECT group_id, NULL, 'group', time, 2
    FROM directory_changes WHERE group_id IS NOT NULL AND batch_id <= as_of
    UNION ALL
    SELECT target_principal_id, NULL,
           CASE lower(target_principal_type) WHEN 'user' THEN 'user' WHEN 'group' THEN 'group'
                WHEN 'foreigngroup' THEN 'group' WHEN 'serviceprincipal' THEN 'service_principal' END, time, 3
    FROM control_changes WHERE target_principal_id IS NOT NULL AND batch_id <= as_of
    UNION ALL
    SELECT principal_id, NULL,
           CASE lower(principal_type) WHEN 'user' THEN 'user' WHEN 'group' THEN 'group'
                WHEN 'foreigngroup' THEN 'group' WHEN 'serviceprincipal' THEN 'service_principal' END, valid_from, 3
    FROM azure_role_assignments
    WHERE run_id IN (SELECT run_id FROM inventory_runs WHERE started_at <= made_at)
)
SELECT
    principal_id,
    coalesce(
        arg_max(name, time) FILTER (WHERE name IS NOT NULL AND source = 1),
        arg_max(name, time) FILTER (WHERE name IS NOT NULL)
    ) AS name,
    coalesce(
        arg_max(kind, time) FILTER (WHERE kind IS NOT NULL AND source = 1),
        arg_max(kind, time) FILTER (WHERE kind IS NOT NULL AND source = 2),
        arg_max(kind, time) FILTER (WHERE kind IS NOT NULL),
        'unknown'
    ) AS kind
FROM facts
GROUP BY principal_id;

-- Leavers as known at (as_of, made_at): each line of the lists loaded at or before
-- `made_at` (a UPN without an object id is matched to the principal whose name it is), and
-- each successful Entra ID audit record of an account disabled or deleted from batches up to
-- `as_of`. Rows typed before the kinds user_disabled / user_deleted existed are recognised
-- by their operation and modified properties (AccountEnabled set to false).
CREATE MACRO leavers_at(as_of, made_at) AS TABLE
WITH names AS (
    SELECT lower(name) AS upn, min(principal_id) AS principal_id
    FROM principal_directory_at(as_of, made_at)
    WHERE name IS NOT NULL
    GROUP BY ALL
    HAVING count(DISTINCT principal_id) = 1
)
SELECT
    coalesce(l.principal_id, n.principal_id) AS principal_id,
    coalesce(l.name, l.upn) AS name,
    l.upn,
    l.left_at,
    'list:' || ll.file_name AS source,
    l.list_id,
    l.line,
    ll.loaded_at,
    NULL::BIGINT AS raw_row
FROM leavers_listed l
JOIN leaver_lists ll USING (list_id)
LEFT JOIN names n ON l.principal_id IS NULL AND n.upn = lower(l.upn)
WHERE ll.loaded_at <= made_at
UNION ALL
SELECT
    lower(d.target_id), d.target_name, d.target_name, d.time, 'audit_log', NULL, NULL, NULL, d.raw_row
FROM directory_changes d
WHERE d.batch_id <= as_of AND d.target_id IS NOT NULL AND change_succeeded(d.result)
  AND (d.kind IN ('user_disabled', 'user_deleted')
       OR lower(d.operation) IN ('disable account', 'delete user')
       OR (lower(d.operation) = 'update user' AND EXISTS (
            SELECT 1 FROM unnest(CAST(coalesce(d.modified, '[]') AS JSON[])) AS m(p)
            WHERE lower(p->>'name') = 'accountenabled'
              AND regexp_matches(lower(coalesce(p->>'new', '')), '^\[?\s*"?false"?\s*\]?$'))));

CREATE VIEW leavers AS
SELECT * FROM leavers_at(9223372036854775807, 'infinity'::TIMESTAMPTZ);

-- The role assignments in force at `t` that reach Cosmos DB, as known at (as_of, made_at):
-- data-plane assignments, and Azure role assignments of a role that may list the keys
-- (cosmos_roles kind 'keys') or scoped at or under a Cosmos DB account; with the principal's
-- name and kind, the role's name and data actions, and who granted it (the Activity log's
-- write that dates it).
CREATE MACRO entitlements_at(t, as_of, made_at) AS TABLE
WITH h AS (
    SELECT * FROM role_assignment_history_at(as_of, made_at)
    WHERE valid_from <= t AND (valid_to IS NULL OR valid_to > t)
),
grants AS (
    SELECT assignment_id, arg_max(role_name, valid_from) AS role_name,
           arg_max(data_actions, valid_from) AS data_actions, arg_max(not_data_actions, valid_from) AS not_data_actions
    FROM data_access_grants_at(as_of, made_at)
    WHERE valid_from <= t AND (valid_to IS NULL OR valid_to > t)
    GROUP BY assignment_id
),
writes AS (
    SELECT resource_id AS assignment_id, time, caller_id, caller_name, caller_ip
    FROM control_operations_at(as_of)
    WHERE succeeded AND kind IN ('data_role_assignment_write', 'role_assignment_write')
),
azure_names AS (
    SELECT assignment_id, any_value(role_name) AS role_name
    FROM azure_role_assignments
    WHERE role_name IS NOT NULL AND run_id IN (SELECT run_id FROM inventory_runs WHERE started_at <= made_at)
    GROUP BY assignment_id
)
SELECT
    h.plane,
    h.assignment_id,
    coalesce(h.account, nullif(regexp_extract(h.scope, '/databaseaccounts/([^/]+)', 1), '')) AS account,
    h.scope,
    h.principal_id,
    p.name AS principal_name,
    CASE WHEN lower(h.principal_type) IN ('group', 'foreigngroup') THEN 'group'
         ELSE coalesce(p.kind, 'unknown') END AS principal_kind,
    h.role_definition_id,
    coalesce(g.role_name, an.role_name, c.role_name) AS role_name,
    CASE WHEN h.plane = 'data' THEN array_to_string(g.data_actions, ', ') END AS data_actions,
    CASE WHEN h.plane = 'data' THEN array_to_string(g.not_data_actions, ', ') END AS not_data_actions,
    coalesce(c.kind = 'keys', false) AS may_list_keys,
    h.valid_from AS granted_at,
    w.caller_id AS granted_by_id,
    w.caller_name AS granted_by_name,
    w.caller_ip AS granted_from_ip,
    h.origin
FROM h
LEFT JOIN grants g ON h.plane = 'data' AND g.assignment_id = h.assignment_id
LEFT JOIN azure_names an ON h.plane = 'azure' AND an.assignment_id = h.assignment_id
LEFT JOIN cosmos_roles c ON c.role_definition_id = h.role_definition_id
LEFT JOIN principal_directory_at(as_of, made_at) p ON p.principal_id = h.principal_id
LEFT JOIN (
    SELECT assignment_id, time, arg_max(caller_id, caller_id) AS caller_id, arg_max(caller_name, caller_id) AS caller_name,
           arg_max(caller_ip, caller_id) AS caller_ip
    FROM writes GROUP BY ALL
) w ON w.assignment_id = h.assignment_id AND w.time = h.valid_from
WHERE h.plane = 'data'
   OR coalesce(c.kind = 'keys', false)
   OR h.scope LIKE '%/providers/microsoft.documentdb/databaseaccounts/%';
