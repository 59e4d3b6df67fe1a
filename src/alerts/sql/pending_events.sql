SELECT p.event_id, p.finding_id, p.change, epoch_us(e.created_at) FROM alert_pending p
JOIN alert_events e ON e.id = p.event_id
WHERE p.destination = ? AND p.message_id IS NULL ORDER BY p.event_id
