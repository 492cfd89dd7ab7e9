//! Crashes: SIGKILL of the tool or of the server in the middle of a backup, and the directory's
//! lock.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::ServerProcess;

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
