SELECT count(*)
FROM incident_findings m
JOIN findings f ON f.id = m.finding_id
JOIN finding_evidence e ON e.fingerprint = f.fingerprint
WHERE m.incident_id = ?
