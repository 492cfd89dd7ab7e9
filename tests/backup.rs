//! `neo4j-backup` as operators use it: the real binaries (`neo4j`, `neo4j-backup`,
//! `neo4j-admin`), real TCP, real files. Each test names the rules of spec/backup.md (BK-) and
//! spec/protocol.md (PR-) it checks.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::backup::*;
use support::scratch;
use support::server::{assert_log_lines_are_sentences, request, ServerProcess};

/// Parses `<word> <number>` out of a line, e.g. `checkpoint tx 12`.
fn number_after(text: &str, word: &str) -> u64 {
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
fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tx(v: &Value) -> u64 {
    v["last_committed_tx"].as_u64().unwrap()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap().to_string()
}

/// SIGTERM, then waits at most `limit` for the exit code.
fn terminate_within(server: &mut ServerProcess, limit: Duration) -> Option<i32> {
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            start.elapsed() < limit,
            "the server did not stop in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

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

/// Commits `n` transactions of one node with a `pad`-byte property, one writer, and records
/// the server's digest after each (tx id -> digest).
fn write_recorded(server: &ServerProcess, n: u64, pad: usize, history: &mut BTreeMap<u64, String>) {
    for i in 0..n {
        let id = write_node(&server.http, i, pad);
        let now = status(server);
        assert_eq!(tx(&now), id);
        history.insert(id, s(&now["digest"]));
    }
}

// ---------------------------------------------------------------------------------------------
// Consistency

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
    // BK-22
    assert_eq!(report["store_id"], first["store_id"]);
    assert_eq!(report["format_version"], first["format_version"]);
    // BK-20: the digest at T is the server's digest at T.
    let at_t = writer.history.lock().unwrap().get(&t).cloned();
    assert_eq!(Some(s(&report["digest"])), at_t, "digest at tx {t}");
    // BK-23, BK-31: `neo4j console` starts on the backup directory and serves that state.
    let on_backup = ServerProcess::start(&b, Some(EPHEMERAL));
    let served = status(&on_backup);
    assert_eq!(
        (&served["digest"], tx(&served), &served["store_id"]),
        (&report["digest"], t, &report["store_id"])
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

// ---------------------------------------------------------------------------------------------
// Refusals

/// Runs a backup that must be refused with `code`, leaving `target` byte for byte as it was
/// (BK-17); returns the one error line.
fn refused(addr: &str, target: &Path, more: &[&str], code: i32) -> String {
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

const ALL_TYPES: [&[&str]; 3] = [&[], &["--type", "full"], &["--type", "incremental"]];

// BK-13, BK-17, BK-37, BK-40: what is not a backup directory is refused with exit 3 whatever
// --type says, and left byte for byte as it was.
#[test]
fn bk_13_not_a_backup_directory_is_refused_unchanged() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let case = |name: &str| dir.path().join(name);

    let stray = case("stray-file");
    std::fs::create_dir(&stray).unwrap();
    std::fs::write(stray.join("notes.txt"), "mine").unwrap();
    let stray_dir = case("stray-dir");
    std::fs::create_dir_all(stray_dir.join("photos")).unwrap();
    let file = case("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let bad_pointer = case("bad-pointer");
    backup_from(&addr, &bad_pointer, &[]).expect(0);
    std::fs::write(bad_pointer.join("CURRENT"), "garbage\n").unwrap();
    let dangling = case("dangling-pointer");
    backup_from(&addr, &dangling, &[]).expect(0);
    std::fs::write(dangling.join("CURRENT"), "generation-7\n").unwrap();
    let no_meta = case("no-meta");
    std::fs::create_dir(&no_meta).unwrap();
    std::fs::write(no_meta.join("neostore.nodestore.db"), [0u8; 100]).unwrap();
    let bad_meta = case("bad-meta");
    backup_from(&addr, &bad_meta, &[]).expect(0);
    let meta = bad_meta.join(current(&bad_meta)).join("neostore.meta");
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes[8] ^= 0xff;
    std::fs::write(&meta, &bytes).unwrap();

    for (target, says) in [
        (&stray, "notes.txt"),
        (&stray_dir, "photos"),
        (&file, "file"),
        (&bad_pointer, "CURRENT"),
        (&dangling, "generation-7"),
        (&no_meta, "neostore.meta"),
        (&bad_meta, "neostore.meta"),
    ] {
        for more in ALL_TYPES {
            let line = refused(&addr, target, more, 3);
            assert!(line.contains("not a valid backup directory"), "{line}");
            assert!(line.contains(says), "{line}");
        }
    }
}

// BK-14, BK-17, BK-40, PR-4: a backup of server A refuses server B's store with exit 4, naming
// both store ids, whatever --type says, and stays as it was.
#[test]
fn bk_14_backup_of_another_store_is_refused() {
    let dir = scratch();
    let a = ServerProcess::start(&dir.path().join("a"), Some(EPHEMERAL));
    let bsrv = ServerProcess::start(&dir.path().join("b"), Some(EPHEMERAL));
    write_nodes(&a, 2);
    write_nodes(&bsrv, 2);
    let target = dir.path().join("backup");
    backup_from(a.backup.as_deref().unwrap(), &target, &[]).expect(0);
    let (id_a, id_b) = (s(&status(&a)["store_id"]), s(&status(&bsrv)["store_id"]));
    assert_ne!(id_a, id_b);
    for more in ALL_TYPES {
        let line = refused(bsrv.backup.as_deref().unwrap(), &target, more, 4);
        assert!(line.contains(&id_a) && line.contains(&id_b), "{line}");
    }
    // The backup still belongs to A.
    backup_from(a.backup.as_deref().unwrap(), &target, &[]).expect(0);
    assert_same_as_server(&target, &a);
}

// BK-15, BK-17, BK-22, BK-31, BK-40, PR-16: a backup of a format-1 store (full, then
// incremental: transactions are format-independent) refuses the same store once upgraded,
// with exit 5 and both versions; upgrading the backup directory itself (`neo4j-admin upgrade`
// follows its pointer) makes it usable again.
#[test]
fn bk_15_backup_in_another_format_version_is_refused() {
    let dir = scratch();
    let store = dir.path().join("db");
    let target = dir.path().join("backup");
    generate(&store, 200, &["--format-version", "1"]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    assert_eq!(status(&server)["format_version"], "1");
    write_nodes(&server, 3);
    backup_from(server.backup.as_deref().unwrap(), &target, &[]).expect(0);
    write_nodes(&server, 3);
    let out = backup_from(server.backup.as_deref().unwrap(), &target, &[]).expect(0);
    assert!(out.stdout.contains("incremental backup from"), "{out:#?}");
    assert_eq!(
        assert_same_as_server(&target, &server)["format_version"],
        "1"
    );
    let before = status(&server);
    assert_eq!(server.terminate(), Some(0));
    admin(&["upgrade", path(&store)]).expect(0);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let after = status(&server);
    assert_eq!(after["format_version"], "2");
    assert_eq!(
        (&after["store_id"], &after["digest"]),
        (&before["store_id"], &before["digest"])
    );
    let addr = server.backup.clone().unwrap();
    for more in [&[][..], &["--type", "incremental"]] {
        let line = refused(&addr, &target, more, 5);
        assert!(
            line.contains("format version 1") && line.contains("format version 2"),
            "{line}"
        );
        assert!(
            line.contains(&format!("neo4j-admin upgrade {}", target.display()))
                && line.contains("--type full"),
            "BK-15: exit 5 says how to go on: {line}"
        );
    }
    // The way forward the message names: upgrade the backup, then back up again.
    let copy = dir.path().join("backup-copy");
    copy_tree(&target, &copy);
    admin(&["upgrade", path(&target)]).expect(0);
    assert_eq!(check_json(&target)["format_version"], "2");
    write_nodes(&server, 2);
    let out = backup_from(&addr, &target, &[]).expect(0);
    assert!(
        out.summary().contains("incremental backup"),
        "BK-15: {out:#?}"
    );
    assert_same_as_server(&target, &server);
    // Or `--type full`, which replaces the format-1 backup once the new one is complete.
    let out = backup_from(&addr, &copy, &["--type", "full"]).expect(0);
    assert!(
        out.stdout.contains("is in format version 1; it stays live until this backup in format version 2 is complete"),
        "BK-47: {out:#?}"
    );
    assert_eq!(
        assert_same_as_server(&copy, &server)["format_version"],
        "2",
        "BK-47"
    );
    let generations: Vec<_> = std::fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("generation-"))
        .collect();
    assert_eq!(
        generations.len(),
        1,
        "BK-47: the old generation is gone: {generations:?}"
    );
}

// BK-12, BK-17, BK-40: `--type incremental` into a directory with no backup yet exits 7 and
// changes nothing: an empty directory stays empty, a missing one is not created.
#[test]
fn bk_12_incremental_without_a_backup_exits_7_and_creates_nothing() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 2);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = dir.path().join("missing");
    for target in [&empty, &missing] {
        let line = refused(&addr, target, &["--type", "incremental"], 7);
        assert!(line.contains("holds no backup yet"), "{line}");
    }
    assert!(!missing.exists());
    assert!(names(&empty).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Falling back

// BK-11, BK-12, BK-17, BK-25, BK-40, PR-7, PR-14: once the server's logs no longer hold the
// tx after the backup's, `--type incremental` exits 7 with the tx needed and the oldest the
// server has (changing nothing), and `auto` falls back to a full backup saying the same.
#[test]
fn bk_11_pruned_logs_fall_back_to_a_full_backup() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let config =
        format!("{EPHEMERAL}logical_log_rotation_threshold=16k\nkeep_logical_logs=1 files\n");
    let server = ServerProcess::start(&dir.path().join("db"), Some(&config));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 5);
    backup_from(&addr, &b, &[]).expect(0);
    let n = tx(&check_json(&b));
    assert_eq!(n, 5);
    let mut i = 0;
    while status(&server)["oldest_logged_tx"].as_u64().unwrap() <= n + 1 {
        write_node(&server.http, i, 1000);
        i += 1;
        assert!(i < 1000, "the logs were never pruned");
    }
    let oldest = status(&server)["oldest_logged_tx"].as_u64().unwrap();
    let reason = format!("no longer hold tx {}", n + 1);
    // BK-17: leftovers of an interrupted run stay too when the server refuses (exit 7 changes
    // nothing); the accepted run after removes them (BK-36).
    std::fs::create_dir(b.join("generation-9")).unwrap();
    std::fs::write(b.join("CURRENT.tmp"), b"generation-9\n").unwrap();
    let line = refused(&addr, &b, &["--type", "incremental"], 7);
    assert!(line.contains(&reason), "{line}");
    assert!(
        line.contains(&format!("the oldest it has is tx {oldest}")),
        "{line}"
    );
    let out = backup_from(&addr, &b, &[]).expect(0);
    let fell = out
        .stdout
        .lines()
        .find(|l| l.contains("falling back"))
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert!(
        fell.contains(&reason) && fell.contains(&format!("tx {oldest}")),
        "{fell}"
    );
    assert!(out.summary().contains("full backup"), "{out:#?}");
    assert!(!b.join("generation-9").exists() && !b.join("CURRENT.tmp").exists());
    assert_same_as_server(&b, &server);
}

// BK-11, BK-12, BK-17, BK-23, BK-31, PR-7, PR-14: a server started on a copy of a backup
// takes other writes; the copy's history then diverges from the source's. While the copy is
// ahead of the source every mode but `--type full` refuses (BK-46); once the source has passed
// it with other transactions, `--type incremental` exits 7 naming both digests and `auto` falls
// back to a full backup.
#[test]
fn bk_11_diverged_history_falls_back_to_a_full_backup() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let r = dir.path().join("restored");
    let source = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = source.backup.clone().unwrap();
    let mut history = BTreeMap::new();
    write_recorded(&source, 5, 16, &mut history);
    backup_from(&addr, &b, &[]).expect(0);
    copy_tree(&b, &r);
    let other = ServerProcess::start(&r, Some(EPHEMERAL));
    for i in 0..3 {
        write_node(&other.http, 100 + i, 7);
    }
    assert_eq!(other.terminate(), Some(0));
    let r_report = check_json(&r);
    assert_eq!(tx(&r_report), 8);
    // The copy is ahead of the source: refused, whatever the mode but full.
    for more in [&[][..], &["--type", "incremental"]] {
        let line = refused(&addr, &r, more, 7);
        assert!(
            line.contains("is at tx 8, ahead of the server") && line.contains("at tx 5"),
            "BK-46: {line}"
        );
    }
    // The source passes it with other transactions.
    write_recorded(&source, 5, 16, &mut history);
    let line = refused(&addr, &r, &["--type", "incremental"], 7);
    assert!(
        line.contains("diverged") && line.contains("at tx 8"),
        "{line}"
    );
    assert!(line.contains(&s(&r_report["digest"])), "{line}");
    assert!(line.contains(&history[&8]), "{line}");
    let out = backup_from(&addr, &r, &[]).expect(0);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("falling back") && l.contains("diverged")),
        "{out:#?}"
    );
    assert_same_as_server(&r, &source);
    // The original backup agrees with the source: incremental.
    let out = backup_from(&addr, &b, &["--type", "incremental"]).expect(0);
    assert!(out.summary().contains("tx 6 to 10"), "{out:#?}");
    assert_same_as_server(&b, &source);
}

// ---------------------------------------------------------------------------------------------
// Crashes

// BK-33, BK-36, BK-32, PR-6: SIGKILL of `neo4j-backup` during a full backup into a directory
// holding one leaves the previous backup live and valid (or the new one, complete); the next
// run catches up and removes the unfinished generation. The tool's memory stays bounded while
// it copies a store many times larger than its peak.
#[test]
fn bk_33_sigkill_of_the_tool_mid_full_backup_leaves_a_valid_backup() {
    let dir = scratch();
    let store = dir.path().join("db");
    let b = dir.path().join("backup");
    generate(&store, 60_000, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let (out, peak_kib) = run_measured(backup_cmd(&[
        "-from",
        &addr,
        "-verify",
        "false",
        "-to",
        path(&b),
    ]));
    let out = out.expect(0);
    let copied = record_file_bytes(&store);
    eprintln!(
        "copied {copied} bytes with a peak of {peak_kib} KiB: {}",
        out.summary()
    );
    assert!(
        peak_kib * 1024 < copied / 2,
        "peak {peak_kib} KiB for {copied} bytes"
    );
    let old = check_json(&b);
    write_nodes(&server, 3);
    let mut child = spawn_backup(&addr, &b, &["--type", "full"]);
    wait_until(Duration::from_secs(60), "the new generation", || {
        b.join("generation-2").exists() || child.try_wait().unwrap().is_some()
    });
    std::thread::sleep(some_delay(400));
    let _ = child.kill();
    let finished = child.wait().unwrap().success();
    let live = current(&b);
    let report = check_json(&b);
    eprintln!(
        "killed; finished: {finished}, live: {live}, left: {:?}",
        names(&b)
    );
    if live == "generation-1" {
        assert_eq!((tx(&report), &report["digest"]), (tx(&old), &old["digest"]));
    } else {
        assert_eq!(live, "generation-2");
        assert_same_as_server(&b, &server);
    }
    let out = backup_from(&addr, &b, &[]).expect(0);
    assert!(!out.stdout.contains("falling back"), "{out:#?}");
    assert_eq!(names(&b), vec!["CURRENT".to_string(), current(&b)]);
    assert_same_as_server(&b, &server);
}

// BK-24, BK-33, PR-16: SIGKILL of `neo4j-backup` while it applies an incremental backup of
// many transactions leaves a valid backup at a tx between the old and the new, whose digest
// is the server's at that tx; the next run catches up incrementally.
#[test]
fn bk_24_sigkill_of_the_tool_mid_incremental_leaves_a_valid_backup() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let mut history = BTreeMap::new();
    write_recorded(&server, 1, 16, &mut history);
    backup_from(&addr, &b, &[]).expect(0);
    // Big transactions: many records each, so applying them takes a while.
    for i in 0..30 {
        let node = format!(
            r#"{{"create_node": {{"labels": ["Big"], "props": {{"i": {i}, "s": "{}"}}}}}}"#,
            "x".repeat(600)
        );
        let body = format!(r#"{{"ops": [{}]}}"#, vec![node; 200].join(", "));
        let (code, out) = server.post("/db/data/transaction", &body);
        assert_eq!(code, 200, "{out}");
        let now = status(&server);
        history.insert(tx(&now), s(&now["digest"]));
    }
    let new = *history.keys().last().unwrap();
    let mut child = spawn_backup(&addr, &b, &["--type", "incremental"]);
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("incremental backup from"), "{first}");
    std::thread::sleep(some_delay(300));
    let _ = child.kill();
    let finished = child.wait().unwrap().success();
    let report = check_json(&b);
    let t = tx(&report);
    eprintln!("killed at tx {t} of 1..={new}; finished: {finished}");
    assert!((1..=new).contains(&t), "tx {t}");
    assert_eq!(Some(&s(&report["digest"])), history.get(&t));
    let out = backup_from(&addr, &b, &[]).expect(0);
    assert!(out.stdout.contains("incremental backup from"), "{out:#?}");
    assert!(!out.stdout.contains("falling back"), "{out:#?}");
    assert_same_as_server(&b, &server);
}

// BK-34, BK-33, PR-19: SIGKILL of the server during a full backup fails the tool with exit 1
// and one line; the directory still holds a valid backup; the restarted server lost no
// acknowledged transaction, and the next run succeeds.
#[test]
fn bk_34_sigkill_of_the_server_mid_backup() {
    let dir = scratch();
    let store = dir.path().join("db");
    let b = dir.path().join("backup");
    generate(&store, 60_000, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    backup_from(&addr, &b, &["-verify", "false"]).expect(0);
    let old = check_json(&b);
    write_nodes(&server, 3);
    let acknowledged = status(&server);
    let mut child = spawn_backup(&addr, &b, &["--type", "full", "-verify", "false"]);
    wait_until(Duration::from_secs(60), "the new generation", || {
        b.join("generation-2").exists() || child.try_wait().unwrap().is_some()
    });
    std::thread::sleep(some_delay(150));
    server.kill();
    let out = finish(child);
    match out.code {
        Some(0) => eprintln!("the backup finished before the kill"),
        Some(1) => {
            let line = out.one_error_line();
            assert!(line.contains(&addr), "{line}");
        }
        _ => panic!("{out:#?}"),
    }
    let report = check_json(&b);
    if current(&b) == "generation-1" {
        assert_eq!((tx(&report), &report["digest"]), (tx(&old), &old["digest"]));
    } else {
        assert_eq!(
            (tx(&report), &report["digest"]),
            (tx(&acknowledged), &acknowledged["digest"])
        );
    }
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let now = status(&server);
    assert_eq!(
        (tx(&now), &now["digest"]),
        (tx(&acknowledged), &acknowledged["digest"])
    );
    let addr = server.backup.clone().unwrap();
    backup_from(&addr, &b, &[]).expect(0);
    assert_eq!(names(&b), vec!["CURRENT".to_string(), current(&b)]);
    assert_same_as_server(&b, &server);
}

// BK-35, BK-40: the tool holds the directory's lock for its whole run: a second run on the
// same directory fails at once with exit 1, as does a run on a directory a server has open.
#[test]
fn bk_35_a_second_run_on_a_locked_directory_fails_at_once() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let silent = SilentServer::start();
    let mut first = spawn_backup(&silent.addr, &b, &["-timeout", "60s"]);
    wait_until(Duration::from_secs(30), "the first run to connect", || {
        silent.accepted.load(Ordering::SeqCst) >= 1
    });
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let started = Instant::now();
    let out = backup_from(&addr, &b, &[]).expect(1);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(out.one_error_line().contains("locked"), "{out:#?}");
    first.kill().unwrap();
    first.wait().unwrap();
    // A server running on a backup directory holds its lock too.
    backup_from(&addr, &b, &[]).expect(0);
    let on_backup = ServerProcess::start(&b, Some(EPHEMERAL));
    let out = backup_from(&addr, &b, &[]).expect(1);
    assert!(out.one_error_line().contains("locked"), "{out:#?}");
    assert_eq!(on_backup.terminate(), Some(0));
    backup_from(&addr, &b, &[]).expect(0);
}

// ---------------------------------------------------------------------------------------------
// Failing cleanly

// BK-19, BK-40, BK-1: an unreachable server (nothing listening, an unknown host) fails with
// exit 1 and one sentence naming host and port (the default port 6362 when none is given),
// with the likely cause when nothing listens; an unwritable target fails with exit 1.
#[test]
fn bk_19_unreachable_server_and_unwritable_directory_fail_with_one_line() {
    let dir = scratch();
    let port = free_port();
    let a = dir.path().join("a");
    let port_s = port.to_string();
    let out = backup(&["-host", "127.0.0.1", "-port", &port_s, "-to", path(&a)]).expect(1);
    let line = out.one_error_line();
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(
        line.contains("online_backup_enabled") && line.contains("online_backup_server"),
        "{line}"
    );
    assert!(!a.exists(), "a failed run leaves no directory behind");
    let b = dir.path().join("b");
    for flag in ["-host", "-from"] {
        let args = [
            flag,
            "no-such-host.invalid",
            "-timeout",
            "20s",
            "-to",
            path(&b),
        ];
        let line = backup(&args).expect(1).one_error_line().to_string();
        assert!(line.contains("no-such-host.invalid:6362"), "{line}");
    }
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for target in [
        file.join("sub"),
        Path::new("/proc/neo4j-backup-test").to_path_buf(),
    ] {
        let out = backup_from(&addr, &target, &[]).expect(1);
        assert!(
            out.one_error_line().contains(&target.display().to_string()),
            "{out:#?}"
        );
    }
}

// BK-8, BK-5: usage errors exit 2 with one sentence on stderr that says what is wrong, and
// touch nothing.
#[test]
fn bk_8_usage_errors_exit_2_with_one_line() {
    let dir = scratch();
    let to = dir.path().join("never");
    let to_s = to.to_str().unwrap();
    for (args, says) in [
        (vec!["-host", "h", "-to", to_s, "-timeout", "5x"], "5x"),
        (vec!["-host", "h", "-to", to_s, "-timeout", "0"], "timeout"),
        (
            vec!["-host", "h", "-to", to_s, "--type", "sideways"],
            "incremental",
        ),
        (vec!["-host", "h", "-to", to_s, "-verify", "maybe"], "full"),
        (vec!["-host", "h"], "--to"),
        (vec!["-to", to_s], "-host"),
        (vec!["-host", "", "-to", to_s], "-host"),
        (
            vec!["-host", "h", "-to", to_s, "--frobnicate"],
            "frobnicate",
        ),
        (vec!["-host", "h", "-port", "70000", "-to", to_s], "70000"),
        (vec!["-from", "h:port", "-to", to_s], "h:port"),
        (vec!["-from", "h:1", "-host", "h", "-to", to_s], "--from"),
        (vec!["-from", "h:1", "-port", "1", "-to", to_s], "--from"),
        (vec!["-host", "h", "-to", to_s, "stray"], "stray"),
    ] {
        let out = backup(&args).expect(2);
        let line = out.one_error_line();
        assert!(line.contains(says), "{args:?}: {line}");
        assert!(!to.exists(), "{args:?} created the target");
    }
}

// BK-1, BK-5, BK-10, BK-25: -host/-port, --host/--port, -from host:port, and values after `=`,
// in both dash styles, all reach the same server; an IPv6 host works in brackets with -from.
#[test]
fn bk_1_both_dash_styles_and_from_work() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let b_s = b.to_str().unwrap();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let from_localhost = format!("localhost:{port}");
    let from_eq = format!("--from={addr}");
    let to_eq = format!("--to={b_s}");
    let host_eq = format!("-host={host}");
    let port_eq = format!("-port={port}");
    let to_eq1 = format!("-to={b_s}");
    let runs: Vec<Vec<&str>> = vec![
        vec!["-host", host, "-port", port, "-to", b_s],
        vec!["--host", host, "--port", port, "--to", b_s],
        vec!["-from", &addr, "-to", b_s],
        vec!["--from", &addr, "--to", b_s, "--type", "incremental"],
        vec![
            &from_eq,
            &to_eq,
            "--type=incremental",
            "--verify=full",
            "--timeout=30s",
        ],
        vec![
            &host_eq,
            &port_eq,
            &to_eq1,
            "-type=auto",
            "-verify=true",
            "-timeout=5000ms",
        ],
        vec![
            "-from",
            &from_localhost,
            "-to",
            b_s,
            "-type",
            "incremental",
            "-timeout",
            "1m",
        ],
    ];
    for (i, args) in runs.iter().enumerate() {
        write_nodes(&server, 1);
        let out = backup(args).expect(0);
        let kind = if i == 0 { "full" } else { "incremental" };
        assert!(
            out.summary().contains(&format!("{kind} backup of store")),
            "{args:?}: {out:#?}"
        );
        assert_same_as_server(&b, &server);
    }
    // An IPv6 host: in brackets with -from, bare with -host.
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED the IPv6 part: no IPv6 loopback here");
        return;
    }
    let config = "http_server=127.0.0.1:0\nonline_backup_server=[::1]:0\n";
    let v6 = ServerProcess::start(&dir.path().join("db6"), Some(config));
    let addr6 = v6.backup.clone().unwrap();
    let (_, port6) = addr6.rsplit_once(':').unwrap();
    assert_eq!(addr6, format!("[::1]:{port6}"));
    let b6 = dir.path().join("backup6");
    for args in [
        vec!["-from", &addr6, "-to", path(&b6)],
        vec!["-host", "::1", "-port", port6, "-to", path(&b6)],
    ] {
        write_nodes(&v6, 1);
        backup(&args).expect(0);
        assert_same_as_server(&b6, &v6);
    }
}

// BK-18, BK-32, BK-30, BK-4: `--type full` on a directory holding a backup takes a full
// backup into a new generation, switches the pointer and deletes the old generation.
#[test]
fn bk_18_type_full_makes_a_new_generation_and_removes_the_old() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 4);
    backup_from(&addr, &b, &[]).expect(0);
    assert_eq!(names(&b), ["CURRENT", "generation-1"]);
    assert_eq!(
        std::fs::read_to_string(b.join("CURRENT")).unwrap(),
        "generation-1\n"
    );
    write_nodes(&server, 4);
    let out = backup_from(&addr, &b, &["--type", "full"]).expect(0);
    assert!(out.stdout.contains("--type full was asked for"), "{out:#?}");
    assert!(out.summary().contains("full backup of store"), "{out:#?}");
    assert_eq!(names(&b), ["CURRENT", "generation-2"]);
    assert_eq!(
        std::fs::read_to_string(b.join("CURRENT")).unwrap(),
        "generation-2\n"
    );
    assert_same_as_server(&b, &server);
    let out = backup_from(&addr, &b, &["-type", "full", "-verify", "false"]).expect(0);
    assert!(out.summary().contains("full backup"), "{out:#?}");
    assert_eq!(names(&b), ["CURRENT", "generation-3"]);
    assert_same_as_server(&b, &server);
}

// BK-26, BK-27, BK-9: what -verify did is in the summary: a full scan after a full backup by
// default, none with false, the records written after an incremental, a full scan with full.
#[test]
fn bk_26_verify_modes_are_reported_in_the_summary() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let (b1, b2) = (dir.path().join("b1"), dir.path().join("b2"));
    write_nodes(&server, 3);
    let scan = "verifying: scanning every record";
    let out = backup_from(&addr, &b1, &["-verify", "false"]).expect(0);
    assert!(
        out.summary().contains("not verified (-verify false)"),
        "{out:#?}"
    );
    assert!(!out.stdout.contains(scan), "{out:#?}");
    let out = backup_from(&addr, &b2, &[]).expect(0);
    assert!(
        out.summary().contains("verified (full scan and digest)"),
        "{out:#?}"
    );
    assert!(out.stdout.contains(scan), "{out:#?}");
    for (more, says, scans) in [
        (&[][..], "verified (records written and digest)", false),
        (
            &["-verify", "full"][..],
            "verified (full scan and digest)",
            true,
        ),
        (
            &["--verify", "false"][..],
            "not verified (-verify false)",
            false,
        ),
        (
            &["-verify", "true"][..],
            "verified (records written and digest)",
            false,
        ),
    ] {
        write_nodes(&server, 2);
        let out = backup_from(&addr, &b1, more).expect(0);
        assert!(out.summary().contains("incremental backup"), "{out:#?}");
        assert!(out.summary().contains(says), "{more:?}: {out:#?}");
        assert_eq!(out.stdout.contains(scan), scans, "{more:?}: {out:#?}");
        assert_same_as_server(&b1, &server);
    }
}

/// A proxy for one connection that flips one byte of node 0's record in the node store as it
/// is copied, and fixes the file's CRC to match, so that only a scan of the records can tell.
fn corrupting_proxy(upstream: &str) -> Proxy {
    let (mut in_nodes, mut flipped, mut crc) = (false, false, 0u32);
    Proxy::start(upstream, move |body| {
        match body[0] {
            kind::FILE_START => {
                in_nodes = Fields(&body[1..]).string() == "neostore.nodestore.db";
                crc = 0;
            }
            kind::FILE_CHUNK if in_nodes => {
                if !flipped {
                    body[1 + 1] ^= 0x40;
                    flipped = true;
                }
                crc = crc32c::crc32c_append(crc, &body[1..]);
            }
            kind::FILE_END if in_nodes => body[1..5].copy_from_slice(&crc.to_le_bytes()),
            _ => {}
        }
        Action::Pass
    })
}

// BK-26, BK-28, BK-17, BK-40: a record damaged in transit (with every CRC of the stream made to
// match) is caught by the full scan of `-verify true` (exit 6, the previous backup stays live
// and as it was); `-verify false` skips that scan and trusts the stream, so only `neo4j-admin
// check` finds the damage; a later `--type full` replaces it.
#[test]
fn bk_26_the_full_scan_catches_a_record_damaged_in_transit() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let upstream = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(&upstream, &b, &[]).expect(0);
    let proxy = corrupting_proxy(&upstream);
    let line = refused(&proxy.addr, &b, &["--type", "full"], 6);
    assert!(line.contains("verification failed"), "{line}");
    assert_eq!(current(&b), "generation-1");
    let fresh = dir.path().join("unverified");
    let proxy = corrupting_proxy(&upstream);
    backup_from(&proxy.addr, &fresh, &["-verify", "false"]).expect(0);
    let out = admin(&["check", path(&fresh)]);
    assert_eq!(out.code, Some(3), "{out:#?}");
    backup_from(&upstream, &fresh, &["--type", "full"]).expect(0);
    assert_same_as_server(&fresh, &server);
}

// BK-3, BK-19, PR-18: with online_backup_enabled=false nothing listens on the configured
// port; the tool fails there with exit 1 naming host and port.
#[test]
fn bk_3_service_off_fails_like_an_unreachable_server() {
    let dir = scratch();
    let port = free_port();
    let config = format!(
        "http_server=127.0.0.1:0\nonline_backup_enabled=false\nonline_backup_server=127.0.0.1:{port}\n"
    );
    let server = ServerProcess::start(&dir.path().join("db"), Some(&config));
    assert_eq!(server.backup, None);
    write_nodes(&server, 1);
    let target = dir.path().join("backup");
    let out = backup_from(&format!("127.0.0.1:{port}"), &target, &[]).expect(1);
    let line = out.one_error_line();
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(line.contains("online_backup_enabled"), "{line}");
}

// BK-2, PR-18: a range binds its first free port; the tool is given that port. A range with
// no free port stops the server at start.
#[test]
fn bk_2_port_range_binds_the_first_free_port() {
    let dir = scratch();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = taken.local_addr().unwrap().port();
    let last = p.saturating_add(20);
    let config = format!("http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:{p}-{last}\n");
    let server = ServerProcess::start(&dir.path().join("db"), Some(&config));
    let bound = server.backup.clone().unwrap();
    let q: u16 = bound.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(q > p && q <= last, "bound {q} for {p}-{last}");
    write_nodes(&server, 2);
    let b = dir.path().join("backup");
    let q_s = q.to_string();
    backup(&["-host", "127.0.0.1", "-port", &q_s, "-to", path(&b)]).expect(0);
    assert_same_as_server(&b, &server);
    // None free: the only port of the range is taken.
    let config_path = dir.path().join("none-free.properties");
    std::fs::write(
        &config_path,
        format!("http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:{p}-{p}\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_neo4j"))
        .args(["console", "--store"])
        .arg(dir.path().join("db2"))
        .arg("--config")
        .arg(&config_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&p.to_string()), "{stderr}");
    drop(taken);
}

// BK-16, BK-17, BK-40: a full backup into a file system without room for the store files plus
// the margin fails with exit 1 naming both numbers, before it writes anything. The target is a
// 2 MiB tmpfs mounted in a private mount namespace (`unshare -m`), so nothing outside the
// test sees it; where that is not permitted the test says so and checks nothing.
#[test]
fn bk_16_no_room_for_a_full_backup_fails_before_writing() {
    let dir = scratch();
    let probe = dir.path().join("probe");
    std::fs::create_dir(&probe).unwrap();
    let can_mount = Command::new("unshare")
        .args([
            "-m",
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            path(&probe),
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !can_mount {
        eprintln!("SKIPPED: cannot mount a tmpfs in a private mount namespace here");
        return;
    }
    let store = dir.path().join("db");
    generate(&store, 4000, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let needed = {
        let bytes = record_file_bytes(&store);
        bytes + bytes / 16 + (1 << 20)
    };
    let target = dir.path().join("small");
    std::fs::create_dir(&target).unwrap();
    let script = r#"mount -t tmpfs -o size=2m tmpfs "$1" || exit 99
"$2" -from "$3" -to "$1"; rc=$?
echo "left: $(ls -A "$1" | tr '\n' ' ')"
exit $rc"#;
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh", path(&target)])
        .arg(env!("CARGO_BIN_EXE_neo4j-backup"))
        .arg(&addr)
        .output()
        .unwrap();
    let out = Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
    .expect(1);
    let line = out.one_error_line();
    assert!(line.contains("not enough room"), "{line}");
    assert!(line.contains(&format!("({needed} bytes)")), "{line}");
    let exact: Vec<u64> = line
        .split('(')
        .filter_map(|part| part.split(" bytes)").next()?.parse().ok())
        .collect();
    assert_eq!(
        exact.len(),
        2,
        "CLI-5: both sizes in human units and exact: {line}"
    );
    let free = exact[1];
    assert!(free < needed && free <= 2 << 20, "{line}");
    assert_eq!(out.stdout.trim(), "left:", "{out:#?}");
}

// BK-41, BK-8: with --max-rate the average rate of a full backup never exceeds the limit by
// more than 10% (an upper bound only: a slow machine cannot fail it); bad values are usage
// errors.
#[test]
fn bk_41_max_rate_bounds_the_average_rate() {
    let dir = scratch();
    let store = dir.path().join("db");
    generate(&store, 40_000, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let limit: u64 = 8 << 20;
    let b = dir.path().join("backup");
    let started = Instant::now();
    let out = backup_from(&addr, &b, &["--max-rate", "8M", "-verify", "false"]).expect(0);
    let took = started.elapsed().as_secs_f64();
    let bytes = dir_bytes(&b.join(current(&b)));
    assert!(
        bytes > 3 * limit / 2,
        "the store is too small to measure: {bytes}"
    );
    let rate = bytes as f64 / took;
    assert!(
        rate <= limit as f64 * 1.1,
        "{rate:.0} B/s over {took:.2} s exceeds --max-rate 8M by more than 10%: {out:#?}"
    );
    for bad in ["0", "fast", "-5", "10X"] {
        let out = backup_from(&addr, &dir.path().join("x"), &["--max-rate", bad]).expect(2);
        out.one_error_line();
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

// BK-38, BK-31, BK-30: a plain store directory (made by `neo4j-admin generate`, here a copy of
// the server's store before it started) is a backup target: incremental in place; a full one
// creates a generation, switches the pointer and deletes the plain store files.
#[test]
fn bk_38_a_plain_store_directory_is_a_backup_target() {
    let dir = scratch();
    let store = dir.path().join("db");
    let plain = dir.path().join("plain");
    generate(&store, 500, &[]);
    copy_tree(&store, &plain);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 5);
    let out = backup_from(&addr, &plain, &[]).expect(0);
    assert!(out.summary().contains("incremental backup"), "{out:#?}");
    assert!(out.summary().contains("tx 1 to 5"), "{out:#?}");
    assert!(!plain.join("CURRENT").exists());
    assert!(plain.join("neostore.meta").exists());
    assert_same_as_server(&plain, &server);
    write_nodes(&server, 2);
    backup_from(&addr, &plain, &["--type", "full"]).expect(0);
    assert_eq!(names(&plain), ["CURRENT", "generation-1"]);
    assert_same_as_server(&plain, &server);
    write_nodes(&server, 2);
    let out = backup_from(&addr, &plain, &[]).expect(0);
    assert!(out.summary().contains("incremental backup"), "{out:#?}");
    assert_same_as_server(&plain, &server);
}

// BK-36, BK-37: what an interrupted run left (generations the pointer does not name,
// CURRENT.tmp, store files beside a pointer) is removed by the next run; `lost+found` is
// tolerated and left alone.
#[test]
fn bk_36_leftovers_are_removed_and_lost_found_is_tolerated() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    // A directory holding only the leftovers of an interrupted first backup, and lost+found.
    let b = dir.path().join("backup");
    std::fs::create_dir_all(b.join("generation-3")).unwrap();
    std::fs::write(
        b.join("generation-3").join("neostore.nodestore.db"),
        [1u8; 64],
    )
    .unwrap();
    std::fs::write(b.join("CURRENT.tmp"), "generation-3\n").unwrap();
    std::fs::create_dir_all(b.join("lost+found")).unwrap();
    std::fs::write(b.join("lost+found").join("#1234"), "fsck found this").unwrap();
    let out = backup_from(&addr, &b, &[]).expect(0);
    assert!(out.summary().contains("full backup"), "{out:#?}");
    let live = current(&b);
    assert_eq!(
        names(&b),
        ["CURRENT".to_string(), live.clone(), "lost+found".into()]
    );
    assert_eq!(
        std::fs::read(b.join("lost+found").join("#1234")).unwrap(),
        b"fsck found this"
    );
    assert_same_as_server(&b, &server);
    // Leftovers beside a live backup: an unnamed generation, the pointer's temp file, and
    // store files at the top level.
    std::fs::create_dir_all(b.join("generation-9")).unwrap();
    std::fs::write(b.join("generation-9").join("neostore.meta"), [2u8; 10]).unwrap();
    std::fs::write(b.join("CURRENT.tmp"), "generation-9\n").unwrap();
    std::fs::write(b.join("neostore.nodestore.db"), [3u8; 10]).unwrap();
    write_nodes(&server, 2);
    let out = backup_from(&addr, &b, &[]).expect(0);
    assert!(out.summary().contains("incremental backup"), "{out:#?}");
    assert_eq!(
        names(&b),
        ["CURRENT".to_string(), live, "lost+found".into()]
    );
    assert_same_as_server(&b, &server);
}

// ---------------------------------------------------------------------------------------------
// Timeouts, network failures and a lying server (through a silent server or a proxy)

// BK-7, BK-34: -timeout bounds the wait for a silent server (before the welcome, and in the
// middle of a file); the tool fails with exit 1 naming the server and what it waited for, and
// the directory is as it was.
#[test]
fn bk_7_timeout_bounds_the_wait_for_a_silent_server() {
    let dir = scratch();
    let silent = SilentServer::start();
    for (timeout, at_least) in [("1s", 1000), ("500ms", 500)] {
        let started = Instant::now();
        let target = dir.path().join(format!("t-{timeout}"));
        let out = backup_from(&silent.addr, &target, &["-timeout", timeout]).expect(1);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(at_least) && took < Duration::from_secs(30),
            "{took:?}"
        );
        let line = out.one_error_line();
        assert!(
            line.contains(&silent.addr) && line.contains("welcome"),
            "{line}"
        );
    }
    // A server that stops sending in the middle of a file.
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(server.backup.as_deref().unwrap(), &b, &[]).expect(0);
    write_nodes(&server, 3);
    let proxy = Proxy::start(server.backup.as_deref().unwrap(), |body| {
        if body[0] == kind::FILE_CHUNK {
            Action::Stall
        } else {
            Action::Pass
        }
    });
    let line = refused(&proxy.addr, &b, &["--type", "full", "-timeout", "1s"], 1);
    assert!(
        line.contains(&proxy.addr) && line.contains("chunk"),
        "{line}"
    );
}

/// A proxy for one connection that hands the `nth` frame of `kind` (counting from 0) to `edit`
/// and passes everything else.
fn editing_proxy(
    upstream: &str,
    kind: u8,
    nth: usize,
    mut edit: impl FnMut(&mut Vec<u8>) -> Action + Send + 'static,
) -> Proxy {
    let mut seen = 0;
    Proxy::start(upstream, move |body| {
        if body[0] != kind {
            return Action::Pass;
        }
        seen += 1;
        if seen - 1 == nth {
            edit(body)
        } else {
            Action::Pass
        }
    })
}

// BK-34, BK-17, PR-1, PR-11: a connection that fails in the middle of a full backup, a damaged
// frame, a file whose bytes do not match its CRC, and a file that is not a store file all fail
// the run with exit 1 and one line, and leave the previous backup as it was; a connection cut
// in the middle of an incremental backup leaves a valid backup, and the next run catches up.
#[test]
fn bk_34_network_failures_and_damaged_streams_leave_a_valid_backup() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let upstream = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(&upstream, &b, &[]).expect(0);
    write_nodes(&server, 3);
    let full = ["--type", "full"];

    let cut = editing_proxy(&upstream, kind::FILE_CHUNK, 1, |_| Action::Cut);
    let line = refused(&cut.addr, &b, &full, 1);
    assert!(line.contains(&cut.addr), "{line}");

    let bad_crc = editing_proxy(&upstream, kind::FILE_CHUNK, 0, |_| Action::BadCrc);
    let line = refused(&bad_crc.addr, &b, &full, 1);
    assert!(line.contains("checksum"), "{line}");

    let damaged = editing_proxy(&upstream, kind::FILE_END, 0, |body| {
        body[1] ^= 0x01;
        Action::Pass
    });
    let line = refused(&damaged.addr, &b, &full, 1);
    assert!(line.contains("damaged"), "{line}");

    for name in ["neostore.meta", "../evil"] {
        let renamed = editing_proxy(&upstream, kind::FILE_START, 0, move |body| {
            let mut f = Fields(&body[1..]);
            let _ = f.string();
            let len = f.u64();
            let mut out = vec![kind::FILE_START];
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            *body = out;
            Action::Pass
        });
        refused(&renamed.addr, &b, &full, 1);
        assert!(!dir.path().join("evil").exists());
    }

    // Cut after the first transaction of an incremental backup.
    let old = tx(&check_json(&b));
    let cut = editing_proxy(&upstream, kind::TX, 1, |_| Action::Cut);
    let out = backup_from(&cut.addr, &b, &[]).expect(1);
    out.one_error_line();
    let report = check_json(&b);
    assert!((old..=6).contains(&tx(&report)), "{report}");
    let out = backup_from(&upstream, &b, &[]).expect(0);
    assert!(out.summary().contains("incremental backup"), "{out:#?}");
    assert_same_as_server(&b, &server);
}

/// A proxy that changes the digest of every end frame (PR-2: kind, last tx, digest).
fn lying_proxy(upstream: &str) -> Proxy {
    Proxy::start(upstream, |body| {
        if body[0] == kind::END {
            body[9] ^= 0x80;
        }
        Action::Pass
    })
}

// BK-28, BK-20, BK-25, BK-12, BK-40: when the backup's digest does not match the server's end
// frame (whatever -verify says), a full backup exits 6 and leaves the previous backup live and
// as it was; an incremental one exits 6 and marks the backup unverified, so that `--type
// incremental` then exits 7 and `auto` takes a full backup.
#[test]
fn bk_28_verification_failure_exits_6() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let upstream = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(&upstream, &b, &[]).expect(0);
    write_nodes(&server, 3);
    let liar = lying_proxy(&upstream);
    for more in [
        &["--type", "full"][..],
        &["--type", "full", "-verify", "false"][..],
    ] {
        let line = refused(&liar.addr, &b, more, 6);
        assert!(line.contains("verification failed"), "{line}");
    }
    assert_eq!(current(&b), "generation-1");
    let out = backup_from(&liar.addr, &b, &["-verify", "false"]).expect(6);
    assert!(
        out.one_error_line().contains("verification failed"),
        "{out:#?}"
    );
    let line = refused(&upstream, &b, &["--type", "incremental"], 7);
    assert!(line.contains("unverified"), "{line}");
    let out = backup_from(&upstream, &b, &[]).expect(0);
    assert!(out.stdout.contains("marked unverified"), "{out:#?}");
    assert!(out.summary().contains("full backup"), "{out:#?}");
    assert_same_as_server(&b, &server);
    write_nodes(&server, 1);
    let out = backup_from(&upstream, &b, &[]).expect(0);
    assert!(out.summary().contains("incremental backup"), "{out:#?}");
}

// ---------------------------------------------------------------------------------------------
// The protocol, spoken by hand to the real server

fn record_file_bytes(store: &Path) -> u64 {
    ["nodestore", "relationshipstore", "propertystore"]
        .iter()
        .map(|f| {
            std::fs::metadata(store.join(format!("neostore.{f}.db")))
                .unwrap()
                .len()
        })
        .sum()
}

/// The checkpointed tx of a store's metadata (ST-10: offset 32).
fn checkpoint_tx(store: &Path) -> u64 {
    let meta = std::fs::read(store.join("neostore.meta")).unwrap();
    u64::from_le_bytes(meta[32..40].try_into().unwrap())
}

/// Hello and welcome; returns the welcome's fields after the version.
fn handshake(w: &mut Wire) -> Vec<u8> {
    w.send(&hello(1));
    let body = w.recv().expect("a welcome");
    assert_eq!(body[0], kind::WELCOME);
    body
}

/// Reads a whole full backup after its full start: the files (checked against their CRCs)
/// and the transactions; returns (files, transactions, end's last tx, end's digest).
fn read_full_backup(w: &mut Wire, files: u32) -> (Vec<(String, u64)>, u64, u64, String) {
    let mut names = Vec::new();
    for _ in 0..files {
        let start = w.recv().unwrap();
        assert_eq!(start[0], kind::FILE_START);
        let mut f = Fields(&start[1..]);
        let (name, len) = (f.string(), f.u64());
        let (mut got, mut crc) = (0u64, 0u32);
        loop {
            let body = w.recv().unwrap();
            match body[0] {
                kind::FILE_CHUNK => {
                    assert!(body.len() - 1 <= 1 << 20, "PR-11: chunks of at most 1 MiB");
                    crc = crc32c::crc32c_append(crc, &body[1..]);
                    got += body.len() as u64 - 1;
                }
                kind::FILE_END => {
                    assert_eq!(Fields(&body[1..]).u32(), crc, "{name}");
                    break;
                }
                other => panic!("kind {other} inside {name}"),
            }
        }
        assert_eq!(got, len, "{name}");
        names.push((name, len));
    }
    let mut txs = 0;
    loop {
        let body = w.recv().unwrap();
        match body[0] {
            kind::TX => txs += 1,
            kind::END => {
                let mut f = Fields(&body[1..]);
                return (names, txs, f.u64(), f.digest());
            }
            other => panic!("kind {other} after the files"),
        }
    }
}

/// Reads transactions up to the end frame; returns (transactions, last tx, digest).
fn read_txs(w: &mut Wire) -> (u64, u64, String) {
    let mut txs = 0;
    loop {
        let body = w.recv().unwrap();
        match body[0] {
            kind::TX => txs += 1,
            kind::END => {
                let mut f = Fields(&body[1..]);
                let r = (txs, f.u64(), f.digest());
                assert!(f.is_empty());
                return r;
            }
            other => panic!("kind {other} where transactions or the end were expected"),
        }
    }
}

// PR-1, PR-2, PR-3, PR-4, PR-5, PR-7, PR-10, PR-11, PR-13, PR-14, PR-15: the handshake, a
// full and incremental requests, and every refusal, spoken frame by frame to the real server;
// damaged first frames end the connection; afterwards the server still serves a backup.
#[test]
fn pr_4_the_protocol_spoken_by_hand() {
    let dir = scratch();
    let store = dir.path().join("db");
    let config =
        format!("{EPHEMERAL}logical_log_rotation_threshold=16k\nkeep_logical_logs=1 files\n");
    let server = ServerProcess::start(&store, Some(&config));
    let addr = server.backup.clone().unwrap();
    let mut digests = BTreeMap::new();
    write_recorded(&server, 3, 16, &mut digests);
    let st = status(&server);
    let id = s(&st["store_id"]);

    // PR-4: the welcome says what GET /db/data/ says, and the record files' size.
    let mut w = Wire::connect(&addr);
    let welcome = handshake(&mut w);
    let mut f = Fields(&welcome[1..]);
    assert_eq!(f.u32(), 1, "protocol version");
    assert_eq!(f.store_id(), id);
    assert_eq!(f.u32().to_string(), s(&st["format_version"]));
    assert_eq!(f.u64(), 3);
    assert_eq!(f.u64(), st["oldest_logged_tx"].as_u64().unwrap());
    assert_eq!(f.u64(), record_file_bytes(&store));
    assert!(f.is_empty());

    // PR-10: a full request checkpoints at C (the last tx) and starts with the state at C.
    assert!(checkpoint_tx(&store) < 3);
    w.send(&[kind::REQUEST_FULL]);
    let start = w.recv().unwrap();
    assert_eq!(start[0], kind::FULL_START);
    let mut f = Fields(&start[1..]);
    assert_eq!(f.u64(), 3, "checkpoint tx");
    assert_eq!(f.digest(), digests[&3]);
    assert_eq!(f.u64(), 3, "nodes");
    assert_eq!(f.u64(), 0, "relationships");
    let (_next_node, _next_rel, _next_block) = (f.u64(), f.u64(), f.u64());
    let files = f.u32();
    assert_eq!(files, 3);
    assert_eq!(checkpoint_tx(&store), 3);
    // PR-11, PR-13: the record files, then no transaction after C, then the end at U = C.
    let (names, txs, last, digest) = read_full_backup(&mut w, files);
    let mut got: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "neostore.nodestore.db",
            "neostore.propertystore.db",
            "neostore.relationshipstore.db"
        ]
    );
    assert_eq!((txs, last, digest.as_str()), (0, 3, digests[&3].as_str()));

    // PR-5, PR-15: more requests on the same connection; at N = U the end comes at once.
    w.send(&incremental_request(&id, 2, 3, &digests[&3]));
    assert_eq!(read_txs(&mut w), (0, 3, digests[&3].clone()));
    w.send(&incremental_request(&id, 2, 1, &digests[&1]));
    assert_eq!(read_txs(&mut w), (2, 3, digests[&3].clone()));

    // PR-14: a digest at N that differs: code 5 with the server's digest at N; PR-7: the
    // connection stays open for the fallback.
    w.send(&incremental_request(&id, 2, 2, &digests[&1]));
    let r = w.recv().unwrap();
    let mut f = Fields(&r[1..]);
    assert_eq!((r[0], f.u8()), (kind::REFUSED, 5));
    assert_eq!((f.u64(), f.u64(), f.u8()), (2, 3, 1));
    assert_eq!(f.digest(), digests[&2]);
    assert!(f.is_empty());
    // N beyond the server's last tx: code 5 without a digest.
    w.send(&incremental_request(&id, 2, 10, &digests[&3]));
    let r = w.recv().unwrap();
    let mut f = Fields(&r[1..]);
    assert_eq!(
        (r[0], f.u8(), f.u64(), f.u64(), f.u8()),
        (kind::REFUSED, 5, 10, 3, 0)
    );
    assert!(f.is_empty());
    w.send(&[kind::REQUEST_FULL]);
    assert_eq!(w.recv().unwrap()[0], kind::FULL_START);
    let (_, _, last, _) = read_full_backup(&mut w, 3);
    assert_eq!(last, 3);
    drop(w);

    // PR-14: another store (code 2, even when the format differs too), another format (3).
    let other = {
        let (a, b) = id.split_once('-').unwrap();
        format!("{a}-{:016x}", u64::from_str_radix(b, 16).unwrap() ^ 1)
    };
    for (store_id, format, code) in [(&other, 2, 2), (&other, 1, 2), (&id, 1, 3)] {
        let mut w = Wire::connect(&addr);
        handshake(&mut w);
        w.send(&incremental_request(store_id, format, 3, &digests[&3]));
        let r = w.recv().unwrap();
        let mut f = Fields(&r[1..]);
        assert_eq!((r[0], f.u8()), (kind::REFUSED, code));
        if code == 2 {
            assert_eq!(f.store_id(), id);
        } else {
            assert_eq!(f.u32(), 2);
        }
        assert!(f.is_empty());
    }

    // PR-14: pruned logs: code 4 with the tx needed and the oldest the server has; PR-7: the
    // connection stays open.
    let mut i = 0;
    while status(&server)["oldest_logged_tx"].as_u64().unwrap() <= 2 {
        write_recorded(&server, 1, 1000, &mut digests);
        i += 1;
        assert!(i < 1000, "the logs were never pruned");
    }
    let st = status(&server);
    let (last, oldest) = (tx(&st), st["oldest_logged_tx"].as_u64().unwrap());
    let mut w = Wire::connect(&addr);
    handshake(&mut w);
    w.send(&incremental_request(&id, 2, 1, &digests[&1]));
    let r = w.recv().unwrap();
    let mut f = Fields(&r[1..]);
    assert_eq!(
        (r[0], f.u8(), f.u64(), f.u64()),
        (kind::REFUSED, 4, 2, oldest)
    );
    assert!(f.is_empty());
    w.send(&incremental_request(&id, 2, last, &digests[&last]));
    assert_eq!(read_txs(&mut w), (0, last, digests[&last].clone()));
    drop(w);

    // PR-3: another protocol version is refused with the server's (code 1), then closed.
    let mut w = Wire::connect(&addr);
    w.send(&hello(99));
    let r = w.recv().unwrap();
    let mut f = Fields(&r[1..]);
    assert_eq!((r[0], f.u8(), f.u32()), (kind::REFUSED, 1, 1));
    assert!(w.closed_without_answer());
    // PR-3, PR-1, PR-2: a first frame that is not a hello, a bad magic, trailing bytes, a
    // length of 0 or over the maximum, a wrong checksum: the server closes without a word.
    let mut bad_magic = hello(1);
    bad_magic[1] = b'X';
    let mut trailing = hello(1);
    trailing.push(0);
    let mut bad_crc = frame(&hello(1));
    bad_crc[4] ^= 1;
    for raw in [
        frame(&[kind::REQUEST_FULL]),
        frame(&bad_magic),
        frame(&trailing),
        vec![0, 0, 0, 0, 0, 0, 0, 0],
        vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        bad_crc,
    ] {
        let mut w = Wire::connect(&addr);
        std::io::Write::write_all(&mut w.s, &raw).unwrap();
        assert!(w.closed_without_answer(), "{raw:?}");
    }
    let b = dir.path().join("backup");
    backup_from(&addr, &b, &[]).expect(0);
    assert_same_as_server(&b, &server);
}

// PR-20, PR-6, PR-10, PR-17, PR-19, BK-34: a client that stops reading in the middle of a
// full backup does not stop the server: commits go on (the store lock is not held while the
// service waits on the network), and the logs from the checkpoint on stay pinned while the
// connection lives; the pin goes with the connection. At shutdown the server closes a backup
// connection in flight and stops cleanly, losing nothing.
#[test]
fn pr_20_a_stalled_backup_does_not_stop_commits_and_its_pin_goes_with_it() {
    let dir = scratch();
    let store = dir.path().join("db");
    generate(&store, 60_000, &[]);
    let config =
        format!("{EPHEMERAL}logical_log_rotation_threshold=16k\nkeep_logical_logs=1 files\n");
    let mut server = ServerProcess::start(&store, Some(&config));
    let addr = server.backup.clone().unwrap();
    let mut w = Wire::connect(&addr);
    handshake(&mut w);
    w.send(&[kind::REQUEST_FULL]);
    let start = w.recv().unwrap();
    assert_eq!(start[0], kind::FULL_START);
    let c = Fields(&start[1..]).u64();
    assert_eq!(w.recv().unwrap()[0], kind::FILE_START);
    assert_eq!(w.recv().unwrap()[0], kind::FILE_CHUNK);
    // The client reads nothing more; the server commits on and rotates its logs.
    for i in 0..60 {
        write_node(&server.http, i, 1000);
    }
    let st = status(&server);
    assert_eq!(tx(&st), c + 60);
    let logs = names(&store)
        .iter()
        .filter(|n| n.starts_with("neostore.transaction.db."))
        .count();
    assert!(logs >= 3, "rotated {logs} files");
    assert!(
        st["oldest_logged_tx"].as_u64().unwrap() <= c + 1,
        "the logs after the checkpoint are pinned: {st}"
    );
    drop(w);
    let mut i = 0;
    while status(&server)["oldest_logged_tx"].as_u64().unwrap() <= c + 1 {
        write_node(&server.http, i, 1000);
        i += 1;
        assert!(i < 1000, "the pin outlived its connection");
    }
    // PR-19: shutdown with a backup connection in flight.
    let mut w = Wire::connect(&addr);
    handshake(&mut w);
    w.send(&[kind::REQUEST_FULL]);
    assert_eq!(w.recv().unwrap()[0], kind::FULL_START);
    let acknowledged = status(&server);
    assert_eq!(
        terminate_within(&mut server, Duration::from_secs(30)),
        Some(0)
    );
    let mut rest = Vec::new();
    match std::io::Read::read_to_end(&mut w.s, &mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    drop(server);
    let report = check_json(&store);
    assert_eq!(
        (tx(&report), &report["digest"]),
        (tx(&acknowledged), &acknowledged["digest"])
    );
}

// ---------------------------------------------------------------------------------------------
// Restore

// ADM-6, ADM-7, ADM-8, BK-23: a backup restored into an empty directory checks, starts with
// `neo4j console` and serves the backup's store id, tx and digest; a non-empty target is refused
// without --force and left unchanged, and replaced with it; a directory of foreign files is
// refused even with --force; an inconsistent backup is refused with exit 3, nothing restored.
#[test]
fn adm_6_restore_round_trip() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 12);
    let b = dir.path().join("backup");
    backup_from(&addr, &b, &[]).expect(0);
    let backed = check_json(&b);
    drop(server);

    let r = dir.path().join("restored");
    let out = admin(&["restore", "--from", path(&b), "--store", path(&r)]).expect(0);
    assert!(out.stdout.contains("restored"), "{out:#?}");
    let restored = check_json(&r);
    for key in [
        "store_id",
        "last_committed_tx",
        "digest",
        "nodes",
        "relationships",
    ] {
        assert_eq!(restored[key], backed[key], "{key}");
    }
    let started = ServerProcess::start(&r, Some(EPHEMERAL));
    let s = status(&started);
    assert_eq!(s["digest"], backed["digest"]);
    assert_eq!(s["store_id"], backed["store_id"]);
    assert_eq!(s["last_committed_tx"], backed["last_committed_tx"]);
    // Write to the restored store, so that a forced restore visibly replaces it.
    write_nodes(&started, 3);
    drop(started);

    // ADM-7: refused without --force, unchanged.
    let before = snapshot(&r);
    let out = admin(&["restore", "--from", path(&b), "--store", path(&r)]).expect(1);
    let line = out.one_error_line();
    assert!(line.contains("--force"), "{line}");
    assert_eq!(snapshot(&r), before);
    // With --force: replaced by the backup again.
    admin(&[
        "restore",
        "--from",
        path(&b),
        "--store",
        path(&r),
        "--force",
    ])
    .expect(0);
    assert_eq!(check_json(&r)["digest"], backed["digest"]);
    assert_eq!(
        names(&r)
            .iter()
            .filter(|n| n.starts_with("generation-"))
            .count(),
        1
    );

    // Foreign files are never deleted.
    let junk = dir.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("notes.txt"), b"mine").unwrap();
    let out = admin(&[
        "restore",
        "--from",
        path(&b),
        "--store",
        path(&junk),
        "--force",
    ])
    .expect(1);
    out.one_error_line();
    assert_eq!(std::fs::read(junk.join("notes.txt")).unwrap(), b"mine");

    // ADM-8: an inconsistent backup is refused with exit 3 and nothing is restored.
    let live = b.join(current(&b));
    let nodes = live.join("neostore.nodestore.db");
    let mut bytes = std::fs::read(&nodes).unwrap();
    bytes[3] ^= 0x40;
    std::fs::write(&nodes, bytes).unwrap();
    let fresh = dir.path().join("fresh");
    admin(&["restore", "--from", path(&b), "--store", path(&fresh)]).expect(3);
    assert!(
        !fresh.exists() || names(&fresh).is_empty(),
        "{:?}",
        names(&fresh)
    );
}

// BK-42, BK-17, BK-40: --plan says what a run would do and why and changes nothing: full into a
// missing directory (not created), incremental with its tx range onto a backup, full with the
// reason once the logs were pruned; under --type incremental the exit code the run would give
// (7), and the refusals' codes (3) too.
#[test]
fn bk_42_plan_says_what_would_happen_and_changes_nothing() {
    let dir = scratch();
    let config =
        format!("{EPHEMERAL}logical_log_rotation_threshold=16k\nkeep_logical_logs=1 files\n");
    let server = ServerProcess::start(&dir.path().join("db"), Some(&config));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 4);
    let b = dir.path().join("backup");
    let out = backup_from(&addr, &b, &["--plan"]).expect(0);
    assert!(out.stdout.contains("plan: full backup"), "{out:#?}");
    assert!(out.stdout.contains("holds no backup yet"), "{out:#?}");
    assert!(out.stdout.contains("nothing was changed"), "{out:#?}");
    assert!(!b.exists(), "--plan created the directory");

    backup_from(&addr, &b, &[]).expect(0);
    write_nodes(&server, 3);
    let before = snapshot(&b);
    let out = backup_from(&addr, &b, &["-plan"]).expect(0);
    assert!(
        out.stdout.contains("plan: incremental backup")
            && out.stdout.contains("tx 5 to at least 7"),
        "{out:#?}"
    );
    assert_eq!(snapshot(&b), before);

    let mut i = 0;
    while status(&server)["oldest_logged_tx"].as_u64().unwrap() <= 5 {
        write_node(&server.http, i, 1000);
        i += 1;
        assert!(i < 1000, "the logs were never pruned");
    }
    let before = snapshot(&b);
    let out = backup_from(&addr, &b, &["--plan"]).expect(0);
    assert!(
        out.stdout.contains("plan: full backup") && out.stdout.contains("no longer hold tx 5"),
        "{out:#?}"
    );
    let line = refused(&addr, &b, &["--plan", "--type", "incremental"], 7);
    assert!(line.contains("no longer hold tx 5"), "{line}");
    assert_eq!(snapshot(&b), before);

    let junk = dir.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("x"), b"x").unwrap();
    refused(&addr, &junk, &["--plan"], 3);
}

/// Runs a backup with `--json` and parses stdout, which must be exactly one JSON document.
fn json_run(addr: &str, target: &Path, more: &[&str], code: i32) -> Value {
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

// BK-43: --json prints one document on stdout for every outcome: a full backup, an incremental
// one, a fallback, a refusal (exit 3, 4, 7), an unreachable server, and a plan; the fields of
// spec/backup.md, with the same numbers as the backup itself.
#[test]
fn bk_43_json_for_every_outcome() {
    let dir = scratch();
    let config =
        format!("{EPHEMERAL}logical_log_rotation_threshold=16k\nkeep_logical_logs=1 files\n");
    let server = ServerProcess::start(&dir.path().join("db"), Some(&config));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 4);
    let b = dir.path().join("backup");
    let plan = json_run(&addr, &b, &["--plan"], 0);
    assert_eq!(plan["outcome"], "plan");
    assert_eq!(plan["mode"], "full");
    assert!(plan["free_bytes"].as_u64().unwrap() > 0, "{plan}");

    let full = json_run(&addr, &b, &[], 0);
    let report = check_json(&b);
    assert_eq!(full["outcome"], "done");
    assert_eq!(full["mode"], "full");
    assert_eq!(full["fell_back"], false);
    assert_eq!(full["verified"], "full_scan");
    assert_eq!(full["store_id"], report["store_id"]);
    assert_eq!(full["to_tx"], report["last_committed_tx"]);
    assert_eq!(full["digest"], report["digest"]);
    assert!(full["bytes"].as_u64().unwrap() > 0 && full["duration_secs"].is_number());
    assert!(full["throughput_bytes_per_sec"].is_number());

    write_nodes(&server, 2);
    let incr = json_run(&addr, &b, &[], 0);
    assert_eq!(incr["mode"], "incremental");
    assert_eq!(incr["from_tx"], 4);
    assert_eq!(incr["to_tx"], 6);
    assert_eq!(incr["transactions"], 2);
    assert_eq!(incr["verified"], "records_written");

    let mut i = 0;
    while status(&server)["oldest_logged_tx"].as_u64().unwrap() <= 7 {
        write_node(&server.http, i, 1000);
        i += 1;
        assert!(i < 1000, "the logs were never pruned");
    }
    let refused7 = json_run(&addr, &b, &["--type", "incremental"], 7);
    assert_eq!(refused7["outcome"], "failed");
    assert!(refused7["error"]
        .as_str()
        .unwrap()
        .contains("no longer hold tx 7"));
    let fell = json_run(&addr, &b, &[], 0);
    assert_eq!(fell["mode"], "full");
    assert_eq!(fell["fell_back"], true);
    assert!(
        fell["reason"]
            .as_str()
            .unwrap()
            .contains("no longer hold tx 7"),
        "{fell}"
    );

    let junk = dir.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("x"), b"x").unwrap();
    assert_eq!(json_run(&addr, &junk, &[], 3)["outcome"], "failed");
    let other = ServerProcess::start(&dir.path().join("other"), Some(EPHEMERAL));
    let mismatch = json_run(other.backup.as_ref().unwrap(), &b, &[], 4);
    assert!(
        mismatch["error"].as_str().unwrap().contains("store"),
        "{mismatch}"
    );
    // The fields the sentence knows: both store ids, both formats, both txs.
    let other_status = status(&other);
    assert_eq!(
        mismatch["store_id"], other_status["store_id"],
        "BK-43: {mismatch}"
    );
    assert_eq!(
        mismatch["server"]["store_id"], other_status["store_id"],
        "BK-43: {mismatch}"
    );
    assert_eq!(
        mismatch["server"]["last_committed_tx"], other_status["last_committed_tx"],
        "BK-43: {mismatch}"
    );
    let ours = check_json(&b);
    assert_eq!(
        mismatch["backup"]["store_id"], ours["store_id"],
        "BK-43: {mismatch}"
    );
    assert_eq!(
        mismatch["backup"]["format_version"], ours["format_version"],
        "BK-43: {mismatch}"
    );
    assert_eq!(
        mismatch["backup"]["last_tx"], ours["last_committed_tx"],
        "BK-43: {mismatch}"
    );
    assert_eq!(
        mismatch["from_tx"], ours["last_committed_tx"],
        "BK-43: {mismatch}"
    );
    for (name, v) in mismatch.as_object().unwrap() {
        if let Some(text) = v.as_str() {
            assert!(
                !text.contains("{ "),
                "CLI-5: {name} shows a Rust debug form: {text}"
            );
        }
    }
    let closed = format!("127.0.0.1:{}", free_port());
    assert_eq!(
        json_run(&closed, &dir.path().join("n"), &[], 1)["outcome"],
        "failed"
    );
}

// BK-44: when stdout is not a terminal there is no progress bar: only whole lines, each the
// tool's, without carriage returns or escape sequences.
#[test]
fn bk_44_no_progress_bar_off_a_terminal() {
    let dir = scratch();
    let store = dir.path().join("db");
    generate(&store, 20_000, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let out = backup_from(&addr, &dir.path().join("backup"), &[]).expect(0);
    assert!(
        !out.stdout.contains('\r') && !out.stdout.contains('\x1b'),
        "{out:#?}"
    );
    for line in out.stdout.lines() {
        assert!(line.starts_with("neo4j-backup: "), "{line:?}");
    }
    assert!(!out.stdout.contains("copying"), "{out:#?}");
}

// BK-46, BK-17, BK-43, BK-42: a backup ahead of the server (here the server was restored from an
// older backup of the same store, so it is at tx 5 while the backup is at tx 8) is never
// replaced by an older one: auto, incremental, --plan and --json all refuse with exit 7, change
// nothing, and name the server and both txs; `--type full` replaces it on purpose.
#[test]
fn bk_46_a_backup_ahead_of_the_server_is_replaced_only_by_type_full() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let older = dir.path().join("older-backup");
    let source = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = source.backup.clone().unwrap();
    write_nodes(&source, 5);
    backup_from(&addr, &b, &[]).expect(0);
    copy_tree(&b, &older);
    write_nodes(&source, 3);
    backup_from(&addr, &b, &[]).expect(0);
    assert_eq!(tx(&check_json(&b)), 8);
    assert_eq!(source.terminate(), Some(0));
    // The operator restores the server from the older backup.
    let restored = ServerProcess::start(&older, Some(EPHEMERAL));
    let addr = restored.backup.clone().unwrap();
    assert_eq!(tx(&status(&restored)), 5);
    for more in [&[][..], &["--type", "incremental"], &["--plan"]] {
        let line = refused(&addr, &b, more, 7);
        assert!(
            line.contains("is at tx 8, ahead of the server at")
                && line.contains(&addr)
                && line.contains("which is at tx 5")
                && line.contains("--type full"),
            "BK-46: {more:?}: {line}"
        );
    }
    let before = snapshot(&b);
    let doc = json_run(&addr, &b, &[], 7);
    assert_eq!(snapshot(&b), before, "BK-46: --json changed the backup");
    assert_eq!(doc["backup"]["last_tx"], 8, "BK-43: {doc}");
    assert_eq!(doc["server"]["last_committed_tx"], 5, "BK-43: {doc}");
    assert_eq!(
        doc["backup"]["store_id"], doc["server"]["store_id"],
        "BK-43: {doc}"
    );
    // On purpose: --type full takes the server's state at tx 5.
    let out = backup_from(&addr, &b, &["--type", "full"]).expect(0);
    assert!(
        out.summary().contains("full backup of store"),
        "BK-46: {out:#?}"
    );
    assert_eq!(tx(&assert_same_as_server(&b, &restored)), 5, "BK-46");
}

// BK-48, PR-21: pointed at a port that does not speak the backup protocol (the server's HTTP
// port, or anything else), the tool says so in one sentence instead of reporting a damaged frame.
#[test]
fn bk_48_a_port_that_is_not_the_backup_service_is_named_as_such() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let to = dir.path().join("backup");
    let out = backup_from(&server.http, &to, &[]).expect(1);
    let line = out.one_error_line();
    assert!(
        line.contains(&format!(
            "{} does not speak the backup protocol",
            server.http
        )) && line.contains("probably the server's HTTP port"),
        "BK-48: {line}"
    );
    assert!(
        !line.contains("frame length"),
        "PR-21: the first answer is read with a welcome's bound: {line}"
    );
    assert!(!to.exists(), "BK-48: the target was created");
    // Something that is not HTTP either: a banner of another protocol.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            let Ok(mut s) = s else { break };
            let _ = std::io::Write::write_all(&mut s, b"SSH-2.0-OpenSSH_9.2\r\n");
            held.push(s);
        }
    });
    let out = backup_from(&other, &to, &[]).expect(1);
    let line = out.one_error_line();
    assert!(
        line.contains("does not speak the backup protocol") && !line.contains("HTTP"),
        "BK-48: {line}"
    );
}

/// Runs `neo4j-backup -from <addr> -to <target> <more>` with stdout on a pseudo-terminal.
fn backup_on_a_terminal(addr: &str, target: &Path, more: &[&str]) -> (Option<i32>, String) {
    let mut cmd = backup_cmd(&["-from", addr, "-to"]);
    cmd.arg(target).args(more);
    on_a_terminal(cmd)
}

// BK-44, CLI-6: on a terminal the bar covers every long phase: the copy (bytes, rate, ETA from
// the first frame, never a bare count), applying transactions and verification.
#[test]
fn bk_44_progress_bar_on_a_terminal_for_every_long_phase() {
    let dir = scratch();
    let store = dir.path().join("db");
    generate(&store, 20_000, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let b = dir.path().join("backup");
    let (code, drawn) = backup_on_a_terminal(&addr, &b, &[]);
    assert_eq!(code, Some(0), "{drawn}");
    for phase in ["copying store files: ", "verifying: "] {
        assert!(
            drawn.contains(phase),
            "BK-44: no `{phase}` bar in {drawn:?}"
        );
    }
    assert!(
        drawn.contains(" of ") && drawn.contains("ETA"),
        "BK-44: {drawn:?}"
    );
    let first_bar = drawn
        .split(['\r', '\n'])
        .find(|l| l.contains("copying store files"))
        .unwrap();
    assert!(
        first_bar.contains("B of "),
        "BK-44: the first frame has units: {first_bar:?}"
    );
    write_nodes(&server, 30);
    let (code, drawn) = backup_on_a_terminal(&addr, &b, &["-verify", "full"]);
    assert_eq!(code, Some(0), "{drawn}");
    for phase in ["applying transactions: ", "verifying: "] {
        assert!(
            drawn.contains(phase),
            "BK-44: no `{phase}` bar in {drawn:?}"
        );
    }
    assert!(drawn.contains("done: incremental backup"), "{drawn:?}");
}

// SRV-7, CLI-5: the backup service's log lines are sentences too: a full backup, an incremental
// one, a refused request and a failed connection, as the server logs them.
#[test]
fn srv_7_backup_service_log_lines_are_sentences() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    backup_from(&addr, &b, &[]).expect(0);
    write_nodes(&server, 2);
    backup_from(&addr, &b, &[]).expect(0);
    // A copy of the backup that took a write of its own: the request the server refuses.
    let diverged = dir.path().join("diverged");
    copy_tree(&b, &diverged);
    {
        let on_copy = ServerProcess::start(&diverged, Some(EPHEMERAL));
        write_node(&on_copy.http, 999, 7);
        assert_eq!(on_copy.terminate(), Some(0));
    }
    write_nodes(&server, 2);
    backup_from(&addr, &diverged, &[]).expect(0);
    let lines: Vec<String> = server
        .stderr_when_stopped()
        .lines()
        .map(str::to_string)
        .collect();
    for wanted in [
        "full backup sent",
        "backup request refused: the backup's history diverged",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(wanted)),
            "SRV-7: a line says {wanted:?}: {lines:#?}"
        );
    }
    assert_log_lines_are_sentences(&lines);
}
