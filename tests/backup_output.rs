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
    s.add_filter(r"\(\d+ bytes\)", "(<n> bytes)");
    s.add_filter(
        r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT",
        "<date>",
    );
    s.add_filter(
        r#""(created_millis|written_millis|millis)": ?\d+"#,
        r#""$1": "<n>""#,
    );
    s.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "<time>");
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
    let code = out
        .code
        .map_or("by a signal".to_string(), |c| c.to_string());
    format!(
        "exit {code}\n--- stdout\n{}--- stderr\n{}",
        out.stdout, out.stderr
    )
}

/// Words of Rust's debug rendering: `Some(..)`, `None`, and CamelCase type or variant names
/// (`FullScan`, `Diverged {`).
fn debug_names(text: &str) -> Vec<String> {
    let words = text.split(|c: char| !c.is_ascii_alphanumeric());
    let camel = |w: &str| {
        let mut chars = w.chars();
        chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && w.chars().any(|c| c.is_ascii_lowercase())
            && chars.any(|c| c.is_ascii_uppercase())
    };
    words
        .filter(|w| matches!(*w, "Some" | "None" | "Ok" | "Err") || camel(w))
        .map(str::to_string)
        .collect()
}

// CLI-5, BK-9: no line a person reads shows Rust's debug formatting: every snapshot is checked.
#[test]
fn cli_5_no_snapshot_shows_a_rust_debug_name() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // The header names the test expression, which is Rust code, not output.
        let body = text.splitn(3, "---\n").nth(2).unwrap_or(&text);
        let found = debug_names(body);
        assert!(
            found.is_empty(),
            "CLI-5: {} shows {found:?}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 30, "CLI-5: only {seen} snapshots");
    assert_eq!(
        debug_names("verified: FullScan, Some(3)"),
        ["FullScan", "Some"]
    );
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
    let config = pruning_config();
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
    insta::assert_json_snapshot!(
        "nothing_new_json",
        json(&backup_from(&addr, &j, &["--json"]))
    );
    insta::assert_json_snapshot!(
        "plan_incremental_json",
        json(&backup_from(&addr, &j, &["--plan", "--json"]))
    );

    // Pruned logs: --type incremental refuses (7), auto falls back.
    prune_logs_past(&server, 6);
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
    insta::assert_json_snapshot!(
        "other_store_json",
        json(&backup_from(&other_addr, &b, &["--json"]))
    );
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
    insta::assert_json_snapshot!(
        "timeout_json",
        json(&backup_from(
            &silent.addr,
            &dir.path().join("t"),
            &["-timeout", "1s", "--json"]
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
    insta::assert_json_snapshot!(
        "usage_json",
        json(&backup(&["-hots", "127.0.0.1", "-to", "x", "--json"]))
    );
    insta::assert_snapshot!(
        "misspelled_flag",
        human(&backup(&["-hots", "127.0.0.1", "-to", "x"]))
    );
    // The server's HTTP port given as the backup port (BK-48).
    insta::assert_snapshot!(
        "http_port",
        human(&backup_from(&server.http, &dir.path().join("h"), &[]))
    );
}

// BK-9, BK-43: the remaining outcomes: a diverged history (fallback and exit 7), another format
// version (exit 5), and a verification failure (exit 6).
#[test]
fn bk_9_output_of_diverged_version_and_verification_failures() {
    let dir = scratch();
    let settings = settings(dir.path());
    let _guard = settings.bind_to_scope();

    // Diverged: a server on a copy of the backup takes writes of its own.
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(&addr, &b, &[]).expect(0);
    let copy = dir.path().join("copy");
    copy_tree(&b, &copy);
    {
        // Content the source never has, so the digests at tx 4 differ.
        let on_copy = ServerProcess::start(&copy, Some(EPHEMERAL));
        write_node(&on_copy.http, 999, 7);
        assert_eq!(on_copy.terminate(), Some(0));
    }
    write_nodes(&server, 2);
    insta::assert_snapshot!(
        "diverged_incremental_refused",
        human(&backup_from(&addr, &copy, &["--type", "incremental"]))
    );
    let copy2 = dir.path().join("copy2");
    copy_tree(&copy, &copy2);
    insta::assert_json_snapshot!(
        "diverged_incremental_refused_json",
        json(&backup_from(
            &addr,
            &copy,
            &["--type", "incremental", "--json"]
        ))
    );
    insta::assert_snapshot!("diverged_fallback", human(&backup_from(&addr, &copy, &[])));
    insta::assert_json_snapshot!(
        "diverged_fallback_json",
        json(&backup_from(&addr, &copy2, &["--json"]))
    );

    // A backup ahead of the server (BK-46): a server started on an older copy of the backup.
    let older = dir.path().join("older");
    copy_tree(&b, &older);
    let b_ahead = dir.path().join("ahead");
    copy_tree(&b, &b_ahead);
    write_nodes(&server, 1);
    backup_from(&addr, &b_ahead, &[]).expect(0);
    {
        let restored = ServerProcess::start(&older, Some(EPHEMERAL));
        let restored_addr = restored.backup.clone().unwrap();
        insta::assert_snapshot!("ahead", human(&backup_from(&restored_addr, &b_ahead, &[])));
        insta::assert_json_snapshot!(
            "ahead_json",
            json(&backup_from(&restored_addr, &b_ahead, &["--json"]))
        );
        assert_eq!(restored.terminate(), Some(0));
    }

    // Verification failure: a proxy changes the end frame's digest.
    let liar = Proxy::start(&addr, |body| {
        if body[0] == kind::END {
            body[9] ^= 0x80;
        }
        Action::Pass
    });
    write_nodes(&server, 1);
    insta::assert_snapshot!(
        "verification_failed",
        human(&backup_from(&liar.addr, &b, &[]))
    );
    insta::assert_json_snapshot!(
        "verification_failed_json",
        json(&backup_from(&liar.addr, &b, &["--json"]))
    );
    drop(server);

    // Another format version: a format-1 store backed up, then upgraded.
    let store = dir.path().join("v1");
    generate(&store, 200, &["--format-version", "1"]);
    let v1 = ServerProcess::start(&store, Some(EPHEMERAL));
    let v1_backup = dir.path().join("v1-backup");
    backup_from(v1.backup.as_ref().unwrap(), &v1_backup, &[]).expect(0);
    assert_eq!(v1.terminate(), Some(0));
    admin(&["upgrade".as_ref(), store.as_os_str()]).expect(0);
    let v2 = ServerProcess::start(&store, Some(EPHEMERAL));
    insta::assert_snapshot!(
        "other_format_version",
        human(&backup_from(v2.backup.as_ref().unwrap(), &v1_backup, &[]))
    );
    insta::assert_json_snapshot!(
        "other_format_version_json",
        json(&backup_from(
            v2.backup.as_ref().unwrap(),
            &v1_backup,
            &["--json"]
        ))
    );
}

// MF-13: `neo4j-admin backup-info` says what a backup directory holds, generation by
// generation, in both forms; with --host, whether the server's logs still allow an incremental
// backup, and why not once they were pruned.
#[test]
fn mf_13_backup_info_output() {
    let dir = scratch();
    let config = pruning_config();
    let server = ServerProcess::start(&dir.path().join("db"), Some(&config));
    let addr = server.backup.clone().unwrap();
    let port = addr.rsplit_once(':').unwrap().1.to_string();
    let settings = settings(dir.path());
    let _guard = settings.bind_to_scope();
    write_nodes(&server, 4);
    let b = dir.path().join("backup");
    backup_from(&addr, &b, &[]).expect(0);
    write_nodes(&server, 2);
    backup_from(&addr, &b, &[]).expect(0);
    let b_arg = b.to_str().unwrap();
    insta::assert_snapshot!("backup_info", human(&admin(&["backup-info", b_arg])));
    let out = admin(&["backup-info", b_arg, "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("MF-13: one JSON object");
    insta::assert_json_snapshot!("backup_info_json", doc);
    let host = ["backup-info", b_arg, "--host", "127.0.0.1", "--port", &port];
    insta::assert_snapshot!("backup_info_host", human(&admin(&host)));
    // The logs after the backup pruned, and a generation an interrupted run left.
    prune_logs_past(&server, 6);
    std::fs::create_dir(b.join("generation-9")).unwrap();
    insta::assert_snapshot!("backup_info_pruned", human(&admin(&host)));
    // Not a backup: exit 1, one sentence.
    let out = admin(&["backup-info", dir.path().join("db").to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "MF-13: {out:#?}");
    assert!(
        out.one_error_line().contains("holds no backup"),
        "MF-13: {out:#?}"
    );
    // A pointer naming a generation that is not there: no backup either.
    let lost = dir.path().join("lost");
    std::fs::create_dir_all(lost.join("generation-1")).unwrap();
    std::fs::write(lost.join("CURRENT"), "generation-2\n").unwrap();
    let out = admin(&["backup-info", lost.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "MF-13: {out:#?}");
    assert!(
        out.one_error_line().contains("holds no backup"),
        "MF-13: a pointer to a missing generation: {out:#?}"
    );
    // A file: one sentence saying so.
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "mine").unwrap();
    let out = admin(&["backup-info", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "MF-13: {out:#?}");
    assert!(
        out.one_error_line().contains("is a file"),
        "MF-13: backup-info on a file: {out:#?}"
    );
}

// PIT-5, PIT-9, PIT-12, MF-13: backup-info of a directory whose backups keep transactions and
// an older generation: the live one restores to a range of txs and times, the older one is
// listed as kept, with its own range.
#[test]
fn pit_5_backup_info_lists_kept_history() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let settings = settings(dir.path());
    let _guard = settings.bind_to_scope();
    let b = dir.path().join("backup");
    let keep = ["--keep-transactions", "true", "--keep-generations", "2"];
    write_nodes(&server, 3);
    backup_from(&addr, &b, &keep).expect(0);
    write_nodes(&server, 2);
    backup_from(&addr, &b, &keep).expect(0);
    write_nodes(&server, 2);
    backup_from(&addr, &b, &[&keep[..], &["--type", "full"]].concat()).expect(0);
    write_nodes(&server, 4);
    backup_from(&addr, &b, &keep).expect(0);
    let b_arg = b.to_str().unwrap();
    insta::assert_snapshot!(
        "backup_info_history",
        human(&admin(&["backup-info", b_arg]))
    );
    let out = admin(&["backup-info", b_arg, "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("MF-13: one JSON object");
    let txs: Vec<_> = doc["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["kept"].clone(), g["restores_to_txs"].clone()))
        .collect();
    assert_eq!(
        txs,
        [
            (serde_json::json!(true), serde_json::json!([3, 5])),
            (serde_json::json!(false), serde_json::json!([7, 11])),
        ],
        "PIT-5, PIT-12: {doc:#}"
    );
    for g in doc["generations"].as_array().unwrap() {
        let on_disk: u64 = std::fs::read_dir(g["dir"].as_str().unwrap())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != "MANIFEST")
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert_eq!(
            g["bytes"].as_u64(),
            Some(on_disk),
            "MF-13: a generation's size is its files' ({g:#})"
        );
    }
}
