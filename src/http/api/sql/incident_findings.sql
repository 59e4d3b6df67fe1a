-- The findings of one incident in the order they began, with what linked each.
SELECT f.id, f.rule_id, f.title, f.severity, f.status, f.principal_id, f.entity, f.first_seen, f.last_seen,
       f.count, f.summary, f.status_by, f.status_at, m.linked_by, m.linked_to, m.added_at
FROM incident_findings m
JOIN findings f ON f.id = m.finding_id
WHERE m.incident_id = ?
ORDER BY f.first_seen, f.id
