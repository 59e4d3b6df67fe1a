-- One principal's Azure (control-plane) role assignments in force ($1 the principal id),
-- with the role's name when known and whether it lets its holder list account keys
-- (cosmos_roles of kind 'keys').
SELECT
    r.assignment_id, r.principal_type, r.role_definition_id,
    coalesce(r.role_name, c.role_name) AS role_name,
    r.scope, r.valid_from AS granted_since,
    coalesce(c.kind = 'keys', false) AS reads_keys
FROM azure_role_assignment_history r
LEFT JOIN cosmos_roles c ON c.role_definition_id = r.role_definition_id
WHERE r.valid_to IS NULL AND r.principal_id = lower($1)
ORDER BY reads_keys DESC, r.scope, role_name
