//! The integration tests, one crate: the bundled DuckDB links into one test binary, not
//! one per file. Each module is what was a file of tests/; `cargo test --release --test
//! it <module>::` runs one. tests/memory.rs stays a binary of its own: it counts the
//! process's heap.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod alerts;
mod api;
mod auth;
mod azurite;
mod blob_checkpoints;
mod browser;
mod changes;
mod cli;
mod cosmos_queries;
mod demo_access;
mod detections;
mod eventhubs;
mod evidence;
mod evidence_access;
mod evidence_report;
mod evidence_sample;
mod exactly_once;
mod fast_path;
mod finding_chain;
mod formats;
mod fuzz;
mod incidents;
mod incidents_ui;
mod inventory;
mod investigation_ui;
mod lake;
mod lake_answers;
mod lake_journal;
mod modules;
mod oncall_ui;
mod parsing;
mod process;
mod reviews;
mod reviews_ui;
mod rule_cases;
mod rules;
mod samples;
mod scale_out;
mod shared_findings;
mod store;
mod synth_golden;
mod ui;
mod upgrade;
