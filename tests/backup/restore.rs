//! `neo4j-admin restore` of a backup.

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::ServerProcess;

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
    let out = admin(&["restore", "--from", path(&b), "--store", path(&r)]);
    assert_eq!(
        out.code,
        Some(1),
        "ADM-8: a refused target exits 1: {out:#?}"
    );
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

    // ADM-8: an inconsistent backup is refused with exit 3 and nothing is restored. Without
    // its manifest (a backup an older version took), so the consistency check finds it.
    let live = b.join(current(&b));
    std::fs::remove_file(live.join("MANIFEST")).unwrap();
    let nodes = live.join("neostore.nodestore.db");
    let mut bytes = std::fs::read(&nodes).unwrap();
    bytes[3] ^= 0x40;
    std::fs::write(&nodes, bytes).unwrap();
    restore_refused(&b, &dir.path().join("fresh"), "an inconsistent backup");
}

// ADM-6, MF-10: a restore copies the store's files chunk by chunk whatever their size (several
// MiB here), byte for byte, and only the store's own: not the backup's manifest, and not a
// temporary file an interrupted write left in a backup without one.
#[test]
fn adm_6_restore_copies_large_files_and_only_the_stores_own() {
    let dir = scratch();
    let db = dir.path().join("db");
    generate(&db, 20_000, &[]);
    let server = ServerProcess::start(&db, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(&addr, &b, &[]).expect(0);
    drop(server);
    let backed = check_json(&b);
    let live = |d: &std::path::Path| d.join(current(d));
    let record_files = [
        "neostore.nodestore.db",
        "neostore.propertystore.db",
        "neostore.relationshipstore.db",
    ];
    for (case, r) in [("with a manifest", "restored"), ("without", "restored-old")] {
        if case == "without" {
            std::fs::remove_file(live(&b).join("MANIFEST")).unwrap();
            std::fs::write(live(&b).join("neostore.meta.tmp"), b"half").unwrap();
        }
        let r = dir.path().join(r);
        let props = live(&b).join("neostore.propertystore.db");
        assert!(
            std::fs::metadata(&props).unwrap().len() > 3 << 20,
            "a file of several 1 MiB chunks"
        );
        admin(&["restore", "--from", path(&b), "--store", path(&r)]).expect(0);
        assert_eq!(check_json(&r)["digest"], backed["digest"], "ADM-6: {case}");
        for name in record_files {
            let (from, to) = (live(&b).join(name), live(&r).join(name));
            assert!(
                std::fs::read(&from).unwrap() == std::fs::read(&to).unwrap(),
                "ADM-6: {case}: {name} copied byte for byte"
            );
        }
        for name in names(&live(&r)) {
            assert!(
                name.starts_with("neostore.") && !name.ends_with(".tmp"),
                "ADM-6, MF-10: {case}: only the store's own files are restored, not {name}"
            );
        }
    }
}

/// Restores through the library: the copy's progress as it is reported, and disks that damage
/// what the copy writes.
mod through_the_library {
    use std::path::Path;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use online_backup::backup::restore::{restore, RestoreError};
    use online_backup::graph::{Op, Value};
    use online_backup::io::os::OsBlocking;
    use online_backup::progress::Phase;
    use online_backup::store::format::FormatVersion;
    use online_backup::store::layout::generation_name;
    use online_backup::store::{Store, StoreOptions};

    use crate::support::faulty::{Faulty, Files};
    use crate::support::{clock, fs, scratch};

    /// An integer no other bytes of the store repeat, so its place in the file is found by
    /// searching for it.
    const MARK: i64 = 0x5a17_c0de_2bad_f00d;

    // ADM-6, ADM-8: a copy that a disk damaged on its way is never switched to, even when the
    // damage leaves every record readable (a format-1 store has no checksums: an integer
    // property with one bit flipped is a valid, different value): its digest is not the
    // backup's, the restore fails with exit 1 naming both digests, and the target is left empty.
    #[test]
    fn adm_6_a_copy_damaged_on_its_way_is_refused_and_the_target_left_empty() {
        let dir = scratch();
        let (from, to) = (dir.path().join("backup"), dir.path().join("restored"));
        twenty_nodes(&from, MARK);
        let blocks = std::fs::read(from.join("neostore.propertystore.db")).unwrap();
        let at = blocks
            .windows(8)
            .position(|w| w == MARK.to_le_bytes())
            .expect("the marked value is in the block file") as u64;

        let damaging = Faulty {
            armed: Arc::new(AtomicBool::new(true)),
            flip_writes: Some((
                Files {
                    under: Some(to.clone()),
                    name: "neostore.propertystore.db",
                },
                at,
            )),
            ..Default::default()
        };
        assert_copy_refused(damaging, &from, &to, "a copy damaged on its way");
    }

    // CLI-6, ADM-6: the copy reports its progress as bytes copied of the bytes to copy, rising
    // with each chunk to the whole, which is what the restore says it copied.
    #[test]
    fn cli_6_the_copy_reports_the_bytes_copied_of_the_whole() {
        let dir = scratch();
        let (from, to) = (dir.path().join("backup"), dir.path().join("restored"));
        twenty_nodes(&from, MARK);
        let mut copied = Vec::new();
        let restored = restore(
            fs(),
            clock(),
            &OsBlocking,
            &from,
            &to,
            false,
            None,
            &mut |phase, done, total| {
                if phase == Phase::CopyFiles {
                    copied.push((done, total));
                }
            },
        )
        .expect("ADM-6: the restore succeeds");
        let whole = restored.bytes;
        assert!(
            whole > 0 && copied.iter().all(|&(_, total)| total == whole),
            "CLI-6: the copy's total is the bytes it copies, {whole}: {copied:?}"
        );
        assert!(
            copied.windows(2).all(|w| w[0].0 < w[1].0) && copied.first().is_some_and(|c| c.0 > 0),
            "CLI-6: the bytes copied rise with each chunk: {copied:?}"
        );
        assert_eq!(
            copied.last().map(|c| c.0),
            Some(whole),
            "CLI-6: the copy ends having copied the whole: {copied:?}"
        );
    }

    /// A store of 20 nodes at `dir`, each with an integer property, the 14th `marked`.
    fn twenty_nodes(dir: &Path, marked: i64) {
        let mut s = Store::create(
            fs(),
            clock(),
            dir,
            &StoreOptions::default(),
            FormatVersion::V1,
            11,
        )
        .unwrap();
        for i in 0..20 {
            let value = if i == 13 { marked } else { i };
            s.commit(&[Op::CreateNode {
                labels: vec!["N".into()],
                props: [("n".to_string(), Value::Int(value))].into_iter().collect(),
            }])
            .unwrap();
        }
        s.close().unwrap();
    }

    // ADM-6, ADM-8: a copy that is a consistent store, at the backup's tx, but not the backup
    // (a disk whose writes landed another store's bytes) is never switched to: the check of the
    // copy finds nothing wrong with it, only that its digest is not the backup's.
    #[test]
    fn adm_6_a_consistent_copy_of_other_data_is_refused() {
        let dir = scratch();
        let (from, other, to) = (
            dir.path().join("backup"),
            dir.path().join("other"),
            dir.path().join("restored"),
        );
        twenty_nodes(&from, MARK);
        twenty_nodes(&other, MARK + 1);
        let misdirecting = Faulty {
            armed: Arc::new(AtomicBool::new(true)),
            misdirect_writes: Some((
                Files {
                    under: Some(to.join(generation_name(1))),
                    name: "",
                },
                other.clone(),
            )),
            ..Default::default()
        };
        assert_copy_refused(misdirecting, &from, &to, "a consistent copy of other data");
    }

    /// Restores `from` into `to` through `disk`, and asserts the copy (`what`) is refused with
    /// exit 1 because its digest is not the backup's, and nothing is restored.
    fn assert_copy_refused(disk: Faulty, from: &Path, to: &Path, what: &str) {
        let err = restore(
            Arc::new(disk),
            clock(),
            &OsBlocking,
            from,
            to,
            false,
            None,
            &mut |_, _, _| {},
        )
        .map(|r| r.report.digest)
        .expect_err(&format!("ADM-6: {what} is refused"));
        assert!(
            matches!(err, RestoreError::CopyDiffers { .. }) && err.exit_code() == 1,
            "ADM-6, ADM-8: {what} is refused with exit 1, naming both digests: {err}"
        );
        let left: Vec<_> = std::fs::read_dir(to)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.iter().all(|n| n.to_string_lossy().starts_with('.')),
            "ADM-6: {what}: nothing is restored: {left:?}"
        );
    }
}
