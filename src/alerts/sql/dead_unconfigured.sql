UPDATE alert_messages SET delivery = 'dead', dead_at = get_current_timestamp(),
       last_error = 'the destination is no longer configured'
WHERE delivery = 'pending' AND NOT list_contains(?::VARCHAR[], destination)
