//! `retention_time`: the server with `keep_logical_logs = n days` (or the same in hours) and a
//! small rotation threshold, a writer committing over the network while the driver moves the
//! clock forward by hours and days, now and then a crash and restart, and a clean stop at the
//! end (SIM-17).
//!
//! After every commit, every start and the stop, the server's host looks at the log files on its
//! disk and compares them with what the retention rule says, worked out here from the files'
//! headers and first transactions' commit times (RET-1, RET-2, RET-9): pruning happens only at a
//! checkpoint (RET-13) — a rotation, the checkpoint after recovery, the clean stop — with the
//! clock's time at that moment, so after a commit that rotated the kept files must be exactly
//! the gap-free run the rule leaves, and after one that did not, exactly those kept before.
//! Files seen once are remembered after they are deleted, so the rule is checked over the whole
//! history, not only what is left. At the end of every step the writer reads `GET /db/data/`:
//! `oldest_logged_tx` and `log_bytes` must describe the kept files (RET-15).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use online_backup::config::Config;
use online_backup::io::{Fs, OpenMode};
use online_backup::server::{self, ServerOptions};
use online_backup::store::log::{self, LogHeader, ReadOutcome, HEADER_SIZE};
use online_backup::store::meta::{Meta, META_FILE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::kit::http::{self, Status};
use crate::kit::model::Graph;
use crate::runner::{HostCtx, Scenario, ScenarioCtx, Stopped, EPOCH_SECS};
use crate::server_sim::{config, wait_until, when, HTTP_ADDR, SERVER, STORE_DIR};

pub const SCENARIO: Scenario = Scenario::new(
    "retention_time",
    "keep_logical_logs=<n> days with the clock moved by days: exactly the files the rule keeps",
    run,
)
.seeds(100)
.configure(fast_network);

fn fast_network(b: &mut turmoil::Builder) {
    b.min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(3));
}

const WRITER: &str = "writer";
/// Steps of the driver: move the clock, then commit a few transactions.
const STEPS: u64 = 10;
const HOUR_MS: u64 = 3600 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// How far the driver moves the clock before a step, in hours.
const ADVANCES_H: &[u64] = &[0, 3, 12, 24, 24, 36, 48];
const MAX_STEPS: u64 = 100_000;
/// How long the writer waits for an answer (the server is up whenever it sends).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the scenario knows of one log file, from the first time it saw it on disk: kept after
/// the file is deleted, since the rule about deleting a file looks at the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Known {
    prev_last_tx: u64,
    /// Commit time of its first transaction, once it has one.
    first_tx_millis: Option<u64>,
}

/// One log file as the host read it from disk.
#[derive(Clone, Debug)]
struct OnDisk {
    version: u64,
    prev_last_tx: u64,
    bytes: u64,
    first_tx_millis: Option<u64>,
    /// Its last transaction and that one's commit time (read for the newest files only).
    last_entry: Option<(u64, u64)>,
}

/// When the host looks at its log files, and what happened just before.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// Transaction `tx` was acknowledged (it may have rotated the log, which prunes).
    Commit(u64),
    /// The server started at `now`. With `recovers`, recovery replays transactions and then
    /// checkpoints, which prunes with the time of the start.
    Start { now: u64, recovers: bool },
    /// The server stopped cleanly at `now`: its checkpoint prunes.
    Stop { now: u64 },
}

struct Model {
    /// The policy's n, in milliseconds.
    keep_ms: u64,
    graph: Graph,
    rng: StdRng,
    /// The last acknowledged tx.
    last_tx: u64,
    /// Transactions the writer still has to commit in this step.
    budget: u64,
    /// The writer read the status at the end of the step.
    step_done: bool,
    server_ready: bool,
    shutdown: bool,
    /// A look at the log files the server's host still has to take.
    inspect: Option<Moment>,
    inspections: u64,
    /// Every log file ever seen, by version.
    known: BTreeMap<u64, Known>,
    /// The files on disk at the last look, oldest first: the kept ones.
    kept: Vec<OnDisk>,
    /// The clean stop was inspected.
    stopped: bool,
    random: u64,
}

/// RET-1, RET-2, RET-9: the oldest version kept when the files `versions` (gap-free, the last
/// one active) are pruned at `now` with a checkpoint in `recovery_version`: walking from the
/// oldest, a file goes while it is not the active one, recovery does not need it, and the next
/// file's first transaction was committed strictly before `now − keep_ms`.
fn oldest_kept(
    versions: &[u64],
    known: &BTreeMap<u64, Known>,
    recovery_version: u64,
    now: u64,
    keep_ms: u64,
) -> u64 {
    let mut oldest = versions[0];
    for &v in &versions[..versions.len() - 1] {
        let next_first = known.get(&(v + 1)).and_then(|k| k.first_tx_millis);
        let old_enough = now
            .checked_sub(keep_ms)
            .is_some_and(|cutoff| next_first.is_some_and(|t| t < cutoff));
        if v >= recovery_version || !old_enough {
            break;
        }
        oldest = v + 1;
    }
    oldest
}

/// Reads the log files of the store in `dir`: headers, lengths, first transactions' commit
/// times, and the last entry of the two newest files.
fn read_logs(fs: &dyn Fs, dir: &Path) -> Result<Vec<OnDisk>, String> {
    let versions = log::list_log_versions(fs, dir).map_err(|e| e.to_string())?;
    let newest = versions.last().copied().unwrap_or(0);
    let mut out = Vec::new();
    for version in versions {
        let path = log::log_path(dir, version);
        let fail = |e: std::io::Error| format!("reading {}: {e}", path.display());
        let file = fs.open(&path, OpenMode::Read).map_err(fail)?;
        let header = LogHeader::read(&*file)
            .map_err(fail)?
            .ok_or_else(|| format!("log file {version} has no valid header"))?;
        let bytes = file.len().map_err(fail)?;
        let mut offset = HEADER_SIZE;
        let mut first_tx_millis = None;
        let mut last_entry = None;
        while let ReadOutcome::Entry(entry, next) =
            log::read_entry(&*file, offset, bytes).map_err(fail)?
        {
            first_tx_millis = first_tx_millis.or(Some(entry.timestamp_millis));
            last_entry = Some((entry.tx_id, entry.timestamp_millis));
            offset = next;
            if version + 1 < newest {
                break;
            }
        }
        out.push(OnDisk {
            version,
            prev_last_tx: header.prev_last_tx,
            bytes,
            first_tx_millis,
            last_entry: last_entry.filter(|_| version + 1 >= newest),
        });
    }
    Ok(out)
}

/// Compares the log files on disk after `moment` with what the retention rule leaves, and
/// makes them the new kept set.
fn inspect(m: &mut Model, moment: Moment, disk: Vec<OnDisk>, meta: &Meta) -> Result<(), String> {
    let on_disk: Vec<u64> = disk.iter().map(|f| f.version).collect();
    let Some(&active) = on_disk.last() else {
        return Err("the store has no log file".into());
    };
    // LOG-1, RET-1: the files are always a gap-free run.
    if on_disk.windows(2).any(|w| w[1] != w[0] + 1) {
        return Err(format!(
            "after {moment:?} the log files have a gap: {on_disk:?}"
        ));
    }
    // RET-2: what recovery needs is on disk.
    if !on_disk.contains(&meta.checkpoint.log_version) {
        return Err(format!(
            "after {moment:?} the checkpoint's log file {} is gone: {on_disk:?}",
            meta.checkpoint.log_version
        ));
    }
    for f in &disk {
        let k = m.known.entry(f.version).or_insert(Known {
            prev_last_tx: f.prev_last_tx,
            first_tx_millis: None,
        });
        if k.prev_last_tx != f.prev_last_tx
            || k.first_tx_millis
                .is_some_and(|t| Some(t) != f.first_tx_millis)
        {
            return Err(format!(
                "log file {} changed its header or first transaction: {k:?} then {f:?}",
                f.version
            ));
        }
        k.first_tx_millis = f.first_tx_millis;
    }
    let before: Vec<u64> = m.kept.iter().map(|f| f.version).collect();
    let expected: Vec<u64> = if before.is_empty() {
        // The store was just created: its one log file.
        if on_disk.len() != 1 {
            return Err(format!("a new store has log files {on_disk:?}"));
        }
        on_disk.clone()
    } else {
        let last_before = *before.last().expect("not empty");
        let prune = match moment {
            Moment::Commit(tx) if active == last_before + 1 => {
                // The commit filled the log and rotated: the checkpoint in the new file
                // pruned, at the commit's own time (the same instant: nothing waits between).
                let rotated = disk
                    .iter()
                    .find(|f| f.version == last_before)
                    .and_then(|f| f.last_entry);
                let Some((last, now)) = rotated else {
                    return Err(format!(
                        "tx {tx} rotated to log file {active} but log file {last_before} is gone"
                    ));
                };
                let header = disk.last().expect("active").prev_last_tx;
                if last != tx || header != tx {
                    return Err(format!(
                        "tx {tx} rotated, but log file {last_before} ends with tx {last} and \
                         log file {active} starts after tx {header}"
                    ));
                }
                Some(now)
            }
            Moment::Commit(_) => None,
            Moment::Start { now, recovers } => recovers.then_some(now),
            Moment::Stop { now } => Some(now),
        };
        let versions: Vec<u64> = (before[0]..=active).collect();
        match prune {
            Some(now) => {
                let oldest = oldest_kept(&versions, &m.known, active, now, m.keep_ms);
                (oldest..=active).collect()
            }
            // RET-13: no checkpoint, no pruning.
            None => versions,
        }
    };
    if on_disk != expected {
        let from = before.first().copied().unwrap_or(active).min(on_disk[0]);
        let known: Vec<String> = (from..=active)
            .map(|v| format!("{v}: {:?}", m.known.get(&v)))
            .collect();
        return Err(format!(
            "SIM-17: after {moment:?} the log files are {on_disk:?}; the rule (keep {} ms) leaves \
             {expected:?} (kept before: {before:?}; files: {})",
            m.keep_ms,
            known.join(", ")
        ));
    }
    m.kept = disk;
    Ok(())
}

/// The server's host: before the server starts it notes whether recovery will replay (the
/// checkpoint is behind the last commit), then serves while looking at its log files whenever
/// the model asks; after a clean stop it looks once more.
async fn server_software(h: HostCtx, model: Arc<Mutex<Model>>, config: Config) -> turmoil::Result {
    let dir = Path::new(STORE_DIR);
    let exists = h.env.fs.metadata(&dir.join(META_FILE))?.is_some();
    let recovers = if exists {
        let meta = Meta::read(&*h.env.fs, dir)?;
        meta.checkpoint.last_tx < model.lock().unwrap().last_tx
    } else {
        false
    };
    // The same instant the store is opened: nothing below waits before `run` opens it.
    let now = h.env.clock.now_millis();
    let random = {
        let mut m = model.lock().unwrap();
        m.inspect = Some(Moment::Start { now, recovers });
        m.random
    };
    let options = ServerOptions {
        store_dir: dir.to_path_buf(),
        config,
        create_random: random,
        http: online_backup::server::http::HttpLimits::default(),
    };
    let (stop, ready) = (model.clone(), model.clone());
    let served = server::run(
        h.env.clone(),
        options,
        when(move || stop.lock().unwrap().shutdown),
        move |_| ready.lock().unwrap().server_ready = true,
    );
    tokio::select! {
        biased;
        r = served => r?,
        r = inspect_on_request(&h, &model) => return r,
    }
    // The stop's checkpoint pruned at this very instant.
    let now = h.env.clock.now_millis();
    h.record("server stopped cleanly");
    look(&h, &model, Moment::Stop { now })?;
    model.lock().unwrap().stopped = true;
    std::future::pending::<()>().await;
    Ok(())
}

fn look(h: &HostCtx, model: &Arc<Mutex<Model>>, moment: Moment) -> Result<(), String> {
    let dir = Path::new(STORE_DIR);
    let disk = read_logs(&*h.env.fs, dir)?;
    let meta = Meta::read(&*h.env.fs, dir).map_err(|e| e.to_string())?;
    let mut m = model.lock().unwrap();
    inspect(&mut m, moment, disk, &meta)?;
    m.inspections += 1;
    Ok(())
}

async fn inspect_on_request(h: &HostCtx, model: &Arc<Mutex<Model>>) -> turmoil::Result {
    loop {
        let mut moment = None;
        wait_until(|| {
            let mut m = model.lock().unwrap();
            if m.server_ready {
                moment = m.inspect.take();
            }
            moment.is_some()
        })
        .await;
        look(h, model, moment.expect("taken"))?;
        h.record("log files checked against the retention rule");
    }
}

async fn writer_software(h: HostCtx, model: Arc<Mutex<Model>>) -> turmoil::Result {
    let net = &*h.env.net;
    loop {
        wait_until(|| {
            let m = model.lock().unwrap();
            m.budget > 0 && m.server_ready && m.inspect.is_none()
        })
        .await;
        let ops = {
            let mut m = model.lock().unwrap();
            let Model { graph, rng, .. } = &mut *m;
            graph.random_owned_tx(rng, "W0")
        };
        let answer = http::commit(net, HTTP_ADDR, &ops, REQUEST_TIMEOUT).await?;
        let inspections = {
            let mut m = model.lock().unwrap();
            let expected_ids = m.graph.apply(&ops)?;
            if answer != Ok((m.last_tx + 1, expected_ids)) {
                return Err(
                    format!("the server answered {answer:?} to tx {}", m.last_tx + 1).into(),
                );
            }
            m.last_tx += 1;
            m.budget -= 1;
            m.inspect = Some(Moment::Commit(m.last_tx));
            m.inspections
        };
        wait_until(|| model.lock().unwrap().inspections > inspections).await;
        if model.lock().unwrap().budget == 0 {
            check_status(&h, &model).await?;
            model.lock().unwrap().step_done = true;
        }
    }
}

/// RET-15: the status describes the log files kept. HTTP-6: its `Date` is the simulated
/// clock's, days ahead of the simulation's start by now (the system clock's would be years off).
async fn check_status(h: &HostCtx, model: &Arc<Mutex<Model>>) -> turmoil::Result {
    let answer = http::get(&*h.env.net, HTTP_ADDR, "/db/data/", REQUEST_TIMEOUT).await?;
    let received = h.env.clock.now();
    let header = answer.header("date");
    let Some(Ok(date)) = header.map(httpdate::parse_http_date) else {
        return Err(format!("HTTP-6: GET /db/data/ has no valid Date header: {header:?}").into());
    };
    // Whole seconds, sent at most a few milliseconds before it arrived.
    if date > received || received.duration_since(date)? > Duration::from_secs(2) {
        return Err(format!(
            "HTTP-6: GET /db/data/ is dated {:?}, received at {}",
            header,
            httpdate::fmt_http_date(received)
        )
        .into());
    }
    let status = Status::from_answer(&answer)?;
    let m = model.lock().unwrap();
    let oldest = m.kept.first().expect("the store has log files");
    let bytes: u64 = m.kept.iter().map(|f| f.bytes).sum();
    if status.last_committed_tx != m.last_tx
        || status.oldest_logged_tx != oldest.prev_last_tx + 1
        || status.log_bytes != bytes
    {
        return Err(format!(
            "SIM-17, RET-15: GET /db/data/ says {status:?}; the logs on disk are {:?} ({bytes} bytes) and tx {} \
             was the last acknowledged",
            m.kept, m.last_tx
        )
        .into());
    }
    Ok(())
}

fn wait(
    ctx: &mut ScenarioCtx,
    model: &Arc<Mutex<Model>>,
    what: &str,
    done: impl Fn(&Model) -> bool + 'static,
) -> turmoil::Result {
    let m = model.clone();
    match ctx.run_until(MAX_STEPS, what, move || done(&m.lock().unwrap()))? {
        Stopped::Done => Ok(()),
        Stopped::HostDown(h) => Err(format!("host {h} lost power, which no one planned").into()),
    }
}

/// How far to move the clock before a step: by a few hours or days, or, now and then, to just
/// before the oldest kept file may go (its successor's first transaction turns `keep` old), so
/// the step's rotations prune on both sides of that instant and an off-by-a-little rule shows.
fn clock_advance(ctx: &mut ScenarioCtx, model: &Arc<Mutex<Model>>) -> Duration {
    let edge = {
        let m = model.lock().unwrap();
        m.kept
            .get(1)
            .and_then(|f| f.first_tx_millis)
            .map(|t| t + m.keep_ms)
    };
    if let Some(edge) = edge.filter(|_| ctx.rng.random_bool(0.4)) {
        let now =
            EPOCH_SECS * 1000 + (ctx.sim.elapsed() + ctx.world.clock().offset()).as_millis() as u64;
        let target = edge - ctx.rng.random_range(0..=40);
        if target > now {
            return Duration::from_millis(target - now);
        }
    }
    let hours = ADVANCES_H[ctx.rng.random_range(0..ADVANCES_H.len())];
    Duration::from_millis(hours * HOUR_MS)
}

fn run(ctx: &mut ScenarioCtx) -> turmoil::Result {
    let days = ctx.rng.random_range(1..=3u64);
    let policy = if ctx.rng.random_bool(0.5) {
        format!("{days} days")
    } else {
        format!("{} hours", days * 24)
    };
    ctx.record(&format!("keep_logical_logs={policy}"));
    let config = config(&format!(
        "logical_log_rotation_threshold=2k\nkeep_logical_logs={policy}\n"
    ));
    let model = Arc::new(Mutex::new(Model {
        keep_ms: days * DAY_MS,
        graph: Graph::default(),
        rng: StdRng::seed_from_u64(ctx.rng.random()),
        last_tx: 0,
        budget: 0,
        step_done: false,
        server_ready: false,
        shutdown: false,
        inspect: None,
        inspections: 0,
        known: BTreeMap::new(),
        kept: Vec::new(),
        stopped: false,
        random: ctx.rng.random(),
    }));
    let m = model.clone();
    ctx.host(SERVER, move |h| {
        server_software(h, m.clone(), config.clone())
    });
    let m = model.clone();
    ctx.host(WRITER, move |h| writer_software(h, m.clone()));
    wait(ctx, &model, "the first start inspected", |m| {
        m.server_ready && m.inspections == 1
    })?;
    let crash_at = ctx
        .rng
        .random_bool(0.5)
        .then(|| ctx.rng.random_range(0..STEPS));
    for step in 0..STEPS {
        // SIM-10: age the logs by moving every host's clock at once.
        let by = clock_advance(ctx, &model);
        ctx.world.advance_clock(by);
        {
            let mut m = model.lock().unwrap();
            m.budget = ctx.rng.random_range(2..=8);
            m.step_done = false;
        }
        wait(ctx, &model, "a step's commits", |m| m.step_done)?;
        if crash_at == Some(step) {
            // At rest: every acknowledged commit is durable; the record files may not be, so
            // recovery replays what came after the last checkpoint, and then prunes.
            ctx.crash(SERVER);
            let inspections = {
                let mut m = model.lock().unwrap();
                m.server_ready = false;
                m.inspections
            };
            if ctx.rng.random_bool(0.5) {
                let by = clock_advance(ctx, &model);
                ctx.world.advance_clock(by);
            }
            ctx.restart(SERVER);
            wait(ctx, &model, "the restart inspected", move |m| {
                m.server_ready && m.inspections > inspections
            })?;
        }
    }
    let by = clock_advance(ctx, &model);
    ctx.world.advance_clock(by);
    model.lock().unwrap().shutdown = true;
    wait(ctx, &model, "the clean stop inspected", |m| m.stopped)?;
    let m = model.lock().unwrap();
    let deleted = m.known.len() - m.kept.len();
    ctx.record(&format!(
        "{} txs, {} log files made, {deleted} deleted",
        m.last_tx,
        m.known.len()
    ));
    Ok(())
}
