-- CC7.3/CC7.4: the findings of cc7_2_findings.sql as they stood at the period's end: who
-- acknowledged and resolved each and when, and the minutes from raised to the first response
-- by a person (acknowledged, resolved or suppressed). Changes after $to are not counted: a
-- finding not answered by the period's end shows no response.
WITH h AS (
    SELECT
        finding_id,
        min(changed_at) FILTER (WHERE to_status = 'acknowledged') AS acknowledged_at,
        arg_min(changed_by, (changed_at, id)) FILTER (WHERE to_status = 'acknowledged') AS acknowledged_by,
        max(changed_at) FILTER (WHERE to_status = 'resolved') AS resolved_at,
        arg_max(changed_by, (changed_at, id)) FILTER (WHERE to_status = 'resolved') AS resolved_by,
        min(changed_at) FILTER (WHERE changed_by <> 'tokentrail' AND to_status IN ('acknowledged', 'resolved', 'suppressed')) AS first_response_at,
        count(*) AS changes
    FROM finding_history
    WHERE changed_at < $to
    GROUP BY finding_id
)
SELECT
    f.id,
    f.rule_id,
    f.severity,
    f.title,
    f.principal_id,
    n.principal_name,
    f.entity,
    f.created_at AS raised_at,
    at_end.status AS status_at_end,
    h.acknowledged_at,
    h.acknowledged_by,
    h.resolved_at,
    h.resolved_by,
    h.first_response_at,
    (epoch_us(h.first_response_at) - epoch_us(f.created_at)) // 60000000 AS minutes_to_respond,
    (epoch_us(h.resolved_at) - epoch_us(f.created_at)) // 60000000 AS minutes_to_resolve,
    at_end.status_comment,
    coalesce(h.changes, 0) AS changes
FROM findings_in($from, $to, $made_at) f
LEFT JOIN findings_at($to) at_end USING (id)
LEFT JOIN h ON h.finding_id = f.id
LEFT JOIN principal_names($as_of) n ON n.principal_id = f.principal_id
ORDER BY f.id
