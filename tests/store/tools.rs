//! The offline tools on a store: generate, check, upgrade (ADM-).

use super::*;

// ADM-2, ADM-3, DG-10, ST-4: a generated store, in each supported format, checks consistent and its recorded digest is the scan's.
#[test]
fn adm_2_generated_store_is_consistent_in_both_formats() {
    for format in FormatVersion::SUPPORTED {
        let dir = scratch();
        let store_dir = dir.path().join("g");
        let spec = GenerateSpec {
            nodes: 500,
            relationships_per_node: 3,
            property_bytes: 200,
            seed: 9,
            format,
        };
        let g = generate(fs(), clock(), &store_dir, &spec, 5).unwrap();
        let report = check(fs(), clock(), &store_dir).unwrap();
        assert!(report.consistent, "{:?}", report.findings);
        assert_eq!(
            report.digest,
            g.digest.to_hex(),
            "DG-10: the digest generate recorded is the scan's"
        );
        assert_eq!(report.relationships, 1500);
        // The generated graph takes writes like any other.
        let mut store = open(&store_dir).unwrap();
        store
            .commit(&[Op::DeleteRelationship(7), Op::DeleteRelationship(100)])
            .unwrap();
        store
            .commit(&[rel(NodeRef::Id(3), NodeRef::Id(3))])
            .unwrap();
        drop(store);
        let report = check(fs(), clock(), &store_dir).unwrap();
        assert!(report.consistent, "{:?}", report.findings);
    }
}

// ADM-5: upgrading a previous-format store keeps store id, digest and ids, and the result takes
// writes; upgrading again is a no-op.
#[test]
fn adm_5_upgrade_keeps_store_id_and_digest() {
    let dir = scratch();
    let mut store = Store::create(
        fs(),
        clock(),
        dir.path(),
        &StoreOptions::default(),
        FormatVersion::V1,
        3,
    )
    .unwrap();
    store
        .commit(&[
            node(&["A"]),
            node(&["B"]),
            rel(NodeRef::Id(0), NodeRef::Id(1)),
        ])
        .unwrap();
    let before = store.status();
    drop(store); // not even a clean shutdown: upgrade recovers first
    let outcome = upgrade(fs(), clock(), dir.path()).unwrap();
    assert_eq!(
        outcome,
        UpgradeOutcome::Upgraded {
            from: FormatVersion::V1,
            to: FormatVersion::V2
        }
    );
    let mut store = open(dir.path()).unwrap();
    let after = store.status();
    assert_eq!(after.format, FormatVersion::V2);
    assert_eq!(
        (after.store_id, after.digest, after.last_committed_tx),
        (before.store_id, before.digest, before.last_committed_tx)
    );
    store.commit(&[Op::DeleteRelationship(0)]).unwrap();
    drop(store);
    assert!(check(fs(), clock(), dir.path()).unwrap().consistent);
    assert_eq!(
        upgrade(fs(), clock(), dir.path()).unwrap(),
        UpgradeOutcome::AlreadyCurrent(FormatVersion::V2)
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".upgrade"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ADM-5: an upgrade interrupted after its staged metadata was written is rolled forward by the
// next opener; one interrupted before it is rolled back.
#[test]
fn adm_5_interrupted_upgrade_rolls_forward_or_back() {
    let dir = scratch();
    let mut store = Store::create(
        fs(),
        clock(),
        dir.path(),
        &StoreOptions::default(),
        FormatVersion::V1,
        3,
    )
    .unwrap();
    store.commit(&[node(&["A"])]).unwrap();
    let before = store.status();
    store.close().unwrap();
    // Rolled back: a converted file without staged metadata is a leftover.
    let nodes = dir.path().join(RecordKind::Node.file_name());
    std::fs::write(dir.path().join("neostore.nodestore.db.upgrade"), b"partial").unwrap();
    let store = open(dir.path()).unwrap();
    assert_eq!(store.status(), before);
    drop(store);
    assert!(!dir.path().join("neostore.nodestore.db.upgrade").exists());
    // Rolled forward: run a real upgrade on a copy, then stage its results by hand.
    let copy = scratch();
    copy_dir(dir.path(), copy.path());
    upgrade(fs(), clock(), copy.path()).unwrap();
    for kind in RecordKind::ALL {
        std::fs::copy(
            copy.path().join(kind.file_name()),
            dir.path().join(format!("{}.upgrade", kind.file_name())),
        )
        .unwrap();
    }
    std::fs::copy(
        copy.path().join("neostore.meta"),
        dir.path().join("neostore.meta.upgrade"),
    )
    .unwrap();
    let store = open(dir.path()).unwrap();
    assert_eq!(store.status().format, FormatVersion::V2);
    assert_eq!(store.status().digest, before.digest);
    assert!(nodes.exists());
}

// ADM-3, ST-5: check finds a corrupted record in the current format.
#[test]
fn adm_3_check_finds_a_corrupted_record() {
    let dir = scratch();
    let spec = GenerateSpec {
        nodes: 100,
        relationships_per_node: 1,
        property_bytes: 10,
        seed: 1,
        format: FormatVersion::V2,
    };
    let store_dir = dir.path().join("s");
    generate(fs(), clock(), &store_dir, &spec, 1).unwrap();
    let path = store_dir.join(RecordKind::Rel.file_name());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[73 * 10 + 12] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let report = check(fs(), clock(), &store_dir).unwrap();
    assert!(!report.consistent);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.contains("relationship 10") && f.contains("checksum")),
        "{:?}",
        report.findings
    );
}

// ST-16: a store reopened and closed with nothing committed since its last checkpoint is
// closed without a sync or a new metadata file; one with a commit since is checkpointed.
#[test]
fn st_16_closing_a_store_with_nothing_new_writes_nothing() {
    use std::sync::atomic::Ordering;
    let dir = scratch();
    let mut store = create(dir.path());
    store.commit(&[node(&["A"])]).unwrap();
    store.close().unwrap();
    let meta = std::fs::read(dir.path().join("neostore.meta")).unwrap();
    let fs = std::sync::Arc::new(support::faulty::Faulty {
        slow_syncs: Some((support::faulty::Files::named(""), std::time::Duration::ZERO)),
        ..Default::default()
    });
    let opened = Store::open(fs.clone(), clock(), dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(opened.status().last_committed_tx, 1);
    opened.close().unwrap();
    assert_eq!(
        fs.syncs.load(Ordering::SeqCst),
        0,
        "ST-16: closing a store with nothing new synced a file"
    );
    assert_eq!(
        std::fs::read(dir.path().join("neostore.meta")).unwrap(),
        meta,
        "ST-16: the metadata is as it was"
    );
    let mut opened =
        Store::open(fs.clone(), clock(), dir.path(), &StoreOptions::default()).unwrap();
    opened.commit(&[node(&["B"])]).unwrap();
    let before = fs.syncs.load(Ordering::SeqCst);
    opened.close().unwrap();
    assert!(
        fs.syncs.load(Ordering::SeqCst) > before,
        "ST-16: closing after a commit checkpoints"
    );
    assert_eq!(
        Meta::read(&online_backup::io::os::OsFs, dir.path())
            .unwrap()
            .checkpoint
            .last_tx,
        2,
        "ST-16"
    );
}
