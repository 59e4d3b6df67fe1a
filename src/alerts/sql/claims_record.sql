INSERT OR IGNORE INTO alert_claims (event_id, finding_id, fingerprint, episode, won, holder, claimed_at)
SELECT unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::INTEGER[]), unnest(?::BOOLEAN[]),
       unnest(?::VARCHAR[]), unnest(?::TIMESTAMPTZ[])
