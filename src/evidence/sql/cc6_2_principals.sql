-- CC6.2/CC6.3: principals for access review: every principal seen before $to (sign-ins or
-- Cosmos DB requests) and every principal holding a role assignment reaching Cosmos DB at
-- $to (macro entitlements_at, migration 19), with its status:
--   new      first seen in [$from, $to);
--   active   seen before the period and in it;
--   dormant  not seen in the period: seen only before it, or never seen but holding an
--            assignment at $to (access granted and not used: a candidate for removal).
-- A group's members act with their own ids, so a group holding an assignment is listed as
-- `group`, not dormant. Rows of batches up to $as_of; inventory runs started by $made_at.
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
held AS (
    SELECT principal_id, count(*) AS assignments, bool_or(principal_kind = 'group') AS is_group
    FROM entitlements_at($to, $as_of, $made_at)
    GROUP BY principal_id
),
names AS (
    SELECT
        principal_id,
        arg_max(principal_name, time) FILTER (WHERE principal_name IS NOT NULL) AS principal_name,
        arg_max(app_display_name, time) FILTER (WHERE app_display_name IS NOT NULL) AS app_name
    FROM signins
    WHERE principal_id IS NOT NULL AND time < $to AND batch_id <= $as_of
    GROUP BY principal_id
),
everyone AS (
    SELECT principal_id FROM activity
    UNION
    SELECT principal_id FROM held
)
SELECT
    e.principal_id,
    coalesce(d.kind, 'unknown') AS kind,
    coalesce(n.principal_name, d.name) AS principal_name,
    n.app_name,
    CASE
        WHEN a.first_seen >= $from THEN 'new'
        WHEN a.last_seen >= $from THEN 'active'
        WHEN h.is_group THEN 'group'
        ELSE 'dormant'
    END AS status,
    coalesce(h.assignments, 0) AS assignments_at_end,
    coalesce(a.signins, 0) AS signins,
    coalesce(a.failed_signins, 0) AS failed_signins,
    coalesce(a.requests, 0) AS requests,
    a.first_in_period,
    a.last_in_period,
    a.first_seen,
    a.last_seen,
    (epoch_us($to) - epoch_us(a.last_seen)) // 86400000000 AS days_since_last_seen
FROM everyone e
LEFT JOIN activity a USING (principal_id)
LEFT JOIN held h USING (principal_id)
LEFT JOIN names n USING (principal_id)
LEFT JOIN principal_directory_at($as_of, $made_at) d ON d.principal_id = e.principal_id
ORDER BY status, e.principal_id
