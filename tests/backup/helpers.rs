//! Helpers shared by the modules of this test target: parsing the tool's output, running a
//! backup that must be refused, writing recorded transactions, `--json` runs.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::backup::*;
use crate::support::server::ServerProcess;

/// Parses `<word> <number>` out of a line, e.g. `checkpoint tx 12`.
pub fn number_after(text: &str, word: &str) -> u64 {
    let at = text
        .find(word)
        .unwrap_or_else(|| panic!("no `{word}` in {text}"));
    text[at + word.len()..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no number after `{word}` in {text}"))
}

/// A path as an argument (the scratch directories are UTF-8).
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn tx(v: &Value) -> u64 {
    v["last_committed_tx"].as_u64().unwrap()
}

pub fn s(v: &Value) -> String {
    v.as_str().unwrap().to_string()
}

/// Commits `n` transactions of one node with a `pad`-byte property, one writer, and records
/// the server's digest after each (tx id -> digest).
pub fn write_recorded(
    server: &ServerProcess,
    n: u64,
    pad: usize,
    history: &mut BTreeMap<u64, String>,
) {
    for i in 0..n {
        let id = write_node(&server.http, i, pad);
        record(server, id, history);
    }
}

/// Records the server's digest after tx `id`, its last (one writer).
fn record(server: &ServerProcess, id: u64, history: &mut BTreeMap<u64, String>) {
    let now = status(server);
    assert_eq!(tx(&now), id);
    history.insert(id, s(&now["digest"]));
}

/// Commits one transaction of `ops` (the JSON array of `POST /db/data/transaction`), records
/// the server's digest after it, and returns its tx id and the ids it created.
pub fn commit_recorded(
    server: &ServerProcess,
    ops: &str,
    history: &mut BTreeMap<u64, String>,
) -> (u64, Vec<u64>) {
    let body = format!(r#"{{"ops": {ops}}}"#);
    let (code, out) = crate::support::server::request(
        &server.http,
        "POST",
        "/db/data/transaction",
        body.as_bytes(),
    );
    assert_eq!(code, 200, "{ops}: {out}");
    let id = out["tx_id"].as_u64().unwrap();
    record(server, id, history);
    let ids = out["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    (id, ids)
}

/// Runs a backup that must be refused with `code`, leaving `target` byte for byte as it was
/// (BK-17); returns the one error line.
pub fn refused(addr: &str, target: &Path, more: &[&str], code: i32) -> String {
    let before = snapshot(target);
    let out = backup_from(addr, target, more).expect(code);
    let line = out.one_error_line().to_string();
    assert_eq!(
        snapshot(target),
        before,
        "{more:?} changed {}",
        target.display()
    );
    assert!(!out.stdout.contains("done:"), "{out:#?}");
    line
}

/// Restores `from` into `to`, which must be refused with exit 3 (ADM-8, MF-10) for `why`,
/// restoring nothing; returns the one error line.
pub fn restore_refused(from: &Path, to: &Path, why: &str) -> String {
    let out = admin(&["restore", "--from", path(from), "--store", path(to)]);
    assert_eq!(out.code, Some(3), "ADM-8, MF-10: {why} exits 3: {out:#?}");
    assert!(
        !to.exists() || names(to).is_empty(),
        "ADM-8, MF-10: {why}: nothing is restored: {:?}",
        names(to)
    );
    out.one_error_line().to_string()
}

pub fn record_file_bytes(store: &Path) -> u64 {
    ["nodestore", "relationshipstore", "propertystore"]
        .iter()
        .map(|f| {
            std::fs::metadata(store.join(format!("neostore.{f}.db")))
                .unwrap()
                .len()
        })
        .sum()
}

/// Runs a backup with `--json` and parses stdout, which must be exactly one JSON document.
pub fn json_run(addr: &str, target: &Path, more: &[&str], code: i32) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(more);
    let out = backup_from(addr, target, &args).expect(code);
    let doc: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {out:#?}"));
    assert_eq!(doc["exit_code"], code, "{doc}");
    if code != 0 {
        out.one_error_line();
    }
    doc
}

/// Commits `n` transactions of 200 nodes with 600-byte properties each (about 150 KiB of log
/// apiece, so a backup applies them in several runs of at most 4 MiB), recording the digest
/// after each in `history` when given one.
pub fn write_big(
    server: &ServerProcess,
    n: usize,
    mut history: Option<&mut BTreeMap<u64, String>>,
) {
    for i in 0..n {
        let node = format!(
            r#"{{"create_node": {{"labels": ["Big"], "props": {{"i": {i}, "s": "{}"}}}}}}"#,
            "x".repeat(600)
        );
        let body = format!(r#"{{"ops": [{}]}}"#, vec![node; 200].join(", "));
        let (code, out) = server.post("/db/data/transaction", &body);
        assert_eq!(code, 200, "{out}");
        if let Some(history) = history.as_deref_mut() {
            let now = status(server);
            history.insert(tx(&now), s(&now["digest"]));
        }
    }
}
