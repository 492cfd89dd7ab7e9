//! Recovery (spec/recovery.md): replaying every whole transaction after the checkpoint onto the
//! record files when a store opens, cutting a torn or corrupt tail of the last log file, and
//! finding the tx recovery would reach without writing anything (a backup that may still be
//! refused, BK-17).
//!
//! Owns: reading the logs from the checkpoint on. Must not touch: the metadata (the store
//! checkpoints after a replay) or anything but the log tail it cuts.

use std::path::Path;

use super::layout;
use super::log::{self, LogHeader, ReadOutcome, TxState, HEADER_SIZE};
use super::meta::Meta;
use super::records::RecordFiles;
use super::{create_log_file, ActiveLog, StoreError};
use crate::digest::Digest;
use crate::io::{Fs, OpenMode};

/// The last whole transaction of the store `dir` means (following a backup's pointer) and the
/// digest after it: the tx recovery would reach, found by reading only (BK-17: a backup run
/// that may still be refused must not write, and opening recovers).
pub fn peek_last_tx(fs: &dyn Fs, dir: &Path) -> Result<(u64, Digest), StoreError> {
    let data = layout::resolve(fs, dir)?;
    let meta = Meta::read(fs, &data).map_err(|e| StoreError::from_meta(&data, e))?;
    let cp = &meta.checkpoint;
    let (mut last, mut digest) = (cp.last_tx, cp.state.digest);
    let io_err = |e| StoreError::io(format!("reading the logs of {}", data.display()), e);
    let versions: Vec<u64> = log::list_log_versions(fs, &data)
        .map_err(io_err)?
        .into_iter()
        .filter(|&v| v >= cp.log_version)
        .collect();
    for (i, &version) in versions.iter().enumerate() {
        if version != cp.log_version + i as u64 {
            return Err(StoreError::Corrupt(format!(
                "log file {version} follows a gap"
            )));
        }
        let file = fs
            .open(&log::log_path(&data, version), OpenMode::Read)
            .map_err(io_err)?;
        let len = file.len().map_err(io_err)?;
        let mut offset = if version == cp.log_version {
            cp.log_offset
        } else {
            match LogHeader::read(&*file).map_err(io_err)? {
                Some(h) if h.log_version == version && h.prev_last_tx == last => HEADER_SIZE,
                // A rotation that never became durable: recovery recreates it empty (RC-5).
                _ if i + 1 == versions.len() && len <= HEADER_SIZE => break,
                _ => {
                    return Err(StoreError::Corrupt(format!(
                        "log file {version} has a damaged header"
                    )))
                }
            }
        };
        while let ReadOutcome::Entry(entry, next) =
            log::read_entry(&*file, offset, len).map_err(io_err)?
        {
            if entry.tx_id != last + 1 {
                return Err(StoreError::Corrupt(format!(
                    "log file {version} holds tx {} where tx {} was expected",
                    entry.tx_id,
                    last + 1
                )));
            }
            last = entry.tx_id;
            digest = entry.after.digest;
            offset = next;
        }
    }
    Ok((last, digest))
}

/// What recovery found.
pub(super) struct Recovered {
    pub(super) log: ActiveLog,
    pub(super) last_tx: u64,
    pub(super) state: TxState,
    pub(super) replayed: u64,
}

/// Replays every whole transaction after the checkpoint onto the record files, cutting a torn
/// or corrupt tail of the last log file (RC-1 .. RC-5).
pub(super) fn recover(
    fs: &dyn Fs,
    dir: &Path,
    meta: &Meta,
    files: &RecordFiles,
) -> Result<Recovered, StoreError> {
    let cp = &meta.checkpoint;
    let mut last_tx = cp.last_tx;
    let mut state = cp.state();
    let versions: Vec<u64> = log::list_log_versions(fs, dir)
        .map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?
        .into_iter()
        .filter(|&v| v >= cp.log_version)
        .collect();
    if versions.first() != Some(&cp.log_version) {
        return Err(StoreError::Corrupt(format!(
            "log file {} that recovery starts from is missing",
            cp.log_version
        )));
    }
    if let Some(gap) = versions.windows(2).find(|w| w[1] != w[0] + 1) {
        return Err(StoreError::Corrupt(format!(
            "log file {} is missing between {} and {}",
            gap[0] + 1,
            gap[0],
            gap[1]
        )));
    }
    let mut replayed = 0;
    let mut active = None;
    for (i, &version) in versions.iter().enumerate() {
        let is_last = i + 1 == versions.len();
        let path = log::log_path(dir, version);
        let file = fs
            .open(&path, OpenMode::ReadWrite)
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        let len = file
            .len()
            .map_err(|e| StoreError::io("reading a log file's length", e))?;
        let header =
            LogHeader::read(&*file).map_err(|e| StoreError::io("reading a log header", e))?;
        let header_ok = match &header {
            None => false,
            Some(h) if h.log_version != version => false,
            Some(_) if version == cp.log_version => true,
            Some(h) => {
                if h.prev_last_tx != last_tx || h.prev_digest != state.digest {
                    return Err(StoreError::Corrupt(format!(
                        "log file {version} starts after tx {} (digest {}) but the log before it \
                         ends at tx {last_tx} (digest {})",
                        h.prev_last_tx, h.prev_digest, state.digest
                    )));
                }
                true
            }
        };
        if !header_ok {
            if is_last && version > cp.log_version && len <= HEADER_SIZE {
                // A rotation that crashed before its header was durable: no commit can be in
                // this file, since commits go there only after the header is synced, and the
                // file holds nothing past where the header would end (RC-5).
                drop(file);
                let header = LogHeader {
                    log_version: version,
                    prev_last_tx: last_tx,
                    prev_digest: state.digest,
                };
                let file = create_log_file(fs, &path, &header)?;
                active = Some(ActiveLog {
                    version,
                    file,
                    end: HEADER_SIZE,
                });
                break;
            }
            return Err(StoreError::Corrupt(format!(
                "log file {version} has a damaged header"
            )));
        }
        let mut offset = if version == cp.log_version {
            cp.log_offset
        } else {
            HEADER_SIZE
        };
        if offset > len {
            return Err(StoreError::Corrupt(format!(
                "the checkpoint points at offset {offset} of log file {version}, which is only {len} bytes"
            )));
        }
        loop {
            let outcome = log::read_entry(&*file, offset, len)
                .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
            match outcome {
                ReadOutcome::Entry(entry, next) => {
                    if entry.tx_id != last_tx + 1 {
                        return Err(StoreError::Corrupt(format!(
                            "log file {version} holds tx {} where tx {} was expected",
                            entry.tx_id,
                            last_tx + 1
                        )));
                    }
                    files.apply_all(&entry.records)?;
                    last_tx = entry.tx_id;
                    state = entry.after;
                    replayed += 1;
                    offset = next;
                }
                ReadOutcome::End => break,
                ReadOutcome::Torn(why) => {
                    if !is_last {
                        return Err(StoreError::Corrupt(format!(
                            "log file {version} is damaged at offset {offset} ({why}) and later log files exist"
                        )));
                    }
                    tracing::warn!(
                        "cutting the torn tail of log file {version} at offset {offset}: {why}"
                    );
                    file.set_len(offset)
                        .and_then(|()| file.sync())
                        .map_err(|e| StoreError::io("truncating the log's torn tail", e))?;
                    break;
                }
            }
        }
        if is_last {
            active = Some(ActiveLog {
                version,
                file,
                end: offset,
            });
        }
    }
    Ok(Recovered {
        log: active.expect("versions is not empty"),
        last_tx,
        state,
        replayed,
    })
}
