//! Backups into an object store (spec/objects.md, OBJ-): the real binaries against a real
//! S3-compatible server (moto, `tests/support/moto.rs`) on loopback.

use std::collections::BTreeMap;
use std::process::Command;

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::moto::Moto;
use crate::support::scratch;
use crate::support::server::ServerProcess;

/// `neo4j-backup -from <addr> -to <url> <more>`, reaching `moto`.
fn backup_to(moto: &Moto, addr: &str, url: &str, more: &[&str]) -> Out {
    let mut cmd = backup_cmd(&["-from", addr, "-to", url]);
    cmd.args(more).envs(moto.env());
    Out::of(cmd.output().expect("run neo4j-backup"))
}

/// `neo4j-backup -from <addr> -to <url> <more>` reaching `moto`, started and slowed to 4 MB/s
/// so that a test can act while its parts go up; its stderr is piped.
fn slowed_backup(moto: &Moto, addr: &str, url: &str, more: &[&str]) -> std::process::Child {
    let mut cmd = backup_cmd(&["-from", addr, "-to", url, "--max-rate", "4M"]);
    cmd.args(more)
        .envs(moto.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start neo4j-backup")
}

/// `neo4j-admin <args>`, reaching `moto`.
fn admin_with(moto: &Moto, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_neo4j-admin"));
    cmd.args(args).envs(moto.env());
    Out::of(cmd.output().expect("run neo4j-admin"))
}

/// A moto server with `bucket`, a scratch directory, and a server on an empty store in it with
/// its backup address: what most tests here start from.
fn world(bucket: &str) -> (Moto, tempfile::TempDir, ServerProcess, String) {
    world_with(bucket, EPHEMERAL)
}

/// [`world`] with the server started on `config`.
fn world_with(bucket: &str, config: &str) -> (Moto, tempfile::TempDir, ServerProcess, String) {
    let moto = Moto::start();
    moto.create_bucket(bucket);
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(config));
    let addr = server.backup.clone().unwrap();
    (moto, dir, server, addr)
}

/// [`world`] on a generated store of 60,000 nodes (34 MB of records, its property store 24 MB):
/// a backup of it takes long enough, slowed, for a test to act while it goes.
fn big_world(bucket: &str) -> (Moto, tempfile::TempDir, ServerProcess, String) {
    let moto = Moto::start();
    moto.create_bucket(bucket);
    let dir = scratch();
    let db = dir.path().join("db");
    generate(&db, 60_000, &[]);
    let server = ServerProcess::start(&db, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    (moto, dir, server, addr)
}

const RECORD_FILES: [&str; 3] = [
    "neostore.nodestore.db",
    "neostore.propertystore.db",
    "neostore.relationshipstore.db",
];

/// The objects of generation `n` under `prefix`: the store's files and the manifest (OBJ-3).
fn generation_keys(prefix: &str, n: u64) -> Vec<String> {
    let mut keys: Vec<String> = RECORD_FILES
        .iter()
        .chain(&["MANIFEST", "neostore.meta", "neostore.transaction.db.0"])
        .map(|f| format!("{prefix}/generation-{n}/{f}"))
        .collect();
    keys.sort();
    keys
}

#[test]
fn obj_4_obj_6_obj_8_a_full_backup_into_s3_restores_to_the_servers_state() {
    let (moto, dir, server, addr) = world("backups");
    write_nodes(&server, 20);
    let url = "s3://backups/graph/db";
    let out = backup_to(&moto, &addr, url, &[]).expect(0);
    assert!(out.summary().contains("full backup"), "OBJ-6: {out:#?}");
    let mut expected = generation_keys("graph/db", 1);
    expected.push("graph/db/CURRENT".into());
    expected.sort();
    assert_eq!(
        moto.keys("backups", "graph/db"),
        expected,
        "OBJ-3, OBJ-5: the generation, the pointer, and no lease left"
    );
    assert_eq!(
        moto.get("backups", "graph/db/CURRENT"),
        b"generation-1\n",
        "OBJ-7"
    );
    let store_bytes: usize = RECORD_FILES
        .iter()
        .map(|f| {
            moto.get("backups", &format!("graph/db/generation-1/{f}"))
                .len()
        })
        .sum();
    assert!(
        out.stdout.contains(&format!(
            "uploaded {} of store files",
            online_backup::units::bytes(store_bytes as u64)
        )),
        "OBJ-6: the bytes of the record files are counted: {out:#?}"
    );
    assert_eq!(
        moto.open_uploads("backups", "graph"),
        0,
        "OBJ-7: no parts left"
    );

    // Restored through a staging directory that is removed after (OBJ-8); the store is the
    // server's, recovered from the fuzzy copy and the log (OBJ-4).
    let r = dir.path().join("restored");
    admin_with(&moto, &["restore", "--from", url, "--store", path(&r)]).expect(0);
    assert_same_as_server(&r, &server);
    assert!(
        !dir.path().join("restored.staging").exists(),
        "OBJ-8: the staging directory is removed"
    );
}

#[test]
fn obj_4_commits_during_the_upload_are_in_the_log_and_restored() {
    let (moto, dir, server, addr) = big_world("backups");
    // Writers commit while the files stream, slowed so that they land between the checkpoint
    // and the end of the copy (the fuzzy part of OBJ-4).
    let http = server.http.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                write_node(&http, i, 64);
                i += 1;
            }
            i
        })
    };
    let out = backup_to(
        &moto,
        &addr,
        "s3://backups/x",
        &["--max-rate", "8M", "--json"],
    )
    .expect(0);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().unwrap();
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).expect("--json");
    let shipped = summary["transactions"].as_u64().unwrap();
    assert!(
        written > 0 && shipped > 0,
        "OBJ-4: commits landed during the upload and were shipped ({written} written): {out:#?}"
    );
    // The restored store is the server's at the tx the backup reached, its digest recomputed
    // from the records: the copy's fuzziness was repaired by the log's replay (OBJ-4).
    let r = dir.path().join("restored");
    admin_with(
        &moto,
        &["restore", "--from", "s3://backups/x", "--store", path(&r)],
    )
    .expect(0);
    let restored = check_json(&r);
    assert_eq!(
        restored["last_committed_tx"], summary["to_tx"],
        "OBJ-4: {restored}"
    );
    assert_eq!(restored["digest"], summary["digest"], "OBJ-4: {restored}");
    // With the writers' later commits in a segment, the generation still restores to the tx
    // its full backup reached (the segment cut off), and to none before it: the record files
    // are fuzzy up to there (OBJ-18).
    backup_to(&moto, &addr, "s3://backups/x", &[]).expect(0);
    let full_tx = summary["to_tx"].as_u64().unwrap();
    let until = |name: &str, tx: u64| {
        let r = dir.path().join(name);
        let out = admin_with(
            &moto,
            &[
                "restore",
                "--from",
                "s3://backups/x",
                "--store",
                path(&r),
                "--until-tx",
                &tx.to_string(),
            ],
        );
        (r, out)
    };
    let (r, out) = until("at-full", full_tx);
    out.expect(0);
    let restored = check_json(&r);
    assert_eq!(
        (&restored["last_committed_tx"], &restored["digest"]),
        (&summary["to_tx"], &summary["digest"]),
        "OBJ-18: {restored}"
    );
    let (r, out) = until("fuzzy", full_tx - 1);
    assert_eq!(out.code, Some(1), "OBJ-18: {out:#?}");
    assert!(
        out.one_error_line()
            .contains(&format!("it can be restored to tx {full_tx} to tx")),
        "OBJ-18: {out:#?}"
    );
    assert!(!r.exists(), "OBJ-18: nothing created");
}

#[test]
fn obj_7_obj_9_generations_are_replaced_pointer_last_and_old_ones_kept_as_asked() {
    let (moto, dir, server, addr) = world("gens");
    write_nodes(&server, 5);
    let url = "s3://gens/p";
    backup_to(&moto, &addr, url, &[]).expect(0);
    write_nodes(&server, 3);
    backup_to(&moto, &addr, url, &["--type", "full"]).expect(0);
    assert_eq!(moto.get("gens", "p/CURRENT"), b"generation-2\n", "OBJ-7");
    let mut expected = generation_keys("p", 2);
    expected.push("p/CURRENT".into());
    expected.sort();
    assert_eq!(
        moto.keys("gens", "p"),
        expected,
        "OBJ-9: the generation the pointer left is removed once it moved"
    );
    backup_to(
        &moto,
        &addr,
        url,
        &["--type", "full", "--keep-generations", "2"],
    )
    .expect(0);
    let keys = moto.keys("gens", "p");
    assert!(
        keys.iter().any(|k| k.starts_with("p/generation-2/"))
            && keys.iter().any(|k| k.starts_with("p/generation-3/")),
        "OBJ-9: two generations kept: {keys:?}"
    );
    // A generation an interrupted run left above the live one is removed by the next run
    // (OBJ-7, BK-36).
    moto.put("gens", "p/generation-4/neostore.nodestore.db", b"partial");
    backup_to(
        &moto,
        &addr,
        url,
        &["--type", "full", "--keep-generations", "2"],
    )
    .expect(0);
    let keys = moto.keys("gens", "p");
    assert!(
        !keys.iter().any(|k| k.starts_with("p/generation-4/"))
            && keys.iter().any(|k| k.starts_with("p/generation-5/")),
        "OBJ-7: the leftover is gone and the new generation took the next number: {keys:?}"
    );
    let r = dir.path().join("r");
    admin_with(&moto, &["restore", "--from", url, "--store", path(&r)]).expect(0);
    assert_same_as_server(&r, &server);
}

#[test]
fn obj_5_a_live_lease_refuses_a_second_run_and_an_expired_one_is_taken_over() {
    let (moto, dir, _server, addr) = world("leased");
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 600_000;
    moto.put(
        "leased",
        "x/LEASE",
        format!("neo4j-backup lease other {later}\n").as_bytes(),
    );
    let out = backup_to(&moto, &addr, "s3://leased/x", &[]);
    assert_eq!(out.code, Some(1), "OBJ-5: {out:#?}");
    assert!(
        out.one_error_line()
            .contains("in use by another backup run"),
        "OBJ-5: {out:#?}"
    );
    assert_eq!(
        moto.keys("leased", "x"),
        vec!["x/LEASE".to_string()],
        "OBJ-5: nothing written"
    );
    // A lease whose run died (expired) is taken over, and released at the end.
    moto.put("leased", "x/LEASE", b"neo4j-backup lease other 1\n");
    backup_to(&moto, &addr, "s3://leased/x", &[]).expect(0);
    assert!(
        !moto.keys("leased", "x").contains(&"x/LEASE".to_string()),
        "OBJ-5: released"
    );
    // Restores take it too: a restore while another run holds it is refused.
    moto.put(
        "leased",
        "x/LEASE",
        format!("neo4j-backup lease other {later}\n").as_bytes(),
    );
    let r = dir.path().join("r");
    let out = admin_with(
        &moto,
        &["restore", "--from", "s3://leased/x", "--store", path(&r)],
    );
    assert_eq!(out.code, Some(1), "OBJ-5: {out:#?}");
    assert!(!r.exists(), "OBJ-5: nothing restored");
}

#[test]
fn obj_8_a_damaged_missing_or_extra_object_is_named_and_nothing_restored() {
    let (moto, dir, server, addr) = world("dmg");
    write_nodes(&server, 10);
    backup_to(&moto, &addr, "s3://dmg/b", &[]).expect(0);
    let key = "b/generation-1/neostore.nodestore.db";
    let good = moto.get("dmg", key);
    let restore = |name: &str| {
        let r = dir.path().join(name);
        let out = admin_with(
            &moto,
            &["restore", "--from", "s3://dmg/b", "--store", path(&r)],
        );
        assert!(
            !dir.path().join(format!("{name}.staging")).exists(),
            "OBJ-8: {out:#?}"
        );
        assert!(
            !r.exists() || std::fs::read_dir(&r).unwrap().next().is_none(),
            "OBJ-8: nothing restored: {out:#?}"
        );
        out
    };
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    moto.put("dmg", key, &flipped);
    let out = restore("r1");
    assert_eq!(out.code, Some(3), "OBJ-8: {out:#?}");
    assert!(
        out.one_error_line()
            .contains("neostore.nodestore.db: block 0"),
        "OBJ-8: the file and block are named: {out:#?}"
    );
    moto.put("dmg", key, &good[..good.len() - 1]);
    let out = restore("r2");
    assert_eq!(out.code, Some(3), "OBJ-8: {out:#?}");
    assert!(
        out.one_error_line().contains("truncated"),
        "OBJ-8: {out:#?}"
    );
    moto.delete("dmg", key);
    let out = restore("r3");
    assert_eq!(out.code, Some(3), "OBJ-8: {out:#?}");
    assert!(
        out.one_error_line().contains("is missing"),
        "OBJ-8: {out:#?}"
    );
    moto.put("dmg", key, &good);
    moto.put("dmg", "b/generation-1/extra", b"x");
    let out = restore("r4");
    assert_eq!(out.code, Some(3), "OBJ-8: {out:#?}");
    assert!(
        out.one_error_line()
            .contains("extra is not in the manifest"),
        "OBJ-8: {out:#?}"
    );
    moto.delete("dmg", "b/generation-1/extra");
    restore_ok(&moto, &dir.path().join("r5"), &server);
}

fn restore_ok(moto: &Moto, r: &std::path::Path, server: &ServerProcess) {
    admin_with(
        moto,
        &["restore", "--from", "s3://dmg/b", "--store", path(r)],
    )
    .expect(0);
    assert_same_as_server(r, server);
}

#[test]
fn obj_1_obj_10_errors_are_one_sentence_an_operator_can_act_on() {
    let (moto, _dir, server, addr) = world("real");
    // A URL that names nothing usable is a usage error (OBJ-1).
    for (bad, why) in [
        ("gs://bucket/x", "gs:// is not a supported object store"),
        ("s3://B/x", "not a bucket name"),
    ] {
        let out = backup_to(&moto, &addr, bad, &[]);
        assert_eq!(out.code, Some(2), "OBJ-1: {out:#?}");
        assert!(out.one_error_line().contains(why), "OBJ-1: {out:#?}");
    }
    let out = backup_to(&moto, &addr, "s3://missing-bucket/x", &[]);
    assert_eq!(out.code, Some(1), "OBJ-10: {out:#?}");
    assert!(
        out.one_error_line()
            .contains("the bucket missing-bucket does not exist"),
        "OBJ-10: {out:#?}"
    );
    // Nothing listens: refused within seconds, not minutes (OBJ-2).
    let started = std::time::Instant::now();
    let mut cmd = backup_cmd(&["-from", &addr, "-to", "s3://real/x"]);
    cmd.envs(moto.env()).env(
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", free_port()),
    );
    let out = Out::of(cmd.output().unwrap());
    assert_eq!(out.code, Some(1), "OBJ-10: {out:#?}");
    assert!(
        out.one_error_line()
            .contains("cannot reach the object store"),
        "OBJ-10: {out:#?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "OBJ-2: an unreachable endpoint fails in seconds"
    );
    // Foreign objects under the prefix: not a backup (exit 3), untouched.
    moto.put("real", "notes/readme.txt", b"mine");
    let out = backup_to(&moto, &addr, "s3://real/notes", &[]);
    assert_eq!(out.code, Some(3), "OBJ-3: {out:#?}");
    assert!(
        out.one_error_line().contains("not a valid backup"),
        "OBJ-3: {out:#?}"
    );
    assert_eq!(
        moto.keys("real", "notes"),
        vec!["notes/readme.txt".to_string()],
        "OBJ-3"
    );
    // A pointer that names no generation: not a backup (exit 3), untouched.
    moto.put("real", "bad/CURRENT", b"generation-01\n");
    let out = backup_to(&moto, &addr, "s3://real/bad", &[]);
    assert_eq!(out.code, Some(3), "OBJ-3: {out:#?}");
    assert!(
        out.one_error_line()
            .contains("CURRENT does not name a generation"),
        "OBJ-3: {out:#?}"
    );
    assert_eq!(
        moto.get("real", "bad/CURRENT"),
        b"generation-01\n",
        "OBJ-3: the pointer is left as it was"
    );
    // An upgrade of a prefix that holds no backup: exit 3, nothing left behind (OBJ-19).
    let out = admin_with(&moto, &["upgrade", "s3://real/x"]);
    assert_eq!(out.code, Some(3), "OBJ-19: {out:#?}");
    assert!(
        out.one_error_line().contains("holds no backup"),
        "OBJ-19: {out:#?}"
    );
    assert!(moto.keys("real", "x").is_empty(), "OBJ-19: no lease left");
    drop(server);
    // Credentials the store refuses.
    let checking = Moto::start_with(true);
    let mut cmd = backup_cmd(&["-from", &addr, "-to", "s3://real/x"]);
    cmd.envs(checking.env());
    let out = Out::of(cmd.output().unwrap());
    assert_eq!(out.code, Some(1), "OBJ-10: {out:#?}");
    assert!(
        out.one_error_line().contains("refused the credentials"),
        "OBJ-10: {out:#?}"
    );
}

#[test]
fn obj_11_incrementals_append_segments_and_restore_to_the_servers_state() {
    let (moto, dir, server, addr) = world("incr");
    write_nodes(&server, 5);
    let url = "s3://incr/g";
    backup_to(&moto, &addr, url, &[]).expect(0);
    let seg = |v: u64| format!("g/generation-1/neostore.transaction.db.{v}");
    for round in 1..=3u64 {
        write_nodes(&server, 4);
        let out = backup_to(&moto, &addr, url, &["--json"]).expect(0);
        let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(summary["mode"], "incremental", "OBJ-11: {out:#?}");
        assert_eq!(summary["transactions"], 4, "OBJ-11: {out:#?}");
        assert!(
            moto.keys("incr", "g").contains(&seg(round)),
            "OBJ-11: one segment per run"
        );
    }
    // BK-44: on a terminal the bar counts the transactions this run ships of those expected,
    // not the tx reached.
    write_nodes(&server, 4);
    let mut cmd = backup_cmd(&["-from", &addr, "-to", url]);
    cmd.envs(moto.env());
    let (code, drawn) = on_a_terminal(cmd);
    assert_eq!(code, Some(0), "{drawn}");
    let applying: Vec<&str> = drawn
        .split(['\r', '\n'])
        .filter(|l| l.contains("applying transactions: "))
        .collect();
    assert!(
        !applying.is_empty() && applying.iter().all(|l| l.contains(" of 4 transactions")),
        "BK-44, OBJ-11: the bar counts the 4 transactions the run ships: {applying:?}"
    );
    // Nothing new: nothing written.
    let before = moto.keys("incr", "g");
    let manifest = moto.get("incr", "g/generation-1/MANIFEST");
    let out = backup_to(&moto, &addr, url, &[]).expect(0);
    assert!(out.summary().contains("nothing new"), "OBJ-11: {out:#?}");
    assert_eq!(moto.keys("incr", "g"), before, "OBJ-11: nothing written");
    assert_eq!(
        moto.get("incr", "g/generation-1/MANIFEST"),
        manifest,
        "OBJ-11"
    );
    // A segment an interrupted run left unlisted is not part of the generation: a restore
    // ignores it, and the next run removes it.
    moto.put("incr", &seg(9), b"half a segment");
    let r = dir.path().join("r1");
    admin_with(&moto, &["restore", "--from", url, "--store", path(&r)]).expect(0);
    assert_same_as_server(&r, &server);
    write_nodes(&server, 1);
    backup_to(&moto, &addr, url, &[]).expect(0);
    let keys = moto.keys("incr", "g");
    assert!(
        !keys.contains(&seg(9)) && keys.contains(&seg(5)),
        "OBJ-11: the leftover removed, the next segment written: {keys:?}"
    );
    let r = dir.path().join("r2");
    admin_with(&moto, &["restore", "--from", url, "--store", path(&r)]).expect(0);
    assert_same_as_server(&r, &server);
    // A segment that disagrees with the manifest: not a valid backup (exit 3), unchanged.
    let good = moto.get("incr", &seg(5));
    moto.put("incr", &seg(5), &good[..good.len() - 3]);
    write_nodes(&server, 1);
    let before = moto.keys("incr", "g");
    let out = backup_to(&moto, &addr, url, &[]);
    assert_eq!(out.code, Some(3), "OBJ-11: {out:#?}");
    assert!(
        out.one_error_line().contains("not a valid backup"),
        "OBJ-11: {out:#?}"
    );
    assert_eq!(moto.keys("incr", "g"), before, "OBJ-11: unchanged");
}

// OBJ-11, BK-11, BK-42: the state after the last tx is read before the server is asked, so a
// damaged segment is refused (exit 3, nothing written; a plan too) even when the server would
// have refused the incremental for pruned logs and a full backup would have followed.
#[test]
fn obj_11_a_damaged_backup_is_refused_before_the_server_is_asked() {
    let (moto, _dir, server, addr) = world_with("dmg", &pruning_config());
    let url = "s3://dmg/g";
    write_nodes(&server, 3);
    backup_to(&moto, &addr, url, &[]).expect(0);
    write_nodes(&server, 3);
    backup_to(&moto, &addr, url, &[]).expect(0);
    let segment = "g/generation-1/neostore.transaction.db.1";
    let good = moto.get("dmg", segment);
    moto.put("dmg", segment, &good[..good.len() - 3]);
    let n = status(&server)["last_committed_tx"].as_u64().unwrap();
    prune_logs_past(&server, n);
    let before = moto.keys("dmg", "g");
    let plan = backup_to(&moto, &addr, url, &["--plan"]);
    assert_eq!(
        plan.code,
        Some(3),
        "OBJ-11, BK-42: the plan refuses too: {plan:#?}"
    );
    let out = backup_to(&moto, &addr, url, &[]);
    assert_eq!(
        out.code,
        Some(3),
        "OBJ-11: refused, not a full backup: {out:#?}"
    );
    assert!(
        out.one_error_line().contains("not a valid backup"),
        "OBJ-11: {out:#?}"
    );
    assert_eq!(moto.keys("dmg", "g"), before, "OBJ-11: unchanged");
}

// OBJ-12: segments larger than the store files they follow (at least 1 MiB) are consolidated
// too, before their count reaches the bound: a restore never replays more than it copies.
#[test]
fn obj_12_segments_larger_than_the_store_are_consolidated() {
    let (moto, dir, server, addr) = world("big");
    let url = "s3://big/s";
    write_nodes(&server, 3);
    backup_to(&moto, &addr, url, &[]).expect(0);
    // One incremental of about 2 MiB of transactions: over the 1 MiB bound of a small store.
    for k in 0..2 {
        let body = format!(
            r#"{{"ops": [{{"create_node": {{"props": {{"s": "{}"}}}}}}]}}"#,
            char::from(b'a' + k).to_string().repeat(800 << 10)
        );
        let (code, out) = crate::support::server::request(
            &server.http,
            "POST",
            "/db/data/transaction",
            body.as_bytes(),
        );
        assert_eq!(code, 200, "{out}");
    }
    let out = backup_to(&moto, &addr, url, &["--json"]).expect(0);
    assert!(
        out.stdout.contains(r#""mode":"incremental""#),
        "OBJ-12: one segment first: {out:#?}"
    );
    write_nodes(&server, 1);
    let out = backup_to(&moto, &addr, url, &["--json"]).expect(0);
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (&summary["mode"], &summary["reason_code"]),
        (
            &serde_json::json!("full"),
            &serde_json::json!("consolidate")
        ),
        "OBJ-12: {out:#?}"
    );
    let reason = summary["reason"].as_str().unwrap();
    assert!(
        reason.contains("holds 1 transaction segment of ")
            && reason.contains(" MiB, more than 1.0 MiB (its store files"),
        "OBJ-12: the reason gives the sizes: {reason}"
    );
    assert_eq!(moto.get("big", "s/CURRENT"), b"generation-2\n", "OBJ-12");
    let r = dir.path().join("r");
    admin_with(&moto, &["restore", "--from", url, "--store", path(&r)]).expect(0);
    assert_same_as_server(&r, &server);
}

// OBJ-16: `--plan` into an object store asks the server as a run does and says what the run
// would do, without the lease and writing nothing: a full backup into an empty prefix, an
// incremental one onto a backup, with no free space line; a refusal exits as the run would.
#[test]
fn obj_16_a_plan_into_an_object_store_says_what_a_run_would_do() {
    let (moto, _dir, server, addr) = world("plans");
    let url = "s3://plans/p";
    write_nodes(&server, 5);
    let out = backup_to(&moto, &addr, url, &["--plan"]).expect(0);
    assert!(
        out.stdout.contains("plan: full backup")
            && out
                .stdout
                .contains("is an object store, with no free space to check"),
        "OBJ-16: {out:#?}"
    );
    assert!(
        moto.keys("plans", "p").is_empty(),
        "OBJ-16: a plan writes nothing, not even a lease"
    );
    backup_to(&moto, &addr, url, &[]).expect(0);
    let keys = moto.keys("plans", "p");
    write_nodes(&server, 3);
    let out = backup_to(&moto, &addr, url, &["--plan", "--json"]).expect(0);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["mode"], "incremental", "OBJ-16: {out:#?}");
    assert_eq!(plan["from_tx"], 5, "OBJ-16: {out:#?}");
    assert_eq!(plan["to_tx"], 8, "OBJ-16: {out:#?}");
    assert_eq!(
        plan["free_bytes"],
        serde_json::Value::Null,
        "OBJ-16: {out:#?}"
    );
    assert_eq!(
        moto.keys("plans", "p"),
        keys,
        "OBJ-16: a plan writes nothing"
    );
    // Another store's backup: refused as the run would be (exit 4).
    let dir2 = scratch();
    let other = ServerProcess::start(&dir2.path().join("db"), Some(EPHEMERAL));
    write_nodes(&other, 1);
    let out = backup_to(&moto, other.backup.as_ref().unwrap(), url, &["--plan"]);
    assert_eq!(out.code, Some(4), "OBJ-16, BK-14: {out:#?}");
    // The plan matches the run: the incremental it announced.
    let out = backup_to(&moto, &addr, url, &["--json"]).expect(0);
    assert!(
        out.stdout.contains(r#""mode":"incremental""#),
        "OBJ-16: {out:#?}"
    );
}

#[test]
fn obj_12_segments_past_the_bound_are_consolidated_by_a_full_generation() {
    let (moto, dir, server, addr) = world("cons");
    let url = "s3://cons/c";
    backup_to(&moto, &addr, url, &[]).expect(0);
    for _ in 0..32 {
        write_nodes(&server, 1);
        let out = backup_to(&moto, &addr, url, &["--json"]).expect(0);
        assert!(
            out.stdout.contains(r#""mode":"incremental""#),
            "OBJ-12: {out:#?}"
        );
    }
    write_nodes(&server, 1);
    // At the bound, `--type incremental` is impossible (exit 7) ...
    let out = backup_to(&moto, &addr, url, &["--type", "incremental"]);
    assert_eq!(out.code, Some(7), "OBJ-12: {out:#?}");
    assert!(
        out.one_error_line().contains("32 transaction segments"),
        "OBJ-12: {out:#?}"
    );
    // A plan says so too, writing nothing (OBJ-16).
    let before = moto.keys("cons", "c");
    let out = backup_to(&moto, &addr, url, &["--plan", "--json"]).expect(0);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (&plan["mode"], &plan["reason_code"]),
        (
            &serde_json::json!("full"),
            &serde_json::json!("consolidate")
        ),
        "OBJ-16: {out:#?}"
    );
    let out = backup_to(&moto, &addr, url, &["--plan", "--type", "incremental"]);
    assert_eq!(out.code, Some(7), "OBJ-16: {out:#?}");
    assert_eq!(
        moto.keys("cons", "c"),
        before,
        "OBJ-16: a plan writes nothing"
    );
    // ... and `auto` takes a new full generation, which replaces the one with the segments.
    let out = backup_to(&moto, &addr, url, &["--json"]).expect(0);
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["mode"], "full", "OBJ-12: {out:#?}");
    assert_eq!(summary["reason_code"], "consolidate", "OBJ-12: {out:#?}");
    assert_eq!(moto.get("cons", "c/CURRENT"), b"generation-2\n", "OBJ-12");
    let mut expected = generation_keys("c", 2);
    expected.push("c/CURRENT".into());
    expected.sort();
    assert_eq!(moto.keys("cons", "c"), expected, "OBJ-12");
    let r = dir.path().join("r");
    admin_with(&moto, &["restore", "--from", url, "--store", path(&r)]).expect(0);
    assert_same_as_server(&r, &server);
}

#[test]
fn obj_7_a_run_killed_mid_upload_leaves_the_previous_generation_and_the_next_aborts_its_parts() {
    let (moto, dir, server, addr) = big_world("killed");
    let url = "s3://killed/k";
    let first = backup_to(&moto, &addr, url, &["--json"]).expect(0);
    assert!(
        !first.stderr.contains("multipart"),
        "OBJ-7: a run that found no unfinished upload says nothing of it: {first:#?}"
    );
    let first: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    write_nodes(&server, 5);
    // A full backup slowed down, killed once one of its parts is in the store.
    let mut child = slowed_backup(&moto, &addr, url, &["--type", "full"]);
    wait_until(
        std::time::Duration::from_secs(60),
        "a part of the second backup in the store",
        || moto.open_uploads("killed", "k/") > 0,
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(moto.get("killed", "k/CURRENT"), b"generation-1\n", "OBJ-7");
    // Its lease holds off the next run until it expires (OBJ-5); an expired one is taken over.
    let out = backup_to(&moto, &addr, url, &[]);
    assert!(
        out.one_error_line()
            .contains("in use by another backup run"),
        "OBJ-5: {out:#?}"
    );
    moto.put("killed", "k/LEASE", b"neo4j-backup lease dead 1\n");
    // The previous generation restores, as it was.
    let r = dir.path().join("r");
    admin_with(&moto, &["restore", "--from", url, "--store", path(&r)]).expect(0);
    let restored = check_json(&r);
    assert_eq!(restored["digest"], first["digest"], "OBJ-7: {restored}");
    assert!(
        moto.open_uploads("killed", "k/") > 0,
        "the killed run's upload is still open before the next run"
    );
    // The next run aborts what the killed one left, says so, and backs up.
    let next = backup_to(&moto, &addr, url, &[]).expect(0);
    assert_eq!(moto.open_uploads("killed", "k/"), 0, "OBJ-7: no parts left");
    assert!(
        next.stderr
            .contains("multipart upload(s) an interrupted run left")
            && !next.stderr.contains("aborted 0"),
        "OBJ-7: the run says what it aborted: {next:#?}"
    );
    let r = dir.path().join("r2");
    admin_with(&moto, &["restore", "--from", url, "--store", path(&r)]).expect(0);
    assert_same_as_server(&r, &server);
}

// OBJ-7: a run that fails mid-upload (here its server dies under it) aborts the multipart
// upload it had begun before it exits: no parts are left for the next run to find.
#[test]
fn obj_7_a_run_that_fails_mid_upload_aborts_its_parts() {
    let (moto, _dir, server, addr) = big_world("failed");
    let child = slowed_backup(&moto, &addr, "s3://failed/f", &[]);
    // The property store (24 MB) is the largest file and the last sent: a part of it in the
    // store, the upload has most of its bytes still to come.
    wait_until(
        std::time::Duration::from_secs(60),
        "a part of the property store in the store",
        || moto.open_uploads("failed", "f/generation-1/neostore.propertystore.db") > 0,
    );
    server.kill();
    let out = Out::of(child.wait_with_output().unwrap());
    assert_eq!(out.code, Some(1), "OBJ-7: {out:#?}");
    assert_eq!(
        moto.open_uploads("failed", "f/"),
        0,
        "OBJ-7: the failed run aborted its upload: {out:#?}"
    );
}

#[test]
fn obj_14_check_reads_an_object_store_backup_quick_or_whole() {
    let (moto, _dir, server, addr) = world("checked");
    write_nodes(&server, 10);
    let url = "s3://checked/c";
    backup_to(&moto, &addr, url, &[]).expect(0);
    write_nodes(&server, 2);
    backup_to(&moto, &addr, url, &[]).expect(0);
    let quick = admin_with(&moto, &["check", "--quick", "--json", url]).expect(0);
    let quick: serde_json::Value = serde_json::from_str(&quick.stdout).unwrap();
    assert_eq!(quick["intact"], true, "OBJ-14: {quick}");
    assert_eq!(quick["blocks_checked"], quick["blocks"], "OBJ-14: {quick}");
    let whole = admin_with(&moto, &["check", "--json", url]).expect(0);
    let whole: serde_json::Value = serde_json::from_str(&whole.stdout).unwrap();
    let s = status(&server);
    assert_eq!(
        whole["digest"], s["digest"],
        "OBJ-14: the recovered copy's digest: {whole}"
    );
    assert_eq!(whole["consistent"], true, "OBJ-14: {whole}");
    // A flipped byte is named with its object and block by both, exit 3.
    let key = "c/generation-1/neostore.nodestore.db";
    let mut bytes = moto.get("checked", key);
    bytes[3] ^= 1;
    moto.put("checked", key, &bytes);
    for args in [vec!["check", "--quick", url], vec!["check", url]] {
        let out = admin_with(&moto, &args);
        assert_eq!(out.code, Some(3), "OBJ-14: {out:#?}");
        assert!(
            out.one_error_line()
                .contains("neostore.nodestore.db: block 0"),
            "OBJ-14: {out:#?}"
        );
    }
}

#[test]
fn obj_15_backup_info_lists_an_object_store_backups_generations() {
    let (moto, _dir, server, addr) = world("listed");
    let url = "s3://listed/i";
    let out = admin_with(&moto, &["backup-info", url]);
    assert_eq!(out.code, Some(3), "OBJ-15: no backup yet: {out:#?}");
    write_nodes(&server, 4);
    backup_to(&moto, &addr, url, &[]).expect(0);
    write_nodes(&server, 2);
    let full = backup_to(
        &moto,
        &addr,
        url,
        &["--type", "full", "--keep-generations", "2", "--json"],
    )
    .expect(0);
    let full: serde_json::Value = serde_json::from_str(&full.stdout).unwrap();
    write_nodes(&server, 3);
    // The option is given on each run (OBJ-9, PIT-12).
    let last = backup_to(&moto, &addr, url, &["--json", "--keep-generations", "2"]).expect(0);
    let last: serde_json::Value = serde_json::from_str(&last.stdout).unwrap();
    let info = admin_with(&moto, &["backup-info", "--json", url]).expect(0);
    let info: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    let gens = info["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 2, "OBJ-15: {info}");
    assert_eq!(
        (gens[0]["live"].as_bool(), gens[0]["kept"].as_bool()),
        (Some(false), Some(true)),
        "OBJ-15: {info}"
    );
    assert_eq!(
        (gens[1]["live"].as_bool(), gens[1]["kept"].as_bool()),
        (Some(true), Some(false)),
        "OBJ-15: the live generation is not one kept beside it: {info}"
    );
    assert_eq!(gens[1]["last_tx"], last["to_tx"], "OBJ-15: {info}");
    assert_eq!(gens[1]["digest"], last["digest"], "OBJ-15: {info}");
    assert_eq!(
        gens[1]["restores_to_txs"],
        serde_json::json!([full["to_tx"], last["to_tx"]]),
        "OBJ-15, OBJ-18: from its full backup's tx to its last: {info}"
    );
    assert_eq!(
        gens[1]["dir"], "s3://listed/i/generation-2",
        "OBJ-15: {info}"
    );
}

/// `backup-info --json` of `url` after a rewrite into a new generation (OBJ-19, OBJ-20): its
/// two generations, the previous one kept and the new one live, checked for `rule`.
fn kept_and_live(
    moto: &Moto,
    url: &str,
    rule: &str,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let out = admin_with(moto, &["backup-info", "--json", url]).expect(0);
    let info: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let gens = info["generations"].as_array().unwrap().clone();
    assert_eq!(
        gens.len(),
        2,
        "{rule}: the previous generation is kept: {info}"
    );
    assert_eq!(
        (gens[0]["kept"].as_bool(), gens[1]["live"].as_bool()),
        (Some(true), Some(true)),
        "{rule}: {info}"
    );
    (info, gens)
}

/// The tx a run's `--json` summary says it backed up to.
fn backed_up_to(out: &Out) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["to_tx"].as_u64().unwrap()
}

/// Commits `n` one-node transactions, recording the server's digest after each in `history`.
fn write_recorded(server: &ServerProcess, n: u64, history: &mut BTreeMap<u64, String>) -> u64 {
    let mut last = 0;
    for i in 0..n {
        let ops = format!(r#"[{{"create_node": {{"labels": ["P"], "props": {{"i": {i}}}}}}}]"#);
        last = commit_recorded(server, &ops, history).0;
    }
    last
}

/// The current time as `--until-time` takes it, between two commits a few milliseconds apart.
fn time_between_commits() -> String {
    std::thread::sleep(std::time::Duration::from_millis(30));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    std::thread::sleep(std::time::Duration::from_millis(30));
    online_backup::units::time_millis(now)
}

// OBJ-18: an object store generation restores to every tx from the one its full backup
// reached to its last, by `--until-tx` or `--until-time`: each restored store checks, is at
// that tx and has the server's digest there. A tx no generation holds is refused, naming what
// each holds, with nothing created and no staging left; an older generation kept by
// `--keep-generations` is restored from when only it holds the tx.
#[test]
fn obj_18_an_object_store_backup_restores_to_an_earlier_tx_or_time() {
    let (moto, dir, server, addr) = world("pit");
    let url = "s3://pit/h";
    let mut history = BTreeMap::new();
    write_recorded(&server, 3, &mut history);
    let first = backed_up_to(&backup_to(&moto, &addr, url, &["--json"]).expect(0));
    write_recorded(&server, 4, &mut history);
    let mid = backed_up_to(&backup_to(&moto, &addr, url, &["--json"]).expect(0));
    let between = time_between_commits();
    write_recorded(&server, 4, &mut history);
    let last = backed_up_to(&backup_to(&moto, &addr, url, &["--json"]).expect(0));
    assert_eq!((mid, last), (first + 4, first + 8), "the test's arithmetic");

    let restore_until = |name: &str, until: &[&str]| {
        let r = dir.path().join(name);
        let mut args = vec!["restore", "--from", url, "--store", path(&r)];
        args.extend_from_slice(until);
        let out = admin_with(&moto, &args);
        assert!(
            !dir.path().join(format!("{name}.staging")).exists(),
            "OBJ-18: the staging directory is removed: {out:#?}"
        );
        (r, out)
    };
    let restores_to = |name: &str, until: &[&str], tx: u64, history: &BTreeMap<u64, String>| {
        let (r, out) = restore_until(name, until);
        out.expect(0);
        let restored = check_json(&r);
        assert_eq!(
            restored["last_committed_tx"].as_u64(),
            Some(tx),
            "OBJ-18: {until:?} restores tx {tx}"
        );
        assert_eq!(
            restored["digest"].as_str(),
            Some(history[&tx].as_str()),
            "OBJ-18: the store restored to tx {tx} has the server's digest then"
        );
    };
    for tx in [first, first + 1, mid, mid + 3, last] {
        restores_to(
            &format!("tx{tx}"),
            &["--until-tx", &tx.to_string()],
            tx,
            &history,
        );
    }
    restores_to("by-time", &["--until-time", &between], mid, &history);

    // Before the full backup's tx: refused, naming what the generation holds.
    let (r, out) = restore_until("early", &["--until-tx", &(first - 1).to_string()]);
    assert_eq!(out.code, Some(1), "OBJ-18: {out:#?}");
    assert!(
        out.one_error_line().contains(&format!(
            "it can be restored to tx {first} to tx {last} in generation-1"
        )),
        "OBJ-18: {out:#?}"
    );
    assert!(!r.exists(), "OBJ-18: nothing created");
    let (r, out) = restore_until("too-early", &["--until-time", "2001-01-01T00:00:00Z"]);
    assert_eq!(out.code, Some(1), "OBJ-18: {out:#?}");
    assert!(
        out.one_error_line()
            .contains("cannot be restored to 2001-01-01T00:00:00.000Z"),
        "OBJ-18: {out:#?}"
    );
    assert!(!r.exists(), "OBJ-18: nothing created");

    // A new full generation, the old one kept: a tx only the old one holds is restored from it.
    write_recorded(&server, 2, &mut history);
    let second = backed_up_to(
        &backup_to(
            &moto,
            &addr,
            url,
            &["--type", "full", "--keep-generations", "2", "--json"],
        )
        .expect(0),
    );
    restores_to(
        "from-kept",
        &["--until-tx", &mid.to_string()],
        mid,
        &history,
    );
    restores_to(
        "from-live",
        &["--until-tx", &second.to_string()],
        second,
        &history,
    );
    let (_, out) = restore_until("none", &["--until-tx", "1"]);
    assert_eq!(out.code, Some(1), "OBJ-18: {out:#?}");
    assert!(
        out.one_error_line().contains(&format!(
            "tx {second} only in generation-2; tx {first} to tx {last} in generation-1"
        )),
        "OBJ-18: every generation is named: {out:#?}"
    );
    // Without --until-tx, the live generation at its last tx, as before (OBJ-8).
    let (r, out) = restore_until("live", &[]);
    out.expect(0);
    assert_same_as_server(&r, &server);
}

// OBJ-19, BK-15: a backup in an object store of a format-1 server, refused once the server is
// upgraded, is upgraded by `neo4j-admin upgrade s3://...` into a new generation (the old one
// kept), after which incrementals go on and it restores to the server's state; a second
// upgrade writes nothing.
#[test]
fn obj_19_an_object_store_backup_is_upgraded_into_a_new_generation() {
    let moto = Moto::start();
    moto.create_bucket("old");
    let dir = scratch();
    let db = dir.path().join("db");
    // Record files of several 1 MiB reads, one past S3's 5 MiB part (a multipart upload).
    generate(&db, 20_000, &["--format-version", "1"]);
    let url = "s3://old/b";
    let server = ServerProcess::start(&db, Some(EPHEMERAL));
    write_nodes(&server, 3);
    backup_to(&moto, server.backup.as_deref().unwrap(), url, &[]).expect(0);
    write_nodes(&server, 3);
    backup_to(&moto, server.backup.as_deref().unwrap(), url, &[]).expect(0);
    assert_eq!(server.terminate(), Some(0));
    admin(&["upgrade", path(&db)]).expect(0);
    let server = ServerProcess::start(&db, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let out = backup_to(&moto, &addr, url, &[]);
    assert_eq!(out.code, Some(5), "BK-15: {out:#?}");
    assert!(
        out.one_error_line()
            .contains(&format!("neo4j-admin upgrade {url}")),
        "BK-15: the refusal names the way on: {out:#?}"
    );

    // A manifest whose digest is not the state its generation recovers to: exit 3, nothing
    // changed.
    let key = "b/generation-1/MANIFEST";
    let good = moto.get("old", key);
    let mut lying = online_backup::backup::manifest::Manifest::decode(&good).unwrap();
    lying.digest = online_backup::digest::Digest([7; 32]);
    moto.put("old", key, &lying.encode());
    let before = moto.keys("old", "b");
    let out = admin_with(&moto, &["upgrade", url]);
    assert_eq!(out.code, Some(3), "OBJ-19: {out:#?}");
    assert!(
        out.one_error_line().contains("but its manifest says tx"),
        "OBJ-19: {out:#?}"
    );
    assert_eq!(moto.keys("old", "b"), before, "OBJ-19: nothing changed");
    moto.put("old", key, &good);

    let out = admin_with(&moto, &["upgrade", url]).expect(0);
    assert!(
        out.stdout.contains(&format!(
            "upgraded {url} from format 1 to format 2: generation-2 at tx"
        )),
        "OBJ-19: {out:#?}"
    );
    let (info, gens) = kept_and_live(&moto, url, "OBJ-19");
    assert_eq!(
        (&gens[0]["format_version"], &gens[1]["format_version"]),
        (&serde_json::json!(1), &serde_json::json!(2)),
        "OBJ-19: {info}"
    );
    assert_eq!(
        (&gens[0]["digest"], &gens[0]["last_tx"]),
        (&gens[1]["digest"], &gens[1]["last_tx"]),
        "OBJ-19, ADM-5: the same state in the new format: {info}"
    );
    // A second upgrade has nothing to do and writes nothing.
    let before = moto.keys("old", "b");
    let out = admin_with(&moto, &["upgrade", url]).expect(0);
    assert!(
        out.stdout.contains("already at the current format 2"),
        "OBJ-19: {out:#?}"
    );
    assert_eq!(moto.keys("old", "b"), before, "OBJ-19: nothing written");
    // Incrementals go on from the upgraded generation; it restores to the server's state.
    write_nodes(&server, 2);
    let out = backup_to(&moto, &addr, url, &["--json"]).expect(0);
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["mode"], "incremental", "OBJ-19: {out:#?}");
    let r = dir.path().join("restored");
    admin_with(&moto, &["restore", "--from", url, "--store", path(&r)]).expect(0);
    assert_eq!(
        assert_same_as_server(&r, &server)["format_version"],
        "2",
        "OBJ-19"
    );
}

// OBJ-20: `neo4j-admin aggregate s3://...` folds a generation's segments into the record files of
// a new generation (the old one kept, still restorable to its earlier txs); the new one
// restores to the server's state, a second aggregate writes nothing, incrementals append to the
// new generation, a manifest the fold disagrees with changes nothing, and a directory is a
// usage error.
#[test]
fn obj_20_aggregate_folds_the_segments_into_a_new_generation() {
    let (moto, dir, server, addr) = world("agg");
    let url = "s3://agg/f";
    let mut history = BTreeMap::new();
    write_recorded(&server, 3, &mut history);
    let first = backed_up_to(&backup_to(&moto, &addr, url, &["--json"]).expect(0));
    for _ in 0..3 {
        write_recorded(&server, 4, &mut history);
        backup_to(&moto, &addr, url, &[]).expect(0);
    }
    let last = first + 12;
    let generation = |n: u64| {
        let prefix = format!("f/generation-{n}/");
        moto.keys("agg", "f")
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect::<Vec<_>>()
    };
    let logs = |n: u64| {
        generation(n)
            .into_iter()
            .filter(|k| k.starts_with("neostore.transaction.db."))
            .count()
    };
    assert_eq!(logs(1), 4, "the full backup's log and three segments");

    // A manifest whose digest is not the state its generation recovers to: exit 3, nothing
    // changed.
    let key = "f/generation-1/MANIFEST";
    let good = moto.get("agg", key);
    let mut lying = online_backup::backup::manifest::Manifest::decode(&good).unwrap();
    lying.digest = online_backup::digest::Digest([7; 32]);
    moto.put("agg", key, &lying.encode());
    let before = moto.keys("agg", "f");
    let out = admin_with(&moto, &["aggregate", url]);
    assert_eq!(out.code, Some(3), "OBJ-20: {out:#?}");
    assert!(
        out.one_error_line()
            .contains("does not check once aggregated"),
        "OBJ-20: {out:#?}"
    );
    assert_eq!(moto.keys("agg", "f"), before, "OBJ-20: nothing changed");
    moto.put("agg", key, &good);

    let out = admin_with(&moto, &["aggregate", url]).expect(0);
    let folded: u64 = out
        .stdout
        .strip_prefix(&format!("aggregated {url}: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("OBJ-20: {out:#?}"));
    assert!(
        (12..=last).contains(&folded)
            && out.stdout.contains(&format!(
                "transaction(s) folded into the record files of generation-2 at tx {last}, live, checked"
            )),
        "OBJ-20: the three segments' 12 txs at least, and those after the checkpoint: {out:#?}"
    );
    assert_eq!(logs(2), 1, "OBJ-20: one log object, a bare header");
    let (info, gens) = kept_and_live(&moto, url, "OBJ-20");
    assert_eq!(
        (&gens[0]["digest"], &gens[1]["digest"]),
        (&gens[1]["digest"], &serde_json::json!(history[&last])),
        "OBJ-20: the same state, the server's at tx {last}: {info}"
    );
    assert_eq!(
        gens[1]["restores_to_txs"],
        serde_json::json!([last, last]),
        "OBJ-20: the folded generation restores to its last tx alone: {info}"
    );
    let r = dir.path().join("folded");
    admin_with(&moto, &["restore", "--from", url, "--store", path(&r)]).expect(0);
    assert_same_as_server(&r, &server);
    // The txs before it are still restored, from the generation kept.
    let r = dir.path().join("earlier");
    let until = (first + 5).to_string();
    admin_with(
        &moto,
        &[
            "restore",
            "--from",
            url,
            "--store",
            path(&r),
            "--until-tx",
            &until,
        ],
    )
    .expect(0);
    assert_eq!(
        check_json(&r)["digest"].as_str(),
        Some(history[&(first + 5)].as_str()),
        "OBJ-20, OBJ-18: the kept generation restores to tx {until}"
    );

    // A second aggregate has nothing to fold and writes nothing.
    let before = moto.keys("agg", "f");
    let out = admin_with(&moto, &["aggregate", url]).expect(0);
    assert!(
        out.stdout.contains(&format!(
            "holds no transaction to fold (its files are at tx {last})"
        )),
        "OBJ-20: {out:#?}"
    );
    assert_eq!(moto.keys("agg", "f"), before, "OBJ-20: nothing written");

    // Incrementals append to the folded generation, which restores to the server's state; the
    // generation kept goes when `--keep-generations` no longer covers it.
    write_recorded(&server, 2, &mut history);
    let out = backup_to(&moto, &addr, url, &["--json", "--keep-generations", "2"]).expect(0);
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["mode"], "incremental", "OBJ-20: {out:#?}");
    assert_eq!(logs(2), 2, "OBJ-20: its first segment");
    assert!(!generation(1).is_empty(), "OBJ-9: two generations kept");
    backup_to(&moto, &addr, url, &[]).expect(0);
    assert!(
        generation(1).is_empty() && !generation(2).is_empty(),
        "OBJ-9, PIT-12: an incremental with nothing new removes the excess"
    );
    let r = dir.path().join("after");
    admin_with(&moto, &["restore", "--from", url, "--store", path(&r)]).expect(0);
    assert_same_as_server(&r, &server);

    // A backup directory holds no segments: a usage error.
    let out = admin_with(&moto, &["aggregate", path(&r)]);
    assert_eq!(out.code, Some(2), "OBJ-20: {out:#?}");
    assert!(
        out.one_error_line()
            .contains("aggregate takes a backup in an object store"),
        "OBJ-20: {out:#?}"
    );
}
