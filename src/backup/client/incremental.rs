//! An incremental backup: the request, and once the server accepts, the transactions applied in
//! place through the backup's own log (BK-10, BK-11, BK-17, BK-24).

use super::error::VerifyFailure;
use super::keeper::{manifest_err, Keeper};
use super::{backup_store_options, incremental_reason, BackupError, Kind, Run, Summary};
use crate::backup::decision::Existing;
use crate::backup::history;
use crate::backup::manifest::{scrub_slice, Manifest, Scrubbed};
use crate::backup::protocol::Message;
use crate::backup::target::{Holds, Live, Target, TargetError};
use crate::store::{Store, StoreError};
use crate::units;
use std::path::Path;

impl Run<'_> {
    /// An incremental backup in place (BK-11, BK-24), once the server accepted to send the
    /// transactions after the backup's last tx, starting with `first`. Until then nothing was
    /// written (BK-17): the backup's last tx and digest were read, not recovered, and
    /// leftovers stay.
    pub(super) async fn incremental(
        &mut self,
        target: &mut Target,
        backup: &Existing,
        first: Message,
    ) -> Result<Summary, BackupError> {
        let shown = self.opts.target.display().to_string();
        let (from, digest) = (backup.last_tx, backup.digest);
        // Accepted: now the directory may change. Older generations beyond
        // `--keep-generations` go too (PIT-12).
        target.clean()?;
        target.trim(self.opts.keep_generations)?;
        let lock = target.take_lock();
        let mut store = match Store::open_with_lock(
            self.env.fs.clone(),
            self.env.clock.clone(),
            target.dir(),
            &backup_store_options(self.opts),
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
            return Err(BackupError::RecoveredElsewhere {
                recovered: status.last_committed_tx,
                peeked: from,
            });
        }
        // The live generation's manifest, brought in step first (MF-7). A plain store used as
        // a backup has none that counts, a backup an older version took none at all: the next
        // full backup writes one.
        let gen_dir = store.dir().to_path_buf();
        let in_generation = matches!(
            target.holds(),
            Holds::Backup {
                live: Live::Generation(_),
                ..
            }
        );
        let read = if in_generation {
            Manifest::read(&*self.env.fs, &gen_dir)
        } else {
            // A plain store's manifest, if a copy of a generation carried one, describes files
            // that may have taken writes since: it is left alone (MF-7).
            Ok(None)
        };
        let result = match read {
            Ok(None) => Ok(None),
            Ok(Some(m)) => Keeper::live(&*self.env.fs, &gen_dir, m).and_then(|k| {
                self.keeper = Some(k);
                self.scrub(&gen_dir)
            }),
            Err(e) => Err(manifest_err(e)),
        };
        let result = match result {
            Ok(scrubbed) => self
                .incremental_into(&mut store, from, first)
                .await
                .map(|summary| Summary {
                    scrubbed,
                    ..summary
                }),
            Err(e) => Err(e),
        };
        match result {
            Ok(summary) => {
                target.return_lock(store.close_keeping_lock()?);
                self.prune_history(&gen_dir, summary.to_tx)?;
                if let Some(keeper) = self.keeper.take() {
                    keeper.finish(
                        &*self.env.fs,
                        self.env.clock.now_millis(),
                        summary.to_tx,
                        summary.digest,
                        summary.verified,
                    )?;
                }
                Ok(summary)
            }
            Err(BackupError::VerificationFailed(why)) => {
                // BK-28: the next run must take a full backup. The metadata it rewrites is
                // pending in the manifest first (MF-6).
                if let Some(keeper) = self.keeper.as_mut() {
                    keeper.before_apply(&*self.env.fs, &[], store.status().format)?;
                }
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
            scrubbed: None,
        })
    }

    /// Removes the undo segments no rewind can use any more, or all of them when the backup no
    /// longer keeps transactions (PIT-6), the manifest marking them first; says what the backup
    /// can now be restored to.
    fn prune_history(&mut self, dir: &Path, last_tx: u64) -> Result<(), BackupError> {
        let fs = &*self.env.fs;
        let range = if self.opts.keeps_transactions() {
            Some(history::restorable(fs, dir, last_tx)?)
        } else {
            None
        };
        let keeper = &mut self.keeper;
        history::prune(fs, dir, range.as_ref(), |names: &[String]| match keeper {
            Some(k) => k.before_remove(fs, names),
            None => Ok(()),
        })?;
        if let Some(r) = range {
            self.out.line(&format!(
                "transactions kept: the backup can be restored to any tx from {} to {}",
                r.from_tx, r.to_tx
            ));
        }
        Ok(())
    }

    /// Reads the run's slice of the backup against its manifest (MF-11), before anything is
    /// written: damage fails the run as a failed verification (the caller marks the backup
    /// unverified), naming the block.
    fn scrub(&mut self, dir: &Path) -> Result<Option<Scrubbed>, BackupError> {
        let Some(keeper) = self.keeper.as_mut() else {
            return Ok(None);
        };
        let blocks = scrub_slice(keeper.manifest.total_blocks(), self.opts.scrub_percent);
        if blocks == 0 {
            return Ok(None);
        }
        let s = keeper
            .manifest
            .scrub(&*self.env.fs, dir, blocks)
            .map_err(manifest_err)?;
        keeper.changed();
        if let Some(first) = s.findings.first() {
            return Err(BackupError::VerificationFailed(VerifyFailure::Scrub {
                count: s.findings.len(),
                first: first.to_string(),
            }));
        }
        self.out.line(&format!(
            "scrubbed {} of {} blocks ({}) against the manifest: intact; {}% of the backup read since its last full verification",
            s.blocks,
            s.total,
            units::bytes(s.bytes),
            s.since_full * 100 / s.total.max(1)
        ));
        Ok(Some(s))
    }
}
