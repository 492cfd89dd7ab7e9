//! What the backup scenarios share: three simulated hosts, the driver's handle on them, and the
//! one function that checks the brief's invariants after every backup run.
//!
//! - `server` runs the product's `neo4j` (`server::run`) on its own disk, with a configuration
//!   parsed by `Config::parse` (small log rotation threshold, a seed-chosen `keep_logical_logs`).
//! - `writer` commits random transactions over the HTTP API (`tests/kit/http.rs`), one at a time,
//!   and keeps the graph model (`kit::model::Graph`) of what the server acknowledged: from it, the
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
//! The hosts' software is `backup_hosts.rs`; the judge is `backup_judge.rs`.
//!
//! The driver (a scenario's `run`) hands the client one job at a time and steps the simulation
//! until it answers or a host loses power; it injects faults between steps. [`check_invariants`]
//! judges each run from what the client reported, what the target holds afterwards and the
//! writer's record of the source's digests (SIM-21). Runs use every `-verify` mode, so a
//! verification that fails a correct backup (exit 6) fails the simulation (BK-26, BK-27).

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use online_backup::backup::client::{Mode, Verify};
use online_backup::backup::tls::ClientTlsFiles;
use online_backup::digest::Digest;
use online_backup::graph::Op;
use online_backup::store::format::FormatVersion;
use online_backup::store::meta::StoreId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::kit::certs::{Ca, Pem, Role, Validity};
use crate::kit::http::Status;
use crate::kit::model::Graph;
use crate::runner::{ScenarioCtx, Stopped};
use crate::scenarios::backup_hosts::{client_software, server_software, writer_software};
pub use crate::scenarios::backup_judge::*;

pub const SERVER: &str = "server";
pub const WRITER: &str = "writer";
pub const CLIENT: &str = "client";
/// The server's store directory, on the server's disk.
pub(crate) const STORE_DIR: &str = "/data/db";
pub(crate) const HTTP_ADDR: &str = "server:7474";
pub const BACKUP_PORT: u16 = 6362;
/// The backup directory the scenarios keep backing up into, on the client's disk.
pub const TARGET: &str = "/backup/db";
/// Where the client copies a target to check it without touching it.
pub(crate) const INSPECT_COPY: &str = "/scratch/inspect";
/// Where an inspection restores that copy to an earlier tx (PIT-7).
pub(crate) const INSPECT_RESTORE: &str = "/scratch/restored";
/// How long the writer waits for a commit's answer before it asks where the server stands.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// The most simulated steps (1 ms each) any one wait may take.
pub(crate) const MAX_STEPS: u64 = 600_000;

/// Network of the backup scenarios: a few milliseconds of latency and no random loss; faults are
/// injected by the driver. A connection holds at most [`TCP_SEGMENTS`] segments its reader has
/// not taken, as a real socket's buffer would. (What makes a full backup's copy last while the
/// writer commits is the blocking work's latency, [`DISK`]; this alone did not, SIM-23.)
pub fn configure(b: &mut turmoil::Builder) {
    b.min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(8))
        .tcp_capacity(TCP_SEGMENTS);
}

/// The backup scenarios' disks: each blocking job takes up to 8 ms, so a full backup's copy
/// (a job per chunk read) lasts while the writer's commits land (SIM-23).
pub const DISK: crate::seams::DiskConfig = crate::seams::DiskConfig {
    blocking_latency_ms: 8,
    ..crate::seams::DiskConfig::DEFAULT
};

/// Segments a simulated connection buffers for its reader.
const TCP_SEGMENTS: usize = 4;

/// `keep_logical_logs` as the scenarios choose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    Days(u64),
    Hours(u64),
    /// `<n> files`: with the small rotation threshold, the server prunes at almost every
    /// rotation, while backups run too (their pins hold what they need, RET-3).
    Files(u64),
    KeepAll,
}

impl Retention {
    /// Mostly an age policy (what pruned-log fallbacks need), sometimes `true`.
    pub fn random(rng: &mut StdRng) -> Retention {
        match rng.random_range(0..6) {
            0 | 1 => Retention::Days(rng.random_range(1..=7)),
            2 | 3 => Retention::Hours(rng.random_range(1..=48)),
            4 => Retention::Files(rng.random_range(1..=3)),
            _ => Retention::KeepAll,
        }
    }

    fn property(self) -> String {
        match self {
            Retention::Days(n) => format!("{n} days"),
            Retention::Hours(n) => format!("{n} hours"),
            Retention::Files(n) => format!("{n} files"),
            Retention::KeepAll => "true".to_string(),
        }
    }

    /// How far to move the clock so that every log file written so far is older than the
    /// policy keeps; `None` when the policy keeps everything.
    pub fn age_out(self) -> Option<Duration> {
        match self {
            Retention::Days(n) => Some(Duration::from_secs((n + 1) * 24 * 3600)),
            Retention::Hours(n) => Some(Duration::from_secs((n + 1) * 3600)),
            Retention::Files(_) | Retention::KeepAll => None,
        }
    }
}

/// TLS on the backup port (spec/security.md): the PEM files of a CA, the server and the client,
/// made from the seed (Ed25519 keys, IO-11). The server host writes its three under [`TLS_DIR`]
/// on its disk, the client its three on its own, every time its software starts.
#[derive(Clone)]
pub struct SimTls {
    pub ca: String,
    pub server: Pem,
    pub client: Pem,
    ca_seed: [u8; 32],
    valid: Validity,
}

/// Where the hosts keep their TLS files.
pub(crate) const TLS_DIR: &str = "/tls";
/// The client certificate's name, the one the server's allow-list names.
pub const CLIENT_NAME: &str = "backup-client";

impl fmt::Debug for SimTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SimTls")
    }
}

impl SimTls {
    /// Certificates valid from a day before the simulation's epoch for a year (the scenarios
    /// move the clock by days at most), the keys drawn from `rng`.
    pub fn random(rng: &mut StdRng) -> SimTls {
        let valid = Validity::days_around(crate::runner::epoch(), 365);
        let ca_seed = rng.random();
        let ca = Ca::new("sim backup CA", valid, Some(ca_seed));
        SimTls {
            server: ca.issue(Role::Server, &[SERVER], valid, Some(rng.random())),
            client: ca.issue(Role::Client, &[CLIENT_NAME], valid, Some(rng.random())),
            ca: ca.cert,
            ca_seed,
            valid,
        }
    }

    /// Another client certificate of the same CA (made again from its seed), valid over
    /// `valid`, its key from `rng`.
    pub fn client_valid(&self, valid: Validity, rng: &mut StdRng) -> Pem {
        let ca = Ca::new("sim backup CA", self.valid, Some(self.ca_seed));
        ca.issue(Role::Client, &[CLIENT_NAME], valid, Some(rng.random()))
    }

    /// The server's properties lines.
    fn properties(&self) -> String {
        format!(
            "online_backup_tls_cert={TLS_DIR}/server.pem
online_backup_tls_key={TLS_DIR}/server.key
\
             online_backup_tls_client_ca={TLS_DIR}/ca.pem
\
             online_backup_allowed_clients={CLIENT_NAME}
online_backup_require_tls=true
"
        )
    }

    /// The client's `--tls-*` files.
    pub fn client_files() -> ClientTlsFiles {
        ClientTlsFiles {
            ca: PathBuf::from(format!("{TLS_DIR}/ca.pem")),
            cert: Some(PathBuf::from(format!("{TLS_DIR}/client.pem"))),
            key: Some(PathBuf::from(format!("{TLS_DIR}/client.key"))),
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
    /// TLS on the backup port, on about half of the seeds.
    pub tls: Option<SimTls>,
}

impl Setup {
    pub fn random(rng: &mut StdRng) -> Setup {
        Setup {
            retention: Retention::random(rng),
            rotation_threshold: ["1k", "2k", "4k"][rng.random_range(0..3)],
            store_random: rng.random(),
            writer_seed: rng.random(),
            max_pause: Duration::from_millis(rng.random_range(1..=25)),
            tls: rng.random_bool(0.5).then(|| SimTls::random(rng)),
        }
    }

    /// The server's `neo4j.properties`.
    fn properties(&self) -> String {
        format!(
            "online_backup_enabled=true\nonline_backup_server={SERVER}:{BACKUP_PORT}\n\
             http_server={HTTP_ADDR}\nkeep_logical_logs={}\n\
             logical_log_rotation_threshold={}\n{}",
            self.retention.property(),
            self.rotation_threshold,
            self.tls.as_ref().map_or(String::new(), SimTls::properties)
        )
    }
}

/// The writer's state: the model of what the server acknowledged, and the source's digest at
/// every transaction it ever sent.
pub struct Writer {
    pub(crate) graph: Graph,
    /// The last tx the server acknowledged (or, after a failure, reported as committed).
    pub acked: u64,
    /// The source's digest after each tx: tx 0 is the empty store; tx `acked + 1` is the one in
    /// flight, if any (a backup may already hold it). A tx the server lost in a crash before
    /// acknowledging it is replaced by whatever is sent next under its id.
    pub digests: BTreeMap<u64, Digest>,
    /// The transaction sent and not yet acknowledged.
    pub(crate) in_flight: Option<Vec<Op>>,
    /// Set by the driver: stop sending after the current transaction.
    pub(crate) paused: bool,
    /// Set by the writer: paused, and nothing in flight.
    pub(crate) idle: bool,
    pub(crate) rng: StdRng,
    pub(crate) max_pause: Duration,
}

/// The server's state as its software reports it.
#[derive(Default)]
pub(crate) struct ServerSide {
    /// The current run of the software has bound its addresses.
    pub(crate) ready: bool,
    /// Set by the driver: shut down cleanly (PR-19).
    pub(crate) shutdown: bool,
    /// The software's `server::run` returned.
    pub(crate) stopped: bool,
}

/// The job the client is given, and its answer.
#[derive(Default)]
pub(crate) struct ClientSide {
    pub(crate) job: Option<(u64, Job)>,
    pub(crate) reply: Option<(u64, Reply)>,
}

/// Everything the hosts and the driver share.
pub struct Shared {
    pub writer: Writer,
    /// The TLS files the hosts write at start; the driver may replace them (SEC-14).
    pub tls: Option<SimTls>,
    /// How long after it connected the server closed each stalled connection of
    /// [`Job::Stall`].
    pub stalls: Vec<Duration>,
    pub(crate) server: ServerSide,
    pub(crate) client: ClientSide,
}

/// One `neo4j-backup` run, as the driver asks for it.
#[derive(Clone, Debug)]
pub struct BackupJob {
    pub target: PathBuf,
    pub mode: Mode,
    pub verify: Verify,
    /// `-timeout` (BK-7).
    pub timeout: Duration,
    /// `--max-rate` (BK-41).
    pub max_rate: Option<NonZeroU64>,
    /// Transactions per durable apply run (BK-24): a few on about half the runs, so that the
    /// runs, their read back and the stream interleave (SIM-38).
    pub apply_run_txs: usize,
    /// `--scrub-budget` (MF-11): the default, none, or most of the backup, so scrubs that wrap
    /// round and that read everything happen too.
    pub scrub_percent: u32,
    /// `--keep-transactions true` on about a third of the runs (PIT-2 .. PIT-6), so undo
    /// segments are written, crashed into and pruned, and inspections restore to earlier txs.
    pub keep_transactions: bool,
    /// `--keep-generations` (PIT-12): 2 or 3 on about a third of the runs, so full backups keep
    /// older generations, later runs trim them, and the judge checks which stay.
    pub keep_generations: u32,
}

impl BackupJob {
    pub fn new(target: &str, mode: Mode, rng: &mut StdRng) -> BackupJob {
        BackupJob {
            target: PathBuf::from(target),
            mode,
            verify: [Verify::Off, Verify::Default, Verify::Full][rng.random_range(0..3)],
            timeout: Duration::from_secs(10),
            // Paced on about half the runs (BK-41): the server waits on the client, so the copy
            // spans more of the writer's commits (SIM-23).
            max_rate: rng
                .random_bool(0.5)
                .then(|| rng.random_range(20_000..200_000))
                .and_then(NonZeroU64::new),
            apply_run_txs: if rng.random_bool(0.5) {
                rng.random_range(1..=8)
            } else {
                online_backup::backup::client::APPLY_RUN_TXS
            },
            scrub_percent: [0, online_backup::backup::client::SCRUB_PERCENT, 40, 100]
                [rng.random_range(0..4)],
            keep_transactions: rng.random_bool(0.35),
            keep_generations: if rng.random_bool(0.3) {
                rng.random_range(2..=3)
            } else {
                1
            },
        }
    }

    /// A job with the default verification, for the judge's tests.
    #[cfg(test)]
    pub fn fixed(target: &str, mode: Mode) -> BackupJob {
        BackupJob {
            target: PathBuf::from(target),
            mode,
            verify: Verify::Default,
            timeout: Duration::from_secs(10),
            max_rate: None,
            apply_run_txs: online_backup::backup::client::APPLY_RUN_TXS,
            scrub_percent: online_backup::backup::client::SCRUB_PERCENT,
            keep_transactions: false,
            keep_generations: 1,
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
    /// Restore the object store backup `url` into the new directory `to` (OBJ-8), at its last
    /// tx, or with `until_tx` at that tx (OBJ-18).
    RestoreObjects {
        url: String,
        to: PathBuf,
        until_tx: Option<u64>,
    },
    /// `neo4j-admin aggregate` of the object store backup `url` (OBJ-20), working in the new
    /// directory `work`.
    Aggregate {
        url: String,
        work: PathBuf,
    },
    /// `GET /db/data/`.
    Status,
    /// Write the client's TLS files anew from [`Shared::tls`].
    WriteTls,
    /// Open this many connections to the backup port, send the first 5 bytes of a TLS
    /// handshake record on each and nothing more; a task of the client's keeps them and records
    /// in [`Shared::stalls`] how long after its connection the server closed each (SEC-13).
    Stall(usize),
}

/// The client's answer.
#[derive(Debug)]
pub enum Reply {
    Backup(Box<BackupRun>),
    Inspect(Box<Inspection>),
    Done,
    Status(Option<Status>),
    /// What [`Job::RestoreObjects`] restored: `None` when the target holds no backup, else the
    /// restored tx and recomputed digest; `Err` when the restore failed.
    Objects(Result<Option<(u64, String)>, String>),
    /// What [`Job::Aggregate`] did: the tx its new generation is at, `None` when there was
    /// nothing to fold; `Err` the exit code and sentence of a failure.
    Aggregated(Result<Option<u64>, (u8, String)>),
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
    /// Client power losses aimed at the manifest's operations that struck (MF-6, MF-8).
    pub manifest_losses: u64,
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
            tls: setup.tls.clone(),
            stalls: Vec::new(),
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
            manifest_losses: 0,
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
            Reply::Inspect(i) => Ok(*i),
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
        let pruned_before = pruned(holding, &run);
        let mut expects = vec![expectation(holding, run.job.mode, pruned_before, server_tx)];
        // Logs the server still held when the run began may have gone during it (a count
        // retention prunes at the writer's rotations): when the server's logs no longer hold
        // the backup's next tx after the run, finding them pruned was right too.
        if let (false, Holding::Backup { tx, .. }) = (pruned_before, holding) {
            if self.status(ctx)?.oldest_logged_tx > tx + 1 {
                expects.push(expectation(holding, run.job.mode, true, server_tx));
            }
        }
        let inspection = if expects.iter().all(|e| matches!(e, Expect::Refuse { .. })) {
            None
        } else {
            Some(self.inspect(ctx, &target)?)
        };
        let digests = self.digests();
        let mut failures = Vec::new();
        for expect in &expects {
            let facts = Facts {
                run: Some(&run),
                expect,
                before: holding,
                after: match expect {
                    Expect::Refuse { .. } => None,
                    _ => inspection.as_ref(),
                },
                digests: &digests,
                began_after: run.began_after,
            };
            match check_invariants(&facts) {
                Ok(now) => {
                    ctx.record(&format!("checked: {expect:?} -> {now:?}"));
                    return Ok((run, now));
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(failures
            .join("; or, with the logs pruned during the run: ")
            .into())
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
