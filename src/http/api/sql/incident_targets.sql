-- Whom the incident's sign-ins went after (a spray's targets): each principal's sign-ins
-- among the evidence, and how many succeeded.
SELECT s.principal_id,
       arg_max(s.principal_name, s.time) AS principal_name,
       count(*) AS attempts,
       count(*) FILTER (WHERE s.error_code = 0) AS succeeded,
       min(s.time) AS first,
       max(s.time) AS last,
       (list(DISTINCT s.ip_address) FILTER (WHERE s.ip_address IS NOT NULL))[1:5] AS addresses
FROM signins s
WHERE s.rowid IN (
    SELECT e.row_id
    FROM incident_findings m
    JOIN findings f ON f.id = m.finding_id
    JOIN finding_evidence e ON e.fingerprint = f.fingerprint
    WHERE m.incident_id = ? AND e.evidence_table = 'signins')
GROUP BY s.principal_id
ORDER BY attempts DESC, s.principal_id
LIMIT 100
