//! Helpers shared by the integration tests: a scratch directory on tmpfs where there is one
//! (fsync is then cheap, so property tests can run thousands of commits), an in-memory model
//! of the graph, and random operations resolved against the model.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use online_backup::digest::Digest;
use online_backup::graph::{Id, Node, NodeRef, Op, Properties, Relationship, Value};
use online_backup::io::os::{OsClock, OsFs};
use online_backup::io::{Clock, Fs};
use proptest::prelude::*;

pub mod backup;
pub mod faulty;
#[path = "../kit/mod.rs"]
pub mod kit;
pub mod server;

pub fn fs() -> Arc<dyn Fs> {
    Arc::new(OsFs)
}

pub fn clock() -> Arc<dyn Clock> {
    Arc::new(OsClock)
}

/// A temporary directory, on /dev/shm when it exists.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir in /dev/shm")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

/// Copies every file of `from` into `to` (created), byte for byte.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// What the graph should be: the store's content computed without the store.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub nodes: BTreeMap<Id, Node>,
    pub rels: BTreeMap<Id, Relationship>,
    pub next_node: Id,
    pub next_rel: Id,
}

impl Model {
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

    fn has_rels(&self, node: Id) -> bool {
        self.rels.values().any(|r| r.start == node || r.end == node)
    }

    /// Applies ops as the store should; `Err` when the store must refuse (nothing applied).
    pub fn apply(&mut self, ops: &[Op]) -> Result<Vec<Id>, ()> {
        let mut next = self.clone();
        let mut created: Vec<Option<Id>> = Vec::new();
        let mut ids = Vec::new();
        let resolve =
            |m: &Model, created: &[Option<Id>], r: NodeRef, op: usize| -> Result<Id, ()> {
                let id = match r {
                    NodeRef::Id(id) => id,
                    NodeRef::CreatedBy(i) if i < op => created[i].ok_or(())?,
                    NodeRef::CreatedBy(_) => return Err(()),
                };
                m.nodes.contains_key(&id).then_some(id).ok_or(())
            };
        if ops.is_empty() {
            return Err(());
        }
        for (i, op) in ops.iter().enumerate() {
            let mut made = None;
            match op {
                Op::CreateNode { labels, props } => {
                    let id = next.next_node;
                    next.next_node += 1;
                    let mut labels = labels.clone();
                    labels.sort();
                    labels.dedup();
                    next.nodes.insert(
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
                    let start = resolve(&next, &created, *from, i)?;
                    let end = resolve(&next, &created, *to, i)?;
                    let id = next.next_rel;
                    next.next_rel += 1;
                    next.rels.insert(
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
                    let id = resolve(&next, &created, *node, i)?;
                    next.nodes
                        .get_mut(&id)
                        .unwrap()
                        .props
                        .insert(key.clone(), value.clone());
                }
                Op::DeleteNode(id) => {
                    if !next.nodes.contains_key(id) || next.has_rels(*id) {
                        return Err(());
                    }
                    next.nodes.remove(id);
                }
                Op::DeleteRelationship(id) => {
                    next.rels.remove(id).ok_or(())?;
                }
            }
            created.push(made);
        }
        *self = next;
        Ok(ids)
    }
}

/// An abstract action, resolved against the model's live ids when it runs, so most random
/// transactions are valid and some are (deliberately) refused.
#[derive(Clone, Debug)]
pub enum Action {
    CreateNode {
        labels: Vec<String>,
        props: Properties,
    },
    CreateRel {
        from: usize,
        to: usize,
        from_new: bool,
        rel_type: String,
        props: Properties,
    },
    SetProp {
        node: usize,
        key: String,
        value: Value,
    },
    DeleteRel {
        rel: usize,
    },
    DeleteNode {
        node: usize,
    },
}

fn value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        "[a-z]{0,12}".prop_map(Value::String),
        // Long strings make payload chains of several blocks.
        "[a-z]{100,400}".prop_map(Value::String),
    ];
    prop_oneof![
        4 => scalar.clone(),
        1 => proptest::collection::vec(scalar, 0..4).prop_map(Value::List),
    ]
}

fn props() -> impl Strategy<Value = Properties> {
    proptest::collection::btree_map("[a-d]", value(), 0..3)
}

pub fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (proptest::collection::vec("[A-C]", 0..3), props())
            .prop_map(|(labels, props)| Action::CreateNode { labels, props }),
        3 => (any::<usize>(), any::<usize>(), any::<bool>(), "[RST]", props())
            .prop_map(|(from, to, from_new, rel_type, props)| Action::CreateRel { from, to, from_new, rel_type, props }),
        2 => (any::<usize>(), "[a-d]", value()).prop_map(|(node, key, value)| Action::SetProp { node, key, value }),
        1 => any::<usize>().prop_map(|rel| Action::DeleteRel { rel }),
        1 => any::<usize>().prop_map(|node| Action::DeleteNode { node }),
    ]
}

/// A transaction of 1..5 actions.
pub fn transaction() -> impl Strategy<Value = Vec<Action>> {
    proptest::collection::vec(action(), 1..5)
}

/// Turns actions into store ops against the model's current ids.
pub fn resolve(model: &Model, actions: &[Action]) -> Vec<Op> {
    let nodes: Vec<Id> = model.nodes.keys().copied().collect();
    let rels: Vec<Id> = model.rels.keys().copied().collect();
    let pick = |v: &[Id], i: usize| if v.is_empty() { 0 } else { v[i % v.len()] };
    let mut ops = Vec::new();
    for a in actions {
        let op = match a.clone() {
            Action::CreateNode { labels, props } => Op::CreateNode { labels, props },
            Action::CreateRel {
                from,
                to,
                from_new,
                rel_type,
                props,
            } => {
                let earlier = ops.iter().rposition(|o| matches!(o, Op::CreateNode { .. }));
                let from = match earlier {
                    Some(i) if from_new => NodeRef::CreatedBy(i),
                    _ => NodeRef::Id(pick(&nodes, from)),
                };
                Op::CreateRelationship {
                    from,
                    to: NodeRef::Id(pick(&nodes, to)),
                    rel_type,
                    props,
                }
            }
            Action::SetProp { node, key, value } => Op::SetProperty {
                node: NodeRef::Id(pick(&nodes, node)),
                key,
                value,
            },
            Action::DeleteRel { rel } => Op::DeleteRelationship(pick(&rels, rel)),
            Action::DeleteNode { node } => Op::DeleteNode(pick(&nodes, node)),
        };
        ops.push(op);
    }
    ops
}
