//! The backup client against the real service in this process, where a test needs to reach
//! inside: a tampering proxy, a small disk, a disk that forgets overwrites (BK-16, BK-27, BK-28).

use super::hostile_server::rewriting_proxy;
use super::*;

/// A proxy in front of a backup service that forwards every frame but replaces the digest of
/// each end frame: a server whose claimed state the backup cannot match.
async fn tampering_proxy(real: String) -> String {
    rewriting_proxy(
        real,
        std::sync::Arc::new(|m| match m {
            Message::End { last_tx, .. } => vec![Message::End {
                last_tx,
                digest: Digest([0xab; 32]),
            }],
            other => vec![other],
        }),
    )
    .await
}

pub fn backup_options(addr: &str, target: &Path, mode: client::Mode) -> client::BackupOptions {
    let (host, port) = addr.rsplit_once(':').unwrap();
    client::BackupOptions {
        host: host.to_string(),
        port: port.parse().unwrap(),
        target: target.to_path_buf(),
        mode,
        verify: client::Verify::Default,
        timeout: Duration::from_secs(30),
        max_rate: None,
        tls: None,
        apply_run_txs: client::APPLY_RUN_TXS,
        scrub_percent: client::SCRUB_PERCENT,
        keep_transactions: online_backup::retention::RetentionPolicy::KeepRecoveryOnly,
        keep_generations: 1,
    }
}

pub fn live_meta(target: &Path) -> online_backup::store::meta::Meta {
    let live = online_backup::store::layout::resolve(&*support::fs(), target).unwrap();
    online_backup::store::meta::Meta::read(&*support::fs(), &live).unwrap()
}

use online_backup::backup::client;

// BK-28, BK-20, BK-12, BK-25: an end frame whose digest the backup cannot match fails
// verification with exit 6. After an in-place incremental the backup is marked unverified but
// stays valid; the next run then refuses incremental (exit 7) or takes a full backup (auto),
// which clears the mark. After a full backup into a new generation, the new generation is
// discarded and the previous backup stays live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_28_verification_failure_marks_the_backup_unverified() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    let target = dir.path().join("backup");
    let server = TestServer::start(&store, "").await;
    server.commit_nodes(5).await;
    let env = Env::os();
    let real = server.backup_addr();
    let proxy = tampering_proxy(real.clone()).await;
    let mut lines = client::Lines::default();
    let first = client::run(
        &env,
        &backup_options(&real, &target, client::Mode::Auto),
        &mut lines,
    )
    .await
    .unwrap();
    assert_eq!(first.kind, client::Kind::Full);

    server.commit_nodes(5).await;
    let err = client::run(
        &env,
        &backup_options(&proxy, &target, client::Mode::Auto),
        &mut lines,
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 6, "{err}");
    let meta = live_meta(&target);
    assert!(meta.unverified, "the backup is marked unverified");
    let report =
        online_backup::store::check::check(support::fs(), support::clock(), &target).unwrap();
    assert!(
        report.consistent,
        "a backup marked unverified is still a valid store"
    );

    let err = client::run(
        &env,
        &backup_options(&real, &target, client::Mode::Incremental),
        &mut lines,
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 7, "{err}");
    assert!(err.to_string().contains("unverified"), "{err}");

    let again = client::run(
        &env,
        &backup_options(&real, &target, client::Mode::Auto),
        &mut lines,
    )
    .await
    .unwrap();
    assert_eq!(again.kind, client::Kind::Full);
    assert!(again.reason.contains("unverified"), "{}", again.reason);
    assert!(!live_meta(&target).unverified);
    let pointer_before = std::fs::read(target.join("CURRENT")).unwrap();
    let names_before: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    let err = client::run(
        &env,
        &backup_options(&proxy, &target, client::Mode::Full),
        &mut lines,
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 6, "{err}");
    assert_eq!(
        std::fs::read(target.join("CURRENT")).unwrap(),
        pointer_before
    );
    let mut names_after: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names_after.sort();
    let mut names_before = names_before;
    names_before.sort();
    assert_eq!(
        names_after, names_before,
        "the failed generation was discarded"
    );
    assert!(!live_meta(&target).unverified);
    server.stop().await;
}

// BK-16, BK-17, BK-42: a full backup that would not fit is refused before anything is written
// (and its plan says so), both into an empty directory and as the fallback over an existing
// backup, which stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_16_no_room_is_refused_before_writing() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    generate_big(&store);
    let server = TestServer::start(&store, "").await;
    let real = server.backup_addr();
    // The real disk, reporting `free` bytes of room whatever it has.
    let with_free = |free: u64| Env {
        fs: std::sync::Arc::new(support::faulty::Faulty {
            free: Some(free),
            ..Default::default()
        }),
        ..Env::os()
    };
    let small = with_free(1 << 20);
    let target = dir.path().join("backup");
    std::fs::create_dir(&target).unwrap();
    let mut lines = client::Lines::default();
    // BK-42: the plan says so too, with the code the run exits with.
    let err = client::plan(
        &small,
        &backup_options(&real, &target, client::Mode::Auto),
        &mut lines,
    )
    .await
    .unwrap_err();
    assert!(
        err.exit_code() == 1 && err.to_string().contains("not enough room"),
        "BK-42: a plan without room for the full backup fails as the run would: {err}"
    );
    let err = client::run(
        &small,
        &backup_options(&real, &target, client::Mode::Auto),
        &mut lines,
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("not enough room"), "{err}");
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "nothing was written"
    );
    // BK-9: the sentence the tool prints for it (the binary adds "neo4j-backup: ").
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&dir.path().display().to_string()), "<tmp>");
    settings.add_filter(r"\d+(\.\d+)? (B|KiB|MiB|GiB)\b", "<size>");
    settings.add_filter(r"\(\d+ bytes\)", "(<n> bytes)");
    settings.set_prepend_module_to_snapshot(false);
    // The snapshots of every outcome live together in tests/snapshots.
    settings.set_snapshot_path("../snapshots");
    settings.bind(|| insta::assert_snapshot!("no_room", err.to_string()));

    // A backup made with room, then a full backup asked for without it: untouched.
    client::run(
        &Env::os(),
        &backup_options(&real, &target, client::Mode::Auto),
        &mut lines,
    )
    .await
    .unwrap();
    let snapshot = |p: &Path| {
        let mut all = Vec::new();
        for gen in std::fs::read_dir(p).unwrap() {
            let gen = gen.unwrap().path();
            if gen.is_dir() {
                for f in std::fs::read_dir(&gen).unwrap() {
                    let f = f.unwrap().path();
                    all.push((f.clone(), std::fs::read(&f).unwrap()));
                }
            } else {
                all.push((gen.clone(), std::fs::read(&gen).unwrap()));
            }
        }
        all.sort();
        all
    };
    let before = snapshot(&target);
    let err = client::run(
        &small,
        &backup_options(&real, &target, client::Mode::Full),
        &mut lines,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not enough room"), "{err}");
    assert!(before == snapshot(&target), "the existing backup changed");

    // Exactly the room needed (the store files, a sixteenth more and 1 MiB) is enough; a byte
    // less is not.
    let bytes = client::plan(
        &Env::os(),
        &backup_options(&real, &dir.path().join("planned"), client::Mode::Auto),
        &mut lines,
    )
    .await
    .unwrap()
    .bytes;
    let needed = bytes + bytes / 16 + (1 << 20);
    let err = client::run(
        &with_free(needed - 1),
        &backup_options(&real, &dir.path().join("short"), client::Mode::Auto),
        &mut lines,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("not enough room"),
        "BK-16: a byte short of {needed}: {err}"
    );
    let exact = backup_options(&real, &dir.path().join("exact"), client::Mode::Auto);
    let planned = client::plan(&with_free(needed), &exact, &mut lines)
        .await
        .unwrap_or_else(|e| panic!("BK-42: a plan with exactly {needed} bytes of room: {e}"));
    assert_eq!(planned.bytes, bytes, "BK-42");
    let err = client::plan(&with_free(needed - 1), &exact, &mut lines)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not enough room"),
        "BK-42: a plan a byte short of {needed}: {err}"
    );
    client::run(&with_free(needed), &exact, &mut lines)
        .await
        .unwrap_or_else(|e| panic!("BK-16: exactly {needed} bytes of room are enough: {e}"));
    server.stop().await;
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// BK-27, BK-26: after an incremental, `-verify true` reads back every record the transactions
// wrote and compares it with its after-image. A disk that drops overwrites of node records
// (while the digest, carried in the entries, still matches the end frame) fails the run with
// exit 6; with `-verify false` the same run succeeds, and only a check of the backup finds the
// damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_27_the_read_back_catches_a_record_the_disk_did_not_keep() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    let backups = dir.path().join("backups");
    let (checked, unchecked) = (backups.join("checked"), backups.join("unchecked"));
    let server = TestServer::start(&store, "").await;
    server.commit_nodes(5).await;
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let env = Env {
        fs: std::sync::Arc::new(support::faulty::Faulty {
            forget_overwrites: Some(support::faulty::Files {
                under: Some(backups.clone()),
                name: RecordKind::ALL[0].file_name(),
            }),
            armed: armed.clone(),
            ..Default::default()
        }),
        ..Env::os()
    };
    let real = server.backup_addr();
    let mut lines = client::Lines::default();
    for target in [&checked, &unchecked] {
        let full = client::run(
            &env,
            &backup_options(&real, target, client::Mode::Auto),
            &mut lines,
        )
        .await
        .unwrap();
        assert_eq!(full.kind, client::Kind::Full);
    }
    // Transactions that rewrite node records the backups already hold: node 0's properties,
    // and both ends' relationship chains.
    let body = r#"{"ops":[{"set_property":{"node":0,"key":"k","value":"changed"}},{"create_relationship":{"from":0,"to":1,"type":"R","props":{}}}]}"#;
    let rewrote = server.http("POST", "/db/data/transaction", body).await["tx_id"]
        .as_u64()
        .unwrap();
    // A later transaction in the same run that only adds records: the error names the tx that
    // wrote the record that differs, not the run's last.
    server.commit_nodes(1).await;
    armed.store(true, std::sync::atomic::Ordering::SeqCst);

    let err = client::run(
        &env,
        &backup_options(&real, &checked, client::Mode::Incremental),
        &mut lines,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.exit_code(),
        6,
        "BK-27: a record that does not read back as written fails verification: {err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("written by tx {rewrote} reads back differently")),
        "BK-27: the error names the tx that wrote the record (tx {rewrote}): {err}"
    );

    let options = client::BackupOptions {
        verify: client::Verify::Off,
        ..backup_options(&real, &unchecked, client::Mode::Incremental)
    };
    let summary = client::run(&env, &options, &mut lines).await.unwrap();
    assert_eq!(summary.kind, client::Kind::Incremental);
    let report =
        online_backup::store::check::check(support::fs(), support::clock(), &unchecked).unwrap();
    assert!(
        !report.consistent,
        "BK-27: without the read-back the lost write goes unnoticed until a check: {:?}",
        report.findings
    );
    server.stop().await;
}

// BK-40, BK-13: a read of the backup's metadata that fails is an I/O failure (exit 1), not a
// finding that the directory holds no valid backup (exit 3), and nothing changes. Found by the
// `backup_io_faults` simulation: an EIO reading `neostore.meta` made the tool call a good
// backup "not a valid backup directory".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_40_a_failed_read_of_the_metadata_is_an_io_failure() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    let target = dir.path().join("backup");
    let server = TestServer::start(&store, "").await;
    server.commit_nodes(3).await;
    let real = server.backup_addr();
    let mut lines = client::Lines::default();
    client::run(
        &Env::os(),
        &backup_options(&real, &target, client::Mode::Auto),
        &mut lines,
    )
    .await
    .unwrap();
    let before = live_meta(&target);
    let failing = Env {
        fs: std::sync::Arc::new(support::faulty::Faulty {
            fail_opens: Some((support::faulty::Files::named("neostore.meta"), libc::EIO)),
            armed: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            ..Default::default()
        }),
        ..Env::os()
    };
    let err = client::run(
        &failing,
        &backup_options(&real, &target, client::Mode::Auto),
        &mut lines,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.exit_code(),
        1,
        "BK-40: an I/O failure reading the metadata: {err}"
    );
    assert!(
        !err.to_string().contains("not a valid backup directory"),
        "BK-13: the backup was not found invalid: {err}"
    );
    assert_eq!(live_meta(&target), before, "BK-17: nothing changed");
    server.stop().await;
}

/// The real disk, where every write to a file under `under` whose name ends with `name` fails.
fn failing_writes(under: &Path, name: &'static str) -> Env {
    Env {
        fs: std::sync::Arc::new(support::faulty::Faulty {
            fail_writes: Some(support::faulty::Files {
                under: Some(under.to_path_buf()),
                name,
            }),
            armed: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            ..Default::default()
        }),
        ..Env::os()
    }
}

// PIT-4, MF-5: an incremental that keeps transactions writes its undo segment, then fails
// before it logs anything (the log write fails); the next run starts again from the same tx and
// replaces the segment, which the manifest lists by then, with one that reaches further. The
// manifest is told first, so the generation still verifies whole afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pit_4_mf_5_a_segment_a_failed_run_left_is_replaced_and_rehashed() {
    use online_backup::backup::{history, manifest};
    let dir = support::scratch();
    let store = dir.path().join("db");
    let target = dir.path().join("backup");
    let server = TestServer::start(&store, "").await;
    server.commit_nodes(5).await;
    let real = server.backup_addr();
    let mut lines = client::Lines::default();
    let options = |mode| client::BackupOptions {
        keep_transactions: online_backup::retention::RetentionPolicy::KeepAll,
        ..backup_options(&real, &target, mode)
    };
    let full = client::run(&Env::os(), &options(client::Mode::Auto), &mut lines)
        .await
        .unwrap();
    assert_eq!(full.kind, client::Kind::Full);
    assert!(
        lines.0.iter().any(|l| l.starts_with("full backup from")),
        "BK-9: the lines kept say which backup the run took: {:?}",
        lines.0
    );
    let live = online_backup::store::layout::resolve(&*support::fs(), &target).unwrap();
    let log = std::fs::read_dir(&live)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(online_backup::store::log::LOG_PREFIX))
        .max()
        .unwrap();
    let failing = failing_writes(&target, Box::leak(log.into_boxed_str()));
    server.commit_nodes(2).await;
    let err = client::run(&failing, &options(client::Mode::Incremental), &mut lines)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 1, "PIT-4: the log write failed: {err}");
    let segment = live.join(history::undo_name(full.to_tx));
    let left = std::fs::read(&segment).expect("PIT-4: the failed run left its segment");

    server.commit_nodes(3).await;
    let next = client::run(&Env::os(), &options(client::Mode::Incremental), &mut lines)
        .await
        .unwrap();
    assert_eq!(
        (next.kind, next.from_tx),
        (client::Kind::Incremental, Some(full.to_tx)),
        "PIT-4: the next run starts again from the tx the failed one started from"
    );
    assert_ne!(
        std::fs::read(&segment).unwrap(),
        left,
        "PIT-4: the segment was replaced by one reaching tx {}",
        next.to_tx
    );
    let quick = manifest::quick_check(&*support::fs(), &target).unwrap();
    assert!(
        quick.report.findings.is_empty() && quick.report.unchecked.is_empty(),
        "MF-5: the replaced segment was rehashed: {:?}",
        quick.report.findings
    );
    server.stop().await;
}

// MF-8: each run of transactions of an incremental makes the blocks it is about to write
// pending, durably, before it writes them, not only the first run: here the first run writes
// no relationship, the second creates one in a relationship file of several blocks, and its
// record write fails after the log took it. The manifest on disk already names the
// relationship file's blocks, so the next run rehashes what recovery writes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mf_8_every_run_of_transactions_makes_its_blocks_pending_before_it_writes() {
    use online_backup::backup::manifest::{self, Manifest, BLOCK_SIZE};
    let dir = support::scratch();
    let store = dir.path().join("db");
    let target = dir.path().join("backup");
    generate_big(&store);
    let rels = RecordKind::ALL[1].file_name();
    assert!(
        std::fs::metadata(store.join(rels)).unwrap().len() > 2 * BLOCK_SIZE as u64,
        "the relationship file spans several blocks"
    );
    let server = TestServer::start(&store, "").await;
    let real = server.backup_addr();
    let mut lines = client::Lines::default();
    let options = client::BackupOptions {
        apply_run_txs: 1,
        ..backup_options(&real, &target, client::Mode::Auto)
    };
    client::run(&Env::os(), &options, &mut lines).await.unwrap();
    for body in [
        r#"{"ops":[{"set_property":{"node":5,"key":"k","value":"v"}}]}"#,
        r#"{"ops":[{"create_relationship":{"from":25000,"to":25001,"type":"R","props":{}}}]}"#,
    ] {
        server.http("POST", "/db/data/transaction", body).await;
    }
    let failing = failing_writes(&target, rels);
    let err = client::run(&failing, &options, &mut lines)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 1, "MF-8: the record write failed: {err}");
    let live = online_backup::store::layout::resolve(&*support::fs(), &target).unwrap();
    let on_disk = Manifest::read(&*support::fs(), &live).unwrap().unwrap();
    assert!(
        on_disk.pending.to_end(rels),
        "MF-8: the second run's relationship blocks were not pending on disk before it wrote: {:?}",
        on_disk.pending.files().collect::<Vec<_>>()
    );
    let next = client::run(&Env::os(), &options, &mut lines).await.unwrap();
    assert_eq!(next.kind, client::Kind::Incremental, "MF-7");
    let quick = manifest::quick_check(&*support::fs(), &target).unwrap();
    assert!(
        quick.report.findings.is_empty(),
        "MF-7: after the next run the generation verifies whole: {:?}",
        quick.report.findings
    );
    server.stop().await;
}

/// An observer that keeps the lines and the progress of a full backup's copy.
#[derive(Default)]
struct CopyProgress {
    lines: Vec<String>,
    copy: Vec<(u64, u64)>,
}

impl client::Observer for CopyProgress {
    fn line(&mut self, text: &str) {
        self.lines.push(text.to_string());
    }
    fn progress(&mut self, phase: client::Phase, done: u64, total: u64) {
        if phase == client::Phase::Copy {
            self.copy.push((done, total));
        }
    }
}

// BK-44, BK-9: a full backup's copy reports the bytes received of the store's bytes as they
// arrive, rising to all of them, and says how much it copied before it applies the
// transactions after the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_44_the_copy_reports_the_bytes_received_up_to_the_whole() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    let target = dir.path().join("backup");
    let server = TestServer::start(&store, "").await;
    server.commit_padded(40, 2000).await;
    let mut seen = CopyProgress::default();
    let full = client::run(
        &Env::os(),
        &backup_options(&server.backup_addr(), &target, client::Mode::Auto),
        &mut seen,
    )
    .await
    .unwrap();
    assert_eq!(full.kind, client::Kind::Full);
    let &(done, total) = seen
        .copy
        .last()
        .expect("BK-44: the copy reported no progress");
    assert!(
        total > 0 && done == total,
        "BK-44: the copy ended at {done} of {total} bytes: {:?}",
        seen.copy
    );
    assert!(
        seen.copy.windows(2).all(|w| w[0].0 < w[1].0) && seen.copy[0].0 > 0,
        "BK-44: each report counts the bytes received so far: {:?}",
        seen.copy
    );
    let copied = format!(
        "copied {} of store files",
        online_backup::units::bytes(total)
    );
    assert!(
        seen.lines.iter().any(|l| l.starts_with(&copied)),
        "BK-9: no line says `{copied}`: {:?}",
        seen.lines
    );
    server.stop().await;
}

// BK-41: under --max-rate the tool asks for a receive buffer of an eighth of a second at the
// rate, no less than 64 KiB and no more than 4 MiB.
#[test]
fn bk_41_the_paced_receive_buffer_is_an_eighth_of_a_second_within_bounds() {
    use client::paced_buffer;
    assert_eq!(
        [
            paced_buffer(1),
            paced_buffer(512 << 10),
            paced_buffer(4 << 20),
            paced_buffer(32 << 20),
            paced_buffer(1 << 40),
            paced_buffer(u64::MAX)
        ],
        [64 << 10, 64 << 10, 512 << 10, 4 << 20, 4 << 20, 4 << 20],
        "BK-41"
    );
}
