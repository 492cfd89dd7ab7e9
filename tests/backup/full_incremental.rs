//! Full and incremental backups of a live server: consistency under concurrent writes and
//! incremental catch-up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::{request, ServerProcess};

/// A thread committing transactions over HTTP until stopped. It is the only writer, so after
/// each commit `GET /db/data/` shows the digest at exactly that tx: the history it records is
/// the server's digest at every tx it made.
struct Writer {
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    history: Arc<Mutex<BTreeMap<u64, String>>>,
    handle: std::thread::JoinHandle<()>,
}

impl Writer {
    /// `base` is the number of generated nodes (and half the generated relationships), whose
    /// records the writer also changes while they are being copied (PR-12).
    fn start(server: &ServerProcess, base: u64) -> Writer {
        let http = server.http.clone();
        let first = status(server);
        let history = Arc::new(Mutex::new(BTreeMap::from([(
            tx(&first),
            s(&first["digest"]),
        )])));
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicU64::new(0));
        let (h, st, c) = (history.clone(), stop.clone(), commits.clone());
        let handle = std::thread::spawn(move || {
            let mut i = 0u64;
            while !st.load(Ordering::SeqCst) {
                let mut ops = vec![
                    format!(
                        r#"{{"create_node": {{"labels": ["W"], "props": {{"i": {i}, "s": "{}"}}}}}}"#,
                        "w".repeat(40)
                    ),
                    format!(
                        r#"{{"create_relationship": {{"from": "$0", "to": {}, "type": "W", "props": {{}}}}}}"#,
                        (i * 7919) % base
                    ),
                    format!(
                        r#"{{"set_property": {{"node": {}, "key": "touched", "value": {i}}}}}"#,
                        (i * 104_729 + 1) % base
                    ),
                ];
                if i.is_multiple_of(4) {
                    ops.push(format!(r#"{{"delete_relationship": {}}}"#, i / 4));
                }
                let body = format!(r#"{{"ops": [{}]}}"#, ops.join(", "));
                let (code, out) = request(&http, "POST", "/db/data/transaction", body.as_bytes());
                assert_eq!(code, 200, "{out}");
                let id = out["tx_id"].as_u64().unwrap();
                let (_, now) = request(&http, "GET", "/db/data/", b"");
                assert_eq!(tx(&now), id, "the writer is the only writer");
                h.lock().unwrap().insert(id, s(&now["digest"]));
                c.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        });
        Writer {
            stop,
            commits,
            history,
            handle,
        }
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    fn stop(self) -> BTreeMap<u64, String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap();
        Arc::try_unwrap(self.history).unwrap().into_inner().unwrap()
    }
}

// BK-20, BK-21, BK-22, BK-23, BK-9, BK-10, BK-25, BK-31, PR-10, PR-12, PR-13, PR-14, PR-20: a
// full backup of a generated store while a writer commits over HTTP (creating nodes and
// relationships, changing and deleting records of the files being copied). The backup is
// consistent at a tx T no older than the server's last tx when it began, C <= T for the
// checkpoint it was copied at, its digest is the server's digest at T, a server started on it
// serves that state, and after the writer stops an incremental one (no fallback: the server
// agrees with the backup's digest at T) brings it to the server's state.
#[test]
fn bk_20_full_backup_under_concurrent_writes_matches_the_server_at_its_tx() {
    let dir = scratch();
    let store = dir.path().join("db");
    let b = dir.path().join("backup");
    let base = 20_000;
    generate(&store, base, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let writer = Writer::start(&server, base);
    wait_until(
        Duration::from_secs(30),
        "the writer's first commits",
        || writer.commits() >= 5,
    );
    let t0 = tx(&status(&server));
    let commits_before = writer.commits();
    let out = backup_from(&addr, &b, &[]).expect(0);
    let commits_during = writer.commits() - commits_before;
    assert!(out.stdout.contains("full backup from"), "{out:#?}");
    assert!(out.stdout.contains("holds no backup yet"), "{out:#?}");
    let c = number_after(&out.stdout, "of store files at checkpoint tx");
    let report = check_json(&b);
    let t = tx(&report);
    eprintln!("backup began at tx {t0}, checkpoint {c}, consistent at tx {t}; {commits_during} commits during the backup");
    assert!(c >= t0 && t >= c, "t0 {t0} <= C {c} <= T {t}");
    // BK-9: the summary names the kind, the store, the tx and the digest.
    let first = status(&server);
    let summary = out.summary();
    assert!(summary.contains("full backup of store"), "{summary}");
    assert!(summary.contains(&s(&first["store_id"])), "{summary}");
    assert!(
        summary.contains(&format!("at tx {t} (store files at checkpoint tx {c}, ")),
        "{summary}"
    );
    assert!(summary.contains(&s(&report["digest"])), "{summary}");
    let replayed = if t == c {
        "no transactions after it".to_string()
    } else {
        format!("then {} transaction", t - c)
    };
    assert!(
        summary.contains(&replayed),
        "BK-21: the files at checkpoint C, then the T - C transactions after it: {summary}"
    );
    // BK-22
    assert_eq!(report["store_id"], first["store_id"]);
    assert_eq!(report["format_version"], first["format_version"]);
    // BK-20: the digest at T is the server's digest at T.
    let at_t = writer.history.lock().unwrap().get(&t).cloned();
    assert_eq!(
        Some(s(&report["digest"])),
        at_t,
        "BK-20, PR-12: the digest at tx {t}, although records changed while they were copied"
    );
    // BK-23, BK-31: `neo4j console` starts on the backup directory and serves that state.
    let on_backup = ServerProcess::start(&b, Some(EPHEMERAL));
    let served = status(&on_backup);
    assert_eq!(
        (&served["digest"], tx(&served), &served["store_id"]),
        (&report["digest"], t, &report["store_id"]),
        "BK-23, BK-31: a server started on the backup directory serves the backup"
    );
    assert_eq!(on_backup.terminate(), Some(0));
    let history = writer.stop();
    let out = backup_from(&addr, &b, &[]).expect(0);
    assert!(out.stdout.contains("incremental backup from"), "{out:#?}");
    assert!(!out.stdout.contains("falling back"), "{out:#?}");
    let last = assert_same_as_server(&b, &server);
    assert_eq!(Some(&s(&last["digest"])), history.get(&tx(&last)));
}

// BK-10, BK-24, BK-25, BK-27, BK-9, PR-15, PR-16: incremental catch-up (several transactions
// of one applied run write the same records, e.g. node 0's relationship chain, which the
// read-back of BK-27 must judge by the last image), and an incremental with nothing new.
#[test]
fn bk_10_incremental_backup_catches_up_with_the_server() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 10);
    let out = backup_from(&addr, &b, &[]).expect(0);
    assert!(
        out.summary()
            .contains("at tx 10 (store files at checkpoint tx 10, no transactions after it)"),
        "CLI-5: a full backup with nothing to replay says so: {out:#?}"
    );
    // Creates, relationships, property changes and deletes (of ids the server handed out).
    let (mut rels, mut lonely) = (Vec::new(), Vec::new());
    for i in 0..25u64 {
        let body = match i % 5 {
            0 | 1 => format!(
                r#"{{"ops": [{{"create_node": {{"labels": ["A", "B"], "props": {{"i": {i}, "f": 1.5, "l": [1, 2]}}}}}}, {{"create_relationship": {{"from": "$0", "to": 0, "type": "R", "props": {{"w": {i}}}}}}}]}}"#
            ),
            2 => format!(
                r#"{{"ops": [{{"set_property": {{"node": 1, "key": "k{i}", "value": "{}"}}}}]}}"#,
                "v".repeat(300)
            ),
            3 => match lonely.pop() {
                Some(id) => format!(r#"{{"ops": [{{"delete_node": {id}}}]}}"#),
                None => r#"{"ops": [{"create_node": {}}]}"#.to_string(),
            },
            _ => format!(
                r#"{{"ops": [{{"delete_relationship": {}}}, {{"create_node": {{}}}}]}}"#,
                rels.remove(0)
            ),
        };
        let (code, out) = server.post("/db/data/transaction", &body);
        assert_eq!(code, 200, "{body}: {out}");
        let ids: Vec<u64> = out["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        match i % 5 {
            0 | 1 => rels.push(ids[1]),
            3 if ids.len() == 1 => lonely.push(ids[0]),
            4 => lonely.push(ids[0]),
            _ => {}
        }
    }
    let out = backup_from(&addr, &b, &[]).expect(0);
    assert!(
        out.stdout.contains("incremental backup from")
            && out
                .stdout
                .contains("the backup is at tx 10, the server at tx 35"),
        "{out:#?}"
    );
    let summary = out.summary();
    assert!(summary.contains("incremental backup of store"), "{summary}");
    assert!(
        summary.contains("tx 11 to 35 (25 transactions)"),
        "{summary}"
    );
    assert!(
        summary.contains("verified (records written and digest)"),
        "{summary}"
    );
    // BK-9: bytes, duration and throughput.
    assert!(
        summary.contains(" s (") && summary.contains("/s), "),
        "{summary}"
    );
    assert_same_as_server(&b, &server);
    // PR-15: nothing new, the end frame comes at once.
    let out = backup_from(&addr, &b, &[]).expect(0);
    assert!(
        out.summary()
            .contains("nothing new since tx 35 (0 transactions)"),
        "{out:#?}"
    );
    assert_same_as_server(&b, &server);
}
