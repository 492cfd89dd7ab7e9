//! Building one transaction: validating its operations against the current records and
//! producing the whole-record after-images and absolute state that its log entry carries.
//!
//! Owns: the semantics of each operation (ST-3), relationship-chain linking, payload chain
//! allocation, and the per-transaction digest update.
//! Must not touch: files for writing. A builder only reads (through an overlay of the records it
//! has already changed); the store writes the entry to the log and applies it.

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::graph::{Id, Node, NodeRef, Op, Properties, Relationship, Value};
use crate::store::format::{
    decode_node_payload, decode_rel_payload, encode_node_payload, encode_rel_payload, endpoints,
    BlockRecord, NodeRecord, RelRecord, BLOCK_DATA, NONE,
};
use crate::store::log::{RecordImage, TxEntry, TxState};
use crate::store::records::RecordFiles;
use crate::store::StoreError;

/// Why a transaction was refused. Nothing of a refused transaction is applied (ST-3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxRejection {
    #[error("op {op}: node {id} does not exist")]
    NoSuchNode { op: usize, id: Id },
    #[error("op {op}: relationship {id} does not exist")]
    NoSuchRelationship { op: usize, id: Id },
    #[error("op {op}: node {id} still has relationships; delete them first")]
    NodeHasRelationships { op: usize, id: Id },
    #[error("op {op}: \"${target}\" must name an earlier create_node op of the same transaction")]
    BadReference { op: usize, target: usize },
    #[error("op {op}: {what}")]
    Invalid { op: usize, what: String },
    #[error("the transaction has no operations")]
    Empty,
    #[error("the transaction is too large to log ({0} bytes; the limit is 16 MiB)")]
    TooLarge(usize),
    #[error("the transaction writes too many records to log ({0}; the limit is 262,144)")]
    TooManyRecords(usize),
}

/// The records written by the transactions of a group built before this one, not yet in the
/// record files (LOG-12): a builder reads them before the files, so each transaction of a group
/// sees the ones before it.
#[derive(Default)]
pub(crate) struct Overlay {
    nodes: BTreeMap<u64, NodeRecord>,
    rels: BTreeMap<u64, RelRecord>,
    blocks: BTreeMap<u64, BlockRecord>,
}

impl Overlay {
    /// Takes in the after-images of a transaction built on top of this overlay.
    pub(crate) fn absorb(&mut self, entry: &TxEntry) {
        for image in &entry.records {
            match image {
                RecordImage::Node(id, r) => {
                    self.nodes.insert(*id, *r);
                }
                RecordImage::Rel(id, r) => {
                    self.rels.insert(*id, *r);
                }
                RecordImage::Block(id, r) => {
                    self.blocks.insert(*id, r.clone());
                }
            }
        }
    }
}

/// Accumulates one transaction's changes over the store's current records.
pub(crate) struct TxBuilder<'a> {
    files: &'a RecordFiles,
    /// The earlier transactions of the same group, read before the files.
    base: Option<&'a Overlay>,
    nodes: BTreeMap<u64, NodeRecord>,
    rels: BTreeMap<u64, RelRecord>,
    blocks: BTreeMap<u64, BlockRecord>,
    state: TxState,
    /// The content of every node and relationship whose content this transaction changes, as
    /// it was before (`None` if it did not exist): the digest update removes these and adds the
    /// content after.
    nodes_before: BTreeMap<u64, Option<Node>>,
    rels_before: BTreeMap<u64, Option<Relationship>>,
    /// For each op index, the node id it created (create_node ops only), for `"$i"` references.
    created_nodes: Vec<Option<Id>>,
    ids: Vec<Id>,
}

impl<'a> TxBuilder<'a> {
    /// A builder over the records of `files` as the transactions in `base` left them, at their
    /// `state` (LOG-12).
    pub fn over(
        files: &'a RecordFiles,
        base: Option<&'a Overlay>,
        state: TxState,
    ) -> TxBuilder<'a> {
        TxBuilder {
            files,
            base,
            nodes: BTreeMap::new(),
            rels: BTreeMap::new(),
            blocks: BTreeMap::new(),
            state,
            nodes_before: BTreeMap::new(),
            rels_before: BTreeMap::new(),
            created_nodes: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Applies every op in order; the first refusal aborts the whole transaction.
    pub fn apply_all(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Err(TxRejection::Empty.into());
        }
        for (i, op) in ops.iter().enumerate() {
            let created = self.apply(i, op)?;
            self.created_nodes.push(
                matches!(op, Op::CreateNode { .. })
                    .then_some(created)
                    .flatten(),
            );
        }
        Ok(())
    }

    fn apply(&mut self, i: usize, op: &Op) -> Result<Option<Id>, StoreError> {
        match op {
            Op::CreateNode { labels, props } => {
                validate_props(i, props)?;
                for l in labels {
                    validate_name(i, "label", l)?;
                }
                let mut labels = labels.clone();
                labels.sort();
                labels.dedup();
                let id = self.state.next_node;
                self.state.next_node += 1;
                let payload = encode_node_payload(&labels, props);
                let first = self.write_chain(NONE, &payload)?;
                self.nodes_before.insert(id, None);
                self.nodes.insert(
                    id,
                    NodeRecord {
                        in_use: true,
                        first_rel: NONE,
                        payload_block: first,
                        payload_len: payload.len() as u32,
                    },
                );
                self.state.nodes += 1;
                self.ids.push(id);
                Ok(Some(id))
            }
            Op::CreateRelationship {
                from,
                to,
                rel_type,
                props,
            } => {
                validate_props(i, props)?;
                validate_name(i, "relationship type", rel_type)?;
                let start = self.resolve(i, *from)?;
                let end = self.resolve(i, *to)?;
                let id = self.state.next_rel;
                self.state.next_rel += 1;
                let payload = encode_rel_payload(rel_type, props);
                let first = self.write_chain(NONE, &payload)?;
                let mut rel = RelRecord {
                    in_use: true,
                    start,
                    end,
                    start_prev: NONE,
                    start_next: NONE,
                    end_prev: NONE,
                    end_next: NONE,
                    payload_block: first,
                    payload_len: payload.len() as u32,
                };
                for n in endpoints(start, end) {
                    let mut node = self.node(n)?;
                    let head = node.first_rel;
                    rel.set_next_for(n, head);
                    if head != NONE {
                        let mut h = self.rel(head)?;
                        h.set_prev_for(n, id);
                        self.rels.insert(head, h);
                    }
                    node.first_rel = id;
                    self.nodes.insert(n, node);
                }
                self.rels_before.insert(id, None);
                self.rels.insert(id, rel);
                self.state.relationships += 1;
                self.ids.push(id);
                Ok(None)
            }
            Op::SetProperty { node, key, value } => {
                validate_name(i, "property key", key)?;
                validate_value(i, value)?;
                let id = self.resolve(i, *node)?;
                let before = self.capture_node(id)?;
                let mut content = before.expect("resolve checked the node exists");
                content.props.insert(key.clone(), value.clone());
                let mut rec = self.node(id)?;
                let payload = encode_node_payload(&content.labels, &content.props);
                rec.payload_block = self.write_chain(rec.payload_block, &payload)?;
                rec.payload_len = payload.len() as u32;
                self.nodes.insert(id, rec);
                Ok(None)
            }
            Op::DeleteNode(id) => {
                let rec = self.node(*id)?;
                if !rec.in_use {
                    return Err(TxRejection::NoSuchNode { op: i, id: *id }.into());
                }
                if rec.first_rel != NONE {
                    return Err(TxRejection::NodeHasRelationships { op: i, id: *id }.into());
                }
                self.capture_node(*id)?;
                self.free_chain(rec.payload_block)?;
                self.nodes.insert(*id, NodeRecord::unused());
                self.state.nodes -= 1;
                Ok(None)
            }
            Op::DeleteRelationship(id) => {
                let rel = self.rel(*id)?;
                if !rel.in_use {
                    return Err(TxRejection::NoSuchRelationship { op: i, id: *id }.into());
                }
                self.capture_rel(*id)?;
                for n in endpoints(rel.start, rel.end) {
                    let (prev, next) = rel.links_for(n);
                    if prev == NONE {
                        let mut node = self.node(n)?;
                        node.first_rel = next;
                        self.nodes.insert(n, node);
                    } else {
                        let mut p = self.rel(prev)?;
                        p.set_next_for(n, next);
                        self.rels.insert(prev, p);
                    }
                    if next != NONE {
                        let mut x = self.rel(next)?;
                        x.set_prev_for(n, prev);
                        self.rels.insert(next, x);
                    }
                }
                self.free_chain(rel.payload_block)?;
                self.rels.insert(*id, RelRecord::unused());
                self.state.relationships -= 1;
                Ok(None)
            }
        }
    }

    /// Finishes the transaction: the digest moves from the content before to the content after
    /// (ST-13), and every changed record becomes a whole after-image, ordered by file and id.
    pub fn finish(
        mut self,
        tx_id: u64,
        timestamp_millis: u64,
    ) -> Result<(TxEntry, Vec<Id>), StoreError> {
        let mut digest = self.state.digest;
        for (id, before) in std::mem::take(&mut self.nodes_before) {
            if let Some(b) = before {
                digest.remove_node(&b);
            }
            if let Some(a) = self.load_node(id)? {
                digest.add_node(&a);
            }
        }
        for (id, before) in std::mem::take(&mut self.rels_before) {
            if let Some(b) = before {
                digest.remove_relationship(&b);
            }
            if let Some(a) = self.load_rel(id)? {
                digest.add_relationship(&a);
            }
        }
        self.state.digest = digest;
        let mut records =
            Vec::with_capacity(self.nodes.len() + self.rels.len() + self.blocks.len());
        records.extend(
            self.nodes
                .into_iter()
                .map(|(id, r)| RecordImage::Node(id, r)),
        );
        records.extend(self.rels.into_iter().map(|(id, r)| RecordImage::Rel(id, r)));
        records.extend(
            self.blocks
                .into_iter()
                .map(|(id, r)| RecordImage::Block(id, r)),
        );
        Ok((
            TxEntry {
                tx_id,
                timestamp_millis,
                after: self.state,
                records,
            },
            self.ids,
        ))
    }

    fn resolve(&self, op: usize, r: NodeRef) -> Result<Id, StoreError> {
        let id = match r {
            NodeRef::Id(id) => id,
            NodeRef::CreatedBy(target) => match self.created_nodes.get(target) {
                Some(Some(id)) if target < op => *id,
                _ => return Err(TxRejection::BadReference { op, target }.into()),
            },
        };
        if !self.node(id)?.in_use {
            return Err(TxRejection::NoSuchNode { op, id }.into());
        }
        Ok(id)
    }

    fn node(&self, id: u64) -> Result<NodeRecord, StoreError> {
        match self
            .nodes
            .get(&id)
            .or_else(|| self.base.and_then(|b| b.nodes.get(&id)))
        {
            Some(r) => Ok(*r),
            None if id >= self.state.next_node => Ok(NodeRecord::unused()),
            None => self.files.read_node(id),
        }
    }

    fn rel(&self, id: u64) -> Result<RelRecord, StoreError> {
        match self
            .rels
            .get(&id)
            .or_else(|| self.base.and_then(|b| b.rels.get(&id)))
        {
            Some(r) => Ok(*r),
            None if id >= self.state.next_rel => Ok(RelRecord::unused()),
            None => self.files.read_rel(id),
        }
    }

    fn block(&self, id: u64) -> Result<BlockRecord, StoreError> {
        match self
            .blocks
            .get(&id)
            .or_else(|| self.base.and_then(|b| b.blocks.get(&id)))
        {
            Some(b) => Ok(b.clone()),
            None => self.files.read_block(id),
        }
    }

    fn capture_node(&mut self, id: u64) -> Result<Option<Node>, StoreError> {
        let content = self.load_node(id)?;
        self.nodes_before
            .entry(id)
            .or_insert_with(|| content.clone());
        Ok(content)
    }

    fn capture_rel(&mut self, id: u64) -> Result<(), StoreError> {
        if !self.rels_before.contains_key(&id) {
            let content = self.load_rel(id)?;
            self.rels_before.insert(id, content);
        }
        Ok(())
    }

    fn read_payload(&self, first: u64, len: u32) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::with_capacity(len as usize);
        let mut at = first;
        while out.len() < len as usize && at != NONE {
            let b = self.block(at)?;
            out.extend_from_slice(&b.data);
            at = b.next;
        }
        if out.len() != len as usize {
            return Err(StoreError::Corrupt(format!(
                "payload chain at block {first} is damaged"
            )));
        }
        Ok(out)
    }

    fn load_node(&self, id: u64) -> Result<Option<Node>, StoreError> {
        let rec = self.node(id)?;
        if !rec.in_use {
            return Ok(None);
        }
        let payload = self.read_payload(rec.payload_block, rec.payload_len)?;
        let (labels, props) = decode_node_payload(&payload)
            .map_err(|e| StoreError::Corrupt(format!("node {id}: {e}")))?;
        Ok(Some(Node { id, labels, props }))
    }

    fn load_rel(&self, id: u64) -> Result<Option<Relationship>, StoreError> {
        let rec = self.rel(id)?;
        if !rec.in_use {
            return Ok(None);
        }
        let payload = self.read_payload(rec.payload_block, rec.payload_len)?;
        let (rel_type, props) = decode_rel_payload(&payload)
            .map_err(|e| StoreError::Corrupt(format!("relationship {id}: {e}")))?;
        Ok(Some(Relationship {
            id,
            start: rec.start,
            end: rec.end,
            rel_type,
            props,
        }))
    }

    /// Writes `payload` as a chain, reusing the blocks of the chain starting at `old_first` in
    /// order and appending new blocks past the high-water mark when it needs more; surplus old
    /// blocks are marked unused (ST-9). Returns the first block, or `NONE` for an empty payload.
    fn write_chain(&mut self, old_first: u64, payload: &[u8]) -> Result<u64, StoreError> {
        let mut old = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut at = old_first;
        while at != NONE {
            let b = self.block(at)?;
            if !b.in_use || !seen.insert(at) {
                return Err(StoreError::Corrupt(format!(
                    "payload chain at block {old_first} is damaged"
                )));
            }
            old.push(at);
            at = b.next;
        }
        let chunks: Vec<&[u8]> = payload.chunks(BLOCK_DATA).collect();
        let mut ids = Vec::with_capacity(chunks.len());
        for i in 0..chunks.len() {
            ids.push(match old.get(i) {
                Some(&id) => id,
                None => {
                    let id = self.state.next_block;
                    self.state.next_block += 1;
                    id
                }
            });
        }
        for (i, chunk) in chunks.iter().enumerate() {
            let next = ids.get(i + 1).copied().unwrap_or(NONE);
            self.blocks.insert(
                ids[i],
                BlockRecord {
                    in_use: true,
                    next,
                    data: chunk.to_vec(),
                },
            );
        }
        for &surplus in old.iter().skip(chunks.len()) {
            self.blocks.insert(surplus, BlockRecord::unused());
        }
        Ok(ids.first().copied().unwrap_or(NONE))
    }

    fn free_chain(&mut self, first: u64) -> Result<(), StoreError> {
        self.write_chain(first, &[]).map(|_| ())
    }
}

/// The distinct endpoints of a relationship: a self-loop is linked into its node's chain once.
/// Largest string value, in bytes. Labels, types and keys are limited to 65,535 bytes.
pub const MAX_STRING: usize = 1 << 20;

fn validate_name(op: usize, what: &str, s: &str) -> Result<(), StoreError> {
    if s.is_empty() {
        return Err(TxRejection::Invalid {
            op,
            what: format!("{what} must not be empty"),
        }
        .into());
    }
    if s.len() > 65_535 {
        return Err(TxRejection::Invalid {
            op,
            what: format!("{what} is longer than 65535 bytes"),
        }
        .into());
    }
    Ok(())
}

fn validate_props(op: usize, props: &Properties) -> Result<(), StoreError> {
    for (k, v) in props {
        validate_name(op, "property key", k)?;
        validate_value(op, v)?;
    }
    Ok(())
}

fn validate_value(op: usize, v: &Value) -> Result<(), StoreError> {
    match v {
        Value::String(s) if s.len() > MAX_STRING => Err(TxRejection::Invalid {
            op,
            what: format!("a string value is longer than {MAX_STRING} bytes"),
        }
        .into()),
        Value::List(items) => {
            for item in items {
                if !item.is_scalar() {
                    return Err(TxRejection::Invalid {
                        op,
                        what: "lists may hold only null, booleans, integers, floats and strings"
                            .into(),
                    }
                    .into());
                }
                validate_value(op, item)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The digest of the whole graph computed by reading every record (used by `check` and tests).
pub fn scan_digest(
    files: &RecordFiles,
    next_node: u64,
    next_rel: u64,
) -> Result<Digest, StoreError> {
    let mut d = Digest::ZERO;
    for id in 0..next_node {
        let rec = files.read_node(id)?;
        if let Some(n) = files.load_node(id, &rec)? {
            d.add_node(&n);
        }
    }
    for id in 0..next_rel {
        let rec = files.read_rel(id)?;
        if let Some(r) = files.load_rel(id, &rec)? {
            d.add_relationship(&r);
        }
    }
    Ok(d)
}
