//! What the tool refuses, changing nothing in the directory: not a backup directory (exit 3),
//! another store (4), another format version (5), no backup yet under `--type incremental` and a
//! backup ahead of the server (7), no room for a full backup.

use std::process::Command;

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::ServerProcess;

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
    // Files too large to be what they claim are damage too (exit 3), not an I/O failure.
    let huge_pointer = case("huge-pointer");
    backup_from(&addr, &huge_pointer, &[]).expect(0);
    std::fs::write(huge_pointer.join("CURRENT"), vec![b'g'; 1 << 20]).unwrap();
    let huge_meta = case("huge-meta");
    backup_from(&addr, &huge_meta, &[]).expect(0);
    let meta = huge_meta.join(current(&huge_meta)).join("neostore.meta");
    std::fs::write(&meta, vec![0u8; 1 << 20]).unwrap();
    // A plain store's damaged metadata is named without a generation.
    let plain_bad_meta = case("plain-bad-meta");
    generate(&plain_bad_meta, 10, &[]);
    let meta = plain_bad_meta.join("neostore.meta");
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
        (&bad_meta, "generation-1: "),
        (&huge_pointer, "CURRENT"),
        (&huge_meta, "generation-1: "),
        (&plain_bad_meta, "not a valid backup directory: "),
    ] {
        for more in ALL_TYPES {
            let line = refused(&addr, target, more, 3);
            assert!(
                line.contains("not a valid backup directory"),
                "BK-13: {line}"
            );
            assert!(line.contains(says), "BK-13: {line}");
            assert!(
                !line.contains(": :") && !line.contains(":  "),
                "BK-13: one sentence, no empty part: {line}"
            );
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

// BK-13, BK-17: a backup whose logs cannot be read (a log file after a gap) is not a valid
// backup for an incremental, and the directory is left as it was; `--type full` replaces it
// (the checkpoint stands in for what the logs would have said).
#[test]
fn bk_13_a_backup_whose_logs_cannot_be_read_is_replaced_only_by_type_full() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(&addr, &b, &[]).expect(0);
    std::fs::write(b.join(current(&b)).join("neostore.transaction.db.7"), b"x").unwrap();
    let before = snapshot(&b);
    let out = backup_from(&addr, &b, &[]);
    assert_eq!(out.code, Some(3), "BK-13: {out:#?}");
    assert!(
        out.one_error_line().contains("follows a gap"),
        "BK-13: {out:#?}"
    );
    assert_eq!(snapshot(&b), before, "BK-17: unchanged");
    backup_from(&addr, &b, &["--type", "full"]).expect(0);
    assert_same_as_server(&b, &server);
}
