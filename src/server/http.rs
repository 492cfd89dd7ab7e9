//! The HTTP API of the server (spec/http.md): status, transactions and node reads as JSON.
//!
//! Owns: the routes, the JSON shapes, reading request bodies within their bounds (HTTP-4, HTTP-8,
//! HTTP-9) and handing them to `tx_body` to become `Op`s, off the async workers (HTTP-11), and
//! status codes (400 bad request, 404 unknown node or path, 405 wrong method, 408 body too slow,
//! 413 body or transaction too large). Every error answer is `{"error": "..."}` (HTTP-7), whoever
//! produced it.
//! Must not touch: sockets or files. It is an axum `Router` over a [`Database`]; the server
//! decides where it is served (through the `Net` seam), and applies the connection bounds of
//! [`HttpLimits`] that are not about one request.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value as Json_};
use tokio::sync::Semaphore;

use crate::db::Database;
use crate::graph::{Properties, Value};
use crate::io::{run_blocking, Blocking};
use crate::store::log::MAX_ENTRY;
use crate::store::{StoreError, TxRejection};

pub use super::tx_body::{parse_transaction, BodyError, MAX_OPS, MAX_VALUES};

/// The largest request body accepted (HTTP-4).
pub const MAX_BODY: usize = 16 << 20;

/// How many times its length a transaction body reserves of the body budget (HTTP-9): what
/// parsing makes of a body is a few times its size (a small object per op, 32 bytes per value).
pub const BODY_COST: usize = 8;

/// What the API serves, for the answer to a path it does not (HTTP-7).
const ROUTES: &str = "GET /db/data/, POST /db/data/transaction and GET /db/data/node/<id>";

/// The bounds of the HTTP API: what one client, or many, can take of the server (HTTP-8, HTTP-9,
/// SRV-8). The server applies those about connections; the API those about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// A connection must deliver a whole request head within this long of opening, or of its
    /// previous answer; else it is closed (HTTP-8). This is also how long an idle connection
    /// stays open.
    pub head_timeout: Duration,
    /// A request's body must arrive whole within this long of the server starting to read it;
    /// else it is answered 408 (HTTP-8).
    pub body_timeout: Duration,
    /// Connections served at once; more wait in the listen queue until one closes (HTTP-8).
    pub max_connections: usize,
    /// What transaction bodies being read, parsed or committed may cost at once, in bytes: each
    /// reserves [`BODY_COST`] times its length, at most [`MAX_BODY`] (HTTP-9).
    pub body_budget: usize,
    /// How long running requests may go on after shutdown is asked, before their connections
    /// are dropped (SRV-8).
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            head_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            max_connections: 512,
            body_budget: 2 * MAX_BODY,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What the routes share.
#[derive(Clone)]
struct Api {
    db: Arc<Database>,
    /// Where a body is parsed: off the async workers (HTTP-11).
    blocking: Arc<dyn Blocking>,
    limits: HttpLimits,
    /// Permits for the bytes of transaction bodies in flight (HTTP-9).
    bodies: Arc<Semaphore>,
}

impl FromRef<Api> for Arc<Database> {
    fn from_ref(api: &Api) -> Arc<Database> {
        api.db.clone()
    }
}

/// The API's routes over `db`; bodies are parsed on `blocking`.
pub fn router(db: Arc<Database>, blocking: Arc<dyn Blocking>, limits: HttpLimits) -> Router {
    let api = Api {
        db,
        blocking,
        limits,
        bodies: Arc::new(Semaphore::new(limits.body_budget)),
    };
    let api = Router::new()
        .route("/db/data/", get(status))
        .route("/db/data", get(status))
        .route("/db/data/transaction", post(transaction))
        .route("/db/data/node/{id}", get(node))
        .fallback(unknown_path)
        .with_state(api);
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
        if let StoreError::Rejected(TxRejection::TooLarge(bytes)) = e {
            return ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the transaction is too large to log: its entry would be {}, more than the {} one log entry may hold (LOG-4)",
                    crate::units::bytes(bytes as u64),
                    crate::units::bytes(MAX_ENTRY as u64)
                ),
            );
        }
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

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        let code = match e {
            BodyError::Invalid(_) => StatusCode::BAD_REQUEST,
            BodyError::TooMany { .. } | BodyError::TooLargeToLog => StatusCode::PAYLOAD_TOO_LARGE,
        };
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

async fn transaction(State(api): State<Api>, body: Body) -> Result<Json<Json_>, ApiError> {
    let declared = body.size_hint().exact();
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large_body());
    }
    // What the body may cost is reserved before it is read, and held until its commit is done
    // (HTTP-9): parsed, a body takes a few times its size, so it reserves BODY_COST times it, at
    // most MAX_BODY; a body sent without a length reserves MAX_BODY.
    let expected = declared.map_or(MAX_BODY, |n| n as usize);
    let reserve = expected.saturating_mul(BODY_COST).min(MAX_BODY);
    let _permit = match reserve {
        0 => None,
        n => Some(
            api.bodies
                .clone()
                .acquire_many_owned(n.min(api.limits.body_budget) as u32)
                .await
                .map_err(|_| {
                    ApiError(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server is shutting down".into(),
                    )
                })?,
        ),
    };
    let timeout = api.limits.body_timeout;
    let bytes = tokio::time::timeout(timeout, read_body(body, expected))
        .await
        .map_err(|_| {
            ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive whole within {}",
                    crate::units::duration(timeout)
                ),
            )
        })??;
    // Parsing a large body takes a while: off the async workers, like the commit (HTTP-11).
    let ops = run_blocking(&*api.blocking, move || parse_transaction(&bytes)).await?;
    let outcome = api.db.commit(ops).await?;
    Ok(Json(json!({ "tx_id": outcome.tx_id, "ids": outcome.ids })))
}

/// The answer to a body over [`MAX_BODY`] (HTTP-4).
fn too_large_body() -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {MAX_BODY} bytes"),
    )
}

/// Reads a body whole, refusing it once it passes [`MAX_BODY`]; `expected` bytes are allocated
/// at once.
async fn read_body(mut body: Body, expected: usize) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::with_capacity(expected.min(MAX_BODY));
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_BODY {
                return Err(too_large_body());
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    // HTTP-10: the store's refusal of a transaction too large to log answers 413, citing LOG-4.
    #[test]
    fn http_10_the_stores_too_large_is_413() {
        let ApiError(code, message) =
            StoreError::Rejected(TxRejection::TooLarge(70_000_000)).into();
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "HTTP-10");
        assert_eq!(
            message,
            format!(
                "the transaction is too large to log: its entry would be 66.8 MiB, more than the {} one log entry may hold (LOG-4)",
                crate::units::bytes(MAX_ENTRY as u64)
            ),
            "HTTP-10"
        );
    }
}
