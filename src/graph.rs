//! The property graph as users see it: values, nodes, relationships and the operations a
//! transaction is made of.
//!
//! Owns: the user-visible data model and its validation limits.
//! Must not touch: storage. How these are encoded on disk lives in `store`; how they are hashed
//! lives in `digest`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A node or relationship id. Ids are assigned in order and never reused (rule ST-9).
pub type Id = u64;

/// A property value (rule ST-2). Lists hold scalars only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<Value>),
}

/// Properties, ordered by key so iteration order is canonical.
pub type Properties = BTreeMap<String, Value>;

/// A node as read back from the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: Id,
    /// Sorted and without duplicates.
    pub labels: Vec<String>,
    pub props: Properties,
}

/// A relationship as read back from the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Relationship {
    pub id: Id,
    pub start: Id,
    pub end: Id,
    pub rel_type: String,
    pub props: Properties,
}

/// A reference to a node inside a transaction: an existing id, or the node created by an
/// earlier operation of the same transaction (the HTTP API's `"$i"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRef {
    Id(Id),
    CreatedBy(usize),
}

/// One operation of a transaction (rule ST-3).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    CreateNode {
        labels: Vec<String>,
        props: Properties,
    },
    CreateRelationship {
        from: NodeRef,
        to: NodeRef,
        rel_type: String,
        props: Properties,
    },
    SetProperty {
        node: NodeRef,
        key: String,
        value: Value,
    },
    DeleteNode(Id),
    DeleteRelationship(Id),
}

/// What a committed transaction reports back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitOutcome {
    pub tx_id: u64,
    /// The ids created, in operation order (one per create operation).
    pub ids: Vec<Id>,
}

impl Value {
    /// True for values a list may hold.
    pub fn is_scalar(&self) -> bool {
        !matches!(self, Value::List(_))
    }
}
