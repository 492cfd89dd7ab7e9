//! The `neo4j` server as operators and applications use it: the real binary, real TCP, real
//! files.

mod support;

use std::process::Command;

use serde_json::json;
use support::scratch;
use support::server::{assert_log_lines_are_sentences, ServerProcess};

/// A config on ephemeral ports, so tests can run in parallel.
const EPHEMERAL: &str = "http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:0\n";

fn check_json(store: &std::path::Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_neo4j-admin"))
        .args(["check", "--json"])
        .arg(store)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

// HTTP-1, HTTP-2, HTTP-3, HTTP-5, SRV-1: a new store; nodes, relationships with "$i"
// references, property updates, deletes; reads; refusals apply nothing.
#[test]
fn http_2_writes_and_reads_over_http() {
    let dir = scratch();
    let store = dir.path().join("db");
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let (code, status) = server.get("/db/data/");
    assert_eq!(code, 200);
    assert_eq!(status["last_committed_tx"], 0);
    assert_eq!(status["format_version"], "2");

    let (code, out) = server.post(
        "/db/data/transaction",
        r#"{"ops": [
            {"create_node": {"labels": ["Person"], "props": {"name": "Ada", "born": 1815}}},
            {"create_node": {"labels": ["Person"], "props": {"name": "Charles"}}},
            {"create_relationship": {"from": "$0", "to": "$1", "type": "KNOWS", "props": {"since": 1833}}}
        ]}"#,
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(out, json!({"tx_id": 1, "ids": [0, 1, 0]}));
    let (code, out) = server.post(
        "/db/data/transaction",
        r#"{"ops": [{"set_property": {"node": 0, "key": "tags", "value": ["math", 1.5, null]}}]}"#,
    );
    assert_eq!((code, &out["tx_id"]), (200, &json!(2)), "{out}");
    let (code, node) = server.get("/db/data/node/0");
    assert_eq!(code, 200, "HTTP-5: {node}");
    assert_eq!(
        node,
        json!({
            "id": 0,
            "labels": ["Person"],
            "properties": {"name": "Ada", "born": 1815, "tags": ["math", 1.5, null]},
            "relationships": [0],
        }),
        "HTTP-5: the node's id, labels, properties and relationships"
    );
    assert_eq!(
        server.get("/db/data/node/1").1["relationships"],
        json!([0]),
        "HTTP-3: \"$0\" and \"$1\" named the nodes ops 0 and 1 created"
    );

    // Refusals: 400 with an error, nothing applied.
    let before = server.get("/db/data/").1;
    for bad in [
        r#"{"ops": [{"create_node": {}}, {"delete_node": 0}]}"#,
        r#"{"ops": [{"create_relationship": {"from": "$3", "to": 0, "type": "X"}}]}"#,
        r#"{"ops": [{"delete_relationship": 99}]}"#,
        r#"{"ops": "nope"}"#,
        r#"not json"#,
    ] {
        let (code, out) = server.post("/db/data/transaction", bad);
        assert_eq!(code, 400, "{bad}: {out}");
        assert!(
            out["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{out}"
        );
    }
    // HTTP-3: "$i" must name an earlier op, and one that creates a node.
    for (bad, says) in [
        (
            r#"{"ops": [{"create_relationship": {"from": "$1", "to": 0, "type": "X"}}, {"create_node": {}}]}"#,
            "must name an earlier op",
        ),
        (
            r#"{"ops": [{"create_relationship": {"from": 0, "to": 1, "type": "X"}}, {"set_property": {"node": "$0", "key": "k", "value": 1}}]}"#,
            "must name an earlier create_node op",
        ),
    ] {
        let (code, out) = server.post("/db/data/transaction", bad);
        assert_eq!(
            (
                code,
                out["error"].as_str().is_some_and(|e| e.contains(says))
            ),
            (400, true),
            "HTTP-3: {bad}: {out}"
        );
    }
    assert_eq!(server.get("/db/data/").1, before);

    // HTTP-5: unknown node.
    assert_eq!(server.get("/db/data/node/42").0, 404, "HTTP-5: no node 42");
    assert_eq!(
        server.get("/db/data/node/abc").0,
        404,
        "HTTP-5: an id that is not a number"
    );

    // Deletes in order: the relationship, then the node.
    let (code, out) = server.post(
        "/db/data/transaction",
        r#"{"ops": [{"delete_relationship": 0}, {"delete_node": 1}]}"#,
    );
    assert_eq!(code, 200, "{out}");
    let (_, status) = server.get("/db/data/");
    assert_eq!(
        (status["nodes"].clone(), status["relationships"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(server.terminate(), Some(0));
}

// HTTP-2: an integer beyond i64, in a property, a list or a set_property, is refused with 400
// naming the op and the property, and nothing is applied; i64's own bounds are integers, and a
// number with a fraction or an exponent is a float. Before, an integer beyond u64 or below
// i64::MIN was stored as a float.
#[test]
fn http_2_integers_outside_i64_are_refused() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    assert_eq!(
        server
            .post("/db/data/transaction", r#"{"ops": [{"create_node": {}}]}"#)
            .0,
        200
    );
    for n in [
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
    ] {
        for body in [
            format!(r#"{{"ops": [{{"create_node": {{"props": {{"n": {n}}}}}}}]}}"#),
            format!(r#"{{"ops": [{{"create_node": {{"props": {{"n": [1, {n}]}}}}}}]}}"#),
            format!(r#"{{"ops": [{{"set_property": {{"node": 0, "key": "n", "value": {n}}}}}]}}"#),
        ] {
            let (code, out) = server.post("/db/data/transaction", &body);
            let error = out["error"].as_str().unwrap_or_default();
            assert_eq!(code, 400, "HTTP-2: {body}: {out}");
            assert!(
                error.starts_with("op 0: ") && error.contains("signed 64-bit range"),
                "HTTP-2: the error names the op and the range: {error}"
            );
        }
    }
    assert_eq!(server.get("/db/data/").1["last_committed_tx"], 1);
    let (code, out) = server.post(
        "/db/data/transaction",
        r#"{"ops": [{"create_node": {"props": {"max": 9223372036854775807, "min": -9223372036854775808, "e": 1e3, "f": 2.5, "z": -0}}}]}"#,
    );
    assert_eq!(code, 200, "{out}");
    let props = server.get("/db/data/node/1").1["properties"].clone();
    assert_eq!(props["max"].as_i64(), Some(i64::MAX), "HTTP-2: {props}");
    assert_eq!(props["min"].as_i64(), Some(i64::MIN), "HTTP-2: {props}");
    assert!(
        props["e"].is_f64() && props["f"].is_f64() && props["z"].is_f64(),
        "HTTP-2: an exponent, a fraction and -0 make floats: {props}"
    );
    assert_eq!(server.terminate(), Some(0));
}

// HTTP-2: a misspelt field of an op, or an unknown key of the body, is refused naming it,
// and nothing is applied. Before, `"properties"` for `"props"` created a node without them
// and answered 200.
#[test]
fn http_2_unknown_fields_are_refused_naming_them() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    for (body, named) in [
        (
            r#"{"ops": [{"create_node": {"labels": ["A"], "properties": {"x": 1}}}]}"#,
            "op 0: create_node has an unknown field \"properties\" (it takes \"labels\" and \"props\")",
        ),
        (
            r#"{"ops": [{"create_node": {}}, {"set_property": {"node": "$0", "key": "k", "val": 1}}]}"#,
            "op 1: set_property has an unknown field \"val\"",
        ),
        (
            r#"{"ops": [{"create_node": {}}, {"create_relationship": {"from": "$0", "to": "$0", "type": "T", "direction": "out"}}]}"#,
            "op 1: create_relationship has an unknown field \"direction\"",
        ),
        (
            r#"{"ops": [{"create_node": {}}], "atomic": true}"#,
            "the body has an unknown key \"atomic\"",
        ),
    ] {
        let (code, out) = server.post("/db/data/transaction", body);
        let error = out["error"].as_str().unwrap_or_default();
        assert_eq!(code, 400, "HTTP-2: {body}: {out}");
        assert!(error.starts_with(named), "HTTP-2: {body}: {error}");
    }
    assert_eq!(
        server.get("/db/data/").1["last_committed_tx"],
        0,
        "HTTP-2: nothing was applied"
    );
    assert_eq!(server.terminate(), Some(0));
}

// HTTP-1: `GET /db/data/` answers 200 with exactly its eight fields: the store id, format, last
// tx, counts and digest as `neo4j-admin check` prints them, the oldest tx the logs hold, and the
// log files' total size.
#[test]
fn http_1_status_describes_the_store() {
    let dir = scratch();
    let store = dir.path().join("db");
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    for i in 0..3 {
        let body = format!(
            r#"{{"ops": [{{"create_node": {{"labels": ["L"], "props": {{"i": {i}}}}}}}, {{"create_relationship": {{"from": "$0", "to": "$0", "type": "SELF"}}}}]}}"#
        );
        let (code, out) = server.post("/db/data/transaction", &body);
        assert_eq!(code, 200, "{out}");
    }
    let (code, status) = server.get("/db/data/");
    assert_eq!(code, 200, "HTTP-1: {status}");
    let mut keys: Vec<&str> = status
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "digest",
            "format_version",
            "last_committed_tx",
            "log_bytes",
            "nodes",
            "oldest_logged_tx",
            "relationships",
            "store_id"
        ],
        "HTTP-1: exactly these fields"
    );
    let log_bytes: u64 = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("neostore.transaction.db.")
        })
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(
        status["log_bytes"], log_bytes,
        "HTTP-1: log_bytes is the log files' total size"
    );
    assert_eq!(
        status["oldest_logged_tx"], 1,
        "HTTP-1: a new store's logs hold every tx from 1"
    );
    assert_eq!(server.terminate(), Some(0));
    let report = check_json(&store);
    for key in [
        "store_id",
        "format_version",
        "last_committed_tx",
        "nodes",
        "relationships",
        "digest",
    ] {
        assert_eq!(
            status[key], report[key],
            "HTTP-1: {key} as neo4j-admin check prints it"
        );
    }
}

// SRV-1: in a missing or an empty directory the server creates a store in the current format;
// it serves at the address it prints (`neo4j: HTTP API on http://<addr>/db/data/`, the port the
// system chose for port 0); restarted after a crash, it opens the store, recovered.
#[test]
fn srv_1_creates_or_opens_the_store_and_serves_where_it_says() {
    let dir = scratch();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for store in [dir.path().join("missing"), empty] {
        // `start` waits for the address line and takes the address from it.
        let server = ServerProcess::start(&store, Some(EPHEMERAL));
        assert!(
            !server.http.ends_with(":0"),
            "SRV-1: the port the system chose: {}",
            server.http
        );
        let (code, status) = server.get("/db/data/");
        assert_eq!(
            (
                code,
                &status["format_version"],
                &status["last_committed_tx"]
            ),
            (200, &json!("2"), &json!(0)),
            "SRV-1: a new store in the current format, served at the address printed"
        );
        let (code, out) = server.post("/db/data/transaction", r#"{"ops": [{"create_node": {}}]}"#);
        assert_eq!(code, 200, "{out}");
        let (_, acknowledged) = server.get("/db/data/");
        server.kill();
        let server = ServerProcess::start(&store, Some(EPHEMERAL));
        let (_, reopened) = server.get("/db/data/");
        for key in ["store_id", "last_committed_tx", "nodes", "digest"] {
            assert_eq!(
                reopened[key], acknowledged[key],
                "SRV-1: the store opened again, recovered after the crash: {key}"
            );
        }
        assert_eq!(server.terminate(), Some(0));
    }
}

// HTTP-4: a body over 16 MiB is refused with 413 and nothing is applied.
#[test]
fn http_4_oversize_body_is_413() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let big = format!(
        r#"{{"ops": [{{"create_node": {{"props": {{"s": "{}"}}}}}}]}}"#,
        "x".repeat(17 << 20)
    );
    let (code, out) = server.post("/db/data/transaction", &big);
    assert_eq!(code, 413, "{out}");
    assert_eq!(server.get("/db/data/").1["last_committed_tx"], 0);
}

// HTTP-7: every error answer, whatever refused the request (an unknown path, a method the
// route does not take, a path that is not a node id, a bad body, an oversize body), is
// `{"error": "<one sentence>"}` with `Content-Type: application/json`.
#[test]
fn http_7_every_error_answer_is_json() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let big = format!(
        r#"{{"ops": [{{"create_node": {{"props": {{"s": "{}"}}}}}}]}}"#,
        "x".repeat(17 << 20)
    );
    // Method, path, body, status, what the error must name.
    type Case<'a> = (&'a str, &'a str, &'a [u8], u16, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        ("GET", "/", b"", 404, &["/"]),
        ("GET", "/nope", b"", 404, &["/nope", "/db/data/"]),
        ("GET", "/db/data/nodes/1", b"", 404, &["/db/data/nodes/1"]),
        (
            "POST",
            "/db/data/node/0/labels",
            b"{}",
            404,
            &["/db/data/node/0/labels"],
        ),
        (
            "POST",
            "/db/data/",
            b"{}",
            405,
            &["POST", "/db/data/", "GET"],
        ),
        (
            "GET",
            "/db/data/transaction",
            b"",
            405,
            &["GET", "/db/data/transaction", "POST"],
        ),
        (
            "DELETE",
            "/db/data/node/0",
            b"",
            405,
            &["DELETE", "/db/data/node/0", "GET"],
        ),
        ("PUT", "/db/data/transaction", b"{}", 405, &["PUT", "POST"]),
        ("GET", "/db/data/node/%FF", b"", 404, &["node"]),
        ("GET", "/db/data/node/12", b"", 404, &["node 12"]),
        ("POST", "/db/data/transaction", b"not json", 400, &["JSON"]),
        (
            "POST",
            "/db/data/transaction",
            br#"{"ops": [{"delete_node": 5}]}"#,
            400,
            &["5"],
        ),
        (
            "POST",
            "/db/data/transaction",
            big.as_bytes(),
            413,
            &["bytes"],
        ),
    ];
    for (method, path, body, code, mentions) in cases {
        let answer = support::server::request_raw(&server.http, method, path, body);
        let what = format!("{method} {path}: {answer:?}");
        assert_eq!(answer.status, code, "HTTP-7: {what}");
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "HTTP-7: {what}"
        );
        let json = answer
            .json()
            .unwrap_or_else(|e| panic!("HTTP-7: {e}: {what}"));
        let object = json.as_object().unwrap_or_else(|| panic!("HTTP-7: {what}"));
        assert_eq!(object.len(), 1, "HTTP-7: only \"error\": {what}");
        let error = object["error"]
            .as_str()
            .unwrap_or_else(|| panic!("HTTP-7: {what}"));
        assert!(
            !error.is_empty() && !error.contains('\n'),
            "HTTP-7: one sentence: {what}"
        );
        for m in mentions {
            assert!(error.contains(m), "HTTP-7: the error names {m:?}: {what}");
        }
        if code == 405 {
            let allow = answer
                .header("allow")
                .unwrap_or_else(|| panic!("HTTP-7: Allow: {what}"));
            assert!(mentions.iter().any(|m| allow.contains(m)), "HTTP-7: {what}");
        }
    }
    assert_eq!(server.get("/db/data/").1["last_committed_tx"], 0);
    assert_eq!(server.terminate(), Some(0));
}

// SRV-3, LOG-9: SIGKILL after acknowledged commits loses none of them; `neo4j-admin check`
// agrees with the digest the server reported.
#[test]
fn srv_3_sigkill_loses_no_acknowledged_commit() {
    let dir = scratch();
    let store = dir.path().join("db");
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    for i in 0..50 {
        let body = format!(
            r#"{{"ops": [{{"create_node": {{"labels": ["N"], "props": {{"i": {i}}}}}}}]}}"#
        );
        assert_eq!(server.post("/db/data/transaction", &body).0, 200);
    }
    let (_, status) = server.get("/db/data/");
    server.kill();
    let report = check_json(&store);
    assert_eq!(report["last_committed_tx"], status["last_committed_tx"]);
    assert_eq!(report["digest"], status["digest"]);
    assert_eq!(report["consistent"], true);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    assert_eq!(server.get("/db/data/").1["digest"], status["digest"]);
}

// SRV-2: SIGTERM checkpoints and exits 0; the store needs no recovery afterwards.
#[test]
fn srv_2_sigterm_shuts_down_cleanly() {
    let dir = scratch();
    let store = dir.path().join("db");
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    assert_eq!(
        server
            .post("/db/data/transaction", r#"{"ops": [{"create_node": {}}]}"#)
            .0,
        200
    );
    assert_eq!(server.terminate(), Some(0));
    let meta = std::fs::read(store.join("neostore.meta")).unwrap();
    // The checkpoint's last tx (offset 32, ST-10) is the last committed one.
    assert_eq!(u64::from_le_bytes(meta[32..40].try_into().unwrap()), 1);
}

// SRV-2: a SIGTERM that comes as soon as the server said it is ready (before any request) is
// still a clean shutdown: the handlers are installed before the server says so. Four starts at a
// time, so that a late installation would show.
#[test]
fn srv_2_sigterm_right_after_start_is_clean() {
    let dir = scratch();
    let starts: Vec<_> = (0..4)
        .map(|t| {
            let base = dir.path().to_path_buf();
            std::thread::spawn(move || {
                for i in 0..8 {
                    let server =
                        ServerProcess::start(&base.join(format!("db{t}-{i}")), Some(EPHEMERAL));
                    assert_eq!(
                        server.terminate(),
                        Some(0),
                        "SRV-2: start {i} of thread {t}"
                    );
                }
            })
        })
        .collect();
    for s in starts {
        s.join().unwrap();
    }
}

// CFG-*, SRV-4: an invalid value stops the server at start with one line naming key and value.
#[test]
fn srv_4_invalid_config_is_refused_with_one_line() {
    let dir = scratch();
    for (text, key, value) in [
        (
            "keep_logical_logs=7 parsecs\n",
            "keep_logical_logs",
            "7 parsecs",
        ),
        (
            "online_backup_server=host:99999\n",
            "online_backup_server",
            "host:99999",
        ),
        (
            "logical_log_rotation_threshold=lots\n",
            "logical_log_rotation_threshold",
            "lots",
        ),
    ] {
        let config = dir.path().join("neo4j.properties");
        std::fs::write(&config, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_neo4j"))
            .args(["console", "--store"])
            .arg(dir.path().join("db"))
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(key) && stderr.contains(value), "{stderr}");
    }
    assert!(
        !dir.path().join("db").exists(),
        "a refused start must not create the store"
    );
}

// SRV-6: a directory that holds other files, or a path that is a file, is refused with one
// sentence on stderr naming it and exit 1; nothing is created in it and nothing on stderr says a
// store is being created. A missing directory gets a new store, logged once it exists.
#[test]
fn srv_6_refuses_a_directory_that_is_not_a_store() {
    let dir = scratch();
    let config = dir.path().join("neo4j.properties");
    std::fs::write(&config, EPHEMERAL).unwrap();
    let start = |store: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_neo4j"))
            .args(["console", "--store"])
            .arg(store)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let junk = dir.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("notes.txt"), "mine").unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "mine").unwrap();
    for (path, says) in [
        (&junk, "holds files but no store"),
        (&file, "is a file, not a directory"),
    ] {
        let out = start(path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "SRV-6: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "SRV-6: one line on stderr: {stderr}");
        let line = lines[0];
        assert!(
            line.starts_with("neo4j: ") && line.contains(&path.display().to_string()),
            "SRV-6: {line}"
        );
        assert!(line.contains(says), "SRV-6: {line}");
        assert!(
            !stderr.contains("creating") && !stderr.contains("created"),
            "SRV-6: {stderr}"
        );
    }
    let names: Vec<_> = std::fs::read_dir(&junk)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["notes.txt"],
        "SRV-6: nothing created in the directory"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");

    // A missing directory: the store is created, and the log says so once it is.
    let new = dir.path().join("new");
    let server = ServerProcess::start(&new, Some(EPHEMERAL));
    let created = format!("created a new store in {}", new.display());
    server.wait_for_stderr(&created);
    assert_eq!(server.terminate(), Some(0));
}

// SRV-7: the server's log lines are the time, the level and a sentence: no Rust module path,
// no `key=value` fields, no `Debug` forms.
#[test]
fn srv_7_server_log_lines_are_sentences() {
    let dir = scratch();
    let store = dir.path().join("db");
    let config = format!("{EPHEMERAL}online_backup_enabled=false\ncolour=blue\n");
    let mut lines = Vec::new();
    for _ in 0..2 {
        let server = ServerProcess::start(&store, Some(&config));
        let (code, out) = server.post("/db/data/transaction", r#"{"ops": [{"create_node": {}}]}"#);
        assert_eq!(code, 200, "{out}");
        let stderr = server.stderr_when_stopped();
        lines.extend(stderr.lines().map(str::to_string));
    }
    for wanted in [
        "created a new store in",
        "unknown key 'colour'",
        "the backup service is off",
        "shutting down",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(wanted)),
            "SRV-7: a line says {wanted:?}: {lines:#?}"
        );
    }
    assert_log_lines_are_sentences(&lines);
}

// SRV-5: concurrent writers are serialized: every tx id is handed out once, and the result is
// the consistent store whose digest the server reports.
#[test]
fn srv_5_concurrent_writers_are_serialized() {
    let dir = scratch();
    let store = dir.path().join("db");
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    assert_eq!(
        server
            .post("/db/data/transaction", r#"{"ops": [{"create_node": {}}]}"#)
            .0,
        200
    );
    let addr = server.http.clone();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let body = format!(
                            r#"{{"ops": [{{"create_node": {{"props": {{"w": {w}, "i": {i}}}}}}}, {{"create_relationship": {{"from": "$0", "to": 0, "type": "T"}}}}]}}"#
                        );
                        let (code, out) = support::server::request(&addr, "POST", "/db/data/transaction", body.as_bytes());
                        assert_eq!(code, 200, "{out}");
                        out["tx_id"].as_u64().unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<u64> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (2..=101).collect::<Vec<_>>());
    let (_, status) = server.get("/db/data/");
    assert_eq!(status["relationships"], 100);
    assert_eq!(
        server.get("/db/data/node/0").1["relationships"]
            .as_array()
            .unwrap()
            .len(),
        100
    );
    assert_eq!(server.terminate(), Some(0));
    let report = check_json(&store);
    assert_eq!(report["digest"], status["digest"]);
    assert_eq!(report["consistent"], true);
}

// RET-13, RET-15, CFG-13: with a small rotation threshold and `keep_logical_logs=2 files`,
// exactly the two newest log files stay on disk, and the status reports what they hold.
#[test]
fn ret_13_two_files_policy_keeps_exactly_two_files() {
    let dir = scratch();
    let store = dir.path().join("db");
    let config =
        format!("{EPHEMERAL}logical_log_rotation_threshold=2k\nkeep_logical_logs=2 files\n");
    let server = ServerProcess::start(&store, Some(&config));
    for i in 0..60 {
        let body = format!(
            r#"{{"ops": [{{"create_node": {{"props": {{"i": {i}, "pad": "{}"}}}}}}]}}"#,
            "p".repeat(100)
        );
        assert_eq!(server.post("/db/data/transaction", &body).0, 200);
    }
    let (_, status) = server.get("/db/data/");
    let mut logs: Vec<(u64, u64)> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().into_string().unwrap();
            let v = name
                .strip_prefix("neostore.transaction.db.")?
                .parse()
                .ok()?;
            Some((v, e.metadata().unwrap().len()))
        })
        .collect();
    logs.sort();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(logs[1].0, logs[0].0 + 1);
    assert!(logs[0].0 >= 2, "rotation happened several times: {logs:?}");
    assert_eq!(
        status["log_bytes"],
        logs.iter().map(|l| l.1).sum::<u64>(),
        "RET-15: log_bytes is the kept files' total size"
    );
    // The oldest kept file starts right after its header's prev_last_tx (LOG-2, offset 20).
    let oldest =
        std::fs::read(store.join(format!("neostore.transaction.db.{}", logs[0].0))).unwrap();
    let prev_last_tx = u64::from_le_bytes(oldest[20..28].try_into().unwrap());
    assert_eq!(
        status["oldest_logged_tx"],
        prev_last_tx + 1,
        "RET-15: oldest_logged_tx follows the oldest kept file's prev_last_tx"
    );
    assert!(status["oldest_logged_tx"].as_u64().unwrap() > 1);
    assert_eq!(server.terminate(), Some(0));
    assert_eq!(check_json(&store)["consistent"], true);
}

/// What [`tests_print_server_logs_only_when_failing`] runs in a test process of its own: a server
/// that creates a store, commits and stops; with `NEO4J_TEST_FIXTURE_FAIL` set, the test then
/// fails. Run on its own it passes.
#[test]
fn server_logs_fixture() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    assert_eq!(
        server
            .post("/db/data/transaction", r#"{"ops": [{"create_node": {}}]}"#)
            .0,
        200
    );
    server.wait_for_stderr("created a new store");
    assert!(
        std::env::var_os("NEO4J_TEST_FIXTURE_FAIL").is_none(),
        "failing on purpose (NEO4J_TEST_FIXTURE_FAIL)"
    );
}

/// A passing test prints none of the server's log lines; a failing one prints them all (the
/// test support captures the server's stdout and stderr).
#[test]
fn tests_print_server_logs_only_when_failing() {
    let run = |fail: bool| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["server_logs_fixture", "--exact", "--test-threads=1"])
            .env_remove("NEO4J_TEST_LOGS")
            .env_remove("NEO4J_TEST_FIXTURE_FAIL");
        if fail {
            cmd.env("NEO4J_TEST_FIXTURE_FAIL", "1");
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (passed, text) = run(false);
    assert!(passed, "{text}");
    let logs: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" INFO ") || l.contains(" WARN ") || l.starts_with("neo4j: "))
        .collect();
    assert!(
        logs.is_empty(),
        "a passing test printed the server's output: {logs:#?}"
    );
    let (passed, text) = run(true);
    assert!(!passed, "{text}");
    for wanted in [
        "failing on purpose",
        "created a new store",
        "neo4j: HTTP API on",
    ] {
        assert!(
            text.contains(wanted),
            "a failing test shows {wanted:?}: {text}"
        );
    }
}
