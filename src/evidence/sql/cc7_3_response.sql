-- CC7.3/CC7.4: each finding with evidence in [$from, $to) or raised in it, with who
-- acknowledged and resolved it and when, and the minutes from raised to the first response
-- by a person (acknowledged, resolved or suppressed).
WITH chosen AS (
    SELECT id FROM findings WHERE created_at >= $from AND created_at < $to
    UNION
    SELECT f.id FROM findings f JOIN finding_evidence e ON e.fingerprint = f.fingerprint
    WHERE e.time >= $from AND e.time < $to
),
h AS (
    SELECT
        finding_id,
        min(changed_at) FILTER (WHERE to_status = 'acknowledged') AS acknowledged_at,
        arg_min(changed_by, changed_at) FILTER (WHERE to_status = 'acknowledged') AS acknowledged_by,
        max(changed_at) FILTER (WHERE to_status = 'resolved') AS resolved_at,
        arg_max(changed_by, changed_at) FILTER (WHERE to_status = 'resolved') AS resolved_by,
        min(changed_at) FILTER (WHERE changed_by <> 'tokentrail' AND to_status IN ('acknowledged', 'resolved', 'suppressed')) AS first_response_at,
        count(*) AS changes
    FROM finding_history
    GROUP BY finding_id
)
SELECT
    f.id,
    f.rule_id,
    f.severity,
    f.title,
    f.principal_id,
    f.entity,
    f.created_at AS raised_at,
    f.status,
    h.acknowledged_at,
    h.acknowledged_by,
    h.resolved_at,
    h.resolved_by,
    h.first_response_at,
    date_diff('minute', f.created_at::TIMESTAMP, h.first_response_at::TIMESTAMP) AS minutes_to_respond,
    date_diff('minute', f.created_at::TIMESTAMP, h.resolved_at::TIMESTAMP) AS minutes_to_resolve,
    f.status_comment,
    coalesce(h.changes, 0) AS changes
FROM findings f
JOIN chosen USING (id)
LEFT JOIN h ON h.finding_id = f.id
ORDER BY f.id
