SELECT group_key, epoch_us(max(created_at)) FROM alert_messages
WHERE destination = ? AND alert_status = 'firing' AND list_contains(?::VARCHAR[], group_key)
GROUP BY group_key
