//! Applying a stream of shipped transactions to a backup's store in durable runs (BK-24), then
//! the end frame's checks and verification (BK-20, BK-26 .. BK-28): the one loop both kinds of
//! backup use.

use super::error::{VerifyFailure, Violation};
use super::{BackupError, Kind, Phase, Run, Verified, Verify};
use crate::backup::history;
use crate::backup::protocol::Message;
use crate::digest::Digest;
use crate::store::check::check_open_with_progress;
use crate::store::log::{TxEntry, TxState};
use crate::store::records::key_of;
use crate::store::run::TxRun;
use crate::store::Store;

/// Transactions are applied in runs of at most this many (one log fsync per run, BK-24), unless
/// [`BackupOptions::apply_run_txs`](super::BackupOptions::apply_run_txs) says fewer.
pub const APPLY_RUN_TXS: usize = 4096;
/// ... or of at most this many encoded bytes, so memory stays bounded.
const BATCH_BYTES: usize = 4 << 20;

/// How a stream of transactions ended: the end frame, checked, and what was verified.
pub(super) struct StreamEnd {
    pub(super) last_tx: u64,
    pub(super) digest: Digest,
    /// Transactions received and applied.
    pub(super) transactions: u64,
    pub(super) verified: Verified,
}

/// A shipped transaction as it arrives (BK-53): the `expected` tx, following the state
/// `before` it, so nothing out of bounds is ever written. Both targets check each so.
pub(super) fn check_tx(
    entry: &TxEntry,
    expected: u64,
    before: &TxState,
) -> Result<(), BackupError> {
    if entry.tx_id != expected {
        return Err(BackupError::Protocol(Violation::OutOfOrder {
            got: entry.tx_id,
            expected,
        }));
    }
    entry.check_follows(before).map_err(|e| {
        BackupError::Protocol(Violation::TxOutOfBounds {
            tx: entry.tx_id,
            why: e.to_string(),
        })
    })
}

impl Run<'_> {
    /// Receives transactions up to the end frame and applies them in runs (BK-24), then checks
    /// the end frame and verifies (BK-20, BK-26 .. BK-28). The one loop of both kinds: an
    /// incremental starts with the `first` frame its request was answered with.
    pub(super) async fn apply_stream(
        &mut self,
        store: &mut Store,
        mut first: Option<Message>,
        kind: Kind,
    ) -> Result<StreamEnd, BackupError> {
        let start_tx = store.status().last_committed_tx;
        let verify_touched = kind == Kind::Incremental && self.opts.verify == Verify::Default;
        // An incremental that keeps transactions keeps what each run overwrites (PIT-2); a full
        // backup's replay writes over a copy taken while it changed, which no rewind goes back to.
        let undo = kind == Kind::Incremental && self.opts.keeps_transactions();
        // Transactions received but not yet applied, weighed by their bytes on the wire.
        let mut batch = TxRun::new(self.opts.apply_run_txs.clamp(1, APPLY_RUN_TXS), BATCH_BYTES);
        let mut transactions = 0u64;
        // The state the next transaction must follow (BK-53): checked as it arrives, before it
        // is kept for a run, so nothing out of bounds is ever written.
        let mut before = store.state();
        loop {
            let msg = match first.take() {
                Some(m) => m,
                None => self.conn.recv("the next transaction").await?,
            };
            match msg {
                Message::Tx(entry) => {
                    check_tx(&entry, start_tx + transactions + 1, &before)?;
                    before = entry.after;
                    transactions += 1;
                    batch.push(*entry, self.conn.last_len as usize);
                    if batch.is_full() {
                        self.apply_batch(store, &mut batch, start_tx, verify_touched, undo)?;
                    }
                }
                Message::End { last_tx, digest } => {
                    self.apply_batch(store, &mut batch, start_tx, verify_touched, undo)?;
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

    /// Applies a run of transactions durably (BK-24), after its undo segment when `undo`
    /// (PIT-2), then, when verifying an incremental, reads back every record they wrote (BK-27).
    fn apply_batch(
        &mut self,
        store: &mut Store,
        batch: &mut TxRun,
        start_tx: u64,
        verify_touched: bool,
        undo: bool,
    ) -> Result<(), BackupError> {
        let (Some(first), Some(last)) = (batch.entries().first(), batch.entries().last()) else {
            return Ok(());
        };
        if let Some(keeper) = self.keeper.as_mut() {
            keeper.before_apply(&*self.env.fs, batch.entries(), store.status().format)?;
        }
        if undo {
            // A run that failed before it logged anything left a segment of the same name,
            // which the manifest may list by now: it is replaced, so it is pending first (MF-5).
            let name = history::undo_name(first.tx_id - 1);
            if let Some(keeper) = self.keeper.as_mut() {
                if keeper.manifest.file(&name).is_some() {
                    keeper.before_remove(&*self.env.fs, &[name])?;
                }
            }
            let before = store.images_before(batch.entries().iter().flat_map(|e| &e.records))?;
            history::write_segment(
                &*self.env.fs,
                store.dir(),
                first.tx_id - 1,
                last.tx_id,
                &store.state(),
                &before,
            )?;
        }
        store.apply_committed_batch(batch.entries())?;
        if verify_touched {
            // Each record's last image in the run is what the file must now hold; runs of
            // neighbouring records are read back at once.
            let differing =
                store.first_record_differing(batch.entries().iter().flat_map(|e| &e.records))?;
            if let Some(record) = differing {
                // The last tx of the run that wrote the record.
                let tx = batch
                    .entries()
                    .iter()
                    .rev()
                    .find(|e| e.records.iter().any(|i| key_of(i) == record))
                    .map_or(start_tx, |e| e.tx_id);
                return Err(BackupError::VerificationFailed(
                    VerifyFailure::RecordDiffers { tx },
                ));
            }
        }
        batch.take();
        let applied = store.status().last_committed_tx - start_tx;
        let expected = self.server.last_committed_tx.saturating_sub(start_tx);
        self.out
            .progress(Phase::Apply, applied, expected.max(applied));
        Ok(())
    }

    /// The end frame against what arrived (BK-52): it ends no earlier than the tx the welcome
    /// announced, so a backup never ends older than the server was when the run began, and at
    /// the tx the stream `reached`.
    pub(super) fn check_end_frame(&self, reached: u64, last_tx: u64) -> Result<(), BackupError> {
        if last_tx < self.server.last_committed_tx {
            return Err(BackupError::Protocol(Violation::OlderThanWelcome {
                what: "end",
                got: last_tx,
                announced: self.server.last_committed_tx,
            }));
        }
        if reached != last_tx {
            return Err(BackupError::Protocol(Violation::EndMismatch {
                ended: reached,
                said: last_tx,
            }));
        }
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
        self.check_end_frame(status.last_committed_tx, last_tx)?;
        if status.digest != digest {
            return Err(BackupError::VerificationFailed(
                VerifyFailure::DigestDiffers {
                    tx: last_tx,
                    backup: status.digest,
                    server: digest,
                },
            ));
        }
        match (self.opts.verify, kind) {
            (Verify::Off, _) => return Ok(Verified::Skipped),
            (Verify::Default, Kind::Incremental) => return Ok(Verified::Touched),
            (Verify::Default, Kind::Full) | (Verify::Full, _) => {}
        }
        self.out
            .line("verifying: scanning every record and recomputing the digest");
        let out = &mut *self.out;
        let report = check_open_with_progress(store, &*self.env.blocking, &mut |done, total| {
            out.progress(Phase::Verify, done, total)
        })?;
        if !report.consistent {
            return Err(BackupError::VerificationFailed(
                VerifyFailure::Inconsistent {
                    count: report.finding_count.max(1),
                    first: report.findings.first().cloned().unwrap_or_default(),
                },
            ));
        }
        if report.digest != digest.to_string() {
            return Err(BackupError::VerificationFailed(
                VerifyFailure::RecomputedDiffers {
                    tx: last_tx,
                    recomputed: report.digest,
                    server: digest,
                },
            ));
        }
        Ok(Verified::FullScan)
    }
}
