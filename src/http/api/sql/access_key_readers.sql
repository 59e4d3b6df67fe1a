-- Who may list each current account's keys: Azure role assignments in force at the account
-- or above whose role is one of cosmos_roles of kind 'keys', local auth on or off.
SELECT
    a.resource_id AS account_resource_id,
    r.principal_id, r.principal_type, r.role_definition_id,
    coalesce(r.role_name, c.role_name, r.role_definition_id) AS role_name,
    r.scope, r.assignment_id
FROM cosmos_accounts a
JOIN azure_role_assignment_history r ON r.valid_to IS NULL AND scope_covers(r.scope, a.resource_id)
JOIN cosmos_roles c ON c.role_definition_id = r.role_definition_id AND c.kind = 'keys'
WHERE a.valid_to IS NULL
ORDER BY a.resource_id, r.principal_id, role_name, r.scope
