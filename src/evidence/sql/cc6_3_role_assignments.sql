-- CC6.3: Cosmos DB data-plane role assignments that allowed requests in [$from, $to), one row
-- per assignment and principal that used it: the assignment's holder (a group's members use
-- it with their own ids), its role and scope as known when the pack was made, and the use.
-- Requests up to batch $as_of; assignments from the Activity log up to it and inventory
-- runs started by $made_at (role_assignment_id in a request is the assignment's GUID).
WITH used AS (
    SELECT
        account, lower(role_assignment_id) AS role_assignment_id, principal_id,
        count(*) AS requests, min(time) AS first_request, max(time) AS last_request
    FROM cosmos_requests
    WHERE time >= $from AND time < $to AND batch_id <= $as_of AND role_assignment_id IS NOT NULL
    GROUP BY ALL
),
assignments AS (
    SELECT
        assignment_id, regexp_extract(assignment_id, '[^/]+$') AS guid, account,
        arg_max(principal_id, valid_from) AS holder_id, arg_max(role_definition_id, valid_from) AS role_definition_id,
        arg_max(role_name, valid_from) AS role_name, arg_max(scope, valid_from) AS scope
    FROM data_access_grants_at($as_of, $made_at)
    WHERE valid_from < $to
    GROUP BY ALL
)
SELECT
    u.account,
    u.role_assignment_id,
    a.assignment_id,
    a.role_definition_id,
    a.role_name,
    a.scope,
    a.holder_id,
    h.name AS holder_name,
    coalesce(h.kind, 'unknown') AS holder_kind,
    u.principal_id,
    p.name AS principal_name,
    coalesce(p.kind, 'unknown') AS principal_kind,
    u.requests,
    u.first_request,
    u.last_request
FROM used u
LEFT JOIN assignments a ON a.guid = u.role_assignment_id AND a.account = u.account
LEFT JOIN principal_directory_at($as_of, $made_at) h ON h.principal_id = a.holder_id
LEFT JOIN principal_directory_at($as_of, $made_at) p ON p.principal_id = u.principal_id
ORDER BY u.account, u.role_assignment_id, u.principal_id
