//! The content digest: a multiset hash of the graph, independent of the on-disk format.
//!
//! Owns: the canonical encoding of nodes and relationships, the element hash (SHA-256) and the
//! 256-bit modular sum. Specified byte for byte in `spec/digest.md` (rules DG-1 .. DG-8), with
//! test vectors that `tests` below check.
//! Must not touch: storage or I/O. The store keeps the running digest; this module only does
//! arithmetic, so adding and removing an element are exact inverses.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::graph::{Node, Properties, Relationship, Value};

/// A 256-bit multiset hash: the sum modulo 2^256 of the element hashes, each read as a
/// big-endian integer (DG-1). The empty graph's digest is zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub const ZERO: Digest = Digest([0; 32]);

    /// Adds one element hash (DG-1).
    pub fn add(&mut self, element: &[u8; 32]) {
        // Four 64-bit limbs, least significant last (big-endian bytes).
        let mut carry = false;
        for i in (0..4).rev() {
            let at = i * 8..i * 8 + 8;
            let a = u64::from_be_bytes(self.0[at.clone()].try_into().expect("8 bytes"));
            let b = u64::from_be_bytes(element[at.clone()].try_into().expect("8 bytes"));
            let (sum, c1) = a.overflowing_add(b);
            let (sum, c2) = sum.overflowing_add(carry as u64);
            self.0[at].copy_from_slice(&sum.to_be_bytes());
            carry = c1 || c2;
        }
    }

    /// Removes one element hash: adds its two's complement, the exact inverse of [`Digest::add`].
    pub fn remove(&mut self, element: &[u8; 32]) {
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let diff = self.0[i] as i16 - element[i] as i16 - borrow;
            self.0[i] = diff.rem_euclid(256) as u8;
            borrow = if diff < 0 { 1 } else { 0 };
        }
    }

    pub fn add_node(&mut self, node: &Node) {
        self.add(&node_hash(node));
    }
    pub fn remove_node(&mut self, node: &Node) {
        self.remove(&node_hash(node));
    }
    pub fn add_relationship(&mut self, rel: &Relationship) {
        self.add(&relationship_hash(rel));
    }
    pub fn remove_relationship(&mut self, rel: &Relationship) {
        self.remove(&relationship_hash(rel));
    }

    /// Lower-case hex, 64 characters, most significant byte first (DG-8).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses the form [`Digest::to_hex`] prints.
    pub fn from_hex(s: &str) -> Option<Digest> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Digest(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// SHA-256 of the node's canonical encoding (DG-2), hashed as it is encoded: no buffer.
pub fn node_hash(node: &Node) -> [u8; 32] {
    let mut hasher = Sha256::new();
    put_node(&mut hasher, node);
    hasher.finalize().into()
}

/// SHA-256 of the relationship's canonical encoding (DG-3), hashed as it is encoded.
pub fn relationship_hash(rel: &Relationship) -> [u8; 32] {
    let mut hasher = Sha256::new();
    put_relationship(&mut hasher, rel);
    hasher.finalize().into()
}

/// Where a canonical encoding goes: a buffer, or straight into a hash.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// Canonical node encoding (DG-2): `0x4E 'N'`, id (u64 BE), label count (u32 BE), each label as
/// a string, sorted by bytes with duplicates removed, then the properties (DG-4).
pub fn encode_node(node: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    put_node(&mut out, node);
    out
}

fn put_node(out: &mut impl Sink, node: &Node) {
    out.put(b"N");
    out.put(&node.id.to_be_bytes());
    // Labels are stored sorted and distinct; only others need sorting (and a buffer).
    if node.labels.windows(2).all(|w| w[0] < w[1]) {
        out.put(&(node.labels.len() as u32).to_be_bytes());
        for label in &node.labels {
            put_str(out, label);
        }
    } else {
        let mut labels: Vec<&str> = node.labels.iter().map(String::as_str).collect();
        labels.sort_unstable();
        labels.dedup();
        out.put(&(labels.len() as u32).to_be_bytes());
        for label in labels {
            put_str(out, label);
        }
    }
    put_props(out, &node.props);
}

/// Canonical relationship encoding (DG-3): `0x52 'R'`, id, start, end (u64 BE each), the type as
/// a string, then the properties (DG-4).
pub fn encode_relationship(rel: &Relationship) -> Vec<u8> {
    let mut out = Vec::new();
    put_relationship(&mut out, rel);
    out
}

fn put_relationship(out: &mut impl Sink, rel: &Relationship) {
    out.put(b"R");
    out.put(&rel.id.to_be_bytes());
    out.put(&rel.start.to_be_bytes());
    out.put(&rel.end.to_be_bytes());
    put_str(out, &rel.rel_type);
    put_props(out, &rel.props);
}

/// Properties (DG-4): count (u32 BE), then key string and value per entry, keys sorted by bytes.
/// `Properties` is a BTreeMap over `String`, whose order is byte order.
fn put_props(out: &mut impl Sink, props: &Properties) {
    out.put(&(props.len() as u32).to_be_bytes());
    for (key, value) in props {
        put_str(out, key);
        put_value(out, value);
    }
}

/// Strings (DG-5): byte length (u32 BE) then the UTF-8 bytes.
fn put_str(out: &mut impl Sink, s: &str) {
    out.put(&(s.len() as u32).to_be_bytes());
    out.put(s.as_bytes());
}

/// Values (DG-6, DG-7): a tag byte then the payload.
fn put_value(out: &mut impl Sink, value: &Value) {
    match value {
        Value::Null => out.put(&[0]),
        Value::Bool(b) => out.put(&[1, *b as u8]),
        Value::Int(i) => {
            out.put(&[2]);
            out.put(&i.to_be_bytes());
        }
        Value::Float(f) => {
            out.put(&[3]);
            out.put(&canonical_f64_bits(*f).to_be_bytes());
        }
        Value::String(s) => {
            out.put(&[4]);
            put_str(out, s);
        }
        Value::List(items) => {
            out.put(&[5]);
            out.put(&(items.len() as u32).to_be_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

/// The bits hashed for an f64 (DG-7): every NaN becomes 0x7FF8_0000_0000_0000 and -0.0 becomes
/// +0.0, so values that compare equal (or are all "not a number") hash alike.
pub fn canonical_f64_bits(f: f64) -> u64 {
    if f.is_nan() {
        0x7FF8_0000_0000_0000
    } else if f == 0.0 {
        0
    } else {
        f.to_bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(id: u64, labels: &[&str], props: &[(&str, Value)]) -> Node {
        Node {
            id,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    // DG-9: the test vectors printed in spec/digest.md. They pin the encodings byte for byte:
    // nodes (DG-2), relationships (DG-3), properties (DG-4), strings (DG-5), value tags (DG-6).
    #[test]
    fn dg_9_test_vectors_match_the_spec() {
        let spec = include_str!("../spec/digest.md");
        let empty = node(0, &[], &[]);
        let person = node(
            1,
            &["Person", "Admin"],
            &[
                ("name", Value::String("Ada".into())),
                ("age", Value::Int(36)),
                ("score", Value::Float(-0.0)),
                ("tags", Value::List(vec![Value::Bool(true), Value::Null])),
            ],
        );
        let knows = Relationship {
            id: 7,
            start: 1,
            end: 0,
            rel_type: "KNOWS".into(),
            props: [("since".to_string(), Value::Int(1815))]
                .into_iter()
                .collect(),
        };
        let vectors = [
            ("empty-node-encoding", hex(&encode_node(&empty))),
            ("empty-node-hash", hex(&node_hash(&empty))),
            ("person-encoding", hex(&encode_node(&person))),
            ("person-hash", hex(&node_hash(&person))),
            ("knows-encoding", hex(&encode_relationship(&knows))),
            ("knows-hash", hex(&relationship_hash(&knows))),
            ("graph-digest", {
                let mut d = Digest::ZERO;
                d.add_node(&empty);
                d.add_node(&person);
                d.add_relationship(&knows);
                d.to_hex()
            }),
        ];
        for (name, actual) in vectors {
            let line = spec
                .lines()
                .find(|l| l.starts_with(&format!("- `{name}`")))
                .unwrap_or_else(|| panic!("spec/digest.md has no vector `{name}`"));
            let expected = line.split('`').nth(3).expect("vector value in backticks");
            assert_eq!(
                expected, actual,
                "DG-9 (the encodings DG-2, DG-3, DG-4, DG-5, DG-6): test vector {name}"
            );
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // DG-7: NaN payloads and the sign of zero do not change the hash.
    #[test]
    fn dg_7_nan_and_negative_zero_are_canonical() {
        let a = node(3, &[], &[("x", Value::Float(f64::NAN))]);
        let b = node(
            3,
            &[],
            &[("x", Value::Float(f64::from_bits(0xFFF0_0000_0000_0001)))],
        );
        assert_eq!(node_hash(&a), node_hash(&b));
        let z = node(3, &[], &[("x", Value::Float(0.0))]);
        let nz = node(3, &[], &[("x", Value::Float(-0.0))]);
        assert_eq!(node_hash(&z), node_hash(&nz));
    }

    // DG-2: label order and duplicates do not matter.
    #[test]
    fn dg_2_labels_are_sorted_and_deduplicated() {
        let a = node(1, &["B", "A", "B"], &[]);
        let b = node(1, &["A", "B"], &[]);
        assert_eq!(encode_node(&a), encode_node(&b));
    }

    proptest! {
        // DG-1: the digest is a multiset hash: order-independent, and remove undoes add.
        #[test]
        fn dg_1_add_is_commutative_and_remove_inverts_it(
            a in proptest::array::uniform32(any::<u8>()),
            b in proptest::array::uniform32(any::<u8>()),
            start in proptest::array::uniform32(any::<u8>()),
        ) {
            let mut x = Digest(start);
            x.add(&a);
            x.add(&b);
            let mut y = Digest(start);
            y.add(&b);
            y.add(&a);
            prop_assert_eq!(x, y);
            x.remove(&a);
            x.remove(&b);
            prop_assert_eq!(x, Digest(start));
        }

        #[test]
        fn dg_8_hex_round_trips(bytes in proptest::array::uniform32(any::<u8>())) {
            let d = Digest(bytes);
            prop_assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        }
    }
}
