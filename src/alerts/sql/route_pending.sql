INSERT INTO alert_pending (destination, event_id, finding_id, change)
SELECT unnest(?::VARCHAR[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::VARCHAR[])
