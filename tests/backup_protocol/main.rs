//! The backup protocol from the wire: the real server (in process, real TCP and files) and a
//! hand-driven client speaking frames, so each rule of spec/protocol.md is checked at the
//! message level rather than through `neo4j-backup`'s choices.

#[path = "../support/mod.rs"]
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

mod client_side;
mod hostile_server;
mod wire;

/// A server running in this process until `stop` is sent or dropped.
pub struct TestServer {
    bound: Bound,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

/// The system clock, whose wall-clock reading can be set forward as an operator's (or NTP's)
/// step would; its monotonic reading goes on undisturbed (IO-15).
#[derive(Debug, Default)]
pub struct SteppedClock {
    /// How far the wall clock was set forward, milliseconds.
    pub ahead_millis: std::sync::atomic::AtomicU64,
}

impl online_backup::io::Clock for SteppedClock {
    fn now(&self) -> std::time::SystemTime {
        online_backup::io::os::OsClock.now()
            + Duration::from_millis(self.ahead_millis.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn monotonic(&self) -> Duration {
        online_backup::io::os::OsClock.monotonic()
    }
}

impl TestServer {
    pub async fn start(store: &Path, extra_config: &str) -> TestServer {
        TestServer::start_in(Env::os(), store, extra_config).await
    }

    /// [`TestServer::start`] on the seams of `env`.
    pub async fn start_in(env: Env, store: &Path, extra_config: &str) -> TestServer {
        let text =
            format!("http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:0\n{extra_config}");
        let (config, _) = Config::parse(&text).unwrap();
        let options = ServerOptions {
            store_dir: store.to_path_buf(),
            config,
            create_random: 99,
            http: online_backup::server::http::HttpLimits::default(),
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let done = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            run(env, options, shutdown, move |b: &Bound| {
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

    pub fn backup_addr(&self) -> String {
        self.bound
            .backup
            .expect("the backup service is on")
            .to_string()
    }

    pub async fn http(&self, method: &str, path: &str, body: &str) -> Json {
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

    pub async fn status(&self) -> Json {
        self.http("GET", "/db/data/", "").await
    }

    pub async fn commit_nodes(&self, n: usize) -> u64 {
        self.commit_padded(n, 200).await
    }

    /// Commits `n` one-node transactions, each node carrying `pad` bytes; the last tx id.
    pub async fn commit_padded(&self, n: usize, pad: usize) -> u64 {
        let mut last = 0;
        for i in 0..n {
            let body = format!(
                r#"{{"ops":[{{"create_node":{{"labels":["P"],"props":{{"i":{i},"pad":"{}"}}}}}}]}}"#,
                "x".repeat(pad)
            );
            last = self.http("POST", "/db/data/transaction", &body).await["tx_id"]
                .as_u64()
                .unwrap();
        }
        last
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.done.await.unwrap();
    }
}

/// A generated store of about 25 MB: more than socket buffers hold, so a client that stops
/// reading stalls the server mid-file.
pub fn generate_big(store: &Path) {
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

pub struct Client {
    stream: TcpStream,
}

impl Client {
    pub async fn connect(addr: &str) -> (Client, Message) {
        Client::greet(TcpStream::connect(addr).await.unwrap()).await
    }

    /// [`Client::connect`] with a receive buffer of a few KiB: a server that outpaces the reads
    /// is held up by TCP's flow control once its own send buffer is full.
    pub async fn connect_narrow(addr: &str) -> (Client, Message) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        Client::greet(socket.connect(addr.parse().unwrap()).await.unwrap()).await
    }

    async fn greet(stream: TcpStream) -> (Client, Message) {
        let mut c = Client { stream };
        c.send(&Message::Hello {
            version: PROTOCOL_VERSION,
        })
        .await;
        let welcome = c.recv().await;
        (c, welcome)
    }

    pub async fn send(&mut self, m: &Message) {
        write_message(&mut self.stream, m).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    pub async fn recv(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(30), read_message(&mut self.stream))
            .await
            .expect("the server answered within 30 s")
            .unwrap()
    }
}

pub fn welcome_fields(m: &Message) -> (StoreId, FormatVersion, u64, u64, u64) {
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

pub fn digest_of(status: &Json) -> String {
    status["digest"].as_str().unwrap().to_string()
}
