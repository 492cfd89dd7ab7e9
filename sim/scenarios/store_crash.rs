//! `store_crash`: a store on a simulated host commits random transactions and loses power at a
//! random filesystem operation (mid-commit, mid-rotation, mid-checkpoint, mid-recovery), round
//! after round. After every restart the store must hold exactly the acknowledged transactions
//! (plus at most the one in flight), with the digest, counts and nodes of a model that applied
//! the same operations, and a full scan must agree with the recorded digest (SIM-14).
//!
//! Product rules this checks under power loss: a commit is durable before it is acknowledged
//! (LOG-9), a torn log tail is cut (RC-4), ids come from high-water marks that survive (ST-9),
//! the store id is kept (ST-11), and the recorded digest equals a full scan (DG-10).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use online_backup::digest::Digest;
use online_backup::graph::{Id, Node, NodeRef, Op, Properties, Relationship, Value};
use online_backup::store::format::FormatVersion;
use online_backup::store::meta::{StoreId, META_FILE};
use online_backup::store::{Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::runner::{HostCtx, Scenario, ScenarioCtx, Stopped};

pub const SCENARIO: Scenario = Scenario::new(
    "store_crash",
    "power loss at any filesystem operation loses no acknowledged transaction; digest matches a model",
    run,
)
.seeds(200);

const HOST: &str = "db";
const STORE_DIR: &str = "/data/db";
/// Crash rounds before the final, undisturbed start that checks the last state.
const ROUNDS: u64 = 5;
const TXS_PER_ROUND: u64 = 16;
/// Small, so that rounds rotate logs and checkpoint often.
const ROTATION_THRESHOLD: u64 = 4096;

/// The graph as the model sees it: what the acknowledged transactions made. The backup
/// scenarios drive their writers with it too.
#[derive(Clone, Default)]
pub(crate) struct Graph {
    nodes: BTreeMap<Id, Node>,
    rels: BTreeMap<Id, Relationship>,
    next_node: Id,
    next_rel: Id,
}

impl Graph {
    fn resolve(&self, r: NodeRef, created: &[Option<Id>]) -> Result<Id, String> {
        let id = match r {
            NodeRef::Id(id) => id,
            NodeRef::CreatedBy(i) => created
                .get(i)
                .copied()
                .flatten()
                .ok_or(format!("model: bad reference ${i}"))?,
        };
        if self.nodes.contains_key(&id) {
            Ok(id)
        } else {
            Err(format!("model: node {id} does not exist"))
        }
    }

    /// Applies `ops` as the store does; returns the ids created, in op order.
    pub(crate) fn apply(&mut self, ops: &[Op]) -> Result<Vec<Id>, String> {
        let mut created: Vec<Option<Id>> = Vec::new();
        let mut ids = Vec::new();
        for op in ops {
            let mut made = None;
            match op {
                Op::CreateNode { labels, props } => {
                    let mut labels = labels.clone();
                    labels.sort();
                    labels.dedup();
                    let id = self.next_node;
                    self.next_node += 1;
                    self.nodes.insert(
                        id,
                        Node {
                            id,
                            labels,
                            props: props.clone(),
                        },
                    );
                    ids.push(id);
                    made = Some(id);
                }
                Op::CreateRelationship {
                    from,
                    to,
                    rel_type,
                    props,
                } => {
                    let start = self.resolve(*from, &created)?;
                    let end = self.resolve(*to, &created)?;
                    let id = self.next_rel;
                    self.next_rel += 1;
                    self.rels.insert(
                        id,
                        Relationship {
                            id,
                            start,
                            end,
                            rel_type: rel_type.clone(),
                            props: props.clone(),
                        },
                    );
                    ids.push(id);
                }
                Op::SetProperty { node, key, value } => {
                    let id = self.resolve(*node, &created)?;
                    let n = self.nodes.get_mut(&id).expect("resolved");
                    n.props.insert(key.clone(), value.clone());
                }
                Op::DeleteNode(id) => {
                    if self.rels.values().any(|r| r.start == *id || r.end == *id) {
                        return Err(format!("model: node {id} still has relationships"));
                    }
                    self.nodes
                        .remove(id)
                        .ok_or(format!("model: node {id} does not exist"))?;
                }
                Op::DeleteRelationship(id) => {
                    self.rels
                        .remove(id)
                        .ok_or(format!("model: relationship {id} does not exist"))?;
                }
            }
            created.push(made);
        }
        Ok(ids)
    }

    pub(crate) fn digest(&self) -> Digest {
        let mut d = Digest::ZERO;
        for n in self.nodes.values() {
            d.add_node(n);
        }
        for r in self.rels.values() {
            d.add_relationship(r);
        }
        d
    }

    fn has_rels(&self, id: Id) -> bool {
        self.rels.values().any(|r| r.start == id || r.end == id)
    }

    /// A random valid transaction over this graph (applied to a scratch copy as it is built,
    /// so later ops see earlier ones).
    pub(crate) fn random_tx(&self, rng: &mut StdRng) -> Vec<Op> {
        let mut scratch = self.clone();
        let mut ops = Vec::new();
        let mut created_nodes: Vec<usize> = Vec::new();
        let count = rng.random_range(1..=4);
        while ops.len() < count {
            let op = match rng.random_range(0..10) {
                0..=3 => Some(Op::CreateNode {
                    labels: random_labels(rng),
                    props: random_props(rng),
                }),
                4..=5 if !scratch.nodes.is_empty() => {
                    let pick = |rng: &mut StdRng| {
                        if !created_nodes.is_empty() && rng.random_bool(0.3) {
                            NodeRef::CreatedBy(
                                created_nodes[rng.random_range(0..created_nodes.len())],
                            )
                        } else {
                            NodeRef::Id(pick_key(&scratch.nodes, rng))
                        }
                    };
                    let (from, to) = (pick(rng), pick(rng));
                    Some(Op::CreateRelationship {
                        from,
                        to,
                        rel_type: ["KNOWS", "IN", "LIKES"][rng.random_range(0..3)].to_string(),
                        props: random_props(rng),
                    })
                }
                6..=7 if !scratch.nodes.is_empty() => Some(Op::SetProperty {
                    node: NodeRef::Id(pick_key(&scratch.nodes, rng)),
                    key: random_key(rng),
                    value: random_value(rng),
                }),
                8 if !scratch.rels.is_empty() => {
                    Some(Op::DeleteRelationship(pick_key(&scratch.rels, rng)))
                }
                9 => {
                    let free: Vec<Id> = scratch
                        .nodes
                        .keys()
                        .copied()
                        .filter(|&id| !scratch.has_rels(id))
                        .collect();
                    (!free.is_empty())
                        .then(|| Op::DeleteNode(free[rng.random_range(0..free.len())]))
                }
                _ => None,
            };
            let Some(op) = op else { continue };
            // Keep the scratch graph in step; `CreatedBy` indices are this transaction's.
            let mut whole = ops.clone();
            whole.push(op.clone());
            let mut probe = self.clone();
            if probe.apply(&whole).is_err() {
                continue;
            }
            if matches!(op, Op::CreateNode { .. }) {
                created_nodes.push(ops.len());
            }
            ops.push(op);
            scratch = probe;
        }
        ops
    }
}

fn pick_key<V>(map: &BTreeMap<Id, V>, rng: &mut StdRng) -> Id {
    *map.keys()
        .nth(rng.random_range(0..map.len()))
        .expect("not empty")
}

fn random_labels(rng: &mut StdRng) -> Vec<String> {
    ["Person", "City", "Thing"]
        .iter()
        .filter(|_| rng.random_bool(0.4))
        .map(|s| s.to_string())
        .collect()
}

fn random_key(rng: &mut StdRng) -> String {
    ["name", "age", "score", "tags", "bio"][rng.random_range(0..5)].to_string()
}

fn random_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..7) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => Value::Int(rng.random_range(-1000..1000)),
        3 => Value::Float(rng.random_range(-1.0e6..1.0e6)),
        // Long enough sometimes to span several property blocks and fill the log.
        4 => Value::String("x".repeat(rng.random_range(0..600))),
        5 => Value::List(vec![
            Value::Int(1),
            Value::String("two".into()),
            Value::Bool(false),
        ]),
        _ => Value::String(format!("v{}", rng.random_range(0..100))),
    }
}

fn random_props(rng: &mut StdRng) -> Properties {
    (0..rng.random_range(0..3))
        .map(|_| (random_key(rng), random_value(rng)))
        .collect()
}

struct Model {
    graph: Graph,
    acked_tx: u64,
    /// The transaction being committed, not yet acknowledged: it may or may not have survived.
    in_flight: Option<Vec<Op>>,
    /// Whether `Store::create` ever returned: from then on the store must open.
    created: bool,
    /// The random half of the store id, from the seed.
    random: u64,
    /// The on-disk format the store is created in, from the seed (both supported ones).
    format: FormatVersion,
    store_id: Option<StoreId>,
    round_done: bool,
}

/// After a start: the store holds exactly what the model says.
fn verify(m: &mut Model, store: &Store) -> Result<(), String> {
    let st = store.status();
    if st.store_id.random != m.random {
        return Err(format!(
            "store id {:?} does not carry the random half {} it was created with",
            st.store_id, m.random
        ));
    }
    if st.format != m.format {
        return Err(format!(
            "the store reports format {:?}, it was created in {:?}",
            st.format, m.format
        ));
    }
    match m.store_id {
        Some(id) if id != st.store_id => {
            return Err(format!(
                "the store id changed across a crash: {id:?} -> {:?}",
                st.store_id
            ))
        }
        _ => m.store_id = Some(st.store_id),
    }
    if st.last_committed_tx == m.acked_tx + 1 {
        let Some(ops) = m.in_flight.take() else {
            return Err(format!(
                "the store recovered tx {} but only {} was ever committed",
                st.last_committed_tx, m.acked_tx
            ));
        };
        m.graph.apply(&ops)?;
        m.acked_tx += 1;
    } else if st.last_committed_tx != m.acked_tx {
        return Err(format!(
            "the store recovered to tx {}, but tx {} was acknowledged",
            st.last_committed_tx, m.acked_tx
        ));
    }
    m.in_flight = None;
    let expected = m.graph.digest();
    if st.digest != expected {
        return Err(format!(
            "at tx {} the store's digest is {} but the model's is {expected}",
            st.last_committed_tx, st.digest
        ));
    }
    if (st.nodes, st.relationships) != (m.graph.nodes.len() as u64, m.graph.rels.len() as u64) {
        return Err(format!(
            "at tx {} the store counts {} nodes and {} relationships, the model {} and {}",
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
            "at tx {} a full scan gives digest {scanned}, the store recorded {}",
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
                "node {id} reads back as {got:?}, the model has {node:?}"
            ));
        }
    }
    Ok(())
}

async fn software(
    h: HostCtx,
    model: Arc<Mutex<Model>>,
    rng: Arc<Mutex<StdRng>>,
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
    for _ in 0..TXS_PER_ROUND {
        let (ops, checkpoint, pause) = {
            let m = model.lock().unwrap();
            let mut r = rng.lock().unwrap();
            (
                m.graph.random_tx(&mut r),
                r.random_bool(0.1),
                r.random_range(0..3000),
            )
        };
        model.lock().unwrap().in_flight = Some(ops.clone());
        let outcome = h.check(store.commit(&ops)).await?;
        {
            let mut m = model.lock().unwrap();
            let ids = m.graph.apply(&ops)?;
            if outcome.tx_id != m.acked_tx + 1 || outcome.ids != ids {
                return Err(format!(
                    "commit answered tx {} ids {:?}; the model expected tx {} ids {ids:?}",
                    outcome.tx_id,
                    outcome.ids,
                    m.acked_tx + 1
                )
                .into());
            }
            m.acked_tx = outcome.tx_id;
            m.in_flight = None;
        }
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
    model.lock().unwrap().round_done = true;
    std::future::pending::<()>().await;
    drop(open);
    Ok(())
}

fn run(ctx: &mut ScenarioCtx) -> turmoil::Result {
    let model = Arc::new(Mutex::new(Model {
        graph: Graph::default(),
        acked_tx: 0,
        in_flight: None,
        created: false,
        random: ctx.rng.random(),
        format: FormatVersion::SUPPORTED[ctx.rng.random_range(0..FormatVersion::SUPPORTED.len())],
        store_id: None,
        round_done: false,
    }));
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(ctx.rng.random())));
    // How many mutating operations a whole round takes, roughly: power is lost anywhere in it.
    let mut round_ops = 150;
    for round in 0..=ROUNDS {
        model.lock().unwrap().round_done = false;
        let ops_before = ctx.world.mutating_ops(HOST);
        // SIM-7: most rounds lose power at a random operation (mid-commit, mid-checkpoint,
        // mid-rotation, mid-recovery); the others at rest.
        if round < ROUNDS && ctx.rng.random_bool(0.85) {
            let n = ctx.rng.random_range(1..=round_ops);
            ctx.power_loss_before_op(HOST, n);
        }
        if round == 0 {
            let (model, rng) = (model.clone(), rng.clone());
            ctx.host(HOST, move |h| software(h, model.clone(), rng.clone()));
        } else {
            ctx.restart(HOST);
        }
        let m = model.clone();
        let stopped = ctx.run_until(200_000, "a round of commits", move || {
            m.lock().unwrap().round_done
        })?;
        if stopped == Stopped::Done {
            round_ops = (ctx.world.mutating_ops(HOST) - ops_before).max(20);
        }
        if round < ROUNDS {
            ctx.crash(HOST);
        } else if stopped != Stopped::Done {
            return Err(format!("the final, undisturbed round stopped with {stopped:?}").into());
        }
    }
    let m = model.lock().unwrap();
    if m.acked_tx == 0 {
        return Err("no transaction was ever acknowledged".into());
    }
    Ok(())
}
