//! What `neo4j-backup` prints, snapshotted with insta for each outcome, in both forms: the human
//! lines (stdout and stderr) and the `--json` document. Numbers that vary from run to run (store
//! ids, digests, byte counts, durations, rates, ports, temporary paths) are redacted, so a
//! snapshot changes only when the wording or the shape does (BK-9, BK-43).

mod support;

use std::path::Path;

use support::backup::*;
use support::scratch;
use support::server::ServerProcess;

/// The filters that replace varying values with placeholders.
fn settings(dir: &Path) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(&regex_escape(&dir.display().to_string()), "<tmp>");
    s.add_filter(r"\b[0-9a-f]{12}-[0-9a-f]{16}\b", "<store-id>");
    s.add_filter(r"\b[0-9a-f]{64}\b", "<digest>");
    s.add_filter(r"127\.0\.0\.1:\d+", "<addr>");
    s.add_filter(r"\d+(\.\d+)? (B|KiB|MiB|GiB)(/s)?", "<bytes>");
    s.add_filter(r"\d+\.\d+ s\b", "<secs>");
    s.add_filter(
        r#""(bytes|free_bytes|duration_secs|throughput_bytes_per_sec)": ?[0-9.e+-]+"#,
        r#""$1": "<n>""#,
    );
    s.add_filter(
        r"about \d+ bytes and \d+ are free",
        "about <n> bytes and <n> are free",
    );
    s.set_prepend_module_to_snapshot(false);
    s
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The human form of a run: its exit code, stdout and stderr.
fn human(out: &Out) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.code, out.stdout, out.stderr
    )
}

/// The `--json` form: stdout must be one JSON document.
fn json(out: &Out) -> serde_json::Value {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {out:#?}"))
}

// BK-9, BK-43: every outcome's output, human and JSON.
#[test]
fn bk_9_output_of_every_outcome() {
    let dir = scratch();
    let config =
        format!("{EPHEMERAL}logical_log_rotation_threshold=16k\nkeep_logical_logs=1 files\n");
    let server = ServerProcess::start(&dir.path().join("db"), Some(&config));
    let addr = server.backup.clone().unwrap();
    let settings = settings(dir.path());
    let _guard = settings.bind_to_scope();
    write_nodes(&server, 4);

    // Full into a missing directory, then incremental, then nothing new: human, then JSON.
    let b = dir.path().join("backup");
    let j = dir.path().join("backup-json");
    insta::assert_snapshot!("plan_full", human(&backup_from(&addr, &b, &["--plan"])));
    insta::assert_snapshot!("full", human(&backup_from(&addr, &b, &[])));
    insta::assert_json_snapshot!("full_json", json(&backup_from(&addr, &j, &["--json"])));
    write_nodes(&server, 2);
    insta::assert_snapshot!("incremental", human(&backup_from(&addr, &b, &[])));
    insta::assert_json_snapshot!(
        "incremental_json",
        json(&backup_from(&addr, &j, &["--json"]))
    );
    insta::assert_snapshot!("nothing_new", human(&backup_from(&addr, &b, &[])));

    // Pruned logs: --type incremental refuses (7), auto falls back.
    let mut i = 0;
    while status(&server)["oldest_logged_tx"].as_u64().unwrap() <= 7 {
        write_node(&server.http, i, 1000);
        i += 1;
        assert!(i < 1000, "the logs were never pruned");
    }
    let n = status(&server)["last_committed_tx"].as_u64().unwrap();
    let oldest = status(&server)["oldest_logged_tx"].as_u64().unwrap();
    let mut s = insta::Settings::clone_current();
    s.add_filter(&format!(r"\b{n}\b"), "<last-tx>");
    s.add_filter(&format!(r"\b{oldest}\b"), "<oldest-tx>");
    s.bind(|| {
        insta::assert_snapshot!(
            "pruned_incremental_refused",
            human(&backup_from(&addr, &b, &["--type", "incremental"]))
        );
        insta::assert_json_snapshot!(
            "pruned_incremental_refused_json",
            json(&backup_from(
                &addr,
                &j,
                &["--type", "incremental", "--json"]
            ))
        );
        insta::assert_snapshot!("pruned_fallback", human(&backup_from(&addr, &b, &[])));
        insta::assert_json_snapshot!(
            "pruned_fallback_json",
            json(&backup_from(&addr, &j, &["--json"]))
        );
    });

    // Refusals and failures.
    let junk = dir.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("notes.txt"), b"x").unwrap();
    insta::assert_snapshot!("not_a_backup", human(&backup_from(&addr, &junk, &[])));
    insta::assert_json_snapshot!(
        "not_a_backup_json",
        json(&backup_from(&addr, &junk, &["--json"]))
    );
    let other = ServerProcess::start(&dir.path().join("other"), Some(EPHEMERAL));
    let other_addr = other.backup.clone().unwrap();
    insta::assert_snapshot!("other_store", human(&backup_from(&other_addr, &b, &[])));
    let closed = format!("127.0.0.1:{}", free_port());
    insta::assert_snapshot!(
        "unreachable",
        human(&backup_from(&closed, &dir.path().join("n"), &[]))
    );
    insta::assert_json_snapshot!(
        "unreachable_json",
        json(&backup_from(&closed, &dir.path().join("n"), &["--json"]))
    );
    let silent = SilentServer::start();
    insta::assert_snapshot!(
        "timeout",
        human(&backup_from(
            &silent.addr,
            &dir.path().join("t"),
            &["-timeout", "1s"]
        ))
    );
    insta::assert_snapshot!(
        "usage",
        human(&backup(&[
            "-host",
            "127.0.0.1",
            "-to",
            "x",
            "--type",
            "sideways"
        ]))
    );
}
