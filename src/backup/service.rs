//! The backup service: the server side of the backup protocol, running inside `neo4j` on
//! `online_backup_server` (spec/protocol.md).
//!
//! Owns: accepting backup connections, the handshake, and streaming a full backup (checkpoint,
//! pin, files, transactions after the checkpoint) or an incremental one (the transactions after
//! the backup's last) while the server keeps committing.
//! Must not touch: the backup directory (the client's), HTTP, or the store's files other than by
//! reading them. It never holds the store lock across an `.await`: the lock is taken for the
//! checkpoint-and-pin step and for reading the status, and the files and logs are read without
//! it (PR-20).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::task::JoinSet;

use crate::backup::protocol::{
    self, read_message_within, write_message, Message, ProtocolError, Refusal, Request, CHUNK_HEAD,
    CHUNK_SIZE, MAX_CLIENT_FRAME, PROTOCOL_VERSION,
};
use crate::db::Database;
use crate::faults::{self, Switch};
use crate::io::{Env, FileHandle, Listener, OpenMode, Stream};
use crate::retention::{PinGuard, Pins, PIN_IDLE_TIMEOUT};
use crate::store::format::RecordKind;
use crate::store::log::{LogReader, TxEntry, TxState};
use crate::store::run::{memory_of, TxRun};
use crate::store::{record_file_limit, StoreError};

/// How many transactions are shipped between two advances of the connection's pin.
const PIN_ADVANCE_EVERY: u64 = 1024;
/// A run of log entries read in one blocking job: at most this many ...
const RUN_ENTRIES: usize = 256;
/// ... or about this many bytes of them in memory ([`memory_of`]).
const RUN_BYTES: usize = 1 << 20;

/// The connection's write buffer: many transactions a write, and less than a chunk's frame.
const WRITE_BUFFER: usize = 64 << 10;

/// Why serving one backup connection ended early. Logged, never fatal to the server.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the client sent {0} where the protocol expects something else")]
    Unexpected(&'static str),
    #[error("the client was silent for longer than {}", crate::units::duration(*.0))]
    Idle(std::time::Duration),
    /// A record file got shorter while it was being sent (files only grow, ST-15).
    #[error("{0} shrank while it was copied")]
    FileShrank(String),
    /// A pinned tx was not in the logs (the pin should have kept it, RET-3).
    #[error("tx {0} left the logs while a backup had it pinned")]
    PinnedTxGone(u64),
    /// The connection's pin was released for idleness (RET-11): the logs it protected may go,
    /// so the connection ends (PR-22).
    #[error("its pin on the logs expired")]
    PinExpired,
}

/// What every connection of the service shares.
#[derive(Clone, Debug)]
pub struct ServiceContext {
    /// The server's store; the service takes its lock only for short, synchronous steps.
    pub db: Arc<Database>,
    /// The store's pin table (the same `Pins` the store's retention consults, RET-3).
    pub pins: Pins,
    /// Filesystem for reading the store's files and logs, clock for pins.
    pub env: Env,
    /// How long a connection may make no progress, and how many may be open (PR-22, PR-23).
    pub limits: ServiceLimits,
}

/// The bounds of the backup service (PR-22, PR-23): what an unauthenticated peer can take.
#[derive(Clone, Copy, Debug)]
pub struct ServiceLimits {
    /// A read or write that makes no progress for this long ends the connection.
    pub idle: std::time::Duration,
    /// Backup connections served at once; a connection beyond them is refused with a sentence
    /// saying so.
    pub max_connections: usize,
    /// How long a connection may take to send its hello (PR-25): a peer that connects and says
    /// nothing holds one of the `max_connections` no longer than this.
    pub hello: std::time::Duration,
    /// How long the service waits for the next request after its last answer (PR-25): a client
    /// asks at once; one that idles between requests gives its connection back.
    pub request: std::time::Duration,
}

impl ServiceError {
    /// Whether TLS refused the connection ([`crate::backup::tls::is_refusal`]).
    pub fn is_tls_refusal(&self) -> bool {
        matches!(self, ServiceError::Protocol(ProtocolError::Io(e)) if crate::backup::tls::is_refusal(e))
    }
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            idle: PIN_IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            hello: HELLO_TIMEOUT,
            request: REQUEST_TIMEOUT,
        }
    }
}

/// How long a new connection has to send its hello (PR-25), as long as a TLS handshake has
/// (SEC-13).
pub const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the service waits for a request after the welcome or an answer (PR-25).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Backup connections served at once by default (PR-23): a few backups of one store at a time
/// is plenty; each holds a pin and up to about 2 MiB of buffers.
pub const MAX_CONNECTIONS: usize = 8;

/// A writer that fails with `TimedOut` when a write or flush makes no progress for `idle`
/// (PR-22): a client that stops reading holds its connection, its pin and the server's buffers
/// no longer than that. Progress (any bytes written) starts the wait anew.
struct Stalling<W> {
    inner: W,
    idle: std::time::Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<W> Stalling<W> {
    fn new(inner: W, idle: std::time::Duration) -> Stalling<W> {
        Stalling {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// `Pending` from the inner writer: an error once the deadline passed.
    fn stalled(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Error> {
        self.deadline.as_mut().poll(cx).map(|()| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {}",
                    crate::units::duration(self.idle)
                ),
            )
        })
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Stalling<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.deadline = Box::pin(tokio::time::sleep(this.idle));
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.stalled(cx).map(Err),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.stalled(cx).map(Err),
            other => other,
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts backup connections forever, serving each in its own task. The server stops the
/// service by aborting this future's task: the connection set is dropped with it, so every
/// running backup connection closes (its client sees that) and its pin is released.
pub async fn serve(mut listener: Box<dyn Listener>, ctx: ServiceContext) {
    let mut connections = JoinSet::new();
    // Connections turned away for being one too many, each told so within a second (PR-23).
    let mut refusals = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            Some(_) = refusals.join_next(), if !refusals.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if connections.len() >= ctx.limits.max_connections => {
                    let max = ctx.limits.max_connections;
                    tracing::warn!(
                        "refused the backup connection from {peer}: {max} backup connections are open already"
                    );
                    // Beyond as many refusals in flight, a connection is dropped unanswered.
                    if refusals.len() < max {
                        refusals.spawn(refuse_busy(stream, max));
                    }
                }
                Ok((stream, peer)) => {
                    let ctx = ctx.clone();
                    connections.spawn(async move {
                        match handle(stream, &ctx).await {
                            Ok(()) => tracing::debug!(%peer, "backup connection closed"),
                            // TLS logged its refusal with the peer and why (SEC-6).
                            Err(e) if e.is_tls_refusal() => {}
                            Err(e) => tracing::warn!("the backup connection from {peer} failed: {e}"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accepting a backup connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Tells a connection beyond the limit why it is refused (PR-7 code 6, PR-23), giving up after a
/// second: the client reports the sentence and exits 1.
async fn refuse_busy(stream: Box<dyn Stream>, max: usize) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let refusal = Message::Refused(Refusal::Failed {
        message: format!(
            "the server is serving {max} backup connections already, its limit; try again later"
        ),
    });
    let told = async {
        // The client's hello first, so the refusal is what it reads next rather than a reset.
        let _ = read_message_within(&mut rd, MAX_CLIENT_FRAME).await;
        write_message(&mut wr, &refusal).await?;
        protocol::flush(&mut wr).await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), told).await;
}

/// Serves one connection: handshake, then requests until the client closes (PR-4, PR-5).
pub async fn handle(stream: Box<dyn Stream>, ctx: &ServiceContext) -> Result<(), ServiceError> {
    let (mut rd, wr) = tokio::io::split(stream);
    // Small messages (transactions) are gathered here; a chunk's frame is larger than the
    // buffer, so it goes to the socket without being copied into it.
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, Stalling::new(wr, ctx.limits.idle));
    match read_idle(&mut rd, ctx.limits.hello).await? {
        Message::Hello { version } if version == PROTOCOL_VERSION => {}
        Message::Hello { .. } => {
            // PR-3: another protocol version is refused with ours, so the client can say so.
            send(
                &mut w,
                &Message::Refused(Refusal::ProtocolVersion {
                    server: PROTOCOL_VERSION,
                }),
            )
            .await?;
            protocol::flush(&mut w).await?;
            return Ok(());
        }
        other => return Err(ServiceError::Unexpected(other.name())),
    }
    let fs = ctx.env.fs.clone();
    let welcome = ctx
        .db
        .read_with(move |s| {
            let status = s.status();
            let summary = s.log_summary()?;
            let mut store_bytes = 0;
            for kind in RecordKind::ALL {
                let path = s.dir().join(kind.file_name());
                store_bytes += fs
                    .metadata(&path)
                    .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?
                    .map_or(0, |m| m.len);
            }
            Ok(Message::Welcome {
                version: PROTOCOL_VERSION,
                store_id: status.store_id,
                format: status.format,
                last_committed_tx: status.last_committed_tx,
                oldest_logged_tx: summary.oldest_logged_tx,
                store_bytes,
            })
        })
        .await;
    let welcome = match welcome {
        Ok(w) => w,
        Err(e) => return refuse_failed(&mut w, e).await,
    };
    send(&mut w, &welcome).await?;
    protocol::flush(&mut w).await?;
    loop {
        let request = match read_idle(&mut rd, ctx.limits.request).await {
            Ok(Message::Request(r)) => r,
            Ok(other) => return Err(ServiceError::Unexpected(other.name())),
            Err(ServiceError::Protocol(ProtocolError::Closed)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let result = match request {
            Request::Full => full(&mut w, ctx).await,
            Request::Incremental {
                store_id,
                format,
                last_tx,
                digest,
            } => incremental(&mut w, ctx, store_id, format, last_tx, digest).await,
        };
        match result {
            Ok(()) => protocol::flush(&mut w).await?,
            Err(ServiceError::Store(e)) => return refuse_failed(&mut w, e).await,
            Err(e) => return Err(e),
        }
    }
}

/// Reads the next client message, bounded by what a client can legitimately send (PR-22), giving
/// up after the idle timeout (a silent client would otherwise hold its connection forever).
async fn read_idle<R: AsyncRead + Unpin>(
    rd: &mut R,
    idle: std::time::Duration,
) -> Result<Message, ServiceError> {
    match tokio::time::timeout(idle, read_message_within(rd, MAX_CLIENT_FRAME)).await {
        Ok(r) => Ok(r?.0),
        Err(_) => Err(ServiceError::Idle(idle)),
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message) -> Result<(), ServiceError> {
    Ok(write_message(w, msg).await?)
}

/// Tells the client the server failed (PR-7), then ends the connection.
async fn refuse_failed<W: AsyncWrite + Unpin>(
    w: &mut W,
    e: StoreError,
) -> Result<(), ServiceError> {
    tracing::warn!("a backup request failed on the server: {e}");
    send(
        w,
        &Message::Refused(Refusal::Failed {
            message: e.to_string(),
        }),
    )
    .await?;
    protocol::flush(w).await?;
    Err(ServiceError::Store(e))
}

/// A full backup (PR-10 .. PR-13, BK-20): checkpoint C (its fsyncs holding no lock, LOG-13) and
/// pin the logs from C + 1, stream the record files while commits go on, then the transactions
/// after C up to the last one committed when the files were done, then the end frame.
///
/// C is the store's last checkpoint when that covers every tx committed before the request came,
/// so full requests that arrive together, or while nothing is committed, share one (PR-24): the
/// first checkpoints, and those queued behind it find its checkpoint enough.
async fn full<W: AsyncWrite + Unpin>(w: &mut W, ctx: &ServiceContext) -> Result<(), ServiceError> {
    let (clock, pins) = (ctx.env.clock.clone(), ctx.pins.clone());
    let asked_at = ctx
        .db
        .read_with(|s| Ok(s.status().last_committed_tx))
        .await?;
    // The checkpoint's fsyncs hold no lock (LOG-13); then, in one step under the lock, the
    // last checkpoint (no older than the one just made sure of) and the pin from it, so no
    // prune can come in between (PR-10).
    ctx.db.checkpoint_covering(asked_at).await?;
    let (checkpoint_tx, state, format, dir, pin) = ctx
        .db
        .read_with(move |s| {
            let cp = s.meta().checkpoint.clone();
            // A pin from far ahead holds nothing: as if released at once.
            let from = if faults::on(Switch::ReleasePinEarly) {
                u64::MAX / 2
            } else {
                cp.last_tx + 1
            };
            let pin = pins.pin(from, clock.monotonic_millis());
            let format = s.meta().format;
            Ok((cp.last_tx, cp.state(), format, s.dir().to_path_buf(), pin))
        })
        .await?;
    tracing::info!("full backup: streaming the store files, checkpointed at tx {checkpoint_tx}");
    send(
        w,
        &Message::FullStart {
            checkpoint_tx,
            state,
            files: RecordKind::ALL.len() as u32,
        },
    )
    .await?;
    for kind in RecordKind::ALL {
        let limit = record_file_limit(kind, &state, format);
        send_file(w, ctx, &dir, kind.file_name(), limit, &pin).await?;
    }
    // A store that failed while the files were read (LOG-9) may have left part of a transaction
    // in them that it will never ship (it was logged, not applied): refuse, not send a copy the
    // transactions cannot mend (PR-13). The failure is recorded under the write lock, before any
    // later read can see the partial writes, so this read under the lock sees it.
    let upto = ctx
        .db
        .read_with(|s| match s.failure() {
            Some(why) => Err(StoreError::Failed(why.to_string())),
            None => Ok(s.status().last_committed_tx),
        })
        .await?;
    let from = if faults::on(Switch::ShipFromCheckpointPlusTwo) {
        checkpoint_tx + 2
    } else {
        checkpoint_tx + 1
    };
    let last_digest = send_txs(w, ctx, &dir, from, upto, state, &pin).await?;
    send(
        w,
        &Message::End {
            last_tx: upto,
            digest: last_digest,
        },
    )
    .await?;
    tracing::info!("full backup sent: the store files at checkpoint tx {checkpoint_tx}, then the transactions up to tx {upto}");
    Ok(())
}

/// Streams one file in chunks (PR-11): its length as of now, up to the checkpoint's high-water
/// mark of its kind (`limit`), read with positioned reads, never more than one chunk in memory.
/// Bytes written after this read, and records above the mark, are the transactions' business.
async fn send_file<W: AsyncWrite + Unpin>(
    w: &mut W,
    ctx: &ServiceContext,
    dir: &Path,
    name: &str,
    limit: u64,
    pin: &PinGuard,
) -> Result<(), ServiceError> {
    let path = dir.join(name);
    let io_err = |e| StoreError::io(format!("reading {}", path.display()), e);
    let file: Arc<dyn FileHandle> =
        Arc::from(ctx.env.fs.open(&path, OpenMode::Read).map_err(io_err)?);
    let len = file.len().map_err(io_err)?.min(limit);
    send(
        w,
        &Message::FileStart {
            name: name.to_string(),
            len,
        },
    )
    .await?;
    let mut crc = 0u32;
    let mut at = 0u64;
    // Two frames' buffers: one is sent while the next chunk is read into the other (read-ahead),
    // so the disk and the network work at once. Each chunk is read once for its CRC, in the
    // blocking job of its read (IO-10); the frame's head is filled in front of it and the frame
    // written with no copy of its data.
    let mut spare = Vec::new();
    let mut read = if len > 0 {
        Some(read_chunk(ctx, &file, Vec::new(), at, len).await)
    } else {
        None
    };
    while let Some((mut frame, got)) = read.take() {
        let (want, chunk_crc) = match got {
            Ok(Some(done)) => done,
            Ok(None) => return Err(ServiceError::FileShrank(path.display().to_string())),
            Err(e) => return Err(io_err(e).into()),
        };
        crc = protocol::crc32c_combine(crc, chunk_crc, want);
        protocol::frame_chunk(&mut frame, chunk_crc);
        at += want as u64;
        if at < len {
            let (sent, ahead) = tokio::join!(
                w.write_all(&frame),
                read_chunk(ctx, &file, std::mem::take(&mut spare), at, len)
            );
            sent.map_err(ProtocolError::from)?;
            read = Some(ahead);
        } else {
            w.write_all(&frame).await.map_err(ProtocolError::from)?;
        }
        spare = frame;
        pin.touch(ctx.env.clock.monotonic_millis());
        if !pin.is_live() {
            return Err(ServiceError::PinExpired);
        }
    }
    send(w, &Message::FileEnd { crc }).await?;
    Ok(())
}

/// Reads the chunk of `file` at `at` (at most [`CHUNK_SIZE`] bytes, up to `len`) into `frame`
/// after room for the frame's head, off the async workers (IO-10), and takes its CRC32C there.
/// Gives the buffer back with the chunk's length and CRC, or `None` if the file ended before.
async fn read_chunk(
    ctx: &ServiceContext,
    file: &Arc<dyn FileHandle>,
    mut frame: Vec<u8>,
    at: u64,
    len: u64,
) -> (Vec<u8>, std::io::Result<Option<(usize, u32)>>) {
    let want = ((len - at) as usize).min(CHUNK_SIZE);
    let file = file.clone();
    ctx.env
        .blocking(move || {
            frame.resize(CHUNK_HEAD + want, 0);
            let got = file
                .read_fully_at(&mut frame[CHUNK_HEAD..], at)
                .map(|got| (got == want).then(|| (want, crc32c::crc32c(&frame[CHUNK_HEAD..]))));
            (frame, got)
        })
        .await
}

/// Streams the transactions `from ..= upto` from the logs; returns the digest after the last
/// one sent (`before` when none is).
async fn send_txs<W: AsyncWrite + Unpin>(
    w: &mut W,
    ctx: &ServiceContext,
    dir: &Path,
    from: u64,
    upto: u64,
    before: TxState,
    pin: &PinGuard,
) -> Result<crate::digest::Digest, ServiceError> {
    if from > upto {
        return Ok(before.digest);
    }
    let (fs, at) = (ctx.env.fs.clone(), dir.to_path_buf());
    let Some(start) = ctx
        .env
        .blocking(move || LogReader::open(fs, &at, from))
        .await?
    else {
        return Err(ServiceError::PinnedTxGone(from));
    };
    send_entries(w, ctx, start.reader, upto, before.digest, pin).await
}

/// Sends every entry the reader has up to `upto`, advancing the pin as it goes (RET-12);
/// returns the digest after the last one sent (`digest` when none is).
async fn send_entries<W: AsyncWrite + Unpin>(
    w: &mut W,
    ctx: &ServiceContext,
    mut reader: LogReader,
    upto: u64,
    mut digest: crate::digest::Digest,
    pin: &PinGuard,
) -> Result<crate::digest::Digest, ServiceError> {
    let upto = if faults::on(Switch::StopOneShort) {
        upto.saturating_sub(1)
    } else {
        upto
    };
    loop {
        // A run of entries at a time is read off the async workers (IO-10), bounded in count
        // and bytes so memory stays bounded; the reader goes and comes back.
        let (back, run) = ctx
            .env
            .blocking(move || {
                let run = read_run(&mut reader, upto);
                (reader, run)
            })
            .await;
        reader = back;
        let run = run?;
        if run.is_empty() {
            return Ok(digest);
        }
        for entry in run {
            digest = entry.after.digest;
            let tx = entry.tx_id;
            send(w, &Message::Tx(Box::new(entry))).await?;
            if tx % PIN_ADVANCE_EVERY == 0 {
                pin.advance(tx + 1, ctx.env.clock.monotonic_millis());
                if !pin.is_live() {
                    return Err(ServiceError::PinExpired);
                }
            }
        }
    }
}

/// The entries a reader has next, up to `upto`: at most [`RUN_ENTRIES`] of them or about
/// [`RUN_BYTES`] of bodies, whichever comes first; empty at the end.
fn read_run(reader: &mut LogReader, upto: u64) -> Result<Vec<TxEntry>, StoreError> {
    let mut run = TxRun::new(RUN_ENTRIES, RUN_BYTES);
    while !run.is_full() {
        let Some(entry) = reader.next(upto)? else {
            break;
        };
        let bytes = memory_of(&entry);
        run.push(entry, bytes);
    }
    Ok(run.take())
}

/// An incremental backup (PR-14 .. PR-17): pin from the backup's next tx first, then check the
/// store, the format, that the logs still hold it and that the histories agree at its last tx;
/// refuse with the typed reason, or stream the transactions up to the last committed one.
async fn incremental<W: AsyncWrite + Unpin>(
    w: &mut W,
    ctx: &ServiceContext,
    store_id: crate::store::meta::StoreId,
    format: crate::store::format::FormatVersion,
    last_tx: u64,
    digest: crate::digest::Digest,
) -> Result<(), ServiceError> {
    let (clock, pins) = (ctx.env.clock.clone(), ctx.pins.clone());
    // The first tx the backup needs: pinned, looked for, named in a refusal. (`last_tx` is the
    // peer's: a value past the server's last tx is refused below before any other use.)
    let needed = last_tx.saturating_add(1);
    // Pin before looking at the logs (RET-3), under the store lock so no checkpoint prunes in
    // between.
    let (status, summary, dir, pin) = ctx
        .db
        .read_with(move |s| {
            let pin = pins.pin(needed, clock.monotonic_millis());
            Ok((s.status(), s.log_summary()?, s.dir().to_path_buf(), pin))
        })
        .await?;
    let refusal = if status.store_id != store_id && !faults::on(Switch::SkipStoreIdCheck) {
        Some(Refusal::StoreMismatch {
            server: status.store_id,
        })
    } else if status.format != format {
        Some(Refusal::VersionMismatch {
            server: status.format,
        })
    } else if last_tx > status.last_committed_tx {
        Some(Refusal::Diverged {
            tx: last_tx,
            server_digest: None,
            server_last_tx: status.last_committed_tx,
        })
    } else if needed < summary.oldest_logged_tx {
        Some(Refusal::LogsPruned {
            needed,
            oldest: summary.oldest_logged_tx,
        })
    } else {
        None
    };
    if let Some(r) = refusal {
        return refuse(w, r).await;
    }
    let upto = status.last_committed_tx;
    let (server_digest, reader) = if last_tx == upto {
        (status.digest, None)
    } else {
        let (fs, at) = (ctx.env.fs.clone(), dir.clone());
        let opened = ctx
            .env
            .blocking(move || LogReader::open(fs, &at, needed))
            .await?;
        match opened {
            Some(start) => (start.digest_before, Some(start.reader)),
            None => {
                return refuse(
                    w,
                    Refusal::LogsPruned {
                        needed,
                        oldest: summary.oldest_logged_tx,
                    },
                )
                .await
            }
        }
    };
    if server_digest != digest && !faults::on(Switch::SkipDigestCheck) {
        return refuse(
            w,
            Refusal::Diverged {
                tx: last_tx,
                server_digest: Some(server_digest),
                server_last_tx: status.last_committed_tx,
            },
        )
        .await;
    }
    let end_digest = match reader {
        Some(reader) => send_entries(w, ctx, reader, upto, server_digest, &pin).await?,
        None => server_digest,
    };
    send(
        w,
        &Message::End {
            last_tx: upto,
            digest: end_digest,
        },
    )
    .await?;
    drop(pin);
    Ok(())
}

async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, r: Refusal) -> Result<(), ServiceError> {
    tracing::info!("backup request refused: {r}");
    send(w, &Message::Refused(r)).await
}

/// Binds the first free address of `online_backup_server`'s range (BK-2): each candidate in
/// order; the error of the last one if none binds.
pub async fn bind(
    env: &Env,
    address: &crate::config::BackupServerAddress,
) -> Result<(Box<dyn Listener>, String), std::io::Error> {
    let mut last_err = None;
    for candidate in address.candidates() {
        match env.net.bind(&candidate).await {
            Ok(l) => return Ok((l, candidate)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("an empty port range")))
}
