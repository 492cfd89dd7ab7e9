//! The fast pass of `check` (ADM-11): proves a healthy store consistent reading each record
//! once, in file order, with the files split into ranges that run in parallel through the
//! `Blocking` seam.
//!
//! Owns: the proof, and nothing else. It answers "consistent, with this digest and these
//! counts", or "not proven" at the first doubt; it never writes a finding. On "not proven" the
//! exact pass (`mod.rs`) runs and says what is wrong, so the findings of a damaged store are
//! always the exact pass's, word for word.
//! Must not touch: anything but reads; the exact pass's rules, which it proves by other means:
//!
//! - Chain links without re-reading neighbours: every relationship contributes, per endpoint
//!   `n`, a keyed hash of `(n, prev, self)` to one sum and of `(n, self, next)` to another; the
//!   chains are well linked exactly when the two multisets are equal, which the two sums show
//!   but for a chance of 2^-64 (the key is random per run, so a store cannot be built to
//!   collide). Heads likewise: `(n, first_rel)` of each node against `(n, self)` of each
//!   relationship with no predecessor at `n`.
//! - Endpoints in use: the set of nodes in use, built by the node ranges before any
//!   relationship range runs, as a compressed bitmap (runs of ids in use take a few bytes, so a
//!   store whose nodes are mostly in use costs next to nothing, and never more than about one
//!   bit per node).
//! - Payload blocks owned once, without a bit per block: every chain walk adds a keyed hash of
//!   each block it claims to one sum, and every block in use adds a keyed hash of its id to
//!   another. The sums are equal exactly when the blocks claimed, counted with their
//!   multiplicity, are the blocks in use: no block claimed twice (two owners, or a loop), none in
//!   use that no record claims. Memory stays the same whatever the store's size.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use roaring::RoaringTreemap;

use super::{length_finding, read_chain, Cache};
use crate::digest::Digest;
use crate::io::Blocking;
use crate::store::format::{
    decode_node_payload, decode_rel_payload, endpoints, BlockRecord, NodeRecord, RecordKind,
    RelRecord, NONE,
};
use crate::store::records::RecordFiles;
use crate::store::{Store, StoreError};

/// Bytes of records one job scans in a round: large enough that a round's thread start is
/// noise, small enough that progress moves.
pub(super) const RANGE_BYTES: u64 = 8 << 20;

/// What the fast pass proved: the store is consistent, with these.
pub(super) struct Proven {
    pub(super) digest: Digest,
    pub(super) nodes: u64,
    pub(super) rels: u64,
}

/// What one range contributes; parts add up in any order.
#[derive(Default)]
struct Part {
    digest: Digest,
    nodes: u64,
    rels: u64,
    /// Sums of keyed hashes (module doc): heads seen from nodes and from relationships, links
    /// seen backwards and forwards.
    heads_by_nodes: u64,
    heads_by_rels: u64,
    links_back: u64,
    links_forward: u64,
    /// Sums of keyed hashes of the blocks chains claimed, and of the blocks in use.
    blocks_claimed: u64,
    blocks_in_use: u64,
    /// The nodes in use this range found (node ranges only).
    nodes_in_use: RoaringTreemap,
}

impl Part {
    fn add(&mut self, other: Part) {
        self.nodes_in_use |= other.nodes_in_use;
        self.blocks_claimed = self.blocks_claimed.wrapping_add(other.blocks_claimed);
        self.blocks_in_use = self.blocks_in_use.wrapping_add(other.blocks_in_use);
        self.digest.add(&other.digest.0);
        self.nodes += other.nodes;
        self.rels += other.rels;
        self.heads_by_nodes = self.heads_by_nodes.wrapping_add(other.heads_by_nodes);
        self.heads_by_rels = self.heads_by_rels.wrapping_add(other.heads_by_rels);
        self.links_back = self.links_back.wrapping_add(other.links_back);
        self.links_forward = self.links_forward.wrapping_add(other.links_forward);
    }
}

/// What every job of a pass shares.
struct Shared<'a> {
    files: &'a RecordFiles,
    next_node: u64,
    next_rel: u64,
    /// The key of the link hashes, random per run (module doc).
    key: [u64; 2],
    next_block: u64,
    /// Set once every node range ran, before the first relationship range.
    nodes_in_use: OnceLock<RoaringTreemap>,
    /// Set by the first job that doubts; the others stop at their next record.
    doubt: AtomicBool,
}

impl Shared<'_> {
    /// A keyed hash of `(tag, a, b, c)`: each word folded in through a bijective 64-bit mixer
    /// (MurmurHash3's finalizer) that starts from a random key. Not a cryptographic hash; what
    /// it must do is spread a damaged link to an unpredictable value, and an attacker who does
    /// not know the key cannot choose links whose sums cancel.
    fn hash(&self, tag: u64, a: u64, b: u64, c: u64) -> u64 {
        let mut x = self.key[0] ^ tag;
        for v in [a, b, c] {
            x = mix(x ^ v);
        }
        mix(x ^ self.key[1])
    }

    fn doubt(&self) {
        self.doubt.store(true, Ordering::Relaxed);
    }

    fn doubted(&self) -> bool {
        self.doubt.load(Ordering::Relaxed)
    }
}

/// Proves `store` consistent, or answers `None` ("not proven": run the exact pass). Calls
/// `progress(done, total)` after each round, on the caller's thread.
pub(super) fn prove(
    store: &Store,
    par: &dyn Blocking,
    range_bytes: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Option<Proven>, StoreError> {
    let files = &store.files;
    let state = &store.state;
    for (kind, mark) in [
        (RecordKind::Node, state.next_node),
        (RecordKind::Rel, state.next_rel),
        (RecordKind::Block, state.next_block),
    ] {
        let len = files.file(kind).len().map_err(|e| {
            StoreError::io(format!("reading the length of {}", kind.file_name()), e)
        })?;
        if length_finding(kind, kind.size(files.format) as u64, len, mark, "").is_some() {
            return Ok(None);
        }
    }
    let shared = Shared {
        files,
        next_node: state.next_node,
        next_rel: state.next_rel,
        key: {
            // std's per-process random keys (no seam needed: a key only decides whether a
            // collision of chance 2^-64 happens, never what a run does).
            let random = std::collections::hash_map::RandomState::new();
            [random.hash_one(0u8), random.hash_one(1u8)]
        },
        next_block: state.next_block,
        nodes_in_use: OnceLock::new(),
        doubt: AtomicBool::new(false),
    };
    let total = state.next_node + state.next_rel + state.next_block;
    let mut done = 0;
    let mut sum = Part::default();
    // Nodes first: the relationship ranges read the bits of nodes in use.
    for kind in RecordKind::ALL {
        let count = match kind {
            RecordKind::Node => state.next_node,
            RecordKind::Rel => state.next_rel,
            RecordKind::Block => state.next_block,
        };
        let size = kind.size(files.format) as u64;
        let per_job = (range_bytes / size).max(1);
        let width = par.width().max(1) as u64;
        let mut from = 0;
        while from < count {
            let ranges: Vec<(u64, u64)> = (0..width)
                .map(|i| from + i * per_job)
                .take_while(|&start| start < count)
                .map(|start| (start, (start + per_job).min(count)))
                .collect();
            let mut parts: Vec<Result<Part, StoreError>> =
                ranges.iter().map(|_| Ok(Part::default())).collect();
            let shared = &shared;
            let jobs: Vec<Box<dyn FnOnce() + Send + '_>> = ranges
                .iter()
                .zip(parts.iter_mut())
                .map(|(&(start, end), slot)| {
                    Box::new(move || *slot = scan_range(shared, kind, start, end))
                        as Box<dyn FnOnce() + Send + '_>
                })
                .collect();
            par.run_all(jobs);
            for part in parts {
                sum.add(part?);
            }
            if shared.doubted() {
                return Ok(None);
            }
            let end = ranges.last().map_or(count, |r| r.1);
            done += end - from;
            from = end;
            progress(done, total);
        }
        if kind == RecordKind::Node {
            let mut nodes = std::mem::take(&mut sum.nodes_in_use);
            nodes.optimize();
            let _ = shared.nodes_in_use.set(nodes);
        }
    }
    let proven = sum.nodes == state.nodes
        && sum.blocks_claimed == sum.blocks_in_use
        && sum.rels == state.relationships
        && sum.digest == state.digest
        && sum.heads_by_nodes == sum.heads_by_rels
        && sum.links_back == sum.links_forward;
    Ok(proven.then_some(Proven {
        digest: sum.digest,
        nodes: sum.nodes,
        rels: sum.rels,
    }))
}

/// MurmurHash3's 64-bit finalizer: a bijection that spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Scans records `start .. end` of `kind` into a part, stopping at the first doubt.
fn scan_range(
    shared: &Shared<'_>,
    kind: RecordKind,
    start: u64,
    end: u64,
) -> Result<Part, StoreError> {
    let files = shared.files;
    let format = files.format;
    let cache = Cache::new(files);
    let mut part = Part::default();
    let mut payload = Vec::new();
    super::scan_range(
        files.file(kind),
        kind.size(format),
        start,
        end,
        &mut |_| {},
        |id, raw| {
            if shared.doubted() {
                return;
            }
            let fine = match kind {
                RecordKind::Node => node(shared, &cache, &mut part, &mut payload, id, raw),
                RecordKind::Rel => rel(shared, &cache, &mut part, &mut payload, id, raw),
                RecordKind::Block => match BlockRecord::decode(format, raw) {
                    Ok(b) => {
                        if b.in_use {
                            part.blocks_in_use =
                                part.blocks_in_use.wrapping_add(shared.hash(2, id, 0, 0));
                        }
                        true
                    }
                    Err(_) => false,
                },
            };
            if !fine {
                shared.doubt();
            }
        },
    )?;
    part.nodes_in_use.optimize();
    Ok(part)
}

/// Reads the payload chain of a record into `payload`, adding the blocks it claims to the
/// part's sum; `false` at a damaged chain.
fn claimed_chain(
    shared: &Shared<'_>,
    cache: &Cache<'_>,
    part: &mut Part,
    payload: &mut Vec<u8>,
    first: u64,
    len: u32,
) -> bool {
    let mut claimed = part.blocks_claimed;
    let mut claim = |at: u64| {
        claimed = claimed.wrapping_add(shared.hash(2, at, 0, 0));
        false
    };
    let read = read_chain(cache, first, len, shared.next_block, &mut claim, payload);
    part.blocks_claimed = claimed;
    read.is_ok()
}

/// One node record; `false` at a doubt.
fn node(
    shared: &Shared<'_>,
    cache: &Cache<'_>,
    part: &mut Part,
    payload: &mut Vec<u8>,
    id: u64,
    raw: &[u8],
) -> bool {
    let Ok(rec) = NodeRecord::decode(shared.files.format, raw) else {
        return false;
    };
    if !rec.in_use {
        return true;
    }
    part.nodes += 1;
    // Ids come in order within a range: pushed at the end, in constant time.
    if part.nodes_in_use.try_push(id).is_err() {
        part.nodes_in_use.insert(id);
    }
    if !claimed_chain(
        shared,
        cache,
        part,
        payload,
        rec.payload_block,
        rec.payload_len,
    ) {
        return false;
    }
    let Ok((labels, props)) = decode_node_payload(payload) else {
        return false;
    };
    part.digest
        .add_node(&crate::graph::Node { id, labels, props });
    if rec.first_rel != NONE {
        part.heads_by_nodes =
            part.heads_by_nodes
                .wrapping_add(shared.hash(0, id, rec.first_rel, 0));
    }
    true
}

/// One relationship record; `false` at a doubt.
fn rel(
    shared: &Shared<'_>,
    cache: &Cache<'_>,
    part: &mut Part,
    payload: &mut Vec<u8>,
    id: u64,
    raw: &[u8],
) -> bool {
    let Ok(rec) = RelRecord::decode(shared.files.format, raw) else {
        return false;
    };
    if !rec.in_use {
        return true;
    }
    part.rels += 1;
    let Some(nodes_in_use) = shared.nodes_in_use.get() else {
        return false;
    };
    for n in [rec.start, rec.end] {
        if n >= shared.next_node || !nodes_in_use.contains(n) {
            return false;
        }
    }
    if !claimed_chain(
        shared,
        cache,
        part,
        payload,
        rec.payload_block,
        rec.payload_len,
    ) {
        return false;
    }
    let Ok((rel_type, props)) = decode_rel_payload(payload) else {
        return false;
    };
    part.digest.add_relationship(&crate::graph::Relationship {
        id,
        start: rec.start,
        end: rec.end,
        rel_type,
        props,
    });
    for n in endpoints(rec.start, rec.end) {
        let (prev, next) = rec.links_for(n);
        if prev == NONE {
            part.heads_by_rels = part.heads_by_rels.wrapping_add(shared.hash(0, n, id, 0));
        } else {
            if prev >= shared.next_rel {
                return false;
            }
            part.links_back = part.links_back.wrapping_add(shared.hash(1, n, prev, id));
        }
        if next != NONE {
            if next >= shared.next_rel {
                return false;
            }
            part.links_forward = part.links_forward.wrapping_add(shared.hash(1, n, id, next));
        }
    }
    true
}
