-- CC6.2: removal of leavers' access. Leavers (view leavers, migration 19): the lists loaded
-- by $made_at and Entra ID accounts disabled or deleted (AuditLogs up to batch $as_of); a
-- person in several sources counts from the earliest. For each leaver who left before $to,
-- each role assignment reaching Cosmos DB they held when they left: when it was removed,
-- the hours from leaving to removal, and the verdict against the deadline of
-- $removal_hours hours: on time, late, or not removed (still in force when the pack was
-- made). Leavers of earlier periods are listed while an assignment of theirs was still in
-- force at $from. A leaver holding no assignment is one row, "no assignment held"; a listed
-- UPN that matches no principal seen (sign-ins, directory audit records) is one row, "not
-- matched", to be checked by hand. Access held through a group is not listed: the logs name
-- the group, and expanding it needs Microsoft Graph.
WITH sources AS (
    -- a listed UPN matched to no principal stays one row of its own: it cannot be checked
    SELECT principal_id, any_value(upn) FILTER (WHERE principal_id IS NULL) AS unmatched_upn,
           min(left_at) AS left_at, arg_min(name, left_at) AS listed_name,
           string_agg(DISTINCT source, '; ' ORDER BY source) AS sources
    FROM leavers_at($as_of, $made_at)
    WHERE left_at < $to AND (principal_id IS NOT NULL OR upn IS NOT NULL)
    GROUP BY principal_id, CASE WHEN principal_id IS NULL THEN lower(upn) END
),
held AS (
    SELECT l.principal_id, h.*
    FROM sources l
    JOIN role_assignment_history_at($as_of, $made_at) h
      ON h.principal_id = l.principal_id AND h.valid_from <= l.left_at AND (h.valid_to IS NULL OR h.valid_to > l.left_at)
    WHERE h.plane = 'data'
       OR h.role_definition_id IN (SELECT role_definition_id FROM cosmos_roles WHERE kind = 'keys')
       OR h.scope LIKE '%/providers/microsoft.documentdb/databaseaccounts/%'
),
removals AS (
    SELECT
        l.principal_id, l.unmatched_upn, l.left_at, l.listed_name, l.sources,
        h.plane, h.assignment_id, h.account, h.scope, h.role_definition_id, h.valid_from AS granted_at,
        h.valid_to AS removed_at,
        round((epoch_us(h.valid_to) - epoch_us(l.left_at)) / 3600e6, 2)::DECIMAL(12, 2) AS hours_to_removal
    FROM sources l
    LEFT JOIN held h USING (principal_id)
)
SELECT
    r.principal_id,
    coalesce(p.name, r.listed_name, r.unmatched_upn) AS principal_name,
    coalesce(p.kind, 'unknown') AS principal_kind,
    r.left_at,
    r.sources AS leaver_source,
    r.plane,
    coalesce(r.account, nullif(regexp_extract(r.scope, '/databaseaccounts/([^/]+)', 1), '')) AS account,
    r.role_definition_id,
    coalesce(g.role_name, c.role_name) AS role_name,
    r.scope,
    r.assignment_id,
    r.granted_at,
    r.removed_at,
    r.removed_at IS NULL OR r.removed_at > $to AS in_force_at_end,
    r.hours_to_removal,
    $removal_hours::INTEGER AS deadline_hours,
    CASE
        WHEN r.principal_id IS NULL THEN 'not matched: ' || r.unmatched_upn || ' is no principal TokenTrail has seen'
        WHEN r.assignment_id IS NULL THEN 'no assignment held'
        WHEN r.removed_at IS NULL THEN 'not removed'
        WHEN r.hours_to_removal <= $removal_hours THEN 'on time'
        ELSE 'late'
    END AS verdict
FROM removals r
LEFT JOIN principal_directory_at($as_of, $made_at) p ON p.principal_id = r.principal_id
LEFT JOIN cosmos_roles c ON c.role_definition_id = r.role_definition_id
LEFT JOIN (
    SELECT assignment_id, arg_max(role_name, valid_from) AS role_name
    FROM data_access_grants_at($as_of, $made_at) GROUP BY assignment_id
) g ON r.plane = 'data' AND g.assignment_id = r.assignment_id
WHERE r.left_at >= $from OR (r.assignment_id IS NOT NULL AND (r.removed_at IS NULL OR r.removed_at > $from))
ORDER BY r.left_at, r.principal_id NULLS LAST, r.unmatched_upn, r.assignment_id NULLS FIRST
