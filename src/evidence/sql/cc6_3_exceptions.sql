-- CC6.3: least-privilege exceptions at the period's end, each with why:
--   * the access review over [$from, $to) (macro access_review_at, migration 19) recommends
--     removing the assignment (not used in the period), the Data Reader (only read), or a
--     narrower scope (used in one container only);
--   * over-broad scopes: an Azure role that may list the keys assigned at a subscription or a
--     resource group (it reaches every account in it), a data-plane role with wildcard data
--     actions assigned at a whole account.
-- As known when the pack was made (Activity log and requests up to batch $as_of, inventory
-- runs started by $made_at).
WITH review AS (
    SELECT
        'data' AS plane, r.principal_id, r.account, r.assignment_id, r.role_definition_id, r.role_name, r.scope,
        r.recommendation AS exception, r.advice AS reason, r.requests AS requests_in_period, r.last_use
    FROM access_review_at(NULL, $from, $to, $as_of, $made_at) r
    WHERE r.recommendation IN ('remove', 'reader', 'narrow scope')
),
held AS (
    SELECT * FROM entitlements_at($to, $as_of, $made_at)
),
broad AS (
    SELECT
        plane, principal_id, account, assignment_id, role_definition_id, role_name, scope,
        'over-broad scope' AS exception,
        'may list the keys of every Cosmos DB account in the '
            || CASE WHEN scope LIKE '%/resourcegroups/%' THEN 'resource group' ELSE 'subscription' END
            || ': assign it on the account, or use a data-plane role' AS reason,
        NULL::BIGINT AS requests_in_period, NULL::TIMESTAMPTZ AS last_use
    FROM held
    WHERE plane = 'azure' AND may_list_keys AND scope NOT LIKE '%/providers/%'
    UNION ALL
    SELECT
        plane, principal_id, account, assignment_id, role_definition_id, role_name, scope,
        'over-broad scope',
        'wildcard data actions (' || data_actions || ') on the whole account: assign it on a database or container, or a role with named actions',
        NULL, NULL
    FROM held
    WHERE plane = 'data' AND data_actions LIKE '%*%' AND scope NOT LIKE '%/dbs/%'
),
exceptions AS (
    SELECT * FROM review
    UNION ALL
    SELECT * FROM broad
)
SELECT
    e.exception,
    e.reason,
    e.plane,
    e.account,
    e.principal_id,
    p.name AS principal_name,
    coalesce(p.kind, 'unknown') AS principal_kind,
    e.role_definition_id,
    e.role_name,
    e.scope,
    e.assignment_id,
    e.requests_in_period,
    e.last_use
FROM exceptions e
LEFT JOIN principal_directory_at($as_of, $made_at) p ON p.principal_id = e.principal_id
ORDER BY e.exception, e.account NULLS LAST, e.principal_id, e.assignment_id
