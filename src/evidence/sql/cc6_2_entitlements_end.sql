-- CC6.2: every role assignment reaching Cosmos DB in force at the period's end ($to),
-- as known when the pack was made (Activity log up to batch $as_of, inventory runs started
-- by $made_at): data-plane assignments, and Azure role assignments that may list the keys
-- or are scoped at or under an account. Macro entitlements_at: migration 19.
SELECT *
FROM entitlements_at($to, $as_of, $made_at)
ORDER BY plane, account NULLS LAST, principal_id, assignment_id
