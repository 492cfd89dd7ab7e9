//! `store_crash`: a store on a simulated host commits random transactions and loses power at a
//! random filesystem operation (mid-commit, mid-rotation, mid-checkpoint, mid-recovery), round
//! after round. After every restart the store must hold exactly the acknowledged transactions
//! (plus a prefix of the group in flight: commits go in groups of one to four, each group one
//! log write and one fsync, LOG-12), with the digest, counts and nodes of a model that applied
//! the same operations, and a full scan must agree with the recorded digest (SIM-14).
//!
//! Product rules this checks under power loss: a commit is durable before it is acknowledged
//! (LOG-9), a torn log tail is cut (RC-4), ids come from high-water marks that survive (ST-9),
//! the store id is kept (ST-11), and the recorded digest equals a full scan (DG-10).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use online_backup::graph::Op;
use online_backup::store::format::FormatVersion;
use online_backup::store::meta::{StoreId, META_FILE};
use online_backup::store::{Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::kit::model::Graph;
use crate::runner::{HostCtx, Scenario, ScenarioCtx};
use crate::scenarios::crash_rounds::{self, CrashRounds, LossAt, RoundDone};

pub const SCENARIO: Scenario = Scenario::new(
    "store_crash",
    "power loss at any filesystem operation loses no acknowledged transaction; digest matches a model",
    run,
)
.seeds(200);

const HOST: &str = "db";
const STORE_DIR: &str = "/data/db";
/// Power is lost anywhere in a round (mid-commit, mid-checkpoint, mid-rotation, mid-recovery):
/// a round takes about 150 mutating operations, until one is measured.
const ROUNDS: CrashRounds = CrashRounds {
    host: HOST,
    rounds: 5,
    loss_probability: 0.85,
    loss_at: LossAt::RoundLength { guess: 150 },
    max_steps: 200_000,
    what: "a round of commits",
};
const TXS_PER_ROUND: u64 = 16;
/// Small, so that rounds rotate logs and checkpoint often.
const ROTATION_THRESHOLD: u64 = 4096;

struct Model {
    graph: Graph,
    acked_tx: u64,
    /// The group of transactions being committed, not yet acknowledged: any prefix of it may
    /// have survived, each transaction whole or not at all (LOG-12).
    in_flight: Vec<Vec<Op>>,
    /// Whether `Store::create` ever returned: from then on the store must open.
    created: bool,
    /// The random half of the store id, from the seed.
    random: u64,
    /// The on-disk format the store is created in, from the seed (both supported ones).
    format: FormatVersion,
    store_id: Option<StoreId>,
}

/// After a start: the store holds exactly what the model says.
fn verify(m: &mut Model, store: &Store) -> Result<(), String> {
    let st = store.status();
    if st.store_id.random != m.random {
        return Err(format!(
            "SIM-14, ST-11: store id {:?} does not carry the random half {} it was created with",
            st.store_id, m.random
        ));
    }
    if st.format != m.format {
        return Err(format!(
            "SIM-14: the store reports format {:?}, it was created in {:?}",
            st.format, m.format
        ));
    }
    match m.store_id {
        Some(id) if id != st.store_id => {
            return Err(format!(
                "SIM-14, ST-11: the store id changed across a crash: {id:?} -> {:?}",
                st.store_id
            ))
        }
        _ => m.store_id = Some(st.store_id),
    }
    let in_flight = std::mem::take(&mut m.in_flight);
    let kept = st.last_committed_tx.checked_sub(m.acked_tx);
    match kept {
        Some(k) if k as usize <= in_flight.len() => {
            for ops in &in_flight[..k as usize] {
                m.graph.apply(ops)?;
            }
            m.acked_tx += k;
        }
        Some(_) => {
            return Err(format!(
                "SIM-14, LOG-12: the store recovered tx {} but only {} were ever committed",
                st.last_committed_tx,
                m.acked_tx + in_flight.len() as u64
            ))
        }
        None => {
            return Err(format!(
                "SIM-14, LOG-9: the store recovered to tx {}, but tx {} was acknowledged",
                st.last_committed_tx, m.acked_tx
            ))
        }
    }
    let expected = m.graph.digest();
    if st.digest != expected {
        return Err(format!(
            "SIM-14: at tx {} the store's digest is {} but the model's is {expected}",
            st.last_committed_tx, st.digest
        ));
    }
    if (st.nodes, st.relationships) != (m.graph.nodes.len() as u64, m.graph.rels.len() as u64) {
        return Err(format!(
            "SIM-14: at tx {} the store counts {} nodes and {} relationships, the model {} and {}",
            st.last_committed_tx,
            st.nodes,
            st.relationships,
            m.graph.nodes.len(),
            m.graph.rels.len()
        ));
    }
    let scanned = store.scan_digest().map_err(|e| e.to_string())?;
    if scanned != st.digest {
        return Err(format!(
            "SIM-14, DG-10: at tx {} a full scan gives digest {scanned}, the store recorded {}",
            st.last_committed_tx, st.digest
        ));
    }
    for (id, node) in m
        .graph
        .nodes
        .iter()
        .take(3)
        .chain(m.graph.nodes.iter().rev().take(3))
    {
        let got = store.node(*id).map_err(|e| e.to_string())?;
        if got.as_ref() != Some(node) {
            return Err(format!(
                "SIM-14: node {id} reads back as {got:?}, the model has {node:?}"
            ));
        }
    }
    Ok(())
}

async fn software(
    h: HostCtx,
    model: Arc<Mutex<Model>>,
    rng: Arc<Mutex<StdRng>>,
    done: RoundDone,
) -> turmoil::Result {
    let fs = h.env.fs.clone();
    let clock = h.env.clock.clone();
    h.check(fs.create_dir_all(Path::new("/data"))).await?;
    h.check(fs.sync_dir(Path::new("/"))).await?;
    let dir = Path::new(STORE_DIR);
    let options = StoreOptions {
        log_rotation_threshold: ROTATION_THRESHOLD,
        ..StoreOptions::default()
    };
    let (created, random, format) = {
        let m = model.lock().unwrap();
        (m.created, m.random, m.format)
    };
    let exists = created || h.check(fs.metadata(&dir.join(META_FILE))).await?.is_some();
    let mut store = if exists {
        h.check(Store::open(fs.clone(), clock.clone(), dir, &options))
            .await?
    } else {
        h.record("creating the store");
        h.check(Store::create(
            fs.clone(),
            clock.clone(),
            dir,
            &options,
            format,
            random,
        ))
        .await?
    };
    {
        let mut m = model.lock().unwrap();
        m.created = true;
        verify(&mut m, &store)?;
    }
    h.record("store verified against the model");
    let mut committed = 0;
    while committed < TXS_PER_ROUND {
        // A group of one to four transactions, each drawn on the model as the ones before it
        // in the group leave it (LOG-12).
        let (group, checkpoint, pause) = {
            let m = model.lock().unwrap();
            let mut r = rng.lock().unwrap();
            let size = r.random_range(1..=4);
            let mut ahead = m.graph.clone();
            let mut group = Vec::new();
            for _ in 0..size {
                let ops = ahead.random_tx(&mut r);
                ahead.apply(&ops)?;
                group.push(ops);
            }
            (group, r.random_bool(0.1), r.random_range(0..3000))
        };
        model.lock().unwrap().in_flight = group.clone();
        let mut outcomes = Vec::new();
        for outcome in store.commit_group(&group) {
            outcomes.push(h.check(outcome).await?);
        }
        {
            let mut m = model.lock().unwrap();
            for (ops, outcome) in group.iter().zip(outcomes) {
                let ids = m.graph.apply(ops)?;
                if outcome.tx_id != m.acked_tx + 1 || outcome.ids != ids {
                    return Err(format!(
                        "SIM-14, LOG-12: commit answered tx {} ids {:?}; the model expected tx {} ids {ids:?}",
                        outcome.tx_id,
                        outcome.ids,
                        m.acked_tx + 1
                    )
                    .into());
                }
                m.acked_tx = outcome.tx_id;
            }
            m.in_flight.clear();
        }
        committed += group.len() as u64;
        if checkpoint {
            h.check(store.checkpoint()).await?;
        }
        tokio::time::sleep(Duration::from_micros(pause)).await;
    }
    let clean_shutdown = rng.lock().unwrap().random_bool(0.3);
    // Otherwise the store (and its lock) stays open until the power goes.
    let open = if clean_shutdown {
        h.check(store.close()).await?;
        None
    } else {
        Some(store)
    };
    done.set();
    std::future::pending::<()>().await;
    drop(open);
    Ok(())
}

fn run(ctx: &mut ScenarioCtx) -> turmoil::Result {
    let model = Arc::new(Mutex::new(Model {
        graph: Graph::default(),
        acked_tx: 0,
        in_flight: Vec::new(),
        created: false,
        random: ctx.rng.random(),
        format: FormatVersion::SUPPORTED[ctx.rng.random_range(0..FormatVersion::SUPPORTED.len())],
        store_id: None,
    }));
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(ctx.rng.random())));
    let m = model.clone();
    crash_rounds::run(ctx, &ROUNDS, move |h, done| {
        software(h, m.clone(), rng.clone(), done)
    })?;
    let m = model.lock().unwrap();
    if m.acked_tx == 0 {
        return Err("no transaction was ever acknowledged".into());
    }
    Ok(())
}
