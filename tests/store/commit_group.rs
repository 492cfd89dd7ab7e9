//! Group commit (LOG-12): a group is one log write and one fsync; each transaction of it sees
//! the ones before it; a refused one takes no tx id and does not stop the others; and
//! concurrent commits through the server's `Database` share fsyncs.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use online_backup::db::Database;
use online_backup::io::os::OsBlocking;
use support::faulty::{Faulty, Files, Gate, OpensOnDrop};

use super::*;

/// A filesystem whose log syncs are counted and take `delay`.
fn counting(delay: Duration) -> Arc<Faulty> {
    Arc::new(Faulty {
        slow_syncs: Some((Files::named(""), delay)),
        ..Default::default()
    })
}

fn log_syncs(fs: &Faulty) -> u64 {
    fs.syncs.load(Ordering::SeqCst)
}

#[test]
fn log_12_a_group_is_one_fsync_and_each_tx_sees_the_ones_before() {
    let dir = scratch();
    let fs = counting(Duration::ZERO);
    let mut store = create_on(fs.clone(), dir.path());
    let before = log_syncs(&fs);
    let group = vec![
        vec![node(&["A"])],
        // Node 0 exists only in the group's first transaction.
        vec![rel(NodeRef::Id(0), NodeRef::Id(0))],
        vec![Op::DeleteNode(99)],
        vec![Op::SetProperty {
            node: NodeRef::Id(0),
            key: "k".into(),
            value: Value::Int(7),
        }],
    ];
    let outcomes = store.commit_group(&group);
    assert_eq!(
        log_syncs(&fs) - before,
        1,
        "LOG-12: the group is written with one fsync"
    );
    let txs: Vec<Option<u64>> = outcomes
        .iter()
        .map(|o| o.as_ref().ok().map(|o| o.tx_id))
        .collect();
    assert_eq!(
        txs,
        [Some(1), Some(2), None, Some(3)],
        "LOG-12: a refused transaction takes no tx id and the others go on"
    );
    assert!(
        matches!(outcomes[2], Err(StoreError::Rejected(_))),
        "LOG-12: {:?}",
        outcomes[2]
    );
    let node = store.node(0).unwrap().unwrap();
    assert_eq!(node.props["k"], Value::Int(7), "LOG-12: {node:?}");
    assert_eq!(store.node_relationships(0).unwrap().unwrap(), vec![0]);
    drop(store);
    // Reopened from the log alone: the same three transactions, replayed in order.
    let store = open(dir.path()).unwrap();
    assert_eq!(store.status().last_committed_tx, 3);
    let report = online_backup::store::check::check_open(&store).unwrap();
    assert!(report.consistent, "LOG-12: {:?}", report.findings);
}

// LOG-12: commits arriving together through the server's `Database` are grouped: 64
// concurrent commits on a disk whose fsync takes 20 ms all succeed with distinct consecutive tx
// ids, with far fewer log fsyncs than commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_12_concurrent_commits_share_fsyncs() {
    let dir = scratch();
    let fs = Arc::new(Faulty {
        slow_syncs: Some((Files::named(""), Duration::from_millis(20))),
        ..Default::default()
    });
    let store = create_on(fs.clone(), dir.path());
    let db = Database::new(store, Arc::new(OsBlocking));
    let before = log_syncs(&fs);
    let commits: Vec<_> = (0..64)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.commit(vec![node(&["W"])]).await })
        })
        .collect();
    let mut txs = Vec::new();
    for c in commits {
        txs.push(
            c.await
                .unwrap()
                .expect("LOG-12: every commit succeeds")
                .tx_id,
        );
    }
    txs.sort_unstable();
    assert_eq!(
        txs,
        (1..=64).collect::<Vec<_>>(),
        "LOG-12: one tx id each, none twice, none skipped"
    );
    let syncs = log_syncs(&fs) - before;
    assert!(
        syncs <= 16,
        "LOG-12: 64 concurrent commits took {syncs} fsyncs; groups should share them"
    );
    let status = db.status().await.unwrap().0;
    assert_eq!(status.nodes, 64);
}

/// A store on a filesystem whose syncs of the files named `held` wait at a gate once armed, and
/// the server's `Database` over it.
fn held_at(held: &'static str) -> (tempfile::TempDir, Arc<Faulty>, Arc<Gate>, Arc<Database>) {
    let dir = scratch();
    let gate = Arc::new(Gate::default());
    let fs = Arc::new(Faulty {
        held_syncs: Some((Files::named(held), gate.clone())),
        ..Default::default()
    });
    let store = create_on(fs.clone(), dir.path());
    let db = Database::new(store, Arc::new(OsBlocking));
    (dir, fs, gate, db)
}

/// What a test waits for at most, for something that must not wait for a held fsync.
const PROMPT: Duration = Duration::from_secs(10);

// LOG-12: while a group's log fsync is in progress, reads go on and see the state before the
// group; the commit is answered only once the fsync returns, and then it is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_12_readers_do_not_wait_for_a_groups_fsync() {
    let (_dir, fs, gate, db) = held_at("transaction.db.0");
    let _open = OpensOnDrop(gate.clone());
    db.commit(vec![node(&["A"])]).await.unwrap();
    fs.armed.store(true, Ordering::SeqCst);
    let commit = tokio::spawn({
        let db = db.clone();
        async move { db.commit(vec![node(&["B"])]).await }
    });
    assert!(
        tokio::task::spawn_blocking({
            let gate = gate.clone();
            move || gate.wait_reached(1, PROMPT)
        })
        .await
        .unwrap(),
        "LOG-12: the commit never reached its log fsync"
    );
    let status = tokio::time::timeout(PROMPT, db.status()).await;
    let status = status
        .expect("LOG-12: a status read waited for a group's log fsync")
        .unwrap()
        .0;
    assert_eq!(
        (status.last_committed_tx, status.nodes),
        (1, 1),
        "LOG-12: the group is not visible before its fsync returns and it is applied"
    );
    let read = tokio::time::timeout(PROMPT, db.node(1)).await;
    assert!(
        read.expect("LOG-12: a node read waited for a group's log fsync")
            .unwrap()
            .is_none(),
        "LOG-12: node 1 is not visible before its commit is applied"
    );
    assert!(
        !commit.is_finished(),
        "LOG-12: the commit was answered before its fsync returned"
    );
    gate.open();
    let outcome = commit.await.unwrap().unwrap();
    assert_eq!(outcome.tx_id, 2);
    let status = db.status().await.unwrap().0;
    assert_eq!((status.last_committed_tx, status.nodes), (2, 2), "LOG-12");
}

// LOG-13: while a checkpoint's record-file fsync is in progress, commits and reads go on; the
// checkpoint then records the tx it was planned at, not a later one, and the store reopens
// with every commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_13_commits_go_on_during_a_checkpoints_fsync() {
    let (dir, fs, gate, db) = held_at("store.db");
    let _open = OpensOnDrop(gate.clone());
    for _ in 0..3 {
        db.commit(vec![node(&["A"])]).await.unwrap();
    }
    fs.armed.store(true, Ordering::SeqCst);
    let checkpoint = tokio::spawn({
        let db = db.clone();
        async move { db.checkpoint_covering(3).await }
    });
    assert!(
        tokio::task::spawn_blocking({
            let gate = gate.clone();
            move || gate.wait_reached(1, PROMPT)
        })
        .await
        .unwrap(),
        "LOG-13: the checkpoint never reached its record-file fsync"
    );
    for i in 0..5 {
        let committed = tokio::time::timeout(PROMPT, db.commit(vec![node(&["B"])])).await;
        let outcome = committed
            .unwrap_or_else(|_| panic!("LOG-13: commit {i} waited for a checkpoint's fsync"))
            .unwrap();
        assert_eq!(outcome.tx_id, 4 + i, "LOG-13");
    }
    assert!(
        !checkpoint.is_finished(),
        "LOG-13: the checkpoint finished before its fsync returned"
    );
    gate.open();
    checkpoint.await.unwrap().unwrap();
    let recorded = db
        .read_with(|s| Ok(s.meta().checkpoint.last_tx))
        .await
        .unwrap();
    assert_eq!(
        recorded, 3,
        "LOG-13: the checkpoint records the tx it was planned at"
    );
    // A checkpoint asked for again now is needed (tx 8 is not covered) and records tx 8.
    db.checkpoint_covering(8).await.unwrap();
    let recorded = db
        .read_with(|s| Ok(s.meta().checkpoint.last_tx))
        .await
        .unwrap();
    assert_eq!(recorded, 8, "LOG-13");
    db.close().unwrap();
    let store = open(dir.path()).unwrap();
    assert_eq!(store.status().last_committed_tx, 8, "LOG-13");
    assert_eq!(store.status().nodes, 8, "LOG-13");
}

// LOG-13: a checkpoint planned before a rotation's newer one is not recorded: the metadata
// never goes back.
#[test]
fn log_13_a_planned_checkpoint_older_than_the_last_is_not_recorded() {
    let dir = scratch();
    let mut store = create(dir.path());
    store.commit(&[node(&["A"])]).unwrap();
    let plan = store
        .plan_checkpoint(1)
        .unwrap()
        .expect("LOG-13: tx 1 is not covered yet");
    assert_eq!(plan.tx(), 1);
    store.commit(&[node(&["B"])]).unwrap();
    store.rotate().unwrap();
    assert_eq!(store.meta().checkpoint.last_tx, 2);
    let synced = plan.sync_files();
    store.finish_checkpoint(plan, synced).unwrap();
    assert_eq!(
        store.meta().checkpoint.last_tx,
        2,
        "LOG-13: the rotation's newer checkpoint stands"
    );
    assert!(
        store.plan_checkpoint(2).unwrap().is_none(),
        "LOG-13, PR-24: a covered tx needs no checkpoint"
    );
}
