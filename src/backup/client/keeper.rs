//! Keeping a generation's manifest in step with what a run writes (MF-6 .. MF-8): a full
//! backup's manifest from the hashes of the copy plus the blocks its replay rewrote; an
//! incremental's pending blocks made durable before it writes them, rehashed when it is done.

use std::path::{Path, PathBuf};

use super::error::VerifyFailure;
use super::{BackupError, Verified};
use crate::backup::manifest::{Manifest, ManifestError, Verification, BLOCK_SIZE, TO_END};
use crate::digest::Digest;
use crate::io::Fs;
use crate::store::format::FormatVersion;
use crate::store::log::{list_log_versions, log_path, TxEntry};
use crate::store::meta::META_FILE;
use crate::store::records::key_of;
use crate::store::StoreError;

/// A run's manifest while the run writes the generation it describes.
pub(super) struct Keeper {
    pub(super) manifest: Manifest,
    /// The generation directory.
    dir: PathBuf,
    /// Whether pending blocks must be durable before the run writes them (MF-6): true for the
    /// live generation an incremental writes in place; a full backup's generation is not live
    /// until its manifest is written whole, so nothing is written before.
    durable: bool,
    /// Whether the metadata and the log files are pending yet (they are marked once, before
    /// the first write).
    store_files_marked: bool,
    /// Whether the manifest changed in memory without a file changing (a scrub moved its
    /// cursor), so it must be written at the end.
    changed: bool,
}

impl Keeper {
    /// The keeper of a new generation, from the record files as the copy hashed them; the
    /// files the run creates (metadata, logs) are hashed when it finishes.
    pub(super) fn new_generation(dir: &Path, mut manifest: Manifest) -> Keeper {
        manifest.pending.new_files = true;
        Keeper {
            manifest,
            dir: dir.to_path_buf(),
            durable: false,
            store_files_marked: true,
            changed: false,
        }
    }

    /// The keeper of the live generation an incremental writes in place, from its manifest.
    /// What an interrupted run left pending is rehashed first (MF-7), after the store has
    /// recovered, so the run starts from a manifest that describes the files exactly.
    pub(super) fn live(
        fs: &dyn Fs,
        dir: &Path,
        mut manifest: Manifest,
    ) -> Result<Keeper, BackupError> {
        if !manifest.pending.is_empty() {
            tracing::info!("rehashing the blocks an interrupted run changed");
            manifest.refresh(fs, dir).map_err(manifest_err)?;
            manifest
                .write(fs, dir)
                .map_err(|e| StoreError::io("writing the manifest", e))?;
        }
        Ok(Keeper {
            manifest,
            dir: dir.to_path_buf(),
            durable: true,
            store_files_marked: false,
            changed: false,
        })
    }

    /// The manifest changed in memory (a scrub): it is written at the end.
    pub(super) fn changed(&mut self) {
        self.changed = true;
    }

    /// Marks the blocks `entries` will write as pending, durably when the generation is live
    /// (MF-6): each record's blocks, a record file's end when a record lies past it, and, the
    /// first time, the metadata and every log file from its last block on (appends, rotation
    /// and pruning), with new files allowed.
    pub(super) fn before_apply(
        &mut self,
        fs: &dyn Fs,
        entries: &[TxEntry],
        format: FormatVersion,
    ) -> Result<(), BackupError> {
        let block = BLOCK_SIZE as u64;
        let io_err = |e| StoreError::io("marking the blocks a run writes in the manifest", e);
        let mut ranges: Vec<(String, u64, u64)> = Vec::new();
        if !self.store_files_marked {
            ranges.push((META_FILE.to_string(), 0, TO_END));
            for version in list_log_versions(fs, &self.dir).map_err(io_err)? {
                let path = log_path(&self.dir, version);
                let len = fs.metadata(&path).map_err(io_err)?.map_or(0, |m| m.len);
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                ranges.push((name.into_owned(), len / block, TO_END));
            }
        }
        for image in entries.iter().flat_map(|e| &e.records) {
            let (kind, id) = key_of(image);
            let name = kind.file_name();
            let listed = self.manifest.file(name).map_or(0, |f| f.size);
            let (first, last) = blocks_written(id, kind.size(format) as u64, listed, block);
            if !self.manifest.pending.covers_range(name, first, last) {
                ranges.push((name.to_string(), first, last));
            }
        }
        let mut changed = false;
        for (name, first, last) in ranges {
            // What a run rewrites must be intact before: the rehash after would take it.
            let damaged = self
                .manifest
                .check_blocks(fs, &self.dir, &name, first, last)
                .map_err(manifest_err)?;
            if let Some(f) = damaged.first() {
                return Err(BackupError::VerificationFailed(
                    VerifyFailure::DamagedBeforeWrite(f.to_string()),
                ));
            }
            changed |= self.manifest.pending.add(&name, first, last);
        }
        if !self.store_files_marked {
            changed |= !self.manifest.pending.new_files;
            self.manifest.pending.new_files = true;
            self.store_files_marked = true;
        }
        if changed && self.durable {
            self.manifest
                .write(fs, &self.dir)
                .map_err(|e| StoreError::io("writing the manifest", e))?;
        }
        Ok(())
    }

    /// Marks files the run is about to remove or replace whole (undo segments no rewind can
    /// use, PIT-6, or one a failed run left at the tx this run starts from, PIT-4) as pending,
    /// durably when the generation is live, so a crash before the end of the run leaves a
    /// manifest that allows their absence or new bytes (MF-5).
    pub(super) fn before_remove(
        &mut self,
        fs: &dyn Fs,
        names: &[String],
    ) -> Result<(), BackupError> {
        let mut changed = false;
        for name in names {
            changed |= self.manifest.pending.add(name, 0, TO_END);
        }
        if changed && self.durable {
            self.manifest
                .write(fs, &self.dir)
                .map_err(|e| StoreError::io("writing the manifest", e))?;
        }
        Ok(())
    }

    /// Rehashes what the run wrote and writes the manifest at `last_tx` (MF-6, MF-8), once the
    /// store is closed. An incremental that applied nothing has nothing pending; closing may
    /// still have pruned a log file, which is dropped from the manifest.
    pub(super) fn finish(
        mut self,
        fs: &dyn Fs,
        now_millis: u64,
        last_tx: u64,
        digest: Digest,
        verified: Verified,
    ) -> Result<(), BackupError> {
        let gone: Vec<String> = self
            .manifest
            .files
            .iter()
            .filter(|f| matches!(fs.metadata(&self.dir.join(&f.name)), Ok(None)))
            .map(|f| f.name.clone())
            .collect();
        for name in gone {
            self.manifest.pending.add(&name, 0, TO_END);
        }
        let unchanged = !self.changed
            && self.manifest.pending.is_empty()
            && (self.manifest.last_tx, self.manifest.digest) == (last_tx, digest)
            && verified != Verified::FullScan;
        if unchanged {
            return Ok(());
        }
        self.manifest.refresh(fs, &self.dir).map_err(manifest_err)?;
        let m = &mut self.manifest;
        m.last_tx = last_tx;
        m.digest = digest;
        m.written_millis = now_millis;
        m.verification = match verified {
            Verified::Skipped | Verified::Stream => Verification::None,
            Verified::Touched => Verification::Touched,
            Verified::FullScan => Verification::Full,
        };
        if verified == Verified::FullScan {
            m.last_full_verification = Some((now_millis, last_tx));
            m.scrubbed_since_full = 0;
        }
        m.write(fs, &self.dir)
            .map_err(|e| StoreError::io("writing the manifest", e))?;
        Ok(())
    }
}

/// The blocks that writing record `id`, of `size` bytes, into a record file listed at `listed`
/// bytes changes (MF-8): the blocks its bytes lie in; when it reaches the block holding the
/// listed end or lies past it, the file's size changes too, so from that block (or the record's
/// first, if before) to the end.
fn blocks_written(id: u64, size: u64, listed: u64, block: u64) -> (u64, u64) {
    let (start, end) = (id * size, id * size + size - 1);
    let end_block = listed / block;
    if end / block >= end_block {
        ((start / block).min(end_block), TO_END)
    } else {
        (start / block, end / block)
    }
}

/// A manifest that cannot be brought in step is a failed verification (MF-7): the backup is
/// marked unverified and the next run takes a full backup.
pub(super) fn manifest_err(e: ManifestError) -> BackupError {
    match e {
        ManifestError::Damaged(why) => {
            BackupError::VerificationFailed(VerifyFailure::Manifest(why))
        }
        ManifestError::Io { context, source } => StoreError::io(context, source).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // MF-8: the blocks a record write marks pending, against a scan of the blocks its bytes
    // touch, for every record of a few sizes (dividing a block, straddling blocks, larger than
    // one) in files of every listed size up to a few blocks, blocks of 16 bytes.
    #[test]
    fn mf_8_a_record_write_marks_the_blocks_it_touches_and_the_end_when_it_grows_the_file() {
        let block = 16;
        for size in [1, 4, 5, 16, 23, 40] {
            for id in 0..30 {
                let (start, end) = (id * size, (id + 1) * size);
                let touched: Vec<u64> = (0..)
                    .take_while(|b| b * block < end)
                    .filter(|b| (b + 1) * block > start)
                    .collect();
                for listed in 0..6 * block {
                    let end_block = listed / block;
                    let want = if touched.iter().any(|&b| b >= end_block) {
                        (touched[0].min(end_block), TO_END)
                    } else {
                        (touched[0], *touched.last().unwrap())
                    };
                    assert_eq!(
                        blocks_written(id, size, listed, block),
                        want,
                        "MF-8: record {id} of {size} bytes (bytes {start}..{end}) in a file listed at {listed} bytes"
                    );
                }
            }
        }
    }
}
