//! `neo4j-backup` as operators use it: the real binaries (`neo4j`, `neo4j-backup`,
//! `neo4j-admin`), real TCP, real files. Each test names the rules of spec/backup.md (BK-) and
//! spec/protocol.md (PR-) it checks.
//!
//! One module per topic; the helpers they share are in `helpers`, those of the whole test suite
//! in `tests/support/`.

#[path = "../support/mod.rs"]
mod support;

mod helpers;

mod command_line;
mod crashes;
mod directory;
mod failures;
mod fallback;
mod full_incremental;
mod history;
mod hostile;
mod manifest;
mod objects;
mod output;
mod protocol_by_hand;
mod refusals;
mod restore;
mod verification;
