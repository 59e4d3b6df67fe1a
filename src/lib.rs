//! TokenTrail: audit log analytics for Azure Cosmos DB and Microsoft Entra ID.
//!
//! See ARCHITECTURE.md for the bird's eye view and the code map.

// `unsafe` only where an `allow` says why: `sys` (the operating system) and
// `store::ffi` (DuckDB's C API).
#![deny(unsafe_code)]

pub mod alerts;
pub mod auth;
pub mod cli;
pub mod config;
pub mod evidence;
pub mod http;
pub mod ingest;
pub mod inventory;
pub mod lake;
pub mod metrics;
pub mod periodic;
pub mod progress;
pub mod record;
pub mod reviews;
pub mod rules;
pub mod source;
pub mod store;
pub mod synth;
pub mod sys;
