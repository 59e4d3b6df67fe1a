UPDATE alert_messages SET delivery = 'pending', next_attempt_at = ?, give_up_at = ?, dead_at = NULL,
       retried_by = ?, retried_at = ?
WHERE id = ?
