//! The backup client: what `neo4j-backup` does (spec/backup.md).
//!
//! Owns: choosing full or incremental from what the target holds and what the server answers,
//! the refusals (checked before anything is written), receiving a full backup into a new
//! generation and switching to it, applying an incremental one in place through the backup's
//! log, verification, and the human account of what happened.
//! Must not touch: the server's store, or any file outside the target directory. Sockets,
//! files and time only through the `Env` it is given, so simulations run it unchanged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncRead;

use crate::backup::protocol::{
    self, read_message_sized, write_message, Message, ProtocolError, Refusal, Request,
    PROTOCOL_VERSION,
};
use crate::backup::target::{Target, TargetError};
use crate::digest::Digest;
use crate::io::{parent_of, Env, FileHandle, OpenMode, Stream};
use crate::retention::RetentionPolicy;
use crate::store::check::check_open;
use crate::store::format::{FormatVersion, RecordKind};
use crate::store::log::{RecordImage, TxEntry};
use crate::store::meta::{Meta, StoreId};
use crate::store::{initialize, peek_last_tx, Store, StoreError, StoreOptions};

/// Transactions are applied in runs of at most this many (one log fsync per run, BK-24).
const BATCH_TXS: usize = 4096;
/// ... or of at most this many encoded bytes, so memory stays bounded.
const BATCH_BYTES: usize = 4 << 20;

/// Which backup the operator asked for (`--type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Incremental when possible, else full (BK-10).
    Auto,
    /// Always full (into a new generation).
    Full,
    /// Incremental or exit 7 (BK-12).
    Incremental,
}

/// How much to verify (`-verify`, BK-26 .. BK-28).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// `false`: nothing beyond the end frame's digest check.
    Off,
    /// `true`: a full scan after a full backup; the records touched plus the digest after an
    /// incremental.
    Default,
    /// `full`: a full scan whatever the kind.
    Full,
}

/// What to back up, from where, to where.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    pub host: String,
    pub port: u16,
    pub target: PathBuf,
    pub mode: Mode,
    pub verify: Verify,
    /// The longest to wait for the server to send anything (BK-7).
    pub timeout: Duration,
    /// The most bytes per second to receive (`--max-rate`, BK-41); `None` for no limit.
    pub max_rate: Option<u64>,
}

/// Which kind of backup was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Full,
    Incremental,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incremental => "incremental",
        }
    }
}

/// The outcome of verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    /// Skipped (`-verify false`).
    Skipped,
    /// The records touched and the digest (incremental, `-verify true`).
    Touched,
    /// A full scan of every record and the recomputed digest.
    FullScan,
}

impl Verified {
    /// The name `--json` reports (BK-43).
    pub fn name(self) -> &'static str {
        match self {
            Verified::Skipped => "skipped",
            Verified::Touched => "records_written",
            Verified::FullScan => "full_scan",
        }
    }
}

/// What a finished backup reports (the final summary, BK-9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub kind: Kind,
    /// Why this kind, in one line.
    pub reason: String,
    pub store_id: StoreId,
    pub format: FormatVersion,
    /// The backup's last tx before this run (`None` when it had none).
    pub from_tx: Option<u64>,
    /// The backup's last tx now.
    pub to_tx: u64,
    /// The digest at `to_tx` (equal to the server's, BK-20).
    pub digest: Digest,
    /// Bytes received from the server in this run: files, transactions and framing.
    pub bytes: u64,
    pub transactions: u64,
    pub duration: Duration,
    pub verified: Verified,
    /// Whether this full backup was taken because an incremental one was impossible (BK-11).
    pub fell_back: bool,
}

/// Why a backup failed; each maps to one exit code (BK-40).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot reach the backup service at {addr}: {why}")]
    Unreachable { addr: String, why: String },
    #[error("the backup service at {addr} did not send anything for {timeout:?} while the backup waited for {waiting_for}")]
    Timeout {
        addr: String,
        timeout: Duration,
        waiting_for: String,
    },
    #[error("the connection to the backup service at {addr} failed while waiting for {waiting_for}: {source}")]
    Network {
        addr: String,
        waiting_for: String,
        #[source]
        source: ProtocolError,
    },
    #[error("the backup service at {addr} answered {got} where {expected} was expected")]
    UnexpectedMessage {
        addr: String,
        got: &'static str,
        expected: String,
    },
    #[error("the server speaks backup protocol version {server}, this tool speaks {client}")]
    ProtocolVersion { server: u32, client: u32 },
    #[error("the server failed: {0}")]
    ServerFailed(String),
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("{dir} holds a backup of store {backup}, but the server's store is {server}")]
    StoreMismatch {
        dir: String,
        backup: StoreId,
        server: StoreId,
    },
    #[error("{dir} holds a backup in format version {backup}, but the server's store is in format version {server}")]
    VersionMismatch {
        dir: String,
        backup: FormatVersion,
        server: FormatVersion,
    },
    #[error("not enough room in {dir} for a full backup: it needs about {needed} bytes and {available} are free")]
    NoRoom {
        dir: String,
        needed: u64,
        available: u64,
    },
    #[error("verification failed: {0}")]
    VerificationFailed(String),
    #[error("an incremental backup is impossible: {0}")]
    IncrementalImpossible(String),
    #[error("the backup store failed: {0}")]
    Store(#[from] StoreError),
    #[error("the server sent something wrong: {0}")]
    Protocol(String),
}

impl BackupError {
    /// The exit code of the brief (BK-40).
    pub fn exit_code(&self) -> u8 {
        match self {
            BackupError::Target(TargetError::NotABackup { .. }) => 3,
            BackupError::StoreMismatch { .. } => 4,
            BackupError::VersionMismatch { .. } => 5,
            BackupError::VerificationFailed(_) => 6,
            BackupError::IncrementalImpossible(_) => 7,
            _ => 1,
        }
    }
}

/// Receives the human account of a run as it happens.
pub trait Observer {
    /// One line of what the tool is doing or decided (which mode and why, fallbacks).
    fn line(&mut self, text: &str);
    /// File bytes received so far of `total` (full backups).
    fn copy_progress(&mut self, _done: u64, _total: u64) {}
    /// The backup's last applied tx so far, after each run of transactions.
    fn tx_progress(&mut self, _at_tx: u64) {}
}

/// An observer that keeps the lines (tests, simulations).
#[derive(Debug, Default)]
pub struct Lines(pub Vec<String>);

impl Observer for Lines {
    fn line(&mut self, text: &str) {
        self.0.push(text.to_string());
    }
}

/// The connection to the backup service, with the timeout applied to every read (BK-7).
struct Conn {
    rd: tokio::io::ReadHalf<Box<dyn Stream>>,
    wr: tokio::io::WriteHalf<Box<dyn Stream>>,
    addr: String,
    timeout: Duration,
    /// Bytes received so far (the summary's bytes).
    received: u64,
    /// The size of the last frame received.
    last_len: u64,
    /// `--max-rate`: the pace, and the clock and start it is measured from (BK-41).
    pace: Option<Pace>,
}

/// Receiving at most `rate` bytes per second on average since `since`: after each frame the
/// client sleeps until the bytes received so far are no more than the rate allows.
struct Pace {
    rate: u64,
    clock: Arc<dyn crate::io::Clock>,
    since: std::time::SystemTime,
}

impl Conn {
    async fn recv(&mut self, waiting_for: &str) -> Result<Message, BackupError> {
        let addr = self.addr.clone();
        let (msg, len) = recv_from(&mut self.rd, &addr, self.timeout, waiting_for).await?;
        self.received += len;
        self.last_len = len;
        if let Some(pace) = &self.pace {
            let due = Duration::from_secs_f64(self.received as f64 / pace.rate as f64);
            let elapsed = pace
                .clock
                .now()
                .duration_since(pace.since)
                .unwrap_or_default();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
        Ok(msg)
    }

    async fn send(&mut self, msg: &Message) -> Result<(), BackupError> {
        let sent = async {
            write_message(&mut self.wr, msg).await?;
            protocol::flush(&mut self.wr).await
        };
        sent.await.map_err(|source| BackupError::Network {
            addr: self.addr.clone(),
            waiting_for: format!("the server to take the {}", msg.name()),
            source,
        })
    }

    fn unexpected(&self, got: &Message, expected: &str) -> BackupError {
        match got {
            Message::Refused(Refusal::Failed { message }) => {
                BackupError::ServerFailed(message.clone())
            }
            _ => BackupError::UnexpectedMessage {
                addr: self.addr.clone(),
                got: got.name(),
                expected: expected.to_string(),
            },
        }
    }
}

async fn recv_from<R: AsyncRead + Unpin>(
    rd: &mut R,
    addr: &str,
    timeout: Duration,
    waiting_for: &str,
) -> Result<(Message, u64), BackupError> {
    match tokio::time::timeout(timeout, read_message_sized(rd)).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(source)) => Err(BackupError::Network {
            addr: addr.to_string(),
            waiting_for: waiting_for.to_string(),
            source,
        }),
        Err(_) => Err(BackupError::Timeout {
            addr: addr.to_string(),
            timeout,
            waiting_for: waiting_for.to_string(),
        }),
    }
}

/// What the server said about itself in the handshake.
#[derive(Clone, Copy, Debug)]
struct ServerInfo {
    store_id: StoreId,
    format: FormatVersion,
    last_committed_tx: u64,
    store_bytes: u64,
}

/// The options a backup's own store is opened with: retention keeps only what recovery needs
/// (a backup serves no one's incremental), and the default rotation threshold.
fn backup_store_options() -> StoreOptions {
    StoreOptions {
        retention: RetentionPolicy::KeepRecoveryOnly,
        ..StoreOptions::default()
    }
}

/// Runs one backup (BK-10 .. BK-40). Refusals are decided before anything in the target is
/// written; an existing backup stays valid whatever fails. A run that fails on a target that
/// did not exist removes the directory it created (if it is still empty), so that a refusal
/// or a failure leaves no trace (BK-17).
pub async fn run(
    env: &Env,
    opts: &BackupOptions,
    out: &mut dyn Observer,
) -> Result<Summary, BackupError> {
    let existed = !matches!(env.fs.metadata(&opts.target), Ok(None));
    let result = run_in(env, opts, out).await;
    if result.is_err() && !existed {
        if let Ok(entries) = env.fs.read_dir(&opts.target) {
            if entries.is_empty() {
                let removed = env
                    .fs
                    .remove_dir_all(&opts.target)
                    .and_then(|()| env.fs.sync_dir(parent_of(&opts.target)));
                if let Err(e) = removed {
                    tracing::warn!(error = %e, "could not remove the directory this run created");
                }
            }
        }
    }
    result
}

async fn run_in(
    env: &Env,
    opts: &BackupOptions,
    out: &mut dyn Observer,
) -> Result<Summary, BackupError> {
    let started = env.clock.now();
    let addr = join_host_port(&opts.host, opts.port);
    // BK-12, BK-17: `--type incremental` into a missing directory has nothing to build on;
    // it is refused before `Target::open` would create the directory.
    if opts.mode == Mode::Incremental {
        let missing = env
            .fs
            .metadata(&opts.target)
            .map_err(|source| TargetError::Io {
                dir: opts.target.display().to_string(),
                source,
            })?
            .is_none();
        if missing {
            return Err(BackupError::IncrementalImpossible(format!(
                "{} holds no backup yet",
                opts.target.display()
            )));
        }
    }
    let mut target = Target::open(env.fs.clone(), &opts.target)?;
    let mut conn = connect(env, &addr, opts.timeout, opts.max_rate).await?;
    let server = handshake(&mut conn).await?;
    let shown = opts.target.display().to_string();
    // Refusals first (BK-13 .. BK-15): nothing has been written yet.
    let existing = target.meta().cloned();
    if let Some(meta) = &existing {
        same_store(meta, &server, &shown)?;
    }
    let mut ctx = Run {
        env,
        opts,
        out,
        conn: &mut conn,
        server,
        started,
        addr,
    };
    let mut fell_back = false;
    let full_reason = match (&existing, opts.mode) {
        (None, Mode::Incremental) => {
            return Err(BackupError::IncrementalImpossible(format!(
                "{} holds no backup yet",
                opts.target.display()
            )))
        }
        (None, _) => format!("{} holds no backup yet", opts.target.display()),
        (Some(_), Mode::Full) => "--type full was asked for".to_string(),
        (Some(meta), mode) if meta.unverified => {
            let why = format!(
                "the backup in {} is marked unverified (its last verification failed)",
                opts.target.display()
            );
            if mode == Mode::Incremental {
                return Err(BackupError::IncrementalImpossible(why));
            }
            why
        }
        (Some(_), mode) => match ctx.incremental(&mut target).await? {
            Ok(summary) => return Ok(summary),
            Err(why) if mode == Mode::Incremental => {
                return Err(BackupError::IncrementalImpossible(why))
            }
            Err(why) => {
                ctx.out
                    .line(&format!("falling back to a full backup: {why}"));
                fell_back = true;
                why
            }
        },
    };
    let mut summary = ctx
        .full(
            &mut target,
            full_reason,
            existing.map(|m| m.checkpoint.last_tx),
        )
        .await?;
    summary.fell_back = fell_back;
    Ok(summary)
}

/// What a run would do (`--plan`, BK-42).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub kind: Kind,
    /// Why this kind, in one line.
    pub reason: String,
    pub store_id: StoreId,
    /// The backup's last tx, when the directory holds one.
    pub from_tx: Option<u64>,
    /// The server's last committed tx now: what the backup would reach at least.
    pub to_tx: u64,
    /// For a full backup, the store file bytes to copy; for an incremental, 0 (the transactions'
    /// size is not known before they are read).
    pub bytes: u64,
    /// Free bytes on the target's file system (of its nearest existing ancestor).
    pub free: u64,
}

/// Says what [`run`] would do and why, changing nothing (BK-42): the same refusals with the
/// same errors (so the same exit codes), the same choice, asked of the server the same way (an
/// incremental request whose first answer is read, then the connection dropped).
pub async fn plan(env: &Env, opts: &BackupOptions) -> Result<Plan, BackupError> {
    let addr = join_host_port(&opts.host, opts.port);
    let target = Target::inspect(env.fs.clone(), &opts.target)?;
    let mut conn = connect(env, &addr, opts.timeout, None).await?;
    let server = handshake(&mut conn).await?;
    let shown = opts.target.display().to_string();
    let mut free_at = opts.target.clone();
    while env.fs.metadata(&free_at).ok().flatten().is_none() {
        free_at = crate::io::parent_of(&free_at).to_path_buf();
    }
    let free = env
        .fs
        .available_space(&free_at)
        .map_err(|source| TargetError::Io {
            dir: shown.clone(),
            source,
        })?;
    let full = |reason: String, from_tx: Option<u64>| -> Result<Plan, BackupError> {
        let needed = room_needed(server.store_bytes);
        if free < needed {
            return Err(BackupError::NoRoom {
                dir: shown.clone(),
                needed,
                available: free,
            });
        }
        Ok(Plan {
            kind: Kind::Full,
            reason,
            store_id: server.store_id,
            from_tx,
            to_tx: server.last_committed_tx,
            bytes: server.store_bytes,
            free,
        })
    };
    let meta = match target.meta() {
        None if opts.mode == Mode::Incremental => {
            return Err(BackupError::IncrementalImpossible(format!(
                "{shown} holds no backup yet"
            )))
        }
        None => return full(format!("{shown} holds no backup yet"), None),
        Some(meta) => meta.clone(),
    };
    same_store(&meta, &server, &shown)?;
    let last = meta.checkpoint.last_tx;
    if opts.mode == Mode::Full {
        return full("--type full was asked for".into(), Some(last));
    }
    let impossible = |why: String| -> Result<Plan, BackupError> {
        if opts.mode == Mode::Incremental {
            Err(BackupError::IncrementalImpossible(why))
        } else {
            full(why, Some(last))
        }
    };
    if meta.unverified {
        return impossible(format!(
            "the backup in {shown} is marked unverified (its last verification failed)"
        ));
    }
    let (from, digest) = peek_backup(&*env.fs, target.dir())?;
    match ask_incremental(&mut conn, &meta, from, digest, &shown).await? {
        Answer::Impossible(why) => impossible(why),
        Answer::Accepted(_) => Ok(Plan {
            kind: Kind::Incremental,
            reason: format!("{shown} holds a backup at tx {from}"),
            store_id: server.store_id,
            from_tx: Some(from),
            to_tx: server.last_committed_tx,
            bytes: 0,
            free,
        }),
    }
}

/// The free space a full backup of `store_bytes` of record files needs (BK-16): the files, a
/// sixteenth more for the logs of the catch-up, and 1 MiB.
fn room_needed(store_bytes: u64) -> u64 {
    store_bytes + store_bytes / 16 + (1 << 20)
}

/// BK-14, BK-15: a backup of another store, or in another format version, is refused.
fn same_store(meta: &Meta, server: &ServerInfo, dir: &str) -> Result<(), BackupError> {
    if meta.store_id != server.store_id {
        return Err(BackupError::StoreMismatch {
            dir: dir.to_string(),
            backup: meta.store_id,
            server: server.store_id,
        });
    }
    if meta.format != server.format {
        return Err(BackupError::VersionMismatch {
            dir: dir.to_string(),
            backup: meta.format,
            server: server.format,
        });
    }
    Ok(())
}

/// The backup's last tx and its digest, read without recovering (BK-17).
fn peek_backup(
    fs: &dyn crate::io::Fs,
    dir: &std::path::Path,
) -> Result<(u64, Digest), BackupError> {
    peek_last_tx(fs, dir).map_err(|e| match e {
        StoreError::Corrupt(_) | StoreError::NotAStore(_) => TargetError::NotABackup {
            dir: dir.display().to_string(),
            why: e.to_string(),
        }
        .into(),
        e => e.into(),
    })
}

/// The server's answer to an incremental request.
enum Answer {
    /// It streams: this is the first frame (a transaction or the end).
    Accepted(Message),
    /// It cannot (pruned logs, diverged history), with the one-line reason (BK-11).
    Impossible(String),
}

/// Asks for the transactions after `from` (PR-14) and reads the first answer.
async fn ask_incremental(
    conn: &mut Conn,
    meta: &Meta,
    from: u64,
    digest: Digest,
    dir: &str,
) -> Result<Answer, BackupError> {
    conn.send(&Message::Request(Request::Incremental {
        store_id: meta.store_id,
        format: meta.format,
        last_tx: from,
        digest,
    }))
    .await?;
    let why = match conn.recv("the first transaction").await? {
        first @ (Message::Tx(_) | Message::End { .. }) => return Ok(Answer::Accepted(first)),
        Message::Refused(Refusal::LogsPruned { needed, oldest }) => format!(
            "the server's logs no longer hold tx {needed}, which the backup needs next (the oldest it has is tx {oldest})"
        ),
        Message::Refused(Refusal::Diverged {
            tx,
            server_digest: Some(d),
            ..
        }) => format!(
            "the backup's history diverged from the server's: at tx {tx} the backup's digest is {digest} but the server's is {d}"
        ),
        Message::Refused(Refusal::Diverged {
            tx,
            server_digest: None,
            server_last_tx,
        }) => format!(
            "the backup's history diverged from the server's: the backup is at tx {tx} but the server's last tx is {server_last_tx}"
        ),
        Message::Refused(Refusal::StoreMismatch { server }) => {
            return Err(BackupError::StoreMismatch {
                dir: dir.to_string(),
                backup: meta.store_id,
                server,
            })
        }
        Message::Refused(Refusal::VersionMismatch { server }) => {
            return Err(BackupError::VersionMismatch {
                dir: dir.to_string(),
                backup: meta.format,
                server,
            })
        }
        other => return Err(conn.unexpected(&other, "a transaction or the end")),
    };
    Ok(Answer::Impossible(why))
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn connect(
    env: &Env,
    addr: &str,
    timeout: Duration,
    max_rate: Option<u64>,
) -> Result<Conn, BackupError> {
    let stream = match tokio::time::timeout(timeout, env.net.connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let why = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => format!(
                    "nothing listens there ({e}); check that the server is running with \
                     online_backup_enabled=true and that online_backup_server is bound to this \
                     address"
                ),
                _ => e.to_string(),
            };
            return Err(BackupError::Unreachable {
                addr: addr.to_string(),
                why,
            });
        }
        Err(_) => {
            return Err(BackupError::Unreachable {
                addr: addr.to_string(),
                why: format!(
                    "no connection within {timeout:?}; check the host, the port and any firewall"
                ),
            })
        }
    };
    let (rd, wr) = tokio::io::split(stream);
    Ok(Conn {
        rd,
        wr,
        addr: addr.to_string(),
        timeout,
        received: 0,
        last_len: 0,
        pace: max_rate.filter(|&r| r > 0).map(|rate| Pace {
            rate,
            clock: env.clock.clone(),
            since: env.clock.now(),
        }),
    })
}

/// PR-3, PR-4: hello, then the server's welcome.
async fn handshake(conn: &mut Conn) -> Result<ServerInfo, BackupError> {
    conn.send(&Message::Hello {
        version: PROTOCOL_VERSION,
    })
    .await?;
    match conn.recv("the server's welcome").await? {
        Message::Welcome {
            version,
            store_id,
            format,
            last_committed_tx,
            store_bytes,
            ..
        } => {
            if version != PROTOCOL_VERSION {
                return Err(BackupError::ProtocolVersion {
                    server: version,
                    client: PROTOCOL_VERSION,
                });
            }
            Ok(ServerInfo {
                store_id,
                format,
                last_committed_tx,
                store_bytes,
            })
        }
        Message::Refused(Refusal::ProtocolVersion { server }) => {
            Err(BackupError::ProtocolVersion {
                server,
                client: PROTOCOL_VERSION,
            })
        }
        other => Err(conn.unexpected(&other, "the welcome")),
    }
}

/// One run's shared state.
struct Run<'a> {
    env: &'a Env,
    opts: &'a BackupOptions,
    out: &'a mut dyn Observer,
    conn: &'a mut Conn,
    server: ServerInfo,
    started: std::time::SystemTime,
    addr: String,
}

/// Transactions received but not yet applied.
#[derive(Default)]
struct Batch {
    entries: Vec<TxEntry>,
    bytes: usize,
}

impl Run<'_> {
    fn elapsed(&self) -> Duration {
        self.env
            .clock
            .now()
            .duration_since(self.started)
            .unwrap_or_default()
    }

    /// An incremental backup in place (BK-11, BK-24). `Ok(Err(why))` when the server says it
    /// is impossible (pruned logs, diverged history): the backup is untouched and the caller
    /// decides between falling back and exit 7.
    async fn incremental(
        &mut self,
        target: &mut Target,
    ) -> Result<Result<Summary, String>, BackupError> {
        // Nothing is written until the server accepts (BK-17): the backup's last tx and digest
        // are read, not recovered, and leftovers stay until then.
        let shown = self.opts.target.display().to_string();
        let (from, digest) = peek_backup(&*self.env.fs, target.dir())?;
        let Some(meta) = target.meta().cloned() else {
            return Err(BackupError::Protocol("no backup to build on".into()));
        };
        self.out.line(&format!(
            "incremental backup from {} into {shown}: the backup is at tx {from}, the server at tx {}",
            self.addr, self.server.last_committed_tx
        ));
        let first = match ask_incremental(self.conn, &meta, from, digest, &shown).await? {
            Answer::Accepted(first) => first,
            Answer::Impossible(why) => return Ok(Err(why)),
        };
        // Accepted: now the directory may change.
        target.clean()?;
        let lock = target.take_lock();
        let mut store = match Store::open_with_lock(
            self.env.fs.clone(),
            self.env.clock.clone(),
            target.dir(),
            &backup_store_options(),
            lock,
        ) {
            Ok(s) => s,
            Err(e @ (StoreError::Corrupt(_) | StoreError::NotAStore(_))) => {
                return Err(TargetError::NotABackup {
                    dir: shown,
                    why: e.to_string(),
                }
                .into())
            }
            Err(e) => return Err(e.into()),
        };
        let status = store.status();
        if (status.last_committed_tx, status.digest) != (from, digest) {
            return Err(BackupError::Store(StoreError::Corrupt(format!(
                "the backup recovered to tx {} but reading it found tx {from}",
                status.last_committed_tx
            ))));
        }
        let result = self.incremental_into(&mut store, from, first).await;
        match result {
            Ok(summary) => {
                target.return_lock(store.close_keeping_lock()?);
                Ok(Ok(summary))
            }
            Err(BackupError::VerificationFailed(why)) => {
                // BK-28: the next run must take a full backup.
                store.mark_unverified()?;
                Err(BackupError::VerificationFailed(why))
            }
            Err(e) => Err(e),
        }
    }

    /// Applies the stream the server accepted to send, starting with `first`.
    async fn incremental_into(
        &mut self,
        store: &mut Store,
        from: u64,
        first: Message,
    ) -> Result<Summary, BackupError> {
        let status = store.status();
        let mut batch = Batch::default();
        let mut received = 0u64;
        let mut next = Some(first);
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => self.conn.recv("the next transaction").await?,
            };
            match msg {
                Message::Tx(entry) => {
                    received += 1;
                    self.add_to_batch(store, &mut batch, *entry, true)?;
                }
                Message::End { last_tx, digest } => {
                    self.apply_batch(store, &mut batch, true)?;
                    let verified = self.check_end(store, last_tx, digest, Kind::Incremental)?;
                    return Ok(Summary {
                        kind: Kind::Incremental,
                        reason: format!(
                            "{} holds a backup at tx {from}",
                            self.opts.target.display()
                        ),
                        store_id: status.store_id,
                        format: status.format,
                        from_tx: Some(from),
                        to_tx: last_tx,
                        digest,
                        bytes: self.conn.received,
                        transactions: received,
                        duration: self.elapsed(),
                        verified,
                        fell_back: false,
                    });
                }
                other => return Err(self.conn.unexpected(&other, "a transaction or the end")),
            }
        }
    }

    fn add_to_batch(
        &mut self,
        store: &mut Store,
        batch: &mut Batch,
        entry: TxEntry,
        verify_touched: bool,
    ) -> Result<(), BackupError> {
        batch.bytes += self.conn.last_len as usize;
        batch.entries.push(entry);
        if batch.entries.len() >= BATCH_TXS || batch.bytes >= BATCH_BYTES {
            self.apply_batch(store, batch, verify_touched)?;
        }
        Ok(())
    }

    /// Applies a run of transactions durably (BK-24), then, when verifying an incremental,
    /// reads back every record they wrote (BK-27).
    fn apply_batch(
        &mut self,
        store: &mut Store,
        batch: &mut Batch,
        verify_touched: bool,
    ) -> Result<(), BackupError> {
        if batch.entries.is_empty() {
            return Ok(());
        }
        if let Some(first) = batch.entries.first() {
            let expected = store.status().last_committed_tx + 1;
            if first.tx_id != expected {
                return Err(BackupError::Protocol(format!(
                    "tx {} arrived where tx {expected} was expected",
                    first.tx_id
                )));
            }
        }
        store.apply_committed_batch(&batch.entries)?;
        if verify_touched && self.opts.verify == Verify::Default {
            // A record may be written by several transactions of the run: only the last
            // image of each is what the file must now hold.
            let mut last: BTreeMap<(u8, u64), (u64, &RecordImage)> = BTreeMap::new();
            for entry in &batch.entries {
                for image in &entry.records {
                    let key = match image {
                        RecordImage::Node(id, _) => (0, *id),
                        RecordImage::Rel(id, _) => (1, *id),
                        RecordImage::Block(id, _) => (2, *id),
                    };
                    last.insert(key, (entry.tx_id, image));
                }
            }
            for (tx_id, image) in last.into_values() {
                if !store.record_matches(image)? {
                    return Err(BackupError::VerificationFailed(format!(
                        "a record written by tx {tx_id} reads back differently"
                    )));
                }
            }
        }
        batch.entries.clear();
        batch.bytes = 0;
        let applied = store.status().last_committed_tx;
        self.out.tx_progress(applied);
        Ok(())
    }

    /// The end frame's checks, then verification (BK-20, BK-26 .. BK-28).
    fn check_end(
        &mut self,
        store: &Store,
        last_tx: u64,
        digest: Digest,
        kind: Kind,
    ) -> Result<Verified, BackupError> {
        let status = store.status();
        if status.last_committed_tx != last_tx {
            return Err(BackupError::Protocol(format!(
                "the stream ended at tx {} but the server said it ends at tx {last_tx}",
                status.last_committed_tx
            )));
        }
        if status.digest != digest {
            return Err(BackupError::VerificationFailed(format!(
                "the backup's digest at tx {last_tx} is {} but the server's is {digest}",
                status.digest
            )));
        }
        match (self.opts.verify, kind) {
            (Verify::Off, _) => return Ok(Verified::Skipped),
            (Verify::Default, Kind::Incremental) => return Ok(Verified::Touched),
            (Verify::Default, Kind::Full) | (Verify::Full, _) => {}
        }
        self.out
            .line("verifying: scanning every record and recomputing the digest");
        let report = check_open(store)?;
        if !report.consistent {
            let first = report.findings.first().cloned().unwrap_or_default();
            return Err(BackupError::VerificationFailed(format!(
                "the check found {} problem(s), the first: {first}",
                report.findings.len().max(1)
            )));
        }
        if report.digest != digest.to_string() {
            return Err(BackupError::VerificationFailed(format!(
                "the recomputed digest {} differs from the server's {digest} at tx {last_tx}",
                report.digest
            )));
        }
        Ok(Verified::FullScan)
    }

    /// A full backup into a new generation (BK-20 .. BK-23, BK-32): refuse if the room is
    /// lacking, clean leftovers, receive files, write the metadata at the checkpoint, replay
    /// the transactions after it, verify, and only then switch the pointer.
    async fn full(
        &mut self,
        target: &mut Target,
        reason: String,
        previous_tx: Option<u64>,
    ) -> Result<Summary, BackupError> {
        let needed = room_needed(self.server.store_bytes);
        let available = self
            .env
            .fs
            .available_space(target.dir())
            .map_err(|source| TargetError::Io {
                dir: target.dir().display().to_string(),
                source,
            })?;
        if available < needed {
            return Err(BackupError::NoRoom {
                dir: target.dir().display().to_string(),
                needed,
                available,
            });
        }
        target.clean()?;
        self.out.line(&format!(
            "full backup from {} into {}: {reason}",
            self.addr,
            self.opts.target.display()
        ));
        let (n, gen_dir) = target.new_generation()?;
        match self.full_into(&gen_dir, reason, previous_tx).await {
            Ok((summary, meta)) => {
                target.switch_to(n, meta)?;
                Ok(summary)
            }
            Err(e) => {
                target.discard(n);
                Err(e)
            }
        }
    }

    async fn full_into(
        &mut self,
        gen_dir: &std::path::Path,
        reason: String,
        previous_tx: Option<u64>,
    ) -> Result<(Summary, crate::store::meta::Meta), BackupError> {
        self.conn.send(&Message::Request(Request::Full)).await?;
        let (checkpoint_tx, state, files) = match self.conn.recv("the full backup to start").await?
        {
            Message::FullStart {
                checkpoint_tx,
                state,
                files,
            } => (checkpoint_tx, state, files),
            other => return Err(self.conn.unexpected(&other, "the full backup's start")),
        };
        let mut bytes = 0u64;
        let mut seen: Vec<String> = Vec::new();
        for _ in 0..files {
            let name = self.receive_file(gen_dir, &mut bytes).await?;
            if seen.contains(&name) {
                return Err(BackupError::Protocol(format!("{name} was sent twice")));
            }
            seen.push(name);
        }
        // The metadata at the checkpoint, written by the client itself (BK-21).
        initialize(
            &*self.env.fs,
            gen_dir,
            self.server.store_id,
            self.server.format,
            state,
            checkpoint_tx,
        )?;
        let mut store = Store::open(
            self.env.fs.clone(),
            self.env.clock.clone(),
            gen_dir,
            &backup_store_options(),
        )?;
        self.out.line(&format!(
            "files copied at checkpoint tx {checkpoint_tx}; replaying the transactions committed since"
        ));
        let mut batch = Batch::default();
        let mut received = 0u64;
        loop {
            match self.conn.recv("the next transaction").await? {
                Message::Tx(entry) => {
                    received += 1;
                    self.add_to_batch(&mut store, &mut batch, *entry, false)?;
                }
                Message::End { last_tx, digest } => {
                    self.apply_batch(&mut store, &mut batch, false)?;
                    let verified = self.check_end(&store, last_tx, digest, Kind::Full)?;
                    let meta = store.meta().clone();
                    store.close()?;
                    let summary = Summary {
                        kind: Kind::Full,
                        reason,
                        store_id: self.server.store_id,
                        format: self.server.format,
                        from_tx: previous_tx,
                        to_tx: last_tx,
                        digest,
                        bytes: self.conn.received,
                        transactions: received,
                        duration: self.elapsed(),
                        verified,
                        fell_back: false,
                    };
                    return Ok((summary, meta));
                }
                other => return Err(self.conn.unexpected(&other, "a transaction or the end")),
            }
        }
    }

    /// Receives one file into `dir` (PR-11): only a record file's name is accepted, chunks are
    /// written at their offsets as they come, the length and CRC are checked, and the file is
    /// synced before the next one starts.
    async fn receive_file(
        &mut self,
        dir: &std::path::Path,
        bytes: &mut u64,
    ) -> Result<String, BackupError> {
        let (name, len) = match self.conn.recv("a store file").await? {
            Message::FileStart { name, len } => (name, len),
            other => return Err(self.conn.unexpected(&other, "a file")),
        };
        if !RecordKind::ALL.iter().any(|k| k.file_name() == name) {
            return Err(BackupError::Protocol(format!(
                "the server sent a file named {name}, which is not a store file"
            )));
        }
        let path = dir.join(&name);
        let io_err = |e| StoreError::io(format!("writing {}", path.display()), e);
        let file: Arc<dyn FileHandle> = Arc::from(
            self.env
                .fs
                .open(&path, OpenMode::CreateNew)
                .map_err(io_err)?,
        );
        // Chunks are written by a task of their own, so that receiving the next chunk overlaps
        // writing this one (on a multi-threaded runtime); at most WRITE_AHEAD chunks wait.
        let (chunks, mut queue) = tokio::sync::mpsc::channel::<(u64, Vec<u8>)>(WRITE_AHEAD);
        let writer_file = file.clone();
        let writer = AbortOnDrop(tokio::spawn(async move {
            while let Some((at, chunk)) = queue.recv().await {
                writer_file.write_all_at(&chunk, at)?;
            }
            Ok::<(), std::io::Error>(())
        }));
        let mut at = 0u64;
        let mut crc = 0u32;
        let total = self.server.store_bytes;
        loop {
            match self.conn.recv("the next file chunk").await? {
                Message::FileChunk(chunk) => {
                    if at + chunk.len() as u64 > len {
                        return Err(BackupError::Protocol(format!(
                            "{name} is longer than the {len} bytes announced"
                        )));
                    }
                    crc = crc32c::crc32c_append(crc, &chunk);
                    let n = chunk.len() as u64;
                    if chunks.send((at, chunk)).await.is_err() {
                        // The writer stopped on an error: report it.
                        break;
                    }
                    at += n;
                    *bytes += n;
                    self.out.copy_progress(*bytes, total);
                }
                Message::FileEnd { crc: sent } => {
                    if at != len {
                        return Err(BackupError::Protocol(format!(
                            "{name} ended after {at} of the {len} bytes announced"
                        )));
                    }
                    if sent != crc {
                        return Err(BackupError::Protocol(format!(
                            "{name} arrived damaged (checksum mismatch)"
                        )));
                    }
                    break;
                }
                other => return Err(self.conn.unexpected(&other, "a file chunk")),
            }
        }
        drop(chunks);
        writer.join().await.map_err(io_err)?;
        file.sync().map_err(io_err)?;
        Ok(name)
    }
}

/// How many received chunks may wait for the writer task (bounded memory: 1 MiB each).
const WRITE_AHEAD: usize = 4;

/// A spawned task that is aborted if its handle is dropped before it is joined (an error path
/// must not leave a writer running into a generation being discarded).
struct AbortOnDrop(tokio::task::JoinHandle<std::io::Result<()>>);

impl AbortOnDrop {
    async fn join(mut self) -> std::io::Result<()> {
        let handle = std::mem::replace(&mut self.0, tokio::spawn(async { Ok(()) }));
        match handle.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(format!(
                "the file writer stopped: {e}"
            ))),
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
