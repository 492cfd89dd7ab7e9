//! The `neo4j` server against hostile and heavy clients: idle and half-sent connections, a
//! shortage of file descriptors, large bodies (spec/http.md HTTP-8 on, LOG-11, SRV-8). The real
//! binary, real TCP, real files; the timeouts that would take a production server's seconds are
//! checked in process, with short ones.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use online_backup::config::Config;
use online_backup::io::os::OsNet;
use online_backup::io::Env;
use online_backup::server::http::{HttpLimits, MAX_BODY};
use online_backup::server::{run, Bound, ServerOptions};
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

// LOG-11: with 256 file descriptors and 500 idle connections taking every one of them, a commit
// whose log passes the rotation threshold stands, the rotation waits, and once the connections
// leave the store commits again and rotates, without a restart. Before, the failed rotation
// stopped the store: every later commit answered 503 "stopped accepting writes" until restart.
#[test]
fn log_11_a_descriptor_shortage_defers_rotation() {
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
        "LOG-11: the commit stands whatever its rotation does: {answer:?}"
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
            "LOG-11: once the connections left, the store commits again without a restart: {out}"
        );
    }
    assert!(
        log_files(&store) >= 2,
        "LOG-11: the deferred rotation happened once descriptors were free"
    );
    assert_eq!(server.get("/db/data/").1["last_committed_tx"], 5);
    assert_eq!(server.terminate(), Some(0));
    check_is_consistent(&store);
}

// SRV-8: SIGTERM while one request's body and another's head are half-sent: the server stops
// within its shutdown deadline (10 s) rather than waiting for them forever, checkpoints, says it
// stopped cleanly and exits 0.
#[test]
fn srv_8_sigterm_completes_while_requests_are_half_sent() {
    let dir = scratch();
    let store = dir.path().join("db");
    let mut server = ServerProcess::start(&store, Some(EPHEMERAL));
    let (code, out) = server.post("/db/data/transaction", r#"{"ops": [{"create_node": {}}]}"#);
    assert_eq!(code, 200, "{out}");

    let request = http::request_bytes(
        &server.http,
        "POST",
        "/db/data/transaction",
        br#"{"ops": [{"create_node": {"labels": ["Half"]}}]}"#,
    );
    let mut half_body = TcpStream::connect(&server.http).unwrap();
    half_body.write_all(&request[..request.len() - 10]).unwrap();
    let mut half_head = TcpStream::connect(&server.http).unwrap();
    half_head
        .write_all(b"POST /db/data/transaction HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Connections are accepted in order: once a later one is answered, both were accepted; a
    // moment more and the server has read what they sent.
    assert_eq!(server.get("/db/data/").0, 200);
    std::thread::sleep(Duration::from_millis(300));

    let asked = Instant::now();
    server.sigterm();
    match server.wait_exit_within(Duration::from_secs(60)) {
        Ok(code) => assert_eq!(code, Some(0), "SRV-8: {}", server.stderr()),
        Err(()) => panic!(
            "SRV-8: 60 s after SIGTERM the server still runs, held by half-sent requests: {}",
            server.stderr()
        ),
    }
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "SRV-8: the server took {:?} to stop",
        asked.elapsed()
    );
    assert!(
        server.stdout().contains("neo4j: stopped cleanly"),
        "SRV-8: {}",
        server.stdout()
    );
    let meta = std::fs::read(store.join("neostore.meta")).unwrap();
    assert_eq!(
        u64::from_le_bytes(meta[32..40].try_into().unwrap()),
        1,
        "SRV-8: the store was checkpointed at its last tx (ST-10)"
    );
    drop((half_body, half_head));
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

/// A server running in this process with `limits` (real TCP and files), for the bounds whose
/// production values are too long for a test; it stops when the runtime is dropped.
struct InProcess {
    http: String,
    _runtime: tokio::runtime::Runtime,
}

fn in_process(store: &std::path::Path, limits: HttpLimits) -> InProcess {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (config, _) = Config::parse(EPHEMERAL).unwrap();
    let options = ServerOptions {
        store_dir: store.to_path_buf(),
        config,
        create_random: 5,
        http: limits,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let ready = move |b: &Bound| ready_tx.send(b.http.to_string()).unwrap();
        run(Env::os(), options, std::future::pending(), ready)
            .await
            .unwrap();
    });
    let http = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server started");
    InProcess {
        http,
        _runtime: runtime,
    }
}

/// Whether the server closes `stream` within 20 s, reading and dropping whatever it sends.
fn closed_by_server(mut stream: TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink).is_ok()
}

// HTTP-8: a connection that sends nothing, or half a request head, is closed once the head
// timeout has passed since it opened (half a second here, 30 s in production); before, both
// stayed open for ever, each holding a descriptor.
#[test]
fn http_8_a_connection_without_a_whole_head_is_closed() {
    let dir = scratch();
    let server = in_process(
        &dir.path().join("db"),
        HttpLimits {
            head_timeout: Duration::from_millis(500),
            ..HttpLimits::default()
        },
    );
    let silent = TcpStream::connect(&server.http).unwrap();
    let mut half = TcpStream::connect(&server.http).unwrap();
    half.write_all(b"GET /db/data/ HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert!(
        closed_by_server(silent),
        "HTTP-8: a silent connection is closed"
    );
    assert!(
        closed_by_server(half),
        "HTTP-8: a connection with half a head is closed"
    );
    let (code, _) = support::server::request(&server.http, "GET", "/db/data/", b"");
    assert_eq!(code, 200, "HTTP-8: a whole request is answered");
}

// HTTP-8: a body that does not arrive whole within the body timeout (half a second here, 60 s
// in production) is answered 408 with a sentence, and nothing is applied.
#[test]
fn http_8_a_body_that_does_not_arrive_is_408() {
    let dir = scratch();
    let server = in_process(
        &dir.path().join("db"),
        HttpLimits {
            body_timeout: Duration::from_millis(500),
            ..HttpLimits::default()
        },
    );
    let request = http::request_bytes(
        &server.http,
        "POST",
        "/db/data/transaction",
        br#"{"ops": [{"create_node": {}}]}"#,
    );
    let mut slow = TcpStream::connect(&server.http).unwrap();
    slow.write_all(&request[..request.len() - 5]).unwrap();
    let answer = answer_on(slow);
    assert_eq!(answer.status, 408, "HTTP-8: {answer:?}");
    let error = answer.json().unwrap()["error"].clone();
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("did not arrive whole within 500ms")),
        "HTTP-8: {error}"
    );
    let (_, status) = support::server::request(&server.http, "GET", "/db/data/", b"");
    assert_eq!(status["last_committed_tx"], 0, "HTTP-8: nothing applied");
}

// HTTP-8: beyond the connection limit (4 here, 512 in production) a connection waits in the
// listen queue, unserved, until one of the others closes.
#[test]
fn http_8_connections_beyond_the_limit_wait() {
    let dir = scratch();
    let server = in_process(
        &dir.path().join("db"),
        HttpLimits {
            max_connections: 4,
            ..HttpLimits::default()
        },
    );
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&server.http).unwrap())
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let waited = runtime.block_on(http::get(
        &OsNet,
        &server.http,
        "/db/data/",
        Duration::from_secs(1),
    ));
    assert!(
        waited.is_err(),
        "HTTP-8: a fifth connection is not served while four are open: {waited:?}"
    );
    drop(idle.pop());
    let (code, _) = support::server::request(&server.http, "GET", "/db/data/", b"");
    assert_eq!(code, 200, "HTTP-8: served once one of the four closed");
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

// HTTP-9: a transaction request reserves 8 times its body's length out of the body budget
// (1 KiB here, 32 MiB in production) before reading it: while one request half-sent holds most
// of it, a second waits, unanswered, and is answered once the first is done.
#[test]
fn http_9_bodies_wait_for_their_share_of_the_budget() {
    let dir = scratch();
    let server = in_process(
        &dir.path().join("db"),
        HttpLimits {
            body_budget: 1024,
            ..HttpLimits::default()
        },
    );
    // 8 times 100 bytes is 800: two such bodies do not fit in 1 KiB.
    let body = |label: &str| {
        let text = format!(r#"{{"ops": [{{"create_node": {{"labels": ["{label}"]}}}}]}}"#);
        format!("{text:<100}")
    };
    let (first, second) = (body("First"), body("Second"));
    assert_eq!((first.len(), second.len()), (100, 100));
    let request = http::request_bytes(
        &server.http,
        "POST",
        "/db/data/transaction",
        first.as_bytes(),
    );
    let mut held = TcpStream::connect(&server.http).unwrap();
    held.write_all(&request[..request.len() - 1]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let addr = server.http.clone();
    let waiting = std::thread::spawn(move || {
        support::server::request(&addr, "POST", "/db/data/transaction", second.as_bytes())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !waiting.is_finished(),
        "HTTP-9: a second body is not read while the first holds the budget"
    );
    held.write_all(&request[request.len() - 1..]).unwrap();
    let answer = answer_on(held);
    assert_eq!(answer.status, 200, "HTTP-9: {answer:?}");
    let (code, out) = waiting.join().unwrap();
    assert_eq!(
        code, 200,
        "HTTP-9: the second is answered once the first is done: {out}"
    );
    assert_eq!(out["tx_id"], 2, "HTTP-9: {out}");
}
