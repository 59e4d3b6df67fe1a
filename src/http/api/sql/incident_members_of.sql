-- The findings of a page of incidents (a JSON array of ids), each incident's in the order they began.
SELECT m.incident_id, f.id, f.rule_id, f.title, f.severity, f.status, f.principal_id, f.entity
FROM incident_findings m
JOIN findings f ON f.id = m.finding_id
WHERE m.incident_id IN (SELECT unnest(from_json(?, '["BIGINT"]')))
ORDER BY m.incident_id, f.first_seen, f.id
