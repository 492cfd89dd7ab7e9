//! A full backup: room checked, a new generation filled with the store files as they arrive, the
//! metadata written at the server's checkpoint, the transactions after it applied, verified, the
//! manifest written, and only then the pointer switched (BK-16, BK-20 .. BK-23, BK-32, MF-6).

use std::sync::Arc;

use super::apply::StreamEnd;
use super::error::Violation;
use super::keeper::Keeper;
use super::{backup_store_options, room_needed, BackupError, Kind, Phase, Run, Summary};
use crate::backup::decision::{Existing, FullReason};
use crate::backup::manifest::{
    source_of, BlockHasher, FileEntry, Manifest, Verification, BLOCK_SIZE,
};
use crate::backup::protocol::{self, Frame, Message, Request};
use crate::backup::target::{Target, TargetError};
use crate::faults::{self, Switch};
use crate::io::{run_blocking, FileHandle, OpenMode};
use crate::store::format::RecordKind;
use crate::store::log::TxState;
use crate::store::meta::Meta;
use crate::store::{initialize, record_file_limit, Store, StoreError};
use crate::units;

impl Run<'_> {
    /// A full backup into a new generation (BK-20 .. BK-23, BK-32): refuse if the room is
    /// lacking, clean leftovers, receive files, write the metadata at the checkpoint, replay
    /// the transactions after it, verify, and only then switch the pointer.
    pub(super) async fn full(
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
        self.announce_full(&reason, &shown);
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
                target.switch_to(n, meta, self.opts.keep_generations)?;
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
                    scrubbed: None,
                })
            }
            Err(e) => {
                target.discard(n);
                Err(e)
            }
        }
    }

    /// The line that says a full backup begins, and why (BK-9): a fallback says so in the same
    /// line. Both targets announce it so.
    pub(super) fn announce_full(&mut self, reason: &FullReason, shown: &str) {
        let kind = if reason.is_fallback() {
            "falling back to a full backup"
        } else {
            "full backup"
        };
        self.out.line(&format!(
            "{kind} from {} into {shown}: {}",
            self.addr,
            reason.describe(shown)
        ));
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
        self.check_full_start(gen_dir, checkpoint_tx, &state, files)?;
        let mut bytes = 0u64;
        // Each file as the copy hashed it (MF-6), by name: one entry per name.
        let mut copied: Vec<FileEntry> = Vec::new();
        // The chunks' buffers, kept from one file to the next.
        let mut buffers = Vec::new();
        for _ in 0..files {
            let entry = self
                .receive_file(gen_dir, &state, &mut bytes, &mut buffers)
                .await?;
            if copied.iter().any(|f| f.name == entry.name) {
                return Err(BackupError::Protocol(Violation::FileTwice(entry.name)));
            }
            copied.push(entry);
        }
        copied.sort_by(|a, b| a.name.cmp(&b.name));
        let now = self.env.clock.now_millis();
        let source = source_of(&self.addr);
        self.keeper = Some(Keeper::new_generation(
            gen_dir,
            Manifest {
                block_size: BLOCK_SIZE,
                store_id: self.server.store_id,
                format: self.server.format,
                first_tx: checkpoint_tx,
                last_tx: checkpoint_tx,
                digest: state.digest,
                created_millis: now,
                written_millis: now,
                verification: Verification::None,
                last_full_verification: None,
                scrub_cursor: 0,
                scrubbed_since_full: 0,
                source,
                tool_version: env!("CARGO_PKG_VERSION").to_string(),
                files: copied,
                pending: Default::default(),
            },
        ));
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
            &backup_store_options(self.opts),
        )?;
        self.out.line(&format!(
            "copied {} of store files at checkpoint tx {checkpoint_tx}; now applying the transactions committed after it",
            units::bytes(bytes)
        ));
        let end = self.apply_stream(&mut store, None, Kind::Full).await?;
        let meta = store.meta().clone();
        store.close()?;
        // The manifest, synced, before the pointer names the generation (MF-6).
        let mut keeper = self.keeper.take().expect("set above");
        keeper.manifest.first_tx = end.last_tx;
        keeper.finish(
            &*self.env.fs,
            self.env.clock.now_millis(),
            end.last_tx,
            end.digest,
            end.verified,
        )?;
        Ok((end, checkpoint_tx, meta))
    }

    /// The start frame against the welcome and the room (BK-51, BK-52): exactly the store's
    /// record files, a checkpoint no older than the tx the welcome announced, and files that
    /// fit in the room left, by the checkpoint's high-water marks. Nothing is written before.
    fn check_full_start(
        &mut self,
        gen_dir: &std::path::Path,
        checkpoint_tx: u64,
        state: &TxState,
        files: u32,
    ) -> Result<(), BackupError> {
        self.check_start_frame(checkpoint_tx, files)?;
        // What the files can hold at most; a server announcing more than the room left is
        // refused before a byte is written (a forged mark must not fill the disk).
        let most = RecordKind::ALL
            .iter()
            .map(|&k| record_file_limit(k, state, self.server.format))
            .fold(0u64, u64::saturating_add);
        if most > room_needed(self.server.store_bytes) {
            let available =
                self.env
                    .fs
                    .available_space(gen_dir)
                    .map_err(|source| TargetError::Io {
                        dir: gen_dir.display().to_string(),
                        source,
                    })?;
            if most > available {
                return Err(BackupError::NoRoom {
                    dir: self.opts.target.display().to_string(),
                    needed: most,
                    available,
                });
            }
        }
        Ok(())
    }

    /// The start frame against the welcome (BK-51, BK-52): exactly the store's record files, a
    /// checkpoint no older than the tx the welcome announced. Both targets check it first.
    pub(super) fn check_start_frame(
        &self,
        checkpoint_tx: u64,
        files: u32,
    ) -> Result<(), BackupError> {
        let expected = RecordKind::ALL.len() as u32;
        if files != expected {
            return Err(BackupError::Protocol(Violation::FileCount {
                announced: files,
                expected,
            }));
        }
        if checkpoint_tx < self.server.last_committed_tx {
            return Err(BackupError::Protocol(Violation::OlderThanWelcome {
                what: "checkpoint",
                got: checkpoint_tx,
                announced: self.server.last_committed_tx,
            }));
        }
        Ok(())
    }

    /// The next file's start (PR-11): only a record file's name is accepted, no longer than the
    /// checkpoint's high-water mark of its kind allows (BK-51). Both targets receive files so.
    pub(super) async fn file_start(
        &mut self,
        state: &TxState,
    ) -> Result<(String, u64), BackupError> {
        let (name, len) = match self.conn.recv("a store file").await? {
            Message::FileStart { name, len } => (name, len),
            other => return Err(self.conn.unexpected(&other, "a file")),
        };
        let Some(kind) = RecordKind::ALL.into_iter().find(|k| k.file_name() == name) else {
            return Err(BackupError::Protocol(Violation::NotAStoreFile(
                units::printable(&name),
            )));
        };
        let limit = record_file_limit(kind, state, self.server.format);
        if len > limit {
            return Err(BackupError::Protocol(Violation::FileBeyondCheckpoint {
                name,
                len,
                limit,
            }));
        }
        Ok((name, len))
    }

    /// Receives one file into `dir` (PR-11): only a record file's name is accepted, no longer
    /// than the checkpoint's high-water mark of its kind allows (BK-51), chunks are written at
    /// their offsets as they come and hashed into blocks as they are written (MF-6), the length
    /// and CRC are checked, and the file is synced before the next one starts. Returns the
    /// file's manifest entry.
    async fn receive_file(
        &mut self,
        dir: &std::path::Path,
        state: &TxState,
        bytes: &mut u64,
        buffers: &mut Vec<Vec<u8>>,
    ) -> Result<FileEntry, BackupError> {
        let (name, len) = self.file_start(state).await?;
        let path = dir.join(&name);
        let io_err = |e| StoreError::io(format!("writing {}", path.display()), e);
        let file: Arc<dyn FileHandle> = Arc::from(
            self.env
                .fs
                .open(&path, OpenMode::CreateNew)
                .map_err(io_err)?,
        );
        // Chunks are written by a task of their own, so that receiving the next chunk overlaps
        // writing this one; at most WRITE_AHEAD chunks wait. Each is written where blocking is
        // allowed (IO-10) and its writeback started at once, so the file's sync at the end finds
        // little left to write. Buffers go round: read into, written from, given back.
        let (chunks, mut queue) = tokio::sync::mpsc::channel::<(u64, Vec<u8>)>(WRITE_AHEAD);
        let (written, mut free) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let writer_file = file.clone();
        let blocking = self.env.blocking.clone();
        // The chunks come in file order, so the writer hashes them front to back as it writes.
        let writer = AbortOnDrop(Some(tokio::spawn(async move {
            let mut hasher = BlockHasher::new(BLOCK_SIZE);
            while let Some((at, frame)) = queue.recv().await {
                let file = writer_file.clone();
                let (frame, back, wrote) = run_blocking(&*blocking, move || {
                    let data = &frame[1..];
                    let wrote = file
                        .write_all_at(data, at)
                        .and_then(|()| file.start_writeback(at, data.len() as u64));
                    hasher.update(data);
                    (frame, hasher, wrote)
                })
                .await;
                hasher = back;
                wrote?;
                let _ = written.send(frame);
            }
            Ok::<BlockHasher, std::io::Error>(hasher)
        })));
        let mut checks = FileChecks::new(&name, len);
        let total = self.server.store_bytes;
        let mut frame = buffers.pop().unwrap_or_default();
        loop {
            match self
                .conn
                .recv_into("the next file chunk", &mut frame)
                .await?
            {
                Frame::Chunk { crc } => {
                    let n = frame.len() - 1;
                    let at = checks.chunk(n, crc)?;
                    let next = free.try_recv().ok().or_else(|| buffers.pop());
                    let full = std::mem::replace(&mut frame, next.unwrap_or_default());
                    if chunks.send((at, full)).await.is_err() {
                        // The writer stopped on an error: report it.
                        break;
                    }
                    *bytes += n as u64;
                    self.out.progress(Phase::Copy, *bytes, total);
                }
                Frame::Message(Message::FileEnd { crc }) => {
                    checks.end(crc)?;
                    break;
                }
                Frame::Message(other) => return Err(self.conn.unexpected(&other, "a file chunk")),
            }
        }
        drop(chunks);
        let hasher = writer.join().await.map_err(io_err)?;
        buffers.push(frame);
        while let Ok(frame) = free.try_recv() {
            buffers.push(frame);
        }
        if !faults::on(Switch::SkipSyncBeforeSwitch) {
            file.sync().map_err(io_err)?;
        }
        Ok(hasher.finish(&name))
    }
}

/// The checks of one file's chunks (PR-11): never past the announced length, and at the end
/// exactly that length with the CRC the server sent. Both targets receive files through them.
pub(super) struct FileChecks {
    name: String,
    len: u64,
    /// Bytes received so far: where the next chunk goes.
    at: u64,
    /// The CRC32C of those bytes.
    crc: u32,
}

impl FileChecks {
    pub(super) fn new(name: &str, len: u64) -> FileChecks {
        FileChecks {
            name: name.to_string(),
            len,
            at: 0,
            crc: 0,
        }
    }

    /// A chunk of `n` bytes with CRC `crc`: where it goes in the file.
    pub(super) fn chunk(&mut self, n: usize, crc: u32) -> Result<u64, BackupError> {
        if self.at + n as u64 > self.len {
            return Err(BackupError::Protocol(Violation::FileTooLong {
                name: self.name.clone(),
                len: self.len,
            }));
        }
        self.crc = protocol::crc32c_combine(self.crc, crc, n);
        let at = self.at;
        self.at += n as u64;
        Ok(at)
    }

    /// The file's end, with the CRC the server sent for all of it.
    pub(super) fn end(&self, sent: u32) -> Result<(), BackupError> {
        if self.at != self.len {
            return Err(BackupError::Protocol(Violation::FileTooShort {
                name: self.name.clone(),
                at: self.at,
                len: self.len,
            }));
        }
        if sent != self.crc {
            return Err(BackupError::Protocol(Violation::FileDamaged(
                self.name.clone(),
            )));
        }
        Ok(())
    }
}

/// How many received chunks may wait for the writer task (bounded memory: 1 MiB each, and two
/// more buffers, the one being written and the one being received into).
const WRITE_AHEAD: usize = 4;

/// A spawned task that is aborted if its handle is dropped before it is joined (an error path
/// must not leave a writer running into a generation being discarded).
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<std::io::Result<T>>>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> std::io::Result<T> {
        let handle = self.0.take().expect("joined once");
        match handle.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(format!(
                "the file writer stopped: {e}"
            ))),
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}
