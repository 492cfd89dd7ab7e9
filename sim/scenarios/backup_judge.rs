//! The judge of the backup scenarios: what a run must do, from what the directory held, the
//! mode and the server's state (the simulations' own model of the decision, written apart from
//! `backup::decision`), and the brief's invariants checked against what happened (SIM-21).
//!
//! Pure: it reads the run's report, the snapshots and the inspection the driver
//! (`backup_world.rs`) took, and does no I/O; its unit tests below feed it runs by hand.
//! Refusals are told apart by the error's type ([`Failure::of`]), never by its text.

use std::collections::BTreeMap;

use online_backup::backup::client::{BackupError, FullReason, Kind, Mode, Summary};
use online_backup::backup::manifest::MANIFEST_FILE;
use online_backup::backup::target::TargetError;
use online_backup::digest::Digest;
use online_backup::store::check::CheckReport;
use online_backup::store::layout::{self, POINTER_FILE};
use online_backup::store::meta::{StoreId, META_FILE};

use crate::kit::http::Status;
use crate::scenarios::backup_world::BackupJob;

/// A path's contents, name by name: `None` when nothing is there (invariant 3 compares two).
pub type Tree = Option<BTreeMap<String, Entry>>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File(Vec<u8>),
}

/// How a run failed: the exit code the binary would give (BK-40), its sentence (for people),
/// and, for a refusal, which one, read off the error's type (never its text).
#[derive(Clone, Debug)]
pub struct Failure {
    pub exit: u8,
    pub message: String,
    pub refused: Option<Refused>,
}

impl Failure {
    pub fn of(e: &BackupError) -> Failure {
        let refused = match e {
            BackupError::Target(TargetError::NotABackup { .. }) => Some(Refused::NotABackup),
            BackupError::StoreMismatch { .. } => Some(Refused::OtherStore),
            BackupError::VersionMismatch { .. } => Some(Refused::OtherFormat),
            BackupError::BackupAhead { .. } => Some(Refused::Ahead),
            BackupError::IncrementalImpossible { why, .. } => {
                Some(Refused::Impossible(match why {
                    FullReason::NoBackup => Impossible::NoBackup,
                    FullReason::Unverified => Impossible::Unverified,
                    FullReason::LogsPruned { .. } => Impossible::LogsPruned,
                    FullReason::Diverged { .. } => Impossible::Diverged,
                    // `--type incremental` never asks for a full backup, and only object
                    // stores consolidate (these simulations back up into directories).
                    FullReason::Asked | FullReason::Consolidate { .. } => Impossible::NoBackup,
                }))
            }
            _ => None,
        };
        Failure {
            exit: e.exit_code(),
            message: e.to_string(),
            refused,
        }
    }
}

/// A refusal, as the judge tells them apart (BK-12 .. BK-15, BK-46).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a valid backup directory (BK-13).
    NotABackup,
    /// A backup of another store (BK-14).
    OtherStore,
    /// A backup in another format version (BK-15).
    OtherFormat,
    /// A backup ahead of the server (BK-46).
    Ahead,
    /// `--type incremental`, and an incremental backup is impossible (BK-12).
    Impossible(Impossible),
}

impl Refused {
    /// The exit code of BK-40, as this model reads the table.
    pub fn exit(self) -> u8 {
        match self {
            Refused::NotABackup => 3,
            Refused::OtherStore => 4,
            Refused::OtherFormat => 5,
            Refused::Ahead | Refused::Impossible(_) => 7,
        }
    }
}

/// Why an incremental backup is impossible (BK-11, BK-12, BK-28).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impossible {
    NoBackup,
    Unverified,
    LogsPruned,
    Diverged,
}

impl Impossible {
    /// Whether `reason` is this one.
    fn is(self, reason: &FullReason) -> bool {
        matches!(
            (self, reason),
            (Impossible::NoBackup, FullReason::NoBackup)
                | (Impossible::Unverified, FullReason::Unverified)
                | (Impossible::LogsPruned, FullReason::LogsPruned { .. })
                | (Impossible::Diverged, FullReason::Diverged { .. })
        )
    }
}

/// One finished `neo4j-backup` run as the client saw it.
#[derive(Debug)]
pub struct BackupRun {
    pub job: BackupJob,
    /// The server's last committed tx when the run began, at least: the highest tx the writer
    /// had acknowledged or the server's status had reported just before (invariant 1).
    pub began_after: u64,
    /// `GET /db/data/` just before the run (`None` when the server did not answer).
    pub status_before: Option<Status>,
    pub before: Tree,
    pub after: Tree,
    pub outcome: Result<Summary, Failure>,
    /// What the tool said, line by line.
    pub lines: Vec<String>,
    /// Mutating filesystem operations the run made on the client.
    pub fs_ops: u64,
}

/// What a backup directory holds, read from a checked copy.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The directory's own names, sorted.
    pub names: Vec<String>,
    /// The generation `CURRENT` names.
    pub live: Option<u64>,
    /// `Ok(None)`: no backup (nothing, or an interrupted first run's leftovers); `Err`: the
    /// backup does not open or check (never acceptable).
    pub held: Result<Option<CheckReport>, String>,
    /// The live generation against its manifest (MF-5, MF-6, MF-8), read before the check
    /// opened a copy: `Err` when a block, size or file differs outside what the manifest says
    /// a run may have changed, or a generation has no manifest.
    pub manifest: Result<ManifestState, String>,
    /// When the backup can be restored to an earlier tx than its last (PIT-5): the earliest,
    /// restored, with the digest of the restored store, or why that failed (PIT-7).
    pub history: Option<Box<Restored>>,
}

/// An inspection's restore to an earlier tx: that tx and the restored store's digest, or why it
/// failed (PIT-7).
pub type Restored = Result<(u64, Digest), String>;

/// What the manifest check of an inspection found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestState {
    /// No generation (nothing, or a plain store): nothing to check.
    None,
    /// Every block as listed, and what the manifest declares of the store they make: its id,
    /// last tx and the digest there (MF-1), to be compared with the store checked. `None` when
    /// the manifest is known to have been misled (a read bit flip the client hashed) and is
    /// to be replaced.
    Exact(Option<(StoreId, u64, Digest)>),
    /// As listed except what an unfinished run declared pending (MF-5).
    Pending,
}

/// What the driver knows a backup directory holds before a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holding {
    /// Nothing: missing, empty, or only leftovers of an interrupted first backup.
    Nothing,
    /// A backup of the server's store at `tx`, with `digest` there; `diverged` when it took
    /// writes of its own, so its history is not the server's; `plain` when its store files are
    /// in the directory itself (a restored copy, BK-38) rather than in a generation.
    Backup {
        tx: u64,
        digest: Digest,
        diverged: bool,
        plain: bool,
    },
    /// Something a run must refuse so (not a backup, another store, another format).
    Refusable(Refused),
}

/// What a run must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Finish as `kind` (invariant 4); a fallback says `because` in a line (BK-11).
    Finish {
        kind: Kind,
        because: Option<Impossible>,
    },
    /// Refuse so, with that refusal's exit code, and leave the directory byte for byte as it
    /// was (invariant 3).
    Refuse(Refused),
    /// A fault is injected: finish as `kind`, or fail with exit 1 leaving a valid backup
    /// (invariant 2).
    Interrupted { kind: Kind },
}

/// What a run must do on a directory holding `holding` (BK-10 .. BK-15, BK-25, BK-46). `pruned`:
/// the server's logs no longer hold the tx after the backup's; `server_tx`: the server's last
/// committed tx when the run shook hands, where the driver knows it exactly (the writer paused).
/// This is the simulations' own model of the decision, written apart from `backup::decision`.
pub fn expectation(holding: &Holding, mode: Mode, pruned: bool, server_tx: Option<u64>) -> Expect {
    match holding {
        // `--type full` replaces a backup of the same store in another format (BK-47).
        Holding::Refusable(Refused::OtherFormat) if mode == Mode::Full => Expect::Finish {
            kind: Kind::Full,
            because: None,
        },
        Holding::Refusable(r) => Expect::Refuse(*r),
        Holding::Nothing if mode == Mode::Incremental => {
            Expect::Refuse(Refused::Impossible(Impossible::NoBackup))
        }
        Holding::Nothing => Expect::Finish {
            kind: Kind::Full,
            because: None,
        },
        // A backup ahead of the server is replaced only on purpose (BK-46).
        Holding::Backup { tx, .. } if mode != Mode::Full && server_tx.is_some_and(|s| *tx > s) => {
            Expect::Refuse(Refused::Ahead)
        }
        Holding::Backup { diverged, .. } => {
            // Pruned logs are what the server finds first: it cannot see a divergence at a tx
            // its logs no longer hold (PR-7 before PR-14).
            let impossible = if pruned {
                Some(Impossible::LogsPruned)
            } else if *diverged {
                Some(Impossible::Diverged)
            } else {
                None
            };
            match (mode, impossible) {
                (Mode::Full, _) => Expect::Finish {
                    kind: Kind::Full,
                    because: None,
                },
                (_, None) => Expect::Finish {
                    kind: Kind::Incremental,
                    because: None,
                },
                (Mode::Incremental, Some(why)) => Expect::Refuse(Refused::Impossible(why)),
                (Mode::Auto, Some(why)) => Expect::Finish {
                    kind: Kind::Full,
                    because: Some(why),
                },
            }
        }
    }
}

/// Everything [`check_invariants`] judges a run by.
pub struct Facts<'a> {
    /// The run as the client reported it; `None` when the client lost power first.
    pub run: Option<&'a BackupRun>,
    pub expect: &'a Expect,
    /// What the directory held before.
    pub before: &'a Holding,
    /// The directory inspected after the run (`None` for a refusal: the snapshots judge it).
    pub after: Option<&'a Inspection>,
    /// The source's digest at each tx (the writer's record).
    pub digests: &'a BTreeMap<u64, Digest>,
    /// The server's last committed tx when the run began, at least.
    pub began_after: u64,
}

/// Checks the brief's invariants 1 to 4 for one run and says what the directory holds now
/// (SIM-21).
///
/// 1. A finished backup's digest is the source's digest at its tx T, and T is at least the
///    server's last committed tx when it began (BK-20); the directory then holds exactly that
///    backup, valid, live through the pointer, with no leftovers (BK-23, BK-30 .. BK-32, BK-36).
/// 2. After an interrupted run (client power loss, server crash, network failure: exit 1,
///    BK-34) the directory holds a valid backup: the previous one or, for a full one, the new
///    one complete (BK-33); for an incremental one, one at a tx between the old and the newest
///    the server had (BK-24); always at a tx whose digest is the source's there.
/// 3. A refused run leaves the directory byte for byte as it was (BK-17), with the exit code of
///    BK-40 and a message saying why (BK-12 .. BK-15).
/// 4. The kind is the one `expectation` gives: incremental whenever the logs exist and the
///    histories agree, full only otherwise (BK-25), saying why when it falls back (BK-11).
pub fn check_invariants(f: &Facts) -> Result<Holding, String> {
    let what = match f.run {
        Some(run) => format!(
            "the {:?} backup (verify {:?}) into {}",
            run.job.mode,
            run.job.verify,
            run.job.target.display()
        ),
        None => "the backup interrupted by the client's power loss".to_string(),
    };
    let checked = match f.run {
        Some(run) => match (&run.outcome, f.expect) {
            (Ok(summary), Expect::Finish { kind, .. } | Expect::Interrupted { kind }) => {
                check_finished(f, run, summary, *kind)
            }
            (Ok(summary), Expect::Refuse(refused)) => Err(format!(
                "SIM-21, BK-25: it took a {} backup to tx {} where the refusal {refused:?} was due; it said {:?}",
                summary.kind.name(),
                summary.to_tx,
                run.lines
            )),
            (Err(failure), Expect::Refuse(refused)) => {
                check_refused(run, failure, *refused).map(|()| f.before.clone())
            }
            (Err(failure), Expect::Finish { kind, .. }) => Err(format!(
                "a {} backup was due, but it failed with exit {}: {}",
                kind.name(),
                failure.exit,
                failure.message
            )),
            (Err(failure), Expect::Interrupted { kind }) => {
                if failure.exit != 1 {
                    Err(format!(
                        "SIM-19, BK-34: a fault must fail the run with exit 1, it gave exit {}: {}",
                        failure.exit, failure.message
                    ))
                } else {
                    check_left_valid(f, *kind)
                }
            }
        },
        None => match f.expect {
            Expect::Interrupted { kind } => check_left_valid(f, *kind),
            other => Err(format!("no report where {other:?} was due")),
        },
    };
    checked
        .and_then(|holding| check_history(f, &holding).map(|()| holding))
        .map_err(|why| format!("{what}: {why}"))
}

/// A backup that can be restored to an earlier tx restores it with the source's digest there
/// (PIT-4, PIT-7), crashes or not: the inspection restored the earliest.
fn check_history(f: &Facts, holding: &Holding) -> Result<(), String> {
    let Some(history) = f.after.and_then(|i| i.history.as_deref()) else {
        return Ok(());
    };
    if matches!(
        holding,
        Holding::Backup { diverged: true, .. } | Holding::Backup { plain: true, .. }
    ) {
        // Its own history, not the source's: nothing to compare with.
        return Ok(());
    }
    match history {
        Err(e) => Err(format!("SIM-21, PIT-7: the backup could not be restored to an earlier tx: {e}")),
        Ok((t, d)) if f.digests.get(t) != Some(d) => Err(format!(
            "SIM-21, PIT-4, PIT-7: the backup restored to tx {t} has digest {d}, but the source's there is {:?}",
            f.digests.get(t)
        )),
        Ok(_) => Ok(()),
    }
}

/// The directory's backup, which must open and check (invariant 2, BK-23): `None` when it
/// holds none.
fn valid_report(inspection: &Inspection) -> Result<Option<&CheckReport>, String> {
    if let Err(e) = &inspection.manifest {
        return Err(format!(
            "SIM-21, MF-6, MF-8: the live generation does not match its manifest: {e}"
        ));
    }
    match &inspection.held {
        Err(e) => Err(format!(
            "SIM-21, BK-23: invariant 2: the backup does not open and check: {e} (it holds {:?})",
            inspection.names
        )),
        Ok(None) => Ok(None),
        Ok(Some(r)) if !r.consistent => Err(format!(
            "SIM-21, BK-23: invariant 2: the backup at tx {} is not consistent: {:?}",
            r.last_committed_tx, r.findings
        )),
        Ok(Some(r)) if r.digest != r.recorded_digest => Err(format!(
            "invariant 2: the backup at tx {} records digest {} but a scan gives {}",
            r.last_committed_tx, r.recorded_digest, r.digest
        )),
        Ok(Some(r)) => match inspection.manifest {
            Ok(ManifestState::Exact(Some((id, tx, digest))))
                if (id.to_string(), tx, digest.to_string())
                    != (r.store_id.clone(), r.last_committed_tx, r.digest.clone()) =>
            {
                Err(format!(
                    "SIM-21, MF-1, MF-6: the manifest declares store {id} at tx {tx} with digest {digest}, but its \
                     files hold store {} at tx {} with digest {}",
                    r.store_id, r.last_committed_tx, r.digest
                ))
            }
            _ => Ok(Some(r)),
        },
    }
}

fn report_digest(r: &CheckReport) -> Result<Digest, String> {
    Digest::from_hex(&r.digest).ok_or(format!("check printed a bad digest {:?}", r.digest))
}

/// Invariant 1 and the kind of invariant 4, for a run that finished.
fn check_finished(f: &Facts, run: &BackupRun, s: &Summary, kind: Kind) -> Result<Holding, String> {
    if s.kind != kind {
        return Err(format!(
            "SIM-21, BK-25: invariant 4: it took a {} backup where a {} one was due (the directory held {:?}, the \
             server's status before: {:?}); it said {:?}",
            s.kind.name(),
            kind.name(),
            f.before,
            run.status_before,
            run.lines
        ));
    }
    if let Expect::Finish {
        because: Some(why), ..
    } = f.expect
    {
        let reason = s.full_reason.as_ref();
        if !s.fell_back || !reason.is_some_and(|r| why.is(r)) {
            return Err(format!(
                "SIM-21, BK-11: it should have fallen back because {why:?}; it reports {reason:?} \
                 (fell back: {})",
                s.fell_back
            ));
        }
        let said = run
            .lines
            .iter()
            .filter(|l| l.starts_with("falling back to a full backup"))
            .count();
        if said != 1 {
            return Err(format!(
                "SIM-21, BK-11: a fallback says why in one line, once; it said {:?}",
                run.lines
            ));
        }
    }
    if let (Kind::Incremental, Holding::Backup { tx, .. }) = (s.kind, f.before) {
        if s.from_tx != Some(*tx) {
            return Err(format!(
                "BK-10: the incremental backup started from {:?}, the backup was at tx {tx}",
                s.from_tx
            ));
        }
    }
    // Invariant 1 (BK-20).
    match f.digests.get(&s.to_tx) {
        None => {
            return Err(format!(
                "BK-20: the backup is at tx {}, which the server never committed (the writer \
                 sent up to tx {:?})",
                s.to_tx,
                f.digests.keys().next_back()
            ))
        }
        Some(d) if *d != s.digest => {
            return Err(format!(
                "SIM-21, BK-20: invariant 1: the backup's digest at tx {} is {} but the source's there is {d}",
                s.to_tx, s.digest
            ))
        }
        Some(_) => {}
    }
    if s.to_tx < f.began_after {
        return Err(format!(
            "BK-20: the backup is at tx {}, but the server had committed tx {} when it began",
            s.to_tx, f.began_after
        ));
    }
    // The directory holds exactly this backup, live through its pointer, and nothing else.
    let inspection = f.after.ok_or("the directory was not inspected")?;
    let report = valid_report(inspection)?.ok_or(format!(
        "BK-23: the run finished but the directory holds no backup: {:?}",
        inspection.names
    ))?;
    if report.last_committed_tx != s.to_tx || report_digest(report)? != s.digest {
        return Err(format!(
            "BK-31: the run reported tx {} digest {}, the directory opens at tx {} digest {}",
            s.to_tx, s.digest, report.last_committed_tx, report.digest
        ));
    }
    // BK-22: the backup keeps the source's store id and format version.
    if let Some(status) = &run.status_before {
        if report.store_id != status.store_id || report.format_version != status.format_version {
            return Err(format!(
                "BK-22: the backup is of store {} in format {}, the server's is {} in format {}",
                report.store_id, report.format_version, status.store_id, status.format_version
            ));
        }
    }
    // An incremental backup into a plain store directory applies in place; every other run
    // leaves the pointer and the live generation only (BK-38).
    let plain =
        s.kind == Kind::Incremental && matches!(f.before, Holding::Backup { plain: true, .. });
    let clean = if plain {
        inspection.live.is_none()
            && inspection.names.iter().any(|n| n == META_FILE)
            && !inspection
                .names
                .iter()
                .any(|n| n == POINTER_FILE || layout::parse_generation(n).is_some())
    } else {
        inspection.live.is_some_and(|n| {
            let mut expected = vec![POINTER_FILE.to_string(), layout::generation_name(n)];
            expected.extend(kept_older(&run.before, n, run.job.keep_generations));
            expected.sort();
            inspection.names == expected
        })
    };
    if !clean {
        return Err(format!(
            "BK-30, BK-32, BK-36, BK-38, PIT-12: after the run the directory should hold {}; it \
             holds {:?} (live: {:?}, --keep-generations {}, before: {:?})",
            if plain {
                "the plain store's files"
            } else {
                "the pointer, the live generation and the newest older ones it keeps"
            },
            inspection.names,
            inspection.live,
            run.job.keep_generations,
            generations_in(&run.before),
        ));
    }
    Ok(Holding::Backup {
        tx: s.to_tx,
        digest: s.digest,
        diverged: false,
        plain,
    })
}

/// The generations a finished run whose live generation is `live` keeps beside it with
/// `--keep-generations keep` (PIT-12): of the finished generations older than `live` that the
/// directory held before the run, up to the one live then (those above it are what a failed
/// run left, BK-36), the newest `keep - 1`.
pub fn kept_older(before: &Tree, live: u64, keep: u32) -> Vec<String> {
    let live_before = before
        .as_ref()
        .and_then(|t| t.get(POINTER_FILE))
        .and_then(|e| match e {
            Entry::File(bytes) => layout::parse_pointer(bytes),
            Entry::Dir => None,
        });
    let mut finished: Vec<u64> = generations_in(before)
        .into_iter()
        .filter(|&(g, has_manifest)| {
            g < live && live_before.is_some_and(|l| g <= l) && has_manifest
        })
        .map(|(g, _)| g)
        .collect();
    finished.sort_unstable_by(|a, b| b.cmp(a));
    finished.truncate(keep.max(1) as usize - 1);
    finished.into_iter().map(layout::generation_name).collect()
}

/// The generations a tree holds, each with whether it holds its manifest (MF-6).
fn generations_in(tree: &Tree) -> Vec<(u64, bool)> {
    let Some(tree) = tree else {
        return Vec::new();
    };
    tree.iter()
        .filter(|(_, e)| **e == Entry::Dir)
        .filter_map(|(name, _)| layout::parse_generation(name).map(|g| (g, name)))
        .map(|(g, name)| (g, tree.contains_key(&format!("{name}/{MANIFEST_FILE}"))))
        .collect()
}

/// Invariant 3 for a refused run (BK-17, BK-40).
fn check_refused(run: &BackupRun, failure: &Failure, refused: Refused) -> Result<(), String> {
    if failure.refused != Some(refused) || failure.exit != refused.exit() {
        return Err(format!(
            "SIM-21, BK-40: invariant 3: it should refuse with {refused:?} (exit {}); it failed \
             with {:?}, exit {}: {}",
            refused.exit(),
            failure.refused,
            failure.exit,
            failure.message
        ));
    }
    if run.after != run.before {
        return Err(format!(
            "SIM-21, BK-17: invariant 3: the refused run changed the directory: {}",
            tree_difference(&run.before, &run.after)
        ));
    }
    Ok(())
}

/// Invariant 2 after a run a fault interrupted (BK-24, BK-33, BK-34).
fn check_left_valid(f: &Facts, kind: Kind) -> Result<Holding, String> {
    let inspection = f.after.ok_or("the directory was not inspected")?;
    let report = valid_report(inspection)?;
    let newer = |t: u64, d: Digest| -> Result<Holding, String> {
        if f.digests.get(&t) != Some(&d) {
            return Err(format!(
                "SIM-19, SIM-21: invariant 2: the backup left is at tx {t} with digest {d}, but the source's \
                 digest there is {:?}",
                f.digests.get(&t)
            ));
        }
        if kind == Kind::Full && t < f.began_after {
            return Err(format!(
                "SIM-19, BK-33: an interrupted full backup left tx {t}: neither the previous backup nor \
                 a complete new one (at least tx {})",
                f.began_after
            ));
        }
        Ok(Holding::Backup {
            tx: t,
            digest: d,
            diverged: false,
            plain: kind == Kind::Incremental
                && matches!(f.before, Holding::Backup { plain: true, .. }),
        })
    };
    match (f.before, report) {
        (Holding::Backup { tx, digest, .. }, Some(r)) => {
            let (t, d) = (r.last_committed_tx, report_digest(r)?);
            if t == *tx {
                if d != *digest {
                    return Err(format!(
                        "invariant 2: the backup is still at tx {t} but its digest changed from \
                         {digest} to {d}"
                    ));
                }
                Ok(f.before.clone())
            } else if t < *tx {
                Err(format!(
                    "SIM-19, BK-24: the backup went back from tx {tx} to tx {t}"
                ))
            } else {
                newer(t, d)
            }
        }
        (Holding::Backup { tx, .. }, None) => Err(format!(
            "SIM-19, BK-33: the backup at tx {tx} is gone; the directory holds {:?}",
            inspection.names
        )),
        (Holding::Nothing, None) => Ok(Holding::Nothing),
        (Holding::Nothing, Some(r)) => newer(r.last_committed_tx, report_digest(r)?),
        (Holding::Refusable(r), _) => Err(format!(
            "a directory to be refused ({r:?}) is no fault case"
        )),
    }
}

/// The first difference between two snapshots, in words.
pub fn tree_difference(before: &Tree, after: &Tree) -> String {
    let (b, a) = match (before, after) {
        (None, None) => return "no difference".into(),
        (None, Some(_)) => return "it did not exist and now does".into(),
        (Some(_), None) => return "it existed and is gone".into(),
        (Some(b), Some(a)) => (b, a),
    };
    for (name, entry) in b {
        match a.get(name) {
            None => return format!("{name} is gone"),
            Some(e) if e != entry => return format!("{name} changed"),
            Some(_) => {}
        }
    }
    match a.keys().find(|k| !b.contains_key(*k)) {
        Some(name) => format!("{name} appeared"),
        None => "no difference".into(),
    }
}

/// Whether the server's logs no longer held the tx after the directory's backup when `run`
/// began, by the status it read just before.
pub fn pruned(holding: &Holding, run: &BackupRun) -> bool {
    match (holding, &run.status_before) {
        (Holding::Backup { tx, .. }, Some(status)) => status.oldest_logged_tx > tx + 1,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Digest = Digest([1; 32]);

    fn backup(tx: u64, diverged: bool) -> Holding {
        Holding::Backup {
            tx,
            digest: D,
            diverged,
            plain: false,
        }
    }

    #[test]
    fn sim_21_the_model_of_the_decision() {
        use Mode::*;
        let finish = |kind, because| Expect::Finish { kind, because };
        for (holding, mode, pruned, server_tx, expected) in [
            (
                Holding::Nothing,
                Auto,
                false,
                None,
                finish(Kind::Full, None),
            ),
            (
                Holding::Nothing,
                Incremental,
                false,
                None,
                Expect::Refuse(Refused::Impossible(Impossible::NoBackup)),
            ),
            (
                backup(3, false),
                Auto,
                false,
                Some(5),
                finish(Kind::Incremental, None),
            ),
            (
                backup(3, false),
                Auto,
                true,
                Some(5),
                finish(Kind::Full, Some(Impossible::LogsPruned)),
            ),
            (
                backup(3, true),
                Incremental,
                false,
                Some(5),
                Expect::Refuse(Refused::Impossible(Impossible::Diverged)),
            ),
            (
                backup(9, true),
                Auto,
                false,
                Some(5),
                Expect::Refuse(Refused::Ahead),
            ),
            (
                backup(9, true),
                Full,
                false,
                Some(5),
                finish(Kind::Full, None),
            ),
            (
                Holding::Refusable(Refused::OtherFormat),
                Full,
                false,
                None,
                finish(Kind::Full, None),
            ),
            (
                Holding::Refusable(Refused::OtherStore),
                Full,
                false,
                None,
                Expect::Refuse(Refused::OtherStore),
            ),
        ] {
            assert_eq!(
                expectation(&holding, mode, pruned, server_tx),
                expected,
                "SIM-21: {holding:?} under {mode:?}"
            );
        }
    }

    #[test]
    fn sim_21_a_refusal_is_judged_by_its_type_and_the_unchanged_directory() {
        let tree: Tree = Some(BTreeMap::from([(
            "CURRENT".to_string(),
            Entry::File(vec![1]),
        )]));
        let run = |after: Tree, refused: Option<Refused>, exit: u8| BackupRun {
            job: BackupJob::fixed("/backup/db", Mode::Auto),
            began_after: 0,
            status_before: None,
            before: tree.clone(),
            after,
            outcome: Err(Failure {
                exit,
                message: "whatever the words".into(),
                refused,
            }),
            lines: Vec::new(),
            fs_ops: 0,
        };
        let judge = |r: &BackupRun| {
            check_invariants(&Facts {
                run: Some(r),
                expect: &Expect::Refuse(Refused::Ahead),
                before: &backup(9, false),
                after: None,
                digests: &BTreeMap::new(),
                began_after: 0,
            })
        };
        assert!(
            judge(&run(tree.clone(), Some(Refused::Ahead), 7)).is_ok(),
            "SIM-21: the right refusal, unchanged"
        );
        assert!(
            judge(&run(tree.clone(), Some(Refused::OtherStore), 7)).is_err(),
            "SIM-21: another refusal"
        );
        assert!(
            judge(&run(tree.clone(), Some(Refused::Ahead), 1)).is_err(),
            "SIM-21: the wrong exit code"
        );
        let mut changed = tree.clone();
        changed
            .as_mut()
            .unwrap()
            .insert("generation-2".into(), Entry::Dir);
        assert!(
            judge(&run(changed, Some(Refused::Ahead), 7)).is_err(),
            "SIM-21: the directory changed"
        );
    }
}
