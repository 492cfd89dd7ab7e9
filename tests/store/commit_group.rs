//! Group commit (LOG-12): a group is one log write and one fsync; each transaction of it sees
//! the ones before it; a refused one takes no tx id and does not stop the others; and
//! concurrent commits through the server's `Database` share fsyncs.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use online_backup::db::Database;
use online_backup::io::os::OsBlocking;
use support::faulty::{Faulty, Files};

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
    let mut store = Store::create(
        fs.clone(),
        clock(),
        dir.path(),
        &StoreOptions::default(),
        FormatVersion::CURRENT,
        1,
    )
    .unwrap();
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
    let store = Store::create(
        fs.clone(),
        clock(),
        dir.path(),
        &StoreOptions::default(),
        FormatVersion::CURRENT,
        1,
    )
    .unwrap();
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
