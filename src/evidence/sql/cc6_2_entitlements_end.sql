-- CC6.2: every role assignment reaching Cosmos DB in force at the period's end ($to),
-- as known when the pack was made (Activity log up to batch $as_of, inventory runs started
-- by $made_at): data-plane assignments, and Azure role assignments that may list the keys
-- or are scoped at or under an account. Macro entitlements_at: migration 19.
SELECT
    plane, account, principal_id, principal_name, principal_kind, role_name, role_definition_id, scope,
    data_actions, not_data_actions, may_list_keys, granted_at, granted_by_id, granted_by_name, granted_from_ip,
    origin, assignment_id
FROM entitlements_at($to, $as_of, $made_at)
ORDER BY plane, account NULLS LAST, principal_id, assignment_id
