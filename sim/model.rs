//! The graph model the scenarios check the product against: what a sequence of acknowledged
//! transactions makes, applied the way the store applies them (ids from high-water marks, ST-9),
//! its digest (DG-*), and random valid transactions drawn from a scenario's generator.
//!
//! Shared by `store_crash` (one writer, the model assigns ids) and the server scenarios (several
//! writers over HTTP, each owning its own part of the graph; ids come from the server's answers).

use std::collections::BTreeMap;

use online_backup::digest::Digest;
use online_backup::graph::{Id, Node, NodeRef, Op, Properties, Relationship, Value};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value as Json};

/// The graph as the model sees it: what the acknowledged transactions made.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub nodes: BTreeMap<Id, Node>,
    pub rels: BTreeMap<Id, Relationship>,
    /// The id the next created node gets: one past the highest ever created (ST-9).
    pub next_node: Id,
    pub next_rel: Id,
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
    pub fn apply(&mut self, ops: &[Op]) -> Result<Vec<Id>, String> {
        self.apply_inner(ops, None)
    }

    /// Applies `ops` giving the created nodes and relationships the ids `ids` (a server's
    /// answer, in op order) instead of the next ones: how a writer that owns only part of the
    /// graph keeps its part. The high-water marks move past every id given.
    pub fn apply_with_ids(&mut self, ops: &[Op], ids: &[Id]) -> Result<(), String> {
        let creates = ops
            .iter()
            .filter(|op| matches!(op, Op::CreateNode { .. } | Op::CreateRelationship { .. }))
            .count();
        if creates != ids.len() {
            return Err(format!(
                "{creates} ops create something but {} ids came back: {ids:?}",
                ids.len()
            ));
        }
        self.apply_inner(ops, Some(ids)).map(drop)
    }

    fn apply_inner(&mut self, ops: &[Op], given: Option<&[Id]>) -> Result<Vec<Id>, String> {
        let given_id = |ids: &Vec<Id>| given.map(|g| g[ids.len()]);
        let mut created: Vec<Option<Id>> = Vec::new();
        let mut ids = Vec::new();
        for op in ops {
            let mut made = None;
            match op {
                Op::CreateNode { labels, props } => {
                    let mut labels = labels.clone();
                    labels.sort();
                    labels.dedup();
                    let id = given_id(&ids).unwrap_or(self.next_node);
                    if self.nodes.contains_key(&id) {
                        return Err(format!("model: node id {id} is given out twice"));
                    }
                    self.next_node = self.next_node.max(id + 1);
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
                    let id = given_id(&ids).unwrap_or(self.next_rel);
                    if self.rels.contains_key(&id) {
                        return Err(format!("model: relationship id {id} is given out twice"));
                    }
                    self.next_rel = self.next_rel.max(id + 1);
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

    pub fn digest(&self) -> Digest {
        let mut d = Digest::ZERO;
        for n in self.nodes.values() {
            d.add_node(n);
        }
        for r in self.rels.values() {
            d.add_relationship(r);
        }
        d
    }

    pub fn has_rels(&self, id: Id) -> bool {
        self.rels.values().any(|r| r.start == id || r.end == id)
    }

    /// A random valid transaction over this graph (applied to a scratch copy as it is built,
    /// so later ops see earlier ones).
    pub fn random_tx(&self, rng: &mut StdRng) -> Vec<Op> {
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

pub fn pick_key<V>(map: &BTreeMap<Id, V>, rng: &mut StdRng) -> Id {
    *map.keys()
        .nth(rng.random_range(0..map.len()))
        .expect("not empty")
}

pub fn random_labels(rng: &mut StdRng) -> Vec<String> {
    ["Person", "City", "Thing"]
        .iter()
        .filter(|_| rng.random_bool(0.4))
        .map(|s| s.to_string())
        .collect()
}

pub fn random_key(rng: &mut StdRng) -> String {
    ["name", "age", "score", "tags", "bio"][rng.random_range(0..5)].to_string()
}

pub fn random_value(rng: &mut StdRng) -> Value {
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

pub fn random_props(rng: &mut StdRng) -> Properties {
    (0..rng.random_range(0..3))
        .map(|_| (random_key(rng), random_value(rng)))
        .collect()
}

impl Graph {
    /// A random valid transaction that touches only this graph (a writer's own part of a graph
    /// others write too): existing nodes and relationships by id, nodes it creates by `"$i"`,
    /// never an id it would have to guess. Every node it creates carries `label`, so no two
    /// writers' nodes look alike. Values survive a JSON round trip exactly.
    pub fn random_owned_tx(&self, rng: &mut StdRng, label: &str) -> Vec<Op> {
        let mut ops: Vec<Op> = Vec::new();
        let mut created_nodes: Vec<usize> = Vec::new();
        let count = rng.random_range(1..=4);
        while ops.len() < count {
            let op = match rng.random_range(0..10) {
                0..=3 => {
                    let mut labels = random_labels(rng);
                    labels.push(label.to_string());
                    Some(Op::CreateNode {
                        labels,
                        props: random_json_props(rng),
                    })
                }
                4..=5 => {
                    let from = self.pick_ref(&created_nodes, rng);
                    let to = self.pick_ref(&created_nodes, rng);
                    from.zip(to).map(|(from, to)| Op::CreateRelationship {
                        from,
                        to,
                        rel_type: ["KNOWS", "IN", "LIKES"][rng.random_range(0..3)].to_string(),
                        props: random_json_props(rng),
                    })
                }
                6..=7 => self
                    .pick_ref(&created_nodes, rng)
                    .map(|node| Op::SetProperty {
                        node,
                        key: random_key(rng),
                        value: random_json_value(rng),
                    }),
                8 if !self.rels.is_empty() => {
                    Some(Op::DeleteRelationship(pick_key(&self.rels, rng)))
                }
                9 if !self.nodes.is_empty() => Some(Op::DeleteNode(pick_key(&self.nodes, rng))),
                _ => None,
            };
            let Some(op) = op else { continue };
            // Only ops valid after the earlier ones of the same transaction (a node deleted
            // with relationships left, or used after its deletion, is drawn again).
            let mut whole = ops.clone();
            whole.push(op.clone());
            if self.clone().apply(&whole).is_err() {
                continue;
            }
            if matches!(op, Op::CreateNode { .. }) {
                created_nodes.push(ops.len());
            }
            ops.push(op);
        }
        ops
    }

    /// A node this graph holds, by id, or one created by an earlier op (`created` lists their
    /// op indices), by reference; `None` when there is neither.
    fn pick_ref(&self, created: &[usize], rng: &mut StdRng) -> Option<NodeRef> {
        let by_ref =
            |rng: &mut StdRng| NodeRef::CreatedBy(created[rng.random_range(0..created.len())]);
        match (created.is_empty(), self.nodes.is_empty()) {
            (true, true) => None,
            (false, true) => Some(by_ref(rng)),
            (false, false) if rng.random_bool(0.3) => Some(by_ref(rng)),
            _ => Some(NodeRef::Id(pick_key(&self.nodes, rng))),
        }
    }

    /// The ids of the relationships of node `id`, newest (highest id) first, as
    /// `GET /db/data/node/{id}` lists them (HTTP-5).
    pub fn relationships_of(&self, id: Id) -> Vec<Id> {
        self.rels
            .values()
            .rev()
            .filter(|r| r.start == id || r.end == id)
            .map(|r| r.id)
            .collect()
    }

    /// What `GET /db/data/node/{id}` must answer for node `id` (HTTP-5).
    pub fn node_json(&self, id: Id) -> Option<Json> {
        let node = self.nodes.get(&id)?;
        Some(json!({
            "id": node.id,
            "labels": node.labels,
            "properties": serde_json::to_value(&node.props).expect("values are JSON"),
            "relationships": self.relationships_of(id),
        }))
    }
}

/// A value that survives JSON exactly: floats on a 1/8 grid have a short decimal form that
/// parses back to the same bits (a long one may not, with serde_json's fast float parser).
pub fn random_json_value(rng: &mut StdRng) -> Value {
    match random_value(rng) {
        Value::Float(f) => Value::Float((f * 8.0).round() / 8.0),
        v => v,
    }
}

fn random_json_props(rng: &mut StdRng) -> Properties {
    (0..rng.random_range(0..3))
        .map(|_| (random_key(rng), random_json_value(rng)))
        .collect()
}
