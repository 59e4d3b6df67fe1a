-- The items of new access review $1: every role assignment in force at $3 whose scope is in
-- the review's scope $4 (at or under it, or above it and reaching into it; '/' for all; a
-- bare name for one account), data-plane (with its use over [$2, $3) and the access
-- review's advice, migrations/0015_access.sql) and Azure roles that may list an account's
-- keys (with the key listings and account changes its principal made). Each with who
-- granted it: the caller of the Activity log's last successful write of it.
INSERT INTO access_review_items (review_id, item_id, uuid, plane, assignment_id, account, principal_id, principal_name,
    principal_kind, role_definition_id, role_name, data_actions, scope, granted_at, granted_by_oid, granted_by_name, requests,
    last_use, used_actions, recommendation, advice)
WITH in_scope AS (
    SELECT $4::VARCHAR AS scope
),
data AS (
    SELECT 'data' AS plane, r.assignment_id, r.account, r.principal_id, r.role_definition_id, r.role_name,
           r.data_actions, r.scope, r.granted_since AS granted_at, r.requests::BIGINT AS requests, r.last_use,
           r.used_actions, r.is_group,
           CASE r.recommendation WHEN 'remove' THEN 'revoke' WHEN 'keep' THEN 'approve'
                WHEN 'reader' THEN 'approve' WHEN 'narrow scope' THEN 'approve' ELSE 'unknown' END AS recommendation,
           r.advice
    FROM access_review($2::TIMESTAMPTZ, $3::TIMESTAMPTZ) r, in_scope s
    WHERE s.scope = '/' OR r.account = s.scope OR scope_covers(s.scope, r.scope) OR scope_covers(r.scope, s.scope)
),
accounts AS (
    SELECT account, resource_id FROM cosmos_accounts WHERE valid_to IS NULL
),
key_roles AS (
    SELECT DISTINCT ON (h.assignment_id)
        h.assignment_id, a.account, h.principal_id, h.principal_type, h.role_definition_id,
        coalesce(h.role_name, c.role_name, h.role_definition_id) AS role_name, h.scope, h.valid_from
    FROM azure_role_assignment_history h
    JOIN cosmos_roles c ON c.role_definition_id = h.role_definition_id AND c.kind = 'keys'
    JOIN accounts a ON scope_covers(h.scope, a.resource_id)
    , in_scope s
    WHERE h.valid_from <= $3::TIMESTAMPTZ AND (h.valid_to IS NULL OR h.valid_to > $3::TIMESTAMPTZ)
      AND (s.scope = '/' OR a.account = s.scope OR scope_covers(s.scope, h.scope) OR scope_covers(h.scope, s.scope))
    ORDER BY h.assignment_id, a.account
),
key_use AS (
    SELECT k.assignment_id, count(*)::BIGINT AS requests, max(o.time) AS last_use,
           list(DISTINCT o.kind ORDER BY o.kind) AS used_actions
    FROM key_roles k
    JOIN control_operations o ON o.caller_id = k.principal_id AND o.succeeded
        AND o.kind IN ('list_keys', 'read_only_keys', 'list_connection_strings', 'regenerate_key', 'account_write')
        AND o.time >= $2::TIMESTAMPTZ AND o.time < $3::TIMESTAMPTZ
        AND scope_covers(k.scope, o.resource_id)
    GROUP BY k.assignment_id
),
azure AS (
    SELECT 'azure' AS plane, k.assignment_id, k.account, k.principal_id, k.role_definition_id, k.role_name,
           NULL::VARCHAR[] AS data_actions, k.scope, k.valid_from AS granted_at,
           coalesce(u.requests, 0) AS requests, u.last_use, coalesce(u.used_actions, []::VARCHAR[]) AS used_actions,
           lower(coalesce(k.principal_type, '')) IN ('group', 'foreigngroup')
               OR k.principal_id IN (SELECT principal_id FROM known_groups) AS is_group,
           CASE WHEN u.requests > 0 THEN 'approve' ELSE 'unknown' END AS recommendation,
           CASE
               WHEN u.requests > 0 THEN 'listed keys or changed the account ' || u.requests || ' times in the period'
               ELSE 'may list the keys of ' || k.account || ' (' || k.role_name || '); no key listing or account change by it in the period: TokenTrail sees only Cosmos DB operations, so other use of the role is not shown'
           END AS advice
    FROM key_roles k
    LEFT JOIN key_use u USING (assignment_id)
),
items AS (
    SELECT * FROM data
    UNION ALL
    SELECT * FROM azure
),
granted AS (
    SELECT resource_id AS assignment_id, arg_max(caller_id, time) AS granted_by_oid,
           arg_max(caller_name, time) AS granted_by_name, max(time) AS written_at
    FROM control_operations
    WHERE succeeded AND kind IN ('data_role_assignment_write', 'role_assignment_write') AND time <= $3::TIMESTAMPTZ
    GROUP BY resource_id
),
names AS (
    SELECT principal_id, arg_max(principal_name, time) FILTER (WHERE principal_name IS NOT NULL) AS principal_name,
           arg_max(principal_kind_of(kind), time) AS principal_kind
    FROM signins
    WHERE principal_id IN (SELECT principal_id FROM items)
    GROUP BY principal_id
),
directory_names AS (
    SELECT target_id AS principal_id, arg_max(target_name, time) AS principal_name, arg_max(lower(target_type), time) AS target_type
    FROM directory_changes
    WHERE target_id IN (SELECT principal_id FROM items) AND target_name IS NOT NULL
    GROUP BY target_id
)
SELECT
    $1::BIGINT AS review_id,
    row_number() OVER (ORDER BY i.plane DESC, i.account, coalesce(n.principal_name, d.principal_name, i.principal_id), i.scope, i.assignment_id)::INTEGER AS item_id,
    uuid()::VARCHAR AS uuid,
    i.plane, i.assignment_id, i.account, i.principal_id,
    coalesce(n.principal_name, d.principal_name) AS principal_name,
    CASE WHEN i.is_group THEN 'group'
         WHEN n.principal_kind IS NOT NULL THEN n.principal_kind
         WHEN d.target_type = 'user' THEN 'user'
         WHEN d.target_type = 'serviceprincipal' THEN 'service_principal'
         ELSE 'unknown' END AS principal_kind,
    i.role_definition_id, i.role_name, i.data_actions, i.scope,
    i.granted_at, g.granted_by_oid, g.granted_by_name,
    i.requests, i.last_use, i.used_actions, i.recommendation, i.advice
FROM items i
LEFT JOIN granted g USING (assignment_id)
LEFT JOIN names n USING (principal_id)
LEFT JOIN directory_names d USING (principal_id)
ORDER BY item_id
