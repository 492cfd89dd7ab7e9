//! The HTTP API of the server (spec/http.md): status, transactions and node reads as JSON.
//!
//! Owns: the routes, the JSON shapes, translating request bodies into `Op`s with one-sentence
//! errors, and status codes (400 bad request, 404 unknown node or path, 405 wrong method, 413 body
//! over 16 MiB). Every error answer is `{"error": "..."}` (HTTP-7), whoever produced it.
//! Must not touch: sockets or files. It is an axum `Router` over a [`Database`]; the server
//! decides where it is served (through the `Net` seam).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value as Json_};

use crate::db::Database;
use crate::graph::{NodeRef, Op, Properties, Value};
use crate::store::StoreError;

/// The largest request body accepted (HTTP-4).
pub const MAX_BODY: usize = 16 << 20;

/// What the API serves, for the answer to a path it does not (HTTP-7).
const ROUTES: &str = "GET /db/data/, POST /db/data/transaction and GET /db/data/node/<id>";

/// The API's routes over `db`.
pub fn router(db: Arc<Database>) -> Router {
    let api = Router::new()
        .route("/db/data/", get(status))
        .route("/db/data", get(status))
        .route("/db/data/transaction", post(transaction))
        .route("/db/data/node/{id}", get(node))
        .fallback(unknown_path)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(db);
    // The error shape is enforced around the whole API rather than as one of its layers: axum
    // completes some answers (the `Allow` header of a 405) after the layers of a route have run.
    Router::new()
        .fallback_service(api)
        .layer(middleware::from_fn(json_errors))
}

/// An error answer: a status code and `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// A path the API does not serve (HTTP-7).
async fn unknown_path(uri: Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "the API has no resource at {} (it serves {ROUTES})",
            uri.path()
        ),
    )
}

/// Turns any error answer that is not already `{"error": "..."}` into one (HTTP-7): a method a
/// route does not take (405, whose `Allow` header axum sets), and whatever else axum or a layer
/// answers on its own.
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = match axum::body::to_bytes(response.into_body(), 64 << 10).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = error_sentence(&method, &path, status, allow.as_ref(), &text);
    let mut answer = ApiError(status, message).into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

/// The one sentence of an error answer that came without one.
fn error_sentence(
    method: &Method,
    path: &str,
    status: StatusCode,
    allow: Option<&HeaderValue>,
    text: &str,
) -> String {
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = allow
            .and_then(|a| a.to_str().ok())
            .map(|a| a.split(',').map(str::trim).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        return format!("{method} is not allowed on {path} (it accepts {allowed})");
    }
    if status == StatusCode::NOT_FOUND {
        return format!("the API has no resource at {path} (it serves {ROUTES})");
    }
    let first_line = text.lines().next().unwrap_or("").trim();
    if first_line.is_empty() {
        let reason = status.canonical_reason().unwrap_or("error");
        format!(
            "{method} {path} failed with {} {}",
            status.as_u16(),
            reason.to_lowercase()
        )
    } else {
        format!("{method} {path} failed: {first_line}")
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
            tracing::error!("an HTTP request failed: {e}");
        }
        ApiError(code, e.to_string())
    }
}

async fn status(State(db): State<Arc<Database>>) -> Result<Json<Json_>, ApiError> {
    let (status, logs) = db.status().await?;
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
    let outcome = db.commit(ops).await?;
    Ok(Json(json!({ "tx_id": outcome.tx_id, "ids": outcome.ids })))
}

async fn node(
    State(db): State<Arc<Database>>,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Json_>, ApiError> {
    // A segment that is not valid UTF-8 once decoded is no node id either (HTTP-5).
    let id = match id {
        Ok(Path(id)) => id,
        Err(_) => uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("node {id} does not exist"));
    let id: u64 = id.parse().map_err(|_| not_found())?;
    let (node, rels) = db.node(id).await?.ok_or_else(not_found)?;
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
