-- The findings with evidence in [$from, $to), with the first and last time and the count of
-- that evidence (not of all time). Withdrawn findings are left out. For `tokentrail detect`.
WITH names AS (
    SELECT principal_id, arg_max(principal_name, time) AS principal_name
    FROM signins
    WHERE principal_name IS NOT NULL AND principal_id IN (SELECT principal_id FROM findings)
    GROUP BY principal_id
)
SELECT
    f.id,
    f.rule_id AS rule,
    f.severity,
    f.status,
    f.principal_id,
    n.principal_name,
    f.entity,
    strftime(min(e.time)::TIMESTAMP, '%Y-%m-%dT%H:%M:%S.%fZ') AS first_seen,
    strftime(max(coalesce(e.end_time, e.time))::TIMESTAMP, '%Y-%m-%dT%H:%M:%S.%fZ') AS last_seen,
    count(*) AS count,
    f.title,
    f.summary,
    f.fingerprint
FROM findings f
JOIN finding_evidence e ON e.fingerprint = f.fingerprint AND e.time >= $from AND e.time < $to
LEFT JOIN names n ON n.principal_id = f.principal_id
WHERE f.status <> 'withdrawn'
GROUP BY f.id, f.rule_id, f.severity, f.status, f.principal_id, n.principal_name, f.entity, f.title, f.summary, f.fingerprint
ORDER BY
    CASE f.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END,
    min(e.time),
    f.id
