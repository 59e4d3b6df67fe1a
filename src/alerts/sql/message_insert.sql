INSERT INTO alert_messages (webhook_id, destination, destination_kind, alert_status, finding_ids, body,
    delivery, attempts, created_at, next_attempt_at, give_up_at, group_key)
VALUES (?, ?, ?, ?, ?::BIGINT[], ?, 'pending', 0, ?, ?, ?, ?)
RETURNING id
