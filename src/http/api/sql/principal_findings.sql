-- A principal's findings that overlap a period ($1 principal, $2 from, $3 to).
SELECT id, rule_id, title, severity, status, entity, first_seen, last_seen, count FROM findings
WHERE principal_id = $1 AND last_seen >= $2 AND first_seen < $3
ORDER BY last_seen DESC, id LIMIT 200
