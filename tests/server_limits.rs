//! The `neo4j` server against hostile and heavy clients: a shortage of file descriptors, large
//! bodies (LOG-10, spec/http.md HTTP-9 on). The real binary, real TCP, real files.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use online_backup::server::http::MAX_BODY;
use online_backup::store::log::MAX_ENTRY;
use support::kit::http;
use support::scratch;
use support::server::{Answer, ServerProcess};

/// A config on ephemeral ports, so tests can run in parallel.
const EPHEMERAL: &str = "http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:0\n";

/// Reads what the server sends on `stream` until it closes, and parses it as an answer.
fn answer_on(mut stream: TcpStream) -> Answer {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    http::parse_answer(&raw).unwrap_or_else(|e| panic!("no whole answer: {e}"))
}

/// Opens `n` connections to `addr` at once that send nothing, and returns those that connected
/// within two seconds: once the server accepts no more, its listen queue (128) fills and further
/// connects wait.
fn idle_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut connects = tokio::task::JoinSet::new();
        for _ in 0..n {
            let addr = addr.to_string();
            connects.spawn(tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(addr),
            ));
        }
        let mut open = Vec::new();
        while let Some(connected) = connects.join_next().await {
            if let Ok(Ok(Ok(stream))) = connected {
                open.push(stream.into_std().unwrap());
            }
        }
        open
    })
}

/// The log files of a store directory.
fn log_files(store: &std::path::Path) -> usize {
    std::fs::read_dir(store)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("neostore.transaction.db.")
        })
        .count()
}

fn check_is_consistent(store: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_neo4j-admin"))
        .args(["check", "--json"])
        .arg(store)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["consistent"],
        true,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// LOG-10: with 256 file descriptors and 500 idle connections taking every one of them, a commit
// whose log passes the rotation threshold stands, the rotation waits, and once the connections
// leave the store commits again and rotates, without a restart. Before, the failed rotation
// stopped the store: every later commit answered 503 "stopped accepting writes" until restart.
#[test]
fn log_10_a_descriptor_shortage_defers_rotation() {
    let dir = scratch();
    let store = dir.path().join("db");
    let config = format!("{EPHEMERAL}logical_log_rotation_threshold=1k\n");
    let server = ServerProcess::start(&store, Some(&config));
    server.limit_open_files(256);
    let (code, out) = server.post("/db/data/transaction", r#"{"ops": [{"create_node": {}}]}"#);
    assert_eq!(code, 200, "{out}");

    // A commit whose entry takes the log past 1 KiB, held one byte short of its end.
    let body = format!(
        r#"{{"ops": [{{"create_node": {{"props": {{"pad": "{}"}}}}}}]}}"#,
        "p".repeat(2000)
    );
    let request = http::request_bytes(
        &server.http,
        "POST",
        "/db/data/transaction",
        body.as_bytes(),
    );
    let mut held = TcpStream::connect(&server.http).unwrap();
    held.write_all(&request[..request.len() - 1]).unwrap();

    // 500 idle connections: more than the server has descriptors for.
    let hostile = idle_connections(&server.http, 500);
    assert!(hostile.len() > 256, "{} connections only", hostile.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server
        .stderr()
        .contains("accepting an HTTP connection failed")
    {
        assert!(
            Instant::now() < deadline,
            "the server never ran out of descriptors ({} open): {}",
            server.open_files(),
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The held commit lands while no descriptor is free: its rotation cannot create a file.
    held.write_all(&request[request.len() - 1..]).unwrap();
    let answer = answer_on(held);
    assert_eq!(
        answer.status, 200,
        "LOG-10: the commit stands whatever its rotation does: {answer:?}"
    );
    assert_eq!(log_files(&store), 1, "no rotation without a descriptor");

    drop(hostile);
    for i in 0..3 {
        let (code, out) = server.post(
            "/db/data/transaction",
            &format!(r#"{{"ops": [{{"create_node": {{"props": {{"i": {i}}}}}}}]}}"#),
        );
        assert_eq!(
            code, 200,
            "LOG-10: once the connections left, the store commits again without a restart: {out}"
        );
    }
    assert!(
        log_files(&store) >= 2,
        "LOG-10: the deferred rotation happened once descriptors were free"
    );
    assert_eq!(server.get("/db/data/").1["last_committed_tx"], 5);
    assert_eq!(server.terminate(), Some(0));
    check_is_consistent(&store);
}

/// `{"ops": [{"create_node": {"props": {"z": [0, 0, ...]}}}]}`, `bytes` long: a body of zeros.
fn zeros_body(bytes: usize) -> String {
    let head = r#"{"ops": [{"create_node": {"props": {"z": [0"#;
    let tail = "]}}}]}";
    let zeros = (bytes - head.len() - tail.len()) / 2;
    let mut body = String::with_capacity(bytes);
    body.push_str(head);
    for _ in 0..zeros {
        body.push_str(",0");
    }
    body.push_str(tail);
    body
}

// HTTP-9, HTTP-10, LOG-4: four bodies of 16 MiB of zeros at once (8 million integers each,
// whose log entry would be over LOG-4's bound) are refused with 413 naming LOG-4, and they raise
// the server's peak memory by less than 160 MiB. Before, each cost 40 times its size: four at
// once, 1.5 GB, answered by a 400 once the store had built the whole entry.
#[test]
fn http_9_large_bodies_cost_bounded_memory() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let (code, out) = server.post("/db/data/transaction", r#"{"ops": [{"create_node": {}}]}"#);
    assert_eq!(code, 200, "{out}");
    let body = zeros_body(MAX_BODY - 1024);
    assert!(
        (body.len() / 2) * 9 > MAX_ENTRY as usize,
        "the zeros' payload is over the entry bound"
    );
    let before = server.peak_rss_kib();
    let posts: Vec<_> = (0..4)
        .map(|_| {
            let (addr, body) = (server.http.clone(), body.clone());
            std::thread::spawn(move || {
                support::server::request(&addr, "POST", "/db/data/transaction", body.as_bytes())
            })
        })
        .collect();
    for post in posts {
        let (code, out) = post.join().unwrap();
        assert_eq!(code, 413, "HTTP-10: {out}");
        let error = out["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("too large to log") && error.contains("LOG-4"),
            "HTTP-10: the error says the transaction is too large to log and cites LOG-4: {error}"
        );
    }
    let grown_mib = (server.peak_rss_kib() - before) / 1024;
    assert!(
        grown_mib < 160,
        "HTTP-9: four 16 MiB bodies at once raised the server's peak memory by {grown_mib} MiB"
    );
    assert_eq!(server.get("/db/data/").1["last_committed_tx"], 1);
}

// HTTP-11: while four 16 MiB bodies are read, parsed and refused, `GET /db/data/` is answered
// within a second each time: parsing and committing run off the async workers. Before, the
// parsing ran on them and stalled every other request for seconds.
#[test]
fn http_11_small_requests_are_answered_while_large_bodies_are_parsed() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let body = zeros_body(MAX_BODY - 1024);
    let posts: Vec<_> = (0..4)
        .map(|_| {
            let (addr, body) = (server.http.clone(), body.clone());
            std::thread::spawn(move || {
                support::server::request(&addr, "POST", "/db/data/transaction", body.as_bytes())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while !posts.iter().all(|p| p.is_finished()) {
        let asked = Instant::now();
        assert_eq!(server.get("/db/data/").0, 200);
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    for post in posts {
        post.join().unwrap();
    }
    assert!(
        slowest < Duration::from_secs(1),
        "HTTP-11: a status read waited {slowest:?} behind large bodies"
    );
}

// HTTP-9: through the server, a transaction of 10,001 ops, or of 1,000,001 values, answers 413
// with the limit in its sentence, and nothing is applied; 10,000 ops commit.
#[test]
fn http_9_too_many_ops_or_values_is_413() {
    use online_backup::server::http::{MAX_OPS, MAX_VALUES};
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let nodes = |n: usize| {
        format!(
            r#"{{"ops": [{}]}}"#,
            vec![r#"{"create_node": {}}"#; n].join(",")
        )
    };
    let nulls = format!(
        r#"{{"ops": [{{"create_node": {{"props": {{"l": [{}]}}}}}}]}}"#,
        vec!["null"; MAX_VALUES].join(",")
    );
    for (body, says) in [
        (nodes(MAX_OPS + 1), "more than 10000 ops"),
        (nulls, "more than 1000000 values"),
    ] {
        let (code, out) = server.post("/db/data/transaction", &body);
        let error = out["error"].as_str().unwrap_or_default();
        assert_eq!(code, 413, "HTTP-9: {out}");
        assert!(error.contains(says), "HTTP-9: {error}");
    }
    assert_eq!(server.get("/db/data/").1["last_committed_tx"], 0);
    let (code, out) = server.post("/db/data/transaction", &nodes(MAX_OPS));
    assert_eq!(code, 200, "HTTP-9: {MAX_OPS} ops commit: {out}");
}
