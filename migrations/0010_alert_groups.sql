-- Alert messages are grouped by what belongs together (src/alerts/outbox.rs): one rule
-- about one principal, or one entity when the finding names no principal. A group's
-- first message waits `group_wait_ms` for the rest of its changes; later ones at most one
-- per `group_interval_secs`, timed from the group's last message, which this names.
ALTER TABLE alert_messages ADD COLUMN group_key VARCHAR;
