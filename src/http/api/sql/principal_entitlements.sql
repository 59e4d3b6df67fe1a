-- One principal's data-plane role assignments from the access review over [$2, $3) ($1 the
-- principal id, compared in lower case as the inventory stores it).
SELECT
    principal_id, account, assignment_id, role_definition_id, role_name, scope, data_actions,
    granted_since, origin, is_group, requests::BIGINT AS requests, last_use, used_actions, recommendation, advice
FROM access_review_of(lower($1), $2::TIMESTAMPTZ, $3::TIMESTAMPTZ)
ORDER BY account, scope, assignment_id
