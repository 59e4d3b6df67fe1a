UPDATE alert_messages SET delivery = 'sent', attempts = attempts + 1, last_attempt_at = ?, last_status = ?,
       last_error = NULL, sent_at = ?
WHERE id = ?
