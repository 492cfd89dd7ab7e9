//! What the operator sees: `--plan`, `--json`, the progress bar, and the backup service's log
//! lines.

use std::path::Path;

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::{assert_log_lines_are_sentences, ServerProcess};

// BK-42, BK-17, BK-40: --plan says what a run would do and why and changes nothing: full into a
// missing directory (not created), incremental with its tx range onto a backup, full with the
// reason once the logs were pruned; under --type incremental the exit code the run would give
// (7), and the refusals' codes (3) too.
#[test]
fn bk_42_plan_says_what_would_happen_and_changes_nothing() {
    let dir = scratch();
    let config = pruning_config();
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

    prune_logs_past(&server, 4);
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

// BK-43: --json prints one document on stdout for every outcome: a full backup, an incremental
// one, a fallback, a refusal (exit 3, 4, 7), an unreachable server, and a plan; the fields of
// spec/backup.md, with the same numbers as the backup itself.
#[test]
fn bk_43_json_for_every_outcome() {
    let dir = scratch();
    let config = pruning_config();
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

    prune_logs_past(&server, 6);
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
    // The backup starts past tx 0, so the count applied is told from the tx reached.
    write_nodes(&server, 2);
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
    let applying: Vec<&str> = drawn
        .split(['\r', '\n'])
        .filter(|l| l.contains("applying transactions: "))
        .collect();
    assert!(
        applying.iter().all(|l| l.contains(" of 30 transactions"))
            && applying.iter().any(|l| l.contains(": 30 of 30 ")),
        "BK-44: the bar counts the 30 transactions applied of the 30 the run ships: {applying:?}"
    );
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
