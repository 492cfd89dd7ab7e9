//! The reference graph model: what a sequence of transactions makes, computed without the store,
//! applied as the store applies them (all or nothing, ST-3; ids from high-water marks, ST-9),
//! with its digest (DG-*) and the node answers of the HTTP API (HTTP-5). The store's property
//! tests (`tests/store_props.rs`) and every simulation scenario check the product against it.
//!
//! It assigns ids itself ([`Graph::apply`], one writer), or takes them from the server's answers
//! ([`Graph::apply_with_ids`], a writer that owns only its part of a graph others write too).

use std::collections::BTreeMap;

use online_backup::digest::Digest;
use online_backup::graph::{Id, Node, NodeRef, Op, Relationship, Value};
use serde_json::{json, Value as Json};

/// The graph as the model sees it: what the applied transactions made.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub nodes: BTreeMap<Id, Node>,
    pub rels: BTreeMap<Id, Relationship>,
    /// The id the next created node gets: one past the highest ever created (ST-9).
    pub next_node: Id,
    pub next_rel: Id,
    /// The digest of `nodes` and `rels` (DG-*), kept up to date by every op applied or taken
    /// back: the writers ask for it at every commit, and computing it afresh each time was most
    /// of a simulation's cost. [`Graph::digest_from_scratch`] is the check on it.
    digest: Digest,
}

/// How to take back one applied op: what [`Graph::apply`] replays, newest first, when a later
/// op of the same transaction is refused (all or nothing, ST-3).
#[derive(Debug)]
enum Undo {
    CreatedNode {
        id: Id,
        next_node: Id,
    },
    CreatedRel {
        id: Id,
        next_rel: Id,
    },
    SetProperty {
        node: Id,
        key: String,
        old: Option<Value>,
    },
    DeletedNode(Node),
    DeletedRel(Relationship),
}

/// A transaction being applied op by op ([`Graph::apply_op`]): the ids it created so far and
/// how to take its ops back.
#[derive(Debug, Default)]
pub struct TxInProgress {
    /// The node each op created, by op index, for `"$i"` references.
    created: Vec<Option<Id>>,
    /// The ids created, in op order.
    ids: Vec<Id>,
    undo: Vec<Undo>,
}

impl Graph {
    /// A graph of these nodes and relationships, with these high-water marks.
    pub fn from_parts(
        nodes: BTreeMap<Id, Node>,
        rels: BTreeMap<Id, Relationship>,
        next_node: Id,
        next_rel: Id,
    ) -> Graph {
        let mut g = Graph {
            nodes,
            rels,
            next_node,
            next_rel,
            digest: Digest::ZERO,
        };
        g.digest = g.digest_from_scratch();
        g
    }

    /// Applies `ops` as the store does and returns the ids created, in op order; or says why
    /// the store must refuse them, and then changes nothing (ST-3).
    pub fn apply(&mut self, ops: &[Op]) -> Result<Vec<Id>, String> {
        self.apply_all(ops, None)
    }

    /// The graph after `ops`, or why the store must refuse them.
    pub fn after(&self, ops: &[Op]) -> Result<Graph, String> {
        let mut g = self.clone();
        g.apply(ops)?;
        Ok(g)
    }

    /// The digest of the graph after `ops` (which must apply), leaving the graph as it is.
    pub fn digest_after(&mut self, ops: &[Op]) -> Result<Digest, String> {
        let mut tx = TxInProgress::default();
        for op in ops {
            if let Err(e) = self.apply_op(op, &mut tx, None) {
                self.roll_back(tx);
                return Err(e);
            }
        }
        let digest = self.digest();
        self.roll_back(tx);
        Ok(digest)
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
        self.apply_all(ops, Some(ids)).map(|_| ())
    }

    /// Applies `ops` in place (ids `given`, or the next ones) and returns the ids created; on a
    /// refused op, takes back the ones before it.
    fn apply_all(&mut self, ops: &[Op], given: Option<&[Id]>) -> Result<Vec<Id>, String> {
        if ops.is_empty() {
            return Err("model: a transaction without operations".to_string());
        }
        let mut tx = TxInProgress::default();
        for op in ops {
            if let Err(e) = self.apply_op(op, &mut tx, given) {
                self.roll_back(tx);
                return Err(e);
            }
        }
        Ok(tx.ids)
    }

    /// Takes back every op of `tx`, newest first.
    pub fn roll_back(&mut self, tx: TxInProgress) {
        for undo in tx.undo.into_iter().rev() {
            match undo {
                Undo::CreatedNode { id, next_node } => {
                    let node = self.nodes.remove(&id).expect("created earlier");
                    self.digest.remove_node(&node);
                    self.next_node = next_node;
                }
                Undo::CreatedRel { id, next_rel } => {
                    let rel = self.rels.remove(&id).expect("created earlier");
                    self.digest.remove_relationship(&rel);
                    self.next_rel = next_rel;
                }
                Undo::SetProperty { node, key, old } => {
                    let n = self.nodes.get_mut(&node).expect("set earlier");
                    self.digest.remove_node(n);
                    match old {
                        Some(v) => n.props.insert(key, v),
                        None => n.props.remove(&key),
                    };
                    self.digest.add_node(n);
                }
                Undo::DeletedNode(node) => {
                    self.digest.add_node(&node);
                    self.nodes.insert(node.id, node);
                }
                Undo::DeletedRel(rel) => {
                    self.digest.add_relationship(&rel);
                    self.rels.insert(rel.id, rel);
                }
            }
        }
    }

    /// Applies one op of the transaction `tx` (its creations take ids from `given`, by creation
    /// index, or the next ones), or says why the store must refuse it and changes nothing.
    pub fn apply_op(
        &mut self,
        op: &Op,
        tx: &mut TxInProgress,
        given: Option<&[Id]>,
    ) -> Result<(), String> {
        let given_id = |ids: &Vec<Id>| given.and_then(|g| g.get(ids.len()).copied());
        let mut made = None;
        match op {
            Op::CreateNode { labels, props } => {
                let mut labels = labels.clone();
                labels.sort();
                labels.dedup();
                let id = given_id(&tx.ids).unwrap_or(self.next_node);
                if self.nodes.contains_key(&id) {
                    return Err(format!("model: node id {id} is given out twice"));
                }
                tx.undo.push(Undo::CreatedNode {
                    id,
                    next_node: self.next_node,
                });
                self.next_node = self.next_node.max(id + 1);
                let node = Node {
                    id,
                    labels,
                    props: props.clone(),
                };
                self.digest.add_node(&node);
                self.nodes.insert(id, node);
                tx.ids.push(id);
                made = Some(id);
            }
            Op::CreateRelationship {
                from,
                to,
                rel_type,
                props,
            } => {
                let start = self.resolve(*from, &tx.created)?;
                let end = self.resolve(*to, &tx.created)?;
                let id = given_id(&tx.ids).unwrap_or(self.next_rel);
                if self.rels.contains_key(&id) {
                    return Err(format!("model: relationship id {id} is given out twice"));
                }
                tx.undo.push(Undo::CreatedRel {
                    id,
                    next_rel: self.next_rel,
                });
                self.next_rel = self.next_rel.max(id + 1);
                let rel = Relationship {
                    id,
                    start,
                    end,
                    rel_type: rel_type.clone(),
                    props: props.clone(),
                };
                self.digest.add_relationship(&rel);
                self.rels.insert(id, rel);
                tx.ids.push(id);
            }
            Op::SetProperty { node, key, value } => {
                let id = self.resolve(*node, &tx.created)?;
                let n = self.nodes.get_mut(&id).expect("resolved");
                self.digest.remove_node(n);
                let old = n.props.insert(key.clone(), value.clone());
                self.digest.add_node(n);
                tx.undo.push(Undo::SetProperty {
                    node: id,
                    key: key.clone(),
                    old,
                });
            }
            Op::DeleteNode(id) => {
                if self.has_rels(*id) {
                    return Err(format!("model: node {id} still has relationships"));
                }
                let node = self
                    .nodes
                    .remove(id)
                    .ok_or(format!("model: node {id} does not exist"))?;
                self.digest.remove_node(&node);
                tx.undo.push(Undo::DeletedNode(node));
            }
            Op::DeleteRelationship(id) => {
                let rel = self
                    .rels
                    .remove(id)
                    .ok_or(format!("model: relationship {id} does not exist"))?;
                self.digest.remove_relationship(&rel);
                tx.undo.push(Undo::DeletedRel(rel));
            }
        }
        tx.created.push(made);
        Ok(())
    }

    /// The node `r` names: an existing one, or the one an earlier op of the transaction created.
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

    /// The digest of the graph (DG-*), as kept up to date op by op.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The digest of the graph computed afresh from every node and relationship: what
    /// [`Graph::digest`] must equal.
    pub fn digest_from_scratch(&self) -> Digest {
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
