-- A principal known only from the changes it made or that were made to it (an administrator
-- who works in the portal, a group's new member), or only from the inventory (a role
-- assignment, data-plane or Azure, not used yet), in the columns of principal_profile.sql.
-- $1 the principal id. No row when neither names it.
WITH c AS (
    SELECT
        time,
        CASE WHEN actor_id = lower($1) THEN actor_name
             WHEN source = 'directory_changes' THEN target_name END AS name,
        NULL AS principal_type
    FROM identity_changes
    WHERE actor_id = lower($1) OR target_id = lower($1)
    UNION ALL
    SELECT NULL, NULL, NULL FROM data_role_assignments WHERE principal_id = lower($1)
    UNION ALL
    SELECT NULL, NULL, principal_type FROM azure_role_assignment_history WHERE principal_id = lower($1)
)
SELECT
    $1 AS principal_id,
    coalesce(lower(any_value(principal_type) FILTER (WHERE principal_type IS NOT NULL)), 'unknown') AS kind,
    arg_max(name, time) FILTER (WHERE name IS NOT NULL) AS principal_name,
    coalesce(list_sort(list(DISTINCT name) FILTER (WHERE name IS NOT NULL)), []) AS names,
    NULL AS display_name,
    NULL AS app_id,
    NULL AS app_name,
    min(time) AS first_seen,
    max(time) AS last_seen,
    0 AS signins,
    0 AS failed_signins,
    0 AS data_ops,
    NULL AS first_signin,
    NULL AS last_signin,
    NULL AS first_data_op,
    NULL AS last_data_op
FROM c
HAVING count(*) > 0
