-- CC7.2: the findings raised with evidence in [$from, $to) (withdrawn ones left out), with the
-- first and last time and the count of that evidence.
SELECT
    f.id,
    f.rule_id,
    f.severity,
    f.title,
    f.status,
    f.principal_id,
    f.entity,
    min(e.time) AS first_evidence,
    max(coalesce(e.end_time, e.time)) AS last_evidence,
    count(*) AS evidence_in_period,
    f.created_at,
    f.summary
FROM findings f
JOIN finding_evidence e ON e.fingerprint = f.fingerprint AND e.time >= $from AND e.time < $to
WHERE f.status <> 'withdrawn'
GROUP BY ALL
ORDER BY f.id
