//! `server_crash`: the real server (`online_backup::server::run`) on a simulated host, one or two
//! writer hosts posting random transactions over the simulated network, and the server's host
//! crashing (power lost at a random filesystem operation, or killed at a random moment) and
//! restarting on the same store, round after round (SIM-16).
//!
//! Each writer owns its part of the graph (its nodes carry its label; it only touches what it
//! created), so its transactions are valid whatever the other writer does, and the server must
//! answer every one with 200. What a writer sent but never saw answered is *in flight*: the server
//! may or may not have committed it. After every restart a checker host reads `GET /db/data/` and
//! works out which in-flight transactions the server kept and at which tx ids: replaying the
//! acknowledged ones plus those, in tx order, on a model must give every acknowledged answer's
//! ids, the server's counts and its digest. Nothing acknowledged may be lost (SRV-3). Then nodes
//! read back over HTTP as the model has them. At the end the server stops cleanly and the store
//! is checked offline, as `neo4j-admin check` does: nothing to replay (SRV-2), consistent, and
//! the digest the server reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use online_backup::config::Config;
use online_backup::graph::{Id, Op};
use online_backup::server::{self, ServerOptions};
use online_backup::store::check::{self, CheckReport};
use online_backup::store::format::FormatVersion;
use online_backup::store::meta::{Meta, META_FILE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::kit::http::{self, Status};
use crate::kit::model::Graph;
use crate::runner::{HostCtx, Scenario, ScenarioCtx, Stopped};
use crate::server_sim::{config, wait_until, when, HTTP_ADDR, SERVER, STORE_DIR};

pub const SCENARIO: Scenario = Scenario::new(
    "server_crash",
    "the server on a crashing host, writers over the network: nothing acknowledged is lost",
    run,
)
.seeds(100)
.configure(fast_network);

fn fast_network(b: &mut turmoil::Builder) {
    b.min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(3));
}

const CHECKER: &str = "checker";
/// Crash rounds before the final, undisturbed round that ends with a clean stop.
const ROUNDS: u64 = 3;
/// Acknowledged transactions per round (all writers together), unless a crash comes first.
const TXS_PER_ROUND: usize = 16;
/// How long a writer waits for an answer before it counts the transaction as in flight.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the checker waits for an answer (the server is up and the writers idle).
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many nodes are read back after each restart.
const NODES_READ: usize = 8;
/// Driver patience, in ticks, for anything it waits on.
const MAX_STEPS: u64 = 100_000;

/// The `keep_logical_logs` values a seed picks from: pruning runs at every rotation, so crashes
/// land around deletions too.
const RETENTION: &[&str] = &["true", "false", "3 files", "6k size", "20 txs", "7 days"];

/// A transaction the server acknowledged.
#[derive(Clone, Debug)]
struct Acked {
    writer: usize,
    ops: Vec<Op>,
    /// The ids its answer gave, in op order.
    ids: Vec<Id>,
}

struct Writer {
    /// The part of the graph this writer created and still owns, with the server's ids.
    view: Graph,
    rng: StdRng,
    /// Sent, not answered: the server may or may not have committed it. The writer sends
    /// nothing more until the checker has settled it.
    in_flight: Option<Vec<Op>>,
    /// A request is under way (the checker waits until no writer is busy).
    busy: bool,
}

fn label(w: usize) -> String {
    format!("W{w}")
}

struct Model {
    writers: Vec<Writer>,
    /// Every acknowledged transaction by tx id (plus, once settled, the in-flight ones the
    /// server turned out to have committed).
    acked: BTreeMap<u64, Acked>,
    /// Writers send nothing while set (the driver crashes and checks with writers paused).
    paused: bool,
    /// The server serves requests (set by its `on_ready`, cleared by the driver at a crash).
    server_ready: bool,
    /// Tells the running server to stop cleanly.
    shutdown: bool,
    /// Run `neo4j-admin check` offline before the server starts (taken by the next start).
    pre_check_wanted: bool,
    /// What that offline check reported; the model must have the same at its tx.
    pre_check: Option<CheckReport>,
    /// The checker's turn: set by the driver, cleared by the checker when done.
    check_wanted: bool,
    checks_done: u64,
    /// What the last check settled: the whole graph and the server's status.
    graph: Graph,
    status: Option<Status>,
    /// The store id the server reported first; it must never change.
    store_id: Option<String>,
    /// The random half of the store id, from the seed (SIM-4).
    random: u64,
    check_rng: StdRng,
    /// After the clean stop: the metadata's checkpoint tx and the offline check's report.
    stopped: Option<(u64, CheckReport)>,
}

impl Model {
    fn may_write(&self, w: usize) -> bool {
        !self.paused && self.server_ready && self.writers[w].in_flight.is_none()
    }

    fn writers_idle(&self) -> bool {
        self.writers.iter().all(|w| !w.busy)
    }

    /// Writer `w`'s transaction committed as `tx_id`, creating `ids`.
    fn acknowledge(&mut self, w: usize, tx_id: u64, ids: Vec<Id>) -> Result<(), String> {
        let writer = &mut self.writers[w];
        let ops = writer.in_flight.take().expect("a request was in flight");
        writer
            .view
            .apply_with_ids(&ops, &ids)
            .map_err(|e| format!("writer {w}: tx {tx_id} answered {ids:?}: {e}"))?;
        let record = Acked {
            writer: w,
            ops,
            ids,
        };
        // SRV-5: writers are serialized, so no two commits share a tx id.
        if let Some(other) = self.acked.insert(tx_id, record) {
            return Err(format!(
                "tx id {tx_id} was acknowledged twice (to writers {} and {w})",
                other.writer
            ));
        }
        Ok(())
    }

    /// Replays transactions 1..=`last` in tx order on an empty model: the acknowledged ones,
    /// and `extra` (in-flight ones assumed committed at those tx ids). Every acknowledged
    /// answer's ids must come out. Returns the graph and the ids the extra ones got.
    fn replay(
        &self,
        last: u64,
        extra: &BTreeMap<u64, (usize, &Vec<Op>)>,
    ) -> Result<(Graph, BTreeMap<u64, Vec<Id>>), String> {
        let mut graph = Graph::default();
        let mut extra_ids = BTreeMap::new();
        for tx in 1..=last {
            if let Some(a) = self.acked.get(&tx) {
                let ids = graph
                    .apply(&a.ops)
                    .map_err(|e| format!("acknowledged tx {tx} does not apply: {e}"))?;
                if ids != a.ids {
                    return Err(format!(
                        "tx {tx} answered ids {:?}, the model assigns {ids:?}",
                        a.ids
                    ));
                }
            } else if let Some((w, ops)) = extra.get(&tx) {
                let ids = graph
                    .apply(ops)
                    .map_err(|e| format!("writer {w}'s in-flight tx as {tx}: {e}"))?;
                extra_ids.insert(tx, ids);
            } else {
                return Err(format!("nothing the writers sent can be tx {tx}"));
            }
        }
        Ok((graph, extra_ids))
    }

    /// After a (re)start, with writers idle: which in-flight transactions the server kept, and
    /// at which tx ids, so that the model matches `status`. Adopts them as acknowledged,
    /// clears every in-flight one, and rebuilds each writer's view from the settled graph.
    fn settle(&mut self, status: &Status) -> Result<(), String> {
        let last = status.last_committed_tx;
        let last_acked = self.acked.keys().next_back().copied().unwrap_or(0);
        // SRV-3: nothing acknowledged is lost.
        if last < last_acked {
            return Err(format!(
                "SIM-16, SRV-3: the server restarted at tx {last}, but tx {last_acked} was acknowledged"
            ));
        }
        let missing: Vec<u64> = (1..=last).filter(|t| !self.acked.contains_key(t)).collect();
        let candidates: Vec<(usize, &Vec<Op>)> = self
            .writers
            .iter()
            .enumerate()
            .filter_map(|(w, wr)| wr.in_flight.as_ref().map(|ops| (w, ops)))
            .collect();
        if missing.len() > candidates.len() {
            return Err(format!(
                "the server has {last} txs; {} were acknowledged and only {} more were in flight",
                self.acked.len(),
                candidates.len()
            ));
        }
        let mut why_not = Vec::new();
        let mut found = None;
        for pick in arrangements(candidates.len(), missing.len()) {
            let extra: BTreeMap<u64, (usize, &Vec<Op>)> = missing
                .iter()
                .zip(&pick)
                .map(|(&tx, &c)| (tx, candidates[c]))
                .collect();
            let (graph, ids) = match self.replay(last, &extra) {
                Ok(r) => r,
                Err(e) => {
                    why_not.push(e);
                    continue;
                }
            };
            let digest = graph.digest();
            let counts = (graph.nodes.len() as u64, graph.rels.len() as u64);
            if digest == status.digest && counts == (status.nodes, status.relationships) {
                let adopted: Vec<(u64, usize, Vec<Op>)> = extra
                    .iter()
                    .map(|(&tx, &(w, ops))| (tx, w, ops.clone()))
                    .collect();
                found = Some((graph, ids, adopted));
                break;
            }
            why_not.push(format!(
                "with in-flight {extra:?} the model has digest {digest}, {} nodes, {} relationships",
                counts.0, counts.1
            ));
        }
        let Some((graph, ids, adopted)) = found else {
            return Err(format!(
                "SIM-16: no account of the in-flight transactions matches the server at tx {last} \
                 (digest {}, {} nodes, {} relationships): {}",
                status.digest,
                status.nodes,
                status.relationships,
                why_not.join("; ")
            ));
        };
        for (tx, writer, ops) in adopted {
            let ids = ids[&tx].clone();
            self.acked.insert(tx, Acked { writer, ops, ids });
        }
        for (w, writer) in self.writers.iter_mut().enumerate() {
            writer.in_flight = None;
            writer.view = owned_part(&graph, &label(w));
        }
        self.graph = graph;
        Ok(())
    }

    /// SRV-3: the offline check run on the crashed store before the restart recovered it to
    /// a consistent state with the digest and counts the model has at that tx. (Not
    /// necessarily the server's tx now: a request sent just before the crash may reach the
    /// restarted server and commit before the checker looks.)
    fn compare_offline_check(&self, report: &CheckReport, served_tx: u64) -> Result<(), String> {
        let at = report.last_committed_tx;
        let model = (at <= served_tx)
            .then(|| self.replay(at, &BTreeMap::new()))
            .transpose()?
            .map(|(graph, _)| {
                (
                    graph.digest().to_hex(),
                    graph.nodes.len() as u64,
                    graph.rels.len() as u64,
                )
            });
        let offline = (report.digest.clone(), report.nodes, report.relationships);
        if !report.consistent || report.digest != report.recorded_digest || model != Some(offline) {
            return Err(format!(
                "the offline check after the crash reported {report:?}; the server is at tx                  {served_tx}, and the model at tx {at} has (digest, nodes, relationships) {model:?}"
            ));
        }
        Ok(())
    }
}

/// Every ordered choice of `k` distinct indices below `n`.
fn arrangements(n: usize, k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in arrangements(n, k - 1) {
        for i in (0..n).filter(|i| !rest.contains(i)) {
            let mut a = rest.clone();
            a.push(i);
            out.push(a);
        }
    }
    out
}

/// The nodes labelled `label` and the relationships between them, keeping the graph's
/// high-water marks.
fn owned_part(graph: &Graph, label: &str) -> Graph {
    let nodes: BTreeMap<_, _> = graph
        .nodes
        .iter()
        .filter(|(_, n)| n.labels.iter().any(|l| l == label))
        .map(|(&id, n)| (id, n.clone()))
        .collect();
    let rels = graph
        .rels
        .iter()
        .filter(|(_, r)| nodes.contains_key(&r.start))
        .map(|(&id, r)| (id, r.clone()))
        .collect();
    Graph::from_parts(nodes, rels, graph.next_node, graph.next_rel)
}

async fn server_software(h: HostCtx, model: Arc<Mutex<Model>>, config: Config) -> turmoil::Result {
    let dir = Path::new(STORE_DIR);
    let (pre_check, random) = {
        let mut m = model.lock().unwrap();
        (std::mem::take(&mut m.pre_check_wanted), m.random)
    };
    if pre_check
        && h.check(h.env.fs.metadata(&dir.join(META_FILE)))
            .await?
            .is_some()
    {
        // An operator runs `neo4j-admin check` on the crashed store before starting the server:
        // it recovers the store itself, and must agree with the model at the tx it reports.
        let report = h
            .check(check::check(h.env.fs.clone(), h.env.clock.clone(), dir))
            .await?;
        h.record("offline check before the restart");
        model.lock().unwrap().pre_check = Some(report);
    }
    let options = ServerOptions {
        store_dir: dir.to_path_buf(),
        config,
        create_random: random,
        http: online_backup::server::http::HttpLimits::default(),
    };
    let stop = model.clone();
    let ready = model.clone();
    let served = server::run(
        h.env.clone(),
        options,
        when(move || stop.lock().unwrap().shutdown),
        move |_| ready.lock().unwrap().server_ready = true,
    )
    .await;
    h.check(served).await?;
    h.record("server stopped cleanly");
    // SRV-2: a clean stop checkpoints, so the next open replays nothing; the offline check
    // recomputes the digest by a full scan.
    let meta = h.check(Meta::read(&*h.env.fs, dir)).await?;
    let report = h
        .check(check::check(h.env.fs.clone(), h.env.clock.clone(), dir))
        .await?;
    model.lock().unwrap().stopped = Some((meta.checkpoint.last_tx, report));
    std::future::pending::<()>().await;
    Ok(())
}

async fn writer_software(h: HostCtx, w: usize, model: Arc<Mutex<Model>>) -> turmoil::Result {
    loop {
        let mut ops = None;
        wait_until(|| {
            let mut m = model.lock().unwrap();
            if !m.may_write(w) {
                return false;
            }
            let Writer {
                view,
                rng,
                in_flight,
                busy,
            } = &mut m.writers[w];
            let tx = view.random_owned_tx(rng, &label(w));
            *in_flight = Some(tx.clone());
            *busy = true;
            ops = Some(tx);
            true
        })
        .await;
        let ops = ops.expect("drawn");
        let answer = http::commit(&*h.env.net, HTTP_ADDR, &ops, REQUEST_TIMEOUT).await;
        let pause = {
            let mut m = model.lock().unwrap();
            m.writers[w].busy = false;
            match answer {
                Ok(Ok((tx_id, ids))) => m.acknowledge(w, tx_id, ids)?,
                // Every transaction is valid, and a server that lost power cannot answer: any
                // other answer is the server's fault.
                Ok(Err(r)) => {
                    return Err(format!(
                        "writer {w}: the server answered {} {} to the valid transaction {}",
                        r.status,
                        r.text(),
                        http::transaction_json(&ops)
                    )
                    .into())
                }
                // No answer (the server went down, the connection broke, or it timed out): in
                // flight.
                Err(e) => h.record(&format!("no answer: {:?}", e.kind())),
            }
            Duration::from_micros(m.writers[w].rng.random_range(0..3000))
        };
        tokio::time::sleep(pause).await;
    }
}

/// One check, with writers idle: settle the in-flight transactions against the server's
/// status, then read nodes back.
async fn check_server(h: &HostCtx, model: &Arc<Mutex<Model>>) -> turmoil::Result {
    let net = &*h.env.net;
    let status = http::status(net, HTTP_ADDR, CHECK_TIMEOUT).await?;
    let reads: Vec<Id> = {
        let mut m = model.lock().unwrap();
        match &m.store_id {
            Some(id) if *id != status.store_id => {
                return Err(format!(
                    "the store id changed across a restart: {id} -> {}",
                    status.store_id
                )
                .into())
            }
            _ => m.store_id = Some(status.store_id.clone()),
        }
        if status.format_version != FormatVersion::CURRENT.to_string() {
            return Err(format!("a new store in format {}", status.format_version).into());
        }
        if status.oldest_logged_tx > status.last_committed_tx + 1 {
            return Err(format!("status {status:?}: the logs start after the next tx").into());
        }
        m.settle(&status)?;
        if let Some(report) = m.pre_check.take() {
            m.compare_offline_check(&report, status.last_committed_tx)?;
        }
        m.status = Some(status);
        let Model {
            graph, check_rng, ..
        } = &mut *m;
        let mut ids: Vec<Id> = graph.nodes.keys().copied().collect();
        while ids.len() > NODES_READ {
            ids.remove(check_rng.random_range(0..ids.len()));
        }
        // One id that names no node (never created, or deleted): 404.
        ids.push(check_rng.random_range(0..=graph.next_node));
        ids
    };
    for id in reads {
        let got = http::get(
            net,
            HTTP_ADDR,
            &format!("/db/data/node/{id}"),
            CHECK_TIMEOUT,
        )
        .await?;
        let want = model.lock().unwrap().graph.node_json(id);
        let ok = match &want {
            Some(node) => got.status == 200 && got.json().is_ok_and(|body| body == *node),
            None => got.status == 404,
        };
        if !ok {
            return Err(format!(
                "SIM-16, HTTP-5: GET /db/data/node/{id} answered {} {}, the model has {want:?}",
                got.status,
                got.text()
            )
            .into());
        }
    }
    Ok(())
}

async fn checker_software(h: HostCtx, model: Arc<Mutex<Model>>) -> turmoil::Result {
    loop {
        wait_until(|| model.lock().unwrap().check_wanted).await;
        check_server(&h, &model).await?;
        h.record("server checked against the model");
        let mut m = model.lock().unwrap();
        m.check_wanted = false;
        m.checks_done += 1;
    }
}

/// Waits, with writers paused, until the server serves and no request is under way. A power
/// loss planned for the restart may strike first: the host is crashed and started again.
fn wait_server_ready(ctx: &mut ScenarioCtx, model: &Arc<Mutex<Model>>) -> turmoil::Result {
    loop {
        let m = model.clone();
        let stopped = ctx.run_until(MAX_STEPS, "the server ready, writers idle", move || {
            let m = m.lock().unwrap();
            m.server_ready && m.writers_idle()
        })?;
        match stopped {
            Stopped::Done => return Ok(()),
            Stopped::HostDown(host) => {
                crash_server(ctx, model, &host)?;
                ctx.restart(SERVER);
            }
        }
    }
}

fn crash_server(ctx: &mut ScenarioCtx, model: &Arc<Mutex<Model>>, host: &str) -> turmoil::Result {
    if host != SERVER {
        return Err(format!("host {host} lost power; only the server may").into());
    }
    ctx.crash(SERVER);
    let mut m = model.lock().unwrap();
    m.paused = true;
    m.server_ready = false;
    Ok(())
}

/// Runs one check on the checker host and waits for it.
fn check(ctx: &mut ScenarioCtx, model: &Arc<Mutex<Model>>) -> turmoil::Result {
    let before = {
        let mut m = model.lock().unwrap();
        m.check_wanted = true;
        m.checks_done
    };
    let m = model.clone();
    match ctx.run_until(MAX_STEPS, "the checker", move || {
        m.lock().unwrap().checks_done > before
    })? {
        Stopped::Done => Ok(()),
        Stopped::HostDown(h) => Err(format!("host {h} lost power during a check").into()),
    }
}

/// Lets the writers go until `until` transactions are acknowledged in all, or a host loses power.
fn write_until(
    ctx: &mut ScenarioCtx,
    model: &Arc<Mutex<Model>>,
    until: usize,
) -> turmoil::Result<Stopped> {
    model.lock().unwrap().paused = false;
    let m = model.clone();
    ctx.run_until(MAX_STEPS, "acknowledged transactions", move || {
        m.lock().unwrap().acked.len() >= until
    })
}

fn run(ctx: &mut ScenarioCtx) -> turmoil::Result {
    let writers = ctx.rng.random_range(1..=2);
    let retention = RETENTION[ctx.rng.random_range(0..RETENTION.len())];
    let config = config(&format!(
        "logical_log_rotation_threshold=4k\nkeep_logical_logs={retention}\n"
    ));
    ctx.record(&format!("{writers} writers, keep_logical_logs={retention}"));
    let model = Arc::new(Mutex::new(Model {
        writers: (0..writers)
            .map(|_| Writer {
                view: Graph::default(),
                rng: StdRng::seed_from_u64(ctx.rng.random()),
                in_flight: None,
                busy: false,
            })
            .collect(),
        acked: BTreeMap::new(),
        paused: true,
        server_ready: false,
        shutdown: false,
        pre_check_wanted: false,
        pre_check: None,
        check_wanted: false,
        checks_done: 0,
        graph: Graph::default(),
        status: None,
        store_id: None,
        random: ctx.rng.random(),
        check_rng: StdRng::seed_from_u64(ctx.rng.random()),
        stopped: None,
    }));
    let m = model.clone();
    ctx.host(SERVER, move |h| {
        server_software(h, m.clone(), config.clone())
    });
    for w in 0..writers {
        let m = model.clone();
        ctx.host(&format!("writer{w}"), move |h| {
            writer_software(h, w, m.clone())
        });
    }
    let m = model.clone();
    ctx.host(CHECKER, move |h| checker_software(h, m.clone()));

    // How many mutating filesystem operations the server makes in a round, roughly: power is
    // lost anywhere in it.
    let mut round_ops = 300;
    wait_server_ready(ctx, &model)?;
    for _round in 0..ROUNDS {
        let acked = model.lock().unwrap().acked.len();
        let ops_before = ctx.world.mutating_ops(SERVER);
        // SIM-7: power lost at a random filesystem operation of the server (mid-commit,
        // mid-rotation, mid-pruning), or the host killed after a random number of commits.
        let planned = ctx.rng.random_bool(0.6);
        let until = if planned {
            let n = ctx.rng.random_range(1..=round_ops);
            ctx.power_loss_before_op(SERVER, n);
            acked + TXS_PER_ROUND
        } else {
            acked + ctx.rng.random_range(0..=TXS_PER_ROUND)
        };
        let stopped = write_until(ctx, &model, until)?;
        if planned && stopped == Stopped::Done {
            round_ops = (ctx.world.mutating_ops(SERVER) - ops_before).max(20);
        }
        crash_server(
            ctx,
            &model,
            match &stopped {
                Stopped::HostDown(h) => h,
                Stopped::Done => SERVER,
            },
        )?;
        // Sometimes power goes again during the restart (recovery, the offline check).
        if ctx.rng.random_bool(0.25) {
            let n = ctx.rng.random_range(1..=40);
            ctx.power_loss_before_op(SERVER, n);
        }
        model.lock().unwrap().pre_check_wanted = ctx.rng.random_bool(0.4);
        ctx.restart(SERVER);
        wait_server_ready(ctx, &model)?;
        // A loss planned for the restart that did not strike (recovery had little to do) must
        // not carry over into the next round.
        ctx.cancel_power_loss(SERVER);
        check(ctx, &model)?;
    }

    // The last round: undisturbed, then a clean stop.
    let acked = model.lock().unwrap().acked.len();
    if let Stopped::HostDown(h) = write_until(ctx, &model, acked + TXS_PER_ROUND)? {
        return Err(format!("host {h} lost power in the undisturbed round").into());
    }
    model.lock().unwrap().paused = true;
    wait_server_ready(ctx, &model)?;
    check(ctx, &model)?;
    model.lock().unwrap().shutdown = true;
    let m = model.clone();
    if let Stopped::HostDown(h) = ctx.run_until(MAX_STEPS, "a clean stop", move || {
        m.lock().unwrap().stopped.is_some()
    })? {
        return Err(format!("host {h} lost power during the clean stop").into());
    }
    let m = model.lock().unwrap();
    let status = m.status.as_ref().expect("checked");
    let (checkpoint_tx, report) = m.stopped.as_ref().expect("stopped");
    // SRV-2: the clean stop checkpointed the last tx.
    if *checkpoint_tx != status.last_committed_tx {
        return Err(format!(
            "after a clean stop the checkpoint is at tx {checkpoint_tx}, the last commit was {}",
            status.last_committed_tx
        )
        .into());
    }
    // SRV-3: the store checked offline has the digest the server reported, by a full scan.
    let offline = (
        &report.store_id,
        report.last_committed_tx,
        &report.digest,
        report.nodes,
        report.relationships,
    );
    let served = (
        &status.store_id,
        status.last_committed_tx,
        &status.digest.to_hex(),
        status.nodes,
        status.relationships,
    );
    if !report.consistent || report.recorded_digest != report.digest || offline != served {
        return Err(format!(
            "the offline check reports {report:?}; the server reported {status:?}"
        )
        .into());
    }
    if m.acked.is_empty() {
        return Err("no transaction was ever acknowledged".into());
    }
    Ok(())
}
