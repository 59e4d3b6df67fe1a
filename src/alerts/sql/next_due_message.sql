SELECT id, webhook_id, body, attempts, epoch_us(give_up_at), epoch_us(next_attempt_at)
FROM alert_messages WHERE destination = ? AND delivery = 'pending' ORDER BY id LIMIT 1
