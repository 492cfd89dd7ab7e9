//! Records and the store directory: commits, refusals, ids, values, formats, the store id, what a store directory is, and record file lengths (ST-).

use super::*;

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

// ST-14: only a path that is not there reads as missing: one whose metadata cannot be read
// (an I/O error) is that error, and a directory removed between the look at it and its lock is
// missing, while any other failure to lock it is an I/O error.
#[test]
fn st_14_only_a_path_that_is_not_there_is_missing() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use support::faulty::{Faulty, Files};
    let dir = scratch();
    let store_dir = dir.path().join("store");
    drop(create(&store_dir));
    let open_with = |faulty: Faulty| {
        let faulty = Faulty {
            armed: Arc::new(AtomicBool::new(true)),
            ..faulty
        };
        Store::open(
            Arc::new(faulty),
            clock(),
            &store_dir,
            &StoreOptions::default(),
        )
        .map(|_| ())
    };
    let cases = [
        (
            "its metadata unreadable",
            Faulty {
                fail_metadata: Some((Files::named("store"), libc::EIO)),
                ..Default::default()
            },
            "reading",
        ),
        (
            "its lock failing",
            Faulty {
                fail_locks: Some(libc::EIO),
                ..Default::default()
            },
            "locking",
        ),
    ];
    for (case, faulty, context_says) in cases {
        match open_with(faulty) {
            Err(StoreError::Io { context, .. }) => {
                assert!(context.contains(context_says), "ST-14: {case}: {context}")
            }
            other => panic!("ST-14: a store directory with {case} is an I/O error, not {other:?}"),
        }
    }
    match open_with(Faulty {
        fail_locks: Some(libc::ENOENT),
        ..Default::default()
    }) {
        Err(StoreError::Missing(_)) => {}
        other => panic!("ST-14: a directory removed before its lock is missing, not {other:?}"),
    }
    open_with(Faulty::default()).expect("ST-14: the store opens without faults");
}

/// The length of each record file of the store in `dir` and the length its checkpoint's
/// high-water marks give (ST-15), in the order node, relationship, block.
pub fn record_lengths(dir: &Path) -> Vec<(u64, u64)> {
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

pub fn assert_exact_lengths(dir: &Path, when: &str) {
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

// ST-1: an interrupted creation (store files without metadata) is cleaned up and redone.
#[test]
fn st_1_an_interrupted_creation_is_started_over() {
    let dir = scratch();
    drop(create(dir.path()));
    std::fs::remove_file(dir.path().join("neostore.meta")).unwrap();
    std::fs::write(dir.path().join("neostore.meta.tmp"), b"half").unwrap();
    std::fs::write(dir.path().join("neostore.transaction.db.3"), b"stale").unwrap();
    let mut store = create(dir.path());
    assert_eq!(store.status().last_committed_tx, 0);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".tmp") || n.ends_with(".db.3")),
        "ST-1: what the interrupted creation left is removed: {names:?}"
    );
    store.commit(&[node(&["A"])]).unwrap();
    drop(store);
    assert_eq!(
        open(dir.path()).unwrap().status().last_committed_tx,
        1,
        "ST-1"
    );
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
