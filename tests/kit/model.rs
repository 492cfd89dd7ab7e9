//! The reference graph model: what a sequence of transactions makes, computed without the store,
//! applied as the store applies them (all or nothing, ST-3; ids from high-water marks, ST-9),
//! with its digest (DG-*) and the node answers of the HTTP API (HTTP-5). The store's property
//! tests (`tests/store_props.rs`) and every simulation scenario check the product against it.
//!
//! It assigns ids itself ([`Graph::apply`], one writer), or takes them from the server's answers
//! ([`Graph::apply_with_ids`], a writer that owns only its part of a graph others write too).

use std::collections::BTreeMap;

use online_backup::digest::Digest;
use online_backup::graph::{Id, Node, NodeRef, Op, Relationship};
use serde_json::{json, Value as Json};

/// The graph as the model sees it: what the applied transactions made.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub nodes: BTreeMap<Id, Node>,
    pub rels: BTreeMap<Id, Relationship>,
    /// The id the next created node gets: one past the highest ever created (ST-9).
    pub next_node: Id,
    pub next_rel: Id,
}

impl Graph {
    /// Applies `ops` as the store does and returns the ids created, in op order; or says why
    /// the store must refuse them, and then changes nothing (ST-3).
    pub fn apply(&mut self, ops: &[Op]) -> Result<Vec<Id>, String> {
        let (after, ids) = self.applied(ops, None)?;
        *self = after;
        Ok(ids)
    }

    /// The graph after `ops`, or why the store must refuse them.
    pub fn after(&self, ops: &[Op]) -> Result<Graph, String> {
        self.applied(ops, None).map(|(after, _)| after)
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
        let (after, _) = self.applied(ops, Some(ids))?;
        *self = after;
        Ok(())
    }

    /// A copy of this graph with `ops` applied, and the ids created (`given`, or the next ones).
    fn applied(&self, ops: &[Op], given: Option<&[Id]>) -> Result<(Graph, Vec<Id>), String> {
        if ops.is_empty() {
            return Err("model: a transaction without operations".to_string());
        }
        let mut g = self.clone();
        let given_id = |ids: &Vec<Id>| given.map(|g| g[ids.len()]);
        // The node each op created, by op index, for `"$i"` references.
        let mut created: Vec<Option<Id>> = Vec::new();
        let mut ids = Vec::new();
        for op in ops {
            let mut made = None;
            match op {
                Op::CreateNode { labels, props } => {
                    let mut labels = labels.clone();
                    labels.sort();
                    labels.dedup();
                    let id = given_id(&ids).unwrap_or(g.next_node);
                    if g.nodes.contains_key(&id) {
                        return Err(format!("model: node id {id} is given out twice"));
                    }
                    g.next_node = g.next_node.max(id + 1);
                    g.nodes.insert(
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
                    let start = g.resolve(*from, &created)?;
                    let end = g.resolve(*to, &created)?;
                    let id = given_id(&ids).unwrap_or(g.next_rel);
                    if g.rels.contains_key(&id) {
                        return Err(format!("model: relationship id {id} is given out twice"));
                    }
                    g.next_rel = g.next_rel.max(id + 1);
                    g.rels.insert(
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
                    let id = g.resolve(*node, &created)?;
                    let n = g.nodes.get_mut(&id).expect("resolved");
                    n.props.insert(key.clone(), value.clone());
                }
                Op::DeleteNode(id) => {
                    if g.has_rels(*id) {
                        return Err(format!("model: node {id} still has relationships"));
                    }
                    g.nodes
                        .remove(id)
                        .ok_or(format!("model: node {id} does not exist"))?;
                }
                Op::DeleteRelationship(id) => {
                    g.rels
                        .remove(id)
                        .ok_or(format!("model: relationship {id} does not exist"))?;
                }
            }
            created.push(made);
        }
        Ok((g, ids))
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
