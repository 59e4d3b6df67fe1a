//! Every call into the operating system that Rust's standard library does not offer, and
//! so every `unsafe` outside DuckDB's C API (`store::ffi`): `lib.rs` denies `unsafe_code`
//! and allows it here only, so the compiler keeps it that way.
//!
//! - `files`: new files private (umask), older ones made private.
//! - `host`: the host name, and an instance's name.
//! - `memory`: the process's resident memory, the C allocator's counts.
//! - `mmap`: mapping files read-only, letting go of their pages.
//! - `priority`: lowering a thread's CPU priority.

#![allow(unsafe_code)]

pub mod files;
pub mod host;
pub mod memory;
pub mod mmap;
pub mod priority;

pub use files::{make_private, restrict_new_files};
pub use host::instance_name;
pub use memory::{
    malloc_bytes, peak_resident_bytes, resident_bytes, resident_split_bytes, rust_heap_committed_bytes,
    trim_free_memory,
};
