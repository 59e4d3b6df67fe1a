//! The HTTP side: the API and pages of [`crate::http::api`], sign-in ([`crate::auth`]),
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! DuckDB calls are synchronous, so every handler runs its queries on a blocking
//! thread, never on the async executor.
//!
//! Direction: `app` → `router` → `api` → `ui` → `state` → `access`, `audit`, `callers`,
//! `pool`; `error` is every handler's; nothing here imports
//! this file (tests/modules checks it).

pub mod access;
pub mod api;
pub mod app;
pub mod audit;
pub mod callers;
pub mod error;
pub mod pool;
pub mod router;
pub mod state;
pub mod ui;

pub use app::{Application, Detection, Settings, SignIn, Source, SourceContext};
pub use router::{READY_WAIT, http_runtime, router};
pub use state::{AppState, Limits, StateParts};
