//! What the backup scenarios share: three simulated hosts, the driver's handle on them, and the
//! one function that checks the brief's invariants after every backup run.
//!
//! - `server` runs the product's `neo4j` (`server::run`) on its own disk, with a configuration
//!   parsed by `Config::parse` (small log rotation threshold, a seed-chosen `keep_logical_logs`).
//! - `writer` commits random transactions over the HTTP API (`sim/http.rs`), one at a time,
//!   and keeps the graph model (`model::Graph`) of what the server acknowledged: from it, the
//!   source's digest at every tx, which invariant 1 compares backups with. After a failed request
//!   it asks the server where it stands, so a transaction in flight when the server lost power is
//!   counted exactly when the server kept it, and an acknowledged one the server lost fails the
//!   run ("the server lost no acknowledged tx", SIM-20). Every answer must carry the next tx id
//!   and the ids the model assigns (HTTP-2, HTTP-3).
//! - `client` runs `neo4j-backup` (`backup::client::run`) on its own disk, on the driver's
//!   command, and inspects its target: snapshots of every name and byte (invariant 3), and a copy
//!   of the target opened and checked by `store::check` (invariant 2, BK-23, BK-31), so that the
//!   inspection never changes what the next run finds.
//!
//! The driver (a scenario's `run`) hands the client one job at a time and steps the simulation
//! until it answers or a host loses power; it injects faults between steps. [`check_invariants`]
//! judges each run from what the client reported, what the target holds afterwards and the
//! writer's record of the source's digests (SIM-21). Runs use every `-verify` mode, so a
//! verification that fails a correct backup (exit 6) fails the simulation (BK-26, BK-27).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use online_backup::backup::client::{self, BackupOptions, Kind, Lines, Mode, Summary, Verify};
use online_backup::config::Config;
use online_backup::digest::Digest;
use online_backup::graph::{Op, Properties, Value};
use online_backup::io::{Fs, OpenMode};
use online_backup::server::{self, ServerOptions};
use online_backup::store::check::{self, CheckReport};
use online_backup::store::format::{FormatVersion, RecordKind};
use online_backup::store::layout::{self, POINTER_FILE};
use online_backup::store::log::TxState;
use online_backup::store::meta::{StoreId, META_FILE};
use online_backup::store::{initialize, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::http::{self, Status};
use crate::model::Graph;
use crate::runner::{HostCtx, ScenarioCtx, Stopped};

pub const SERVER: &str = "server";
pub const WRITER: &str = "writer";
pub const CLIENT: &str = "client";
/// The server's store directory, on the server's disk.
const STORE_DIR: &str = "/data/db";
const HTTP_ADDR: &str = "server:7474";
pub const BACKUP_PORT: u16 = 6362;
/// The backup directory the scenarios keep backing up into, on the client's disk.
pub const TARGET: &str = "/backup/db";
/// Where the client copies a target to check it without touching it.
const INSPECT_COPY: &str = "/scratch/inspect";
/// How long the writer waits for a commit's answer before it asks where the server stands.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// The most simulated steps (1 ms each) any one wait may take.
const MAX_STEPS: u64 = 600_000;

/// Network of the backup scenarios: a few milliseconds of latency and no random loss; faults are
/// injected by the driver.
pub fn configure(b: &mut turmoil::Builder) {
    b.min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(8));
}

/// `keep_logical_logs` as the scenarios choose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    Days(u64),
    Hours(u64),
    KeepAll,
}

impl Retention {
    /// Mostly an age policy (what pruned-log fallbacks need), sometimes `true`.
    pub fn random(rng: &mut StdRng) -> Retention {
        match rng.random_range(0..5) {
            0 | 1 => Retention::Days(rng.random_range(1..=7)),
            2 | 3 => Retention::Hours(rng.random_range(1..=48)),
            _ => Retention::KeepAll,
        }
    }

    fn property(self) -> String {
        match self {
            Retention::Days(n) => format!("{n} days"),
            Retention::Hours(n) => format!("{n} hours"),
            Retention::KeepAll => "true".to_string(),
        }
    }

    /// How far to move the clock so that every log file written so far is older than the
    /// policy keeps; `None` when the policy keeps everything.
    pub fn age_out(self) -> Option<Duration> {
        match self {
            Retention::Days(n) => Some(Duration::from_secs((n + 1) * 24 * 3600)),
            Retention::Hours(n) => Some(Duration::from_secs((n + 1) * 3600)),
            Retention::KeepAll => None,
        }
    }
}

/// How a scenario sets the world up.
#[derive(Clone, Debug)]
pub struct Setup {
    pub retention: Retention,
    /// `logical_log_rotation_threshold`, small so that logs rotate (and may be pruned) often.
    pub rotation_threshold: &'static str,
    /// The random half of the server's store id.
    pub store_random: u64,
    pub writer_seed: u64,
    /// The writer sleeps up to this long between commits.
    pub max_pause: Duration,
}

impl Setup {
    pub fn random(rng: &mut StdRng) -> Setup {
        Setup {
            retention: Retention::random(rng),
            rotation_threshold: ["1k", "2k", "4k"][rng.random_range(0..3)],
            store_random: rng.random(),
            writer_seed: rng.random(),
            max_pause: Duration::from_millis(rng.random_range(1..=25)),
        }
    }

    /// The server's `neo4j.properties`.
    fn properties(&self) -> String {
        format!(
            "online_backup_enabled=true\nonline_backup_server={SERVER}:{BACKUP_PORT}\n\
             http_server={HTTP_ADDR}\nkeep_logical_logs={}\n\
             logical_log_rotation_threshold={}\n",
            self.retention.property(),
            self.rotation_threshold
        )
    }
}

/// The writer's state: the model of what the server acknowledged, and the source's digest at
/// every transaction it ever sent.
pub struct Writer {
    graph: Graph,
    /// The last tx the server acknowledged (or, after a failure, reported as committed).
    pub acked: u64,
    /// The source's digest after each tx: tx 0 is the empty store; tx `acked + 1` is the one in
    /// flight, if any (a backup may already hold it). A tx the server lost in a crash before
    /// acknowledging it is replaced by whatever is sent next under its id.
    pub digests: BTreeMap<u64, Digest>,
    /// The transaction sent and not yet acknowledged.
    in_flight: Option<Vec<Op>>,
    /// Set by the driver: stop sending after the current transaction.
    paused: bool,
    /// Set by the writer: paused, and nothing in flight.
    idle: bool,
    rng: StdRng,
    max_pause: Duration,
}

/// The server's state as its software reports it.
#[derive(Default)]
struct ServerSide {
    /// The current run of the software has bound its addresses.
    ready: bool,
    /// Set by the driver: shut down cleanly (PR-19).
    shutdown: bool,
    /// The software's `server::run` returned.
    stopped: bool,
}

/// The job the client is given, and its answer.
#[derive(Default)]
struct ClientSide {
    job: Option<(u64, Job)>,
    reply: Option<(u64, Reply)>,
}

/// Everything the hosts and the driver share.
pub struct Shared {
    pub writer: Writer,
    server: ServerSide,
    client: ClientSide,
}

/// One `neo4j-backup` run, as the driver asks for it.
#[derive(Clone, Debug)]
pub struct BackupJob {
    pub target: PathBuf,
    pub mode: Mode,
    pub verify: Verify,
    /// `-timeout` (BK-7).
    pub timeout: Duration,
}

impl BackupJob {
    pub fn new(target: &str, mode: Mode, rng: &mut StdRng) -> BackupJob {
        BackupJob {
            target: PathBuf::from(target),
            mode,
            verify: [Verify::Off, Verify::Default, Verify::Full][rng.random_range(0..3)],
            timeout: Duration::from_secs(10),
        }
    }
}

/// Something planted in a directory to make a backup into it refuse.
#[derive(Clone, Debug)]
pub enum Plant {
    /// A store with another store id (BK-14).
    ForeignStore { random: u64 },
    /// An empty store with the server's store id in another format version (BK-15).
    OtherFormat {
        store_id: StoreId,
        format: FormatVersion,
    },
    /// A file no backup has beside nothing else (BK-13, BK-37).
    StrayFile,
    /// The target path is a file (BK-13).
    File,
    /// `CURRENT` naming a generation that does not exist (BK-13).
    DanglingPointer,
    /// `CURRENT` that names nothing at all (BK-13).
    DamagedPointer,
    /// A record file without metadata (BK-13).
    FilesWithoutMeta,
}

/// What the driver asks the client host to do.
#[derive(Clone, Debug)]
pub enum Job {
    Backup(BackupJob),
    /// Copy the directory and check the copy.
    Inspect(PathBuf),
    /// Commit `txs` transactions of the client's own into the backup in the directory: a
    /// restored copy that took other writes, whose history diverged from the server's.
    Diverge {
        target: PathBuf,
        txs: u64,
    },
    Plant {
        target: PathBuf,
        what: Plant,
    },
    /// Copy the store files of the backup in `from` (its live generation) into the new plain
    /// store directory `to`: a restored copy (BK-38).
    Restore {
        from: PathBuf,
        to: PathBuf,
    },
    /// `GET /db/data/`.
    Status,
}

/// The client's answer.
#[derive(Debug)]
pub enum Reply {
    Backup(Box<BackupRun>),
    Inspect(Inspection),
    Done,
    Status(Option<Status>),
}

/// A path's contents, name by name: `None` when nothing is there (invariant 3 compares two).
pub type Tree = Option<BTreeMap<String, Entry>>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File(Vec<u8>),
}

/// How a run failed: the exit code the binary would give (BK-40) and its sentence.
#[derive(Clone, Debug)]
pub struct Failure {
    pub exit: u8,
    pub message: String,
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
    /// Something a run must refuse with this exit code (3, 4 or 5).
    Refusable(u8),
}

/// What a run must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Finish as `kind` (invariant 4); a fallback's line names `because` (BK-11).
    Finish {
        kind: Kind,
        because: Option<&'static str>,
    },
    /// Refuse with exit code `exit`, the message naming `because`, and leave the directory
    /// byte for byte as it was (invariant 3).
    Refuse { exit: u8, because: String },
    /// A fault is injected: finish as `kind`, or fail with exit 1 leaving a valid backup
    /// (invariant 2).
    Interrupted { kind: Kind },
}

/// What a run must do on a directory holding `holding` (BK-10 .. BK-15, BK-25, BK-46). `pruned`:
/// the server's logs no longer hold the tx after the backup's; `server_tx`: the server's last
/// committed tx when the run shook hands, where the driver knows it exactly (the writer paused).
/// This is the simulations' own model of the decision, written apart from `backup::decision`.
pub fn expectation(holding: &Holding, mode: Mode, pruned: bool, server_tx: Option<u64>) -> Expect {
    let refuse = |exit: u8, because: &str| Expect::Refuse {
        exit,
        because: because.to_string(),
    };
    match holding {
        Holding::Refusable(3) => refuse(3, "is not a valid backup directory"),
        Holding::Refusable(4) => refuse(4, "holds a backup of store"),
        // `--type full` replaces a backup of the same store in another format (BK-47).
        Holding::Refusable(5) if mode == Mode::Full => Expect::Finish {
            kind: Kind::Full,
            because: None,
        },
        Holding::Refusable(5) => refuse(5, "format version"),
        Holding::Refusable(code) => refuse(*code, ""),
        Holding::Nothing if mode == Mode::Incremental => refuse(7, "holds no backup yet"),
        Holding::Nothing => Expect::Finish {
            kind: Kind::Full,
            because: None,
        },
        // A backup ahead of the server is replaced only on purpose (BK-46).
        Holding::Backup { tx, .. } if mode != Mode::Full && server_tx.is_some_and(|s| *tx > s) => {
            refuse(7, "ahead of the server")
        }
        Holding::Backup { diverged, .. } => {
            let impossible = if *diverged {
                Some("diverged")
            } else if pruned {
                Some("no longer hold")
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
                (Mode::Incremental, Some(why)) => refuse(7, why),
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
            (Ok(summary), Expect::Refuse { exit, because }) => Err(format!(
                "it took a {} backup to tx {} where exit {exit} ({because}) was due; it said {:?}",
                summary.kind.name(),
                summary.to_tx,
                run.lines
            )),
            (Err(failure), Expect::Refuse { exit, because }) => {
                check_refused(run, failure, *exit, because).map(|()| f.before.clone())
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
    checked.map_err(|why| format!("{what}: {why}"))
}

/// The directory's backup, which must open and check (invariant 2, BK-23): `None` when it
/// holds none.
fn valid_report(inspection: &Inspection) -> Result<Option<&CheckReport>, String> {
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
        Ok(Some(r)) => Ok(Some(r)),
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
        let said = run
            .lines
            .iter()
            .any(|l| l.starts_with("falling back to a full backup") && l.contains(why));
        if !said {
            return Err(format!(
                "BK-11: it fell back to a full backup without a line saying why ({why}): {:?}",
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
            inspection.names == [POINTER_FILE.to_string(), layout::generation_name(n)]
        })
    };
    if !clean {
        return Err(format!(
            "BK-30, BK-32, BK-36, BK-38: after the run the directory should hold {}; it holds \
             {:?} (live: {:?})",
            if plain {
                "the plain store's files"
            } else {
                "the pointer and the live generation only"
            },
            inspection.names,
            inspection.live
        ));
    }
    Ok(Holding::Backup {
        tx: s.to_tx,
        digest: s.digest,
        diverged: false,
        plain,
    })
}

/// Invariant 3 for a refused run (BK-17, BK-40).
fn check_refused(
    run: &BackupRun,
    failure: &Failure,
    exit: u8,
    because: &str,
) -> Result<(), String> {
    if failure.exit != exit || !failure.message.contains(because) {
        return Err(format!(
            "SIM-21, BK-40: invariant 3: it should refuse with exit {exit} saying {because:?}; it failed with exit {}: \
             {}",
            failure.exit, failure.message
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
        (Holding::Refusable(code), _) => Err(format!(
            "a directory to be refused (exit {code}) is no fault case"
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

// ---------------------------------------------------------------------------------------------
// The hosts' software.

/// Floats that JSON text carries exactly whatever the parser's precision: quarters.
fn exact_floats(ops: &mut [Op]) {
    fn fix(v: &mut Value) {
        match v {
            Value::Float(f) => *f = (*f * 4.0).round() / 4.0,
            Value::List(items) => items.iter_mut().for_each(fix),
            _ => {}
        }
    }
    fn fix_props(p: &mut Properties) {
        p.values_mut().for_each(fix);
    }
    for op in ops {
        match op {
            Op::CreateNode { props, .. } | Op::CreateRelationship { props, .. } => fix_props(props),
            Op::SetProperty { value, .. } => fix(value),
            Op::DeleteNode(_) | Op::DeleteRelationship(_) => {}
        }
    }
}

/// The `server` host: `neo4j` with the scenario's configuration, until the driver asks it to
/// shut down or crashes it.
async fn server_software(
    h: HostCtx,
    shared: Arc<Mutex<Shared>>,
    properties: String,
    store_random: u64,
) -> turmoil::Result {
    {
        let mut s = shared.lock().unwrap();
        s.server = ServerSide::default();
    }
    let (config, warnings) = Config::parse(&properties)?;
    if !warnings.is_empty() {
        return Err(format!("the configuration gave warnings: {warnings:?}").into());
    }
    let watch = shared.clone();
    let shutdown = async move {
        while !watch.lock().unwrap().server.shutdown {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let ready = shared.clone();
    let served = server::run(
        h.env.clone(),
        ServerOptions {
            store_dir: PathBuf::from(STORE_DIR),
            config,
            create_random: store_random,
        },
        shutdown,
        move |_| ready.lock().unwrap().server.ready = true,
    )
    .await;
    h.check(served).await?;
    h.record("server stopped");
    shared.lock().unwrap().server.stopped = true;
    std::future::pending::<()>().await;
    Ok(())
}

/// The `writer` host: random transactions over HTTP, one at a time, the model kept in step.
async fn writer_software(h: HostCtx, shared: Arc<Mutex<Shared>>) -> turmoil::Result {
    let net = h.env.net.clone();
    loop {
        let (paused, unresolved) = {
            let s = shared.lock().unwrap();
            (s.writer.paused, s.writer.in_flight.is_some())
        };
        if unresolved {
            resolve_in_flight(&h, &shared).await?;
            continue;
        }
        if paused {
            shared.lock().unwrap().writer.idle = true;
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let (ops, pause) = {
            let mut s = shared.lock().unwrap();
            let w = &mut s.writer;
            w.idle = false;
            let mut ops = w.graph.random_tx(&mut w.rng);
            exact_floats(&mut ops);
            let mut after = w.graph.clone();
            after.apply(&ops)?;
            w.digests.insert(w.acked + 1, after.digest());
            w.in_flight = Some(ops.clone());
            let pause = w.rng.random_range(0..=w.max_pause.as_micros() as u64);
            (ops, Duration::from_micros(pause))
        };
        match http::commit(&*net, HTTP_ADDR, &ops, WRITE_TIMEOUT).await {
            Ok(Ok((tx_id, ids))) => {
                let mut s = shared.lock().unwrap();
                let w = &mut s.writer;
                let expected_ids = w.graph.apply(&ops)?;
                if tx_id != w.acked + 1 || ids != expected_ids {
                    return Err(format!(
                        "the server committed tx {tx_id} with ids {ids:?}; the model expected tx \
                         {} with ids {expected_ids:?}",
                        w.acked + 1
                    )
                    .into());
                }
                w.acked = tx_id;
                w.in_flight = None;
            }
            // Closing or failed: whether it committed is learned from the status.
            Ok(Err(answer)) if answer.status == 503 => {}
            Ok(Err(answer)) => {
                return Err(format!(
                    "the server refused a valid transaction with {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                )
                .into())
            }
            Err(_) => {}
        }
        tokio::time::sleep(pause).await;
    }
}

/// After a commit whose answer was lost: asks the server where it stands. The transaction in
/// flight committed when the server is one past the acknowledged one; the server must never be
/// behind it (it lost no acknowledged transaction), and its digest must be the model's.
async fn resolve_in_flight(h: &HostCtx, shared: &Arc<Mutex<Shared>>) -> turmoil::Result {
    let status = match http::status(&*h.env.net, HTTP_ADDR, STATUS_TIMEOUT).await {
        Ok(s) => s,
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Ok(());
        }
    };
    let mut s = shared.lock().unwrap();
    let w = &mut s.writer;
    let ops = w.in_flight.take().expect("a transaction in flight");
    if status.last_committed_tx == w.acked + 1 {
        w.graph.apply(&ops)?;
        w.acked += 1;
    } else if status.last_committed_tx != w.acked {
        return Err(format!(
            "SIM-20, BK-34: the server is at tx {} but tx {} was acknowledged (and at most one more \
             sent)",
            status.last_committed_tx, w.acked
        )
        .into());
    }
    let model = w.graph.digest();
    if status.digest != model {
        return Err(format!(
            "SIM-20: at tx {} the server's digest is {} but the model's is {model}",
            status.last_committed_tx, status.digest
        )
        .into());
    }
    h.record(&format!("writer resolved: server at tx {}", w.acked));
    Ok(())
}

/// The `client` host: does the driver's jobs, one at a time.
async fn client_software(h: HostCtx, shared: Arc<Mutex<Shared>>) -> turmoil::Result {
    loop {
        let next = shared.lock().unwrap().client.job.take();
        let Some((id, job)) = next else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let reply = perform(&h, &shared, job).await?;
        shared.lock().unwrap().client.reply = Some((id, reply));
    }
}

async fn perform(h: &HostCtx, shared: &Arc<Mutex<Shared>>, job: Job) -> turmoil::Result<Reply> {
    let env = &h.env;
    let fs = &*env.fs;
    match job {
        Job::Backup(job) => {
            let status = http::status(&*env.net, HTTP_ADDR, STATUS_TIMEOUT)
                .await
                .ok();
            let before = h.check(snapshot(fs, &job.target)).await?;
            let acked = shared.lock().unwrap().writer.acked;
            let began_after = acked.max(status.as_ref().map_or(0, |s| s.last_committed_tx));
            let ops_before = h.world.mutating_ops(&h.name);
            let options = BackupOptions {
                host: SERVER.to_string(),
                port: BACKUP_PORT,
                target: job.target.clone(),
                mode: job.mode,
                verify: job.verify,
                timeout: job.timeout,
                max_rate: None,
            };
            let mut lines = Lines::default();
            let outcome = client::run(env, &options, &mut lines).await;
            if h.is_down() {
                // Power lost mid-run: the machine stops here.
                std::future::pending::<()>().await;
            }
            let fs_ops = h.world.mutating_ops(&h.name) - ops_before;
            let after = h.check(snapshot(fs, &job.target)).await?;
            h.record(&match &outcome {
                Ok(s) => format!("backup finished: {} to tx {}", s.kind.name(), s.to_tx),
                Err(e) => format!("backup failed: exit {}", e.exit_code()),
            });
            Ok(Reply::Backup(Box::new(BackupRun {
                job,
                began_after,
                status_before: status,
                before,
                after,
                outcome: outcome.map_err(|e| Failure {
                    exit: e.exit_code(),
                    message: e.to_string(),
                }),
                lines: lines.0,
                fs_ops,
            })))
        }
        Job::Inspect(target) => Ok(Reply::Inspect(h.check(inspect(env, &target)).await?)),
        Job::Diverge { target, txs } => {
            let mut store = h
                .check(Store::open(
                    env.fs.clone(),
                    env.clock.clone(),
                    &target,
                    &StoreOptions::default(),
                ))
                .await?;
            for i in 0..txs {
                let ops = [Op::CreateNode {
                    labels: vec!["Diverged".to_string()],
                    props: [("n".to_string(), Value::Int(i as i64))]
                        .into_iter()
                        .collect(),
                }];
                h.check(store.commit(&ops)).await?;
            }
            h.check(store.close()).await?;
            Ok(Reply::Done)
        }
        Job::Plant { target, what } => {
            h.check(plant(env, &target, &what)).await?;
            Ok(Reply::Done)
        }
        Job::Restore { from, to } => {
            let live = h.check(layout::resolve(fs, &from)).await?;
            h.check(copy_tree(fs, &live, &to)).await?;
            h.check(fs.sync_dir(online_backup::io::parent_of(&to)))
                .await?;
            Ok(Reply::Done)
        }
        Job::Status => Ok(Reply::Status(
            http::status(&*env.net, HTTP_ADDR, STATUS_TIMEOUT)
                .await
                .ok(),
        )),
    }
}

type BoxError = Box<dyn std::error::Error>;

/// Everything under `path`, name by name, with every file's bytes.
fn snapshot(fs: &dyn Fs, path: &Path) -> std::io::Result<Tree> {
    fn walk(
        fs: &dyn Fs,
        dir: &Path,
        prefix: &str,
        out: &mut BTreeMap<String, Entry>,
    ) -> std::io::Result<()> {
        for e in fs.read_dir(dir)? {
            let name = format!("{prefix}{}", e.name);
            if e.is_dir {
                out.insert(name.clone(), Entry::Dir);
                walk(fs, &dir.join(&e.name), &format!("{name}/"), out)?;
            } else {
                out.insert(name, Entry::File(read_file(fs, &dir.join(&e.name))?));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    match fs.metadata(path)? {
        None => return Ok(None),
        Some(m) if !m.is_dir => {
            out.insert(String::new(), Entry::File(read_file(fs, path)?));
        }
        Some(_) => walk(fs, path, "", &mut out)?,
    }
    Ok(Some(out))
}

fn read_file(fs: &dyn Fs, path: &Path) -> std::io::Result<Vec<u8>> {
    let file = fs.open(path, OpenMode::Read)?;
    let mut buf = vec![0; file.len()? as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

fn write_file(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file = fs.open(path, OpenMode::CreateNew)?;
    file.write_all_at(bytes, 0)?;
    file.sync()
}

fn copy_tree(fs: &dyn Fs, from: &Path, to: &Path) -> std::io::Result<()> {
    fs.create_dir_all(to)?;
    for e in fs.read_dir(from)? {
        let (src, dst) = (from.join(&e.name), to.join(&e.name));
        if e.is_dir {
            copy_tree(fs, &src, &dst)?;
        } else {
            write_file(fs, &dst, &read_file(fs, &src)?)?;
        }
    }
    Ok(())
}

/// Copies `target` aside and checks the copy as `neo4j-admin check` would (following the
/// pointer, recovering first), so that the target itself stays exactly as the run left it.
fn inspect(env: &online_backup::io::Env, target: &Path) -> Result<Inspection, BoxError> {
    let fs = &*env.fs;
    let names: Vec<String> = match fs.metadata(target)? {
        None => Vec::new(),
        Some(m) if !m.is_dir => {
            return Ok(Inspection {
                names: Vec::new(),
                live: None,
                held: Err(format!("{} is a file", target.display())),
            })
        }
        Some(_) => fs.read_dir(target)?.into_iter().map(|e| e.name).collect(),
    };
    let live = layout::read_pointer(fs, target).ok().flatten();
    if !names.iter().any(|n| n == POINTER_FILE || n == META_FILE) {
        return Ok(Inspection {
            names,
            live,
            held: Ok(None),
        });
    }
    // Created and removed durably, so a crash of the client never leaves half a copy behind
    // (the simulated disk keeps a synced directory even when its parent's entry was not).
    let copy = Path::new(INSPECT_COPY);
    let scratch = online_backup::io::parent_of(copy);
    fs.create_dir_all(scratch)?;
    fs.sync_dir(Path::new("/"))?;
    if fs.metadata(copy)?.is_some() {
        fs.remove_dir_all(copy)?;
    }
    copy_tree(fs, target, copy)?;
    let held = check::check(env.fs.clone(), env.clock.clone(), copy)
        .map(Some)
        .map_err(|e| e.to_string());
    fs.remove_dir_all(copy)?;
    fs.sync_dir(scratch)?;
    Ok(Inspection { names, live, held })
}

fn plant(env: &online_backup::io::Env, target: &Path, what: &Plant) -> Result<(), BoxError> {
    let fs = &*env.fs;
    let parent = online_backup::io::parent_of(target);
    fs.create_dir_all(parent)?;
    match what {
        Plant::ForeignStore { random } => {
            Store::create(
                env.fs.clone(),
                env.clock.clone(),
                target,
                &StoreOptions::default(),
                FormatVersion::CURRENT,
                *random,
            )?
            .close()?;
        }
        Plant::OtherFormat { store_id, format } => {
            fs.create_dir_all(target)?;
            initialize(fs, target, *store_id, *format, TxState::empty(), 0)?;
        }
        Plant::StrayFile => {
            fs.create_dir_all(target)?;
            write_file(fs, &target.join("notes.txt"), b"not a backup\n")?;
        }
        Plant::File => write_file(fs, target, b"a file, not a directory\n")?,
        Plant::DanglingPointer => {
            fs.create_dir_all(target)?;
            write_file(fs, &target.join(POINTER_FILE), b"generation-9\n")?;
        }
        Plant::DamagedPointer => {
            fs.create_dir_all(target)?;
            write_file(fs, &target.join(POINTER_FILE), b"garbage")?;
        }
        Plant::FilesWithoutMeta => {
            fs.create_dir_all(target)?;
            let name = RecordKind::ALL[0].file_name();
            write_file(fs, &target.join(name), &[0u8; 64])?;
        }
    }
    fs.sync_dir(parent)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The driver's handle.

/// How waiting for a job ended.
#[derive(Debug)]
pub enum Waited {
    Reply(Reply),
    /// This host lost power (a planned power loss fired); the driver must crash it.
    Down(String),
}

/// The driver's handle on the three hosts.
pub struct BackupSim {
    pub shared: Arc<Mutex<Shared>>,
    next_job: u64,
    /// Simulated steps the last [`BackupSim::backup`] took (to time faults).
    pub last_steps: u64,
    /// Mutating filesystem operations the server made meanwhile (to aim its power loss).
    pub last_server_ops: u64,
}

impl BackupSim {
    /// Registers the hosts and waits until the server serves.
    pub fn start(ctx: &mut ScenarioCtx, setup: &Setup) -> turmoil::Result<BackupSim> {
        ctx.record(&format!("setup {setup:?}"));
        let shared = Arc::new(Mutex::new(Shared {
            writer: Writer {
                graph: Graph::default(),
                acked: 0,
                digests: [(0, Digest::ZERO)].into_iter().collect(),
                in_flight: None,
                paused: false,
                idle: false,
                rng: StdRng::seed_from_u64(setup.writer_seed),
                max_pause: setup.max_pause,
            },
            server: ServerSide::default(),
            client: ClientSide::default(),
        }));
        let (sh, properties, random) = (shared.clone(), setup.properties(), setup.store_random);
        ctx.host(SERVER, move |h| {
            server_software(h, sh.clone(), properties.clone(), random)
        });
        let sh = shared.clone();
        ctx.host(WRITER, move |h| writer_software(h, sh.clone()));
        let sh = shared.clone();
        ctx.host(CLIENT, move |h| client_software(h, sh.clone()));
        let sim = BackupSim {
            shared,
            next_job: 0,
            last_steps: 0,
            last_server_ops: 0,
        };
        sim.wait_until_serving(ctx)?;
        Ok(sim)
    }

    /// Fails unless every host is up.
    fn expect_up(stopped: Stopped, what: &str) -> turmoil::Result {
        match stopped {
            Stopped::Done => Ok(()),
            Stopped::HostDown(host) => {
                Err(format!("{host} lost power unexpectedly while waiting for {what}").into())
            }
        }
    }

    pub fn wait_until_serving(&self, ctx: &mut ScenarioCtx) -> turmoil::Result {
        let sh = self.shared.clone();
        let stopped = ctx.run_until(MAX_STEPS, "the server to serve", move || {
            sh.lock().unwrap().server.ready
        })?;
        Self::expect_up(stopped, "the server to serve")
    }

    pub fn acked(&self) -> u64 {
        self.shared.lock().unwrap().writer.acked
    }

    /// The source's digest at each tx so far.
    pub fn digests(&self) -> BTreeMap<u64, Digest> {
        self.shared.lock().unwrap().writer.digests.clone()
    }

    /// Lets the writer commit `n` more transactions.
    pub fn commits(&self, ctx: &mut ScenarioCtx, n: u64) -> turmoil::Result {
        let goal = self.acked() + n;
        let sh = self.shared.clone();
        let stopped = ctx.run_until(MAX_STEPS, "the writer's commits", move || {
            sh.lock().unwrap().writer.acked >= goal
        })?;
        Self::expect_up(stopped, "the writer's commits")
    }

    /// Stops the writer after its current transaction and waits until it is idle.
    pub fn pause_writer(&self, ctx: &mut ScenarioCtx) -> turmoil::Result {
        self.shared.lock().unwrap().writer.paused = true;
        let sh = self.shared.clone();
        let stopped = ctx.run_until(MAX_STEPS, "the writer to pause", move || {
            let s = sh.lock().unwrap();
            s.writer.idle && s.writer.in_flight.is_none()
        })?;
        Self::expect_up(stopped, "the writer to pause")
    }

    pub fn resume_writer(&self) {
        let mut s = self.shared.lock().unwrap();
        s.writer.paused = false;
        s.writer.idle = false;
    }

    /// Hands the client a job.
    pub fn submit(&mut self, ctx: &ScenarioCtx, job: Job) -> u64 {
        self.next_job += 1;
        let id = self.next_job;
        ctx.record(&format!("client job {id}: {job:?}"));
        let mut s = self.shared.lock().unwrap();
        s.client.job = Some((id, job));
        s.client.reply = None;
        id
    }

    /// Whether job `id` has been answered.
    pub fn answered(&self, id: u64) -> bool {
        matches!(&self.shared.lock().unwrap().client.reply, Some((r, _)) if *r == id)
    }

    /// Steps until job `id` is answered or a host loses power.
    pub fn wait(&mut self, ctx: &mut ScenarioCtx, id: u64) -> turmoil::Result<Waited> {
        let sh = self.shared.clone();
        let stopped = ctx.run_until(
            MAX_STEPS,
            "the client's answer",
            move || matches!(&sh.lock().unwrap().client.reply, Some((r, _)) if *r == id),
        )?;
        match stopped {
            Stopped::HostDown(host) => Ok(Waited::Down(host)),
            Stopped::Done => {
                let (_, reply) = self.shared.lock().unwrap().client.reply.take().unwrap();
                Ok(Waited::Reply(reply))
            }
        }
    }

    /// Gives the client a job and waits for its answer; no host may lose power meanwhile.
    pub fn call(&mut self, ctx: &mut ScenarioCtx, job: Job) -> turmoil::Result<Reply> {
        let id = self.submit(ctx, job);
        match self.wait(ctx, id)? {
            Waited::Reply(r) => Ok(r),
            Waited::Down(host) => {
                Err(format!("{host} lost power unexpectedly during a client job").into())
            }
        }
    }

    /// One backup run, undisturbed.
    pub fn backup(&mut self, ctx: &mut ScenarioCtx, job: BackupJob) -> turmoil::Result<BackupRun> {
        let start = ctx.sim.elapsed();
        let server_ops = ctx.world.mutating_ops(SERVER);
        let reply = self.call(ctx, Job::Backup(job))?;
        self.last_steps = (ctx.sim.elapsed() - start).as_millis() as u64;
        self.last_server_ops = ctx.world.mutating_ops(SERVER) - server_ops;
        match reply {
            Reply::Backup(run) => Ok(*run),
            other => Err(format!("a backup job answered {other:?}").into()),
        }
    }

    pub fn inspect(&mut self, ctx: &mut ScenarioCtx, target: &str) -> turmoil::Result<Inspection> {
        match self.call(ctx, Job::Inspect(PathBuf::from(target)))? {
            Reply::Inspect(i) => Ok(i),
            other => Err(format!("an inspection answered {other:?}").into()),
        }
    }

    /// The server's status, as the client host reads it.
    pub fn status(&mut self, ctx: &mut ScenarioCtx) -> turmoil::Result<Status> {
        match self.call(ctx, Job::Status)? {
            Reply::Status(Some(s)) => Ok(s),
            other => Err(format!("the server's status is unavailable: {other:?}").into()),
        }
    }

    /// Runs `job` undisturbed and checks it (invariants 1, 3, 4). `pruned` says whether the
    /// server's logs no longer hold the tx after the backup's; `None` reads it from the status
    /// the run took just before it began (exact only while nothing can prune meanwhile: the
    /// scenario's business). Returns the run and what the directory holds now.
    pub fn backup_checked(
        &mut self,
        ctx: &mut ScenarioCtx,
        holding: &Holding,
        job: BackupJob,
    ) -> turmoil::Result<(BackupRun, Holding)> {
        let target = job.target.display().to_string();
        let run = self.backup(ctx, job)?;
        let server_tx = run.status_before.as_ref().map(|s| s.last_committed_tx);
        let expect = expectation(holding, run.job.mode, pruned(holding, &run), server_tx);
        let inspection = match expect {
            Expect::Refuse { .. } => None,
            _ => Some(self.inspect(ctx, &target)?),
        };
        let digests = self.digests();
        let now = check_invariants(&Facts {
            run: Some(&run),
            expect: &expect,
            before: holding,
            after: inspection.as_ref(),
            digests: &digests,
            began_after: run.began_after,
        })?;
        ctx.record(&format!("checked: {expect:?} -> {now:?}"));
        Ok((run, now))
    }

    /// The server lost no acknowledged transaction and holds what the model says: with the
    /// writer paused, its last tx is the last acknowledged one and its digest the source's there.
    pub fn check_server_intact(&mut self, ctx: &mut ScenarioCtx) -> turmoil::Result {
        self.pause_writer(ctx)?;
        let status = self.status(ctx)?;
        let (acked, digest) = {
            let s = self.shared.lock().unwrap();
            (
                s.writer.acked,
                s.writer.digests.get(&s.writer.acked).copied(),
            )
        };
        if status.last_committed_tx != acked || Some(status.digest) != digest {
            return Err(format!(
                "SIM-18, SIM-19: at the end the server is at tx {} digest {}; acknowledged: tx {acked} digest {digest:?}",
                status.last_committed_tx, status.digest
            )
            .into());
        }
        self.resume_writer();
        Ok(())
    }

    /// Asks the server to shut down cleanly (PR-19) and waits until `server::run` returned.
    pub fn shut_down_server(&self, ctx: &mut ScenarioCtx) -> turmoil::Result {
        self.shared.lock().unwrap().server.shutdown = true;
        let sh = self.shared.clone();
        let stopped = ctx.run_until(MAX_STEPS, "the server to shut down", move || {
            sh.lock().unwrap().server.stopped
        })?;
        Self::expect_up(stopped, "the server to shut down")
    }
}

/// Whether the server's logs no longer held the tx after the directory's backup when `run`
/// began, by the status it read just before.
fn pruned(holding: &Holding, run: &BackupRun) -> bool {
    match (holding, &run.status_before) {
        (Holding::Backup { tx, .. }, Some(status)) => status.oldest_logged_tx > tx + 1,
        _ => false,
    }
}
