-- CC6.2/CC6.3: every principal seen before $to (sign-ins or Cosmos DB requests), for access
-- review: `new` (first seen in [$from, $to)), `active` (seen before and in the period) or
-- `dormant` (seen before, not in the period), with its activity in the period.
WITH events AS (
    SELECT principal_id, time, 1 AS signin, CASE WHEN coalesce(error_code, 0) <> 0 THEN 1 ELSE 0 END AS failed, 0 AS request
    FROM signins
    WHERE principal_id IS NOT NULL AND time < $to AND batch_id <= $as_of
    UNION ALL
    SELECT principal_id, time, 0, 0, 1
    FROM cosmos_requests
    WHERE principal_id IS NOT NULL AND time < $to AND batch_id <= $as_of
),
activity AS (
    SELECT
        principal_id,
        min(time) AS first_seen,
        max(time) AS last_seen,
        sum(signin) FILTER (WHERE time >= $from)::BIGINT AS signins,
        sum(failed) FILTER (WHERE time >= $from)::BIGINT AS failed_signins,
        sum(request) FILTER (WHERE time >= $from)::BIGINT AS requests,
        min(time) FILTER (WHERE time >= $from) AS first_in_period,
        max(time) FILTER (WHERE time >= $from) AS last_in_period
    FROM events
    GROUP BY principal_id
),
names AS (
    SELECT
        principal_id,
        arg_max(CASE WHEN kind LIKE 'user%' THEN 'user' ELSE kind END, time) AS kind,
        arg_max(principal_name, time) FILTER (WHERE principal_name IS NOT NULL) AS principal_name,
        arg_max(app_display_name, time) FILTER (WHERE app_display_name IS NOT NULL) AS app_name
    FROM signins
    WHERE principal_id IS NOT NULL AND time < $to AND batch_id <= $as_of
    GROUP BY principal_id
)
SELECT
    a.principal_id,
    coalesce(n.kind, 'unknown') AS kind,
    n.principal_name,
    n.app_name,
    CASE WHEN a.first_seen >= $from THEN 'new' WHEN a.last_seen >= $from THEN 'active' ELSE 'dormant' END AS status,
    coalesce(a.signins, 0) AS signins,
    coalesce(a.failed_signins, 0) AS failed_signins,
    coalesce(a.requests, 0) AS requests,
    a.first_in_period,
    a.last_in_period,
    a.first_seen,
    a.last_seen,
    (epoch_us($to) - epoch_us(a.last_seen)) // 86400000000 AS days_since_last_seen
FROM activity a
LEFT JOIN names n USING (principal_id)
ORDER BY status, a.principal_id
