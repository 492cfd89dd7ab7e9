//! The backup directory: generations and the pointer, a plain store directory as a target, and
//! the leftovers of an interrupted run.

use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::ServerProcess;

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
    assert!(
        out.summary().contains("full backup of store"),
        "BK-4: --type full takes a full backup over a backup an incremental could extend: {out:#?}"
    );
    assert_eq!(
        names(&b),
        ["CURRENT", "generation-2"],
        "BK-4: into a new generation"
    );
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
    assert!(
        out.summary().contains("full backup"),
        "BK-37: generations, CURRENT.tmp and lost+found may be in a backup directory: {out:#?}"
    );
    let live = current(&b);
    assert_eq!(
        names(&b),
        ["CURRENT".to_string(), live.clone(), "lost+found".into()],
        "BK-36, BK-37: the leftovers removed, lost+found left alone"
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
    assert!(
        out.summary().contains("incremental backup"),
        "BK-37: store files beside a pointer may be in a backup directory: {out:#?}"
    );
    assert_eq!(
        names(&b),
        ["CURRENT".to_string(), live, "lost+found".into()],
        "BK-36: the leftovers removed"
    );
    assert_same_as_server(&b, &server);
}

// BK-35: the lock a target lends to a store opened in place comes back to it: the directory
// stays locked until the target is dropped, then it is free.
#[test]
fn bk_35_a_lent_lock_comes_back_to_the_target() {
    use online_backup::backup::target::Target;
    let dir = crate::support::scratch();
    let fs = crate::support::fs();
    let mut target = Target::open(fs.clone(), dir.path()).unwrap();
    let lock = target.take_lock();
    target.return_lock(lock);
    let again = fs.lock_dir(dir.path());
    assert!(
        matches!(&again, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "BK-35: the returned lock is held: {again:?}"
    );
    drop(again);
    drop(target);
    assert!(
        fs.lock_dir(dir.path()).is_ok(),
        "BK-35: released with the target"
    );
}
