//! pcsync's runtime: everything that performs I/O. The engine decides what a pack
//! run writes and how it ends; the runtime reads what the engine needs, performs the
//! writes, and keeps the inbox, the effect journal, pack state and echo memory in
//! SQLite.
//!
//! - [`store`]: the durable state, behind the traits its users need.
//! - [`service`]: ingest (webhooks, EventBridge), the worker, schedules, hot reload,
//!   the Solutions API and metrics.
// No unsafe code but one module: the SIGBUS handler that keeps a WAL index that
// cannot be written from killing the process (`store/sqlite/wal_index.rs`).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod config;
pub mod service;
pub mod store;
