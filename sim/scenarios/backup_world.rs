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
//! The driver (a scenario's `run`) hands the client one job at a time and steps the simulation
//! until it answers or a host loses power; it injects faults between steps. [`check_invariants`]
//! judges each run from what the client reported, what the target holds afterwards and the
//! writer's record of the source's digests (SIM-21). Runs use every `-verify` mode, so a
//! verification that fails a correct backup (exit 6) fails the simulation (BK-26, BK-27).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use online_backup::backup::client::{self, BackupOptions, Lines, Mode, Verify};
use online_backup::config::Config;
use online_backup::digest::Digest;
use online_backup::graph::{Op, Properties, Value};
use online_backup::io::{Fs, OpenMode};
use online_backup::server::{self, ServerOptions};
use online_backup::store::check;
use online_backup::store::format::{FormatVersion, RecordKind};
use online_backup::store::layout::{self, POINTER_FILE};
use online_backup::store::log::TxState;
use online_backup::store::meta::{StoreId, META_FILE};
use online_backup::store::{initialize, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::kit::http::{self, Status};
use crate::kit::model::Graph;
use crate::runner::{HostCtx, ScenarioCtx, Stopped};
pub use crate::scenarios::backup_judge::*;

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

    /// A job with the default verification, for the judge's tests.
    #[cfg(test)]
    pub fn fixed(target: &str, mode: Mode) -> BackupJob {
        BackupJob {
            target: PathBuf::from(target),
            mode,
            verify: Verify::Default,
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
                outcome: outcome.map_err(|e| Failure::of(&e)),
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
