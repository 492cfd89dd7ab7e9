//! A tiny HTTP/1.1 client over the `Net` seam, for simulated hosts that talk to the server's
//! HTTP API (spec/http.md): one request per connection (`Connection: close`), the answer read
//! to the end of the stream. Enough for JSON requests and answers; nothing more.
//!
//! Every byte goes through `SimNet`, so requests and answers are trace records (SIM-6) and a
//! crashed or partitioned server shows up as an error or a timeout, never a hang.

use std::io;
use std::time::Duration;

use online_backup::digest::Digest;
use online_backup::graph::{NodeRef, Op, Properties, Value};
use online_backup::io::Net;
use serde_json::{json, Map, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer: the status code and the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> io::Result<Json> {
        serde_json::from_slice(&self.body).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "answer {} is not JSON ({e}): {}",
                    self.status,
                    String::from_utf8_lossy(&self.body)
                ),
            )
        })
    }
}

/// Sends one request to `addr` (`host:port`) and reads the whole answer, giving up after
/// `timeout` in all.
pub async fn request(
    net: &dyn Net,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Answer> {
    match tokio::time::timeout(timeout, exchange(net, addr, method, path, body)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer from {addr} within {timeout:?}"),
        )),
    }
}

async fn exchange(
    net: &dyn Net,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> io::Result<Answer> {
    let mut stream = net.connect(addr).await?;
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let body = body.unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_answer(&raw)
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Parses a whole HTTP/1.1 answer: status line, headers, and a body delimited by
/// `Content-Length`, chunked encoding, or the end of the stream.
fn parse_answer(raw: &[u8]) -> io::Result<Answer> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "an answer without a header end ({} bytes)",
                raw.len()
            ))
        })?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|e| bad(e.to_string()))?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("a bad status line: {status_line:?}")))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|e| bad(e.to_string()))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        if rest.len() < n {
            return Err(bad(format!(
                "the answer ended after {} of {n} body bytes",
                rest.len()
            )));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer { status, body })
}

fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("a chunk without a size line".into()))?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|e| bad(e.to_string()))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| bad(format!("a bad chunk size {size_text:?}: {e}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err(bad("the answer ended inside a chunk".into()));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// What `GET /db/data/` reports (HTTP-1), the fields the simulations use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub store_id: String,
    pub format_version: String,
    pub last_committed_tx: u64,
    pub digest: Digest,
    pub oldest_logged_tx: u64,
}

/// `GET /db/data/`.
pub async fn status(net: &dyn Net, addr: &str, timeout: Duration) -> io::Result<Status> {
    let answer = request(net, addr, "GET", "/db/data/", None, timeout).await?;
    if answer.status != 200 {
        return Err(bad(format!(
            "GET /db/data/ answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )));
    }
    let doc = answer.json()?;
    let field = |name: &str| {
        doc.get(name)
            .cloned()
            .ok_or_else(|| bad(format!("the status has no {name}: {doc}")))
    };
    let number = |name: &str| {
        field(name)?
            .as_u64()
            .ok_or_else(|| bad(format!("the status's {name} is not a number: {doc}")))
    };
    let text = |name: &str| {
        field(name)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(format!("the status's {name} is not a string: {doc}")))
    };
    let digest_hex = text("digest")?;
    Ok(Status {
        store_id: text("store_id")?,
        format_version: text("format_version")?,
        last_committed_tx: number("last_committed_tx")?,
        digest: Digest::from_hex(&digest_hex)
            .ok_or_else(|| bad(format!("the status's digest {digest_hex:?} is not hex")))?,
        oldest_logged_tx: number("oldest_logged_tx")?,
    })
}

/// The answer to `POST /db/data/transaction`: the tx id and the ids created, or the status and
/// body of a refusal.
pub type Committed = Result<(u64, Vec<u64>), Answer>;

/// `POST /db/data/transaction` with `ops` (HTTP-2).
pub async fn commit(
    net: &dyn Net,
    addr: &str,
    ops: &[Op],
    timeout: Duration,
) -> io::Result<Committed> {
    let body = transaction_json(ops).to_string();
    let answer = request(
        net,
        addr,
        "POST",
        "/db/data/transaction",
        Some(body.as_bytes()),
        timeout,
    )
    .await?;
    if answer.status != 200 {
        return Ok(Err(answer));
    }
    let doc = answer.json()?;
    let tx_id = doc
        .get("tx_id")
        .and_then(Json::as_u64)
        .ok_or_else(|| bad(format!("the commit answer has no tx_id: {doc}")))?;
    let ids = doc
        .get("ids")
        .and_then(Json::as_array)
        .ok_or_else(|| bad(format!("the commit answer has no ids: {doc}")))?
        .iter()
        .map(|v| v.as_u64().ok_or_else(|| bad(format!("a bad id in {doc}"))))
        .collect::<io::Result<Vec<u64>>>()?;
    Ok(Ok((tx_id, ids)))
}

/// `{"ops": [...]}` for `ops`, as HTTP-2 spells them.
pub fn transaction_json(ops: &[Op]) -> Json {
    let ops: Vec<Json> = ops.iter().map(op_json).collect();
    json!({ "ops": ops })
}

fn node_ref_json(r: &NodeRef) -> Json {
    match r {
        NodeRef::Id(id) => json!(id),
        NodeRef::CreatedBy(i) => json!(format!("${i}")),
    }
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        // serde_json writes the shortest text that reads back to the same bits; the simulations
        // only use floats that parse exactly (quarters), whatever the parser's precision.
        Value::Float(f) => json!(f),
        Value::String(s) => json!(s),
        Value::List(items) => Json::Array(items.iter().map(value_json).collect()),
    }
}

fn props_json(props: &Properties) -> Json {
    Json::Object(
        props
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect::<Map<String, Json>>(),
    )
}

fn op_json(op: &Op) -> Json {
    match op {
        Op::CreateNode { labels, props } => {
            json!({ "create_node": { "labels": labels, "props": props_json(props) } })
        }
        Op::CreateRelationship {
            from,
            to,
            rel_type,
            props,
        } => json!({ "create_relationship": {
            "from": node_ref_json(from),
            "to": node_ref_json(to),
            "type": rel_type,
            "props": props_json(props),
        } }),
        Op::SetProperty { node, key, value } => json!({ "set_property": {
            "node": node_ref_json(node),
            "key": key,
            "value": value_json(value),
        } }),
        Op::DeleteNode(id) => json!({ "delete_node": id }),
        Op::DeleteRelationship(id) => json!({ "delete_relationship": id }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(
            parse_answer(plain).unwrap(),
            Answer {
                status: 200,
                body: b"{}".to_vec()
            }
        );
        let chunked =
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            parse_answer(chunked).unwrap(),
            Answer {
                status: 400,
                body: b"abcde".to_vec()
            }
        );
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab").is_err());
    }

    #[test]
    fn ops_round_trip_through_the_servers_parser() {
        // HTTP-2, HTTP-3: what this client sends is what the server reads.
        let ops = vec![
            Op::CreateNode {
                labels: vec!["Person".into()],
                props: [
                    ("age".to_string(), Value::Int(-3)),
                    ("score".to_string(), Value::Float(-12.25)),
                    (
                        "tags".to_string(),
                        Value::List(vec![
                            Value::Null,
                            Value::Bool(true),
                            Value::String("x".into()),
                        ]),
                    ),
                ]
                .into_iter()
                .collect(),
            },
            Op::CreateRelationship {
                from: NodeRef::CreatedBy(0),
                to: NodeRef::Id(4),
                rel_type: "KNOWS".into(),
                props: Properties::new(),
            },
            Op::SetProperty {
                node: NodeRef::Id(2),
                key: "name".into(),
                value: Value::String("n\"q".into()),
            },
            Op::DeleteRelationship(7),
            Op::DeleteNode(9),
        ];
        let text = transaction_json(&ops).to_string();
        let parsed = online_backup::server::http::parse_transaction(text.as_bytes()).unwrap();
        assert_eq!(parsed, ops);
    }
}
