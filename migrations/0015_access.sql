-- Granted against used. What each data-plane role assignment allows (the inventory of
-- migration 14, with the Activity log folded in between snapshots) beside what its
-- principal did with it (cosmos_requests), and what to change.

-- The data action a request needed: documents → items/read, executeQuery, readChangeFeed,
-- items/create, upsert, replace, delete; a stored procedure run → executeStoredProcedure;
-- reading databases, containers and other metadata → readMetadata; writing them → the
-- container management the built-in Data Contributor holds (containers/*).
CREATE MACRO data_action_of(operation, resource_type) AS
    'Microsoft.DocumentDB/databaseAccounts/' || CASE
        WHEN lower(resource_type) = 'document' THEN 'sqlDatabases/containers/' || CASE lower(operation)
            WHEN 'read' THEN 'items/read'
            WHEN 'head' THEN 'items/read'
            WHEN 'query' THEN 'executeQuery'
            WHEN 'sqlquery' THEN 'executeQuery'
            WHEN 'queryplan' THEN 'executeQuery'
            WHEN 'readfeed' THEN 'readChangeFeed'
            WHEN 'headfeed' THEN 'readChangeFeed'
            WHEN 'create' THEN 'items/create'
            WHEN 'upsert' THEN 'items/upsert'
            WHEN 'replace' THEN 'items/replace'
            WHEN 'patch' THEN 'items/replace'
            WHEN 'delete' THEN 'items/delete'
            ELSE 'items/*'                  -- a batch: any item operation
        END
        WHEN lower(resource_type) = 'storedprocedure' AND lower(operation) = 'execute'
            THEN 'sqlDatabases/containers/executeStoredProcedure'
        WHEN lower(operation) IN ('read', 'readfeed', 'query', 'sqlquery', 'head', 'headfeed', 'queryplan')
            THEN 'readMetadata'
        ELSE 'sqlDatabases/containers/*'
    END;

-- Whether a data action only reads.
CREATE MACRO data_action_reads(action) AS
    lower(action) SIMILAR TO '.*/(readmetadata|items/read|executequery|readchangefeed)';

-- Role assignments as they were over time, data-plane (`plane` 'data') and Azure ('azure'):
-- the inventory's versions, each starting when the Activity log says it was written (not
-- when a later snapshot first saw it) and ending when the log says it was deleted; and the
-- assignments the log shows that no snapshot holds (made after the last one, or in a
-- subscription never inventoried).
CREATE VIEW role_assignment_history AS
WITH writes AS (
    SELECT CASE kind WHEN 'role_assignment_write' THEN 'azure' ELSE 'data' END AS plane,
           resource_id AS assignment_id, account, subscription_id, target_principal_id AS principal_id,
           target_principal_type AS principal_type, role_definition_id, scope, time
    FROM control_operations
    WHERE succeeded AND kind IN ('data_role_assignment_write', 'role_assignment_write') AND target_principal_id IS NOT NULL
),
deletes AS (
    SELECT resource_id AS assignment_id, time
    FROM control_operations
    WHERE succeeded AND kind IN ('data_role_assignment_delete', 'role_assignment_delete')
),
snapshots AS (
    SELECT *, lag(valid_to) OVER (PARTITION BY assignment_id ORDER BY valid_from) AS previous_end
    FROM (
        SELECT 'data' AS plane, assignment_id, account, subscription_id, principal_id, NULL AS principal_type,
               role_definition_id, scope, valid_from, valid_to
        FROM data_role_assignments
        UNION ALL
        SELECT 'azure', assignment_id, NULL, subscription_id, principal_id, principal_type,
               role_definition_id, scope, valid_from, valid_to
        FROM azure_role_assignments
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

CREATE OR REPLACE VIEW data_role_assignment_history AS
SELECT assignment_id, account, subscription_id, principal_id, role_definition_id, scope, valid_from, valid_to, origin
FROM role_assignment_history
WHERE plane = 'data';

-- Azure role assignments over time, with the role's name when known: who could list an
-- account's keys on any day (the `keys` roles of cosmos_roles at the account or above).
CREATE VIEW azure_role_assignment_history AS
SELECT
    h.assignment_id, h.subscription_id, h.principal_id, h.principal_type, h.role_definition_id,
    coalesce(
        (SELECT any_value(r.role_name) FROM azure_role_assignments r WHERE r.assignment_id = h.assignment_id),
        c.role_name
    ) AS role_name,
    h.scope, h.valid_from, h.valid_to, h.origin
FROM role_assignment_history h
LEFT JOIN cosmos_roles c USING (role_definition_id)
WHERE h.plane = 'azure';

-- Principals known to be groups: named as a group by an Azure role assignment, or the group
-- of a membership change. Their members' requests carry the members' own ids, so a group's
-- assignment is never "used" by its own id: expanding it needs Microsoft Graph.
CREATE VIEW known_groups AS
SELECT DISTINCT principal_id FROM azure_role_assignment_history WHERE lower(principal_type) IN ('group', 'foreigngroup')
UNION
SELECT DISTINCT group_id FROM directory_changes WHERE group_id IS NOT NULL;

-- The access review over [since, until): one row per assignment in force at `until`, with
-- what it grants, what its principal used through it (successful requests in its scope
-- whose data action it grants), and a recommendation:
--   remove           no use in the period, the assignment older than it, and the logs cover it;
--   unused so far    the same, but TokenTrail's logs start after `since`: not enough to judge;
--   reader           a role that writes, used only to read: the Built-in Data Reader at
--                    the narrowest scope used;
--   narrow scope     account- or database-wide, used in one container;
--   group            a group: members' use is not attributed (needs Microsoft Graph);
--   keep             used as granted.
-- `access_review_of(who, since, until)` is the same for one principal (`who`, lower case; NULL
-- for all), reading only its requests: what a principal's page shows.
CREATE MACRO access_review_of(who, since, until) AS TABLE
WITH grants AS MATERIALIZED (
    SELECT g.*,
        -- older than the period: granted before it, or already there at the first inventory
        -- (whose snapshot time says when it was seen, not when it was granted)
        g.valid_from < since OR (g.origin = 'inventory'
            AND g.valid_from <= (SELECT min(started_at) FROM inventory_runs)) AS predates,
        (SELECT history_start FROM data_clock) <= since AS covered,
        nullif(regexp_extract(g.scope, '/dbs/([^/]+)', 1), '') AS scope_db,
        nullif(regexp_extract(g.scope, '/colls/([^/]+)', 1), '') AS scope_coll,
        g.principal_id IN (SELECT principal_id FROM known_groups) AS is_group
    FROM data_access_grants g
    WHERE g.valid_from <= until AND (g.valid_to IS NULL OR g.valid_to > until)
      AND (who IS NULL OR g.principal_id = who)
),
usage AS MATERIALIZED (
    -- grouped before the assignments are looked at: few rows per principal
    SELECT principal_id, account, coalesce(database_name, '') AS db, coalesce(collection_name, '') AS coll,
           data_action_of(operation, request_resource_type) AS action, count(*) AS requests, max(time) AS last_time
    FROM cosmos_requests
    WHERE time >= since AND time < until AND principal_id IS NOT NULL
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

CREATE MACRO access_review(since, until) AS TABLE
SELECT * FROM access_review_of(NULL, since, until);

-- Accounts whose keys still open them: local auth on in the latest inventory (or in the
-- Activity log's account writes since), with their
-- key clients active in [since, until) (and those clients' requests since first seen) and
-- who may list their keys (Azure roles with listKeys or readonlykeys at the account or above).
CREATE MACRO key_exposure(since, until) AS TABLE
WITH logged AS (
    -- the Activity log's latest setting of each account, for changes after the inventory
    SELECT account, arg_max(disable_local_auth, time) AS disable_local_auth, max(time) AS at
    FROM control_operations
    WHERE succeeded AND kind = 'account_write' AND disable_local_auth IS NOT NULL
    GROUP BY account
),
accounts AS (
    SELECT a.account, a.resource_id,
           CASE WHEN l.at > a.valid_from THEN l.disable_local_auth ELSE a.disable_local_auth END AS disable_local_auth
    FROM cosmos_accounts a
    LEFT JOIN logged l USING (account)
    WHERE a.valid_to IS NULL
),
traffic AS (
    SELECT subject AS account, count(*) AS clients, sum(events) AS requests, max(last_time) AS last_use
    FROM first_seen
    WHERE facet = 'key_client' AND last_time >= since AND first_time < until
    GROUP BY subject
),
holders AS (
    SELECT a.account, list(DISTINCT r.principal_id || ' (' || coalesce(r.role_name, c.role_name, r.role_definition_id) || ')'
                           ORDER BY r.principal_id || ' (' || coalesce(r.role_name, c.role_name, r.role_definition_id) || ')') AS key_readers
    FROM accounts a
    JOIN azure_role_assignment_history r ON r.valid_to IS NULL AND scope_covers(r.scope, a.resource_id)
    JOIN cosmos_roles c ON c.role_definition_id = r.role_definition_id AND c.kind = 'keys'
    GROUP BY a.account
)
SELECT a.account, a.resource_id, a.disable_local_auth, coalesce(t.clients, 0) AS key_clients,
       coalesce(t.requests, 0) AS key_requests, t.last_use, coalesce(h.key_readers, []::VARCHAR[]) AS key_readers
FROM accounts a
LEFT JOIN traffic t USING (account)
LEFT JOIN holders h USING (account)
WHERE NOT coalesce(a.disable_local_auth, false);
