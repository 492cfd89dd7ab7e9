//! `neo4j-admin generate`: builds a store offline at disk speed (ADM-2).
//!
//! Owns: the shape of generated graphs and the bulk writer.
//! Must not touch: the commit path. Records are written straight into the record files in id
//! order through large buffered writes, then synced; the metadata, written last, is the commit
//! point (ST-1). Memory stays constant whatever the size: every relationship-chain pointer is
//! computed from a formula, nothing is collected.
//!
//! The graph: node `i` has labels `Person` (and `Even` for even ids) and properties
//! `id = i` and, if `property_bytes > 0`, `name` = a seeded random ASCII string of that length.
//! Relationship `i*K + k` goes from node `i` to node `(i + offset[k]) mod N`, where the K
//! offsets are drawn from the seed in `1..N`; its type is `KNOWS` (k even) or `FOLLOWS`, with
//! property `weight = k`. Node `n`'s chain lists its K outgoing relationships in order, then its
//! K incoming ones, so every pointer is a closed-form expression.

use std::path::Path;
use std::sync::Arc;

use crate::digest::Digest;
use crate::graph::{Node, Properties, Relationship, Value};
use crate::io::{Clock, FileHandle, Fs, OpenMode};
use crate::store::format::{
    encode_node_payload, encode_rel_payload, BlockRecord, FormatVersion, NodeRecord, RecordKind,
    RelRecord, BLOCK_DATA, NONE,
};
use crate::store::log::TxState;
use crate::store::meta::StoreId;
use crate::store::{initialize, StoreError};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateSpec {
    pub nodes: u64,
    pub relationships_per_node: u64,
    pub property_bytes: usize,
    pub seed: u64,
    pub format: FormatVersion,
}

/// What was generated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    pub store_id: StoreId,
    pub nodes: u64,
    pub relationships: u64,
    pub digest: Digest,
    pub bytes: u64,
}

/// A sequential writer with a large buffer over a record file.
struct BulkWriter {
    file: Box<dyn FileHandle>,
    buf: Vec<u8>,
    offset: u64,
}

const BULK_BUFFER: usize = 4 << 20;

impl BulkWriter {
    fn new(file: Box<dyn FileHandle>) -> BulkWriter {
        BulkWriter {
            file,
            buf: Vec::with_capacity(BULK_BUFFER),
            offset: 0,
        }
    }
    fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= BULK_BUFFER {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.write_all_at(&self.buf, self.offset)?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
    fn finish(mut self) -> std::io::Result<u64> {
        self.flush()?;
        self.file.sync()?;
        Ok(self.offset)
    }
}

/// SplitMix64: a tiny seeded generator, so generated stores are the same on every machine.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Generates a store in `dir`, which must be missing or empty.
pub fn generate(
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    dir: &Path,
    spec: &GenerateSpec,
    random: u64,
) -> Result<Generated, StoreError> {
    let _lock = crate::store::lock_new_store_dir(&*fs, dir)?;

    let n = spec.nodes;
    let k = if n > 1 {
        spec.relationships_per_node
    } else {
        0
    };
    let offsets: Vec<u64> = (0..k)
        .map(|j| 1 + splitmix(spec.seed ^ (j << 32) ^ 0x5EED) % (n - 1))
        .collect();
    let format = spec.format;
    let open = |kind: RecordKind| {
        fs.open(&dir.join(kind.file_name()), OpenMode::CreateTruncate)
            .map_err(|e| StoreError::io(format!("creating {}", kind.file_name()), e))
    };
    let mut nodes_out = BulkWriter::new(open(RecordKind::Node)?);
    let mut rels_out = BulkWriter::new(open(RecordKind::Rel)?);
    let mut blocks_out = BulkWriter::new(open(RecordKind::Block)?);
    let werr = |e| StoreError::io("writing the generated store", e);
    let mut digest = Digest::ZERO;
    let mut next_block = 0u64;

    // Writes a payload as consecutive blocks; returns the first block id.
    let mut write_payload = |payload: &[u8], out: &mut BulkWriter| -> Result<u64, StoreError> {
        let first = next_block;
        let chunks = payload.len().div_ceil(BLOCK_DATA);
        for (i, chunk) in payload.chunks(BLOCK_DATA).enumerate() {
            let next = if i + 1 < chunks { next_block + 1 } else { NONE };
            let block = BlockRecord {
                in_use: true,
                next,
                data: chunk.to_vec(),
            };
            out.push(&block.encode(format)).map_err(werr)?;
            next_block += 1;
        }
        Ok(if chunks == 0 { NONE } else { first })
    };

    for i in 0..n {
        let node = generated_node(i, spec);
        digest.add_node(&node);
        let payload = encode_node_payload(&node.labels, &node.props);
        let block = write_payload(&payload, &mut blocks_out)?;
        let rec = NodeRecord {
            in_use: true,
            first_rel: if k > 0 { i * k } else { NONE },
            payload_block: block,
            payload_len: payload.len() as u32,
        };
        nodes_out.push(&rec.encode(format)).map_err(werr)?;
    }
    let in_rel = |node: u64, j: u64| ((node + n - offsets[j as usize]) % n) * k + j;
    for start in 0..n {
        for j in 0..k {
            let id = start * k + j;
            let end = (start + offsets[j as usize]) % n;
            let rel = generated_rel(id, start, end, j);
            digest.add_relationship(&rel);
            let payload = encode_rel_payload(&rel.rel_type, &rel.props);
            let block = write_payload(&payload, &mut blocks_out)?;
            let rec = RelRecord {
                in_use: true,
                start,
                end,
                start_prev: if j == 0 { NONE } else { id - 1 },
                start_next: if j + 1 < k { id + 1 } else { in_rel(start, 0) },
                end_prev: if j == 0 {
                    end * k + k - 1
                } else {
                    in_rel(end, j - 1)
                },
                end_next: if j + 1 < k { in_rel(end, j + 1) } else { NONE },
                payload_block: block,
                payload_len: payload.len() as u32,
            };
            rels_out.push(&rec.encode(format)).map_err(werr)?;
        }
    }
    let bytes = nodes_out.finish().map_err(werr)?
        + rels_out.finish().map_err(werr)?
        + blocks_out.finish().map_err(werr)?;
    let state = TxState {
        digest,
        nodes: n,
        relationships: n * k,
        next_node: n,
        next_rel: n * k,
        next_block,
    };
    let store_id = StoreId {
        created_millis: clock.now_millis(),
        random,
    };
    initialize(&*fs, dir, store_id, format, state, 0)?;
    Ok(Generated {
        store_id,
        nodes: n,
        relationships: n * k,
        digest,
        bytes,
    })
}

fn generated_node(i: u64, spec: &GenerateSpec) -> Node {
    let mut labels = vec!["Person".to_string()];
    if i.is_multiple_of(2) {
        labels.insert(0, "Even".to_string());
    }
    let mut props = Properties::new();
    props.insert("id".into(), Value::Int(i as i64));
    if spec.property_bytes > 0 {
        let mut s = String::with_capacity(spec.property_bytes);
        let mut x = splitmix(spec.seed ^ i.rotate_left(17));
        while s.len() < spec.property_bytes {
            x = splitmix(x);
            for b in x.to_le_bytes() {
                if s.len() < spec.property_bytes {
                    s.push((b'a' + b % 26) as char);
                }
            }
        }
        props.insert("name".into(), Value::String(s));
    }
    Node {
        id: i,
        labels,
        props,
    }
}

fn generated_rel(id: u64, start: u64, end: u64, j: u64) -> Relationship {
    let mut props = Properties::new();
    props.insert("weight".into(), Value::Int(j as i64));
    Relationship {
        id,
        start,
        end,
        rel_type: if j.is_multiple_of(2) {
            "KNOWS"
        } else {
            "FOLLOWS"
        }
        .to_string(),
        props,
    }
}
