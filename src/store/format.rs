//! Record layouts of the two supported on-disk formats, byte for byte as `spec/store.md` says.
//!
//! Owns: encoding and decoding of node, relationship and dynamic-block records, the format
//! versions, and the payload codec (labels, types and properties inside dynamic blocks).
//! Must not touch: files. Callers hand in and get back byte slices.
//!
//! Format 2 (current) is format 1 plus a CRC32C of the record's other bytes, appended (ST-5).
//! Field order and sizes are otherwise identical, so upgrading is a per-record transform and
//! record ids never move.

use std::fmt;

use bytes::BufMut;

use crate::codec::{put_str_u32, DecodeError, Reader};
use crate::graph::{Properties, Value};

/// Marks "no record" in a pointer field.
pub const NONE: u64 = u64::MAX;

/// Bytes of payload one dynamic block carries, in both formats (ST-6).
pub const BLOCK_DATA: usize = 120;

/// A supported on-disk format (ST-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FormatVersion(pub u32);

impl FormatVersion {
    /// The previous format: records without checksums.
    pub const V1: FormatVersion = FormatVersion(1);
    /// The current format: every record ends with a CRC32C.
    pub const V2: FormatVersion = FormatVersion(2);
    pub const CURRENT: FormatVersion = FormatVersion::V2;
    pub const SUPPORTED: [FormatVersion; 2] = [FormatVersion::V1, FormatVersion::V2];

    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    /// Whether records carry a trailing CRC32C.
    pub fn has_record_crc(self) -> bool {
        self.0 >= 2
    }

    fn crc_len(self) -> usize {
        if self.has_record_crc() {
            4
        } else {
            0
        }
    }

    pub fn node_record_size(self) -> usize {
        NODE_BODY + self.crc_len()
    }
    pub fn rel_record_size(self) -> usize {
        REL_BODY + self.crc_len()
    }
    pub fn block_record_size(self) -> usize {
        BLOCK_BODY + self.crc_len()
    }

    /// Parses the user-facing form, `"1"` or `"2"`.
    pub fn parse(s: &str) -> Option<FormatVersion> {
        let v = FormatVersion(s.trim().parse().ok()?);
        v.is_supported().then_some(v)
    }
}

impl fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

const NODE_BODY: usize = 1 + 8 + 8 + 4;
const REL_BODY: usize = 1 + 8 * 8 + 4;
const BLOCK_BODY: usize = 1 + 8 + 2 + BLOCK_DATA;

/// A node record (ST-6): whether it is in use, the head of its relationship chain and where
/// its payload (labels and properties) lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NodeRecord {
    pub in_use: bool,
    pub first_rel: u64,
    pub payload_block: u64,
    pub payload_len: u32,
}

/// A relationship record (ST-6): endpoints, its links in the start node's and end node's
/// doubly linked relationship chains, and its payload (type and properties). A self-loop is
/// linked once, through the `start_*` pointers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RelRecord {
    pub in_use: bool,
    pub start: u64,
    pub end: u64,
    pub start_prev: u64,
    pub start_next: u64,
    pub end_prev: u64,
    pub end_next: u64,
    pub payload_block: u64,
    pub payload_len: u32,
}

/// A dynamic block (ST-6): a fixed-size piece of a payload chain.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BlockRecord {
    pub in_use: bool,
    pub next: u64,
    /// At most [`BLOCK_DATA`] bytes.
    pub data: Vec<u8>,
}

/// The distinct endpoints of a relationship from `start` to `end`: one for a self-loop, which
/// sits once in its node's chain (ST-6).
pub fn endpoints(start: u64, end: u64) -> impl Iterator<Item = u64> {
    std::iter::once(start).chain((end != start).then_some(end))
}

impl NodeRecord {
    pub fn unused() -> NodeRecord {
        NodeRecord {
            in_use: false,
            first_rel: NONE,
            payload_block: NONE,
            payload_len: 0,
        }
    }
}

impl RelRecord {
    /// The pointer pair that links this relationship into `node`'s chain.
    pub fn links_for(&self, node: u64) -> (u64, u64) {
        if self.start == node {
            (self.start_prev, self.start_next)
        } else {
            (self.end_prev, self.end_next)
        }
    }
    pub fn set_prev_for(&mut self, node: u64, prev: u64) {
        if self.start == node {
            self.start_prev = prev;
        } else {
            self.end_prev = prev;
        }
    }
    pub fn set_next_for(&mut self, node: u64, next: u64) {
        if self.start == node {
            self.start_next = next;
        } else {
            self.end_next = next;
        }
    }
}

/// Why a record's bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("invalid in-use byte {0:#04x}")]
    Flags(u8),
    #[error("block data length {0} exceeds {BLOCK_DATA}")]
    BlockLength(usize),
    #[error("{0}")]
    Decode(#[from] DecodeError),
}

fn seal(format: FormatVersion, mut out: Vec<u8>) -> Vec<u8> {
    if format.has_record_crc() {
        let crc = crc32c::crc32c(&out);
        out.put_u32_le(crc);
    }
    out
}

/// Verifies the trailing CRC (format 2) of a record of `body` bytes plus its CRC, and returns a
/// reader over the body.
fn open_sealed(
    format: FormatVersion,
    bytes: &[u8],
    body: usize,
) -> Result<Reader<'_>, RecordError> {
    let mut r = Reader::new(bytes);
    let body = r.bytes(body)?;
    if format.has_record_crc() {
        let stored = r.u32()?;
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(RecordError::Checksum { stored, computed });
        }
    }
    r.finish()?;
    Ok(Reader::new(body))
}

/// The in-use byte: 0 or 1.
fn in_use(r: &mut Reader<'_>) -> Result<bool, RecordError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(RecordError::Flags(other)),
    }
}

/// True when every byte is zero: a record slot past a crash-extended end of file, or never
/// written. Reads as "not in use" in both formats (ST-7).
fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

impl NodeRecord {
    pub fn encode(&self, format: FormatVersion) -> Vec<u8> {
        let mut out = Vec::with_capacity(format.node_record_size());
        out.put_u8(self.in_use as u8);
        out.put_u64_le(self.first_rel);
        out.put_u64_le(self.payload_block);
        out.put_u32_le(self.payload_len);
        seal(format, out)
    }

    pub fn decode(format: FormatVersion, bytes: &[u8]) -> Result<NodeRecord, RecordError> {
        if all_zero(bytes) {
            return Ok(NodeRecord::unused());
        }
        let mut r = open_sealed(format, bytes, NODE_BODY)?;
        Ok(NodeRecord {
            in_use: in_use(&mut r)?,
            first_rel: r.u64()?,
            payload_block: r.u64()?,
            payload_len: r.u32()?,
        })
    }
}

impl RelRecord {
    pub fn unused() -> RelRecord {
        RelRecord {
            in_use: false,
            start: NONE,
            end: NONE,
            start_prev: NONE,
            start_next: NONE,
            end_prev: NONE,
            end_next: NONE,
            payload_block: NONE,
            payload_len: 0,
        }
    }

    pub fn encode(&self, format: FormatVersion) -> Vec<u8> {
        let mut out = Vec::with_capacity(format.rel_record_size());
        out.put_u8(self.in_use as u8);
        for v in [
            self.start,
            self.end,
            self.start_prev,
            self.start_next,
            self.end_prev,
            self.end_next,
            self.payload_block,
        ] {
            out.put_u64_le(v);
        }
        out.put_u64_le(0); // reserved for a future field (ST-6); always zero
        out.put_u32_le(self.payload_len);
        seal(format, out)
    }

    pub fn decode(format: FormatVersion, bytes: &[u8]) -> Result<RelRecord, RecordError> {
        if all_zero(bytes) {
            return Ok(RelRecord::unused());
        }
        let mut r = open_sealed(format, bytes, REL_BODY)?;
        let in_use = in_use(&mut r)?;
        let [start, end, start_prev, start_next, end_prev, end_next, payload_block, _reserved] =
            [(); 8].map(|()| r.u64());
        Ok(RelRecord {
            in_use,
            start: start?,
            end: end?,
            start_prev: start_prev?,
            start_next: start_next?,
            end_prev: end_prev?,
            end_next: end_next?,
            payload_block: payload_block?,
            payload_len: r.u32()?,
        })
    }
}

impl BlockRecord {
    pub fn unused() -> BlockRecord {
        BlockRecord {
            in_use: false,
            next: NONE,
            data: Vec::new(),
        }
    }

    pub fn encode(&self, format: FormatVersion) -> Vec<u8> {
        debug_assert!(self.data.len() <= BLOCK_DATA);
        let mut out = Vec::with_capacity(format.block_record_size());
        out.put_u8(self.in_use as u8);
        out.put_u64_le(self.next);
        out.put_u16_le(self.data.len() as u16);
        out.put_slice(&self.data);
        out.resize(BLOCK_BODY, 0);
        seal(format, out)
    }

    pub fn decode(format: FormatVersion, bytes: &[u8]) -> Result<BlockRecord, RecordError> {
        if all_zero(bytes) {
            return Ok(BlockRecord::unused());
        }
        let mut r = open_sealed(format, bytes, BLOCK_BODY)?;
        let in_use = in_use(&mut r)?;
        let next = r.u64()?;
        let len = r.u16()? as usize;
        if len > BLOCK_DATA {
            return Err(RecordError::BlockLength(len));
        }
        Ok(BlockRecord {
            in_use,
            next,
            data: r.bytes(BLOCK_DATA)?[..len].to_vec(),
        })
    }
}

/// Re-encodes one record from `from` to `to` (the upgrade transform). Verifies the source CRC.
pub fn convert_record(
    kind: RecordKind,
    from: FormatVersion,
    to: FormatVersion,
    bytes: &[u8],
) -> Result<Vec<u8>, RecordError> {
    if all_zero(bytes) {
        return Ok(vec![0; kind.size(to)]);
    }
    Ok(match kind {
        RecordKind::Node => NodeRecord::decode(from, bytes)?.encode(to),
        RecordKind::Rel => RelRecord::decode(from, bytes)?.encode(to),
        RecordKind::Block => BlockRecord::decode(from, bytes)?.encode(to),
    })
}

/// The three record files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    Node,
    Rel,
    Block,
}

impl RecordKind {
    pub const ALL: [RecordKind; 3] = [RecordKind::Node, RecordKind::Rel, RecordKind::Block];

    pub fn size(self, format: FormatVersion) -> usize {
        match self {
            RecordKind::Node => format.node_record_size(),
            RecordKind::Rel => format.rel_record_size(),
            RecordKind::Block => format.block_record_size(),
        }
    }

    /// The record file's name inside a store directory (ST-1).
    pub fn file_name(self) -> &'static str {
        match self {
            RecordKind::Node => "neostore.nodestore.db",
            RecordKind::Rel => "neostore.relationshipstore.db",
            RecordKind::Block => "neostore.propertystore.db",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Payloads: what a chain of dynamic blocks carries (ST-8). Little-endian, length-prefixed.

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed payload: {0}")]
pub struct PayloadError(#[from] pub DecodeError);

/// A node's payload: its labels then its properties.
pub fn encode_node_payload(labels: &[String], props: &Properties) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u32_le(labels.len() as u32);
    for l in labels {
        put_str_u32(&mut out, l);
    }
    put_props(&mut out, props);
    out
}

/// A relationship's payload: its type then its properties.
pub fn encode_rel_payload(rel_type: &str, props: &Properties) -> Vec<u8> {
    let mut out = Vec::new();
    put_str_u32(&mut out, rel_type);
    put_props(&mut out, props);
    out
}

pub fn decode_node_payload(b: &[u8]) -> Result<(Vec<String>, Properties), PayloadError> {
    let mut r = Reader::new(b);
    let n = r.u32()? as usize;
    // A label takes at least its 4-byte length: never reserve more than the bytes could hold.
    let mut labels = Vec::with_capacity(n.min(r.remaining() / 4));
    for _ in 0..n {
        labels.push(r.str_u32()?);
    }
    let props = read_props(&mut r)?;
    r.finish()?;
    Ok((labels, props))
}

pub fn decode_rel_payload(b: &[u8]) -> Result<(String, Properties), PayloadError> {
    let mut r = Reader::new(b);
    let t = r.str_u32()?;
    let props = read_props(&mut r)?;
    r.finish()?;
    Ok((t, props))
}

fn put_props(out: &mut Vec<u8>, props: &Properties) {
    out.put_u32_le(props.len() as u32);
    for (k, v) in props {
        put_str_u32(out, k);
        put_value(out, v);
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.put_u8(0),
        Value::Bool(b) => {
            out.put_u8(1);
            out.put_u8(*b as u8);
        }
        Value::Int(i) => {
            out.put_u8(2);
            out.put_i64_le(*i);
        }
        Value::Float(f) => {
            out.put_u8(3);
            out.put_u64_le(f.to_bits());
        }
        Value::String(s) => {
            out.put_u8(4);
            put_str_u32(out, s);
        }
        Value::List(items) => {
            out.put_u8(5);
            out.put_u32_le(items.len() as u32);
            for item in items {
                put_value(out, item);
            }
        }
    }
}

fn read_props(r: &mut Reader<'_>) -> Result<Properties, DecodeError> {
    let n = r.u32()?;
    let mut props = Properties::new();
    for _ in 0..n {
        let k = r.str_u32()?;
        let v = read_value(r, 0)?;
        props.insert(k, v);
    }
    Ok(props)
}

/// A value; lists nest one level only (ST-8).
fn read_value(r: &mut Reader<'_>, depth: u8) -> Result<Value, DecodeError> {
    Ok(match r.u8()? {
        0 => Value::Null,
        1 => Value::Bool(r.flag("bad boolean")?),
        2 => Value::Int(r.u64()? as i64),
        3 => Value::Float(f64::from_bits(r.u64()?)),
        4 => Value::String(r.str_u32()?),
        5 if depth == 0 => {
            let n = r.u32()? as usize;
            // An item takes at least its tag byte.
            let mut items = Vec::with_capacity(n.min(r.remaining()));
            for _ in 0..n {
                items.push(read_value(r, 1)?);
            }
            Value::List(items)
        }
        _ => return Err(DecodeError::Invalid("bad value tag")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // ST-5: format 2 detects a flipped bit; format 1 has no checksum to check.
    #[test]
    fn st_5_crc_detects_corruption_only_in_current_format() {
        let rec = NodeRecord {
            in_use: true,
            first_rel: 3,
            payload_block: 9,
            payload_len: 40,
        };
        let mut v2 = rec.encode(FormatVersion::V2);
        assert_eq!(v2.len(), FormatVersion::V2.node_record_size());
        v2[5] ^= 0x10;
        assert!(matches!(
            NodeRecord::decode(FormatVersion::V2, &v2),
            Err(RecordError::Checksum { .. })
        ));
        let v1 = rec.encode(FormatVersion::V1);
        assert_eq!(v1.len() + 4, v2.len());
        assert_eq!(NodeRecord::decode(FormatVersion::V1, &v1), Ok(rec));
    }

    // ST-6, ST-7: records round-trip; an all-zero slot reads as unused.
    #[test]
    fn st_6_records_round_trip_in_both_formats() {
        for f in FormatVersion::SUPPORTED {
            let r = RelRecord {
                in_use: true,
                start: 1,
                end: 2,
                start_prev: NONE,
                start_next: 5,
                end_prev: 6,
                end_next: NONE,
                payload_block: 8,
                payload_len: 12,
            };
            assert_eq!(RelRecord::decode(f, &r.encode(f)), Ok(r));
            let b = BlockRecord {
                in_use: true,
                next: 4,
                data: vec![7; 100],
            };
            assert_eq!(BlockRecord::decode(f, &b.encode(f)), Ok(b.clone()));
            assert_eq!(
                NodeRecord::decode(f, &vec![0; f.node_record_size()]),
                Ok(NodeRecord::unused()),
                "ST-7: an all-zero slot reads as not in use"
            );
            let conv = convert_record(
                RecordKind::Block,
                FormatVersion::V1,
                f,
                &b.encode(FormatVersion::V1),
            );
            assert_eq!(conv.map(|c| BlockRecord::decode(f, &c)), Ok(Ok(b)));
        }
    }

    // ST-8: payloads round-trip, and malformed ones are rejected, not misread.
    #[test]
    fn st_8_payloads_round_trip_and_reject_garbage() {
        let props: Properties = [
            (
                "a".to_string(),
                Value::List(vec![Value::Int(1), Value::Null]),
            ),
            ("b".to_string(), Value::Float(1.5)),
        ]
        .into_iter()
        .collect();
        let p = encode_node_payload(&["L".into()], &props);
        assert_eq!(
            decode_node_payload(&p),
            Ok((vec!["L".to_string()], props.clone()))
        );
        assert!(decode_node_payload(&p[..p.len() - 1]).is_err());
        let r = encode_rel_payload("T", &props);
        assert_eq!(decode_rel_payload(&r), Ok(("T".to_string(), props)));
    }
}
