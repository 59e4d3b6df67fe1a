-- CC7.2: the findings known when the pack was made ($made_at) with evidence in
-- [$from, $to), or raised in the period, with their status at the period's end (from
-- finding_history: a later acknowledgement does not change a closed period; empty when the
-- finding was raised after the end, e.g. for logs ingested late), the first and last time and
-- the count of that evidence, and the rule's detail of the latest. Findings withdrawn by
-- $made_at (their data no longer matches) are left out.
WITH evidence AS (
    SELECT
        fingerprint,
        min(time) AS first_evidence,
        max(coalesce(end_time, time)) AS last_evidence,
        count(*) AS evidence_in_period,
        arg_max(detail, time) AS latest_detail
    FROM finding_evidence
    WHERE time >= $from AND time < $to
    GROUP BY fingerprint
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
    e.first_evidence,
    e.last_evidence,
    coalesce(e.evidence_in_period, 0) AS evidence_in_period,
    e.latest_detail
FROM findings_in($from, $to, $made_at) f
LEFT JOIN findings_at($to) at_end USING (id)
LEFT JOIN evidence e ON e.fingerprint = f.fingerprint
LEFT JOIN principal_names($as_of) n ON n.principal_id = f.principal_id
ORDER BY f.id
