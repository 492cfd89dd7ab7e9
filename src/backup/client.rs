//! The backup client: what `neo4j-backup` does (spec/backup.md).
//!
//! Owns: running the decision of `decision` against a target and a server, the refusals
//! (decided before anything is written), receiving a full backup into a new generation and
//! switching to it, applying an incremental one in place through the backup's log,
//! verification, and the account of what happened (an [`Observer`]).
//! Must not touch: the server's store, or any file outside the target directory. Sockets,
//! files and time only through the `Env` it is given, so simulations run it unchanged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backup::decision::{self, Existing, Refusal as Refused, ServerRefusal, Step};
pub use crate::backup::decision::{FullReason, Mode, ServerInfo};
use crate::backup::protocol::{
    self, read_first_answer, read_message_sized, write_message, Message, ProtocolError, Refusal,
    Request, PROTOCOL_VERSION,
};
use crate::backup::target::{Target, TargetError};
use crate::config::join_host_port;
use crate::digest::Digest;
use crate::io::{parent_of, Env, FileHandle, OpenMode, Stream};
pub use crate::progress::Phase;
use crate::retention::RetentionPolicy;
use crate::store::check::check_open_with_progress;
use crate::store::format::{FormatVersion, RecordKind};
use crate::store::log::{RecordImage, TxEntry};
use crate::store::meta::{Meta, StoreId};
use crate::store::{initialize, peek_last_tx, Store, StoreError, StoreOptions};
use crate::units;

/// Transactions are applied in runs of at most this many (one log fsync per run, BK-24).
const BATCH_TXS: usize = 4096;
/// ... or of at most this many encoded bytes, so memory stays bounded.
const BATCH_BYTES: usize = 4 << 20;

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

    /// What the summary line says (BK-9).
    pub fn describe(self) -> &'static str {
        match self {
            Verified::Skipped => "not verified (-verify false)",
            Verified::Touched => "verified (records written and digest)",
            Verified::FullScan => "verified (full scan and digest)",
        }
    }
}

/// What a finished backup reports (the final summary, BK-9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub kind: Kind,
    /// Why this kind, in one line.
    pub reason: String,
    /// Why this kind, typed (`None` for an incremental backup).
    pub full_reason: Option<FullReason>,
    pub store_id: StoreId,
    pub format: FormatVersion,
    /// The backup's last tx before this run (`None` when it had none).
    pub from_tx: Option<u64>,
    /// For a full backup, the checkpoint the store files were copied at (BK-21).
    pub checkpoint_tx: Option<u64>,
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

impl Summary {
    /// The summary line (BK-9): kind, store, tx range, transactions, bytes, duration, rate,
    /// verification and digest, in human units.
    pub fn describe(&self) -> String {
        let secs = self.duration.as_secs_f64();
        let rate = if secs > 0.0 {
            self.bytes as f64 / secs
        } else {
            0.0
        };
        let range = match (self.kind, self.from_tx, self.checkpoint_tx) {
            (Kind::Incremental, Some(from), _) if from == self.to_tx => format!(
                "nothing new since tx {from} ({})",
                transactions(self.transactions)
            ),
            (Kind::Incremental, from, _) => format!(
                "tx {} to {} ({})",
                from.unwrap_or(0) + 1,
                self.to_tx,
                transactions(self.transactions)
            ),
            (Kind::Full, _, Some(checkpoint)) if self.transactions == 0 => format!(
                "at tx {} (store files at checkpoint tx {checkpoint}, no transactions after it)",
                self.to_tx
            ),
            (Kind::Full, _, checkpoint) => format!(
                "at tx {} (store files at checkpoint tx {}, then {})",
                self.to_tx,
                checkpoint.unwrap_or(0),
                transactions(self.transactions)
            ),
        };
        format!(
            "done: {} backup of store {}, {range}, {} in {:.2} s ({}), {}, digest {}",
            self.kind.name(),
            self.store_id,
            units::bytes(self.bytes),
            secs,
            units::rate(rate),
            self.verified.describe(),
            self.digest
        )
    }
}

/// `n transactions`, singular for one.
pub fn transactions(n: u64) -> String {
    if n == 1 {
        "1 transaction".to_string()
    } else {
        format!("{n} transactions")
    }
}

/// Why a backup failed; each maps to one exit code (BK-40).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot reach the backup service at {addr}: {why}")]
    Unreachable { addr: String, why: String },
    #[error("the backup service at {addr} did not send anything for {} while the backup waited for {waiting_for}", units::duration(*.timeout))]
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
    #[error("{addr} does not speak the backup protocol{}", if *.looks_like_http {
        " (it answered in HTTP: it is probably the server's HTTP port; the backup service listens on online_backup_server, port 6362 by default)"
    } else {
        "; check that -port names the server's online_backup_server port"
    })]
    NotBackupService { addr: String, looks_like_http: bool },
    #[error("the backup service at {addr} answered with a {got} where {expected} was expected")]
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
    #[error("{dir} holds a backup of store {backup}, but the server's store is {server}; back up into another directory")]
    StoreMismatch {
        dir: String,
        backup: StoreId,
        server: StoreId,
    },
    #[error("{dir} holds a backup in format version {backup}, but the server's store is in format version {server}; {}", format_advice(dir, *.backup, *.server))]
    VersionMismatch {
        dir: String,
        backup: FormatVersion,
        server: FormatVersion,
    },
    #[error("the backup in {dir} is at tx {backup_tx}, ahead of the server at {addr}, which is at tx {server_tx}: the backup holds transactions this server does not have (is it the right server, or one restored from an older backup?); nothing was changed; to replace the backup with the server's older state on purpose, run again with --type full")]
    BackupAhead {
        dir: String,
        addr: String,
        backup_tx: u64,
        server_tx: u64,
    },
    #[error("not enough room in {dir} for a full backup: it needs about {} ({needed} bytes) and only {} ({available} bytes) is free", units::bytes(*.needed), units::bytes(*.available))]
    NoRoom {
        dir: String,
        needed: u64,
        available: u64,
    },
    #[error("verification failed: {0}")]
    VerificationFailed(String),
    #[error("an incremental backup is impossible: {}", .why.describe(dir))]
    IncrementalImpossible { dir: String, why: FullReason },
    #[error("the backup store failed: {0}")]
    Store(#[from] StoreError),
    #[error("the server sent something wrong: {0}")]
    Protocol(String),
}

/// What to do about a backup in another format version (BK-15): upgrade the backup when the
/// server's format is newer, or replace it with `--type full` (BK-47), or use a new directory.
fn format_advice(dir: &str, backup: FormatVersion, server: FormatVersion) -> String {
    if server > backup {
        format!(
            "to keep this backup, run `neo4j-admin upgrade {dir}` and back up again; or replace it with a full backup in format version {server} with --type full, or back up into a new directory"
        )
    } else {
        format!(
            "replace it with a full backup in format version {server} with --type full, or back up into a new directory"
        )
    }
}

impl BackupError {
    /// The exit code of the brief (BK-40).
    pub fn exit_code(&self) -> u8 {
        match self {
            BackupError::Target(TargetError::NotABackup { .. }) => 3,
            BackupError::StoreMismatch { .. } => 4,
            BackupError::VersionMismatch { .. } => 5,
            BackupError::VerificationFailed(_) => 6,
            BackupError::IncrementalImpossible { .. } | BackupError::BackupAhead { .. } => 7,
            _ => 1,
        }
    }

    fn refused(refusal: Refused, dir: &str, addr: &str) -> BackupError {
        let dir = dir.to_string();
        match refusal {
            Refused::OtherStore { backup, server } => BackupError::StoreMismatch {
                dir,
                backup,
                server,
            },
            Refused::OtherFormat { backup, server } => BackupError::VersionMismatch {
                dir,
                backup,
                server,
            },
            Refused::Ahead {
                backup_tx,
                server_tx,
            } => BackupError::BackupAhead {
                dir,
                addr: addr.to_string(),
                backup_tx,
                server_tx,
            },
            Refused::IncrementalImpossible(why) => BackupError::IncrementalImpossible { dir, why },
        }
    }
}

/// The backup the target held before a run, as `--json` reports it (BK-43).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupFacts {
    pub store_id: StoreId,
    pub format: FormatVersion,
    /// The last tx recovery would reach (the checkpoint's when the logs could not be read).
    pub last_tx: u64,
}

/// Receives the account of a run as it happens.
pub trait Observer {
    /// One line of what the tool is doing or decided (which mode and why, fallbacks).
    fn line(&mut self, text: &str);
    /// Progress of a long phase: `done` of `total` units (bytes or transactions, as the
    /// phase says). `total` may grow as the phase learns more.
    fn progress(&mut self, _phase: Phase, _done: u64, _total: u64) {}
    /// What the server said about itself in the handshake.
    fn server(&mut self, _addr: &str, _server: &ServerInfo) {}
    /// What the target held before the run.
    fn existing(&mut self, _backup: &BackupFacts) {}
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
        self.recv_frame(waiting_for, false).await
    }

    /// The server's first answer, read with the bound of a welcome (PR-21): a port that
    /// speaks another protocol is named as such (BK-48).
    async fn recv_first(&mut self, waiting_for: &str) -> Result<Message, BackupError> {
        self.recv_frame(waiting_for, true).await
    }

    async fn recv_frame(&mut self, waiting_for: &str, first: bool) -> Result<Message, BackupError> {
        let read = async {
            if first {
                read_first_answer(&mut self.rd).await
            } else {
                read_message_sized(&mut self.rd).await
            }
        };
        let (msg, len) = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(m)) => m,
            Ok(Err(ProtocolError::NotBackupProtocol { looks_like_http })) => {
                return Err(BackupError::NotBackupService {
                    addr: self.addr.clone(),
                    looks_like_http,
                })
            }
            Ok(Err(source)) => {
                return Err(BackupError::Network {
                    addr: self.addr.clone(),
                    waiting_for: waiting_for.to_string(),
                    source,
                })
            }
            Err(_) => {
                return Err(BackupError::Timeout {
                    addr: self.addr.clone(),
                    timeout: self.timeout,
                    waiting_for: waiting_for.to_string(),
                })
            }
        };
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

/// The options a backup's own store is opened with: retention keeps only what recovery needs
/// (a backup serves no one's incremental), and the default rotation threshold.
fn backup_store_options() -> StoreOptions {
    StoreOptions {
        retention: RetentionPolicy::KeepRecoveryOnly,
        ..StoreOptions::default()
    }
}

/// Runs one backup (BK-10 .. BK-47). Refusals are decided before anything in the target is
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
                    tracing::warn!("could not remove the directory this run created: {e}");
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
    let shown = opts.target.display().to_string();
    // BK-12, BK-17: `--type incremental` into a missing directory has nothing to build on;
    // it is refused before `Target::open` would create the directory.
    if opts.mode == Mode::Incremental {
        let missing = env
            .fs
            .metadata(&opts.target)
            .map_err(|source| TargetError::Io {
                dir: shown.clone(),
                source,
            })?
            .is_none();
        if missing {
            return Err(BackupError::IncrementalImpossible {
                dir: shown,
                why: FullReason::NoBackup,
            });
        }
    }
    let mut target = Target::open(env.fs.clone(), &opts.target)?;
    let mut conn = connect(env, &addr, opts.timeout, opts.max_rate).await?;
    let server = handshake(&mut conn).await?;
    out.server(&addr, &server);
    // Refusals first (BK-13 .. BK-15, BK-46): nothing has been written yet.
    let existing = existing_backup(env, &target, opts.mode, out)?;
    let step = decision::decide(existing.as_ref(), opts.mode, &server)
        .map_err(|r| BackupError::refused(r, &shown, &addr))?;
    let mut ctx = Run {
        env,
        opts,
        out,
        conn: &mut conn,
        server,
        started,
        addr,
    };
    let reason = match step {
        Step::Full(reason) => reason,
        Step::AskIncremental(backup) => match ctx.incremental(&mut target, &backup).await? {
            Ok(summary) => return Ok(summary),
            Err(answer) => decision::after_server_refusal(opts.mode, &backup, answer)
                .map_err(|r| BackupError::refused(r, &shown, &ctx.addr))?,
        },
    };
    ctx.full(&mut target, reason, existing.as_ref()).await
}

/// The backup the target holds, read without writing (BK-17), or `None`. Its last tx is what
/// recovery would reach; when its logs cannot be read and the run will replace it anyway
/// (`--type full`, or a backup marked unverified), the checkpoint stands in.
fn existing_backup(
    env: &Env,
    target: &Target,
    mode: Mode,
    out: &mut dyn Observer,
) -> Result<Option<Existing>, BackupError> {
    let Some(meta) = target.meta() else {
        return Ok(None);
    };
    let (last_tx, digest) = match peek_backup(&*env.fs, target.dir()) {
        Ok(found) => found,
        Err(_) if mode == Mode::Full || meta.unverified => {
            (meta.checkpoint.last_tx, meta.checkpoint.state.digest)
        }
        Err(e) => return Err(e),
    };
    out.existing(&BackupFacts {
        store_id: meta.store_id,
        format: meta.format,
        last_tx,
    });
    Ok(Some(Existing {
        store_id: meta.store_id,
        format: meta.format,
        last_tx,
        digest,
        unverified: meta.unverified,
    }))
}

/// What a run would do (`--plan`, BK-42).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub kind: Kind,
    /// Why this kind, in one line.
    pub reason: String,
    /// Why a full backup, typed (`None` for an incremental one).
    pub full_reason: Option<FullReason>,
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

/// Says what [`run`] would do and why, changing nothing (BK-42): the same decision
/// (`decision::decide`, then the server's answer to the same incremental request, whose first
/// answer is read before the connection is dropped), so the same refusals with the same exit
/// codes.
pub async fn plan(
    env: &Env,
    opts: &BackupOptions,
    out: &mut dyn Observer,
) -> Result<Plan, BackupError> {
    let addr = join_host_port(&opts.host, opts.port);
    let target = Target::inspect(env.fs.clone(), &opts.target)?;
    let mut conn = connect(env, &addr, opts.timeout, None).await?;
    let server = handshake(&mut conn).await?;
    out.server(&addr, &server);
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
    let existing = existing_backup(env, &target, opts.mode, out)?;
    let from_tx = existing.map(|e| e.last_tx);
    let step = decision::decide(existing.as_ref(), opts.mode, &server)
        .map_err(|r| BackupError::refused(r, &shown, &addr))?;
    let reason = match step {
        Step::Full(reason) => reason,
        Step::AskIncremental(backup) => match ask_incremental(&mut conn, &backup).await? {
            Answer::Accepted(_) => {
                return Ok(Plan {
                    kind: Kind::Incremental,
                    reason: incremental_reason(&shown, backup.last_tx),
                    full_reason: None,
                    store_id: server.store_id,
                    from_tx,
                    to_tx: server.last_committed_tx,
                    bytes: 0,
                    free,
                })
            }
            Answer::Refused(answer) => decision::after_server_refusal(opts.mode, &backup, answer)
                .map_err(|r| BackupError::refused(r, &shown, &addr))?,
        },
    };
    let needed = room_needed(server.store_bytes);
    if free < needed {
        return Err(BackupError::NoRoom {
            dir: shown,
            needed,
            available: free,
        });
    }
    Ok(Plan {
        kind: Kind::Full,
        reason: reason.describe(&shown),
        full_reason: Some(reason),
        store_id: server.store_id,
        from_tx,
        to_tx: server.last_committed_tx,
        bytes: server.store_bytes,
        free,
    })
}

/// Why an incremental backup: the one line of BK-9.
fn incremental_reason(dir: &str, from: u64) -> String {
    format!("{dir} holds a backup at tx {from}")
}

/// The free space a full backup of `store_bytes` of record files needs (BK-16): the files, a
/// sixteenth more for the logs of the catch-up, and 1 MiB.
fn room_needed(store_bytes: u64) -> u64 {
    store_bytes + store_bytes / 16 + (1 << 20)
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
    /// It refused, with the typed reason (PR-7).
    Refused(ServerRefusal),
}

/// Asks for the transactions after the backup's last tx (PR-14) and reads the first answer.
async fn ask_incremental(conn: &mut Conn, backup: &Existing) -> Result<Answer, BackupError> {
    conn.send(&Message::Request(Request::Incremental {
        store_id: backup.store_id,
        format: backup.format,
        last_tx: backup.last_tx,
        digest: backup.digest,
    }))
    .await?;
    let answer = match conn.recv("the first transaction").await? {
        first @ (Message::Tx(_) | Message::End { .. }) => return Ok(Answer::Accepted(first)),
        Message::Refused(Refusal::LogsPruned { needed, oldest }) => {
            ServerRefusal::LogsPruned { needed, oldest }
        }
        Message::Refused(Refusal::Diverged {
            tx,
            server_digest: Some(server),
            ..
        }) => ServerRefusal::Diverged { tx, server },
        Message::Refused(Refusal::Diverged {
            tx,
            server_digest: None,
            server_last_tx,
        }) => ServerRefusal::NeverHad { tx, server_last_tx },
        Message::Refused(Refusal::StoreMismatch { server }) => ServerRefusal::OtherStore { server },
        Message::Refused(Refusal::VersionMismatch { server }) => {
            ServerRefusal::OtherFormat { server }
        }
        other => return Err(conn.unexpected(&other, "a transaction or the end")),
    };
    Ok(Answer::Refused(answer))
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
                    "no connection within {}; check the host, the port and any firewall",
                    units::duration(timeout)
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

/// PR-3, PR-4: hello, then the server's welcome. The first answer is read with the bound of a
/// welcome (PR-21), so a port that speaks something else is named as such (BK-48) instead of
/// being read as a huge frame.
async fn handshake(conn: &mut Conn) -> Result<ServerInfo, BackupError> {
    conn.send(&Message::Hello {
        version: PROTOCOL_VERSION,
    })
    .await?;
    match conn.recv_first("the server's welcome").await? {
        Message::Welcome {
            version,
            store_id,
            format,
            last_committed_tx,
            oldest_logged_tx,
            store_bytes,
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
                oldest_logged_tx,
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

/// How a stream of transactions ended: the end frame, checked, and what was verified.
struct StreamEnd {
    last_tx: u64,
    digest: Digest,
    /// Transactions received and applied.
    transactions: u64,
    verified: Verified,
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

    /// An incremental backup in place (BK-11, BK-24). `Ok(Err(answer))` when the server
    /// refuses (pruned logs, diverged history, ...): the backup is untouched and the caller
    /// decides (`decision::after_server_refusal`).
    async fn incremental(
        &mut self,
        target: &mut Target,
        backup: &Existing,
    ) -> Result<Result<Summary, ServerRefusal>, BackupError> {
        // Nothing is written until the server accepts (BK-17): the backup's last tx and digest
        // were read, not recovered, and leftovers stay until then.
        let shown = self.opts.target.display().to_string();
        let (from, digest) = (backup.last_tx, backup.digest);
        self.out.line(&format!(
            "incremental backup from {} into {shown}: the backup is at tx {from}, the server at tx {}",
            self.addr, self.server.last_committed_tx
        ));
        let first = match ask_incremental(self.conn, backup).await? {
            Answer::Accepted(first) => first,
            Answer::Refused(answer) => return Ok(Err(answer)),
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
        let end = self
            .apply_stream(store, Some(first), Kind::Incremental)
            .await?;
        Ok(Summary {
            kind: Kind::Incremental,
            reason: incremental_reason(&self.opts.target.display().to_string(), from),
            full_reason: None,
            store_id: status.store_id,
            format: status.format,
            from_tx: Some(from),
            checkpoint_tx: None,
            to_tx: end.last_tx,
            digest: end.digest,
            bytes: self.conn.received,
            transactions: end.transactions,
            duration: self.elapsed(),
            verified: end.verified,
            fell_back: false,
        })
    }

    /// Receives transactions up to the end frame and applies them in runs (BK-24), then checks
    /// the end frame and verifies (BK-20, BK-26 .. BK-28). The one loop of both kinds: an
    /// incremental starts with the `first` frame its request was answered with.
    async fn apply_stream(
        &mut self,
        store: &mut Store,
        mut first: Option<Message>,
        kind: Kind,
    ) -> Result<StreamEnd, BackupError> {
        let start_tx = store.status().last_committed_tx;
        let verify_touched = kind == Kind::Incremental && self.opts.verify == Verify::Default;
        let mut batch = Batch::default();
        let mut transactions = 0u64;
        loop {
            let msg = match first.take() {
                Some(m) => m,
                None => self.conn.recv("the next transaction").await?,
            };
            match msg {
                Message::Tx(entry) => {
                    transactions += 1;
                    batch.bytes += self.conn.last_len as usize;
                    batch.entries.push(*entry);
                    if batch.entries.len() >= BATCH_TXS || batch.bytes >= BATCH_BYTES {
                        self.apply_batch(store, &mut batch, start_tx, verify_touched)?;
                    }
                }
                Message::End { last_tx, digest } => {
                    self.apply_batch(store, &mut batch, start_tx, verify_touched)?;
                    let verified = self.check_end(store, last_tx, digest, kind)?;
                    return Ok(StreamEnd {
                        last_tx,
                        digest,
                        transactions,
                        verified,
                    });
                }
                other => return Err(self.conn.unexpected(&other, "a transaction or the end")),
            }
        }
    }

    /// Applies a run of transactions durably (BK-24), then, when verifying an incremental,
    /// reads back every record they wrote (BK-27).
    fn apply_batch(
        &mut self,
        store: &mut Store,
        batch: &mut Batch,
        start_tx: u64,
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
        if verify_touched {
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
        let applied = store.status().last_committed_tx - start_tx;
        let expected = self.server.last_committed_tx.saturating_sub(start_tx);
        self.out
            .progress(Phase::Apply, applied, expected.max(applied));
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
        let out = &mut *self.out;
        let report = check_open_with_progress(store, &mut |done, total| {
            out.progress(Phase::Verify, done, total)
        })?;
        if !report.consistent {
            let first = report.findings.first().cloned().unwrap_or_default();
            let n = report.finding_count.max(1);
            return Err(BackupError::VerificationFailed(format!(
                "the check found {n} {}, the first: {first}",
                if n == 1 { "problem" } else { "problems" }
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
        reason: FullReason,
        existing: Option<&Existing>,
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
        let shown = self.opts.target.display().to_string();
        // One line says which kind and why; a fallback says so in the same line (BK-9).
        let kind = if reason.is_fallback() {
            "falling back to a full backup"
        } else {
            "full backup"
        };
        self.out.line(&format!(
            "{kind} from {} into {shown}: {}",
            self.addr,
            reason.describe(&shown)
        ));
        if let Some(old) = existing.filter(|e| e.format != self.server.format) {
            // BK-47: a backup in another format is replaced only once the new one is complete.
            self.out.line(&format!(
                "the backup in {shown} is in format version {}; it stays live until this backup in format version {} is complete",
                old.format, self.server.format
            ));
        }
        let (n, gen_dir) = target.new_generation()?;
        match self.full_into(&gen_dir).await {
            Ok((end, checkpoint_tx, meta)) => {
                target.switch_to(n, meta)?;
                Ok(Summary {
                    kind: Kind::Full,
                    reason: reason.describe(&shown),
                    full_reason: Some(reason),
                    store_id: self.server.store_id,
                    format: self.server.format,
                    from_tx: existing.map(|e| e.last_tx),
                    checkpoint_tx: Some(checkpoint_tx),
                    to_tx: end.last_tx,
                    digest: end.digest,
                    bytes: self.conn.received,
                    transactions: end.transactions,
                    duration: self.elapsed(),
                    verified: end.verified,
                    fell_back: reason.is_fallback(),
                })
            }
            Err(e) => {
                target.discard(n);
                Err(e)
            }
        }
    }

    /// Receives the files into `gen_dir`, writes the metadata at the checkpoint and applies the
    /// transactions after it; returns the end of the stream, the checkpoint and the metadata
    /// the pointer switch records.
    async fn full_into(
        &mut self,
        gen_dir: &std::path::Path,
    ) -> Result<(StreamEnd, u64, Meta), BackupError> {
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
            "copied {} of store files at checkpoint tx {checkpoint_tx}; now applying the transactions committed after it",
            units::bytes(bytes)
        ));
        let end = self.apply_stream(&mut store, None, Kind::Full).await?;
        let meta = store.meta().clone();
        store.close()?;
        Ok((end, checkpoint_tx, meta))
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
                    self.out.progress(Phase::Copy, *bytes, total);
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
