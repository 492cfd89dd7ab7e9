//! Pruning logs at checkpoints: pins, the oldest first, a failed deletion (RET-).

use super::*;

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
    let now = clock().monotonic_millis();
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

// RET-14: pruning deletes the oldest files first; a deletion that fails ends the pruning there,
// so no newer file goes and the logs stay a gap-free suffix; the store goes on committing, and
// the next pruning tries again.
#[test]
fn ret_14_a_failed_deletion_ends_the_pruning_without_a_gap() {
    use online_backup::retention::{Pins, RetentionPolicy};
    let dir = scratch();
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let removed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let failing: std::sync::Arc<dyn online_backup::io::Fs> =
        std::sync::Arc::new(support::faulty::Faulty {
            fail_removals: Some(support::faulty::Files::named(".db.2")),
            armed: armed.clone(),
            removed: removed.clone(),
            ..Default::default()
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
    let (checkpointed, logged) = support::capture_logs(|| store.checkpoint());
    checkpointed.unwrap();
    let after = list_log_versions(&*fs(), dir.path()).unwrap();
    assert_eq!(
        after.len(),
        1,
        "RET-14: the next pruning tries again: {after:?}"
    );
    let line = format!(
        "pruned {} logical log file(s); the oldest kept is log file {}",
        versions.len() - 1,
        after[0]
    );
    assert!(
        logged.contains(&line),
        "RET-14: the pruning says what it deleted ({line}): {logged}"
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

// RET-16: a sealed log file is read once per open of the store, not at every checkpoint's
// pruning; what pruning sees is the same as a fresh read of every file.
#[test]
fn ret_16_pruning_reads_each_sealed_log_once() {
    use online_backup::retention::RetentionPolicy;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use support::faulty::{Faulty, Files};
    let dir = scratch();
    let opens = Arc::new(AtomicU64::new(0));
    let counting: Arc<dyn online_backup::io::Fs> = Arc::new(Faulty {
        counted_opens: Some((Files::named(""), opens.clone())),
        ..Faulty::default()
    });
    let opts = StoreOptions {
        log_rotation_threshold: 300,
        // Never prunes anything here, but describes the logs at every checkpoint.
        retention: RetentionPolicy::Files(1000),
        ..StoreOptions::default()
    };
    let mut store = Store::create(
        counting.clone(),
        clock(),
        dir.path(),
        &opts,
        FormatVersion::V2,
        1,
    )
    .unwrap();
    for _ in 0..40 {
        store.commit(&[node(&["A"])]).unwrap();
    }
    let sealed = list_log_versions(&*fs(), dir.path()).unwrap().len() as u64 - 1;
    assert!(
        sealed >= 12,
        "RET-16: the test needs many sealed files, has {sealed}"
    );
    let described = store.describe_logs().unwrap();
    opens.store(0, Ordering::SeqCst);
    for _ in 0..5 {
        store.commit(&[node(&["A"])]).unwrap();
        store.checkpoint().unwrap();
    }
    let during = opens.load(Ordering::SeqCst);
    assert!(
        during <= 20,
        "RET-16: 5 checkpoints over {sealed} sealed log files opened files {during} times (a checkpoint writes the metadata and reads the active log: 4 at most)"
    );
    let again = store.describe_logs().unwrap();
    assert_eq!(
        &again[..described.len() - 1],
        &described[..described.len() - 1]
    );
    drop(store);
    let mut fresh = Store::open(fs(), clock(), dir.path(), &opts).unwrap();
    assert_eq!(
        fresh.describe_logs().unwrap(),
        again,
        "RET-16: the remembered descriptions differ from a fresh read"
    );
}
