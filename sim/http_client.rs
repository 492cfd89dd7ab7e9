//! A small HTTP/1.1 client for the server scenarios: one request per connection
//! (`Connection: close`), through a host's `Net` seam, so every byte is on the simulated network
//! and in the trace. It reads the whole answer and parses the status and the JSON body; that is
//! all the scenarios need from the server's API (spec/http.md).

use std::io::{self, ErrorKind};

use online_backup::io::Net;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer: the status code, the `Date` header if any, and the body parsed as JSON (`null`
/// when empty).
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub date: Option<String>,
    pub body: Json,
}

/// `GET path` on the server at `addr` (`host:port`).
pub async fn get(net: &dyn Net, addr: &str, path: &str) -> io::Result<Response> {
    request(net, addr, "GET", path, None).await
}

/// `POST path` with a JSON body.
pub async fn post_json(net: &dyn Net, addr: &str, path: &str, body: &Json) -> io::Result<Response> {
    let body = serde_json::to_vec(body).map_err(io::Error::other)?;
    request(net, addr, "POST", path, Some(&body)).await
}

async fn request(
    net: &dyn Net,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> io::Result<Response> {
    let mut stream = net.connect(addr).await?;
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(body) = body {
        out.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    parse_response(&answer)
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.into())
}

/// Parses a whole HTTP/1.1 answer: status line, headers, and a body delimited by
/// `Content-Length`, chunked, or the end of the connection.
pub fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            invalid(format!(
                "an answer without a whole head ({} bytes)",
                raw.len()
            ))
        })?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| invalid("a head not in UTF-8"))?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("status line {status_line:?}")))?;
    let mut content_length = None;
    let mut chunked = false;
    let mut date = None;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("header line {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| invalid(format!("content-length {value:?}")))?;
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("date") {
            date = Some(value.to_string());
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = content_length {
        rest.get(..n)
            .ok_or_else(|| invalid(format!("a body of {} bytes, {n} announced", rest.len())))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    let body = if body.is_empty() {
        Json::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("a body that is not JSON: {e}")))?
    };
    Ok(Response { status, date, body })
}

/// The body of a chunked answer.
fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("a chunk without its size line"))?;
        let size_text =
            std::str::from_utf8(&rest[..line_end]).map_err(|_| invalid("chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("chunk size {size_text:?}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| invalid("a chunk cut short"))?;
        body.extend_from_slice(chunk);
        rest = rest
            .get(size + 2..)
            .ok_or_else(|| invalid("a chunk without its line end"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_sized_answer() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n{\"tx_id\":3}";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.date.as_deref(), Some("Mon, 01 Jan 2024 00:00:00 GMT"));
        assert_eq!(r.body["tx_id"], 3);
    }

    #[test]
    fn parses_a_chunked_answer() {
        let raw = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body["a"], 1);
    }

    #[test]
    fn refuses_a_cut_answer() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n{}";
        assert!(parse_response(raw).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
