//! The body of `POST /db/data/transaction`, read straight into `Op`s (spec/http.md HTTP-2,
//! HTTP-3) with memory bounded by the request's limits (HTTP-9, HTTP-10).
//!
//! Owns: the JSON shape of a transaction and its one-sentence errors naming the op and the field;
//! the most ops and values one request may hold; the log entry its ops come to as written. The
//! JSON is read once, streaming, into the ops themselves, never into a generic JSON tree (which
//! costs tens of times the body's size); once a limit is passed nothing more is kept, and the
//! rest is only read, to tell a body too large to log from one that merely holds too much.
//! Numbers are read from their text, so an integer beyond i64 is refused, not rounded into a
//! float (HTTP-2).
//! Must not touch: the store, sockets or the clock: bytes in, ops or a refusal out.

use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

use crate::graph::{NodeRef, Op, Properties, Value};
use crate::store::format::BLOCK_DATA;
use crate::store::log::MAX_ENTRY;

/// The most ops one transaction request may hold (HTTP-9).
pub const MAX_OPS: usize = 10_000;
/// The most values one transaction request may hold (HTTP-9): each label, each property (or
/// `set_property` value) and each element of a list counts one.
pub const MAX_VALUES: usize = 1_000_000;

/// What the log entry of a transaction takes besides its images (LOG-5).
const ENTRY_HEAD: u64 = 93;
/// A node's record image (LOG-5).
const NODE_IMAGE: u64 = 30;
/// A relationship's record image (LOG-5).
const REL_IMAGE: u64 = 70;
/// A block's record image, besides its data (LOG-5).
const BLOCK_IMAGE: u64 = 20;

/// Why a transaction body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON, not the shape of HTTP-2, or a value out of range: 400.
    #[error("{0}")]
    Invalid(String),
    /// More ops or values than one request may hold (HTTP-9): 413.
    #[error(
        "the transaction holds more than {limit} {what}, the most one request may hold (HTTP-9)"
    )]
    TooMany { what: &'static str, limit: usize },
    /// Its ops, as written, come to a log entry over LOG-4's bound (HTTP-10): 413.
    #[error(
        "the transaction is too large to log: its ops as written come to more than {}, the most one log entry may hold (LOG-4)",
        crate::units::bytes(MAX_ENTRY as u64)
    )]
    TooLargeToLog,
}

/// Parses `{"ops": [...]}` into operations (HTTP-2, HTTP-3), within the limits of HTTP-9 and
/// HTTP-10. The first problem found is the one reported.
pub fn parse_transaction(body: &[u8]) -> Result<Vec<Op>, BodyError> {
    let mut ctx = Ctx {
        entry: ENTRY_HEAD,
        ..Ctx::default()
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Body(&mut ctx).deserialize(&mut de).and_then(|()| de.end());
    if let Some(e) = ctx.error.take() {
        return Err(e);
    }
    parsed.map_err(|e| BodyError::Invalid(format!("the body is not valid JSON: {e}")))?;
    if ctx.ops_seen > MAX_OPS {
        return Err(BodyError::TooMany {
            what: "ops",
            limit: MAX_OPS,
        });
    }
    if ctx.values > MAX_VALUES {
        return Err(BodyError::TooMany {
            what: "values",
            limit: MAX_VALUES,
        });
    }
    Ok(ctx.ops)
}

/// What parsing one body accumulates.
#[derive(Default)]
struct Ctx {
    /// The ops read so far; emptied, and no longer filled, once a limit is passed.
    ops: Vec<Op>,
    ops_seen: usize,
    values: usize,
    /// The log entry the finished ops come to (HTTP-10), without the op being read.
    entry: u64,
    /// The payload bytes of the op being read, so far.
    payload: u64,
    /// The refusal that ended parsing, when it was ours rather than the JSON's.
    error: Option<BodyError>,
}

impl Ctx {
    /// Whether what is read is still kept: no limit passed yet.
    fn keeping(&self) -> bool {
        self.ops_seen <= MAX_OPS && self.values <= MAX_VALUES
    }

    /// Counts one value of `payload` bytes of the op being read; refuses the body once its entry
    /// is over the bound.
    fn count<E: de::Error>(&mut self, payload: u64) -> Result<(), E> {
        self.values += 1;
        self.payload += payload;
        if self.entry + self.payload > MAX_ENTRY as u64 {
            return Err(self.refuse(BodyError::TooLargeToLog));
        }
        if !self.keeping() {
            self.ops = Vec::new();
        }
        Ok(())
    }

    /// Ends the op being read: its image and the blocks of its payload join the entry.
    fn end_op<E: de::Error>(&mut self, image: u64, has_payload: bool) -> Result<(), E> {
        let payload = std::mem::take(&mut self.payload);
        self.entry += image;
        if has_payload {
            let blocks = payload.div_ceil(BLOCK_DATA as u64).max(1);
            self.entry += payload + blocks * BLOCK_IMAGE;
        }
        self.ops_seen += 1;
        if self.entry > MAX_ENTRY as u64 {
            return Err(self.refuse(BodyError::TooLargeToLog));
        }
        if !self.keeping() {
            self.ops = Vec::new();
        }
        Ok(())
    }

    fn refuse<E: de::Error>(&mut self, e: BodyError) -> E {
        let text = e.to_string();
        self.error = Some(e);
        E::custom(text)
    }

    fn invalid<E: de::Error>(&mut self, message: String) -> E {
        self.refuse(BodyError::Invalid(message))
    }
}

/// A visitor's `expecting` text, for serde_json's own errors (which are about the JSON itself).
macro_rules! expecting {
    ($what:literal) => {
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str($what)
        }
    };
}

/// The `visit_*` methods of the JSON kinds a visitor does not take: each refuses with
/// `self.wrong()`, a sentence of ours rather than serde's "invalid type".
macro_rules! wrong_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(self.wrong())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(self.wrong())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(self.wrong())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(self.wrong())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.wrong())
        }
    };
}

macro_rules! wrong_unit {
    () => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.wrong())
        }
    };
}

macro_rules! wrong_seq {
    () => {
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong())
        }
    };
}

macro_rules! wrong_map {
    () => {
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong())
        }
    };
}

/// A seed that reads its value with `deserialize_any` and itself as the visitor.
macro_rules! seed_is_visitor {
    ($ty:ident, $value:ty) => {
        impl<'de> DeserializeSeed<'de> for $ty<'_> {
            type Value = $value;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<$value, D::Error> {
                d.deserialize_any(self)
            }
        }
    };
}

const BODY_SHAPE: &str = "the body must be an object with an \"ops\" array";
const ONE_KEY: &str = "an op must be an object with exactly one key";

/// The whole body: an object with one `"ops"` array and nothing else.
struct Body<'c>(&'c mut Ctx);

seed_is_visitor!(Body, ());

impl Body<'_> {
    fn wrong<E: de::Error>(self) -> E {
        self.0.invalid(BODY_SHAPE.into())
    }
}

impl<'de> Visitor<'de> for Body<'_> {
    type Value = ();
    expecting!("an object with an \"ops\" array");
    wrong_scalars!();
    wrong_unit!();
    wrong_seq!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<String>()? {
            if key != "ops" {
                // A misspelt key would otherwise be a request that silently does less (HTTP-2).
                return Err(self.0.invalid(format!(
                    "the body has an unknown key \"{}\" (it takes only \"ops\")",
                    crate::units::printable(&key)
                )));
            } else if seen {
                return Err(self.0.invalid("the body has \"ops\" twice".into()));
            } else {
                seen = true;
                map.next_value_seed(Ops(&mut *self.0))?;
            }
        }
        if !seen {
            return Err(self.wrong());
        }
        Ok(())
    }
}

/// The `"ops"` array, read an op at a time.
struct Ops<'c>(&'c mut Ctx);

seed_is_visitor!(Ops, ());

impl Ops<'_> {
    fn wrong<E: de::Error>(self) -> E {
        self.0.invalid(BODY_SHAPE.into())
    }
}

impl<'de> Visitor<'de> for Ops<'_> {
    type Value = ();
    expecting!("an array of ops");
    wrong_scalars!();
    wrong_unit!();
    wrong_map!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let i = self.0.ops_seen;
            let Some(op) = seq.next_element_seed(OneOp {
                ctx: &mut *self.0,
                i,
            })?
            else {
                return Ok(());
            };
            if self.0.keeping() {
                self.0.ops.push(op);
            }
        }
    }
}

/// Op `i`: an object with exactly one key, the kind, whose value is the op's argument.
struct OneOp<'c> {
    ctx: &'c mut Ctx,
    i: usize,
}

seed_is_visitor!(OneOp, Op);

impl OneOp<'_> {
    fn wrong<E: de::Error>(self) -> E {
        self.ctx.invalid(format!("op {}: {ONE_KEY}", self.i))
    }
}

impl<'de> Visitor<'de> for OneOp<'_> {
    type Value = Op;
    expecting!("an op");
    wrong_scalars!();
    wrong_unit!();
    wrong_seq!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Op, A::Error> {
        let (ctx, i) = (self.ctx, self.i);
        let Some(kind) = map.next_key::<String>()? else {
            return Err(ctx.invalid(format!("op {i}: {ONE_KEY}")));
        };
        let op = match kind.as_str() {
            "create_node" => map.next_value_seed(Arg::new(ctx, i, Kind::CreateNode))?,
            "create_relationship" => {
                map.next_value_seed(Arg::new(ctx, i, Kind::CreateRelationship))?
            }
            "set_property" => map.next_value_seed(Arg::new(ctx, i, Kind::SetProperty))?,
            "delete_node" => {
                let raw: &RawValue = map.next_value()?;
                let id = unsigned(raw.get())
                    .ok_or_else(|| ctx.invalid(format!("op {i}: delete_node takes a node id")))?;
                ctx.end_op(NODE_IMAGE, false)?;
                Op::DeleteNode(id)
            }
            "delete_relationship" => {
                let raw: &RawValue = map.next_value()?;
                let id = unsigned(raw.get()).ok_or_else(|| {
                    ctx.invalid(format!(
                        "op {i}: delete_relationship takes a relationship id"
                    ))
                })?;
                ctx.end_op(REL_IMAGE, false)?;
                Op::DeleteRelationship(id)
            }
            other => {
                map.next_value::<IgnoredAny>()?;
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(ctx.invalid(format!("op {i}: {ONE_KEY}")));
                }
                return Err(ctx.invalid(format!(
                    "op {i}: unknown op \"{other}\" (expected create_node, create_relationship, set_property, delete_node or delete_relationship)"
                )));
            }
        };
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(ctx.invalid(format!("op {i}: {ONE_KEY}")));
        }
        Ok(op)
    }
}

/// The ops whose argument is an object of fields.
#[derive(Clone, Copy)]
enum Kind {
    CreateNode,
    CreateRelationship,
    SetProperty,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::CreateNode => "create_node",
            Kind::CreateRelationship => "create_relationship",
            Kind::SetProperty => "set_property",
        }
    }
}

/// The argument of op `i` of kind `kind`: an object of its fields (or `null`, no fields).
/// An unknown field, or a field given twice, is refused.
struct Arg<'c> {
    ctx: &'c mut Ctx,
    i: usize,
    kind: Kind,
}

impl<'c> Arg<'c> {
    fn new(ctx: &'c mut Ctx, i: usize, kind: Kind) -> Arg<'c> {
        Arg { ctx, i, kind }
    }

    fn wrong<E: de::Error>(self) -> E {
        let (i, kind) = (self.i, self.kind.name());
        self.ctx
            .invalid(format!("op {i}: {kind} must be an object"))
    }
}

seed_is_visitor!(Arg, Op);

/// The fields of an op's argument, as they are read.
#[derive(Default)]
struct Fields<'de> {
    labels: Option<Vec<String>>,
    props: Option<Properties>,
    from: Option<&'de RawValue>,
    to: Option<&'de RawValue>,
    rel_type: Option<&'de RawValue>,
    node: Option<&'de RawValue>,
    key: Option<&'de RawValue>,
    value: Option<Value>,
}

impl<'de> Visitor<'de> for Arg<'_> {
    type Value = Op;
    expecting!("an object of the op's fields");
    wrong_scalars!();
    wrong_seq!();

    fn visit_unit<E: de::Error>(self) -> Result<Op, E> {
        let (ctx, i, kind) = (self.ctx, self.i, self.kind);
        build(ctx, i, kind, Fields::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Op, A::Error> {
        let (ctx, i, kind) = (self.ctx, self.i, self.kind);
        let mut f = Fields::default();
        while let Some(name) = map.next_key::<String>()? {
            let twice = |ctx: &mut Ctx| {
                ctx.invalid::<A::Error>(format!("op {i}: {} has \"{name}\" twice", kind.name()))
            };
            match (kind, name.as_str()) {
                (Kind::CreateNode, "labels") => {
                    if f.labels.is_some() {
                        return Err(twice(ctx));
                    }
                    f.labels = Some(map.next_value_seed(Labels { ctx: &mut *ctx, i })?);
                }
                (Kind::CreateNode | Kind::CreateRelationship, "props") => {
                    if f.props.is_some() {
                        return Err(twice(ctx));
                    }
                    f.props = Some(map.next_value_seed(Props {
                        ctx: &mut *ctx,
                        i,
                        kind,
                    })?);
                }
                (Kind::SetProperty, "value") => {
                    if f.value.is_some() {
                        return Err(twice(ctx));
                    }
                    f.value = Some(map.next_value_seed(ValueSeed {
                        ctx: &mut *ctx,
                        i,
                        at: At::SetValue,
                    })?);
                }
                (Kind::CreateRelationship, "from" | "to" | "type")
                | (Kind::SetProperty, "node" | "key") => {
                    let slot = match name.as_str() {
                        "from" => &mut f.from,
                        "to" => &mut f.to,
                        "type" => &mut f.rel_type,
                        "node" => &mut f.node,
                        _ => &mut f.key,
                    };
                    if slot.is_some() {
                        return Err(twice(ctx));
                    }
                    *slot = Some(map.next_value()?);
                }
                _ => {
                    let takes = match kind {
                        Kind::CreateNode => "\"labels\" and \"props\"",
                        Kind::CreateRelationship => "\"from\", \"to\", \"type\" and \"props\"",
                        Kind::SetProperty => "\"node\", \"key\" and \"value\"",
                    };
                    return Err(ctx.invalid(format!(
                        "op {i}: {} has an unknown field \"{}\" (it takes {takes})",
                        kind.name(),
                        crate::units::printable(&name)
                    )));
                }
            }
        }
        build(ctx, i, kind, f)
    }
}

/// Op `i` of `kind` from its fields, in the order the fields are checked: a required field
/// missing or of the wrong kind is refused naming it.
fn build<E: de::Error>(ctx: &mut Ctx, i: usize, kind: Kind, f: Fields<'_>) -> Result<Op, E> {
    let name = kind.name();
    let needs =
        |ctx: &mut Ctx, field: &str| ctx.invalid(format!("op {i}: {name} needs \"{field}\""));
    match kind {
        Kind::CreateNode => {
            // The payload's label count and property count (ST-8); the labels themselves are not
            // counted in the entry, since the store drops duplicates.
            ctx.payload += 8;
            ctx.end_op(NODE_IMAGE, true)?;
            Ok(Op::CreateNode {
                labels: f.labels.unwrap_or_default(),
                props: f.props.unwrap_or_default(),
            })
        }
        Kind::CreateRelationship => {
            let Some(from) = f.from else {
                return Err(needs(ctx, "from"));
            };
            let from =
                node_ref(i, from.get(), "create_relationship.from").map_err(|m| ctx.invalid(m))?;
            let Some(to) = f.to else {
                return Err(needs(ctx, "to"));
            };
            let to = node_ref(i, to.get(), "create_relationship.to").map_err(|m| ctx.invalid(m))?;
            let Some(rel_type) = f.rel_type else {
                return Err(needs(ctx, "type"));
            };
            let rel_type = string(rel_type.get()).ok_or_else(|| {
                ctx.invalid(format!("op {i}: create_relationship.type must be a string"))
            })?;
            ctx.payload += 8 + rel_type.len() as u64;
            ctx.end_op(REL_IMAGE, true)?;
            Ok(Op::CreateRelationship {
                from,
                to,
                rel_type,
                props: f.props.unwrap_or_default(),
            })
        }
        Kind::SetProperty => {
            let Some(node) = f.node else {
                return Err(needs(ctx, "node"));
            };
            let node = node_ref(i, node.get(), "set_property.node").map_err(|m| ctx.invalid(m))?;
            let Some(key) = f.key else {
                return Err(needs(ctx, "key"));
            };
            let key = string(key.get())
                .ok_or_else(|| ctx.invalid(format!("op {i}: set_property.key must be a string")))?;
            let Some(value) = f.value else {
                return Err(needs(ctx, "value"));
            };
            ctx.payload += 8 + 4 + key.len() as u64;
            ctx.end_op(NODE_IMAGE, true)?;
            Ok(Op::SetProperty { node, key, value })
        }
    }
}

/// `create_node.labels` of op `i`: `null` or an array of strings.
struct Labels<'c> {
    ctx: &'c mut Ctx,
    i: usize,
}

seed_is_visitor!(Labels, Vec<String>);

impl Labels<'_> {
    fn wrong<E: de::Error>(self) -> E {
        let i = self.i;
        self.ctx.invalid(format!(
            "op {i}: create_node.labels must be an array of strings"
        ))
    }
}

impl<'de> Visitor<'de> for Labels<'_> {
    type Value = Vec<String>;
    expecting!("an array of labels");
    wrong_scalars!();
    wrong_map!();

    fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut labels = Vec::new();
        while let Some(raw) = seq.next_element::<&RawValue>()? {
            let Some(label) = string(raw.get()) else {
                return Err(self.wrong());
            };
            self.ctx.count(0)?;
            if self.ctx.keeping() {
                labels.push(label);
            } else {
                labels = Vec::new();
            }
        }
        Ok(labels)
    }
}

/// The `props` of op `i` of `kind`: `null` or an object of values; a key given twice is refused.
struct Props<'c> {
    ctx: &'c mut Ctx,
    i: usize,
    kind: Kind,
}

seed_is_visitor!(Props, Properties);

impl Props<'_> {
    fn wrong<E: de::Error>(self) -> E {
        let (i, kind) = (self.i, self.kind.name());
        self.ctx
            .invalid(format!("op {i}: {kind}.props must be an object"))
    }
}

impl<'de> Visitor<'de> for Props<'_> {
    type Value = Properties;
    expecting!("an object of properties");
    wrong_scalars!();
    wrong_seq!();

    fn visit_unit<E: de::Error>(self) -> Result<Properties, E> {
        Ok(Properties::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Properties, A::Error> {
        let (ctx, i) = (self.ctx, self.i);
        let mut props = Properties::new();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            ctx.payload += 4 + key.len() as u64;
            let value = map.next_value_seed(ValueSeed {
                ctx: &mut *ctx,
                i,
                at: At::Property(&key),
            })?;
            // While the values are kept so are the keys; past a limit neither is, and a key
            // given twice goes unnoticed in a body refused anyway.
            if ctx.keeping() {
                if !seen.insert(key.clone()) {
                    return Err(ctx.invalid(format!("op {i}: property \"{key}\" is given twice")));
                }
                props.insert(key, value);
            } else {
                props = Properties::new();
                seen = std::collections::BTreeSet::new();
            }
        }
        Ok(props)
    }
}

/// Where a value is, for the sentence refusing it.
#[derive(Clone, Copy)]
enum At<'k> {
    Property(&'k str),
    SetValue,
}

impl At<'_> {
    fn say(self, i: usize, what: &str) -> String {
        match self {
            At::Property(key) => format!("op {i}: property \"{key}\" {what}"),
            At::SetValue => format!("op {i}: set_property.value {what}"),
        }
    }
}

/// A property value of op `i` (HTTP-2), read from its raw text: null, a boolean, a number, a
/// string, or an array of those.
struct ValueSeed<'c, 'k> {
    ctx: &'c mut Ctx,
    i: usize,
    at: At<'k>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let raw = <&RawValue>::deserialize(d)?;
        value(self.ctx, self.i, self.at, raw.get(), true)
    }
}

/// A value from its raw JSON, counted as one value of its payload size (a list's elements count
/// one each); a list only where `list_allowed`.
fn value<E: de::Error>(
    ctx: &mut Ctx,
    i: usize,
    at: At<'_>,
    raw: &str,
    list_allowed: bool,
) -> Result<Value, E> {
    let (value, size) = match raw.as_bytes().first() {
        Some(b'n') => (Value::Null, 1),
        Some(b't') => (Value::Bool(true), 2),
        Some(b'f') => (Value::Bool(false), 2),
        Some(b'"') => {
            let s = string(raw).ok_or_else(|| ctx.invalid(at.say(i, "is not a valid string")))?;
            let size = 5 + s.len() as u64;
            (Value::String(s), size)
        }
        Some(b'[') if list_allowed => {
            ctx.count(5)?;
            let mut de = serde_json::Deserializer::from_str(raw);
            let list = de.deserialize_seq(List { ctx, i, at }).map_err(E::custom)?;
            return Ok(Value::List(list));
        }
        Some(b'[') => {
            return Err(ctx.invalid(at.say(i, "is a list inside a list; lists hold only scalars")))
        }
        Some(b'{') => {
            return Err(ctx.invalid(at.say(
                i,
                "is an object; values are null, booleans, numbers, strings or lists of those",
            )))
        }
        _ => (number(raw).map_err(|m| ctx.invalid(at.say(i, m)))?, 9),
    };
    ctx.count(size)?;
    Ok(value)
}

/// The elements of a list value, each read from its raw text.
struct List<'c, 'k> {
    ctx: &'c mut Ctx,
    i: usize,
    at: At<'k>,
}

impl<'de> Visitor<'de> for List<'_, '_> {
    type Value = Vec<Value>;
    expecting!("a list");

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut list = Vec::new();
        while let Some(raw) = seq.next_element::<&RawValue>()? {
            let v = value(self.ctx, self.i, self.at, raw.get(), false)?;
            if self.ctx.keeping() {
                list.push(v);
            } else {
                list = Vec::new();
            }
        }
        Ok(list)
    }
}

/// A JSON number from its text: an integer (no fraction, no exponent) must fit i64; anything
/// else is a float, read as serde_json reads it, which makes `-0` the float -0.0.
fn number(raw: &str) -> Result<Value, &'static str> {
    if !raw.contains(['.', 'e', 'E']) && raw != "-0" {
        return raw
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| "is an integer outside the signed 64-bit range");
    }
    serde_json::from_str::<f64>(raw)
        .map(Value::Float)
        .map_err(|_| "is a number outside the range of a 64-bit float")
}

/// A JSON string's text, or `None` when the raw value is not a string.
fn string(raw: &str) -> Option<String> {
    if !raw.starts_with('"') {
        return None;
    }
    serde_json::from_str(raw).ok()
}

/// A non-negative integer that fits u64, from its text.
fn unsigned(raw: &str) -> Option<u64> {
    if raw.starts_with('-') || raw.contains(['.', 'e', 'E']) {
        return None;
    }
    raw.parse().ok()
}

/// A node id, or `"$i"`: the node created by op `i` of the same request (HTTP-3). The error is
/// the whole sentence.
fn node_ref(op: usize, raw: &str, what: &str) -> Result<NodeRef, String> {
    if let Some(id) = unsigned(raw) {
        return Ok(NodeRef::Id(id));
    }
    let target = string(raw)
        .as_deref()
        .and_then(|s| s.strip_prefix('$'))
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or(format!("op {op}: {what} must be a node id or \"$i\""))?;
    if target >= op {
        return Err(format!(
            "op {op}: {what} \"${target}\" must name an earlier op"
        ));
    }
    Ok(NodeRef::CreatedBy(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: &str) -> String {
        parse_transaction(body.as_bytes()).unwrap_err().to_string()
    }

    // HTTP-2, HTTP-3: every op form parses; "$i" must name an earlier op.
    #[test]
    fn http_2_ops_parse() {
        let ops = parse_transaction(
            br#"{"ops": [
                {"create_node": {"labels": ["L"], "props": {"k": 1, "f": 1.5, "l": [true, null, "s"]}}},
                {"create_node": {}},
                {"create_relationship": {"from": "$0", "to": "$1", "type": "T", "props": {}}},
                {"set_property": {"node": 7, "key": "k", "value": "v"}},
                {"delete_node": 3},
                {"delete_relationship": 4}
            ]}"#,
        )
        .unwrap();
        assert_eq!(ops.len(), 6);
        assert_eq!(
            ops[0],
            Op::CreateNode {
                labels: vec!["L".into()],
                props: [
                    ("k".to_string(), Value::Int(1)),
                    ("f".to_string(), Value::Float(1.5)),
                    (
                        "l".to_string(),
                        Value::List(vec![
                            Value::Bool(true),
                            Value::Null,
                            Value::String("s".into())
                        ])
                    ),
                ]
                .into_iter()
                .collect(),
            }
        );
        assert!(matches!(
            &ops[2],
            Op::CreateRelationship {
                from: NodeRef::CreatedBy(0),
                to: NodeRef::CreatedBy(1),
                ..
            }
        ));
        assert_eq!(ops[5], Op::DeleteRelationship(4));
        assert_eq!(
            refusal(r#"{"ops": [{"create_relationship": {"from": "$0", "to": 1, "type": "T"}}]}"#),
            "op 0: create_relationship.from \"$0\" must name an earlier op"
        );
        assert_eq!(
            refusal(r#"{"ops": [{"create_node": {"props": {"x": [[1]]}}}]}"#),
            "op 0: property \"x\" is a list inside a list; lists hold only scalars"
        );
        assert!(refusal(r#"{"ops": [{"drop_table": 1}]}"#)
            .starts_with("op 0: unknown op \"drop_table\""));
        assert!(refusal("{not json").starts_with("the body is not valid JSON"));
        assert!(refusal(r#"{"ops": []} x"#).starts_with("the body is not valid JSON"));
        for shape in [r#"{"ops": "nope"}"#, "[1]", "3", "{}"] {
            assert_eq!(refusal(shape), BODY_SHAPE, "{shape}");
        }
        assert_eq!(
            refusal(r#"{"opz": []}"#),
            "the body has an unknown key \"opz\" (it takes only \"ops\")"
        );
        for (body, says) in [
            (r#"{"ops": [{"create_node": {}, "delete_node": 1}]}"#, "op 0: an op must be an object with exactly one key"),
            (r#"{"ops": [{}]}"#, "op 0: an op must be an object with exactly one key"),
            (r#"{"ops": [{"create_node": {}}, 7]}"#, "op 1: an op must be an object with exactly one key"),
            (r#"{"ops": [{"create_node": 5}]}"#, "op 0: create_node must be an object"),
            (r#"{"ops": [{"create_node": {"labels": "L"}}]}"#, "op 0: create_node.labels must be an array of strings"),
            (r#"{"ops": [{"create_node": {"labels": [1]}}]}"#, "op 0: create_node.labels must be an array of strings"),
            (r#"{"ops": [{"create_node": {"props": []}}]}"#, "op 0: create_node.props must be an object"),
            (r#"{"ops": [{"create_node": {"props": {"a": 1, "a": 2}}}]}"#, "op 0: property \"a\" is given twice"),
            (r#"{"ops": [{"create_node": {"props": {}, "props": {}}}]}"#, "op 0: create_node has \"props\" twice"),
            (r#"{"ops": [{"create_node": {"props": {"o": {}}}}]}"#, "op 0: property \"o\" is an object; values are null, booleans, numbers, strings or lists of those"),
            (r#"{"ops": [{"create_relationship": {"from": 1, "type": "T"}}]}"#, "op 0: create_relationship needs \"to\""),
            (r#"{"ops": [{"create_relationship": {"from": 1, "to": 2, "type": 3}}]}"#, "op 0: create_relationship.type must be a string"),
            (r#"{"ops": [{"create_relationship": {"from": -1, "to": 2, "type": "T"}}]}"#, "op 0: create_relationship.from must be a node id or \"$i\""),
            (r#"{"ops": [{"set_property": {"node": 1, "key": "k"}}]}"#, "op 0: set_property needs \"value\""),
            (r#"{"ops": [{"set_property": {"node": 1, "key": 2, "value": 1}}]}"#, "op 0: set_property.key must be a string"),
            (r#"{"ops": [{"set_property": {"node": 1, "key": "k", "value": [[]]}}]}"#, "op 0: set_property.value is a list inside a list; lists hold only scalars"),
            (r#"{"ops": [{"delete_node": 1.0}]}"#, "op 0: delete_node takes a node id"),
            (r#"{"ops": [{"delete_relationship": "1"}]}"#, "op 0: delete_relationship takes a relationship id"),
            (r#"{"ops": [{"delete_node": 18446744073709551616}]}"#, "op 0: delete_node takes a node id"),
        ] {
            assert_eq!(refusal(body), says, "{body}");
        }
    }

    // HTTP-2: numbers are read from their text: an integer beyond i64 is refused, i64's bounds
    // are integers, a fraction or an exponent (or -0) makes a float.
    #[test]
    fn http_2_numbers_are_read_from_their_text() {
        let value = |text: &str| {
            let body = format!(
                r#"{{"ops": [{{"set_property": {{"node": 0, "key": "k", "value": {text}}}}}]}}"#
            );
            match parse_transaction(body.as_bytes()) {
                Ok(ops) => match &ops[0] {
                    Op::SetProperty { value, .. } => Ok(value.clone()),
                    other => panic!("{other:?}"),
                },
                Err(e) => Err(e.to_string()),
            }
        };
        assert_eq!(value("9223372036854775807"), Ok(Value::Int(i64::MAX)));
        assert_eq!(value("-9223372036854775808"), Ok(Value::Int(i64::MIN)));
        assert_eq!(value("1e3"), Ok(Value::Float(1000.0)));
        assert_eq!(value("0.1"), Ok(Value::Float(0.1)));
        assert!(matches!(value("-0"), Ok(Value::Float(f)) if f == 0.0 && f.is_sign_negative()));
        for big in [
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "1000000000000000000000000",
        ] {
            assert_eq!(
                value(big),
                Err(
                    "op 0: set_property.value is an integer outside the signed 64-bit range".into()
                ),
                "HTTP-2: {big}"
            );
        }
        assert_eq!(
            value("1e400"),
            Err("op 0: set_property.value is a number outside the range of a 64-bit float".into())
        );
    }

    // HTTP-9: one op or value over the limits is refused with 413's sentence; exactly at them
    // the body parses.
    #[test]
    fn http_9_limits_on_ops_and_values() {
        let ops = |n: usize| {
            format!(
                r#"{{"ops": [{}]}}"#,
                vec![r#"{"delete_node": 1}"#; n].join(",")
            )
        };
        assert_eq!(
            parse_transaction(ops(MAX_OPS).as_bytes()).unwrap().len(),
            MAX_OPS
        );
        assert_eq!(
            parse_transaction(ops(MAX_OPS + 1).as_bytes()),
            Err(BodyError::TooMany {
                what: "ops",
                limit: MAX_OPS
            }),
            "HTTP-9"
        );
        let nulls = |n: usize| {
            format!(
                r#"{{"ops": [{{"create_node": {{"props": {{"l": [{}]}}}}}}]}}"#,
                vec!["null"; n].join(",")
            )
        };
        // The list counts one value, its elements one each.
        assert!(parse_transaction(nulls(MAX_VALUES - 1).as_bytes()).is_ok());
        assert_eq!(
            parse_transaction(nulls(MAX_VALUES).as_bytes()),
            Err(BodyError::TooMany {
                what: "values",
                limit: MAX_VALUES
            }),
            "HTTP-9"
        );
        let refused = BodyError::TooMany {
            what: "values",
            limit: MAX_VALUES,
        }
        .to_string();
        assert_eq!(refused, "the transaction holds more than 1000000 values, the most one request may hold (HTTP-9)");
    }

    // HTTP-10: ops whose entry, as written, would pass LOG-4's bound are refused while they are
    // read, before they are all kept.
    #[test]
    fn http_10_too_large_to_log_as_written() {
        // A list of integers: 9 bytes of payload each.
        let n = MAX_ENTRY as usize / 9 + 10;
        let body = format!(
            r#"{{"ops": [{{"create_node": {{"props": {{"z": [{}]}}}}}}]}}"#,
            vec!["0"; n].join(",")
        );
        assert_eq!(
            parse_transaction(body.as_bytes()),
            Err(BodyError::TooLargeToLog),
            "HTTP-10"
        );
        assert!(
            BodyError::TooLargeToLog.to_string().contains("(LOG-4)"),
            "HTTP-10"
        );
        // Strings: each counts its bytes, and its blocks their images.
        let s = "x".repeat(1 << 20);
        let strings = |k: usize| {
            let props: Vec<String> = (0..k).map(|i| format!(r#""p{i}": "{s}""#)).collect();
            format!(
                r#"{{"ops": [{{"create_node": {{"props": {{{}}}}}}}]}}"#,
                props.join(",")
            )
        };
        let fit = (MAX_ENTRY as usize) / ((1 << 20) + (1 << 20) / 6 + 100);
        assert!(
            parse_transaction(strings(fit).as_bytes()).is_ok(),
            "HTTP-10: {fit} MiB of strings fit"
        );
        assert_eq!(
            parse_transaction(strings(fit + 2).as_bytes()),
            Err(BodyError::TooLargeToLog),
            "HTTP-10"
        );
    }
}
