-- One principal as the `principals` view shows it (migrations/0003_correlation.sql), with
-- both sources filtered to it first: the view groups every principal before filtering.
WITH s AS (
    SELECT
        principal_id,
        arg_max(CASE WHEN kind LIKE 'user%' THEN 'user' ELSE kind END, time) AS kind,
        arg_max(principal_name, time) FILTER (WHERE principal_name IS NOT NULL) AS principal_name,
        list_sort(list(DISTINCT principal_name) FILTER (WHERE principal_name IS NOT NULL)) AS names,
        arg_max(user_display_name, time) FILTER (WHERE user_display_name IS NOT NULL) AS display_name,
        arg_max(app_id, time) FILTER (WHERE app_id IS NOT NULL) AS app_id,
        arg_max(app_display_name, time) FILTER (WHERE app_display_name IS NOT NULL) AS app_name,
        min(time) AS first_signin,
        max(time) AS last_signin,
        count(*) AS signins,
        count(*) FILTER (WHERE coalesce(error_code, 0) <> 0) AS failed_signins
    FROM signins
    WHERE principal_id = ?
    GROUP BY principal_id
),
r AS (
    SELECT principal_id, min(time) AS first_data_op, max(time) AS last_data_op, count(*) AS data_ops
    FROM cosmos_requests
    WHERE principal_id = ?
    GROUP BY principal_id
)
SELECT
    principal_id,
    coalesce(s.kind, 'unknown') AS kind,
    s.principal_name,
    coalesce(s.names, []) AS names,
    s.display_name,
    s.app_id,
    s.app_name,
    least(s.first_signin, r.first_data_op) AS first_seen,
    greatest(s.last_signin, r.last_data_op) AS last_seen,
    coalesce(s.signins, 0) AS signins,
    coalesce(s.failed_signins, 0) AS failed_signins,
    coalesce(r.data_ops, 0) AS data_ops,
    s.first_signin,
    s.last_signin,
    r.first_data_op,
    r.last_data_op
FROM s
FULL OUTER JOIN r USING (principal_id)
