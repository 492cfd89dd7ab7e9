//! The protocol from the wire: a hand-driven client speaking frames to the real service
//! (PR-3 .. PR-19).

use super::*;

// PR-4: the welcome reports what `GET /db/data/` reports, and the record files' total size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_4_welcome_describes_the_server() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    let server = TestServer::start(&store, "").await;
    server.commit_nodes(5).await;
    let status = server.status().await;
    let (_, welcome) = Client::connect(&server.backup_addr()).await;
    let (id, format, last, oldest, bytes) = welcome_fields(&welcome);
    assert_eq!(id.to_string(), status["store_id"].as_str().unwrap());
    assert_eq!(
        format.to_string(),
        status["format_version"].as_str().unwrap()
    );
    assert_eq!(last, status["last_committed_tx"].as_u64().unwrap());
    assert_eq!(oldest, status["oldest_logged_tx"].as_u64().unwrap());
    let files: u64 = RecordKind::ALL
        .iter()
        .map(|k| std::fs::metadata(store.join(k.file_name())).unwrap().len())
        .sum();
    assert_eq!(bytes, files);
    server.stop().await;
}

// PR-10, PR-11, PR-12, PR-13, PR-16, PR-20: a full backup while commits go on: a full start at
// a checkpoint C, three record files in chunks of at most 1 MiB with matching CRCs, then the
// transactions after C up to U, each equal to the server's log entry, and an end frame with the
// server's digest at U. Commits made while the client stalls mid-stream succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_13_full_stream_under_commits() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    generate_big(&store);
    let server = TestServer::start(&store, "").await;
    let before = server.commit_nodes(20).await;
    let (mut c, _) = Client::connect(&server.backup_addr()).await;
    c.send(&Message::Request(Request::Full)).await;
    let (checkpoint_tx, files, state) = match c.recv().await {
        Message::FullStart {
            checkpoint_tx,
            files,
            state,
        } => (checkpoint_tx, files, state),
        other => panic!("expected a full start, got {other:?}"),
    };
    assert_eq!(
        checkpoint_tx, before,
        "PR-10: the checkpoint is at the last committed tx"
    );
    assert_eq!(files, 3);
    // PR-20: the client stalls; the server keeps committing.
    let during = tokio::time::timeout(Duration::from_secs(20), server.commit_nodes(30))
        .await
        .expect("commits go on while a backup is mid-stream");
    let mut names = Vec::new();
    for _ in 0..files {
        let (name, len) = match c.recv().await {
            Message::FileStart { name, len } => (name, len),
            other => panic!("expected a file start, got {other:?}"),
        };
        let mut crc = 0u32;
        let mut got = 0u64;
        loop {
            match c.recv().await {
                Message::FileChunk(b) => {
                    assert!(b.len() <= CHUNK_SIZE, "PR-6: a chunk is at most 1 MiB");
                    crc = crc32c::crc32c_append(crc, &b);
                    got += b.len() as u64;
                }
                Message::FileEnd { crc: sent } => {
                    assert_eq!(sent, crc);
                    break;
                }
                other => panic!("expected a chunk, got {other:?}"),
            }
        }
        assert_eq!(got, len);
        names.push(name);
    }
    let expected: Vec<String> = RecordKind::ALL
        .iter()
        .map(|k| k.file_name().to_string())
        .collect();
    assert_eq!(names, expected);
    let mut reader = LogReader::open(support::fs(), &store, checkpoint_tx + 1)
        .unwrap()
        .unwrap()
        .reader;
    let mut next = checkpoint_tx + 1;
    let mut digest_at_last = state.digest;
    let (last, digest) = loop {
        match c.recv().await {
            Message::Tx(entry) => {
                assert_eq!(entry.tx_id, next);
                assert_eq!(
                    *entry,
                    reader.next(entry.tx_id).unwrap().unwrap(),
                    "PR-16: the frame carries the log's own entry"
                );
                digest_at_last = entry.after.digest;
                next += 1;
            }
            Message::End { last_tx, digest } => break (last_tx, digest),
            other => panic!("expected a transaction, got {other:?}"),
        }
    };
    assert_eq!(last, next - 1);
    // The files (25 MB) could not all be in flight while the client stalled, so the commits
    // made meanwhile were done before the server read the last tx.
    assert!(
        last >= during,
        "U ({last}) is at least what was committed before the files were sent ({during})"
    );
    assert_eq!(
        digest, digest_at_last,
        "the end frame carries the digest at U"
    );
    server.stop().await;
}

// PR-5, PR-14, PR-15: an incremental request from the last tx gets the end frame at once; one
// from an earlier tx gets exactly the transactions after it; several requests share a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_15_incremental_streams_the_rest() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    let server = TestServer::start(&store, "").await;
    server.commit_nodes(10).await;
    let mid = server.status().await;
    let n = mid["last_committed_tx"].as_u64().unwrap();
    let mid_digest = Digest::from_hex(&digest_of(&mid)).unwrap();
    server.commit_nodes(7).await;
    let now = server.status().await;
    let (mut c, welcome) = Client::connect(&server.backup_addr()).await;
    let (id, format, last, _, _) = welcome_fields(&welcome);
    // From the last tx: nothing to send.
    c.send(&Message::Request(Request::Incremental {
        store_id: id,
        format,
        last_tx: last,
        digest: Digest::from_hex(&digest_of(&now)).unwrap(),
    }))
    .await;
    match c.recv().await {
        Message::End { last_tx, digest } => {
            assert_eq!(last_tx, last);
            assert_eq!(digest.to_hex(), digest_of(&now));
        }
        other => panic!("expected the end at once, got {other:?}"),
    }
    // From N: N + 1 ..= last, on the same connection.
    c.send(&Message::Request(Request::Incremental {
        store_id: id,
        format,
        last_tx: n,
        digest: mid_digest,
    }))
    .await;
    let mut next = n + 1;
    loop {
        match c.recv().await {
            Message::Tx(e) => {
                assert_eq!(e.tx_id, next);
                next += 1;
            }
            Message::End { last_tx, digest } => {
                assert_eq!(last_tx, last);
                assert_eq!(next, last + 1);
                assert_eq!(digest.to_hex(), digest_of(&now));
                break;
            }
            other => panic!("expected a transaction, got {other:?}"),
        }
    }
    server.stop().await;
}

// PR-7, PR-14: each refusal, with its typed fields; after a refusal of code 4 or 5 the connection
// takes another request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_7_refusals_are_typed() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    let server = TestServer::start(
        &store,
        "logical_log_rotation_threshold=4k\nkeep_logical_logs=1 files\n",
    )
    .await;
    server.commit_nodes(60).await;
    let status = server.status().await;
    let oldest = status["oldest_logged_tx"].as_u64().unwrap();
    assert!(oldest > 2, "the logs were pruned (oldest {oldest})");
    let (mut c, welcome) = Client::connect(&server.backup_addr()).await;
    let (id, format, last, _, _) = welcome_fields(&welcome);
    let other_id = StoreId {
        created_millis: id.created_millis + 1,
        random: id.random,
    };
    let other_format = if format == FormatVersion::V1 {
        FormatVersion::V2
    } else {
        FormatVersion::V1
    };
    let zero = Digest([0; 32]);
    let cases = [
        (other_id, format, last, zero),
        (id, other_format, last, zero),
        (id, format, last + 5, zero),
        (id, format, 1, zero),
        (id, format, last, zero),
    ];
    let mut answers = Vec::new();
    for (store_id, format, last_tx, digest) in cases {
        c.send(&Message::Request(Request::Incremental {
            store_id,
            format,
            last_tx,
            digest,
        }))
        .await;
        answers.push(c.recv().await);
    }
    assert_eq!(
        answers,
        vec![
            Message::Refused(Refusal::StoreMismatch { server: id }),
            Message::Refused(Refusal::VersionMismatch { server: format }),
            Message::Refused(Refusal::Diverged {
                tx: last + 5,
                server_digest: None,
                server_last_tx: last
            }),
            Message::Refused(Refusal::LogsPruned { needed: 2, oldest }),
            Message::Refused(Refusal::Diverged {
                tx: last,
                server_digest: Some(Digest::from_hex(&digest_of(&status)).unwrap()),
                server_last_tx: last
            }),
        ]
    );
    // Still open: a full request is served.
    c.send(&Message::Request(Request::Full)).await;
    assert!(matches!(c.recv().await, Message::FullStart { .. }));
    server.stop().await;
}

// PR-3: a client of another protocol version is refused with the server's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_3_other_protocol_version_is_refused() {
    let dir = support::scratch();
    let server = TestServer::start(&dir.path().join("db"), "").await;
    let mut s = TcpStream::connect(server.backup_addr()).await.unwrap();
    write_message(&mut s, &Message::Hello { version: 99 })
        .await
        .unwrap();
    assert_eq!(
        read_message(&mut s).await.unwrap(),
        Message::Refused(Refusal::ProtocolVersion {
            server: PROTOCOL_VERSION
        })
    );
    server.stop().await;
}

// PR-17, RET-3: a backup mid-stream pins the logs from its checkpoint: rotations and pruning go
// on, but the oldest logged tx stays at or below C + 1 until the connection closes, after which
// pruning catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_17_a_running_backup_pins_its_logs() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    generate_big(&store);
    let server = TestServer::start(
        &store,
        "logical_log_rotation_threshold=4k\nkeep_logical_logs=false\n",
    )
    .await;
    server.commit_nodes(5).await;
    let (mut c, _) = Client::connect(&server.backup_addr()).await;
    c.send(&Message::Request(Request::Full)).await;
    let checkpoint_tx = match c.recv().await {
        Message::FullStart { checkpoint_tx, .. } => checkpoint_tx,
        other => panic!("expected a full start, got {other:?}"),
    };
    server.commit_nodes(80).await;
    let pinned = server.status().await;
    assert!(
        pinned["oldest_logged_tx"].as_u64().unwrap() <= checkpoint_tx + 1,
        "the pinned tx {} was pruned: {pinned}",
        checkpoint_tx + 1
    );
    drop(c);
    // The service notices the close on its next write; commits rotate and prune again.
    let mut released = false;
    for _ in 0..50 {
        server.commit_nodes(20).await;
        let s = server.status().await;
        if s["oldest_logged_tx"].as_u64().unwrap() > checkpoint_tx + 1 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(released, "the pin outlived its connection");
    server.stop().await;
}

// PR-17, RET-12: as it ships transactions the server advances the stream's pin past what it has
// sent (every 1,024 txs), so a long incremental stream whose client lags holds back only the
// logs it has yet to send: retention prunes the rest under it, and the stream still reaches its
// end unbroken. The client reads slowly through a narrow window, so the server stays well
// short of the end (its send buffer holds at most 4 MiB, about 1,000 of these txs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_17_the_pin_advances_past_what_a_lagging_stream_has_sent() {
    const PAD: usize = 4096;
    let dir = support::scratch();
    let server = TestServer::start(
        &dir.path().join("db"),
        "logical_log_rotation_threshold=256k\nkeep_logical_logs=5000 txs\n",
    )
    .await;
    let first = server.commit_padded(1, PAD).await;
    let from = server.status().await;
    let last = server.commit_padded(4000, PAD).await;
    let (mut c, welcome) = Client::connect_narrow(&server.backup_addr()).await;
    let (id, format, _, oldest, _) = welcome_fields(&welcome);
    assert!(
        oldest <= first + 1,
        "the logs from tx {} are there",
        first + 1
    );
    c.send(&Message::Request(Request::Incremental {
        store_id: id,
        format,
        last_tx: first,
        digest: Digest::from_hex(&digest_of(&from)).unwrap(),
    }))
    .await;
    let mut next = first + 1;
    let mut receive = async |c: &mut Client, until: u64| loop {
        match c.recv().await {
            Message::Tx(e) => {
                assert_eq!(e.tx_id, next, "PR-17: the stream is unbroken");
                next += 1;
                if e.tx_id == until {
                    return None;
                }
            }
            Message::End { last_tx, .. } => return Some(last_tx),
            other => panic!("expected a transaction, got {other:?}"),
        }
    };
    assert_eq!(receive(&mut c, 2100).await, None);
    // The server has sent tx 2,048 and advanced the pin past it; retention, which now keeps
    // the last 5,000 txs, prunes up to it as these commits rotate the logs.
    server.commit_padded(4000, PAD).await;
    let oldest = server.status().await["oldest_logged_tx"].as_u64().unwrap();
    assert!(
        oldest > 1100,
        "PR-17, RET-12: the pin held the logs from tx {oldest}; it should have advanced past tx 2,048"
    );
    assert_eq!(
        receive(&mut c, u64::MAX).await,
        Some(last),
        "PR-17: the stream reaches its end"
    );
    server.stop().await;
}

// RET-11, IO-15: a pin's idleness is measured on the monotonic clock: the server's wall clock
// set forward by days in the middle of a full backup releases no pin of a connection that is
// making progress, and the stream ends with its end frame. Measured on the wall clock, the
// next frame found the pin two days idle and ended the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ret_11_a_wall_clock_set_forward_mid_stream_releases_no_pin() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    generate_big(&store);
    let clock = std::sync::Arc::new(SteppedClock::default());
    let env = Env {
        clock: clock.clone(),
        ..Env::os()
    };
    let server = TestServer::start_in(env, &store, "").await;
    server.commit_nodes(3).await;
    let (mut c, _) = Client::connect(&server.backup_addr()).await;
    c.send(&Message::Request(Request::Full)).await;
    assert!(
        matches!(c.recv().await, Message::FullStart { .. }),
        "a full start"
    );
    // The server is mid-file (the store is larger than the socket buffers hold).
    clock
        .ahead_millis
        .store(2 * 24 * 3600 * 1000, std::sync::atomic::Ordering::SeqCst);
    loop {
        let got = tokio::time::timeout(Duration::from_secs(30), read_message(&mut c.stream))
            .await
            .expect("RET-11: the server went on within 30 s");
        match got {
            Ok(Message::End { .. }) => break,
            Ok(_) => {}
            Err(e) => panic!("RET-11: the stream ended before its end frame: {e}"),
        }
    }
    server.stop().await;
}

// PR-19: shutting the server down closes a backup connection mid-stream; the client sees the
// close, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_19_shutdown_closes_backup_connections() {
    let dir = support::scratch();
    let server = TestServer::start(&dir.path().join("db"), "").await;
    server.commit_nodes(3).await;
    let (mut c, _) = Client::connect(&server.backup_addr()).await;
    server.stop().await;
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_secs(10), c.stream.read(&mut buf))
        .await
        .expect("the connection closed within 10 s");
    assert!(matches!(got, Ok(0) | Err(_)), "read {got:?} after shutdown");
}

// PR-18: with online_backup_enabled=false nothing listens for backups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_18_disabled_service_binds_nothing() {
    let dir = support::scratch();
    let server = TestServer::start(&dir.path().join("db"), "online_backup_enabled=false\n").await;
    assert_eq!(server.bound.backup, None);
    server.stop().await;
}

// PR-22, RET-11: a client that asks for a full backup and then reads nothing holds its
// connection, its pin on the logs and the server's buffers only until a write has made no
// progress for the idle timeout (10 minutes in production; one second here): then the
// connection closes and the pin goes. Before, both stayed forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_22_a_client_that_stops_reading_is_dropped_with_its_pin() {
    use online_backup::backup::service::ServiceLimits;
    let dir = support::scratch();
    let store_dir = dir.path().join("db");
    generate_big(&store_dir);
    let limits = ServiceLimits {
        idle: Duration::from_secs(1),
        ..ServiceLimits::default()
    };
    let (addr, pins, _db, service) = service_alone(&store_dir, false, limits).await;
    let (mut client, _) = Client::connect(&addr).await;
    client.send(&Message::Request(Request::Full)).await;
    assert!(matches!(client.recv().await, Message::FullStart { .. }));
    assert_eq!(pins.len(), 1, "PR-10: the full backup holds a pin");
    // The client reads nothing more: the store is larger than the socket buffers, so the
    // service's writes stall.
    let mut waited = 0;
    while !pins.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
        assert!(
            waited < 100,
            "PR-22: ten seconds on, the stalled connection still holds its pin"
        );
    }
    // The connection is closed: what the client reads now ends.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut client.stream, &mut rest),
    )
    .await;
    assert!(
        ended.is_ok(),
        "PR-22: the service closed the stalled connection"
    );
    service.abort();
}

// PR-24: full requests that arrive together, or while nothing is committed, share one
// checkpoint. Eight connections asking for a full backup at once, four rounds: no checkpoint in
// a round after which nothing was committed, one per round after a commit, and each backup still
// starts at the last committed tx. Before, every request checkpointed (fsyncs of the record files
// and the metadata under the store lock), and a storm of them slowed commits from 0.5 to 39 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_24_concurrent_full_backups_share_a_checkpoint() {
    use online_backup::backup::service::ServiceLimits;
    use online_backup::graph::Op;
    let dir = support::scratch();
    // Room for a round's connections while the last round's close (PR-23 is not what this is
    // about).
    let limits = ServiceLimits {
        max_connections: 64,
        ..ServiceLimits::default()
    };
    let (addr, _pins, db, service) = service_alone(&dir.path().join("db"), true, limits).await;
    let checkpoints = || async { db.read_with(|s| Ok(s.checkpoints_written())).await.unwrap() };
    let mut last_tx = 0;
    for round in 0..4 {
        if round % 2 == 1 {
            last_tx = db
                .commit(vec![Op::CreateNode {
                    labels: vec![],
                    props: Default::default(),
                }])
                .await
                .unwrap()
                .tx_id;
        }
        let before = checkpoints().await;
        let backups: Vec<_> = (0..8)
            .map(|_| {
                let addr = addr.clone();
                tokio::spawn(async move {
                    let (mut client, _) = Client::connect(&addr).await;
                    client.send(&Message::Request(Request::Full)).await;
                    let Message::FullStart { checkpoint_tx, .. } = client.recv().await else {
                        panic!("a full start");
                    };
                    while !matches!(client.recv().await, Message::End { .. }) {}
                    checkpoint_tx
                })
            })
            .collect();
        for backup in backups {
            assert_eq!(
                backup.await.unwrap(),
                last_tx,
                "PR-10, PR-24: the backup starts at the last committed tx"
            );
        }
        let written = checkpoints().await - before;
        let shared = if round % 2 == 1 { 1 } else { 0 };
        assert_eq!(
            written, shared,
            "PR-24: round {round}: 8 full backups at once wrote {written} checkpoint(s)"
        );
    }
    service.abort();
}

// PR-25: a connection that says nothing gives its place back after the hello deadline, and one
// that sends no request after the welcome after the request deadline (10 s and 60 s in
// production; half a second here). Before, both held one of the eight places (PR-23) for the
// ten-minute idle timeout, so eight silent peers kept every backup out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_25_silent_connections_give_their_place_back() {
    use online_backup::backup::service::ServiceLimits;
    let dir = support::scratch();
    let limits = ServiceLimits {
        hello: Duration::from_millis(500),
        request: Duration::from_millis(500),
        ..ServiceLimits::default()
    };
    let (addr, _pins, _db, service) = service_alone(&dir.path().join("db"), true, limits).await;
    // Four peers that never send a hello, four that never send a request: every place taken.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    for _ in 0..4 {
        let (client, welcome) = Client::connect(&addr).await;
        assert!(matches!(welcome, Message::Welcome { .. }), "{welcome:?}");
        silent.push(client.stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, refused) = Client::connect(&addr).await;
    assert!(
        matches!(&refused, Message::Refused(Refusal::Failed { message }) if message.contains("8 backup connections")),
        "PR-23: the places are all taken: {refused:?}"
    );
    // Each silent connection is closed by the service once its deadline passed.
    for (i, stream) in silent.iter_mut().enumerate() {
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read_to_end(stream, &mut rest),
        )
        .await;
        assert!(
            ended.is_ok(),
            "PR-25: silent connection {i} was closed by the service"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, welcome) = Client::connect(&addr).await;
    assert!(
        matches!(welcome, Message::Welcome { .. }),
        "PR-25: once the silent peers are gone, a backup gets in: {welcome:?}"
    );
    service.abort();
}

// PR-13: a store that fails while a full backup reads its files (a record write fails after the
// log took the transaction, LOG-9) may have left part of that transaction in them, and the
// server will never ship it: the server refuses with its reason instead of sending the
// transactions and an end frame. Found by `backup_io_faults` (a write fault on the server
// during the file copy made a backup that verification then refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_13_a_store_failing_during_the_copy_refuses_the_backup() {
    use online_backup::backup::protocol::Refusal;
    use online_backup::graph::{Op, Properties};
    use std::sync::atomic::Ordering;
    use support::faulty::{Faulty, Files};
    let dir = support::scratch();
    let store_dir = dir.path().join("db");
    generate_big(&store_dir);
    let faulty = std::sync::Arc::new(Faulty {
        fail_writes: Some(Files::named("nodestore.db")),
        ..Faulty::default()
    });
    let env = Env {
        fs: faulty.clone(),
        ..Env::os()
    };
    let limits = online_backup::backup::service::ServiceLimits::default();
    let (addr, _pins, db, service) = service_on(&store_dir, false, limits, env).await;
    let (mut client, _) = Client::connect(&addr).await;
    client.send(&Message::Request(Request::Full)).await;
    assert!(matches!(client.recv().await, Message::FullStart { .. }));
    // The client has read nothing of the files yet; the store fails now.
    faulty.armed.store(true, Ordering::SeqCst);
    let node = Op::CreateNode {
        labels: vec!["Late".to_string()],
        props: Properties::new(),
    };
    assert!(
        db.commit(vec![node]).await.is_err(),
        "PR-13: the write fault fails the commit"
    );
    let refused = loop {
        match client.recv().await {
            Message::FileStart { .. } | Message::FileChunk(_) | Message::FileEnd { .. } => {}
            Message::Refused(Refusal::Failed { message }) => break message,
            other => panic!(
                "PR-13: after the files of a store that failed, the server must refuse, not send {other:?}"
            ),
        }
    };
    assert!(!refused.is_empty(), "PR-13: the refusal says why");
    service.abort();
}

/// The backup service alone, in this process, over the store in `store_dir` (opened, or created
/// empty when `create`), with `limits`: where it listens, the store's pins, the database, and
/// the task to abort at the end.
async fn service_alone(
    store_dir: &Path,
    create: bool,
    limits: online_backup::backup::service::ServiceLimits,
) -> (
    String,
    online_backup::retention::Pins,
    std::sync::Arc<online_backup::db::Database>,
    tokio::task::JoinHandle<()>,
) {
    service_on(store_dir, create, limits, Env::os()).await
}

/// [`service_alone`] with the seams `env`.
async fn service_on(
    store_dir: &Path,
    create: bool,
    limits: online_backup::backup::service::ServiceLimits,
    env: Env,
) -> (
    String,
    online_backup::retention::Pins,
    std::sync::Arc<online_backup::db::Database>,
    tokio::task::JoinHandle<()>,
) {
    use online_backup::backup::service::{serve, ServiceContext};
    use online_backup::db::Database;
    use online_backup::retention::Pins;
    use online_backup::store::{Store, StoreOptions};
    let pins = Pins::new();
    let options = StoreOptions {
        pins: pins.clone(),
        ..StoreOptions::default()
    };
    let store = if create {
        Store::create(
            env.fs.clone(),
            env.clock.clone(),
            store_dir,
            &options,
            FormatVersion::CURRENT,
            7,
        )
    } else {
        Store::open(env.fs.clone(), env.clock.clone(), store_dir, &options)
    }
    .unwrap();
    let db = Database::new(store, env.blocking.clone());
    let listener = env.net.bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let service = tokio::spawn(serve(
        listener,
        ServiceContext {
            db: db.clone(),
            pins: pins.clone(),
            env,
            limits,
        },
    ));
    (addr, pins, db, service)
}
