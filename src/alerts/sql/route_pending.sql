INSERT INTO alert_pending (destination, event_id, finding_id, change, message_id, superseded_reason)
SELECT unnest(?::VARCHAR[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::BIGINT[]),
       unnest(?::VARCHAR[])
