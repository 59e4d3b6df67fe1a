-- Alert claims (src/alerts/claims.rs): several `serve` instances reading the same
-- broadcast hubs raise the same findings (same fingerprint). Before routing a `raised` or
-- `reopened` event, an instance with [eventhubs.balance] shared_lake claims the finding's
-- episode in that lake, create-if-absent (`claims/alerts/<fingerprint>/<episode>.json`);
-- only the instance that won the claim sends the episode's alerts (raised, updated,
-- reopened, then its resolution or withdrawal). This is each claim's outcome, as this
-- instance saw it. A claim that could not be made (storage down) has no row: its event
-- waits, unrouted, and is claimed again next pass.
CREATE TABLE alert_claims (
    event_id BIGINT PRIMARY KEY,            -- the raised or reopened alert_events row that opened the episode
    finding_id BIGINT NOT NULL,
    fingerprint VARCHAR NOT NULL,
    episode INTEGER NOT NULL,               -- raised or reopened events of the finding before this one
    won BOOLEAN NOT NULL,                   -- this instance holds the claim and sends the episode's alerts
    holder VARCHAR NOT NULL,                -- the instance that holds it, or 'unreadable claim'
    claimed_at TIMESTAMPTZ NOT NULL         -- when this instance made (or found) the claim
);

-- Why an event went into no message (message_id 0): a later resolution, or an episode
-- claimed by another instance.
ALTER TABLE alert_pending ADD COLUMN superseded_reason VARCHAR;
