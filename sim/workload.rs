//! Random transactions for the scenarios, drawn from a scenario's generator over the reference
//! graph model (the kit's `Graph`, `tests/kit/model.rs`): valid ones over the whole graph
//! (`store_crash`, the backup scenarios' writer), and valid ones over a writer's own part of a
//! graph others write too (the server scenarios, whose ids come from the server's answers).

use std::collections::BTreeMap;

use online_backup::graph::{Id, NodeRef, Op, Properties, Value};
use rand::rngs::StdRng;
use rand::Rng;

use crate::kit::model::{Graph, TxInProgress};

impl Graph {
    /// A random valid transaction over this graph, which it leaves as it was (each op is applied
    /// as it is drawn, so later ops see earlier ones, and all are taken back at the end).
    pub fn random_tx(&mut self, rng: &mut StdRng) -> Vec<Op> {
        // Each op is applied as it is drawn, so the next is drawn on the graph the transaction
        // leaves so far (`CreatedBy` indices are this transaction's); all are taken back at the
        // end.
        let mut tx = TxInProgress::default();
        let mut ops = Vec::new();
        let mut created_nodes: Vec<usize> = Vec::new();
        let count = rng.random_range(1..=4);
        while ops.len() < count {
            let op = match rng.random_range(0..10) {
                0..=3 => Some(Op::CreateNode {
                    labels: random_labels(rng),
                    props: random_props(rng),
                }),
                4..=5 if !self.nodes.is_empty() => {
                    let pick = |rng: &mut StdRng| {
                        if !created_nodes.is_empty() && rng.random_bool(0.3) {
                            NodeRef::CreatedBy(
                                created_nodes[rng.random_range(0..created_nodes.len())],
                            )
                        } else {
                            NodeRef::Id(pick_key(&self.nodes, rng))
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
                6..=7 if !self.nodes.is_empty() => Some(Op::SetProperty {
                    node: NodeRef::Id(pick_key(&self.nodes, rng)),
                    key: random_key(rng),
                    value: random_value(rng),
                }),
                8 if !self.rels.is_empty() => {
                    Some(Op::DeleteRelationship(pick_key(&self.rels, rng)))
                }
                9 => {
                    let free: Vec<Id> = self
                        .nodes
                        .keys()
                        .copied()
                        .filter(|&id| !self.has_rels(id))
                        .collect();
                    (!free.is_empty())
                        .then(|| Op::DeleteNode(free[rng.random_range(0..free.len())]))
                }
                _ => None,
            };
            let Some(op) = op else { continue };
            if self.apply_op(&op, &mut tx, None).is_err() {
                continue;
            }
            if matches!(op, Op::CreateNode { .. }) {
                created_nodes.push(ops.len());
            }
            ops.push(op);
        }
        self.roll_back(tx);
        ops
    }

    /// A random valid transaction that touches only this graph (a writer's own part of a graph
    /// others write too): existing nodes and relationships by id, nodes it creates by `"$i"`,
    /// never an id it would have to guess. Every node it creates carries `label`, so no two
    /// writers' nodes look alike. Values survive a JSON round trip exactly.
    pub fn random_owned_tx(&self, rng: &mut StdRng, label: &str) -> Vec<Op> {
        // Ops are drawn on this graph (never on ids the transaction creates, which the server
        // gives out) and checked on a scratch copy the transaction changes as it goes.
        let mut scratch = self.clone();
        let mut tx = TxInProgress::default();
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
            if scratch.apply_op(&op, &mut tx, None).is_err() {
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
