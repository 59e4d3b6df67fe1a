-- id: role_granted_then_used
-- title: Data or key role granted outside change control, then used
-- severity: high
-- soc2: CC6.2, CC6.3, CC8.1
-- mitre: T1098 Account Manipulation
-- window: 7d
-- description: Granting an identity a Cosmos DB data-plane role (Built-in Data Reader or Contributor,
--   or a custom role) or an Azure role that reads the account keys (Owner, Contributor, DocumentDB
--   Account Contributor, Cosmos DB Account Reader) on an account is how access is provisioned, and
--   how an intruder gives a foothold access that survives a password reset. Raises a successful grant
--   and its first use within max_days (the grantee's first request on the account, or its first key
--   listing for a key role) when the grant was made outside the change window (change_days and
--   change_hours, UTC) or, if admin_ids is set, by an identity that is neither listed there nor, at
--   the time, a member of a group listed there (membership as Entra ID audit logs recorded it).
--   Grants above the account (subscription, resource group) are not judged here.
-- remediation: Ask the granter for the change request. If there is none, delete the role assignment,
--   review what the grantee read or changed since the grant, and find out how the granter came to
--   hold the right to grant (Microsoft.Authorization/roleAssignments/write, or sqlRoleAssignments/write).
-- param: max_days = 7
--   Days after a grant in which its first use is looked for (at most 7).
-- param: change_days = '1-5'
--   ISO weekdays of the change window, first-last (1 is Monday).
-- param: change_hours = '7-19'
--   Hours of the change window, UTC, from-until (7-19: 07:00 to 18:59).
-- param: admin_ids = ''
--   Comma-separated object ids of the identities (or groups) that provision access; empty: any.
WITH grants AS MATERIALIZED (
    SELECT
        o.change_row, o.time, o.kind, o.account, o.caller_id, o.caller_name, o.caller_ip, o.target_principal_id,
        o.role_definition_id, o.scope,
        CASE WHEN o.kind = 'data_role_assignment_write' THEN 'data' ELSE r.kind END AS role_kind,
        coalesce(r.role_name, 'custom role ' || o.role_definition_id) AS role_name
    FROM control_operations o
    LEFT JOIN cosmos_roles r USING (role_definition_id)
    WHERE o.succeeded AND o.target_principal_id IS NOT NULL AND o.account IS NOT NULL
      AND (o.kind = 'data_role_assignment_write' OR (o.kind = 'role_assignment_write' AND r.kind = 'keys'))
      AND o.time >= utc_add($from, - to_days($max_days)) AND o.time < $to
),
judged AS (
    SELECT g.*,
        NOT (isodow(g.time::TIMESTAMP) BETWEEN split_part($change_days, '-', 1)::INTEGER
                                                 AND split_part($change_days, '-', 2)::INTEGER
             AND hour(g.time::TIMESTAMP) >= split_part($change_hours, '-', 1)::INTEGER
             AND hour(g.time::TIMESTAMP) < split_part($change_hours, '-', 2)::INTEGER) AS off_hours,
        $admin_ids <> '' AND NOT list_contains(string_split($admin_ids, ','), g.caller_id) AND NOT EXISTS (
            -- a member of a listed group: its latest membership change before the grant added it
            SELECT 1 FROM (
                SELECT arg_max(d.kind, d.time) AS last_kind
                FROM directory_changes d
                WHERE d.target_id = g.caller_id AND d.time <= g.time AND change_succeeded(d.result)
                  AND d.kind IN ('group_member_added', 'group_member_removed')
                  AND list_contains(string_split($admin_ids, ','), d.group_id)
                GROUP BY d.group_id
            ) WHERE last_kind = 'group_member_added'
        ) AS outsider
    FROM grants g
),
flagged AS (
    SELECT * FROM judged WHERE off_hours OR outsider
),
used AS (
    -- the first use after the grant: a data request, or a key listing for a key role
    SELECT f.*, u.time AS used_at, u.evidence_table, u.row_id, u.what
    FROM flagged f
    JOIN LATERAL (
        SELECT * FROM (
            SELECT r.time, 'cosmos_requests' AS evidence_table, r.rowid AS row_id,
                   coalesce(r.operation, 'request') || ' on ' || coalesce(r.database_name || '/' || r.collection_name, r.account)
                       || ' from ' || coalesce(r.client_ip, '?') AS what
            FROM cosmos_requests r
            WHERE f.role_kind = 'data' AND r.principal_id = f.target_principal_id AND r.account = f.account
              AND r.time >= f.time AND r.time < utc_add(f.time, to_days($max_days))
            UNION ALL
            SELECT k.time, 'control_changes', k.change_row, replace(k.kind, '_', ' ') || ' from ' || coalesce(k.caller_ip, '?')
            FROM control_operations k
            WHERE f.role_kind = 'keys' AND k.succeeded AND k.caller_id = f.target_principal_id AND k.account = f.account
              AND k.kind IN ('list_keys', 'read_only_keys', 'list_connection_strings')
              AND k.time >= f.time AND k.time < utc_add(f.time, to_days($max_days))
        ) ORDER BY time LIMIT 1
    ) u ON true
),
described AS (
    SELECT *,
        role_name || ' on ' || coalesce(regexp_extract(scope, 'databaseaccounts/(.*)$', 1), account)
            || ' granted to ' || target_principal_id || ' by ' || coalesce(caller_name, caller_id, '?') || ' at '
            || strftime(time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC ('
            || concat_ws(' and ', CASE WHEN off_hours THEN 'outside the change window' END,
                                  CASE WHEN outsider THEN 'not by a listed admin' END) || ')' AS grant_text
    FROM used
)
SELECT time, 'control_changes' AS evidence_table, change_row AS row_id, target_principal_id AS principal_id,
       'account=' || account AS entity, grant_text || ', first used at ' || strftime(used_at::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC' AS detail
FROM described
WHERE time >= $from AND time < $to
UNION ALL
SELECT used_at, evidence_table, row_id, target_principal_id, 'account=' || account, 'first use: ' || what || ', after ' || grant_text
FROM described
WHERE used_at >= $from AND used_at < $to
