-- CC6.2: role assignments reaching Cosmos DB granted in [$from, $to): each successful
-- Activity log write (who made it, from which address), and each assignment the inventory
-- first saw in the period with no write in the Activity log (granted while the log was not
-- collected, or outside it). Assignments already there at the first inventory are not
-- grants. Activity log up to batch $as_of, inventory runs started by $made_at.
WITH runs AS (
    SELECT min(started_at) AS first_run FROM inventory_runs WHERE started_at <= $made_at
),
writes AS (
    SELECT
        o.time, CASE o.kind WHEN 'role_assignment_write' THEN 'azure' ELSE 'data' END AS plane,
        o.resource_id AS assignment_id, o.account, o.scope, o.target_principal_id AS principal_id,
        o.target_principal_type AS principal_type, o.role_definition_id,
        o.caller_id, o.caller_name, o.caller_ip, o.correlation_id, o.raw_row
    FROM control_operations_at($as_of) o
    WHERE o.succeeded AND o.kind IN ('data_role_assignment_write', 'role_assignment_write')
),
logged AS (
    SELECT w.*, 'activity_log' AS source, NULL AS note
    FROM writes w
    WHERE w.time >= $from AND w.time < $to
),
unlogged AS (
    SELECT
        h.valid_from AS time, h.plane, h.assignment_id, h.account, h.scope, h.principal_id, h.principal_type,
        h.role_definition_id, NULL AS caller_id, NULL AS caller_name, NULL AS caller_ip, NULL AS correlation_id,
        NULL::BIGINT AS raw_row, 'inventory' AS source,
        'not in the Activity log: first seen by the inventory run of ' || strftime(h.valid_from::TIMESTAMP, '%Y-%m-%dT%H:%M:%SZ')
            AS note
    FROM role_assignment_history_at($as_of, $made_at) h
    WHERE h.origin = 'inventory' AND h.valid_from >= $from AND h.valid_from < $to
      AND h.valid_from > (SELECT first_run FROM runs)
      AND NOT EXISTS (SELECT 1 FROM writes w WHERE w.assignment_id = h.assignment_id AND w.time = h.valid_from)
),
changes AS (
    SELECT * FROM logged
    UNION ALL
    SELECT * FROM unlogged
)
SELECT
    c.time AS granted_at,
    c.plane,
    coalesce(c.account, nullif(regexp_extract(c.scope, '/databaseaccounts/([^/]+)', 1), '')) AS account,
    c.principal_id,
    p.name AS principal_name,
    CASE WHEN lower(c.principal_type) IN ('group', 'foreigngroup') THEN 'group' ELSE coalesce(p.kind, 'unknown') END
        AS principal_kind,
    c.role_definition_id,
    coalesce(g.role_name, r.role_name) AS role_name,
    c.scope,
    c.assignment_id,
    c.caller_id AS granted_by_id,
    c.caller_name AS granted_by_name,
    c.caller_ip AS granted_from_ip,
    c.source,
    c.note,
    c.correlation_id,
    c.raw_row
FROM changes c
LEFT JOIN principal_directory_at($as_of, $made_at) p ON p.principal_id = c.principal_id
LEFT JOIN cosmos_roles r ON r.role_definition_id = c.role_definition_id
LEFT JOIN (
    SELECT assignment_id, arg_max(role_name, valid_from) AS role_name
    FROM data_access_grants_at($as_of, $made_at) GROUP BY assignment_id
) g ON c.plane = 'data' AND g.assignment_id = c.assignment_id
WHERE c.plane = 'data' OR r.kind = 'keys' OR c.scope LIKE '%/providers/microsoft.documentdb/databaseaccounts/%'
ORDER BY granted_at, assignment_id
