SELECT id, severity, status, principal_id, entity, first_seen, last_seen, count, summary FROM findings
WHERE rule_id = ? AND last_seen >= ? AND first_seen < ? ORDER BY last_seen DESC LIMIT 500
