//! Alert hooks: findings to Slack, Microsoft Teams and signed generic webhooks.
//!
//! Contract:
//! - **Never lost.** Every finding change that may alert (raised, updated with new
//!   evidence while open, reopened, withdrawn, resolved) writes a row of `alert_events` in
//!   the same DuckDB transaction as the change itself (`src/sql/refresh_findings.sql`,
//!   `rules::findings::set_status`). The worker routes each event to the destinations of
//!   the routes it matches (`alert_pending`), groups them into messages (`alert_messages`,
//!   body fixed when made) and sends them; each step is one transaction, so a crash at any
//!   point resumes from what was committed.
//! - **Once, by `webhook-id`.** A message has one `webhook-id`, sent with every attempt. It
//!   is marked sent only after the destination acknowledged it; a message acknowledged and
//!   recorded is never sent again. Delivery is at least once: a crash between the
//!   destination's answer and that record sends the message again after restart, with the
//!   same `webhook-id`, which a receiver uses to drop the repeat. So each message reaches a
//!   destination that deduplicates by `webhook-id` exactly once; Slack and Teams do not
//!   deduplicate, and may show such a repeat (only a message in flight at a crash).
//! - **Retries.** No answer, a timeout, 408, 429, 5xx, or a 2xx whose body reports an
//!   error (Teams) is tried again after exponential backoff with jitter, or after the
//!   destination's `Retry-After`. Other 4xx, or failing past `give_up_after_secs`, make the
//!   message dead: listed by the API, sent again by hand (`POST /api/alerts/messages/{id}/retry`).
//! - **No storms.** Per destination, at most one message of new and updated findings per
//!   `group_interval_secs` (the first goes at once; what comes meanwhile waits and goes in
//!   one message). Resolutions go at once, in their own message.
//! - **One instance sends.** Instances sharing a lake (`[eventhubs.balance] shared_lake`)
//!   raise the same findings from the same broadcast hubs; each claims a finding's episode
//!   there, create-if-absent, before routing it, and only the winner sends it
//!   ([`claims`], migration 27). A claim that cannot be made holds the episode's events
//!   unrouted until it can.
//! - **Secrets** (webhook URLs, signing keys) come from the environment or a file, and are
//!   never logged, stored or returned.

pub mod claims;
pub mod config;
pub mod deliver;
pub mod outbox;
pub mod payload;
pub mod worker;

pub use config::{Alerts, AlertsConfig, DestinationKind};
pub use worker::{AlertWorker, start};
