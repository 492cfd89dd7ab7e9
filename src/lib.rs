//! Online backup for a graph database: a simulation-tested reference implementation of the model
//! of Neo4j's `neo4j-backup`.
//!
//! Layout, one sentence a module:
//! - [`io`]: the `Fs`, `Net` and `Clock` seams every other module does its I/O through, and
//!   their production implementations (`io::os`); the simulated ones live in `sim/`.
//! - [`graph`]: the user-visible data model: values, nodes, relationships, transaction ops.
//! - [`digest`]: the content digest, a multiset hash of the graph specified in `spec/digest.md`.
//! - [`config`]: the server configuration `neo4j.properties`: syntax, keys, defaults, validation.
//! - [`retention`]: the `keep_logical_logs` policy, the pruning decision and backup pins.
//! - [`store`]: the crash-safe store: record files, logical logs, commit, checkpoint, recovery,
//!   the offline tools (`generate`, `check`, `upgrade`).
//! - [`db`]: the open store shared by a running server's HTTP requests and backup service.
//! - [`server`]: the `neo4j` server around the store, and its HTTP API (`server::http`).
//! - [`backup`]: the backup protocol, the service inside the server, the full/incremental
//!   decision, the client `neo4j-backup` runs, the backup directory and restore.
//! - [`cli`], [`units`], [`progress`]: what the binaries share in reading arguments and in
//!   speaking to a person (sizes, durations, the progress bar).
//!
//! See ARCHITECTURE.md for the map, the layers and the invariants.

// The exemptions, a `statvfs` call and a `sync_file_range` call, are in `io::os`.
#![deny(unsafe_code)]

pub mod backup;
pub mod cli;
pub mod codec;
pub mod config;
pub mod db;
pub mod digest;
pub mod faults;
pub mod graph;
pub mod io;
pub mod progress;
pub mod retention;
pub mod server;
pub mod store;
pub mod units;
