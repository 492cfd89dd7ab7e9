//! Falling back to a full backup: pruned logs and a diverged history.

use std::collections::BTreeMap;

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::ServerProcess;

// BK-11, BK-12, BK-17, BK-25, BK-40, PR-7, PR-14: once the server's logs no longer hold the
// tx after the backup's, `--type incremental` exits 7 with the tx needed and the oldest the
// server has (changing nothing), and `auto` falls back to a full backup saying the same.
#[test]
fn bk_11_pruned_logs_fall_back_to_a_full_backup() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let config = pruning_config();
    let server = ServerProcess::start(&dir.path().join("db"), Some(&config));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 5);
    backup_from(&addr, &b, &[]).expect(0);
    let n = tx(&check_json(&b));
    assert_eq!(n, 5);
    prune_logs_past(&server, n);
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
