-- A principal known only from the inventory (a role assignment, data-plane or Azure, and
-- no sign-in, data operation or change), in the columns of principal_profile.sql. $1 the
-- principal id. No row when the inventory does not name it.
WITH seen AS (
    SELECT principal_id, NULL AS principal_type, valid_from FROM data_role_assignments WHERE principal_id = lower($1)
    UNION ALL
    SELECT principal_id, principal_type, valid_from FROM azure_role_assignment_history WHERE principal_id = lower($1)
)
SELECT
    $1 AS principal_id,
    coalesce(lower(any_value(principal_type) FILTER (WHERE principal_type IS NOT NULL)), 'unknown') AS kind,
    NULL AS principal_name,
    []::VARCHAR[] AS names,
    NULL AS display_name,
    NULL AS app_id,
    NULL AS app_name,
    NULL AS first_seen,
    NULL AS last_seen,
    0 AS signins,
    0 AS failed_signins,
    0 AS data_ops,
    NULL AS first_signin,
    NULL AS last_signin,
    NULL AS first_data_op,
    NULL AS last_data_op
FROM seen
HAVING count(*) > 0
