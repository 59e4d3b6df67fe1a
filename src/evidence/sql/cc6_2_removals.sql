-- CC6.2: role assignments reaching Cosmos DB removed in [$from, $to): each successful
-- Activity log delete (who made it, from which address), with what the assignment granted
-- (from its history when the delete does not say), and each assignment the inventory found
-- gone in the period with no delete in the Activity log. Activity log up to batch $as_of,
-- inventory runs started by $made_at.
WITH history AS MATERIALIZED (
    SELECT * FROM role_assignment_history_at($as_of, $made_at)
),
deletes AS (
    SELECT
        o.time, CASE o.kind WHEN 'role_assignment_delete' THEN 'azure' ELSE 'data' END AS plane,
        o.resource_id AS assignment_id, o.account, o.scope, o.target_principal_id AS principal_id,
        o.target_principal_type AS principal_type, o.role_definition_id,
        o.caller_id, o.caller_name, o.caller_ip, o.correlation_id, o.raw_row
    FROM control_operations_at($as_of) o
    WHERE o.succeeded AND o.kind IN ('data_role_assignment_delete', 'role_assignment_delete')
),
logged AS (
    -- what was deleted: the version that ended with the delete, else the latest before it
    SELECT
        d.time, d.plane, d.assignment_id,
        coalesce(d.account, h.account) AS account, coalesce(d.scope, h.scope) AS scope,
        coalesce(d.principal_id, h.principal_id) AS principal_id,
        coalesce(d.principal_type, h.principal_type) AS principal_type,
        coalesce(d.role_definition_id, h.role_definition_id) AS role_definition_id,
        h.valid_from AS granted_at,
        d.caller_id, d.caller_name, d.caller_ip, d.correlation_id, d.raw_row,
        'activity_log' AS source, NULL AS note
    FROM deletes d
    LEFT JOIN (
        SELECT assignment_id, valid_from, valid_to, account, scope, principal_id, principal_type, role_definition_id
        FROM history
    ) h ON h.assignment_id = d.assignment_id AND h.valid_from <= d.time
    WHERE d.time >= $from AND d.time < $to
    QUALIFY row_number() OVER (PARTITION BY d.raw_row ORDER BY h.valid_from DESC NULLS LAST) = 1
),
unlogged AS (
    SELECT
        h.valid_to AS time, h.plane, h.assignment_id, h.account, h.scope, h.principal_id, h.principal_type,
        h.role_definition_id, h.valid_from AS granted_at,
        NULL AS caller_id, NULL AS caller_name, NULL AS caller_ip, NULL AS correlation_id, NULL::BIGINT AS raw_row,
        'inventory' AS source,
        'not in the Activity log: found gone by the inventory run of ' || strftime(h.valid_to::TIMESTAMP, '%Y-%m-%dT%H:%M:%SZ')
            AS note
    FROM history h
    WHERE h.origin = 'inventory' AND h.valid_to >= $from AND h.valid_to < $to
      AND NOT EXISTS (SELECT 1 FROM deletes d WHERE d.assignment_id = h.assignment_id AND d.time = h.valid_to)
      -- a version closed because the assignment changed (another version opens then) was not removed
      AND NOT EXISTS (SELECT 1 FROM history n WHERE n.assignment_id = h.assignment_id AND n.valid_from = h.valid_to)
),
changes AS (
    SELECT * FROM logged
    UNION ALL
    SELECT * FROM unlogged
)
SELECT
    c.time AS removed_at,
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
    c.granted_at,
    c.caller_id AS removed_by_id,
    c.caller_name AS removed_by_name,
    c.caller_ip AS removed_from_ip,
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
ORDER BY removed_at, assignment_id
