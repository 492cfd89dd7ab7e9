//! Point-in-time restore and kept generations (spec/history.md, PIT-): a backup that keeps its
//! transactions restored to earlier txs, each equal to the server's digest at that tx, across
//! log rotations and incrementals; older generations kept, listed and restored from.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::ServerProcess;

/// Log files rotate every few transactions, so restores cross rotations.
fn config() -> String {
    format!("{EPHEMERAL}logical_log_rotation_threshold=16k\n")
}

/// A workload that overwrites what it wrote before: nodes with padded properties (new
/// records and payload blocks), properties set again on old nodes, relationships created
/// between old nodes (their chains rewritten) and deleted. `n` transactions; the digest after
/// each is recorded.
struct Workload {
    nodes: Vec<u64>,
    rels: Vec<u64>,
    step: u64,
    /// The server's digest after each tx.
    history: BTreeMap<u64, String>,
}

impl Workload {
    /// A scratch directory, a server in it whose logs rotate every few transactions, and the
    /// workload that writes to it.
    fn start() -> (tempfile::TempDir, ServerProcess, Workload) {
        let dir = scratch();
        let server = ServerProcess::start(&dir.path().join("db"), Some(&config()));
        let work = Workload {
            nodes: Vec::new(),
            rels: Vec::new(),
            step: 0,
            history: BTreeMap::new(),
        };
        (dir, server, work)
    }

    fn run(&mut self, server: &ServerProcess, n: u64) -> u64 {
        let mut last = 0;
        for _ in 0..n {
            let i = self.step;
            self.step += 1;
            let pick = |v: &Vec<u64>, k: u64| v[(k as usize * 7 + 3) % v.len()];
            let ops = match i % 4 {
                _ if self.nodes.len() < 4 || i.is_multiple_of(4) => format!(
                    r#"[{{"create_node": {{"labels": ["P"], "props": {{"i": {i}, "pad": "{}"}}}}}}, {{"create_node": {{"props": {{"i": {i}}}}}}}, {{"create_relationship": {{"from": "$0", "to": "$1", "type": "R"}}}}]"#,
                    "x".repeat(300 + (i as usize % 5) * 100)
                ),
                1 => format!(
                    r#"[{{"set_property": {{"node": {}, "key": "v", "value": "{}"}}}}]"#,
                    pick(&self.nodes, i),
                    "v".repeat(40 + i as usize % 200)
                ),
                2 => format!(
                    r#"[{{"create_relationship": {{"from": {}, "to": {}, "type": "S", "props": {{"i": {i}}}}}}}]"#,
                    pick(&self.nodes, i),
                    pick(&self.nodes, i + 1)
                ),
                _ => match self.rels.pop() {
                    Some(r) => format!(r#"[{{"delete_relationship": {r}}}]"#),
                    None => format!(
                        r#"[{{"set_property": {{"node": {}, "key": "w", "value": {i}}}}}]"#,
                        pick(&self.nodes, i)
                    ),
                },
            };
            let (tx, ids) = commit_recorded(server, &ops, &mut self.history);
            last = tx;
            match (i % 4, ids.as_slice()) {
                (_, [a, b, r]) => {
                    self.nodes.extend([*a, *b]);
                    self.rels.push(*r);
                }
                (2, [r]) => self.rels.insert(0, *r),
                _ => {}
            }
        }
        last
    }
}

fn restore_until(from: &Path, to: &Path, until: &[&str]) -> Out {
    let mut args = vec!["restore", "--from", path(from), "--store", path(to)];
    args.extend_from_slice(until);
    admin(&args)
}

/// Restores the backup `b` into `r` to tx `t` and checks the store: at `t`, consistent, with
/// the server's digest at `t` as `history` recorded it (PIT-7, PIT-8).
fn restores_to(b: &Path, r: &Path, t: u64, history: &BTreeMap<u64, String>) {
    let out = restore_until(b, r, &["--until-tx", &t.to_string()]).expect(0);
    let restored = check_json(r);
    assert_eq!(
        (tx(&restored), restored["consistent"].as_bool()),
        (t, Some(true)),
        "PIT-8: restored to tx {t}: {out:#?}"
    );
    assert_eq!(
        s(&restored["digest"]),
        history[&t],
        "PIT-7, PIT-8: the store restored to tx {t} has the server's digest at tx {t}"
    );
}

// PIT-2 .. PIT-8, PIT-5: a backup that keeps its transactions, taken full then caught up by
// two incrementals while the logs rotate, restores to the tx its full backup reached, to txs
// inside each incremental and to their ends; each restored store checks, is at that tx and
// has the digest the server had there. A tx outside what it holds is refused, nothing
// created.
#[test]
fn pit_8_restore_to_any_kept_tx_equals_the_servers_digest_then() {
    let (dir, server, mut work) = Workload::start();
    let addr = server.backup.clone().unwrap();
    let b = dir.path().join("backup");
    let keep = ["--keep-transactions", "true"];

    work.run(&server, 24);
    let full = json_run(&addr, &b, &keep, 0);
    assert_eq!(full["mode"], "full");
    let u0 = full["to_tx"].as_u64().unwrap();
    let undo = |b: &Path| {
        names(&b.join(current(b)))
            .into_iter()
            .filter(|n| n.starts_with("neostore.undo."))
            .collect::<Vec<_>>()
    };
    assert!(
        undo(&b).is_empty(),
        "PIT-2: a full backup writes no undo segment"
    );
    let u1 = work.run(&server, 60);
    let out = backup_from(&addr, &b, &keep).expect(0);
    assert!(
        out.stdout
            .contains(&format!("can be restored to any tx from {u0} to {u1}")),
        "PIT-5: the run says what the backup can be restored to: {out:#?}"
    );
    assert_eq!(
        undo(&b),
        [format!("neostore.undo.{u0}")],
        "PIT-2: the incremental's run kept what it overwrote, from the tx it started at"
    );
    let u2 = work.run(&server, 40);
    backup_from(&addr, &b, &keep).expect(0);
    let out = backup_from(&addr, &b, &["--keep-transactions", "3 weeks"]).expect(2);
    assert!(
        out.stderr.contains("'3 weeks' is not a retention"),
        "PIT-3: a retention that does not parse is a usage error: {out:#?}"
    );
    let logs = names(&dir.path().join("db"))
        .iter()
        .filter(|n| n.starts_with("neostore.transaction.db."))
        .count();
    assert!(
        logs > 3,
        "the server's logs rotated while the backups ran: {logs} files"
    );

    let info = admin(&["backup-info", path(&b), "--json"]).expect(0);
    let doc: Value = serde_json::from_str(&info.stdout).unwrap();
    let g = &doc["generations"][0];
    assert_eq!(
        g["restores_to_txs"],
        serde_json::json!([u0, u2]),
        "PIT-5: backup-info lists the range: {doc:#}"
    );

    for t in [u0, u0 + 1, (u0 + u1) / 2, u1 - 1, u1, u1 + 7, u2 - 1, u2] {
        restores_to(
            &b,
            &dir.path().join(format!("restored-{t}")),
            t,
            &work.history,
        );
    }

    // PIT-10: outside what is kept, refused with the range, nothing created.
    for t in [u0 - 1, u2 + 1] {
        let r = dir.path().join(format!("refused-{t}"));
        let out = restore_until(&b, &r, &["--until-tx", &t.to_string()]).expect(1);
        let line = out.one_error_line();
        assert!(
            line.contains(&format!("tx {u0} to tx {u2}")),
            "PIT-10: the refusal names what can be restored: {line}"
        );
        assert!(!r.exists(), "PIT-10: a refused restore creates nothing");
    }

    // PIT-9: a time restores to the last tx committed at or before it.
    let times = &g["restores_to_times"];
    let (first, last) = (s(&times[0]), s(&times[1]));
    let r = dir.path().join("at-last-time");
    restore_until(&b, &r, &["--until-time", &last]).expect(0);
    assert_eq!(
        s(&check_json(&r)["digest"]),
        work.history[&u2],
        "PIT-9: the last time restores the last tx"
    );
    let r = dir.path().join("at-first-time");
    restore_until(&b, &r, &["--until-time", &first]).expect(0);
    let at = tx(&check_json(&r));
    assert!(
        (u0..u2).contains(&at) && s(&check_json(&r)["digest"]) == work.history[&at],
        "PIT-9: the first time restores a tx from the start of the range: tx {at}"
    );
    let r = dir.path().join("too-early");
    let out = restore_until(&b, &r, &["--until-time", "2001-01-01T00:00:00Z"]).expect(1);
    assert!(
        out.one_error_line()
            .contains("cannot be restored to 2001-01-01T00:00:00.000Z"),
        "PIT-10: {out:#?}"
    );
    let out = restore_until(&b, &r, &["--until-time", "yesterday"]).expect(2);
    assert!(out.stderr.contains("not a time"), "PIT-9: {out:#?}");

    // PIT-11: a damaged segment is found by the manifest before anything is copied.
    let damaged = dir.path().join("damaged");
    copy_tree(&b, &damaged);
    let segment = damaged
        .join(current(&b))
        .join(format!("neostore.undo.{u0}"));
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    let r = dir.path().join("from-damaged");
    let out = restore_until(&damaged, &r, &["--until-tx", &u0.to_string()]).expect(3);
    assert!(
        out.one_error_line()
            .contains(&format!("neostore.undo.{u0}")),
        "PIT-11: the damaged segment is named: {out:#?}"
    );

    // PIT-6: without --keep-transactions the next run drops what it kept.
    work.run(&server, 3);
    backup_from(&addr, &b, &[]).expect(0);
    let live = b.join(current(&b));
    assert!(
        !names(&live).iter().any(|n| n.starts_with("neostore.undo.")),
        "PIT-6: no undo segment stays once transactions are no longer kept: {:?}",
        names(&live)
    );
    admin(&["check", "--quick", path(&b)]).expect(0);
    // Its one restorable tx, the last, is still timed by the log that holds it.
    let info = admin(&["backup-info", path(&b), "--json"]).expect(0);
    let doc: Value = serde_json::from_str(&info.stdout).unwrap();
    let g = &doc["generations"][0];
    let last = g["last_tx"].as_u64().unwrap();
    assert_eq!(
        g["restores_to_txs"],
        serde_json::json!([last, last]),
        "PIT-5"
    );
    let r = dir.path().join("last-only");
    restore_until(&b, &r, &["--until-time", &s(&g["restores_to_times"][1])]).expect(0);
    assert_eq!(
        tx(&check_json(&r)),
        last,
        "PIT-9: the time of the one restorable tx restores it"
    );
}

// PIT-7, PIT-8: the backup's own logs rotate too (its store rotates at the default threshold,
// 25 MiB): an incremental applies transactions of a few MiB each until its log file passes it,
// and restores to txs before, between and after the backup's own rotation each equal the
// server's digest then.
#[test]
fn pit_8_restore_across_a_rotation_of_the_backups_own_logs() {
    let (dir, server, mut work) = Workload::start();
    let addr = server.backup.clone().unwrap();
    let b = dir.path().join("backup");
    let keep = ["--keep-transactions", "true"];
    work.run(&server, 6);
    let u0 = json_run(&addr, &b, &keep, 0)["to_tx"].as_u64().unwrap();
    // Transactions of six 1 MiB strings each (1 MiB is the longest string, ST): six of them
    // pass the 25 MiB threshold of the backup's log.
    let mut big = Vec::new();
    for k in 0..6u64 {
        let props: Vec<String> = (0..6)
            .map(|p| {
                format!(
                    r#""s{p}": "{}""#,
                    char::from(b'a' + (k * 6 + p) as u8 % 26)
                        .to_string()
                        .repeat(1 << 20)
                )
            })
            .collect();
        let ops = format!(
            r#"[{{"create_node": {{"labels": ["Big"], "props": {{{}}}}}}}]"#,
            props.join(", ")
        );
        big.push(commit_recorded(&server, &ops, &mut work.history).0);
        work.run(&server, 2);
    }
    let u1 = work.run(&server, 3);
    backup_from(&addr, &b, &keep).expect(0);
    let logs = |b: &Path| {
        names(&b.join(current(b)))
            .into_iter()
            .filter(|n| n.starts_with("neostore.transaction.db."))
            .count()
    };
    assert!(
        logs(&b) >= 2,
        "PIT-8: the backup's own log rotated: {:?}",
        names(&b.join(current(&b)))
    );
    let u2 = work.run(&server, 5);
    backup_from(&addr, &b, &keep).expect(0);
    for t in [u0, big[1], big[3] + 1, big[5], u1, u2 - 2, u2] {
        let r = dir.path().join(format!("restored-{t}"));
        restores_to(&b, &r, t, &work.history);
        std::fs::remove_dir_all(&r).unwrap();
    }
}

// PIT-12: --keep-generations keeps older finished generations, the oldest removed first and
// never the live one; backup-info lists them as kept, a restore to a tx only an older one
// holds reads it, and a run with a smaller number removes the excess.
#[test]
fn pit_12_kept_generations_are_listed_and_restored_from() {
    let (dir, server, mut work) = Workload::start();
    let addr = server.backup.clone().unwrap();
    let b = dir.path().join("backup");
    let gens = |b: &Path| {
        names(b)
            .into_iter()
            .filter(|n| n.starts_with("generation-"))
            .collect::<Vec<_>>()
    };
    let keep2 = ["--keep-generations", "2", "--type", "full"];

    let t1 = work.run(&server, 8);
    let out = backup_from(&addr, &b, &["--keep-generations", "0"]).expect(2);
    assert!(
        out.stderr.contains("--keep-generations") && !b.exists(),
        "PIT-12: at least one generation is kept; 0 is a usage error: {out:#?}"
    );
    backup_from(&addr, &b, &keep2).expect(0);
    let t2 = work.run(&server, 8);
    backup_from(&addr, &b, &keep2).expect(0);
    assert_eq!(gens(&b), ["generation-1", "generation-2"], "PIT-12");
    work.run(&server, 8);
    backup_from(&addr, &b, &keep2).expect(0);
    assert_eq!(
        gens(&b),
        ["generation-2", "generation-3"],
        "PIT-12: the oldest is removed first"
    );

    let info = admin(&["backup-info", path(&b)]).expect(0).stdout;
    assert!(
        info.contains("generation 2:            older, kept by --keep-generations"),
        "PIT-12: {info}"
    );
    let r = dir.path().join("older");
    restore_until(&b, &r, &["--until-tx", &t2.to_string()]).expect(0);
    assert_eq!(
        s(&check_json(&r)["digest"]),
        work.history[&t2],
        "PIT-10: a tx only the older generation holds is restored from it"
    );
    let out = restore_until(
        &b,
        &dir.path().join("gone"),
        &["--until-tx", &t1.to_string()],
    )
    .expect(1);
    assert!(
        out.one_error_line()
            .contains(&format!("tx {t2} only in generation-2")),
        "PIT-10: {out:#?}"
    );

    // A kept generation whose removal was cut short, its manifest gone first, is a leftover:
    // neither listed nor restored from.
    std::fs::remove_file(b.join("generation-2").join("MANIFEST")).unwrap();
    let info = admin(&["backup-info", path(&b)]).expect(0).stdout;
    assert!(
        info.contains("generation 2:            left by an interrupted run"),
        "PIT-12: a generation without its manifest is not kept history: {info}"
    );
    restore_until(
        &b,
        &dir.path().join("unfinished"),
        &["--until-tx", &t2.to_string()],
    )
    .expect(1);

    // An incremental with the default keeps only the live one.
    work.run(&server, 2);
    backup_from(&addr, &b, &[]).expect(0);
    assert_eq!(gens(&b), ["generation-3"], "PIT-12");
    assert_same_as_server(&b, &server);
}

mod segments {
    //! The undo segments and the chain, through the library on real files: a backup's apply
    //! loop mirrored by hand (read the source's log, write each run's segment, apply it), then
    //! crashes, gaps and damage.

    use std::path::Path;

    use online_backup::backup::history::{self, undo_name};
    use online_backup::backup::restore::{restore, RestoreError, Until};
    use online_backup::graph::{NodeRef, Op, Value};
    use online_backup::io::os::OsBlocking;
    use online_backup::store::format::FormatVersion;
    use online_backup::store::log::{LogReader, TxEntry};
    use online_backup::store::{Store, StoreOptions};

    use crate::support::{clock, fs, scratch};

    /// A source store at tx 40 of creates, property rewrites, relationships and deletes; its
    /// log entries, tx 1 first.
    fn source(dir: &Path) -> Vec<TxEntry> {
        let mut s = Store::create(
            fs(),
            clock(),
            dir,
            &StoreOptions::default(),
            FormatVersion::V2,
            7,
        )
        .unwrap();
        for i in 0..40u64 {
            let ops = match i % 4 {
                _ if i < 4 || i % 4 == 0 => vec![
                    Op::CreateNode {
                        labels: vec!["N".into()],
                        props: [(
                            "pad".to_string(),
                            Value::String("p".repeat(200 + i as usize)),
                        )]
                        .into_iter()
                        .collect(),
                    },
                    Op::CreateRelationship {
                        from: NodeRef::CreatedBy(0),
                        to: NodeRef::Id(i % 3),
                        rel_type: "R".into(),
                        props: Default::default(),
                    },
                ],
                1 => vec![Op::SetProperty {
                    node: NodeRef::Id(i % 5),
                    key: "k".into(),
                    value: Value::String("v".repeat(i as usize * 3)),
                }],
                2 => vec![Op::CreateRelationship {
                    from: NodeRef::Id(i % 4),
                    to: NodeRef::Id(1),
                    rel_type: "S".into(),
                    props: Default::default(),
                }],
                _ => vec![Op::DeleteRelationship(i / 4)],
            };
            s.commit(&ops)
                .unwrap_or_else(|e| panic!("tx {}: {e}", i + 1));
        }
        drop(s);
        let mut r = LogReader::open(fs(), dir, 1).unwrap().unwrap().reader;
        std::iter::from_fn(|| r.next(40).unwrap()).collect()
    }

    /// Applies `entries` to the store in `dir` as one run of a backup that keeps transactions:
    /// its undo segment, planned to end at `planned_end`, then the entries.
    fn run(dir: &Path, entries: &[TxEntry], planned_end: u64) {
        let mut b = Store::open(fs(), clock(), dir, &StoreOptions::default()).unwrap();
        let images = b
            .images_before(entries.iter().flat_map(|e| &e.records))
            .unwrap();
        let from = b.status().last_committed_tx;
        history::write_segment(&*fs(), dir, from, planned_end, &b.state(), &images).unwrap();
        b.apply_committed_batch(entries).unwrap();
        b.close().unwrap();
    }

    fn restore_to(from: &Path, to: &Path, tx: u64) -> Result<String, RestoreError> {
        restore(
            fs(),
            clock(),
            &OsBlocking,
            from,
            to,
            false,
            Some(Until::Tx(tx)),
            &mut |_, _, _| {},
        )
        .map(|r| r.report.digest)
    }

    // PIT-1, PIT-4, PIT-5, PIT-7, PIT-11: runs that crashed before logging, or after logging a
    // prefix, leave a chain that still restores every tx to the source's digest; a missing
    // segment cuts the range at the gap, a damaged header ends the chain there, and bytes after
    // a segment's last entry fail the restore that reads it.
    #[test]
    fn pit_4_crashed_runs_keep_the_chain_sound() {
        let dir = scratch();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let entries = source(&a);
        let digest = |tx: u64| entries[tx as usize - 1].after.digest.to_string();
        let mut s = Store::create(
            fs(),
            clock(),
            &b,
            &StoreOptions::default(),
            FormatVersion::V2,
            9,
        )
        .unwrap();
        s.apply_committed_batch(&entries[..5]).unwrap();
        s.close().unwrap();
        let e = |from: u64, to: u64| &entries[from as usize..to as usize];
        run(&b, e(5, 10), 10);
        run(&b, e(10, 20), 20);
        // A run that wrote its segment and crashed before logging: the next one from the same
        // tx replaces it.
        history::write_segment(
            &*fs(),
            &b,
            20,
            33,
            &Store::open(fs(), clock(), &b, &StoreOptions::default())
                .unwrap()
                .state(),
            &[],
        )
        .unwrap();
        run(&b, e(20, 23), 30);
        // Planned to 30, only 23 logged (a crash); the next run starts at 23.
        run(&b, e(23, 40), 40);
        let r = history::restorable(&*fs(), &b, 40).unwrap();
        assert_eq!(
            (r.from_tx, r.to_tx),
            (5, 40),
            "PIT-4, PIT-5: the chain reaches the first segment"
        );
        for t in [5, 6, 9, 10, 17, 20, 21, 22, 23, 31, 39] {
            let to = dir.path().join(format!("r{t}"));
            assert_eq!(
                restore_to(&b, &to, t).unwrap(),
                digest(t),
                "PIT-7: restored to tx {t}"
            );
        }

        // PIT-5: a gap ends the chain above it.
        std::fs::remove_file(b.join(undo_name(10))).unwrap();
        let r = history::restorable(&*fs(), &b, 40).unwrap();
        assert_eq!(
            r.from_tx, 20,
            "PIT-5: without segment 10 the range starts at 20"
        );
        let err = restore_to(&b, &dir.path().join("gap"), 12).unwrap_err();
        assert!(
            matches!(err, RestoreError::NotKept { .. }) && err.exit_code() == 1,
            "PIT-10: {err}"
        );

        // PIT-1: a header that does not check ends the chain there.
        let path = b.join(undo_name(23));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[13] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            history::restorable(&*fs(), &b, 40).unwrap().from_tx,
            40,
            "PIT-1: a damaged header breaks the chain at it"
        );
        bytes[13] ^= 1;
        // PIT-1, PIT-11: bytes after the last entry make the segment damaged; the restore
        // that needs it fails and leaves no target.
        bytes.extend_from_slice(b"tail");
        std::fs::write(&path, &bytes).unwrap();
        let to = dir.path().join("tail");
        let err = restore_to(&b, &to, 21).unwrap_err();
        assert!(
            err.to_string().contains("bytes after its last entry") && err.exit_code() == 1,
            "PIT-11: {err}"
        );
        assert!(
            !to.join("CURRENT").exists(),
            "PIT-11: a failed rewind leaves no live target"
        );
    }

    // PIT-1: a segment of more images than one entry holds is written as entries of at most
    // 4096 images, each a log entry of the segment's tx with the state at it; a rewind reads
    // them all back and cuts the files to that state's marks. Only canonical names are
    // segments.
    #[test]
    fn pit_1_a_large_segment_spans_entries_and_rewinds_whole() {
        use online_backup::store::format::{NodeRecord, RecordKind};
        use online_backup::store::log::{read_entry, ReadOutcome, RecordImage, TxState};
        use online_backup::store::records::RecordFiles;

        let dir = scratch();
        let (b, copy) = (dir.path().join("b"), dir.path().join("copy"));
        Store::create(
            fs(),
            clock(),
            &b,
            &StoreOptions::default(),
            FormatVersion::V2,
            3,
        )
        .unwrap()
        .close()
        .unwrap();
        let images: Vec<RecordImage> = (0..5000u64)
            .map(|id| {
                RecordImage::Node(
                    id,
                    NodeRecord {
                        in_use: true,
                        first_rel: u64::MAX,
                        payload_block: u64::MAX,
                        payload_len: 0,
                    },
                )
            })
            .collect();
        let state = TxState {
            next_node: 4999,
            ..TxState::empty()
        };
        history::write_segment(&*fs(), &b, 0, 1, &state, &images).unwrap();
        std::fs::write(b.join("neostore.undo.00"), b"not canonical").unwrap();
        assert_eq!(
            history::list_segments(&*fs(), &b).unwrap(),
            [0],
            "PIT-1: only the canonical name is a segment"
        );

        let path = b.join(undo_name(0));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"NEOUNDO\0", "PIT-1: the magic");
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(
            (u32_at(8), u64_at(12), u64_at(20), u32_at(28)),
            (1, 0, 1, 2),
            "PIT-1: layout version, S, E, entries"
        );
        assert_eq!(
            u32_at(60),
            crc32c::crc32c(&bytes[..60]),
            "PIT-1: the header's CRC32C"
        );
        let file = fs().open(&path, online_backup::io::OpenMode::Read).unwrap();
        let mut at = 64;
        let mut counts = Vec::new();
        while let ReadOutcome::Entry(entry, next) =
            read_entry(&*file, at, bytes.len() as u64).unwrap()
        {
            assert_eq!((entry.tx_id, entry.after), (0, state), "PIT-1: each entry");
            counts.push(entry.records.len());
            at = next;
        }
        assert_eq!(
            (counts, at),
            (vec![4096, 904], bytes.len() as u64),
            "PIT-1: at most 4096 images an entry, nothing after the last"
        );

        // The rewind writes every image back, then cuts the node file to the mark (4999).
        std::fs::create_dir(&copy).unwrap();
        for kind in RecordKind::ALL {
            std::fs::copy(b.join(kind.file_name()), copy.join(kind.file_name())).unwrap();
        }
        let range = history::restorable(&*fs(), &b, 1).unwrap();
        assert_eq!((range.from_tx, range.to_tx), (0, 1), "PIT-5");
        let (at, got) = history::rewind(&*fs(), &b, &copy, FormatVersion::V2, &range, 0)
            .unwrap()
            .unwrap();
        assert_eq!(
            (at, got),
            (0, state),
            "PIT-7: the state at the segment's tx"
        );
        let files = RecordFiles::open(&*fs(), &copy, FormatVersion::V2, false).unwrap();
        let size = RecordKind::Node.size(FormatVersion::V2) as u64;
        assert_eq!(
            std::fs::metadata(copy.join(RecordKind::Node.file_name()))
                .unwrap()
                .len(),
            4999 * size,
            "PIT-7: the node file cut to the mark"
        );
        for id in [0, 4095, 4096, 4998] {
            assert!(
                files.read_node(id).unwrap().in_use,
                "PIT-7: node {id} written back"
            );
        }
    }

    // PIT-5: the chain stops at the first segment whose next tx the logs no longer hold (the
    // oldest log file's previous tx says where they start), at a segment that does not reach
    // the newer part of the chain, and at a header that is not one; PIT-1: a header is one only
    // with the magic, the layout version, S below E and its CRC.
    #[test]
    fn pit_5_the_chain_needs_the_logs_after_each_segment() {
        use online_backup::digest::Digest;
        use online_backup::store::log::{log_path, LogHeader, TxState};

        let dir = scratch();
        let d = dir.path();
        let state = TxState::empty();
        for (from, to) in [(5, 10), (10, 20), (20, 30)] {
            history::write_segment(&*fs(), d, from, to, &state, &[]).unwrap();
        }
        let logs_from = |prev_last_tx: u64| {
            let header = LogHeader {
                log_version: 3,
                prev_last_tx,
                prev_digest: Digest([0; 32]),
            };
            std::fs::write(log_path(d, 3), header.encode()).unwrap();
            history::restorable(&*fs(), d, 30).unwrap().from_tx
        };
        assert_eq!(logs_from(4), 5, "PIT-5: the logs hold tx 5 on");
        assert_eq!(
            logs_from(5),
            5,
            "PIT-5: the logs hold tx 6 on, all a rewind to 5 replays"
        );
        assert_eq!(
            logs_from(6),
            10,
            "PIT-5: tx 6 is gone: the chain stops at 10"
        );
        assert_eq!(logs_from(25), 30, "PIT-5: nothing to go back with");
        std::fs::remove_file(log_path(d, 3)).unwrap();
        history::write_segment(&*fs(), d, 29, 30, &state, &[]).unwrap();
        assert_eq!(
            history::restorable(&*fs(), d, 30).unwrap().from_tx,
            30,
            "PIT-5: without logs, nothing to go back with, not even one tx"
        );
        std::fs::remove_file(d.join(undo_name(29))).unwrap();
        logs_from(0);

        // A segment that does not reach the next one's tx ends the chain there.
        history::write_segment(&*fs(), d, 10, 19, &state, &[]).unwrap();
        assert_eq!(
            history::restorable(&*fs(), d, 30).unwrap().from_tx,
            20,
            "PIT-5: segment 10 ends at 19, before 20"
        );
        history::write_segment(&*fs(), d, 10, 20, &state, &[]).unwrap();

        // A segment under another segment's name is damaged: its header says which tx it
        // brings back.
        std::fs::copy(d.join(undo_name(20)), d.join(undo_name(25))).unwrap();
        assert_eq!(
            history::restorable(&*fs(), d, 30).unwrap().from_tx,
            30,
            "PIT-1: undo segment 25 holds segment 20"
        );
        std::fs::remove_file(d.join(undo_name(25))).unwrap();

        // An empty segment still carries the state and rewinds to it (a run that only created).
        let r = history::restorable(&*fs(), d, 30).unwrap();
        assert_eq!(r.from_tx, 5);
        let copy = d.join("copy");
        std::fs::create_dir(&copy).unwrap();
        for kind in online_backup::store::format::RecordKind::ALL {
            std::fs::write(copy.join(kind.file_name()), b"").unwrap();
        }
        let rewound = history::rewind(&*fs(), d, &copy, FormatVersion::V2, &r, 7).unwrap();
        assert_eq!(
            rewound,
            Some((5, state)),
            "PIT-7: back to 5, to replay 6 and 7"
        );
        assert_eq!(
            history::rewind(&*fs(), d, &copy, FormatVersion::V2, &r, 30).unwrap(),
            None,
            "PIT-7: the last tx needs no rewind"
        );

        // Headers that are not one: each ends the chain at it.
        let path = d.join(undo_name(20));
        let good = std::fs::read(&path).unwrap();
        let with = |at: usize, byte: u8| {
            let mut b = good.clone();
            b[at] = byte;
            let crc = crc32c::crc32c(&b[..60]);
            b[60..64].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&path, &b).unwrap();
            history::restorable(&*fs(), d, 30).unwrap().from_tx
        };
        assert_eq!(with(0, b'X'), 30, "PIT-1: another magic");
        assert_eq!(with(8, 2), 30, "PIT-1: another layout version");
        assert_eq!(with(20, 20), 30, "PIT-1: E not above S");
        let mut bad_crc = good.clone();
        bad_crc[63] ^= 1;
        std::fs::write(&path, &bad_crc).unwrap();
        assert_eq!(
            history::restorable(&*fs(), d, 30).unwrap().from_tx,
            30,
            "PIT-1: a CRC that does not match"
        );
        assert_eq!(with(0, good[0]), 5, "the header as written");

        // PIT-6: a segment that cannot be removed fails the pruning (the next run tries
        // again), after those before it went.
        let failing = crate::support::faulty::Faulty {
            fail_removals: Some(crate::support::faulty::Files::named(".undo.20")),
            armed: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            ..Default::default()
        };
        let err = history::prune::<online_backup::store::StoreError>(&failing, d, None, |_| Ok(()))
            .unwrap_err();
        assert!(
            err.to_string().contains("removing"),
            "PIT-6: a failed removal is an error: {err}"
        );
        assert_eq!(
            history::list_segments(&*fs(), d).unwrap(),
            [20],
            "PIT-6: segments 5 and 10 were removed first"
        );
    }
}

// PIT-3, RET-13: without --keep-transactions a backup's own store keeps only the logs recovery
// needs: once its log has rotated (past 25 MiB of shipped transactions), the next run's
// checkpoint prunes the older file; with `--keep-transactions true` the same runs keep it.
#[test]
fn pit_3_a_backup_keeps_only_the_logs_recovery_needs_by_default() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let (lean, keeping) = (dir.path().join("lean"), dir.path().join("keeping"));
    let logs = |b: &Path| {
        std::fs::read_dir(b.join(current(b)))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy()
                    .starts_with("neostore.transaction.db.")
            })
            .count()
    };
    backup_from(&addr, &lean, &[]).expect(0);
    backup_from(&addr, &keeping, &["--keep-transactions", "true"]).expect(0);
    write_big(&server, 180, None);
    for _ in 0..2 {
        backup_from(&addr, &lean, &[]).expect(0);
        backup_from(&addr, &keeping, &["--keep-transactions", "true"]).expect(0);
        write_nodes(&server, 1);
    }
    assert!(
        logs(&keeping) >= 2,
        "PIT-3: the backup's log rotated and `true` kept the older file: {}",
        logs(&keeping)
    );
    assert_eq!(
        logs(&lean),
        1,
        "PIT-3, RET-13: by default only the log recovery needs is kept"
    );
}
