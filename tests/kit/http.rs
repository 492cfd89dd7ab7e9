//! The HTTP/1.1 client of the server's API (spec/http.md), the one the simulations and the tests
//! share: one request per connection (`Connection: close`), the answer read to the end of the
//! stream. Enough for JSON requests and answers; nothing more.
//!
//! One implementation, [`exchange`], over any byte stream. [`request`] dials through a `Net`
//! seam and gives up after a timeout: in the simulations that is the host's `SimNet`, so every
//! byte is on the simulated network and in the trace (SIM-6) and a crashed or partitioned server
//! shows up as an error or a timeout, never a hang; the tests' synchronous helpers
//! (`tests/support/server.rs`) run it with `OsNet` on a current-thread runtime.

use std::fmt;
use std::io;
use std::time::Duration;

use online_backup::digest::Digest;
use online_backup::graph::{NodeRef, Op};
use online_backup::io::Net;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// An answer as it came: the status code, the headers (names in lower case) and the body.
#[derive(Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> io::Result<Json> {
        serde_json::from_slice(&self.body).map_err(|e| {
            bad(format!(
                "answer {} is not JSON ({e}): {}",
                self.status,
                self.text()
            ))
        })
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.text())
            .finish()
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Sends one request to `addr` (`host:port`), dialed through `net`, and reads the whole
/// answer, giving up after `timeout` in all.
pub async fn request(
    net: &dyn Net,
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> io::Result<Answer> {
    let dial_and_exchange = async {
        let mut stream = net.connect(addr).await?;
        exchange(&mut stream, addr, method, path, body).await
    };
    match tokio::time::timeout(timeout, dial_and_exchange).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer from {addr} within {timeout:?}"),
        )),
    }
}

/// `GET path` on `addr`.
pub async fn get(net: &dyn Net, addr: &str, path: &str, timeout: Duration) -> io::Result<Answer> {
    request(net, addr, "GET", path, b"", timeout).await
}

/// Sends one request on `stream` (to a server that `host` names, as the `Host` header says) and
/// reads the answer to the end of the stream.
///
/// A server may answer before it has read the whole body (413 for one too large) and close: the
/// answer is read even after a failed write, and the write's error counts only when no whole
/// answer came.
pub async fn exchange<S>(
    stream: &mut S,
    host: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> io::Result<Answer>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let bytes = request_bytes(host, method, path, body);
    let sent = async {
        stream.write_all(&bytes).await?;
        stream.flush().await
    }
    .await;
    read_answer(stream).await.map_err(|unparsed| match sent {
        Err(e) => e,
        Ok(()) => unparsed,
    })
}

/// The bytes of one request with `Connection: close`, as [`exchange`] sends them: a test that
/// must hold a request half-sent writes a prefix of them, and the rest later (or never).
pub fn request_bytes(host: &str, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads an answer to the end of the stream and parses it; a read error counts only when no
/// whole answer came before it.
pub async fn read_answer<S>(stream: &mut S) -> io::Result<Answer>
where
    S: AsyncRead + Unpin + ?Sized,
{
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let received = loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break Ok(()),
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) => break Err(e),
        }
    };
    parse_answer(&raw).map_err(|unparsed| match received {
        Err(e) => e,
        Ok(()) => unparsed,
    })
}

/// Parses a whole HTTP/1.1 answer: status line, headers, and a body delimited by
/// `Content-Length`, chunked encoding, or the end of the stream.
pub fn parse_answer(raw: &[u8]) -> io::Result<Answer> {
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
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(length) = header("content-length") {
        let n: usize = length
            .parse()
            .map_err(|_| bad(format!("a bad content-length {length:?}")))?;
        rest.get(..n)
            .ok_or_else(|| {
                bad(format!(
                    "the answer ended after {} of {n} body bytes",
                    rest.len()
                ))
            })?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The body of a chunked answer.
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
        let chunk = rest
            .get(..size)
            .ok_or_else(|| bad("the answer ended inside a chunk".into()))?;
        body.extend_from_slice(chunk);
        rest = rest
            .get(size + 2..)
            .ok_or_else(|| bad("a chunk without its line end".into()))?;
    }
}

/// What `GET /db/data/` reports (HTTP-1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub store_id: String,
    pub format_version: String,
    pub last_committed_tx: u64,
    pub nodes: u64,
    pub relationships: u64,
    pub digest: Digest,
    pub oldest_logged_tx: u64,
    pub log_bytes: u64,
}

impl Status {
    /// The status in an answer to `GET /db/data/`, which must be 200.
    pub fn from_answer(answer: &Answer) -> io::Result<Status> {
        if answer.status != 200 {
            return Err(bad(format!(
                "GET /db/data/ answered {}: {}",
                answer.status,
                answer.text()
            )));
        }
        Status::from_json(&answer.json()?)
    }

    pub fn from_json(doc: &Json) -> io::Result<Status> {
        let field = |name: &str| {
            doc.get(name)
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
            nodes: number("nodes")?,
            relationships: number("relationships")?,
            digest: Digest::from_hex(&digest_hex)
                .ok_or_else(|| bad(format!("the status's digest {digest_hex:?} is not hex")))?,
            oldest_logged_tx: number("oldest_logged_tx")?,
            log_bytes: number("log_bytes")?,
        })
    }
}

/// `GET /db/data/`.
pub async fn status(net: &dyn Net, addr: &str, timeout: Duration) -> io::Result<Status> {
    Status::from_answer(&get(net, addr, "/db/data/", timeout).await?)
}

/// The answer to `POST /db/data/transaction`: the tx id and the ids created, or the answer as
/// it came when it is anything else (a refusal, or a 200 that is no commit answer).
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
        body.as_bytes(),
        timeout,
    )
    .await?;
    Ok(committed(&answer).ok_or(answer))
}

/// The tx id and ids of a 200 answer to a transaction.
fn committed(answer: &Answer) -> Option<(u64, Vec<u64>)> {
    if answer.status != 200 {
        return None;
    }
    let doc = answer.json().ok()?;
    let tx_id = doc.get("tx_id")?.as_u64()?;
    let ids = doc
        .get("ids")?
        .as_array()?
        .iter()
        .map(Json::as_u64)
        .collect::<Option<Vec<u64>>>()?;
    Some((tx_id, ids))
}

/// `{"ops": [...]}` for `ops`, as HTTP-2 and HTTP-3 spell them: the one encoder of `Op`s.
pub fn transaction_json(ops: &[Op]) -> Json {
    json!({ "ops": ops.iter().map(op_json).collect::<Vec<_>>() })
}

/// One op as `POST /db/data/transaction` takes it.
fn op_json(op: &Op) -> Json {
    match op {
        Op::CreateNode { labels, props } => {
            json!({ "create_node": { "labels": labels, "props": value_json(props) } })
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
            "props": value_json(props),
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

/// A node by id, or `"$i"`: the node op `i` of the same transaction created.
fn node_ref_json(r: &NodeRef) -> Json {
    match r {
        NodeRef::Id(id) => json!(id),
        NodeRef::CreatedBy(i) => json!(format!("${i}")),
    }
}

/// A value or a property map, by the values' own `Serialize` (untagged: `null`, booleans,
/// numbers, strings, lists). serde_json writes the shortest text that reads back to the same
/// bits, so a float survives whenever the server's parser is exact for it.
fn value_json<T: serde::Serialize>(v: &T) -> Json {
    serde_json::to_value(v).expect("values are JSON")
}
