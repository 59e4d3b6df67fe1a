-- The access review over [$1, $2): one row per data-plane role assignment in force at $2
-- (migrations/0015_access.sql), the ones to act on first.
SELECT
    principal_id, account, assignment_id, role_definition_id, role_name, scope, data_actions,
    granted_since, origin, is_group, requests::BIGINT AS requests, last_use, used_actions, recommendation, advice
FROM access_review($1::TIMESTAMPTZ, $2::TIMESTAMPTZ)
ORDER BY CASE recommendation WHEN 'remove' THEN 0 WHEN 'reader' THEN 1 WHEN 'narrow scope' THEN 2
             WHEN 'unused so far' THEN 3 WHEN 'group' THEN 4 ELSE 5 END,
         account, principal_id, scope, assignment_id
