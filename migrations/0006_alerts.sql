-- Alert hooks (src/alerts): the durable outbox of finding changes and the messages
-- sent to chat and webhook destinations.
--
-- alert_events is written in the same transaction as the finding change that caused it
-- (src/sql/refresh_findings.sql for the engine, src/rules/findings.rs for people), so a
-- change is never committed without its notification, nor a notification without its
-- change. The delivery worker routes each event to the destinations of the matching
-- routes (alert_pending), groups what waits for a destination into messages
-- (alert_messages) and sends them; each step is one transaction.

CREATE SEQUENCE alert_event_ids START 1;
CREATE TABLE alert_events (
    id BIGINT PRIMARY KEY DEFAULT nextval('alert_event_ids'),
    finding_id BIGINT NOT NULL,
    change VARCHAR NOT NULL,                -- raised, updated, reopened (firing); resolved, withdrawn (resolved)
    created_at TIMESTAMPTZ NOT NULL,        -- wall clock of the change's transaction
    routed_at TIMESTAMPTZ                   -- when the worker routed it (NULL: not yet)
);

-- One row per event per destination it was routed to, until it goes into a message.
CREATE TABLE alert_pending (
    destination VARCHAR NOT NULL,           -- a destination's name in [[alerts.destinations]]
    event_id BIGINT NOT NULL,
    finding_id BIGINT NOT NULL,
    change VARCHAR NOT NULL,
    message_id BIGINT                       -- the message it went into; 0: superseded by a later resolution
);

CREATE SEQUENCE alert_message_ids START 1;
-- One message to one destination, with every attempt to deliver it.
CREATE TABLE alert_messages (
    id BIGINT PRIMARY KEY DEFAULT nextval('alert_message_ids'),
    webhook_id VARCHAR NOT NULL UNIQUE,     -- idempotency key, the same on every attempt (`webhook-id` header)
    destination VARCHAR NOT NULL,
    destination_kind VARCHAR NOT NULL,      -- slack, teams, webhook
    alert_status VARCHAR NOT NULL,          -- firing, resolved
    finding_ids BIGINT[] NOT NULL,
    body VARCHAR NOT NULL,                  -- the JSON sent, fixed when the message is made
    delivery VARCHAR NOT NULL,              -- pending, sent, dead
    attempts INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    give_up_at TIMESTAMPTZ NOT NULL,        -- a failure after this makes it dead
    last_attempt_at TIMESTAMPTZ,
    last_status INTEGER,                    -- HTTP status of the last answer (NULL: none came)
    last_error VARCHAR,                     -- why the last attempt failed (never a URL or key)
    sent_at TIMESTAMPTZ,
    dead_at TIMESTAMPTZ,
    retried_by VARCHAR,                     -- who last sent a dead message again by hand
    retried_at TIMESTAMPTZ
);
