//! The HTTP API of the server (spec/http.md): status, transactions and node reads as JSON.
//!
//! Owns: the routes, the JSON shapes, translating request bodies into `Op`s with one-sentence
//! errors, and status codes (400 bad request, 404 unknown node, 413 body over 16 MiB).
//! Must not touch: sockets or files. It is an axum `Router` over a [`Database`]; the server
//! decides where it is served (through the `Net` seam).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value as Json_};

use crate::graph::{NodeRef, Op, Properties, Value};
use crate::io::Clock;
use crate::server::db::Database;
use crate::store::StoreError;

/// The largest request body accepted (HTTP-4).
pub const MAX_BODY: usize = 16 << 20;

/// The API's routes over `db`.
pub fn router(db: Arc<Database>) -> Router {
    Router::new()
        .route("/db/data/", get(status))
        .route("/db/data", get(status))
        .route("/db/data/transaction", post(transaction))
        .route("/db/data/node/{id}", get(node))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(db)
}

/// `router` with a `Date` header on every answer, read from `clock` (HTTP-6). hyper would
/// otherwise write its own from the operating system's clock, which a simulation does not
/// control: the answer's bytes, and so the run, would depend on the real time.
pub fn with_date_header(router: Router, clock: Arc<dyn Clock>) -> Router {
    router.layer(axum::middleware::map_response(move |mut res: Response| {
        let date = http_date(clock.now());
        async move {
            if let Ok(v) = HeaderValue::from_str(&date) {
                res.headers_mut().insert(header::DATE, v);
            }
            res
        }
    }))
}

/// `time` as an HTTP date (RFC 9110's IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, for dates after 1970).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An error answer: a status code and `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let code = match e {
            StoreError::Rejected(_) => StatusCode::BAD_REQUEST,
            StoreError::Failed(_) | StoreError::Closed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if code != StatusCode::BAD_REQUEST {
            tracing::error!(error = %e, "request failed");
        }
        ApiError(code, e.to_string())
    }
}

async fn status(State(db): State<Arc<Database>>) -> Result<Json<Json_>, ApiError> {
    let (status, logs) = db.status()?;
    Ok(Json(json!({
        "store_id": status.store_id.to_string(),
        "format_version": status.format.to_string(),
        "last_committed_tx": status.last_committed_tx,
        "nodes": status.nodes,
        "relationships": status.relationships,
        "digest": status.digest.to_hex(),
        "oldest_logged_tx": logs.oldest_logged_tx,
        "log_bytes": logs.log_bytes,
    })))
}

async fn transaction(
    State(db): State<Arc<Database>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Json_>, ApiError> {
    let body = body.map_err(|e| {
        let code = e.status();
        let message = if code == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the request body is larger than {MAX_BODY} bytes")
        } else {
            e.body_text()
        };
        ApiError(code, message)
    })?;
    let ops = parse_transaction(&body).map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let outcome = db.commit(&ops)?;
    Ok(Json(json!({ "tx_id": outcome.tx_id, "ids": outcome.ids })))
}

async fn node(
    State(db): State<Arc<Database>>,
    Path(id): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("node {id} does not exist"));
    let id: u64 = id.parse().map_err(|_| not_found())?;
    let (node, rels) = db.node(id)?.ok_or_else(not_found)?;
    Ok(Json(json!({
        "id": node.id,
        "labels": node.labels,
        "properties": props_to_json(&node.props),
        "relationships": rels,
    })))
}

fn props_to_json(props: &Properties) -> Json_ {
    Json_::Object(
        props
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(v: &Value) -> Json_ {
    match v {
        Value::Null => Json_::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        // JSON has no NaN or infinities; serde_json writes them as null.
        Value::Float(f) => json!(f),
        Value::String(s) => json!(s),
        Value::List(items) => Json_::Array(items.iter().map(value_to_json).collect()),
    }
}

/// Parses `{"ops": [...]}` into operations (HTTP-2, HTTP-3). Errors are one sentence naming
/// the op and the field.
pub fn parse_transaction(body: &[u8]) -> Result<Vec<Op>, String> {
    let doc: Json_ =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let ops = doc
        .as_object()
        .and_then(|o| o.get("ops"))
        .and_then(Json_::as_array)
        .ok_or("the body must be an object with an \"ops\" array")?;
    ops.iter()
        .enumerate()
        .map(|(i, op)| parse_op(i, op).map_err(|m| format!("op {i}: {m}")))
        .collect()
}

fn parse_op(i: usize, op: &Json_) -> Result<Op, String> {
    let obj = op
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or("an op must be an object with exactly one key")?;
    let (kind, arg) = obj.iter().next().expect("one key");
    let field = |name: &str| -> Result<&Json_, String> {
        arg.as_object()
            .and_then(|o| o.get(name))
            .ok_or(format!("{kind} needs \"{name}\""))
    };
    let strings = |v: &Json_, what: &str| -> Result<Vec<String>, String> {
        v.as_array()
            .ok_or(format!("{what} must be an array of strings"))?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or(format!("{what} must be an array of strings"))
            })
            .collect()
    };
    let props = |name: &str| -> Result<Properties, String> {
        match arg.as_object().and_then(|o| o.get(name)) {
            None | Some(Json_::Null) => Ok(Properties::new()),
            Some(Json_::Object(map)) => parse_props(map),
            Some(_) => Err(format!("{kind}.{name} must be an object")),
        }
    };
    match kind.as_str() {
        "create_node" => {
            let labels = match arg.as_object().and_then(|o| o.get("labels")) {
                None | Some(Json_::Null) => Vec::new(),
                Some(v) => strings(v, "create_node.labels")?,
            };
            Ok(Op::CreateNode {
                labels,
                props: props("props")?,
            })
        }
        "create_relationship" => Ok(Op::CreateRelationship {
            from: node_ref(i, field("from")?, "create_relationship.from")?,
            to: node_ref(i, field("to")?, "create_relationship.to")?,
            rel_type: field("type")?
                .as_str()
                .ok_or("create_relationship.type must be a string")?
                .to_string(),
            props: props("props")?,
        }),
        "set_property" => Ok(Op::SetProperty {
            node: node_ref(i, field("node")?, "set_property.node")?,
            key: field("key")?
                .as_str()
                .ok_or("set_property.key must be a string")?
                .to_string(),
            value: parse_value(field("value")?, true).map_err(|m| format!("set_property.value {m}"))?,
        }),
        "delete_node" => Ok(Op::DeleteNode(
            arg.as_u64().ok_or("delete_node takes a node id")?,
        )),
        "delete_relationship" => Ok(Op::DeleteRelationship(
            arg.as_u64().ok_or("delete_relationship takes a relationship id")?,
        )),
        other => Err(format!(
            "unknown op \"{other}\" (expected create_node, create_relationship, set_property, delete_node or delete_relationship)"
        )),
    }
}

/// A node id, or `"$i"`: the node created by op `i` of the same request (HTTP-3).
fn node_ref(op: usize, v: &Json_, what: &str) -> Result<NodeRef, String> {
    if let Some(id) = v.as_u64() {
        return Ok(NodeRef::Id(id));
    }
    let target = v
        .as_str()
        .and_then(|s| s.strip_prefix('$'))
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or(format!("{what} must be a node id or \"$i\""))?;
    if target >= op {
        return Err(format!("{what} \"${target}\" must name an earlier op"));
    }
    Ok(NodeRef::CreatedBy(target))
}

fn parse_props(map: &Map<String, Json_>) -> Result<Properties, String> {
    map.iter()
        .map(|(k, v)| {
            parse_value(v, true)
                .map(|v| (k.clone(), v))
                .map_err(|m| format!("property \"{k}\" {m}"))
        })
        .collect()
}

fn parse_value(v: &Json_, allow_list: bool) -> Result<Value, String> {
    Ok(match v {
        Json_::Null => Value::Null,
        Json_::Bool(b) => Value::Bool(*b),
        Json_::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if n.is_u64() {
                return Err("is an integer outside the signed 64-bit range".into());
            } else {
                Value::Float(n.as_f64().ok_or("is not a number")?)
            }
        }
        Json_::String(s) => Value::String(s.clone()),
        Json_::Array(items) if allow_list => Value::List(
            items
                .iter()
                .map(|i| parse_value(i, false))
                .collect::<Result<_, _>>()?,
        ),
        Json_::Array(_) => return Err("is a list inside a list; lists hold only scalars".into()),
        Json_::Object(_) => {
            return Err(
                "is an object; values are null, booleans, numbers, strings or lists of those"
                    .into(),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // HTTP-6: the Date header comes from the injected clock, in IMF-fixdate form.
    #[test]
    fn http_6_date_from_the_clock() {
        let at = |secs: u64| http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(1_704_067_200), "Mon, 01 Jan 2024 00:00:00 GMT");
        assert_eq!(at(1_709_210_096), "Thu, 29 Feb 2024 12:34:56 GMT");
        assert_eq!(at(4_133_980_799), "Fri, 31 Dec 2100 23:59:59 GMT");
        assert_eq!(at(951_868_800), "Wed, 01 Mar 2000 00:00:00 GMT");
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
        assert!(matches!(
            &ops[2],
            Op::CreateRelationship {
                from: NodeRef::CreatedBy(0),
                to: NodeRef::CreatedBy(1),
                ..
            }
        ));
        let err = parse_transaction(
            br#"{"ops": [{"create_relationship": {"from": "$0", "to": 1, "type": "T"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "op 0: create_relationship.from \"$0\" must name an earlier op"
        );
        let err = parse_transaction(br#"{"ops": [{"create_node": {"props": {"x": [[1]]}}}]}"#)
            .unwrap_err();
        assert_eq!(
            err,
            "op 0: property \"x\" is a list inside a list; lists hold only scalars"
        );
        let err = parse_transaction(br#"{"ops": [{"drop_table": 1}]}"#).unwrap_err();
        assert!(err.starts_with("op 0: unknown op \"drop_table\""), "{err}");
        assert!(parse_transaction(b"{not json")
            .unwrap_err()
            .starts_with("the body is not valid JSON"));
    }
}
