//! The store's behaviour through its library API on real files: commits, refusals, locking,
//! rotation, recovery, upgrade and the consistency check.

mod support;

use std::path::Path;

use online_backup::graph::{NodeRef, Op, Properties, Value};
use online_backup::store::check::check;
use online_backup::store::format::{FormatVersion, RecordKind};
use online_backup::store::generate::{generate, GenerateSpec};
use online_backup::store::log::{list_log_versions, log_path};
use online_backup::store::meta::Meta;
use online_backup::store::upgrade::{upgrade, UpgradeOutcome};
use online_backup::store::{Store, StoreError, StoreOptions, TxRejection};
use support::*;

fn props(pairs: &[(&str, Value)]) -> Properties {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn node(labels: &[&str]) -> Op {
    Op::CreateNode {
        labels: labels.iter().map(|s| s.to_string()).collect(),
        props: props(&[("name", Value::String("x".into()))]),
    }
}

fn rel(from: NodeRef, to: NodeRef) -> Op {
    Op::CreateRelationship {
        from,
        to,
        rel_type: "KNOWS".into(),
        props: Properties::new(),
    }
}

fn open(dir: &Path) -> Result<Store, StoreError> {
    Store::open(fs(), clock(), dir, &StoreOptions::default())
}

fn create(dir: &Path) -> Store {
    Store::create(
        fs(),
        clock(),
        dir,
        &StoreOptions::default(),
        FormatVersion::CURRENT,
        1,
    )
    .unwrap()
}

// ST-3: "$i" references, ids in op order, tx ids 1, 2, 3 ...
#[test]
fn st_3_commits_number_transactions_and_resolve_references() {
    let dir = scratch();
    let mut store = create(dir.path());
    let out = store
        .commit(&[
            node(&["A"]),
            node(&["B"]),
            rel(NodeRef::CreatedBy(0), NodeRef::CreatedBy(1)),
        ])
        .unwrap();
    assert_eq!(out.tx_id, 1);
    assert_eq!(out.ids, vec![0, 1, 0]);
    let out = store
        .commit(&[Op::SetProperty {
            node: NodeRef::Id(1),
            key: "age".into(),
            value: Value::Int(3),
        }])
        .unwrap();
    assert_eq!(out.tx_id, 2);
    let n = store.node(1).unwrap().unwrap();
    assert_eq!(n.labels, vec!["B".to_string()]);
    assert_eq!(n.props.get("age"), Some(&Value::Int(3)));
    assert_eq!(store.node_relationships(0).unwrap(), Some(vec![0]));
    assert_eq!(store.node(9).unwrap(), None);
}

// ST-3: deleting a node that still has relationships is refused and nothing of the
// transaction is applied; a reference to a later op is refused.
#[test]
fn st_3_refusals_apply_nothing() {
    let dir = scratch();
    let mut store = create(dir.path());
    store
        .commit(&[node(&[]), node(&[]), rel(NodeRef::Id(0), NodeRef::Id(1))])
        .unwrap();
    let before = store.status();
    let err = store
        .commit(&[node(&["C"]), Op::DeleteNode(0)])
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Rejected(TxRejection::NodeHasRelationships { op: 1, id: 0 })
        ),
        "{err}"
    );
    let err = store
        .commit(&[rel(NodeRef::CreatedBy(1), NodeRef::Id(0)), node(&[])])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Rejected(TxRejection::BadReference { .. })),
        "{err}"
    );
    let err = store
        .commit(&[Op::CreateNode {
            labels: vec![],
            props: props(&[("l", Value::List(vec![Value::List(vec![])]))]),
        }])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Rejected(TxRejection::Invalid { .. })),
        "{err}"
    );
    assert_eq!(store.status(), before);
    store
        .commit(&[Op::DeleteRelationship(0), Op::DeleteNode(0)])
        .unwrap();
    assert_eq!(store.status().nodes, 1);
    assert_eq!(store.status().relationships, 0);
}

// IO-3: whoever opens a store holds its exclusive lock.
#[test]
fn io_3_a_second_opener_is_refused_while_the_store_is_open() {
    let dir = scratch();
    let store = create(dir.path());
    assert!(matches!(open(dir.path()), Err(StoreError::Locked(_))));
    drop(store);
    open(dir.path()).unwrap();
}

// ST-1: a directory without metadata is not a store.
#[test]
fn st_1_an_empty_directory_is_not_a_store() {
    let dir = scratch();
    assert!(matches!(open(dir.path()), Err(StoreError::NotAStore(_))));
}

// ST-14: opening a path that does not exist, or goes through a file, says it does not exist;
// opening a file says it is a file; neither is created. Creating a store on a file is refused in
// the same words.
#[test]
fn st_14_a_missing_path_or_a_file_is_named_as_such() {
    let dir = scratch();
    let missing = dir.path().join("missing");
    let err = open(&missing).unwrap_err();
    assert!(matches!(err, StoreError::Missing(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{} does not exist", missing.display())
    );
    assert!(!missing.exists());
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = open(&file).unwrap_err();
    assert!(matches!(err, StoreError::NotADirectory(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{} is a file, not a store directory", file.display())
    );
    let err = open(&file.join("below")).unwrap_err();
    assert!(matches!(err, StoreError::Missing(_)), "{err}");
    let err = Store::create(
        fs(),
        clock(),
        &file,
        &StoreOptions::default(),
        FormatVersion::CURRENT,
        1,
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::NotADirectory(_)), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// The length of each record file of the store in `dir` and the length its checkpoint's
/// high-water marks give (ST-15), in the order node, relationship, block.
fn record_lengths(dir: &Path) -> Vec<(u64, u64)> {
    let meta = Meta::read(&*fs(), dir).unwrap();
    let cp = &meta.checkpoint;
    [
        (RecordKind::Node, cp.state.next_node),
        (RecordKind::Rel, cp.state.next_rel),
        (RecordKind::Block, cp.state.next_block),
    ]
    .into_iter()
    .map(|(kind, mark)| {
        let len = std::fs::metadata(dir.join(kind.file_name())).unwrap().len();
        (len, mark * kind.size(meta.format) as u64)
    })
    .collect()
}

fn assert_exact_lengths(dir: &Path, when: &str) {
    for (len, want) in record_lengths(dir) {
        assert_eq!(
            len, want,
            "ST-15: {when}: a record file is {len} bytes, not {want}"
        );
    }
}

// ST-15: record files grow by whole records to exactly their high-water marks, in both formats:
// after creating, after commits that take ids and free them again in the same transaction (the
// highest id is then a record not in use, still written), that grow and shrink payload chains,
// after a crash that lost the unsynced tail of every record file and the recovery that
// follows, and after an upgrade. `check` agrees (no finding).
#[test]
fn st_15_record_files_are_exactly_the_high_water_marks() {
    for format in [FormatVersion::V1, FormatVersion::V2] {
        let dir = scratch();
        let d = dir.path();
        let mut store =
            Store::create(fs(), clock(), d, &StoreOptions::default(), format, 5).unwrap();
        assert_exact_lengths(d, "a new store");
        assert_eq!(
            record_lengths(d)[0],
            (0, 0),
            "ST-15: a new store's files are empty"
        );
        store
            .commit(&[
                node(&["A"]),
                node(&["B"]),
                rel(NodeRef::CreatedBy(0), NodeRef::CreatedBy(1)),
            ])
            .unwrap();
        let long = Value::String("x".repeat(1000));
        store
            .commit(&[Op::SetProperty {
                node: NodeRef::Id(0),
                key: "bio".into(),
                value: long,
            }])
            .unwrap();
        // The node, relationship and blocks created here are deleted by the same transaction:
        // their ids are the highest below the marks.
        store
            .commit(&[
                node(&["C"]),
                rel(NodeRef::Id(0), NodeRef::CreatedBy(0)),
                Op::DeleteRelationship(1),
                Op::DeleteNode(2),
            ])
            .unwrap();
        store
            .commit(&[Op::SetProperty {
                node: NodeRef::Id(0),
                key: "bio".into(),
                value: Value::Null,
            }])
            .unwrap();
        store.checkpoint().unwrap();
        assert_exact_lengths(d, "after commits");
        let synced: Vec<u64> = record_lengths(d).iter().map(|(len, _)| *len).collect();
        // More commits, then a crash that loses every record write since the checkpoint.
        store.commit(&[node(&[]), node(&["D"])]).unwrap();
        store
            .commit(&[rel(NodeRef::Id(3), NodeRef::Id(4))])
            .unwrap();
        let committed = store.status();
        drop(store);
        for (kind, len) in RecordKind::ALL.into_iter().zip(&synced) {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(d.join(kind.file_name()))
                .unwrap();
            f.set_len(*len).unwrap();
        }
        let store = open(d).unwrap();
        assert_eq!(store.status(), committed);
        store.close().unwrap();
        assert_exact_lengths(d, "after recovery");
        let report = check(fs(), clock(), d).unwrap();
        assert!(report.consistent, "ST-15: {:?}", report.findings);
        if format == FormatVersion::V1 {
            upgrade(fs(), clock(), d).unwrap();
            assert_exact_lengths(d, "after an upgrade");
            let report = check(fs(), clock(), d).unwrap();
            assert!(report.consistent, "ST-15: {:?}", report.findings);
        }
    }
}

// LOG-8, RC-1: rotation past the threshold starts a new file whose header carries the previous
// tx and digest; reopening after a crash replays across files.
#[test]
fn log_8_rotation_and_recovery_across_files() {
    let dir = scratch();
    let opts = StoreOptions {
        log_rotation_threshold: 1024,
        ..StoreOptions::default()
    };
    let mut store = Store::create(fs(), clock(), dir.path(), &opts, FormatVersion::V1, 1).unwrap();
    for i in 0..40 {
        store
            .commit(&[Op::CreateNode {
                labels: vec!["L".into()],
                props: props(&[("i", Value::Int(i))]),
            }])
            .unwrap();
    }
    let status = store.status();
    let versions = list_log_versions(&*fs(), dir.path()).unwrap();
    assert!(versions.len() > 2, "{versions:?}");
    assert!(store.meta().checkpoint.log_version > 0);
    drop(store); // crash: the tail after the last checkpoint must be replayed
    let store = Store::open(fs(), clock(), dir.path(), &opts).unwrap();
    assert_eq!(
        store.status(),
        status,
        "RC-1: opening replays every log file from the checkpoint's on"
    );
    assert_eq!(store.scan_digest().unwrap(), status.digest);
    assert_eq!(
        store.meta().checkpoint.last_tx,
        status.last_committed_tx,
        "RC-1: having replayed transactions, opening checkpoints"
    );
}

// RC-4: damage inside a log file that has later files refuses to open instead of silently
// dropping acknowledged transactions.
#[test]
fn rc_4_damage_before_the_last_log_file_refuses_to_open() {
    let dir = scratch();
    let opts = StoreOptions {
        log_rotation_threshold: 600,
        ..StoreOptions::default()
    };
    let mut store = Store::create(fs(), clock(), dir.path(), &opts, FormatVersion::V2, 1).unwrap();
    store.commit(&[node(&[])]).unwrap();
    let meta_before = std::fs::read(dir.path().join("neostore.meta")).unwrap();
    for _ in 0..20 {
        store.commit(&[node(&["A"])]).unwrap();
    }
    drop(store);
    // Put back the first checkpoint so recovery must read log 0 fully, then damage log 0.
    std::fs::write(dir.path().join("neostore.meta"), meta_before).unwrap();
    let log0 = log_path(dir.path(), 0);
    let mut bytes = std::fs::read(&log0).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0xFF;
    std::fs::write(&log0, bytes).unwrap();
    assert!(matches!(open(dir.path()), Err(StoreError::Corrupt(_))));
}

// RC-5: a crashed rotation leaves a last log file with a damaged header; it is recreated.
#[test]
fn rc_5_a_torn_new_log_header_is_recreated() {
    let dir = scratch();
    let mut store = create(dir.path());
    store.commit(&[node(&[])]).unwrap();
    let status = store.status();
    drop(store);
    std::fs::write(log_path(dir.path(), 1), [0u8; 10]).unwrap();
    let mut store = open(dir.path()).unwrap();
    assert_eq!(store.status(), status);
    store.commit(&[node(&[])]).unwrap();
    drop(store);
    assert_eq!(open(dir.path()).unwrap().status().last_committed_tx, 2);
}

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

// ST-2: every kind of value round-trips, null included (it is stored, not a removal).
#[test]
fn st_2_values_round_trip() {
    let dir = scratch();
    let mut store = create(dir.path());
    let all = props(&[
        ("n", Value::Null),
        ("b", Value::Bool(true)),
        ("i", Value::Int(i64::MIN)),
        ("f", Value::Float(-2.5)),
        ("s", Value::String("ü".repeat(300))),
        (
            "l",
            Value::List(vec![
                Value::Int(1),
                Value::String("x".into()),
                Value::Null,
                Value::Bool(false),
                Value::Float(0.5),
            ]),
        ),
    ]);
    store
        .commit(&[Op::CreateNode {
            labels: vec!["A".into()],
            props: all.clone(),
        }])
        .unwrap();
    drop(store);
    assert_eq!(
        open(dir.path()).unwrap().node(0).unwrap().unwrap().props,
        all
    );
}

// ST-9: ids come from high-water marks and are never reused, also across a crash.
#[test]
fn st_9_ids_are_never_reused() {
    let dir = scratch();
    let mut store = create(dir.path());
    store.commit(&[node(&[]), node(&[])]).unwrap();
    store.commit(&[Op::DeleteNode(1)]).unwrap();
    drop(store);
    let mut store = open(dir.path()).unwrap();
    assert_eq!(store.commit(&[node(&[])]).unwrap().ids, vec![2]);
    assert_eq!(store.node(1).unwrap(), None);
}

// LOG-4: a transaction whose entry would exceed 64 MiB is refused before anything is written.
#[test]
fn log_4_oversized_transaction_is_refused() {
    let dir = scratch();
    let mut store = create(dir.path());
    let big = "x".repeat((1 << 20) - 8);
    let ops: Vec<Op> = (0..65)
        .map(|i| Op::CreateNode {
            labels: vec![],
            props: props(&[("k", Value::String(format!("{i}{big}")))]),
        })
        .collect();
    let log_before = std::fs::metadata(log_path(dir.path(), 0)).unwrap().len();
    let err = store.commit(&ops).unwrap_err();
    assert!(
        matches!(err, StoreError::Rejected(TxRejection::TooLarge(_))),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(log_path(dir.path(), 0)).unwrap().len(),
        log_before
    );
    assert_eq!(store.status().last_committed_tx, 0);
    store.commit(&[node(&[])]).unwrap();
}

// LOG-6: log entries do not depend on the store format: the entries a format-1 store wrote,
// applied to a format-2 store, give the same state (how a backup ships them).
#[test]
fn log_6_entries_apply_to_a_store_of_either_format() {
    use online_backup::store::log::{read_entry, ReadOutcome, HEADER_SIZE};
    let dir = scratch();
    let (v1, v2) = (dir.path().join("v1"), dir.path().join("v2"));
    let mut source = Store::create(
        fs(),
        clock(),
        &v1,
        &StoreOptions::default(),
        FormatVersion::V1,
        1,
    )
    .unwrap();
    source
        .commit(&[
            node(&["A"]),
            node(&["B"]),
            rel(NodeRef::CreatedBy(0), NodeRef::CreatedBy(1)),
        ])
        .unwrap();
    source
        .commit(&[Op::SetProperty {
            node: NodeRef::Id(0),
            key: "k".into(),
            value: Value::String("y".repeat(500)),
        }])
        .unwrap();
    let want = source.status();
    drop(source);
    let mut target = Store::create(
        fs(),
        clock(),
        &v2,
        &StoreOptions::default(),
        FormatVersion::V2,
        1,
    )
    .unwrap();
    let f = fs()
        .open(&log_path(&v1, 0), online_backup::io::OpenMode::Read)
        .unwrap();
    let len = f.len().unwrap();
    let mut at = HEADER_SIZE;
    while let ReadOutcome::Entry(entry, next) = read_entry(&*f, at, len).unwrap() {
        target.apply_committed(&entry).unwrap();
        at = next;
    }
    let got = target.status();
    assert_eq!(
        (
            got.last_committed_tx,
            got.digest,
            got.nodes,
            got.relationships
        ),
        (
            want.last_committed_tx,
            want.digest,
            want.nodes,
            want.relationships
        )
    );
    assert_eq!(target.scan_digest().unwrap(), want.digest);
}

// ST-1: a new store refuses a directory that holds anything.
#[test]
fn st_1_a_new_store_refuses_a_non_empty_directory() {
    let dir = scratch();
    std::fs::write(dir.path().join("stray"), b"x").unwrap();
    let err = Store::create(
        fs(),
        clock(),
        dir.path(),
        &StoreOptions::default(),
        FormatVersion::CURRENT,
        1,
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::NotEmpty(_)), "{err}");
    let store = create(&dir.path().join("fresh"));
    drop(store);
    let err = Store::create(
        fs(),
        clock(),
        &dir.path().join("fresh"),
        &StoreOptions::default(),
        FormatVersion::CURRENT,
        1,
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
}

// RC-5: a damaged header on a last log file that holds more than a header, or a header that does
// not continue the log before it, refuses to open instead of dropping transactions.
#[test]
fn rc_5_a_damaged_header_after_commits_refuses_to_open() {
    let dir = scratch();
    let opts = StoreOptions {
        log_rotation_threshold: 300,
        ..StoreOptions::default()
    };
    let mut store = Store::create(fs(), clock(), dir.path(), &opts, FormatVersion::V2, 1).unwrap();
    let meta0 = std::fs::read(dir.path().join("neostore.meta")).unwrap();
    for _ in 0..6 {
        store.commit(&[node(&["A"])]).unwrap();
    }
    drop(store);
    std::fs::write(dir.path().join("neostore.meta"), meta0).unwrap();
    let last = *list_log_versions(&*fs(), dir.path())
        .unwrap()
        .last()
        .unwrap();
    assert!(last >= 2);
    let path = log_path(dir.path(), last - 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[30] ^= 1; // inside prev_digest: the header checksum fails
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(open(dir.path()), Err(StoreError::Corrupt(_))));
    bytes[30] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    // A missing middle file is a gap, not a crashed rotation.
    std::fs::remove_file(log_path(dir.path(), 1)).unwrap();
    assert!(matches!(open(dir.path()), Err(StoreError::Corrupt(_))));
}

// RC-4: a missing record file refuses to open; it is never recreated empty.
#[test]
fn rc_4_a_missing_record_file_refuses_to_open() {
    let dir = scratch();
    let mut store = create(dir.path());
    store.commit(&[node(&[])]).unwrap();
    store.close().unwrap();
    std::fs::remove_file(dir.path().join(RecordKind::Rel.file_name())).unwrap();
    assert!(matches!(open(dir.path()), Err(StoreError::Corrupt(_))));
}

// LOG-1: log files are `neostore.transaction.db.<N>` with N in canonical decimal, listed in
// numeric (not name) order.
#[test]
fn log_1_log_files_are_listed_by_number() {
    let dir = scratch();
    for name in [
        "neostore.transaction.db.10",
        "neostore.transaction.db.9",
        "neostore.transaction.db.011",
        "neostore.transaction.db.+3",
        "neostore.transaction.db.x",
        "other",
    ] {
        std::fs::write(dir.path().join(name), b"").unwrap();
    }
    assert_eq!(list_log_versions(&*fs(), dir.path()).unwrap(), vec![9, 10]);
    assert_eq!(
        log_path(dir.path(), 12),
        dir.path().join("neostore.transaction.db.12")
    );
}

// ST-1: an interrupted creation (store files without metadata) is cleaned up and redone.
#[test]
fn st_1_an_interrupted_creation_is_started_over() {
    let dir = scratch();
    drop(create(dir.path()));
    std::fs::remove_file(dir.path().join("neostore.meta")).unwrap();
    std::fs::write(dir.path().join("neostore.meta.tmp"), b"half").unwrap();
    let store = create(dir.path());
    assert_eq!(store.status().last_committed_tx, 0);
}

// RET-13, RET-14, RET-3: pruning runs at each checkpoint, deletes the oldest files first
// leaving a gap-free suffix, and never deletes what a backup has pinned.
#[test]
fn ret_13_pruning_at_checkpoints_respects_pins() {
    use online_backup::retention::{Pins, RetentionPolicy};
    let dir = scratch();
    let pins = Pins::new();
    let opts = StoreOptions {
        log_rotation_threshold: 400,
        retention: RetentionPolicy::Files(1),
        pins: pins.clone(),
    };
    let mut store = Store::create(fs(), clock(), dir.path(), &opts, FormatVersion::V2, 1).unwrap();
    let now = clock().now_millis();
    let pin = pins.pin(1, now);
    for _ in 0..30 {
        store.commit(&[node(&["A"])]).unwrap();
    }
    let versions = list_log_versions(&*fs(), dir.path()).unwrap();
    assert_eq!(versions[0], 0, "the pinned tx 1 keeps log 0: {versions:?}");
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "{versions:?}"
    );
    drop(pin);
    store.checkpoint().unwrap();
    let versions = list_log_versions(&*fs(), dir.path()).unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let summary = store.log_summary().unwrap();
    assert_eq!(
        summary.oldest_logged_tx,
        store.describe_logs().unwrap()[0].prev_last_tx + 1
    );
    drop(store);
    let store = open(dir.path()).unwrap();
    assert_eq!(store.status().last_committed_tx, 30);
}

// PR-14, PR-15, LOG-2: a log reader positioned at any tx N + 1 of a rotated, partly pruned log
// reports the digest at N and then every later tx in order; one before the oldest kept file
// reports that the logs no longer hold it.
#[test]
fn pr_14_log_reader_finds_the_digest_at_n_and_the_txs_after() {
    use online_backup::retention::{Pins, RetentionPolicy};
    use online_backup::store::log::LogReader;
    let dir = scratch();
    let options = StoreOptions {
        log_rotation_threshold: 2048,
        retention: RetentionPolicy::Files(3),
        pins: Pins::new(),
    };
    let mut store = Store::create(
        fs(),
        clock(),
        dir.path(),
        &options,
        FormatVersion::CURRENT,
        7,
    )
    .unwrap();
    let mut digests = vec![store.status().digest];
    for _ in 0..120 {
        store.commit(&[node(&["L"])]).unwrap();
        digests.push(store.status().digest);
    }
    let last = store.status().last_committed_tx;
    let oldest = store.log_summary().unwrap().oldest_logged_tx;
    assert!(
        oldest > 1,
        "retention pruned nothing; the test needs pruned logs"
    );
    for from in oldest..=last + 1 {
        let start = LogReader::open(fs(), store.dir(), from)
            .unwrap()
            .unwrap_or_else(|| panic!("the logs hold tx {from}"));
        assert_eq!(
            start.digest_before,
            digests[(from - 1) as usize],
            "digest at {}",
            from - 1
        );
        let mut reader = start.reader;
        let mut expected = from;
        while let Some(entry) = reader.next(last).unwrap() {
            assert_eq!(entry.tx_id, expected);
            assert_eq!(entry.after.digest, digests[expected as usize]);
            expected += 1;
        }
        assert_eq!(expected, last + 1, "from {from}");
    }
    assert!(LogReader::open(fs(), store.dir(), oldest - 1)
        .unwrap()
        .is_none());
}

/// A filesystem that fails every write to files whose name contains `poisoned` once armed: a
/// record write failing after the log was synced (ENOSPC, EIO).
#[derive(Debug)]
struct FailingWrites {
    poisoned: &'static str,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug)]
struct FailingFile {
    inner: Box<dyn online_backup::io::FileHandle>,
    fails: bool,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl online_backup::io::FileHandle for FailingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        if self.fails && self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("no space left on device (injected)"));
        }
        self.inner.write_all_at(buf, offset)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.inner.sync()
    }
}

impl online_backup::io::Fs for FailingWrites {
    fn open(
        &self,
        path: &Path,
        mode: online_backup::io::OpenMode,
    ) -> std::io::Result<Box<dyn online_backup::io::FileHandle>> {
        let fails = path.to_string_lossy().contains(self.poisoned);
        Ok(Box::new(FailingFile {
            inner: fs().open(path, mode)?,
            fails,
            armed: self.armed.clone(),
        }))
    }
    fn metadata(&self, path: &Path) -> std::io::Result<Option<online_backup::io::Metadata>> {
        fs().metadata(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<online_backup::io::DirEntry>> {
        fs().read_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        fs().create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        fs().rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        fs().remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        fs().remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        fs().sync_dir(path)
    }
    fn lock_dir(&self, dir: &Path) -> std::io::Result<Box<dyn online_backup::io::LockGuard>> {
        fs().lock_dir(dir)
    }
    fn available_space(&self, path: &Path) -> std::io::Result<u64> {
        fs().available_space(path)
    }
}

// LOG-9: once a record write failed after the log was synced, the store is failed and writes
// no checkpoint, not even the one a full backup asks for; a reopen recovers the logged
// transaction from the log. Before, `checkpoint()` recorded a log offset past that transaction,
// and recovery never replayed it.
#[test]
fn log_9_a_failed_store_writes_no_checkpoint() {
    let dir = scratch();
    let path = dir.path().join("db");
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failing: std::sync::Arc<dyn online_backup::io::Fs> = std::sync::Arc::new(FailingWrites {
        poisoned: "nodestore",
        armed: armed.clone(),
    });
    let mut store = Store::create(
        failing,
        clock(),
        &path,
        &StoreOptions::default(),
        FormatVersion::CURRENT,
        1,
    )
    .unwrap();
    store.commit(&[node(&["A"])]).unwrap();
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = store.commit(&[node(&["B"])]).unwrap_err();
    assert!(!matches!(err, StoreError::Failed(_)), "{err}");
    let before = Meta::read(&*fs(), &path).unwrap();
    let refused = store.checkpoint();
    assert!(
        matches!(refused, Err(StoreError::Failed(_))),
        "LOG-9: a failed store must refuse a checkpoint, got {refused:?}"
    );
    assert_eq!(
        Meta::read(&*fs(), &path).unwrap().checkpoint.last_tx,
        before.checkpoint.last_tx,
        "LOG-9: the checkpoint moved"
    );
    drop(store);
    armed.store(false, std::sync::atomic::Ordering::SeqCst);
    // The logged transaction is recovered from the log, whole.
    let reopened = open(&path).unwrap();
    assert_eq!(reopened.status().last_committed_tx, 2, "LOG-9");
    assert_eq!(reopened.status().nodes, 2, "LOG-9");
    drop(reopened);
    let report = check(fs(), clock(), &path).unwrap();
    assert!(report.consistent, "LOG-9: {:?}", report.findings);
}

/// The real filesystem, except that removing a file whose path contains `refused` fails while
/// `armed`; every removal that succeeds is recorded, in order.
#[derive(Debug)]
struct FailingRemovals {
    refused: &'static str,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    removed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl online_backup::io::Fs for FailingRemovals {
    fn open(
        &self,
        path: &Path,
        mode: online_backup::io::OpenMode,
    ) -> std::io::Result<Box<dyn online_backup::io::FileHandle>> {
        fs().open(path, mode)
    }
    fn metadata(&self, path: &Path) -> std::io::Result<Option<online_backup::io::Metadata>> {
        fs().metadata(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<online_backup::io::DirEntry>> {
        fs().read_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        fs().create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        fs().rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(self.refused) && self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("permission denied (injected)"));
        }
        fs().remove_file(path)?;
        self.removed.lock().unwrap().push(name);
        Ok(())
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        fs().remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        fs().sync_dir(path)
    }
    fn lock_dir(&self, dir: &Path) -> std::io::Result<Box<dyn online_backup::io::LockGuard>> {
        fs().lock_dir(dir)
    }
    fn available_space(&self, path: &Path) -> std::io::Result<u64> {
        fs().available_space(path)
    }
}

// RET-14: pruning deletes the oldest files first; a deletion that fails ends the pruning there,
// so no newer file goes and the logs stay a gap-free suffix; the store goes on committing, and
// the next pruning tries again.
#[test]
fn ret_14_a_failed_deletion_ends_the_pruning_without_a_gap() {
    use online_backup::retention::{Pins, RetentionPolicy};
    let dir = scratch();
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let removed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let failing: std::sync::Arc<dyn online_backup::io::Fs> = std::sync::Arc::new(FailingRemovals {
        refused: ".db.2",
        armed: armed.clone(),
        removed: removed.clone(),
    });
    let opts = StoreOptions {
        log_rotation_threshold: 400,
        retention: RetentionPolicy::Files(1),
        pins: Pins::new(),
    };
    let mut store =
        Store::create(failing, clock(), dir.path(), &opts, FormatVersion::V2, 1).unwrap();
    for i in 0..30 {
        assert!(
            store.commit(&[node(&["A"])]).is_ok(),
            "RET-14: a failed deletion does not stop the store (commit {i})"
        );
    }
    let versions = list_log_versions(&*fs(), dir.path()).unwrap();
    assert_eq!(
        versions[0], 2,
        "RET-14: logs 0 and 1 went, log 2 could not: {versions:?}"
    );
    assert!(
        versions.len() > 3 && versions.windows(2).all(|w| w[1] == w[0] + 1),
        "RET-14: nothing newer than the file that could not go was deleted: {versions:?}"
    );
    armed.store(false, std::sync::atomic::Ordering::SeqCst);
    store.checkpoint().unwrap();
    let after = list_log_versions(&*fs(), dir.path()).unwrap();
    assert_eq!(
        after.len(),
        1,
        "RET-14: the next pruning tries again: {after:?}"
    );
    let removed = removed.lock().unwrap().clone();
    let order: Vec<u64> = removed
        .iter()
        .filter_map(|n| n.strip_prefix("neostore.transaction.db.")?.parse().ok())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]) && order.len() == versions.len() + 1,
        "RET-14: oldest first: {removed:?}"
    );
    drop(store);
    assert_eq!(open(dir.path()).unwrap().status().last_committed_tx, 30);
}

// ST-4: formats 1 and 2 are supported, 2 the current one; a store of either runs as it is, and
// any other format version in the metadata makes opening fail, naming it and the supported ones.
#[test]
fn st_4_two_formats_are_supported_and_no_other() {
    assert_eq!(
        (FormatVersion::SUPPORTED, FormatVersion::CURRENT),
        ([FormatVersion::V1, FormatVersion::V2], FormatVersion::V2),
        "ST-4"
    );
    for format in FormatVersion::SUPPORTED {
        let dir = scratch();
        let mut store = Store::create(
            fs(),
            clock(),
            dir.path(),
            &StoreOptions::default(),
            format,
            1,
        )
        .unwrap();
        store.commit(&[node(&["A"]), node(&["B"])]).unwrap();
        drop(store);
        let store = open(dir.path()).unwrap();
        assert_eq!(
            (store.meta().format, store.status().nodes),
            (format, 2),
            "ST-4: a store of format {format:?} opens as it is"
        );
        drop(store);
        // The same store claiming format 3 (with its CRC made to match): unsupported.
        let meta = dir.path().join("neostore.meta");
        let mut bytes = std::fs::read(&meta).unwrap();
        bytes[12..16].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..132]);
        bytes[132..136].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&meta, bytes).unwrap();
        let err = open(dir.path()).map(|_| ()).unwrap_err();
        assert!(
            err.to_string()
                .contains("format version 3 is not supported (supported: 1, 2)"),
            "ST-4: {err}"
        );
    }
}

// LOG-5: the body of a transaction entry, byte for byte: kind, tx id, timestamp, the absolute
// state after the transaction, the image count, then one image of each kind in its layout; and
// every malformed body the rule lists is refused.
#[test]
fn log_5_the_entry_body_byte_for_byte() {
    use online_backup::digest::Digest;
    use online_backup::store::format::{BlockRecord, NodeRecord, RelRecord};
    use online_backup::store::log::{RecordImage, TxEntry, TxState};
    let entry = TxEntry {
        tx_id: 0x0102,
        timestamp_millis: 0x0304,
        after: TxState {
            digest: Digest([0xAB; 32]),
            nodes: 5,
            relationships: 6,
            next_node: 7,
            next_rel: 8,
            next_block: 9,
        },
        records: vec![
            RecordImage::Node(
                1,
                NodeRecord {
                    in_use: true,
                    first_rel: 2,
                    payload_block: 3,
                    payload_len: 4,
                },
            ),
            RecordImage::Rel(
                10,
                RelRecord {
                    in_use: false,
                    start: 11,
                    end: 12,
                    start_prev: 13,
                    start_next: 14,
                    end_prev: 15,
                    end_next: 16,
                    payload_block: 17,
                    payload_len: 18,
                },
            ),
            RecordImage::Block(
                20,
                BlockRecord {
                    in_use: true,
                    next: 21,
                    data: b"abc".to_vec(),
                },
            ),
        ],
    };
    let framed = entry.encode_framed();
    let body = &framed[8..];
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap());
    assert_eq!(
        body.len(),
        93 + 30 + 70 + (20 + 3),
        "LOG-5: the body's length"
    );
    assert_eq!(body[0], 1, "LOG-5: kind 1, a transaction");
    assert_eq!(
        [1, 9, 49, 57, 65, 73, 81].map(u64_at),
        [0x0102, 0x0304, 5, 6, 7, 8, 9],
        "LOG-5: tx id, timestamp, nodes, relationships and the three marks at their offsets"
    );
    assert_eq!(&body[17..49], &[0xAB; 32], "LOG-5: the digest at 17");
    assert_eq!(u32_at(89), 3, "LOG-5: the image count at 89");
    let node = &body[93..123];
    assert_eq!(
        (
            node[0],
            u64::from_le_bytes(node[1..9].try_into().unwrap()),
            node[9]
        ),
        (1, 1, 1),
        "LOG-5: a node image: tag 1, id, in use"
    );
    assert_eq!(
        [10, 18].map(|at| u64_at(93 + at)),
        [2, 3],
        "LOG-5: the node's first_rel and payload_block"
    );
    assert_eq!(u32_at(93 + 26), 4, "LOG-5: the node's payload_len");
    let rel = 123;
    assert_eq!(
        (body[rel], u64_at(rel + 1), body[rel + 9]),
        (2, 10, 0),
        "LOG-5: a relationship image: tag 2, id, not in use"
    );
    assert_eq!(
        (0..7).map(|i| u64_at(rel + 10 + 8 * i)).collect::<Vec<_>>(),
        [11, 12, 13, 14, 15, 16, 17],
        "LOG-5: start, end, the four chain links and payload_block, in order"
    );
    assert_eq!(
        u32_at(rel + 66),
        18,
        "LOG-5: the relationship's payload_len"
    );
    let block = rel + 70;
    assert_eq!(
        (
            body[block],
            u64_at(block + 1),
            body[block + 9],
            u64_at(block + 10)
        ),
        (3, 20, 1, 21),
        "LOG-5: a block image: tag 3, id, in use, next"
    );
    assert_eq!(
        (
            u16::from_le_bytes(body[block + 18..block + 20].try_into().unwrap()),
            &body[block + 20..]
        ),
        (3, &b"abc"[..]),
        "LOG-5: the block's data_len and data"
    );
    assert_eq!(
        TxEntry::decode_body(body),
        Ok(entry),
        "LOG-5: it decodes back"
    );

    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = body.to_vec();
        f(&mut b);
        b
    };
    let malformed = [
        ("kind 2", edit(&|b| b[0] = 2)),
        ("image tag 4", edit(&|b| b[93] = 4)),
        ("in-use byte 2", edit(&|b| b[93 + 9] = 2)),
        (
            "data_len 121",
            edit(&|b| {
                b.truncate(block + 18);
                b.extend_from_slice(&121u16.to_le_bytes());
                b.extend_from_slice(&[0; 121]);
            }),
        ),
        ("a field past the end", edit(&|b| b.truncate(b.len() - 1))),
        ("bytes after the last image", edit(&|b| b.push(0))),
    ];
    for (what, bytes) in malformed {
        assert!(
            TxEntry::decode_body(&bytes).is_err(),
            "LOG-5: a body with {what} is refused"
        );
    }
}

// LOG-7: reading the entry at offset `o` of a file of length `L` has exactly the outcomes of the
// table, tested in its order.
#[test]
fn log_7_every_outcome_of_reading_an_entry() {
    use online_backup::io::OpenMode;
    use online_backup::store::log::{read_entry, ReadOutcome, MAX_ENTRY};
    let dir = scratch();
    let mut store = create(dir.path());
    store.commit(&[node(&["A"])]).unwrap();
    drop(store);
    // The whole entry of tx 1, as the log holds it after the 64-byte header.
    let whole = std::fs::read(log_path(dir.path(), 0)).unwrap()[64..].to_vec();
    let len = u32::from_le_bytes(whole[..4].try_into().unwrap()) as usize;
    assert_eq!(whole.len(), 8 + len);
    let frame = |len: u32, body: &[u8]| {
        let mut b = len.to_le_bytes().to_vec();
        b.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        b.extend_from_slice(body);
        b
    };
    let mut bad_crc = whole.clone();
    bad_crc[8] ^= 1;
    let mut malformed_body = whole[8..].to_vec();
    malformed_body[0] = 9;
    let mut huge = (MAX_ENTRY + 1).to_le_bytes().to_vec();
    huge.extend_from_slice(&[1, 2, 3, 4]);
    let cases: [(&str, Vec<u8>, Option<&str>); 8] = [
        ("o = L", vec![], None),
        (
            "fewer than 8 bytes",
            whole[..7].to_vec(),
            Some("partial entry frame"),
        ),
        ("len = 0 and crc = 0", vec![0; 40], Some("zero-filled tail")),
        ("len over 64 MiB", huge, Some("entry length out of range")),
        (
            "fewer than len bytes",
            whole[..whole.len() - 1].to_vec(),
            Some("partial entry body"),
        ),
        ("a wrong CRC", bad_crc, Some("entry checksum mismatch")),
        (
            "a body that does not decode",
            frame(len as u32, &malformed_body),
            Some("entry body malformed"),
        ),
        ("a whole entry", whole.clone(), Some("")),
    ];
    for (what, bytes, want) in cases {
        let path = dir.path().join("read-test");
        std::fs::write(&path, &bytes).unwrap();
        let file = fs().open(&path, OpenMode::Read).unwrap();
        let got = read_entry(&*file, 0, bytes.len() as u64).unwrap();
        match (want, got) {
            (None, ReadOutcome::End) => {}
            (Some(""), ReadOutcome::Entry(entry, next)) => {
                assert_eq!(
                    (entry.tx_id, next),
                    (1, 8 + len as u64),
                    "LOG-7: {what}: the next entry starts at o + 8 + len"
                );
            }
            (Some(reason), ReadOutcome::Torn(got)) => {
                assert_eq!(got, reason, "LOG-7: {what}")
            }
            (want, got) => panic!("LOG-7: {what}: wanted {want:?}, got {got:?}"),
        }
    }
    // The order of the table: seven zero bytes are a partial frame, not a zero-filled tail, and
    // an absurd length is out of range before any body is looked for.
    for (bytes, reason) in [
        (vec![0u8; 7], "partial entry frame"),
        (
            (MAX_ENTRY + 1)
                .to_le_bytes()
                .iter()
                .chain(&[0; 4])
                .copied()
                .collect(),
            "entry length out of range",
        ),
    ] {
        let path = dir.path().join("order-test");
        std::fs::write(&path, &bytes).unwrap();
        let file = fs().open(&path, OpenMode::Read).unwrap();
        let got = read_entry(&*file, 0, bytes.len() as u64).unwrap();
        assert!(
            matches!(got, ReadOutcome::Torn(r) if r == reason),
            "LOG-7: tested in the table's order: wanted {reason}, got {got:?}"
        );
    }
}

// ST-11: the store id is the creation millis from the clock and the random part the creator
// passed; its display form is 12 (or more) and 16 lower-case hex digits around a hyphen, and
// parses back; checkpoints, reopening and upgrade keep it.
#[test]
fn st_11_the_store_id_is_made_once_and_kept() {
    use online_backup::store::meta::StoreId;
    let example = StoreId {
        created_millis: 0x01a2_14d1_f574,
        random: 0xef2d_eb93_0330_68c7,
    };
    assert_eq!(
        example.to_string(),
        "01a214d1f574-ef2deb93033068c7",
        "ST-11: the display form"
    );
    let early = StoreId {
        created_millis: 5,
        random: 1,
    };
    assert_eq!(
        early.to_string(),
        "000000000005-0000000000000001",
        "ST-11: at least 12 and exactly 16 hex digits"
    );
    for id in [example, early] {
        assert_eq!(
            StoreId::parse(&id.to_string()),
            Some(id),
            "ST-11: the display form parses back"
        );
    }
    let dir = scratch();
    let before = clock().now_millis();
    let mut store = Store::create(
        fs(),
        clock(),
        dir.path(),
        &StoreOptions::default(),
        FormatVersion::V1,
        0xfeed,
    )
    .unwrap();
    let after = clock().now_millis();
    let id = store.meta().store_id;
    assert!(
        id.random == 0xfeed && (before..=after).contains(&id.created_millis),
        "ST-11: the creation millis from the clock and the creator's random part: {id}"
    );
    store.commit(&[node(&["A"])]).unwrap();
    store.checkpoint().unwrap();
    drop(store);
    assert_eq!(
        open(dir.path()).unwrap().meta().store_id,
        id,
        "ST-11: a checkpoint and a reopening keep it"
    );
    upgrade(fs(), clock(), dir.path()).unwrap();
    assert_eq!(
        open(dir.path()).unwrap().meta().store_id,
        id,
        "ST-11: an upgrade keeps it"
    );
}
