//! Opening after a crash: replay, damage that refuses to open, a torn new header, a cut tail that is durable before any commit, and a failed store that writes no checkpoint (RC-, LOG-9).

use super::*;
use std::sync::{Arc, Mutex};

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

// LOG-9: once a record write failed after the log was synced, the store is failed and writes
// no checkpoint, not even the one a full backup asks for; a reopen recovers the logged
// transaction from the log. Before, `checkpoint()` recorded a log offset past that transaction,
// and recovery never replayed it.
#[test]
fn log_9_a_failed_store_writes_no_checkpoint() {
    let dir = scratch();
    let path = dir.path().join("db");
    let (mut store, armed) = failing_node_writes(&path);
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

// RC-6, RC-4: recovery cuts the garbage after the last whole entry and syncs the cut before the
// open returns, so a commit shorter than the garbage leaves nothing of it behind; a rotation that
// then crashes between the new file's header and its checkpoint still opens with every commit.
// Before, a cut that only moved the append position left the garbage after the next entry, and
// that open refused: "log file 0 is damaged ... and later log files exist".
#[test]
fn rc_6_recovery_cuts_the_torn_tail_durably_before_any_commit() {
    let dir = scratch();
    let path = dir.path().join("db");
    let mut store = create(&path);
    store.commit(&[node(&["A"])]).unwrap();
    let log0 = log_path(&path, 0);
    let whole = std::fs::metadata(&log0).unwrap().len();
    let big = Op::CreateNode {
        labels: Vec::new(),
        props: props(&[("s", Value::String("x".repeat(3000)))]),
    };
    store.commit(&[big]).unwrap();
    let full = std::fs::metadata(&log0).unwrap().len();
    drop(store); // a crash
                 // The crash tore the last entry: most of it reached the disk.
    let torn = whole + (full - whole) * 3 / 4;
    let bytes = std::fs::read(&log0).unwrap();
    std::fs::write(&log0, &bytes[..torn as usize]).unwrap();

    let trace = Arc::new(Mutex::new(Vec::new()));
    let traced: Arc<dyn online_backup::io::Fs> = Arc::new(support::faulty::Faulty {
        traced: Some((
            support::faulty::Files::named("transaction.db.0"),
            trace.clone(),
        )),
        ..Default::default()
    });
    let mut store = Store::open(traced, clock(), &path, &StoreOptions::default()).unwrap();
    assert_eq!(
        store.status().last_committed_tx,
        1,
        "RC-4: the torn tx is cut"
    );
    assert_eq!(
        std::fs::metadata(&log0).unwrap().len(),
        whole,
        "RC-6: the open left the log ending past its last whole entry"
    );
    let opened: Vec<String> = trace.lock().unwrap().clone();
    let cut = opened
        .iter()
        .position(|op| *op == format!("set_len {whole}"));
    assert!(
        cut.is_some_and(|at| opened[at + 1..].iter().any(|op| op == "sync")),
        "RC-6: the open must cut the log at {whole} and sync the cut before it returns: {opened:?}"
    );

    store.commit(&[node(&["B"])]).unwrap();
    let after = std::fs::metadata(&log0).unwrap().len();
    assert!(
        after - whole < torn - whole,
        "the commit ({} bytes) must be shorter than the garbage ({} bytes) to test RC-6",
        after - whole,
        torn - whole
    );
    // A rotation whose checkpoint a crash prevented: the new file's header is durable, the
    // metadata still names log file 0.
    let meta = std::fs::read(path.join("neostore.meta")).unwrap();
    store.rotate().unwrap();
    drop(store);
    std::fs::write(path.join("neostore.meta"), meta).unwrap();
    assert!(log_path(&path, 1).exists());
    let reopened = open(&path);
    assert!(
        reopened.is_ok(),
        "RC-6, RC-4: after the cut, a commit and a crashed rotation the store must open: {:?}",
        reopened.err()
    );
    let status = reopened.unwrap().status();
    assert_eq!(
        (status.last_committed_tx, status.nodes),
        (2, 2),
        "RC-6: exactly the two commits around the cut"
    );
}

// HTTP-1, LOG-9: a failed store reports no status. The transaction whose record write failed
// is in the log and recovery brings it back at the next start; a status taken before the
// restart would say it is not committed (found by the `backup_io_faults` simulation: a writer
// that asked where the store stood after its failed commit concluded "not committed").
#[test]
fn http_1_a_failed_store_reports_no_status() {
    let dir = scratch();
    let path = dir.path().join("db");
    let (mut store, armed) = failing_node_writes(&path);
    store.commit(&[node(&["A"])]).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = online_backup::io::Env::os();
    let db = online_backup::db::Database::new(store, env.blocking.clone());
    let status = runtime.block_on(db.status()).unwrap();
    assert_eq!(status.0.last_committed_tx, 1, "HTTP-1");
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = runtime.block_on(db.commit(vec![node(&["B"])])).unwrap_err();
    assert!(!matches!(err, StoreError::Failed(_)), "{err}");
    let refused = runtime.block_on(db.status());
    assert!(
        matches!(refused, Err(StoreError::Failed(_))),
        "HTTP-1, LOG-9: a failed store must answer its status with its failure, got {refused:?}"
    );
    // Closing takes the store out of the database at once, releasing its lock before the
    // reopen, whichever blocking task may still hold the database (a plain drop raced one).
    // What the close says does not matter here: the reopen below recovers either way.
    let _ = db.close();
    drop(db);
    armed.store(false, std::sync::atomic::Ordering::SeqCst);
    let reopened = open(&path).unwrap();
    assert_eq!(
        reopened.status().last_committed_tx,
        2,
        "LOG-9: the failed transaction was committed after all"
    );
}

/// A new store in `path` whose node-record writes fail once the returned switch is armed.
fn failing_node_writes(path: &Path) -> (Store, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failing = std::sync::Arc::new(support::faulty::Faulty {
        fail_writes: Some(support::faulty::Files::named("nodestore.db")),
        armed: armed.clone(),
        ..Default::default()
    });
    (create_on(failing, path), armed)
}
