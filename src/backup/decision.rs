//! The full-or-incremental decision (spec/backup.md, BK-10 .. BK-15, BK-25, BK-46, BK-47, BK-50): pure
//! functions from what the target holds, the mode asked for and what the server says, to what a
//! run does next, with a typed reason.
//!
//! Owns: the rule, in one place. A run (`client::run`) and a plan (`client::plan`) both call it,
//! so what `--plan` says is what a run does.
//! Must not touch: any I/O. The caller reads the target and talks to the server; this module
//! only decides, so a table-driven test covers every combination.

use crate::digest::Digest;
use crate::faults::{self, Switch};
use crate::store::format::FormatVersion;
use crate::store::meta::StoreId;

/// Which backup the operator asked for (`--type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Incremental when possible, else full (BK-10, BK-11).
    Auto,
    /// Always full, into a new generation (BK-18).
    Full,
    /// Incremental or exit 7 (BK-12).
    Incremental,
}

/// What the server said about itself in the handshake (PR-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    pub store_id: StoreId,
    pub format: FormatVersion,
    pub last_committed_tx: u64,
    pub oldest_logged_tx: u64,
    /// Total bytes of the record files: what a full backup copies.
    pub store_bytes: u64,
}

/// The backup the target holds before the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Existing {
    pub store_id: StoreId,
    pub format: FormatVersion,
    /// The last whole transaction recovery would reach, and the digest after it.
    pub last_tx: u64,
    pub digest: Digest,
    /// Its last verification failed (BK-28).
    pub unverified: bool,
}

/// Why a run takes a full backup; under `--type incremental`, why it cannot take an
/// incremental one (then the run exits 7 saying so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullReason {
    /// The target holds no backup yet (BK-10).
    NoBackup,
    /// `--type full` was asked for (BK-18).
    Asked,
    /// The backup is marked unverified: its last verification failed (BK-28).
    Unverified,
    /// The server's logs no longer hold `needed`, the backup's next tx (BK-11).
    LogsPruned { needed: u64, oldest: u64 },
    /// At the backup's last tx the two histories' digests differ (BK-11).
    Diverged {
        tx: u64,
        backup: Digest,
        server: Digest,
    },
    /// An object store backup holds as many transaction segments as it may, or segments
    /// larger than the store files they follow (`by_size`: their bytes and that bound): a new
    /// full generation consolidates them, so restore time stays bounded (OBJ-12).
    Consolidate {
        segments: u32,
        by_size: Option<(u64, u64)>,
    },
}

impl FullReason {
    /// The reason as the tool prints it, for the target `dir`.
    pub fn describe(&self, dir: &str) -> String {
        match self {
            FullReason::NoBackup => format!("{dir} holds no backup yet"),
            FullReason::Asked => "--type full was asked for".to_string(),
            FullReason::Unverified => {
                format!("the backup in {dir} is marked unverified (its last verification failed)")
            }
            FullReason::LogsPruned { needed, oldest } => format!(
                "the server's logs no longer hold tx {needed}, which the backup needs next (the oldest it has is tx {oldest})"
            ),
            FullReason::Diverged {
                tx,
                backup,
                server,
            } => format!(
                "the backup's history diverged from the server's: at tx {tx} the backup's digest is {backup} but the server's is {server}"
            ),
            FullReason::Consolidate {
                segments,
                by_size: None,
            } => format!(
                "the backup in {dir} holds {segments} transaction segments, the most it keeps: a new full generation consolidates them"
            ),
            FullReason::Consolidate {
                segments,
                by_size: Some((bytes, bound)),
            } => format!(
                "the backup in {dir} holds {segments} transaction segment{} of {}, more than {} (its store files, or 1 MiB at least): a new full generation consolidates them",
                if *segments == 1 { "" } else { "s" },
                crate::units::bytes(*bytes),
                crate::units::bytes(*bound)
            ),
        }
    }

    /// Whether this full backup stands in for an incremental one the server could not serve
    /// (`fell_back` in `--json`, BK-43).
    pub fn is_fallback(&self) -> bool {
        matches!(
            self,
            FullReason::LogsPruned { .. } | FullReason::Diverged { .. }
        )
    }

    /// A stable name for `--json` (`reason_code`, BK-43).
    pub fn code(&self) -> &'static str {
        match self {
            FullReason::NoBackup => "no_backup",
            FullReason::Asked => "asked",
            FullReason::Unverified => "unverified",
            FullReason::LogsPruned { .. } => "logs_pruned",
            FullReason::Diverged { .. } => "diverged",
            FullReason::Consolidate { .. } => "consolidate",
        }
    }
}

/// What the run does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A full backup into a new generation.
    Full(FullReason),
    /// Ask the server for the transactions after the backup's last tx (PR-14).
    AskIncremental(Existing),
}

/// A refusal: the run changes nothing and exits with the code of BK-40.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The target holds a backup of another store (BK-14, exit 4).
    OtherStore { backup: StoreId, server: StoreId },
    /// The target holds a backup in another format version (BK-15, exit 5).
    OtherFormat {
        backup: FormatVersion,
        server: FormatVersion,
    },
    /// The backup is ahead of the server: replacing it would go back in time (BK-46, exit 7).
    Ahead { backup_tx: u64, server_tx: u64 },
    /// `--type incremental`, and an incremental backup is impossible (BK-12, exit 7).
    IncrementalImpossible(FullReason),
}

/// What the server answered an incremental request with, when it did not stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerRefusal {
    LogsPruned {
        needed: u64,
        oldest: u64,
    },
    Diverged {
        tx: u64,
        server: Digest,
    },
    /// The server never had the backup's last tx: its last tx is lower (the backup is ahead).
    NeverHad {
        tx: u64,
        server_last_tx: u64,
    },
    OtherStore {
        server: StoreId,
    },
    OtherFormat {
        server: FormatVersion,
    },
}

/// The decision before the server is asked anything but the handshake: from what the target
/// holds (`None`: nothing), the mode and the welcome. Refusals come first, in the order of their
/// exit codes: another store (4), another format (5, unless `--type full`), a backup ahead of
/// the server (7, unless `--type full`); then full or an incremental request.
pub fn decide(
    existing: Option<&Existing>,
    mode: Mode,
    server: &ServerInfo,
) -> Result<Step, Refusal> {
    let Some(backup) = existing else {
        return match mode {
            Mode::Incremental => Err(Refusal::IncrementalImpossible(FullReason::NoBackup)),
            Mode::Auto | Mode::Full => Ok(Step::Full(FullReason::NoBackup)),
        };
    };
    if backup.store_id != server.store_id && !faults::on(Switch::SkipStoreIdCheck) {
        return Err(Refusal::OtherStore {
            backup: backup.store_id,
            server: server.store_id,
        });
    }
    if mode == Mode::Full {
        // BK-18, BK-47: an explicit full backup replaces the backup once it is complete, whatever
        // its format or tx.
        return Ok(Step::Full(FullReason::Asked));
    }
    if backup.format != server.format {
        return Err(Refusal::OtherFormat {
            backup: backup.format,
            server: server.format,
        });
    }
    if backup.last_tx > server.last_committed_tx {
        return Err(Refusal::Ahead {
            backup_tx: backup.last_tx,
            server_tx: server.last_committed_tx,
        });
    }
    if backup.unverified {
        return fall_back(mode, FullReason::Unverified).map(Step::Full);
    }
    Ok(Step::AskIncremental(*backup))
}

/// The decision after the server refused an incremental request: a full backup under `auto`,
/// a refusal under `--type incremental`, and a refusal in every mode when the server says the
/// backup is ahead of it or belongs to another store or format.
pub fn after_server_refusal(
    mode: Mode,
    backup: &Existing,
    answer: ServerRefusal,
) -> Result<FullReason, Refusal> {
    match answer {
        ServerRefusal::LogsPruned { needed, oldest } => {
            fall_back(mode, FullReason::LogsPruned { needed, oldest })
        }
        ServerRefusal::Diverged { tx, server } => fall_back(
            mode,
            FullReason::Diverged {
                tx,
                backup: backup.digest,
                server,
            },
        ),
        ServerRefusal::NeverHad { tx, server_last_tx } => Err(Refusal::Ahead {
            backup_tx: tx,
            server_tx: server_last_tx,
        }),
        ServerRefusal::OtherStore { server } => Err(Refusal::OtherStore {
            backup: backup.store_id,
            server,
        }),
        ServerRefusal::OtherFormat { server } => Err(Refusal::OtherFormat {
            backup: backup.format,
            server,
        }),
    }
}

fn fall_back(mode: Mode, why: FullReason) -> Result<FullReason, Refusal> {
    match mode {
        Mode::Incremental => Err(Refusal::IncrementalImpossible(why)),
        Mode::Auto | Mode::Full => Ok(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: StoreId = StoreId {
        created_millis: 1,
        random: 2,
    };
    const OTHER_STORE: StoreId = StoreId {
        created_millis: 3,
        random: 4,
    };
    const V1: FormatVersion = FormatVersion(1);
    const V2: FormatVersion = FormatVersion(2);

    fn server(last: u64) -> ServerInfo {
        ServerInfo {
            store_id: STORE,
            format: V2,
            last_committed_tx: last,
            oldest_logged_tx: 1,
            store_bytes: 100,
        }
    }

    fn backup(
        store_id: StoreId,
        format: FormatVersion,
        last_tx: u64,
        unverified: bool,
    ) -> Existing {
        Existing {
            store_id,
            format,
            last_tx,
            digest: Digest([7; 32]),
            unverified,
        }
    }

    /// Every combination of mode, target and server position, with what must happen.
    #[test]
    fn bk_50_bk_46_bk_47_the_decision_over_every_combination() {
        use Mode::*;
        let ask = |tx| Ok(Step::AskIncremental(backup(STORE, V2, tx, false)));
        let ahead = Err(Refusal::Ahead {
            backup_tx: 9,
            server_tx: 5,
        });
        let other_store = Err(Refusal::OtherStore {
            backup: OTHER_STORE,
            server: STORE,
        });
        let other_format = Err(Refusal::OtherFormat {
            backup: V1,
            server: V2,
        });
        let same = |tx, unverified| Some(backup(STORE, V2, tx, unverified));
        type Row = (Mode, Option<Existing>, u64, Result<Step, Refusal>);
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            // nothing there
            (Auto, None, 5, Ok(Step::Full(FullReason::NoBackup))),
            (Full, None, 5, Ok(Step::Full(FullReason::NoBackup))),
            (
                Incremental,
                None,
                5,
                Err(Refusal::IncrementalImpossible(FullReason::NoBackup)),
            ),
            // another store: refused whatever the mode (BK-14)
            (
                Auto,
                Some(backup(OTHER_STORE, V2, 3, false)),
                5,
                other_store,
            ),
            (
                Full,
                Some(backup(OTHER_STORE, V2, 3, false)),
                5,
                other_store,
            ),
            (
                Incremental,
                Some(backup(OTHER_STORE, V2, 3, false)),
                5,
                other_store,
            ),
            // another format: refused but for --type full (BK-15, BK-47)
            (Auto, Some(backup(STORE, V1, 3, false)), 5, other_format),
            (
                Incremental,
                Some(backup(STORE, V1, 3, false)),
                5,
                other_format,
            ),
            (
                Full,
                Some(backup(STORE, V1, 3, false)),
                5,
                Ok(Step::Full(FullReason::Asked)),
            ),
            (
                Full,
                Some(backup(STORE, V1, 9, false)),
                5,
                Ok(Step::Full(FullReason::Asked)),
            ),
            // behind or level with the server: incremental (BK-10, BK-25)
            (Auto, same(3, false), 5, ask(3)),
            (Incremental, same(3, false), 5, ask(3)),
            (Auto, same(5, false), 5, ask(5)),
            (Incremental, same(5, false), 5, ask(5)),
            (Full, same(3, false), 5, Ok(Step::Full(FullReason::Asked))),
            // ahead of the server: refused but for --type full (BK-46)
            (Auto, same(9, false), 5, ahead),
            (Incremental, same(9, false), 5, ahead),
            (Auto, same(9, true), 5, ahead),
            (Full, same(9, false), 5, Ok(Step::Full(FullReason::Asked))),
            // unverified: full under auto, exit 7 under incremental (BK-28)
            (
                Auto,
                same(3, true),
                5,
                Ok(Step::Full(FullReason::Unverified)),
            ),
            (
                Incremental,
                same(3, true),
                5,
                Err(Refusal::IncrementalImpossible(FullReason::Unverified)),
            ),
            (Full, same(3, true), 5, Ok(Step::Full(FullReason::Asked))),
        ];
        for (mode, existing, server_tx, expected) in table {
            assert_eq!(
                decide(existing.as_ref(), mode, &server(server_tx)),
                expected,
                "BK-50: {mode:?} with {existing:?} against a server at tx {server_tx}"
            );
        }
    }

    #[test]
    fn bk_11_bk_12_bk_46_after_the_server_refuses() {
        let b = backup(STORE, V2, 3, false);
        let pruned = ServerRefusal::LogsPruned {
            needed: 4,
            oldest: 10,
        };
        let diverged = ServerRefusal::Diverged {
            tx: 3,
            server: Digest([1; 32]),
        };
        let diverged_reason = FullReason::Diverged {
            tx: 3,
            backup: Digest([7; 32]),
            server: Digest([1; 32]),
        };
        let never = ServerRefusal::NeverHad {
            tx: 3,
            server_last_tx: 2,
        };
        let pruned_reason = FullReason::LogsPruned {
            needed: 4,
            oldest: 10,
        };
        for (mode, answer, expected) in [
            (Mode::Auto, pruned, Ok(pruned_reason)),
            (
                Mode::Incremental,
                pruned,
                Err(Refusal::IncrementalImpossible(pruned_reason)),
            ),
            (Mode::Auto, diverged, Ok(diverged_reason)),
            (
                Mode::Incremental,
                diverged,
                Err(Refusal::IncrementalImpossible(diverged_reason)),
            ),
            (
                Mode::Auto,
                never,
                Err(Refusal::Ahead {
                    backup_tx: 3,
                    server_tx: 2,
                }),
            ),
            (
                Mode::Incremental,
                never,
                Err(Refusal::Ahead {
                    backup_tx: 3,
                    server_tx: 2,
                }),
            ),
            (
                Mode::Auto,
                ServerRefusal::OtherFormat { server: V1 },
                Err(Refusal::OtherFormat {
                    backup: V2,
                    server: V1,
                }),
            ),
            (
                Mode::Auto,
                ServerRefusal::OtherStore {
                    server: OTHER_STORE,
                },
                Err(Refusal::OtherStore {
                    backup: STORE,
                    server: OTHER_STORE,
                }),
            ),
        ] {
            assert_eq!(
                after_server_refusal(mode, &b, answer),
                expected,
                "BK-11: {mode:?} after {answer:?}"
            );
        }
        assert!(pruned_reason.is_fallback() && diverged_reason.is_fallback());
        assert!(!FullReason::Unverified.is_fallback() && !FullReason::Asked.is_fallback());
    }
}
