//! The metadata file `neostore.meta`: store id, format version and the last checkpoint.
//!
//! Owns: the metadata layout (ST-10) and its durable replacement.
//! Must not touch: record files or logs. The checkpoint procedure (store/mod.rs) decides *when*
//! metadata is written; this module only says *how*.

use std::fmt;
use std::path::Path;

use bytes::BufMut;

use crate::codec::{DecodeError, Reader};
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
    /// The wire and disk encoding (ST-10, PR-2): creation millis, then the random number.
    pub fn put(&self, out: &mut impl BufMut) {
        out.put_u64_le(self.created_millis);
        out.put_u64_le(self.random);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<StoreId, DecodeError> {
        Ok(StoreId {
            created_millis: r.u64()?,
            random: r.u64()?,
        })
    }

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
    /// The state after `last_tx`: digest, counts and the high-water marks, the next id each
    /// record file hands out (ST-9).
    pub state: TxState,
}

impl Checkpoint {
    pub fn at(last_tx: u64, log_version: u64, log_offset: u64, state: &TxState) -> Checkpoint {
        Checkpoint {
            last_tx,
            log_version,
            log_offset,
            state: *state,
        }
    }

    /// The state after `last_tx` that this checkpoint records.
    pub fn state(&self) -> TxState {
        self.state
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
    /// The layout of ST-10: magic, layout version, format, store id, the checkpoint's tx and
    /// log position, its state, the unverified mark, then a CRC32C of everything before.
    pub fn encode(&self) -> Vec<u8> {
        let c = &self.checkpoint;
        let mut out = Vec::with_capacity(META_SIZE);
        out.put_slice(MAGIC);
        out.put_u32_le(META_LAYOUT_VERSION);
        out.put_u32_le(self.format.0);
        self.store_id.put(&mut out);
        out.put_u64_le(c.last_tx);
        out.put_u64_le(c.log_version);
        out.put_u64_le(c.log_offset);
        c.state.put(&mut out);
        out.put_u32_le(self.unverified as u32);
        out.put_u32_le(crc32c::crc32c(&out));
        debug_assert_eq!(out.len(), META_SIZE);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Meta, MetaError> {
        if b.len() != META_SIZE {
            return Err(MetaError::Damaged("wrong length"));
        }
        let damaged = |_| MetaError::Damaged("truncated");
        let (body, crc) = b.split_at(META_SIZE - 4);
        let mut r = Reader::new(body);
        if r.bytes(8).map_err(damaged)? != MAGIC {
            return Err(MetaError::Damaged("bad magic"));
        }
        if Reader::new(crc).u32().map_err(damaged)? != crc32c::crc32c(body) {
            return Err(MetaError::Damaged("checksum mismatch"));
        }
        if r.u32().map_err(damaged)? != META_LAYOUT_VERSION {
            return Err(MetaError::Damaged("unknown metadata layout"));
        }
        let format = FormatVersion(r.u32().map_err(damaged)?);
        if !format.is_supported() {
            return Err(MetaError::UnsupportedFormat(format.0));
        }
        let mut read = || -> Result<Meta, DecodeError> {
            let meta = Meta {
                store_id: StoreId::read(&mut r)?,
                format,
                checkpoint: Checkpoint {
                    last_tx: r.u64()?,
                    log_version: r.u64()?,
                    log_offset: r.u64()?,
                    state: TxState::read(&mut r)?,
                },
                unverified: r.u32()? != 0,
            };
            Ok(meta)
        };
        let meta = read().map_err(damaged)?;
        r.finish().map_err(damaged)?;
        Ok(meta)
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
                state: TxState {
                    digest: crate::digest::Digest([3; 32]),
                    nodes: 5,
                    relationships: 6,
                    next_node: 7,
                    next_rel: 8,
                    next_block: 10,
                },
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
