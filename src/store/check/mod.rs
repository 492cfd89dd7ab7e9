//! `neo4j-admin check`: reads every record and reference, recomputes the digest by a full scan
//! and compares it with the recorded one (ADM-3).
//!
//! Owns: the consistency rules a healthy store satisfies and the report.
//! Must not touch: anything but reads. The store is opened normally first, so a store that
//! needs recovery is recovered (and checkpointed) before it is checked, as in Neo4j.
//!
//! Memory: records are scanned in large sequential batches. The fast pass, which is what a
//! healthy store costs, keeps sums instead of a bit per block and a compressed set of the nodes
//! in use (a few bytes per run of ids in use, at most about a bit per node). The exact pass,
//! which runs only when the fast one doubts, keeps a bit per dynamic block (to find blocks
//! owned twice or by nobody) and reads nodes through its cache.
//!
//! Files: `fast.rs` the fast pass, which proves a healthy store consistent reading each record
//! once, in parallel (ADM-11); this file the exact pass, which runs when the fast one cannot
//! prove it, and whose findings are the report's.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

mod fast;

use crate::digest::Digest;
use crate::io::{Blocking, Clock, FileHandle, Fs};
use crate::store::format::{
    decode_node_payload, decode_rel_payload, endpoints, BlockRecord, NodeRecord, RecordKind,
    RelRecord, NONE,
};
use crate::store::records::RecordFiles;
use crate::store::{Store, StoreError, StoreOptions};

/// At most this many findings are listed; the count says how many there were.
const MAX_FINDINGS: usize = 100;

/// Bytes of records one sequential read of a scan takes: large enough that the read's cost is
/// the bytes, small enough that the buffers of the parallel jobs stay a small part of the
/// tool's memory (`neo4j-backup` verifies within its memory bound, ST-12).
const SCAN_BATCH_BYTES: usize = 256 << 10;

/// The report, with the same field names as the HTTP status (ADM-4).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CheckReport {
    pub store_id: String,
    pub format_version: String,
    pub last_committed_tx: u64,
    pub nodes: u64,
    pub relationships: u64,
    /// The digest recomputed by the scan.
    pub digest: String,
    /// The digest the store recorded with its last commit or checkpoint.
    pub recorded_digest: String,
    pub consistent: bool,
    pub finding_count: u64,
    pub findings: Vec<String>,
}

struct Findings {
    list: Vec<String>,
    count: u64,
}

impl Findings {
    fn add(&mut self, f: String) {
        self.count += 1;
        if self.list.len() < MAX_FINDINGS {
            self.list.push(f);
        }
    }
}

/// Opens (recovering if needed) and checks the store in `dir`, one job at a time.
pub fn check(
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    dir: &Path,
) -> Result<CheckReport, StoreError> {
    check_with_progress(fs, clock, dir, &Sequential, &mut |_, _| {})
}

/// [`check`], running the fast pass's jobs through `par` and calling `progress(done, total)`
/// as [`check_open_with_progress`] does.
pub fn check_with_progress(
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    dir: &Path,
    par: &dyn Blocking,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CheckReport, StoreError> {
    let store = Store::open(fs, clock, dir, &StoreOptions::default())?;
    let report = check_open_with_progress(&store, par, progress)?;
    store.close()?;
    Ok(report)
}

/// Checks an open store, one job at a time.
pub fn check_open(store: &Store) -> Result<CheckReport, StoreError> {
    check_open_with_progress(store, &Sequential, &mut |_, _| {})
}

/// Runs jobs one after the other, on the caller's thread: for callers without an `Env`.
#[derive(Debug)]
struct Sequential;

impl Blocking for Sequential {
    fn run(&self, job: Box<dyn FnOnce() + Send>) -> crate::io::BoxFuture<'static, ()> {
        job();
        Box::pin(std::future::ready(()))
    }
}

/// Checks an open store (ADM-3, ADM-11): the fast pass first, with its jobs run through `par`;
/// when it cannot prove the store consistent, the exact pass, whose findings make the report.
/// Calls `progress(done, total)` with the records scanned so far of all of them after every
/// batch (a progress bar for long checks); the exact pass, if it runs, starts the count again.
pub fn check_open_with_progress(
    store: &Store,
    par: &dyn Blocking,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CheckReport, StoreError> {
    check_open_ranged(store, par, fast::RANGE_BYTES, progress)
}

/// [`check_open_with_progress`] with the fast pass's jobs scanning `range_bytes` of records
/// each: small ranges let a test run many jobs over a small store.
pub fn check_open_ranged(
    store: &Store,
    par: &dyn Blocking,
    range_bytes: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CheckReport, StoreError> {
    if let Some(proven) = fast::prove(store, par, range_bytes, progress)? {
        let status = store.status();
        return Ok(CheckReport {
            store_id: status.store_id.to_string(),
            format_version: status.format.to_string(),
            last_committed_tx: status.last_committed_tx,
            nodes: proven.nodes,
            relationships: proven.rels,
            digest: proven.digest.to_hex(),
            recorded_digest: store.state.digest.to_hex(),
            consistent: true,
            finding_count: 0,
            findings: Vec::new(),
        });
    }
    exact(store, progress)
}

/// The exact pass alone (ADM-11: what the fast pass must agree with).
pub fn check_open_exact(store: &Store) -> Result<CheckReport, StoreError> {
    exact(store, &mut |_, _| {})
}

/// The exact pass: every rule checked record by record, reading neighbours, each violation a
/// finding.
fn exact(store: &Store, progress: &mut dyn FnMut(u64, u64)) -> Result<CheckReport, StoreError> {
    let status = store.status();
    let files = &store.files;
    let state = &store.state;
    let mut f = Findings {
        list: Vec::new(),
        count: 0,
    };
    // ST-15: each record file is exactly its high-water mark's records long.
    for (kind, mark, name) in [
        (RecordKind::Node, state.next_node, "next_node"),
        (RecordKind::Rel, state.next_rel, "next_rel"),
        (RecordKind::Block, state.next_block, "next_block"),
    ] {
        let len = files.file(kind).len().map_err(|e| {
            StoreError::io(format!("reading the length of {}", kind.file_name()), e)
        })?;
        if let Some(why) = length_finding(kind, kind.size(files.format) as u64, len, mark, name) {
            f.add(why);
        }
    }
    let owned = AtomicBits::new(state.next_block);
    let mut payload = Vec::new();
    let cache = Cache::new(files);
    let mut digest = Digest::ZERO;
    let mut nodes = 0u64;
    let mut rels = 0u64;
    let total = state.next_node + state.next_rel + state.next_block;
    let mut done = 0u64;
    let mut scanned = |n: u64| {
        done += n;
        progress(done, total);
    };

    scan(
        files.file(RecordKind::Node),
        RecordKind::Node.size(files.format),
        state.next_node,
        &mut scanned,
        |id, raw| {
            let rec = match NodeRecord::decode(files.format, raw) {
                Ok(r) => r,
                Err(e) => return f.add(format!("node {id}: {e}")),
            };
            if !rec.in_use {
                return;
            }
            nodes += 1;
            match read_chain(
                &cache,
                rec.payload_block,
                rec.payload_len,
                state.next_block,
                &mut |at| owned.set(at),
                &mut payload,
            ) {
                Err(why) => f.add(format!("node {id}: {why}")),
                Ok(()) => match decode_node_payload(&payload) {
                    Err(e) => f.add(format!("node {id}: {e}")),
                    Ok((labels, props)) => {
                        digest.add_node(&crate::graph::Node { id, labels, props })
                    }
                },
            }
            if rec.first_rel != NONE {
                match rel_in_chain(&cache, rec.first_rel, id, state.next_rel) {
                    Err(why) => f.add(format!(
                        "node {id}: first relationship {}: {why}",
                        rec.first_rel
                    )),
                    Ok(r) if r.links_for(id).0 != NONE => f.add(format!(
                        "node {id}: first relationship {} has a predecessor",
                        rec.first_rel
                    )),
                    Ok(_) => {}
                }
            }
        },
    )?;

    scan(
        files.file(RecordKind::Rel),
        RecordKind::Rel.size(files.format),
        state.next_rel,
        &mut scanned,
        |id, raw| {
            let rec = match RelRecord::decode(files.format, raw) {
                Ok(r) => r,
                Err(e) => return f.add(format!("relationship {id}: {e}")),
            };
            if !rec.in_use {
                return;
            }
            rels += 1;
            for n in [rec.start, rec.end] {
                let ok = n < state.next_node && cache.node(n).map(|r| r.in_use).unwrap_or(false);
                if !ok {
                    f.add(format!(
                        "relationship {id}: endpoint node {n} is not in use"
                    ));
                }
            }
            match read_chain(
                &cache,
                rec.payload_block,
                rec.payload_len,
                state.next_block,
                &mut |at| owned.set(at),
                &mut payload,
            ) {
                Err(why) => f.add(format!("relationship {id}: {why}")),
                Ok(()) => match decode_rel_payload(&payload) {
                    Err(e) => f.add(format!("relationship {id}: {e}")),
                    Ok((rel_type, props)) => digest.add_relationship(&crate::graph::Relationship {
                        id,
                        start: rec.start,
                        end: rec.end,
                        rel_type,
                        props,
                    }),
                },
            }
            for n in endpoints(rec.start, rec.end) {
                let (prev, next) = rec.links_for(n);
                if prev == NONE {
                    // The head of a chain must be what its node points at, or it is orphaned.
                    let head = cache.node(n).map(|r| r.first_rel).unwrap_or(NONE);
                    if head != id {
                        f.add(format!(
                            "relationship {id}: has no predecessor in node {n}'s chain but is not its first relationship"
                        ));
                    }
                }
                if prev != NONE {
                    match rel_in_chain(&cache, prev, n, state.next_rel) {
                    Ok(p) if p.links_for(n).1 == id => {}
                    Ok(_) => f.add(format!("relationship {id}: predecessor {prev} in node {n}'s chain does not point back")),
                    Err(why) => f.add(format!("relationship {id}: predecessor {prev}: {why}")),
                }
                }
                if next != NONE {
                    match rel_in_chain(&cache, next, n, state.next_rel) {
                    Ok(x) if x.links_for(n).0 == id => {}
                    Ok(_) => f.add(format!("relationship {id}: successor {next} in node {n}'s chain does not point back")),
                    Err(why) => f.add(format!("relationship {id}: successor {next}: {why}")),
                }
                }
            }
        },
    )?;

    scan(
        files.file(RecordKind::Block),
        RecordKind::Block.size(files.format),
        state.next_block,
        &mut scanned,
        |id, raw| match BlockRecord::decode(files.format, raw) {
            Err(e) => f.add(format!("block {id}: {e}")),
            Ok(b) if b.in_use && !owned.get(id) => {
                f.add(format!("block {id} is in use but belongs to no record"))
            }
            Ok(_) => {}
        },
    )?;

    if nodes != state.nodes {
        f.add(format!(
            "the store records {} nodes but {nodes} are in use",
            state.nodes
        ));
    }
    if rels != state.relationships {
        f.add(format!(
            "the store records {} relationships but {rels} are in use",
            state.relationships
        ));
    }
    if digest != state.digest {
        f.add(format!(
            "the recomputed digest {digest} differs from the recorded {}",
            state.digest
        ));
    }
    Ok(CheckReport {
        store_id: status.store_id.to_string(),
        format_version: status.format.to_string(),
        last_committed_tx: status.last_committed_tx,
        nodes,
        relationships: rels,
        digest: digest.to_hex(),
        recorded_digest: state.digest.to_hex(),
        consistent: f.count == 0,
        finding_count: f.count,
        findings: f.list,
    })
}

/// The finding for a record file whose length `len` is not `mark` records of `size` bytes
/// (ST-15), naming the file, both lengths and the mark they come from; `None` when it is.
fn length_finding(kind: RecordKind, size: u64, len: u64, mark: u64, name: &str) -> Option<String> {
    let want = u128::from(mark) * u128::from(size);
    let have = u128::from(len);
    if have == want {
        return None;
    }
    let (diff, side) = if have > want {
        (have - want, "past the end of the last record")
    } else {
        (want - have, "missing from the records")
    };
    Some(format!(
        "{} is {len} bytes long but should be {want} ({name} = {mark} records of {size} bytes): {diff} byte(s) {side}",
        kind.file_name()
    ))
}

/// Calls `visit` with each of the first `count` records of `file`, reading 1 MiB at a time.
fn scan(
    file: &dyn FileHandle,
    size: usize,
    count: u64,
    scanned: &mut dyn FnMut(u64),
    visit: impl FnMut(u64, &[u8]),
) -> Result<(), StoreError> {
    scan_range(file, size, 0, count, scanned, visit)
}

/// Calls `visit` with records `start .. end` of `file`, reading 1 MiB at a time; past the end
/// of the file reads as zeros.
fn scan_range(
    file: &dyn FileHandle,
    size: usize,
    start: u64,
    end: u64,
    scanned: &mut dyn FnMut(u64),
    mut visit: impl FnMut(u64, &[u8]),
) -> Result<(), StoreError> {
    let per_batch = (SCAN_BATCH_BYTES / size).max(1) as u64;
    let mut buf = vec![0u8; per_batch as usize * size];
    let mut id = start;
    while id < end {
        let n = (end - id).min(per_batch);
        let chunk = &mut buf[..n as usize * size];
        let got = file
            .read_fully_at(chunk, id * size as u64)
            .map_err(|e| StoreError::io("reading records", e))?;
        chunk[got..].fill(0);
        for (i, raw) in chunk.chunks(size).enumerate() {
            visit(id + i as u64, raw);
        }
        id += n;
        scanned(n);
    }
    Ok(())
}

/// One bit per record (the exact pass's blocks owned).
struct AtomicBits {
    words: Vec<AtomicU64>,
    len: u64,
}

impl AtomicBits {
    fn new(len: u64) -> AtomicBits {
        AtomicBits {
            words: (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            len,
        }
    }

    fn get(&self, i: u64) -> bool {
        i < self.len && self.words[(i / 64) as usize].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
    }

    /// Sets bit `i`; whether it was set already.
    fn set(&self, i: u64) -> bool {
        self.words[(i / 64) as usize].fetch_or(1 << (i % 64), Ordering::Relaxed) & (1 << (i % 64))
            != 0
    }
}

/// Reads a payload chain into `out`, claiming each of its blocks (`claim` answers whether the
/// block was claimed already); fails on a damaged chain or a block claimed twice. Blocks are
/// `0 .. next_block`.
fn read_chain(
    files: &Cache,
    first: u64,
    len: u32,
    next_block: u64,
    claim: &mut dyn FnMut(u64) -> bool,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.clear();
    let mut at = first;
    while out.len() < len as usize {
        if at == NONE || at >= next_block {
            return Err(format!("payload chain from block {first} ends early"));
        }
        if claim(at) {
            return Err(format!(
                "block {at} belongs to more than one chain (or loops)"
            ));
        }
        let b = files.block(at)?;
        if !b.in_use {
            return Err(format!("payload block {at} is not in use"));
        }
        out.extend_from_slice(&b.data);
        at = b.next;
    }
    if out.len() != len as usize || at != NONE {
        return Err(format!(
            "payload chain from block {first} does not match its length {len}"
        ));
    }
    Ok(())
}

/// Reads relationship `id`, which must be in use and have `node` as an endpoint.
fn rel_in_chain(files: &Cache, id: u64, node: u64, next_rel: u64) -> Result<RelRecord, String> {
    if id >= next_rel {
        return Err("beyond the last relationship id".into());
    }
    let r = files.rel(id)?;
    if !r.in_use {
        return Err("not in use".into());
    }
    if r.start != node && r.end != node {
        return Err(format!("does not touch node {node}"));
    }
    Ok(r)
}

/// Windows of recently read records, one set per file, so that the chains and links a scan
/// follows (mostly near each other) cost one read per window instead of one per record. The
/// windows are a fixed number of fixed-size buffers: memory does not grow with the store.
struct Cache<'a> {
    files: &'a RecordFiles,
    windows: [std::cell::RefCell<Windows>; 3],
}

/// Bytes per window; a window holds whole records.
const WINDOW_BYTES: usize = 4 << 10;
/// Windows kept per file, replaced round-robin.
const WINDOWS_PER_FILE: usize = 64;

/// The windows of one file, direct-mapped: window `w` can only sit in slot `w % WINDOWS_PER_FILE`,
/// so finding it is one comparison.
#[derive(Default)]
struct Windows {
    /// (first record id, bytes) of the window in each slot, if one is loaded.
    slots: Vec<Option<(u64, Vec<u8>)>>,
}

impl<'a> Cache<'a> {
    fn new(files: &'a RecordFiles) -> Cache<'a> {
        Cache {
            files,
            windows: Default::default(),
        }
    }

    /// Calls `decode` with the raw bytes of record `id` of `kind`.
    fn with_raw<T>(
        &self,
        kind: RecordKind,
        id: u64,
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, String> {
        let size = kind.size(self.files.format);
        let per = (WINDOW_BYTES / size).max(1) as u64;
        let slot = match kind {
            RecordKind::Node => 0,
            RecordKind::Rel => 1,
            RecordKind::Block => 2,
        };
        let mut w = self.windows[slot].borrow_mut();
        if w.slots.is_empty() {
            w.slots.resize_with(WINDOWS_PER_FILE, || None);
        }
        let first = id - id % per;
        let at = ((first / per) % WINDOWS_PER_FILE as u64) as usize;
        if !matches!(&w.slots[at], Some((f, _)) if *f == first) {
            let mut buf = match w.slots[at].take() {
                Some((_, buf)) => buf,
                None => vec![0u8; per as usize * size],
            };
            // A damaged id can lie beyond any offset: it reads as past the end.
            let got = match first.checked_mul(size as u64) {
                Some(offset) => self
                    .files
                    .file(kind)
                    .read_fully_at(&mut buf, offset)
                    .map_err(|e| format!("reading {}: {e}", kind.file_name()))?,
                None => 0,
            };
            // Past the end of the file reads as zeros: "not in use" in every format (ST-7).
            buf[got..].fill(0);
            w.slots[at] = Some((first, buf));
        }
        let Some((_, buf)) = &w.slots[at] else {
            unreachable!("the slot was just filled")
        };
        let off = (id - first) as usize * size;
        decode(&buf[off..off + size])
    }

    fn node(&self, id: u64) -> Result<NodeRecord, String> {
        let format = self.files.format;
        self.with_raw(RecordKind::Node, id, |raw| {
            NodeRecord::decode(format, raw).map_err(|e| format!("node record {id}: {e}"))
        })
    }

    fn rel(&self, id: u64) -> Result<RelRecord, String> {
        let format = self.files.format;
        self.with_raw(RecordKind::Rel, id, |raw| {
            RelRecord::decode(format, raw).map_err(|e| format!("relationship record {id}: {e}"))
        })
    }

    fn block(&self, id: u64) -> Result<BlockRecord, String> {
        let format = self.files.format;
        self.with_raw(RecordKind::Block, id, |raw| {
            BlockRecord::decode(format, raw).map_err(|e| format!("block record {id}: {e}"))
        })
    }
}
