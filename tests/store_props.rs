//! Property tests of the store against a model: random transactions, crash cuts of the log,
//! and the fuzzy copy online backup depends on.

mod support;

use std::path::Path;

use online_backup::graph::Op;
use online_backup::store::check::check_open;
use online_backup::store::format::FormatVersion;
use online_backup::store::log::log_path;
use online_backup::store::{Store, StoreError, StoreOptions};
use proptest::prelude::*;
use support::*;

fn options() -> StoreOptions {
    StoreOptions {
        log_rotation_threshold: 0,
        ..StoreOptions::default()
    }
}

fn create(dir: &Path, format: FormatVersion) -> Store {
    Store::create(fs(), clock(), dir, &options(), format, 7).unwrap()
}

/// Runs `txs` against the store and the model; the store must accept exactly what the model
/// accepts, with the same ids (ST-3), and refusals must change nothing.
fn run(store: &mut Store, model: &mut Graph, txs: &[Vec<Action>]) -> Result<(), TestCaseError> {
    for actions in txs {
        let ops = resolve(model, actions);
        let before = store.status();
        let expected = model.apply(&ops);
        match (store.commit(&ops), expected) {
            (Ok(outcome), Ok(ids)) => prop_assert_eq!(outcome.ids, ids),
            (Err(StoreError::Rejected(_)), Err(_)) => prop_assert_eq!(store.status(), before),
            (got, want) => {
                prop_assert!(false, "store {:?} but model {:?} for {:?}", got, want, ops)
            }
        }
    }
    Ok(())
}

fn format() -> impl Strategy<Value = FormatVersion> {
    prop_oneof![Just(FormatVersion::V1), Just(FormatVersion::V2)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    // ST-3, ST-13, DG-10: after any sequence of transactions the running digest equals the
    // model's and a full scan's, and check finds the store consistent.
    #[test]
    fn incremental_digest_equals_scan_and_model(
        txs in proptest::collection::vec(transaction(), 1..40),
        format in format(),
    ) {
        let dir = scratch();
        let mut store = create(dir.path(), format);
        let mut model = Graph::default();
        run(&mut store, &mut model, &txs)?;
        let status = store.status();
        prop_assert_eq!(
            status.digest,
            model.digest(),
            "ST-13: the digest each transaction updated is the model's"
        );
        prop_assert_eq!(
            store.scan_digest().unwrap(),
            model.digest(),
            "DG-10: a full scan gives the recorded digest"
        );
        prop_assert_eq!(status.nodes, model.nodes.len() as u64);
        prop_assert_eq!(status.relationships, model.rels.len() as u64);
        for (id, rel) in &model.rels {
            // The relationship chains list exactly each node's relationships.
            for n in [rel.start, rel.end] {
                let chain = store.node_relationships(n).unwrap().unwrap();
                prop_assert!(chain.contains(id));
            }
        }
        for id in model.nodes.keys() {
            let chain = store.node_relationships(*id).unwrap().unwrap();
            let want = model.rels.values().filter(|r| r.start == *id || r.end == *id).count();
            prop_assert_eq!(chain.len(), want);
        }
        let report = check_open(&store).unwrap();
        prop_assert!(report.consistent, "{:?}", report.findings);
    }

    // LOG-7, RC-1, RC-4, RC-6: cutting the log at every byte offset inside the last
    // transaction's entry recovers exactly the previous transaction; the whole entry recovers the
    // last one. Recovery leaves the active log ending at its last whole entry, so that a commit
    // shorter than the cut-off garbage, then a rotation that crashes between the new file's header
    // and its checkpoint, still opens with exactly the transactions committed.
    #[test]
    fn recovery_cuts_the_log_at_the_last_whole_transaction(
        txs in proptest::collection::vec(transaction(), 1..12),
        last in transaction(),
        format in format(),
    ) {
        let dir = scratch();
        let live = dir.path().join("live");
        let mut store = create(&live, format);
        let mut model = Graph::default();
        run(&mut store, &mut model, &txs)?;
        let before = store.status().last_committed_tx;
        let model_before = model.clone();
        drop(store); // a crash: no checkpoint, so recovery must replay from tx 0
        let snapshot = dir.path().join("snapshot");
        copy_dir(&live, &snapshot);
        let log_before = std::fs::metadata(log_path(&live, 0)).unwrap().len();

        let mut store = Store::open(fs(), clock(), &live, &options()).unwrap();
        let ops = resolve(&model, &last);
        let committed = store.commit(&ops).is_ok();
        prop_assert_eq!(committed, model.apply(&ops).is_ok());
        drop(store);
        let full_log = std::fs::read(log_path(&live, 0)).unwrap();

        for cut in log_before..=full_log.len() as u64 {
            let trial = dir.path().join(format!("cut{cut}"));
            copy_dir(&snapshot, &trial);
            std::fs::write(log_path(&trial, 0), &full_log[..cut as usize]).unwrap();
            let mut store = Store::open(fs(), clock(), &trial, &options()).unwrap();
            let status = store.status();
            let whole = committed && cut == full_log.len() as u64;
            let mut expected = if whole { model.clone() } else { model_before.clone() };
            let (whole_end, expected_tx) = if whole {
                (full_log.len() as u64, before + 1)
            } else {
                (log_before, before)
            };
            prop_assert_eq!(status.last_committed_tx, expected_tx);
            prop_assert_eq!(status.digest, expected.digest());
            prop_assert_eq!(store.scan_digest().unwrap(), status.digest);
            prop_assert_eq!(
                std::fs::metadata(log_path(&trial, 0)).unwrap().len(),
                whole_end,
                "RC-6: after the cut at {} the active log must end at its last whole entry",
                cut
            );

            // A commit shorter than the garbage a lazy cut would leave after its entry...
            let small = [Op::CreateNode { labels: Vec::new(), props: Default::default() }];
            let ids = store.commit(&small).unwrap().ids;
            prop_assert_eq!(ids, expected.apply(&small).unwrap());
            // ... then a rotation whose checkpoint a crash prevents: the new file's header is
            // durable, the metadata still names the checkpoint before it.
            let meta = std::fs::read(trial.join("neostore.meta")).unwrap();
            store.rotate().unwrap();
            drop(store);
            std::fs::write(trial.join("neostore.meta"), meta).unwrap();
            let reopened = Store::open(fs(), clock(), &trial, &options());
            prop_assert!(
                reopened.is_ok(),
                "RC-6, RC-4: a commit after the cut at {}, then a crashed rotation: {:?}",
                cut,
                reopened.err()
            );
            let store = reopened.unwrap();
            let status = store.status();
            prop_assert_eq!(
                (status.last_committed_tx, status.digest),
                (expected_tx + 1, expected.digest()),
                "RC-6: the store reopens with exactly the transactions committed (cut at {})",
                cut
            );
            prop_assert_eq!(store.scan_digest().unwrap(), status.digest);
            drop(store);
            std::fs::remove_dir_all(&trial).unwrap();
        }
    }

    // RC-2, RC-3: record files copied while transactions are committing, plus the metadata of a
    // checkpoint taken before the copy and the logs after it, recover to the final state: the
    // property online backup depends on.
    #[test]
    fn replaying_redo_onto_a_fuzzy_copy_gives_the_final_digest(
        prefix in proptest::collection::vec(transaction(), 0..10),
        during in proptest::collection::vec(transaction(), 1..20),
        chunk_sizes in proptest::collection::vec(1usize..600, 1..30),
        format in format(),
    ) {
        let dir = scratch();
        let live = dir.path().join("live");
        let copy = dir.path().join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        let mut store = create(&live, format);
        let mut model = Graph::default();
        run(&mut store, &mut model, &prefix)?;
        store.checkpoint().unwrap();
        std::fs::copy(live.join("neostore.meta"), copy.join("neostore.meta")).unwrap();

        // Copy each record file in chunks, committing a transaction between chunks.
        let mut pending = during.iter();
        let mut sizes = chunk_sizes.iter().cycle();
        for name in ["neostore.nodestore.db", "neostore.relationshipstore.db", "neostore.propertystore.db"] {
            let mut offset = 0usize;
            let mut out = Vec::new();
            loop {
                let data = std::fs::read(live.join(name)).unwrap();
                if offset >= data.len() {
                    break;
                }
                let end = (offset + sizes.next().unwrap()).min(data.len());
                out.extend_from_slice(&data[offset..end]);
                offset = end;
                if let Some(actions) = pending.next() {
                    run(&mut store, &mut model, std::slice::from_ref(actions))?;
                }
            }
            std::fs::write(copy.join(name), out).unwrap();
        }
        for actions in pending {
            run(&mut store, &mut model, std::slice::from_ref(actions))?;
        }
        // Then the logs, which hold everything after the checkpoint.
        std::fs::copy(log_path(&live, 0), log_path(&copy, 0)).unwrap();
        let final_status = store.status();
        drop(store);

        let recovered = Store::open(fs(), clock(), &copy, &options()).unwrap();
        prop_assert_eq!(
            recovered.status(),
            final_status,
            "RC-3: replay sets the counts, marks and digest to the final state's"
        );
        prop_assert_eq!(recovered.status().digest, model.digest());
        let report = check_open(&recovered).unwrap();
        prop_assert!(
            report.consistent,
            "RC-2: whole after-images replayed onto the fuzzy copy give consistent records: {:?}",
            report.findings
        );
    }
}
