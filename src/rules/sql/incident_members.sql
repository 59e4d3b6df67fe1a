-- Every finding with an incident, and every one without that is not withdrawn, oldest first.
SELECT f.id, f.principal_id, f.entity, epoch_us(f.first_seen), epoch_us(f.last_seen), m.incident_id
FROM findings f
LEFT JOIN incident_findings m ON m.finding_id = f.id
WHERE m.incident_id IS NOT NULL OR f.status <> 'withdrawn'
ORDER BY f.id
