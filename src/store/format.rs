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
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn seal(format: FormatVersion, mut out: Vec<u8>) -> Vec<u8> {
    if format.has_record_crc() {
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out
}

/// Verifies the trailing CRC (format 2) and returns the body.
fn open_sealed(format: FormatVersion, bytes: &[u8], body: usize) -> Result<&[u8], RecordError> {
    if format.has_record_crc() {
        let stored = get_u32(bytes, body);
        let computed = crc32c::crc32c(&bytes[..body]);
        if stored != computed {
            return Err(RecordError::Checksum { stored, computed });
        }
    }
    Ok(&bytes[..body])
}

fn flag(b: u8) -> Result<bool, RecordError> {
    match b {
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
        out.push(self.in_use as u8);
        put_u64(&mut out, self.first_rel);
        put_u64(&mut out, self.payload_block);
        out.extend_from_slice(&self.payload_len.to_le_bytes());
        seal(format, out)
    }

    pub fn decode(format: FormatVersion, bytes: &[u8]) -> Result<NodeRecord, RecordError> {
        if all_zero(bytes) {
            return Ok(NodeRecord::unused());
        }
        let b = open_sealed(format, bytes, NODE_BODY)?;
        Ok(NodeRecord {
            in_use: flag(b[0])?,
            first_rel: get_u64(b, 1),
            payload_block: get_u64(b, 9),
            payload_len: get_u32(b, 17),
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
        out.push(self.in_use as u8);
        for v in [
            self.start,
            self.end,
            self.start_prev,
            self.start_next,
            self.end_prev,
            self.end_next,
            self.payload_block,
        ] {
            put_u64(&mut out, v);
        }
        put_u64(&mut out, 0); // reserved for a future field (ST-6); always zero
        out.extend_from_slice(&self.payload_len.to_le_bytes());
        seal(format, out)
    }

    pub fn decode(format: FormatVersion, bytes: &[u8]) -> Result<RelRecord, RecordError> {
        if all_zero(bytes) {
            return Ok(RelRecord::unused());
        }
        let b = open_sealed(format, bytes, REL_BODY)?;
        Ok(RelRecord {
            in_use: flag(b[0])?,
            start: get_u64(b, 1),
            end: get_u64(b, 9),
            start_prev: get_u64(b, 17),
            start_next: get_u64(b, 25),
            end_prev: get_u64(b, 33),
            end_next: get_u64(b, 41),
            payload_block: get_u64(b, 49),
            payload_len: get_u32(b, 65),
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
        out.push(self.in_use as u8);
        put_u64(&mut out, self.next);
        out.extend_from_slice(&(self.data.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.data);
        out.resize(BLOCK_BODY, 0);
        seal(format, out)
    }

    pub fn decode(format: FormatVersion, bytes: &[u8]) -> Result<BlockRecord, RecordError> {
        if all_zero(bytes) {
            return Ok(BlockRecord::unused());
        }
        let b = open_sealed(format, bytes, BLOCK_BODY)?;
        let len = u16::from_le_bytes([b[9], b[10]]) as usize;
        if len > BLOCK_DATA {
            return Err(RecordError::BlockLength(len));
        }
        Ok(BlockRecord {
            in_use: flag(b[0])?,
            next: get_u64(b, 1),
            data: b[11..11 + len].to_vec(),
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
pub struct PayloadError(pub &'static str);

/// A node's payload: its labels then its properties.
pub fn encode_node_payload(labels: &[String], props: &Properties) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
    for l in labels {
        put_str(&mut out, l);
    }
    put_props(&mut out, props);
    out
}

/// A relationship's payload: its type then its properties.
pub fn encode_rel_payload(rel_type: &str, props: &Properties) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, rel_type);
    put_props(&mut out, props);
    out
}

pub fn decode_node_payload(b: &[u8]) -> Result<(Vec<String>, Properties), PayloadError> {
    let mut r = Reader { b, at: 0 };
    let n = r.u32()? as usize;
    let mut labels = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        labels.push(r.string()?);
    }
    let props = r.props()?;
    r.finish()?;
    Ok((labels, props))
}

pub fn decode_rel_payload(b: &[u8]) -> Result<(String, Properties), PayloadError> {
    let mut r = Reader { b, at: 0 };
    let t = r.string()?;
    let props = r.props()?;
    r.finish()?;
    Ok((t, props))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_props(out: &mut Vec<u8>, props: &Properties) {
    out.extend_from_slice(&(props.len() as u32).to_le_bytes());
    for (k, v) in props {
        put_str(out, k);
        put_value(out, v);
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => {
            out.push(1);
            out.push(*b as u8);
        }
        Value::Int(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(3);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::String(s) => {
            out.push(4);
            put_str(out, s);
        }
        Value::List(items) => {
            out.push(5);
            out.extend_from_slice(&(items.len() as u32).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], PayloadError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(PayloadError("truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, PayloadError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, PayloadError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, PayloadError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn string(&mut self) -> Result<String, PayloadError> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| PayloadError("string is not UTF-8"))
    }
    fn props(&mut self) -> Result<Properties, PayloadError> {
        let n = self.u32()?;
        let mut props = Properties::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.value(0)?;
            props.insert(k, v);
        }
        Ok(props)
    }
    fn value(&mut self, depth: u8) -> Result<Value, PayloadError> {
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(match self.u8()? {
                0 => false,
                1 => true,
                _ => return Err(PayloadError("bad boolean")),
            }),
            2 => Value::Int(self.u64()? as i64),
            3 => Value::Float(f64::from_bits(self.u64()?)),
            4 => Value::String(self.string()?),
            5 if depth == 0 => {
                let n = self.u32()? as usize;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(1)?);
                }
                Value::List(items)
            }
            _ => return Err(PayloadError("bad value tag")),
        })
    }
    fn finish(&self) -> Result<(), PayloadError> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(PayloadError("trailing bytes"))
        }
    }
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
