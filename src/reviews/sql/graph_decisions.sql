-- A review's items with their latest decision, as Graph's decision items name things.
SELECT
    uuid,
    decision,
    justification,
    decided_by_oid,
    decided_by_name,
    strftime(decided_at, '%Y-%m-%dT%H:%M:%S.%fZ'),
    CASE recommendation WHEN 'approve' THEN 'Approve' WHEN 'revoke' THEN 'Deny' ELSE 'NoInfoAvailable' END,
    CASE principal_kind
        WHEN 'user' THEN '#microsoft.graph.userIdentity'
        WHEN 'group' THEN '#microsoft.graph.groupIdentity'
        WHEN 'service_principal' THEN '#microsoft.graph.servicePrincipalIdentity'
        WHEN 'managed_identity' THEN '#microsoft.graph.servicePrincipalIdentity'
        ELSE '#microsoft.graph.identity'
    END,
    principal_id,
    principal_name,
    CASE WHEN principal_kind = 'user' THEN 'https://graph.microsoft.com/v1.0/users/' || principal_id
         WHEN principal_kind = 'group' THEN 'https://graph.microsoft.com/v1.0/groups/' || principal_id
         WHEN principal_kind IN ('service_principal', 'managed_identity') THEN 'https://graph.microsoft.com/v1.0/servicePrincipals/' || principal_id
         ELSE 'https://graph.microsoft.com/v1.0/directoryObjects/' || principal_id END,
    scope,
    coalesce(role_name, role_definition_id) || ' on ' || coalesce(account, scope),
    CASE plane WHEN 'data' THEN 'cosmosDbDataPlaneRoleAssignment' ELSE 'azureRoleAssignment' END,
    assignment_id,
    role_definition_id,
    role_name,
    scope,
    plane,
    strftime(last_use, '%Y-%m-%dT%H:%M:%S.%fZ'),
    to_json(used_actions)::VARCHAR,
    advice
FROM access_review_decisions
WHERE review_id = ?
ORDER BY item_id
