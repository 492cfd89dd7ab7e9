//! `neo4j-admin` as an operator runs it: the real binary on real files.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::backup::{run_measured, Out};
use support::scratch;

fn admin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_neo4j-admin"))
        .args(args)
        .output()
        .expect("run neo4j-admin")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `neo4j-admin ARGS` to the end; returns its output and its peak resident memory in KiB.
fn admin_measured(args: &[&str]) -> (Out, u64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_neo4j-admin"));
    cmd.args(args);
    run_measured(cmd)
}

// ADM-2, ADM-3, ADM-4, ST-12: a generated store of about 1 GiB checks consistent, and the JSON
// report carries the brief's fields. Generation and check stream with bounded memory: their peak
// is a small fraction of the store.
#[test]
fn adm_2_one_gibibyte_generate_then_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("big");
    let (out, generate_peak_kib) = admin_measured(&[
        "generate",
        "--store",
        path(&store),
        "--nodes",
        "1870000",
        "--seed",
        "3",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let bytes: u64 = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(bytes >= 1 << 30, "generated only {bytes} bytes");
    let (out, check_peak_kib) = admin_measured(&["check", path(&store), "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    eprintln!(
        "peak memory for {bytes} bytes of store: generate {generate_peak_kib} KiB, check {check_peak_kib} KiB"
    );
    for (tool, peak_kib) in [("generate", generate_peak_kib), ("check", check_peak_kib)] {
        assert!(
            peak_kib * 1024 < bytes / 16,
            "ST-12: {tool} peaked at {peak_kib} KiB for a store of {bytes} bytes"
        );
    }
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    for field in [
        "store_id",
        "format_version",
        "last_committed_tx",
        "nodes",
        "relationships",
        "digest",
        "consistent",
        "findings",
    ] {
        assert!(report.get(field).is_some(), "missing {field} in {report}");
    }
    assert_eq!(report["nodes"], 1_870_000);
    assert_eq!(report["relationships"], 3_740_000);
    assert_eq!(report["consistent"], true);
    assert_eq!(report["digest"], report["recorded_digest"]);
}

/// The top-level keys of a pretty-printed JSON object, in the order they are written.
fn top_level_keys(pretty: &str) -> Vec<String> {
    pretty
        .lines()
        .filter_map(|l| l.strip_prefix("  \""))
        .filter_map(|l| l.split_once("\": ").map(|(key, _)| key.to_string()))
        .collect()
}

// ADM-4: `check --json` prints one pretty-printed object and nothing else, with the fields of
// spec/admin.md in their order and of their types, on a consistent store and on a damaged one.
#[test]
fn adm_4_check_json_has_the_fields_in_order() {
    const FIELDS: [&str; 10] = [
        "store_id",
        "format_version",
        "last_committed_tx",
        "nodes",
        "relationships",
        "digest",
        "recorded_digest",
        "consistent",
        "finding_count",
        "findings",
    ];
    let dir = scratch();
    let store = dir.path().join("s");
    let out = admin(&["generate", "--store", path(&store), "--nodes", "300"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let clean = admin(&["check", path(&store), "--json"]);
    let nodes = store.join("neostore.nodestore.db");
    let mut bytes = std::fs::read(&nodes).unwrap();
    bytes[25 * 42 + 3] ^= 0x40;
    std::fs::write(&nodes, bytes).unwrap();
    let damaged = admin(&["check", path(&store), "--json"]);
    for (out, code, consistent) in [(clean, 0, true), (damaged, 3, false)] {
        assert_eq!(out.status.code(), Some(code), "ADM-4: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("{\n  \"") && stdout.trim_end().ends_with("\n}"),
            "ADM-4: one pretty-printed object: {stdout}"
        );
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("ADM-4: stdout is one JSON object and nothing else ({e}): {stdout}")
        });
        assert_eq!(
            top_level_keys(&stdout),
            FIELDS,
            "ADM-4: the fields in their order: {stdout}"
        );
        for text in ["store_id", "format_version", "digest", "recorded_digest"] {
            assert!(
                report[text].is_string(),
                "ADM-4: {text} is a string: {report}"
            );
        }
        for number in [
            "last_committed_tx",
            "nodes",
            "relationships",
            "finding_count",
        ] {
            assert!(
                report[number].is_u64(),
                "ADM-4: {number} is a number: {report}"
            );
        }
        assert_eq!(report["format_version"], "2", "ADM-4: {report}");
        assert_eq!(
            report["digest"].as_str().unwrap().len(),
            64,
            "ADM-4: {report}"
        );
        assert_eq!(report["consistent"], consistent, "ADM-4: {report}");
        let findings = report["findings"].as_array().unwrap();
        assert_eq!(
            (report["finding_count"].as_u64().unwrap() == 0, findings.len() as u64),
            (consistent, report["finding_count"].as_u64().unwrap().min(100)),
            "ADM-4: consistent exactly when finding_count is 0, and the first 100 findings: {report}"
        );
        assert!(
            findings.iter().all(|f| f.is_string()),
            "ADM-4: findings are sentences: {report}"
        );
        if consistent {
            assert_eq!(
                report["digest"], report["recorded_digest"],
                "ADM-4: {report}"
            );
        }
    }
}

// ADM-5: a previous-format store upgraded, then checked: same store id and digest.
#[test]
fn adm_5_previous_format_upgraded_then_checked() {
    let dir = scratch();
    let store = dir.path().join("old");
    let out = admin(&[
        "generate",
        "--store",
        path(&store),
        "--nodes",
        "2000",
        "--format-version",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = json(&admin(&["check", path(&store), "--json"]));
    assert_eq!(before["format_version"], "1");
    let out = admin(&["upgrade", path(&store)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("from format 1 to format 2"));
    let after = json(&admin(&["check", path(&store), "--json"]));
    assert_eq!(after["format_version"], "2");
    assert_eq!(after["store_id"], before["store_id"]);
    assert_eq!(after["digest"], before["digest"]);
    assert_eq!(after["consistent"], true);
}

// ADM-3, ADM-1, ST-5: a corrupted record in the current format is found: exit 3, finding listed.
#[test]
fn adm_3_corrupted_record_exits_3() {
    let dir = scratch();
    let store = dir.path().join("s");
    assert!(
        admin(&["generate", "--store", path(&store), "--nodes", "300"])
            .status
            .success()
    );
    let nodes = store.join("neostore.nodestore.db");
    let mut bytes = std::fs::read(&nodes).unwrap();
    bytes[25 * 42 + 3] ^= 0x40;
    std::fs::write(&nodes, bytes).unwrap();
    let out = admin(&["check", path(&store)]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("node 42: checksum mismatch"), "{stdout}");
}

// ADM-1: usage errors exit 2; a directory that is not a store exits 1 with one sentence.
#[test]
fn adm_1_exit_codes_for_bad_input() {
    let dir = scratch();
    let out = admin(&["generate", "--store", path(dir.path()), "--nodes", "many"]);
    assert_eq!(out.status.code(), Some(2));
    let out = admin(&[
        "generate",
        "--store",
        path(&dir.path().join("x")),
        "--nodes",
        "1",
        "--format-version",
        "7",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("supported: 1, 2"));
    let out = admin(&["check", path(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is not a store directory"), "{stderr}");
    let out = admin(&["generate", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Supported: 1"));
}

// ADM-9, ST-14: a path that does not exist, or is a regular file, is named as such in one
// sentence on stderr by every tool that opens a store, with exit 1; a directory without metadata
// is still "not a store directory".
#[test]
fn adm_9_missing_path_or_file_says_what_it_is() {
    let dir = scratch();
    let missing = dir.path().join("no").join("such").join("store");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"not a store").unwrap();
    let fresh = dir.path().join("fresh");
    let runs: [(&Path, Vec<&str>); 6] = [
        (&missing, vec!["check", path(&missing)]),
        (&missing, vec!["upgrade", path(&missing)]),
        (
            &missing,
            vec!["restore", "--from", path(&missing), "--store", path(&fresh)],
        ),
        (&file, vec!["check", path(&file)]),
        (&file, vec!["upgrade", path(&file)]),
        (
            &file,
            vec!["restore", "--from", path(&file), "--store", path(&fresh)],
        ),
    ];
    for (target, args) in runs {
        let out = admin(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "ADM-9: {args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "ADM-9: {args:?}: {stderr}");
        let want = if target == missing {
            format!("neo4j-admin: {} does not exist", target.display())
        } else {
            format!(
                "neo4j-admin: {} is a file, not a store directory",
                target.display()
            )
        };
        assert_eq!(stderr.trim_end(), want, "ST-14: {args:?}");
    }
    assert!(!missing.exists(), "ST-14: nothing creates the missing path");
    assert!(
        !fresh.exists(),
        "ADM-7: a restore from a missing backup leaves its missing target missing"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"not a store");
    // ADM-9: generate into a file refuses it in the same words.
    let out = admin(&["generate", "--store", path(&file), "--nodes", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!(
            "neo4j-admin: {} is a file, not a store directory",
            file.display()
        ),
        "ADM-9"
    );
}

/// Generates a small store for the record-file length tests.
fn small_store(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("s");
    let out = admin(&["generate", "--store", path(&store), "--nodes", "50"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    store
}

/// Runs `check --json`, which must exit 3 with a finding naming `file` and both lengths.
fn expect_length_finding(store: &Path, file: &str, have: u64, want: u64) {
    let out = admin(&["check", path(store), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "ADM-10: {file} of {have} bytes: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report = json(&out);
    assert_eq!(report["consistent"], false, "ADM-10: {report}");
    let findings: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let wanted = format!("{file} is {have} bytes long but should be {want} ");
    assert!(
        findings.iter().any(|f| f.starts_with(&wanted)),
        "ADM-10, ST-15: no finding starting {wanted:?} in {findings:#?}"
    );
}

// ADM-10, ST-15: a record file longer than its high-water mark's records (bytes appended past
// the last record) or shorter (truncated) is a finding naming the file and both lengths: exit 3.
#[test]
fn adm_10_record_file_of_the_wrong_length_is_a_finding() {
    // 50 nodes, 100 relationships and 150 blocks of 25, 73 and 135 bytes (format 2).
    let cases: [(&str, u64, i64); 4] = [
        ("neostore.nodestore.db", 50 * 25, 3),
        ("neostore.propertystore.db", 150 * 135, 135),
        ("neostore.relationshipstore.db", 100 * 73, -5),
        ("neostore.nodestore.db", 50 * 25, -25),
    ];
    for (file, want, delta) in cases {
        let dir = scratch();
        let store = small_store(dir.path());
        let out = admin(&["check", path(&store)]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "ST-15: a generated store checks clean"
        );
        let target = store.join(file);
        assert_eq!(std::fs::metadata(&target).unwrap().len(), want, "ST-15");
        let have = want.checked_add_signed(delta).unwrap();
        if delta > 0 {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&target)
                .unwrap();
            f.write_all(&vec![0xA5; delta as usize]).unwrap();
        } else {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .unwrap();
            f.set_len(have).unwrap();
        }
        expect_length_finding(&store, file, have, want);
        // The human report lists it too.
        let out = admin(&["check", path(&store)]);
        assert_eq!(out.status.code(), Some(3), "ADM-10");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("{file} is {have} bytes long but should be {want}")),
            "ADM-10: {stdout}"
        );
    }
}
