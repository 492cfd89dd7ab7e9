//! Online backup (spec/protocol.md, spec/backup.md): the wire protocol, the service inside the
//! server, the client that `neo4j-backup` runs, and the client's view of a backup directory.
//!
//! Owns: everything between a running server's store and a backup directory.
//! Must not touch: the HTTP API, or any I/O except through the `Env` seams, so the simulations
//! run the same code over turmoil's network and disks.
//!
//! Layout: `protocol` (frames and messages), `service` (server side), `client` (what the tool
//! does), `target` (the backup directory: lock, generations, pointer switch, leftovers),
//! `manifest` (what a generation holds, block by block, and verifying it), `catalogue`
//! (`neo4j-admin backup-info`: the generations and what each can restore),
//! `restore` (`neo4j-admin restore`: a verified copy of a backup into a store directory),
//! `rewrite` (`neo4j-admin upgrade` and `aggregate` of a backup in an object store: the live
//! generation rewritten into a new one), `objects` (object
//! storage targets, spec/objects.md), `tls`
//! (TLS with client certificates on the backup port, spec/security.md).

pub mod catalogue;
pub mod client;
pub mod decision;
pub mod history;
pub mod manifest;
pub mod objects;
pub mod protocol;
pub mod restore;
pub mod rewrite;
pub mod service;
pub mod target;
pub mod tls;
