//! `neo4j-admin upgrade`: migrates a store of the previous format to the current one offline,
//! keeping its store id, digest, ids and logs (ADM-5).
//!
//! Owns: the migration procedure and finishing one a crash interrupted.
//! Must not touch: the graph's content. Records are transformed one for one (format 2 is
//! format 1 plus a CRC), so ids and the digest cannot change; the logs are format-independent
//! (LOG-6) and stay as they are.
//!
//! Crash safety: every converted file is written beside its original as `<name>.upgrade` and
//! synced; then the new metadata is written as `neostore.meta.upgrade` and synced. That file is
//! the commit point: from then on, opening the store rolls the upgrade forward by renaming each
//! `.upgrade` file over its original (idempotent). Without it, leftover `.upgrade` files are
//! removed and the store is still the old format.

use std::path::Path;
use std::sync::Arc;

use crate::io::{read_small_file, sibling_with_suffix, write_atomic, Clock, Fs, OpenMode};
use crate::store::format::{convert_record, FormatVersion, RecordKind};
use crate::store::meta::{Meta, META_FILE};
use crate::store::{Store, StoreError, StoreOptions};

const SUFFIX: &str = ".upgrade";

/// Records converted per read/write; bounds memory (ST-12).
const BATCH_RECORDS: usize = 8192;

/// What an upgrade did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeOutcome {
    Upgraded {
        from: FormatVersion,
        to: FormatVersion,
    },
    AlreadyCurrent(FormatVersion),
}

/// Upgrades the store in `dir` to [`FormatVersion::CURRENT`].
pub fn upgrade(
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    dir: &Path,
) -> Result<UpgradeOutcome, StoreError> {
    // Opening recovers and checkpoints; closing checkpoints again, so the record files hold
    // every committed tx and nothing after the checkpoint needs the old record layout.
    let store = Store::open(fs.clone(), clock, dir, &StoreOptions::default())?;
    // A backup directory's files are in its live generation (BK-31).
    let dir = &store.dir().to_path_buf();
    let from = store.meta().format;
    if from == FormatVersion::CURRENT {
        store.close()?;
        return Ok(UpgradeOutcome::AlreadyCurrent(from));
    }
    let mut meta = store.meta().clone();
    // The directory stays locked for the whole migration.
    let _lock = store.close_keeping_lock()?;
    let to = FormatVersion::CURRENT;
    for kind in RecordKind::ALL {
        convert_file(&*fs, dir, kind, from, to)?;
    }
    // Every converted file's directory entry is durable before the commit point exists.
    fs.sync_dir(dir)
        .map_err(|e| StoreError::io("syncing the store directory", e))?;
    meta.format = to;
    // The commit point, written atomically: it exists whole or not at all.
    write_atomic(
        &*fs,
        &dir.join(format!("{META_FILE}{SUFFIX}")),
        &meta.encode(),
    )
    .map_err(|e| StoreError::io("writing the staged metadata", e))?;
    finish_interrupted(&*fs, dir)?;
    Ok(UpgradeOutcome::Upgraded { from, to })
}

fn convert_file(
    fs: &dyn Fs,
    dir: &Path,
    kind: RecordKind,
    from: FormatVersion,
    to: FormatVersion,
) -> Result<(), StoreError> {
    let src_path = dir.join(kind.file_name());
    let dst_path = sibling_with_suffix(&src_path, SUFFIX);
    let io_err = |what: &str, e| StoreError::io(format!("{what} {}", kind.file_name()), e);
    let src = fs
        .open(&src_path, OpenMode::Read)
        .map_err(|e| io_err("opening", e))?;
    let dst = fs
        .open(&dst_path, OpenMode::CreateTruncate)
        .map_err(|e| io_err("creating the upgraded", e))?;
    let (in_size, out_size) = (kind.size(from), kind.size(to));
    let len = src.len().map_err(|e| io_err("reading", e))?;
    let records = len / in_size as u64;
    let mut id = 0u64;
    let mut inbuf = vec![0u8; in_size * BATCH_RECORDS];
    let mut outbuf = Vec::with_capacity(out_size * BATCH_RECORDS);
    while id < records {
        let n = (records - id).min(BATCH_RECORDS as u64) as usize;
        let chunk = &mut inbuf[..n * in_size];
        src.read_exact_at(chunk, id * in_size as u64)
            .map_err(|e| io_err("reading", e))?;
        outbuf.clear();
        for (i, rec) in chunk.chunks(in_size).enumerate() {
            let converted = convert_record(kind, from, to, rec).map_err(|e| {
                StoreError::Corrupt(format!(
                    "{} record {}: {e}",
                    kind.file_name(),
                    id + i as u64
                ))
            })?;
            outbuf.extend_from_slice(&converted);
        }
        dst.write_all_at(&outbuf, id * out_size as u64)
            .map_err(|e| io_err("writing the upgraded", e))?;
        id += n as u64;
    }
    dst.sync().map_err(|e| io_err("syncing the upgraded", e))
}

/// Rolls an upgrade forward when its staged metadata exists, or discards its leftovers when it
/// does not. Called by every opener before it reads the metadata.
pub fn finish_interrupted(fs: &dyn Fs, dir: &Path) -> Result<(), StoreError> {
    let staged = dir.join(format!("{META_FILE}{SUFFIX}"));
    let exists = |p: &Path| {
        fs.metadata(p)
            .map(|m| m.is_some())
            .map_err(|e| StoreError::io("reading the store directory", e))
    };
    // Staged metadata that does not decode cannot be the commit point (it was written with
    // write_atomic, so this means outside damage): the upgrade did not commit.
    let committed = exists(&staged)?
        && read_small_file(fs, &staged, 4096)
            .ok()
            .is_some_and(|b| Meta::decode(&b).is_ok());
    if !committed && exists(&staged)? {
        fs.remove_file(&staged)
            .map_err(|e| StoreError::io("discarding damaged staged metadata", e))?;
    }
    let mut touched = false;
    for kind in RecordKind::ALL {
        let path = dir.join(kind.file_name());
        let pending = sibling_with_suffix(&path, SUFFIX);
        if exists(&pending)? {
            touched = true;
            let result = if committed {
                fs.rename(&pending, &path)
            } else {
                fs.remove_file(&pending)
            };
            result.map_err(|e| StoreError::io("finishing an interrupted upgrade", e))?;
        }
    }
    if committed {
        touched = true;
        fs.rename(&staged, &dir.join(META_FILE))
            .map_err(|e| StoreError::io("finishing an interrupted upgrade", e))?;
    }
    if touched {
        fs.sync_dir(dir)
            .map_err(|e| StoreError::io("syncing the store directory", e))?;
    }
    Ok(())
}
