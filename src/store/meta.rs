//! The metadata file `neostore.meta`: store id, format version and the last checkpoint.
//!
//! Owns: the metadata layout (ST-10) and its durable replacement.
//! Must not touch: record files or logs. The checkpoint procedure (store/mod.rs) decides *when*
//! metadata is written; this module only says *how*.

use std::fmt;
use std::path::Path;

use crate::digest::Digest;
use crate::io::{self, Fs};
use crate::store::format::FormatVersion;
use crate::store::log::TxState;

/// The metadata file's name inside a store directory (ST-1).
pub const META_FILE: &str = "neostore.meta";
const MAGIC: &[u8; 8] = b"NEOSTORE";
const META_LAYOUT_VERSION: u32 = 1;
/// Total encoded size, checksum included.
pub const META_SIZE: usize = 8 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 32 + 8 * 5 + 4 + 4;

/// Identifies a store and every backup of it (ST-11): creation time in milliseconds since the
/// Unix epoch plus a random number, made once when the store is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreId {
    pub created_millis: u64,
    pub random: u64,
}

impl fmt::Display for StoreId {
    /// `<creation millis, 12 hex digits>-<random, 16 hex digits>`, e.g. `0193a2b4c5d6-9f1e...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012x}-{:016x}", self.created_millis, self.random)
    }
}

impl StoreId {
    /// Parses what `Display` prints.
    pub fn parse(s: &str) -> Option<StoreId> {
        let (a, b) = s.split_once('-')?;
        Some(StoreId {
            created_millis: u64::from_str_radix(a, 16).ok()?,
            random: u64::from_str_radix(b, 16).ok()?,
        })
    }
}

/// The state a checkpoint records: everything needed to resume from the log position it names
/// without reading a record (ST-10, RC-1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every tx up to and including this one is in the record files, and they were synced.
    pub last_tx: u64,
    /// The log file and byte offset where the first transaction after `last_tx` starts (or will).
    pub log_version: u64,
    pub log_offset: u64,
    pub digest: Digest,
    pub nodes: u64,
    pub relationships: u64,
    /// High-water marks: the next id each record file hands out (ST-9).
    pub next_node: u64,
    pub next_rel: u64,
    pub next_block: u64,
}

impl Checkpoint {
    /// The checkpoint of `state` at tx `last_tx`, replay starting at `log_version`/`log_offset`.
    pub fn at(last_tx: u64, log_version: u64, log_offset: u64, state: &TxState) -> Checkpoint {
        Checkpoint {
            last_tx,
            log_version,
            log_offset,
            digest: state.digest,
            nodes: state.nodes,
            relationships: state.relationships,
            next_node: state.next_node,
            next_rel: state.next_rel,
            next_block: state.next_block,
        }
    }

    /// The state after `last_tx` that this checkpoint records.
    pub fn state(&self) -> TxState {
        TxState {
            digest: self.digest,
            nodes: self.nodes,
            relationships: self.relationships,
            next_node: self.next_node,
            next_rel: self.next_rel,
            next_block: self.next_block,
        }
    }
}

/// The whole metadata file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub store_id: StoreId,
    pub format: FormatVersion,
    pub checkpoint: Checkpoint,
    /// Set on a backup whose verification failed after an in-place apply: the next backup run
    /// must take a full backup (BK rules).
    pub unverified: bool,
}

/// Why a metadata file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("no {META_FILE} in {0}")]
    Missing(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{META_FILE} is damaged: {0}")]
    Damaged(&'static str),
    #[error("format version {0} is not supported (supported: 1, 2)")]
    UnsupportedFormat(u32),
}

impl Meta {
    pub fn encode(&self) -> Vec<u8> {
        let c = &self.checkpoint;
        let mut out = Vec::with_capacity(META_SIZE);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&META_LAYOUT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.format.0.to_le_bytes());
        for v in [
            self.store_id.created_millis,
            self.store_id.random,
            c.last_tx,
            c.log_version,
            c.log_offset,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&c.digest.0);
        for v in [
            c.nodes,
            c.relationships,
            c.next_node,
            c.next_rel,
            c.next_block,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.unverified as u32).to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), META_SIZE);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Meta, MetaError> {
        if b.len() != META_SIZE {
            return Err(MetaError::Damaged("wrong length"));
        }
        if &b[..8] != MAGIC {
            return Err(MetaError::Damaged("bad magic"));
        }
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8"));
        let body = META_SIZE - 4;
        if u32_at(body) != crc32c::crc32c(&b[..body]) {
            return Err(MetaError::Damaged("checksum mismatch"));
        }
        if u32_at(8) != META_LAYOUT_VERSION {
            return Err(MetaError::Damaged("unknown metadata layout"));
        }
        let format = FormatVersion(u32_at(12));
        if !format.is_supported() {
            return Err(MetaError::UnsupportedFormat(format.0));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&b[56..88]);
        Ok(Meta {
            store_id: StoreId {
                created_millis: u64_at(16),
                random: u64_at(24),
            },
            format,
            checkpoint: Checkpoint {
                last_tx: u64_at(32),
                log_version: u64_at(40),
                log_offset: u64_at(48),
                digest: Digest(digest),
                nodes: u64_at(88),
                relationships: u64_at(96),
                next_node: u64_at(104),
                next_rel: u64_at(112),
                next_block: u64_at(120),
            },
            unverified: u32_at(128) != 0,
        })
    }

    /// Reads `dir/neostore.meta`.
    pub fn read(fs: &dyn Fs, dir: &Path) -> Result<Meta, MetaError> {
        let path = dir.join(META_FILE);
        if fs.metadata(&path)?.is_none() {
            return Err(MetaError::Missing(dir.display().to_string()));
        }
        Meta::decode(&io::read_small_file(fs, &path, 4096)?)
    }

    /// Replaces `dir/neostore.meta` durably and atomically (IO-2).
    pub fn write(&self, fs: &dyn Fs, dir: &Path) -> std::io::Result<()> {
        io::write_atomic(fs, &dir.join(META_FILE), &self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ST-10: metadata round-trips and a flipped bit is detected.
    #[test]
    fn st_10_meta_round_trips_and_detects_damage() {
        let m = Meta {
            store_id: StoreId {
                created_millis: 1_700_000_000_000,
                random: 42,
            },
            format: FormatVersion::V1,
            checkpoint: Checkpoint {
                last_tx: 9,
                log_version: 2,
                log_offset: 64,
                digest: Digest([3; 32]),
                nodes: 5,
                relationships: 6,
                next_node: 7,
                next_rel: 8,
                next_block: 10,
            },
            unverified: true,
        };
        let b = m.encode();
        assert_eq!(Meta::decode(&b).unwrap(), m);
        let mut bad = b.clone();
        bad[40] ^= 1;
        assert!(matches!(Meta::decode(&bad), Err(MetaError::Damaged(_))));
        // ST-11
        assert_eq!(StoreId::parse(&m.store_id.to_string()), Some(m.store_id));
    }
}
