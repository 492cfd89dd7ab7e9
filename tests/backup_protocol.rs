//! The backup protocol from the wire: the real server (in process, real TCP and files) and a
//! hand-driven client speaking frames, so each rule of spec/protocol.md is checked at the
//! message level rather than through `neo4j-backup`'s choices.

mod support;

use std::path::Path;
use std::time::Duration;

use online_backup::backup::protocol::{
    read_message, write_message, Message, Refusal, Request, CHUNK_SIZE, PROTOCOL_VERSION,
};
use online_backup::config::Config;
use online_backup::digest::Digest;
use online_backup::io::Env;
use online_backup::server::{run, Bound, ServerOptions};
use online_backup::store::format::{FormatVersion, RecordKind};
use online_backup::store::log::LogReader;
use online_backup::store::meta::StoreId;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A server running in this process until `stop` is sent or dropped.
struct TestServer {
    bound: Bound,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn start(store: &Path, extra_config: &str) -> TestServer {
        let text =
            format!("http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:0\n{extra_config}");
        let (config, _) = Config::parse(&text).unwrap();
        let options = ServerOptions {
            store_dir: store.to_path_buf(),
            config,
            create_random: 99,
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let done = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            run(Env::os(), options, shutdown, move |b: &Bound| {
                let _ = ready_tx.send(b.clone());
            })
            .await
            .unwrap();
        });
        let bound = ready_rx.await.expect("the server started");
        TestServer {
            bound,
            stop: Some(stop_tx),
            done,
        }
    }

    fn backup_addr(&self) -> String {
        self.bound
            .backup
            .expect("the backup service is on")
            .to_string()
    }

    async fn http(&self, method: &str, path: &str, body: &str) -> Json {
        let mut s = TcpStream::connect(self.bound.http).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{out}");
        serde_json::from_str(body).unwrap()
    }

    async fn status(&self) -> Json {
        self.http("GET", "/db/data/", "").await
    }

    async fn commit_nodes(&self, n: usize) -> u64 {
        let mut last = 0;
        for i in 0..n {
            let body = format!(
                r#"{{"ops":[{{"create_node":{{"labels":["P"],"props":{{"i":{i},"pad":"{}"}}}}}}]}}"#,
                "x".repeat(200)
            );
            last = self.http("POST", "/db/data/transaction", &body).await["tx_id"]
                .as_u64()
                .unwrap();
        }
        last
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.done.await.unwrap();
    }
}

/// A generated store of about 25 MB: more than socket buffers hold, so a client that stops
/// reading stalls the server mid-file.
fn generate_big(store: &Path) {
    use online_backup::store::generate::{generate, GenerateSpec};
    generate(
        support::fs(),
        support::clock(),
        store,
        &GenerateSpec {
            nodes: 50_000,
            relationships_per_node: 2,
            property_bytes: 64,
            seed: 3,
            format: FormatVersion::CURRENT,
        },
        5,
    )
    .unwrap();
}

struct Client {
    stream: TcpStream,
}

impl Client {
    async fn connect(addr: &str) -> (Client, Message) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut c = Client { stream };
        c.send(&Message::Hello {
            version: PROTOCOL_VERSION,
        })
        .await;
        let welcome = c.recv().await;
        (c, welcome)
    }

    async fn send(&mut self, m: &Message) {
        write_message(&mut self.stream, m).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    async fn recv(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(30), read_message(&mut self.stream))
            .await
            .expect("the server answered within 30 s")
            .unwrap()
    }
}

fn welcome_fields(m: &Message) -> (StoreId, FormatVersion, u64, u64, u64) {
    match m {
        Message::Welcome {
            version,
            store_id,
            format,
            last_committed_tx,
            oldest_logged_tx,
            store_bytes,
        } => {
            assert_eq!(*version, PROTOCOL_VERSION);
            (
                *store_id,
                *format,
                *last_committed_tx,
                *oldest_logged_tx,
                *store_bytes,
            )
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
}

fn digest_of(status: &Json) -> String {
    status["digest"].as_str().unwrap().to_string()
}

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

/// A proxy in front of a backup service that forwards every frame but replaces the digest of
/// each end frame: a server whose claimed state the backup cannot match.
async fn tampering_proxy(real: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let server = TcpStream::connect(&real).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                while let Ok(m) = read_message(&mut cr).await {
                    if write_message(&mut sw, &m).await.is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                while let Ok(m) = read_message(&mut sr).await {
                    let m = match m {
                        Message::End { last_tx, .. } => Message::End {
                            last_tx,
                            digest: Digest([0xab; 32]),
                        },
                        other => other,
                    };
                    if write_message(&mut cw, &m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn backup_options(addr: &str, target: &Path, mode: client::Mode) -> client::BackupOptions {
    let (host, port) = addr.rsplit_once(':').unwrap();
    client::BackupOptions {
        host: host.to_string(),
        port: port.parse().unwrap(),
        target: target.to_path_buf(),
        mode,
        verify: client::Verify::Default,
        timeout: Duration::from_secs(30),
        max_rate: None,
    }
}

fn live_meta(target: &Path) -> online_backup::store::meta::Meta {
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

/// The real filesystem, except that it reports `free` bytes available: a full disk without
/// mounting one.
#[derive(Debug)]
struct SmallDisk {
    inner: online_backup::io::os::OsFs,
    free: u64,
}

impl online_backup::io::Fs for SmallDisk {
    fn open(
        &self,
        path: &Path,
        mode: online_backup::io::OpenMode,
    ) -> std::io::Result<Box<dyn online_backup::io::FileHandle>> {
        self.inner.open(path, mode)
    }
    fn metadata(&self, path: &Path) -> std::io::Result<Option<online_backup::io::Metadata>> {
        self.inner.metadata(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<online_backup::io::DirEntry>> {
        self.inner.read_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn lock_dir(&self, dir: &Path) -> std::io::Result<Box<dyn online_backup::io::LockGuard>> {
        self.inner.lock_dir(dir)
    }
    fn available_space(&self, _path: &Path) -> std::io::Result<u64> {
        Ok(self.free)
    }
}

// BK-16, BK-17: a full backup that would not fit is refused before anything is written, both
// into an empty directory and as the fallback over an existing backup, which stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_16_no_room_is_refused_before_writing() {
    let dir = support::scratch();
    let store = dir.path().join("db");
    generate_big(&store);
    let server = TestServer::start(&store, "").await;
    let real = server.backup_addr();
    let small = Env {
        fs: std::sync::Arc::new(SmallDisk {
            inner: online_backup::io::os::OsFs,
            free: 1 << 20,
        }),
        ..Env::os()
    };
    let target = dir.path().join("backup");
    std::fs::create_dir(&target).unwrap();
    let mut lines = client::Lines::default();
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

/// A file of a [`ForgetfulDisk`]: once armed, a write over bytes the file already has is
/// acknowledged and dropped; writes that extend the file are kept.
#[derive(Debug)]
struct ForgetfulFile {
    inner: Box<dyn online_backup::io::FileHandle>,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl online_backup::io::FileHandle for ForgetfulFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let armed = self.armed.load(std::sync::atomic::Ordering::SeqCst);
        if armed && offset + buf.len() as u64 <= self.inner.len()? {
            return Ok(());
        }
        self.inner.write_all_at(buf, offset)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.inner.sync()
    }
}

/// The real filesystem, except that the node store files under `under` are [`ForgetfulFile`]s:
/// a disk that loses overwrites of records without saying so.
#[derive(Debug)]
struct ForgetfulDisk {
    inner: online_backup::io::os::OsFs,
    under: std::path::PathBuf,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl online_backup::io::Fs for ForgetfulDisk {
    fn open(
        &self,
        path: &Path,
        mode: online_backup::io::OpenMode,
    ) -> std::io::Result<Box<dyn online_backup::io::FileHandle>> {
        let file = self.inner.open(path, mode)?;
        let nodes = RecordKind::ALL[0].file_name();
        if path.starts_with(&self.under) && path.file_name().is_some_and(|n| n == nodes) {
            Ok(Box::new(ForgetfulFile {
                inner: file,
                armed: self.armed.clone(),
            }))
        } else {
            Ok(file)
        }
    }
    fn metadata(&self, path: &Path) -> std::io::Result<Option<online_backup::io::Metadata>> {
        self.inner.metadata(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<online_backup::io::DirEntry>> {
        self.inner.read_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn lock_dir(&self, dir: &Path) -> std::io::Result<Box<dyn online_backup::io::LockGuard>> {
        self.inner.lock_dir(dir)
    }
    fn available_space(&self, path: &Path) -> std::io::Result<u64> {
        self.inner.available_space(path)
    }
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
        fs: std::sync::Arc::new(ForgetfulDisk {
            inner: online_backup::io::os::OsFs,
            under: backups.clone(),
            armed: armed.clone(),
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
    server.http("POST", "/db/data/transaction", body).await;
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
        err.to_string().contains("reads back differently"),
        "BK-27: {err}"
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
