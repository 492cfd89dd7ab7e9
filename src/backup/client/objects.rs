//! A backup into an object store (spec/objects.md): the lease taken, the target read, the same
//! decision and refusals as a directory's, then a full backup uploaded as it arrives, the
//! manifest, and the pointer written last (OBJ-4 .. OBJ-7, OBJ-9).

use super::apply::check_tx;
use super::targets::{drive, ObjectBackup};
use super::{load_tls, BackupError, BackupOptions, Kind, Observer, Phase, Run, Summary, Verified};
use crate::backup::decision::{Existing, FullReason};
use crate::backup::manifest::{source_of, FileEntry, Manifest, Verification, BLOCK_SIZE};
use crate::backup::objects::{put_object, Lease, ObjectTarget, ObjectUrl, ObjectsError, Upload};
use crate::backup::protocol::{Frame, Message, Request};
use crate::digest::Digest;
use crate::io::Env;
use crate::store::log::{log_version_of, LogHeader, TxState, HEADER_SIZE, LOG_PREFIX};
use crate::store::meta::{Checkpoint, Meta, META_FILE};
use crate::units;

/// Runs one backup into the object store `url` (OBJ-5 .. OBJ-7): the lease taken, what the
/// prefix holds read, then the run every target shares ([`drive`]); refusals are decided
/// before anything is written, and whatever fails, the previous generation stays live. The
/// lease is released however the run ends.
pub async fn run_objects(
    env: &Env,
    opts: &BackupOptions,
    url: &ObjectUrl,
    out: &mut dyn Observer,
) -> Result<Summary, BackupError> {
    let started = env.clock.monotonic();
    // The TLS files first: one that cannot be read fails the run before anything (SEC-11).
    let tls = load_tls(env, opts)?;
    let store = env
        .objects
        .open(&url.bucket)
        .map_err(|e| ObjectsError::from_store(url, "opening", &e))?;
    let lease = Lease::take(store.clone(), url, env).await?;
    let target = match ObjectTarget::read(store, url).await {
        Ok(target) => target,
        Err(e) => {
            lease.release().await;
            return Err(e.into());
        }
    };
    let mut backup = ObjectBackup::new(target, lease);
    let result = drive(env, opts, &mut backup, tls.as_ref(), started, out).await;
    backup.lease.release().await;
    result
}

impl Run<'_> {
    /// A full backup into a new generation of `target` (OBJ-6, OBJ-7): uploaded as it arrives,
    /// then the manifest, then the pointer; on failure the generation is removed and the
    /// previous one stays live.
    pub(super) async fn full_to_objects(
        &mut self,
        target: &mut ObjectTarget,
        lease: &mut Lease,
        reason: FullReason,
        existing: Option<&Existing>,
    ) -> Result<Summary, BackupError> {
        let shown = target.url().to_string();
        self.announce_full(&reason, &shown);
        let n = target.next_generation();
        let uploaded = self.upload_generation(target, lease, n).await;
        let (last_tx, digest, transactions, checkpoint_tx) = match uploaded {
            Ok(done) => done,
            Err(e) => {
                if let Err(removing) = target.remove_generation(n).await {
                    tracing::warn!("could not remove the generation this run began: {removing}");
                }
                return Err(e);
            }
        };
        lease.renew_if_due().await?;
        target.switch_to(n, self.opts.keep_generations).await?;
        Ok(Summary {
            kind: Kind::Full,
            reason: reason.describe(&shown),
            full_reason: Some(reason),
            store_id: self.server.store_id,
            format: self.server.format,
            from_tx: existing.map(|e| e.last_tx),
            checkpoint_tx: Some(checkpoint_tx),
            to_tx: last_tx,
            digest,
            bytes: self.conn.received,
            transactions,
            duration: self.elapsed(),
            verified: Verified::Stream,
            fell_back: reason.is_fallback(),
            scrubbed: None,
        })
    }

    /// Receives the full stream into generation `n` (OBJ-4, OBJ-6): the record files, the
    /// metadata at the checkpoint, the log of every transaction after it, and the manifest.
    /// Returns the last tx, its digest, the transactions shipped and the checkpoint.
    async fn upload_generation(
        &mut self,
        target: &ObjectTarget,
        lease: &mut Lease,
        n: u64,
    ) -> Result<(u64, Digest, u64, u64), BackupError> {
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
        self.check_start_frame(checkpoint_tx, files)?;
        let mut entries: Vec<FileEntry> = Vec::new();
        let mut bytes = 0u64;
        let mut frame = Vec::new();
        for _ in 0..files {
            let (name, len) = self.file_start(&state).await?;
            if entries.iter().any(|f| f.name == name) {
                return Err(BackupError::Protocol(super::Violation::FileTwice(name)));
            }
            let mut upload = Upload::of(target, n, &name, BLOCK_SIZE);
            let received = self
                .receive_object(
                    target.url(),
                    &mut upload,
                    &name,
                    len,
                    &mut frame,
                    &mut bytes,
                    lease,
                )
                .await;
            match received {
                Ok(()) => entries.push(
                    upload
                        .finish()
                        .await
                        .map_err(|e| failed(target.url(), &name, &e))?,
                ),
                Err(e) => {
                    upload.abort().await;
                    return Err(e);
                }
            }
        }
        self.out.line(&format!(
            "uploaded {} of store files at checkpoint tx {checkpoint_tx}; now the transactions committed after it",
            units::bytes(bytes)
        ));
        // The metadata at the checkpoint, written by the client itself (BK-21), naming the log
        // file recovery replays from (OBJ-4).
        let meta = Meta {
            store_id: self.server.store_id,
            format: self.server.format,
            checkpoint: Checkpoint::at(checkpoint_tx, 0, HEADER_SIZE, &state),
            unverified: false,
        };
        entries.push(put_object(target, n, META_FILE, &meta.encode()).await?);
        let log_name = format!("{LOG_PREFIX}0");
        let mut log = Upload::of(target, n, &log_name, BLOCK_SIZE);
        let header = LogHeader {
            log_version: 0,
            prev_last_tx: checkpoint_tx,
            prev_digest: state.digest,
        };
        let url = target.url().clone();
        let streamed = self
            .stream_log(&url, &mut log, &header, &state, None, lease)
            .await;
        let (last_tx, digest, transactions) = match streamed {
            Ok(end) => end,
            Err(e) => {
                log.abort().await;
                return Err(e);
            }
        };
        entries.push(
            log.finish()
                .await
                .map_err(|e| failed(target.url(), &log_name, &e))?,
        );
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let now = self.env.clock.now_millis();
        let source = source_of(&self.addr);
        let manifest = Manifest {
            block_size: BLOCK_SIZE,
            store_id: self.server.store_id,
            format: self.server.format,
            first_tx: last_tx,
            last_tx,
            digest,
            created_millis: now,
            written_millis: now,
            verification: Verification::None,
            last_full_verification: None,
            scrub_cursor: 0,
            scrubbed_since_full: 0,
            source,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            files: entries,
            pending: Default::default(),
        };
        // The manifest before the pointer names the generation (OBJ-7, MF-6).
        put_object(
            target,
            n,
            crate::backup::manifest::MANIFEST_FILE,
            &manifest.encode(),
        )
        .await?;
        Ok((last_tx, digest, transactions, checkpoint_tx))
    }

    /// One record file's chunks into `upload` (PR-11, OBJ-6), checked as a directory's run
    /// checks them.
    #[allow(clippy::too_many_arguments)]
    async fn receive_object(
        &mut self,
        url: &ObjectUrl,
        upload: &mut Upload,
        name: &str,
        len: u64,
        frame: &mut Vec<u8>,
        bytes: &mut u64,
        lease: &mut Lease,
    ) -> Result<(), BackupError> {
        let mut checks = super::full::FileChecks::new(name, len);
        let total = self.server.store_bytes;
        loop {
            match self.conn.recv_into("the next file chunk", frame).await? {
                Frame::Chunk { crc } => {
                    let n = frame.len() - 1;
                    checks.chunk(n, crc)?;
                    upload
                        .write(&frame[1..])
                        .await
                        .map_err(|e| failed(url, name, &e))?;
                    *bytes += n as u64;
                    self.out.progress(Phase::Copy, *bytes, total);
                    lease.renew_if_due().await?;
                }
                Frame::Message(Message::FileEnd { crc }) => return checks.end(crc),
                Frame::Message(other) => return Err(self.conn.unexpected(&other, "a file chunk")),
            }
        }
    }

    /// Shipped transactions into the log object `log` (OBJ-4, OBJ-6, OBJ-11), after its
    /// `header`: each checked as it arrives against the state before it (BK-53), starting
    /// with `first` when the server's answer already carried it; then the end frame, at the
    /// last tx shipped with that tx's digest. Returns the last tx, its digest and how many
    /// were shipped.
    #[allow(clippy::too_many_arguments)]
    async fn stream_log(
        &mut self,
        url: &ObjectUrl,
        log: &mut Upload,
        header: &LogHeader,
        state: &TxState,
        mut first: Option<Message>,
        lease: &mut Lease,
    ) -> Result<(u64, Digest, u64), BackupError> {
        let upload_err = |e: object_store::Error| failed(url, "the log", &e);
        log.write(&header.encode()).await.map_err(upload_err)?;
        let from = header.prev_last_tx;
        let mut before = *state;
        let mut reached = from;
        loop {
            let msg = match first.take() {
                Some(m) => m,
                None => self.conn.recv("the next transaction").await?,
            };
            match msg {
                Message::Tx(entry) => {
                    check_tx(&entry, reached + 1, &before)?;
                    log.write(&entry.encode_framed())
                        .await
                        .map_err(upload_err)?;
                    before = entry.after;
                    reached = entry.tx_id;
                    let shipped = reached - from;
                    let expected = self.server.last_committed_tx.saturating_sub(from);
                    self.out
                        .progress(Phase::Apply, shipped, expected.max(shipped));
                    lease.renew_if_due().await?;
                }
                Message::End { last_tx, digest } => {
                    self.check_end_frame(reached, last_tx)?;
                    if before.digest != digest {
                        return Err(BackupError::VerificationFailed(
                            super::VerifyFailure::DigestDiffers {
                                tx: last_tx,
                                backup: before.digest,
                                server: digest,
                            },
                        ));
                    }
                    return Ok((last_tx, digest, reached - from));
                }
                other => return Err(self.conn.unexpected(&other, "a transaction or the end")),
            }
        }
    }

    /// An incremental backup into the live generation (OBJ-11): the transactions after the
    /// backup's last tx into a new segment object, then the manifest replaced by a conditional
    /// put, the run's commit point. Nothing new writes nothing.
    pub(super) async fn incremental_to_objects(
        &mut self,
        target: &mut ObjectTarget,
        lease: &mut Lease,
        backup: &Existing,
        state: TxState,
        first: Message,
    ) -> Result<Summary, BackupError> {
        let shown = target.url().to_string();
        let (Some(n), Some(manifest)) = (target.live(), target.manifest().cloned()) else {
            return Err(ObjectsError::NotABackup {
                url: shown,
                why: "it holds no backup".to_string(),
            }
            .into());
        };
        let version = manifest
            .files
            .iter()
            .filter_map(|f| log_version_of(&f.name))
            .max()
            .map_or(0, |v| v + 1);
        let name = format!("{LOG_PREFIX}{version}");
        let header = LogHeader {
            log_version: version,
            prev_last_tx: backup.last_tx,
            prev_digest: backup.digest,
        };
        let mut segment = Upload::of(target, n, &name, manifest.block_size);
        let url = target.url().clone();
        let streamed = self
            .stream_log(&url, &mut segment, &header, &state, Some(first), lease)
            .await;
        let (last_tx, digest, transactions) = match streamed {
            Ok(end) => end,
            Err(e) => {
                segment.abort().await;
                return Err(e);
            }
        };
        if transactions == 0 {
            // Nothing new: the segment is never sent (it is smaller than a part).
            segment.abort().await;
        } else {
            let entry = segment
                .finish()
                .await
                .map_err(|e| failed(&url, &name, &e))?;
            let mut next = manifest;
            next.files.push(entry);
            next.files.sort_by(|a, b| a.name.cmp(&b.name));
            next.last_tx = last_tx;
            next.digest = digest;
            next.written_millis = self.env.clock.now_millis();
            next.verification = Verification::None;
            lease.renew_if_due().await?;
            target.update_manifest(next).await?;
        }
        // The server accepted the run: the excess of older generations goes, as a
        // directory's incremental removes it (OBJ-9, PIT-12).
        target.remove_excess(self.opts.keep_generations).await?;
        Ok(Summary {
            kind: Kind::Incremental,
            reason: super::incremental_reason(&shown, backup.last_tx),
            full_reason: None,
            store_id: self.server.store_id,
            format: self.server.format,
            from_tx: Some(backup.last_tx),
            checkpoint_tx: None,
            to_tx: last_tx,
            digest,
            bytes: self.conn.received,
            transactions,
            duration: self.elapsed(),
            verified: Verified::Stream,
            fell_back: false,
            scrubbed: None,
        })
    }
}

/// An upload the object store failed, as the sentence an operator can act on (OBJ-10).
fn failed(url: &ObjectUrl, name: &str, e: &object_store::Error) -> BackupError {
    BackupError::Objects(ObjectsError::uploading(url, name, e))
}
