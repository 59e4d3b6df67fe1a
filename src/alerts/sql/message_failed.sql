UPDATE alert_messages SET delivery = ?, attempts = attempts + 1, last_attempt_at = ?, last_status = ?,
       last_error = ?, next_attempt_at = ?, dead_at = ?
WHERE id = ?
