//! The logical log: files, rotation, entries byte for byte, reading them back, shipping them across formats (LOG-, PR-14).

use super::*;

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

// LOG-4: a transaction whose entry would exceed 16 MiB is refused before anything is written.
#[test]
fn log_4_oversized_transaction_is_refused() {
    use online_backup::store::log::{FRAME_SIZE, MAX_ENTRY};
    let dir = scratch();
    let mut store = create(dir.path());
    let big = "x".repeat((1 << 20) - 8);
    let ops: Vec<Op> = (0..17)
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

    // At the bound, to the byte: a transaction whose strings make an entry body of MAX_ENTRY + 1
    // bytes is refused, and the refusal says so; one byte shorter commits, its entry exactly
    // MAX_ENTRY bytes. The last string's length is found from the sizes the refusals report,
    // from above, so nothing commits on the way.
    let one_node = |len: usize| {
        let string = |len: usize| Op::CreateNode {
            labels: vec![],
            props: props(&[("k", Value::String("x".repeat(len)))]),
        };
        // 13 strings of the most a string may hold (1 MiB) and one of `len` bytes.
        let mut ops: Vec<Op> = (0..13).map(|_| string(1 << 20)).collect();
        ops.push(string(len));
        ops
    };
    let mut len = 1 << 20;
    let found = loop {
        let refused = match store.commit(&one_node(len)) {
            Err(StoreError::Rejected(TxRejection::TooLarge(n))) => n as u64,
            other => panic!("LOG-4: a string of {len} bytes, above the bound: {other:?}"),
        };
        let excess = refused - MAX_ENTRY as u64;
        assert!(excess > 0, "LOG-4: refused at {refused} bytes");
        if excess == 1 {
            break len;
        }
        // A byte of string adds one byte to the body, 21 where it starts another 120-byte
        // block: step down so that the body stays above the bound.
        len -= if excess > 200 {
            ((excess - 22) * 120 / 141) as usize
        } else if excess > 21 {
            (excess - 21) as usize
        } else {
            1
        };
    };
    store
        .commit(&one_node(found - 1))
        .expect("LOG-4: an entry of exactly MAX_ENTRY bytes commits");
    drop(store);
    let at_the_bound = logged_entries(dir.path()).pop().unwrap();
    assert_eq!(
        at_the_bound.encode_framed().len() as u64 - FRAME_SIZE,
        MAX_ENTRY as u64,
        "LOG-4: the entry one byte below the refused one"
    );
}

// LOG-4: a transaction that writes more record images than an entry may carry is refused as
// well, so that a decoder's image bound never refuses what a server committed.
#[test]
fn log_4_transaction_with_too_many_records_is_refused() {
    use online_backup::store::log::MAX_IMAGES;
    let dir = scratch();
    let mut store = create(dir.path());
    // A node with no labels and no properties writes its record and one payload block.
    let ops: Vec<Op> = (0..MAX_IMAGES / 2 + 1).map(|_| node(&[])).collect();
    let log_before = std::fs::metadata(log_path(dir.path(), 0)).unwrap().len();
    let err = store.commit(&ops).unwrap_err();
    assert!(
        matches!(err, StoreError::Rejected(TxRejection::TooManyRecords(_))),
        "LOG-4: {err}"
    );
    assert_eq!(
        std::fs::metadata(log_path(dir.path(), 0)).unwrap().len(),
        log_before,
        "LOG-4: nothing is written for a refused transaction"
    );
    // Exactly at the bound: it commits, and its entry carries exactly MAX_IMAGES images.
    let fits: Vec<Op> = (0..MAX_IMAGES / 2).map(|_| node(&[])).collect();
    store
        .commit(&fits)
        .expect("LOG-4: a transaction of exactly MAX_IMAGES images commits");
    drop(store);
    let entries = logged_entries(dir.path());
    assert_eq!(
        entries.last().map(|e| e.records.len()),
        Some(MAX_IMAGES as usize),
        "LOG-4: the entry at the bound"
    );
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

/// The entries a store's log holds, in order.
fn logged_entries(dir: &std::path::Path) -> Vec<online_backup::store::log::TxEntry> {
    use online_backup::store::log::{read_entry, ReadOutcome, HEADER_SIZE};
    let f = fs()
        .open(&log_path(dir, 0), online_backup::io::OpenMode::Read)
        .unwrap();
    let len = f.len().unwrap();
    let (mut at, mut out) = (HEADER_SIZE, vec![]);
    while let ReadOutcome::Entry(entry, next) = read_entry(&*f, at, len).unwrap() {
        out.push(*entry);
        at = next;
    }
    out
}

// LOG-10: shipped entries whose ids or high-water marks do not follow the state before them are
// refused, the whole run, before anything is written; the entries a store really wrote follow.
#[test]
fn log_10_entries_out_of_bounds_are_refused_before_writing() {
    use online_backup::store::log::RecordImage;
    let dir = scratch();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut source = create(&src);
    source.commit(&[node(&["A"]), node(&["B"])]).unwrap();
    source
        .commit(&[rel(NodeRef::Id(0), NodeRef::Id(1)), node(&[])])
        .unwrap();
    drop(source);
    let entries = logged_entries(&src);
    assert_eq!(entries.len(), 2);
    type Forge = fn(&mut online_backup::store::log::TxEntry);
    let forgeries: [(&str, Forge); 4] = [
        ("an id at its mark", |e| {
            let mark = e.after.next_node;
            if let Some(RecordImage::Node(id, _)) = e.records.first_mut() {
                *id = mark;
            }
        }),
        ("a mark grown past the images", |e| e.after.next_block += 1),
        ("a mark gone down", |e| {
            e.after.next_node = 1;
            e.records
                .retain(|r| !matches!(r, RecordImage::Node(id, _) if *id >= 1));
        }),
        ("an image dropped under a grown mark", |e| {
            e.records.retain(|r| !matches!(r, RecordImage::Node(..)));
        }),
    ];
    for (what, forge) in forgeries {
        let _ = std::fs::remove_dir_all(&dst);
        let mut target = create(&dst);
        let log_before = std::fs::metadata(log_path(&dst, 0)).unwrap().len();
        let mut run = entries.clone();
        forge(&mut run[1]);
        let err = target.apply_committed_batch(&run).unwrap_err();
        assert!(
            err.to_string().contains("cannot be applied"),
            "LOG-10: {what}: {err}"
        );
        assert_eq!(
            std::fs::metadata(log_path(&dst, 0)).unwrap().len(),
            log_before,
            "LOG-10: {what}: nothing of the run is written"
        );
        assert_eq!(target.status().last_committed_tx, 0, "LOG-10: {what}");
    }
    let _ = std::fs::remove_dir_all(&dst);
    let mut target = create(&dst);
    target
        .apply_committed_batch(&entries)
        .expect("LOG-10: the entries a store wrote follow each other");
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

/// A new store whose log rotates every 2 KiB (a few small transactions a file), keeping what
/// `keep` says.
fn rotating_store(dir: &std::path::Path, keep: online_backup::retention::RetentionPolicy) -> Store {
    let options = StoreOptions {
        log_rotation_threshold: 2048,
        retention: keep,
        pins: online_backup::retention::Pins::new(),
    };
    Store::create(fs(), clock(), dir, &options, FormatVersion::CURRENT, 7).unwrap()
}

// PR-14, PR-15, LOG-2: a log reader positioned at any tx N + 1 of a rotated, partly pruned log
// reports the digest at N and then every later tx in order; one before the oldest kept file
// reports that the logs no longer hold it.
#[test]
fn pr_14_log_reader_finds_the_digest_at_n_and_the_txs_after() {
    use online_backup::retention::RetentionPolicy;
    use online_backup::store::log::LogReader;
    let dir = scratch();
    let mut store = rotating_store(dir.path(), RetentionPolicy::Files(3));
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

// PR-14: a log file pruned between the reader's listing and its opening (the open finds it
// missing) means the logs no longer hold the tx asked for: `None`, which the service answers
// with code 4 and the client with a full backup. Any other failure to open it (out of
// descriptors) is an error, never taken for pruned logs.
#[test]
fn pr_14_a_log_file_pruned_under_the_reader_reads_as_pruned_other_open_errors_fail() {
    use online_backup::retention::RetentionPolicy;
    use online_backup::store::log::LogReader;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use support::faulty::{Faulty, Files};
    let dir = scratch();
    let mut store = rotating_store(dir.path(), RetentionPolicy::Files(100));
    for _ in 0..60 {
        store.commit(&[node(&["L"])]).unwrap();
    }
    let versions = list_log_versions(&*fs(), dir.path()).unwrap();
    assert!(
        versions.len() >= 3 && versions.len() < 10,
        "the test needs a few log files, not {versions:?}"
    );
    let in_file_0 = 2;
    let opening_file_0_fails = |errno| -> Arc<dyn online_backup::io::Fs> {
        Arc::new(Faulty {
            armed: Arc::new(AtomicBool::new(true)),
            fail_opens: Some((Files::named("transaction.db.0"), errno)),
            ..Default::default()
        })
    };
    assert!(
        LogReader::open(fs(), store.dir(), in_file_0)
            .unwrap()
            .is_some(),
        "PR-14: the logs hold tx {in_file_0}"
    );
    match LogReader::open(opening_file_0_fails(libc::ENOENT), store.dir(), in_file_0) {
        Ok(None) => {}
        Ok(Some(_)) => panic!("PR-14: a reader started without the file that holds its tx"),
        Err(e) => panic!("PR-14: a file pruned under the reader is pruned logs, not: {e}"),
    }
    match LogReader::open(opening_file_0_fails(libc::EMFILE), store.dir(), in_file_0) {
        Err(e) => assert!(
            e.to_string().contains("opening"),
            "PR-14: the error names what failed: {e}"
        ),
        Ok(found) => panic!(
            "PR-14: out of descriptors was taken for {}",
            if found.is_some() {
                "a reader"
            } else {
                "pruned logs"
            }
        ),
    }
    // The newest files still open: a tx in them is found whatever happened to file 0.
    let last = store.status().last_committed_tx;
    assert!(
        LogReader::open(opening_file_0_fails(libc::EMFILE), store.dir(), last)
            .unwrap()
            .is_some(),
        "PR-14: the reader opens only the files it needs"
    );
}

// PR-20: a log reader follows its file as the store appends to it (the service streams while
// the server commits): a tx committed after the reader read the file's length is read from the
// same file, not looked for in the next one.
#[test]
fn pr_20_a_log_reader_reads_what_was_appended_after_it_opened() {
    use online_backup::store::log::LogReader;
    let dir = scratch();
    let mut store = create(dir.path());
    store.commit(&[node(&["L"])]).unwrap();
    let mut reader = LogReader::open(fs(), store.dir(), 1)
        .unwrap()
        .unwrap()
        .reader;
    assert_eq!(reader.next(1).unwrap().map(|e| e.tx_id), Some(1));
    assert!(
        reader.next(1).unwrap().is_none(),
        "PR-20: nothing past upto"
    );
    let mut digests = Vec::new();
    for _ in 0..5 {
        store.commit(&[node(&["M"])]).unwrap();
        digests.push(store.status().digest);
    }
    assert_eq!(
        list_log_versions(&*fs(), dir.path()).unwrap(),
        vec![0],
        "the test needs one log file"
    );
    for (tx, digest) in (2..=6).zip(digests) {
        let entry = reader
            .next(6)
            .unwrap_or_else(|e| panic!("PR-20: tx {tx} appended after the reader opened: {e}"))
            .unwrap_or_else(|| panic!("PR-20: tx {tx} appended after the reader opened"));
        assert_eq!((entry.tx_id, entry.after.digest), (tx, digest), "PR-20");
    }
}

// PR-20, LOG-2: a log reader crossing into the next file takes only the file that continues
// its own: the next version, whose header starts right after the reader's last tx. A missing
// next file or one that continues another history is damage ("tx N is in no log file"); a
// next file that cannot be opened for another reason is that I/O error, not damage.
#[test]
fn pr_20_a_log_reader_crosses_only_into_the_file_that_continues_its_log() {
    use online_backup::store::log::LogReader;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use support::faulty::{Faulty, Files};
    let make = |txs: usize, label: &str| {
        let dir = scratch();
        let mut store = rotating_store(
            dir.path(),
            online_backup::retention::RetentionPolicy::Files(100),
        );
        for _ in 0..txs {
            store.commit(&[node(&[label])]).unwrap();
        }
        (dir, store)
    };
    let (dir, store) = make(40, "L");
    let last = store.status().last_committed_tx;
    let versions = list_log_versions(&*fs(), dir.path()).unwrap();
    assert!(
        versions.len() >= 3 && versions.len() < 10,
        "the test needs a few log files, not {versions:?}"
    );
    // Reads every tx from 1 with `fs`, armed once the reader is open; the error it stops at.
    let read_all = |fs: Arc<dyn online_backup::io::Fs>, armed: &AtomicBool| {
        let mut reader = LogReader::open(fs, dir.path(), 1).unwrap().unwrap().reader;
        armed.store(true, Ordering::SeqCst);
        let mut next = 1;
        loop {
            match reader.next(last) {
                Ok(Some(entry)) => {
                    assert_eq!(entry.tx_id, next, "PR-20");
                    next += 1;
                }
                Ok(None) => return Ok(next - 1),
                Err(e) => return Err(e),
            }
        }
    };
    let opening_file_1_fails = |errno| {
        let armed = Arc::new(AtomicBool::new(false));
        let faulty = Faulty {
            armed: armed.clone(),
            fail_opens: Some((Files::named("transaction.db.1"), errno)),
            ..Default::default()
        };
        read_all(Arc::new(faulty), &armed)
    };
    assert_eq!(
        read_all(fs(), &AtomicBool::new(false)).unwrap(),
        last,
        "PR-20"
    );
    match opening_file_1_fails(libc::ENOENT) {
        Err(StoreError::Corrupt(why)) => assert!(
            why.contains("is in no log file"),
            "PR-20: a missing next file: {why}"
        ),
        other => panic!("PR-20: a missing next file is damage, not {other:?}"),
    }
    match opening_file_1_fails(libc::EMFILE) {
        Err(StoreError::Io { context, .. }) => assert!(
            context.contains("opening"),
            "PR-20: out of descriptors: {context}"
        ),
        other => panic!("PR-20: out of descriptors is an I/O error, not {other:?}"),
    }
    // File 1 of another history (a store with larger transactions, whose file 1 starts after
    // another tx), and file 2 of this store, in the place of its file 1.
    let (other, _other_store) = make(40, "A much longer label than L");
    let file_1 = log_path(dir.path(), 1);
    let ours = std::fs::read(&file_1).unwrap();
    let theirs = std::fs::read(log_path(other.path(), 1)).unwrap();
    assert_ne!(
        ours[..64],
        theirs[..64],
        "the other store's file 1 starts after another tx"
    );
    let our_second = std::fs::read(log_path(dir.path(), 2)).unwrap();
    for (case, replacement) in [("another history", theirs), ("log file 2", our_second)] {
        std::fs::write(&file_1, &replacement).unwrap();
        match read_all(fs(), &AtomicBool::new(false)) {
            Err(StoreError::Corrupt(why)) => assert!(
                why.contains("is in no log file"),
                "PR-20, LOG-2: {case} in the place of file 1: {why}"
            ),
            other => panic!("PR-20, LOG-2: {case} in the place of file 1 was read: {other:?}"),
        }
    }
    std::fs::write(&file_1, ours).unwrap();
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
    // A length of exactly MAX_ENTRY is in range (LOG-4): its body is read and judged.
    let mut body = vec![0u8; MAX_ENTRY as usize];
    body[0] = 9;
    let bytes = frame(MAX_ENTRY, &body);
    let path = dir.path().join("largest-test");
    std::fs::write(&path, &bytes).unwrap();
    let file = fs().open(&path, OpenMode::Read).unwrap();
    let got = read_entry(&*file, 0, bytes.len() as u64).unwrap();
    assert!(
        matches!(got, ReadOutcome::Torn("entry body malformed")),
        "LOG-4, LOG-7: a body of exactly {MAX_ENTRY} bytes is read, not refused for its length: {got:?}"
    );
}

// LOG-11: a rotation that fails for a shortage that can pass (no descriptor for the new file,
// no space to sync the directory) leaves the store committing into the active file, and is
// done after the first commit once the shortage passed. A new file it created is emptied and
// removed, or at least emptied when it cannot be removed, so that a crash then reopens cleanly
// (RC-5) with every commit. Any other failure still stops the store (LOG-9). Before, every
// failed rotation stopped the store until a restart.
#[test]
fn log_11_a_passing_shortage_defers_rotation() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use support::faulty::{Faulty, Files};
    let opts = StoreOptions {
        log_rotation_threshold: 1024,
        ..StoreOptions::default()
    };
    // A store on `faulty`, its faults not armed yet, and the switch that arms them.
    let create_disarmed = |faulty: Faulty, dir: &std::path::Path, opts: &StoreOptions| {
        let armed = Arc::new(AtomicBool::new(false));
        let faulty = Faulty {
            armed: armed.clone(),
            ..faulty
        };
        let store = Store::create(
            Arc::new(faulty),
            clock(),
            dir,
            opts,
            FormatVersion::CURRENT,
            1,
        )
        .unwrap();
        (store, armed)
    };
    let commit = |store: &mut Store, i: i64| {
        store.commit(&[Op::CreateNode {
            labels: vec![],
            props: props(&[("pad", Value::String(format!("{i}{}", "p".repeat(600))))]),
        }])
    };
    // The shortage: no descriptor for the new file, no space to sync the directory, the
    // latter with the stale file's removal refused as well.
    let shortages = [
        Faulty {
            fail_opens: Some((Files::named(".db.1"), libc::EMFILE)),
            ..Default::default()
        },
        Faulty {
            fail_dir_syncs: Some(libc::ENOSPC),
            ..Default::default()
        },
        Faulty {
            fail_dir_syncs: Some(libc::ENOSPC),
            fail_removals: Some(Files::named(".db.1")),
            ..Default::default()
        },
    ];
    for (case, faulty) in shortages.into_iter().enumerate() {
        let dir = scratch();
        let (mut store, armed) = create_disarmed(faulty, dir.path(), &opts);
        commit(&mut store, 0).unwrap();
        armed.store(true, Ordering::SeqCst);
        let ((), logged) = support::capture_logs(|| {
            for i in 1..6 {
                commit(&mut store, i)
                    .unwrap_or_else(|e| panic!("LOG-11: case {case}: commit {i} refused: {e}"));
            }
        });
        assert_eq!(
            logged.matches("could not rotate the logical log").count(),
            1,
            "LOG-11: case {case}: one warning when the rotation is first deferred, not one a \
             commit: {logged}"
        );
        let file_1 = log_path(dir.path(), 1);
        assert!(
            std::fs::metadata(&file_1).map_or(true, |m| m.len() == 0),
            "LOG-11: case {case}: a file of a failed rotation is emptied"
        );
        if case == 2 {
            // A crash now: the empty file reads as a rotation that crashed (RC-5).
            let last = store.status();
            drop(store);
            let reopened = Store::open(fs(), clock(), dir.path(), &opts)
                .unwrap_or_else(|e| panic!("LOG-11: case {case}: reopening: {e}"));
            assert_eq!(reopened.status(), last, "LOG-11: case {case}");
            continue;
        }
        armed.store(false, Ordering::SeqCst);
        let (committed, logged) = support::capture_logs(|| commit(&mut store, 6));
        committed.unwrap();
        assert!(
            logged.contains("rotated the logical log to log file 1, which an earlier shortage"),
            "LOG-11: case {case}: a line when the deferred rotation happens: {logged}"
        );
        assert_eq!(
            list_log_versions(&*fs(), dir.path()).unwrap(),
            vec![0, 1],
            "LOG-11: case {case}: the deferred rotation happened once the shortage passed"
        );
        let last = store.status();
        drop(store);
        let reopened = Store::open(fs(), clock(), dir.path(), &opts).unwrap();
        assert_eq!(reopened.status(), last, "LOG-11: case {case}");
    }

    // Another failure (an I/O error syncing the directory) stops the store, as before; so does
    // a shortage whose new file cannot be emptied: what of it is durable could read after a
    // crash as a file whose header disagrees with the commits that went on.
    let fatal = [
        (
            "an I/O error in a rotation stops the store",
            Faulty {
                fail_dir_syncs: Some(libc::EIO),
                ..Default::default()
            },
        ),
        (
            "a new file that cannot be emptied stops the store",
            Faulty {
                fail_dir_syncs: Some(libc::ENOSPC),
                fail_set_lens: Some(Files::named(".db.1")),
                ..Default::default()
            },
        ),
    ];
    for (rule, faulty) in fatal {
        let dir = scratch();
        let (mut store, armed) = create_disarmed(faulty, dir.path(), &opts);
        armed.store(true, Ordering::SeqCst);
        commit(&mut store, 0).unwrap();
        commit(&mut store, 1).expect("the commit that triggers the rotation stands");
        assert!(
            matches!(commit(&mut store, 2), Err(StoreError::Failed(_))),
            "LOG-9, LOG-11: {rule}"
        );
    }
}
