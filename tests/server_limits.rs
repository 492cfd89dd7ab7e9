//! The `neo4j` server against hostile and heavy clients: a shortage of file descriptors
//! (LOG-10). The real binary, real TCP, real files.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

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
