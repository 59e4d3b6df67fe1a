-- A page of the evidence events of an incident's findings, in time order: its story.
SELECT e.time, e.end_time, m.finding_id, f.rule_id, e.evidence_table, e.row_id, e.detail
FROM incident_findings m
JOIN findings f ON f.id = m.finding_id
JOIN finding_evidence e ON e.fingerprint = f.fingerprint
WHERE m.incident_id = ?
ORDER BY e.time, m.finding_id, e.row_id
LIMIT ? OFFSET ?
