//! Helpers shared by the integration tests: a scratch directory on tmpfs where there is one
//! (fsync is then cheap, so property tests can run thousands of commits), and random operations
//! resolved against the reference graph model (the kit's [`Graph`], shared with the
//! simulations).
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use online_backup::graph::{Id, NodeRef, Op, Properties, Value};
use online_backup::io::os::{OsClock, OsFs};
use online_backup::io::{Clock, Fs};
use proptest::prelude::*;

pub mod backup;
pub mod faulty;
#[path = "../kit/mod.rs"]
pub mod kit;
pub mod moto;
pub mod server;

pub use kit::model::Graph;

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
pub fn resolve(model: &Graph, actions: &[Action]) -> Vec<Op> {
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

/// Runs `f` with this thread's tracing events written to a string, and returns both: what the
/// library logs for an operator, checked where a rule says what is logged.
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    (out, text)
}
