//! A generation's manifest (spec/manifest.md, MF-1 .. MF-4): what each file of a backup
//! generation holds, to the block, so that damage is found at the speed of reading the files and
//! named by file and block, before any consistency check.
//!
//! Owns: the manifest's byte layout (MF-1), decoding it with every bound checked first (MF-2),
//! hashing a file into blocks (MF-3) and verifying a directory against a manifest (MF-4).
//! Must not touch: when a manifest is written or what the files mean: the backup client and
//! the admin tools decide that. Reads go through the `Fs` seam, one block buffer at a time, so
//! memory does not grow with the store.

use std::path::Path;

use bytes::BufMut;

use crate::codec::{put_str_u16, DecodeError, Reader};
use crate::digest::Digest;
use crate::io::{self, Fs, OpenMode};
use crate::store::format::FormatVersion;
use crate::store::meta::StoreId;

/// The manifest's file name inside a generation directory (MF-1).
pub const MANIFEST_FILE: &str = "MANIFEST";
/// The block size manifests are written with (MF-1).
pub const BLOCK_SIZE: u32 = 1 << 20;
const MAGIC: &[u8; 8] = b"BKUPMANI";
const LAYOUT_VERSION: u32 = 1;
/// The largest manifest read (MF-2): two million block hashes, 2 TiB of store at 1 MiB blocks.
pub const MAX_MANIFEST: u64 = 64 << 20;
const MAX_FILES: u32 = 4096;
const MAX_SOURCE: usize = 255;
const MAX_TOOL_VERSION: usize = 64;
const HASH: usize = 32;

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is damaged: {0}")]
    Damaged(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<DecodeError> for ManifestError {
    fn from(e: DecodeError) -> ManifestError {
        ManifestError::Damaged(e.to_string())
    }
}

/// The verification the run that wrote a manifest did (MF-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    None = 0,
    /// The records the run wrote were checked (an incremental's default).
    Touched = 1,
    /// The whole store was checked.
    Full = 2,
}

/// One file of a generation: its size and the BLAKE3 hash of each block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub blocks: Vec<[u8; HASH]>,
}

impl FileEntry {
    /// The file hash (MF-3): BLAKE3 over the size and the block hashes, so that changing a
    /// block changes it without reading the other blocks again.
    pub fn file_hash(&self) -> [u8; HASH] {
        let mut h = blake3::Hasher::new();
        h.update(&self.size.to_le_bytes());
        for b in &self.blocks {
            h.update(b);
        }
        *h.finalize().as_bytes()
    }
}

/// What a generation holds (MF-1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub block_size: u32,
    pub store_id: StoreId,
    pub format: FormatVersion,
    /// The tx the generation's full backup reached.
    pub first_tx: u64,
    pub last_tx: u64,
    pub digest: Digest,
    pub created_millis: u64,
    pub written_millis: u64,
    pub verification: Verification,
    /// When, and at which tx, the whole generation was last verified; `None` if never.
    pub last_full_verification: Option<(u64, u64)>,
    /// The next block to scrub, counted over all files' blocks in manifest order.
    pub scrub_cursor: u64,
    /// Blocks scrubbed since the last full verification.
    pub scrubbed_since_full: u64,
    /// The server the generation came from (`host:port`).
    pub source: String,
    pub tool_version: String,
    /// Strictly ascending by name.
    pub files: Vec<FileEntry>,
}

/// Blocks of `size` bytes at `block_size` bytes a block.
fn block_count(size: u64, block_size: u32) -> u64 {
    size.div_ceil(block_size as u64)
}

/// Whether `name` may be listed (MF-1): a plain file name, never the manifest's own.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && !name.starts_with(MANIFEST_FILE)
}

impl Manifest {
    /// The encoding (MF-1), trailer included.
    pub fn encode(&self) -> Vec<u8> {
        let blocks: usize = self.files.iter().map(|f| f.blocks.len()).sum();
        let mut out = Vec::with_capacity(256 + self.files.len() * 300 + blocks * HASH);
        out.put_slice(MAGIC);
        out.put_u32_le(LAYOUT_VERSION);
        out.put_u32_le(self.block_size);
        self.store_id.put(&mut out);
        out.put_u32_le(self.format.0);
        out.put_u64_le(self.first_tx);
        out.put_u64_le(self.last_tx);
        out.put_slice(&self.digest.0);
        out.put_u64_le(self.created_millis);
        out.put_u64_le(self.written_millis);
        out.put_u8(self.verification as u8);
        let (full_millis, full_tx) = self.last_full_verification.unwrap_or((0, 0));
        out.put_u64_le(full_millis);
        out.put_u64_le(full_tx);
        out.put_u64_le(self.scrub_cursor);
        out.put_u64_le(self.scrubbed_since_full);
        put_str_u16(&mut out, &self.source);
        put_str_u16(&mut out, &self.tool_version);
        out.put_u32_le(self.files.len() as u32);
        for f in &self.files {
            put_str_u16(&mut out, &f.name);
            out.put_u64_le(f.size);
            out.put_slice(&f.file_hash());
            for b in &f.blocks {
                out.put_slice(b);
            }
        }
        let trailer = blake3::hash(&out);
        out.put_slice(trailer.as_bytes());
        out
    }

    /// Decodes a manifest (MF-2): the trailer first, then every field against its bound.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let damaged = |why: &str| ManifestError::Damaged(why.to_string());
        if bytes.len() < HASH || bytes.len() as u64 > MAX_MANIFEST {
            return Err(damaged("its length is out of bounds"));
        }
        let (body, trailer) = bytes.split_at(bytes.len() - HASH);
        if blake3::hash(body).as_bytes() != trailer {
            return Err(damaged("its checksum does not match its contents"));
        }
        let mut r = Reader::new(body);
        if r.bytes(8)? != MAGIC {
            return Err(damaged("it does not start with the manifest magic"));
        }
        if r.u32()? != LAYOUT_VERSION {
            return Err(damaged("unknown layout version"));
        }
        let block_size = r.u32()?;
        if !block_size.is_power_of_two() || !(4096..=64 << 20).contains(&block_size) {
            return Err(damaged(
                "the block size is not a power of two in 4 KiB ..= 64 MiB",
            ));
        }
        let store_id = StoreId::read(&mut r)?;
        let format = FormatVersion(r.u32()?);
        let first_tx = r.u64()?;
        let last_tx = r.u64()?;
        if first_tx > last_tx {
            return Err(damaged("its first tx is after its last"));
        }
        let digest = Digest(r.array::<32>()?);
        let created_millis = r.u64()?;
        let written_millis = r.u64()?;
        let verification = match r.u8()? {
            0 => Verification::None,
            1 => Verification::Touched,
            2 => Verification::Full,
            _ => return Err(damaged("unknown verification kind")),
        };
        let full_millis = r.u64()?;
        let full_tx = r.u64()?;
        let last_full_verification = (full_millis != 0).then_some((full_millis, full_tx));
        let scrub_cursor = r.u64()?;
        let scrubbed_since_full = r.u64()?;
        let source = r.str_u16()?;
        let tool_version = r.str_u16()?;
        if source.len() > MAX_SOURCE || tool_version.len() > MAX_TOOL_VERSION {
            return Err(damaged("its source or tool version is too long"));
        }
        let count = r.u32()?;
        if count > MAX_FILES {
            return Err(damaged("it lists too many files"));
        }
        let mut files: Vec<FileEntry> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let name = r.str_u16()?;
            if !valid_name(&name) {
                return Err(damaged("a file name is not a plain file name"));
            }
            if files.last().is_some_and(|prev| prev.name >= name) {
                return Err(damaged("its files are not in strictly ascending order"));
            }
            let size = r.u64()?;
            let file_hash = r.array::<32>()?;
            let n = block_count(size, block_size);
            // Bound before allocating: the blocks must be in the bytes left.
            if n > (r.remaining() / HASH) as u64 {
                return Err(damaged("a file's block hashes end early"));
            }
            let mut blocks = Vec::with_capacity(n as usize);
            for _ in 0..n {
                blocks.push(r.array::<32>()?);
            }
            let entry = FileEntry { name, size, blocks };
            if entry.file_hash() != file_hash {
                return Err(ManifestError::Damaged(format!(
                    "the file hash of {} does not match its block hashes",
                    entry.name
                )));
            }
            files.push(entry);
        }
        r.finish()?;
        Ok(Manifest {
            block_size,
            store_id,
            format,
            first_tx,
            last_tx,
            digest,
            created_millis,
            written_millis,
            verification,
            last_full_verification,
            scrub_cursor,
            scrubbed_since_full,
            source,
            tool_version,
            files,
        })
    }

    /// Reads `dir/MANIFEST`; `None` when there is none.
    pub fn read(fs: &dyn Fs, dir: &Path) -> Result<Option<Manifest>, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let io_err = |source| ManifestError::Io {
            context: format!("reading {}", path.display()),
            source,
        };
        if fs.metadata(&path).map_err(io_err)?.is_none() {
            return Ok(None);
        }
        let bytes = io::read_small_file(fs, &path, MAX_MANIFEST).map_err(io_err)?;
        Manifest::decode(&bytes).map(Some)
    }

    /// Durably replaces `dir/MANIFEST` (temporary file, sync, rename, directory sync).
    pub fn write(&self, fs: &dyn Fs, dir: &Path) -> std::io::Result<()> {
        io::write_atomic(fs, &dir.join(MANIFEST_FILE), &self.encode())
    }
}

/// Hashes `dir/name` block by block (MF-3), reading it once, one block at a time.
pub fn hash_file(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
    block_size: u32,
) -> std::io::Result<FileEntry> {
    let file = fs.open(&dir.join(name), OpenMode::Read)?;
    let size = file.len()?;
    let mut buf = vec![0u8; block_size as usize];
    let mut blocks = Vec::with_capacity(block_count(size, block_size) as usize);
    let mut offset = 0;
    while offset < size {
        let want = (size - offset).min(block_size as u64) as usize;
        file.read_exact_at(&mut buf[..want], offset)?;
        blocks.push(*blake3::hash(&buf[..want]).as_bytes());
        offset += want as u64;
    }
    Ok(FileEntry {
        name: name.to_string(),
        size,
        blocks,
    })
}

/// Damage found by [`verify`] (MF-4), each naming the file and, where it has one, the block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A file the manifest lists is not there.
    Missing { file: String },
    /// A file is shorter than listed; `block` is the first block that is short or missing.
    Truncated {
        file: String,
        size: u64,
        listed: u64,
        block: u64,
    },
    /// A file is longer than listed; `block` is the first block holding bytes past the end.
    Extended {
        file: String,
        size: u64,
        listed: u64,
        block: u64,
    },
    /// A block's bytes do not hash to what the manifest lists.
    Block {
        file: String,
        block: u64,
        offset: u64,
    },
    /// A file the manifest does not list.
    Unlisted { file: String },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Missing { file } => write!(f, "{file} is missing"),
            Finding::Truncated {
                file,
                size,
                listed,
                block,
            } => write!(
                f,
                "{file} is truncated: {size} bytes where the manifest lists {listed} (from block {block})"
            ),
            Finding::Extended {
                file,
                size,
                listed,
                block,
            } => write!(
                f,
                "{file} is extended: {size} bytes where the manifest lists {listed} (from block {block})"
            ),
            Finding::Block {
                file,
                block,
                offset,
            } => write!(
                f,
                "{file}: block {block} (bytes from {offset}) does not match the manifest"
            ),
            Finding::Unlisted { file } => write!(f, "{file} is not in the manifest"),
        }
    }
}

/// Verifies the files of `dir` against `manifest` (MF-4): every listed file is read once,
/// block by block; every block that does not hash as listed, every size that differs, every
/// missing file and every file not listed is a finding. An I/O error other than a missing file
/// stops the verification.
pub fn verify(fs: &dyn Fs, dir: &Path, manifest: &Manifest) -> Result<Vec<Finding>, ManifestError> {
    let io_err = |context: String| move |source| ManifestError::Io { context, source };
    let mut findings = Vec::new();
    let listed: std::collections::BTreeSet<&str> =
        manifest.files.iter().map(|f| f.name.as_str()).collect();
    let mut present = fs
        .read_dir(dir)
        .map_err(io_err(format!("reading {}", dir.display())))?;
    present.sort_by(|a, b| a.name.cmp(&b.name));
    for entry in &present {
        let manifest_own = entry.name == MANIFEST_FILE
            || entry.name
                == io::sibling_with_suffix(Path::new(MANIFEST_FILE), ".tmp").to_string_lossy();
        if !manifest_own && !listed.contains(entry.name.as_str()) {
            findings.push(Finding::Unlisted {
                file: entry.name.clone(),
            });
        }
    }
    let block_size = manifest.block_size as u64;
    let mut buf = vec![0u8; manifest.block_size as usize];
    for f in &manifest.files {
        let path = dir.join(&f.name);
        let file = match fs.open(&path, OpenMode::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                findings.push(Finding::Missing {
                    file: f.name.clone(),
                });
                continue;
            }
            Err(e) => return Err(io_err(format!("opening {}", path.display()))(e)),
        };
        let size = file
            .len()
            .map_err(io_err(format!("reading {}", path.display())))?;
        if size < f.size {
            findings.push(Finding::Truncated {
                file: f.name.clone(),
                size,
                listed: f.size,
                block: size / block_size,
            });
        } else if size > f.size {
            findings.push(Finding::Extended {
                file: f.name.clone(),
                size,
                listed: f.size,
                block: f.size / block_size,
            });
        }
        for (i, want) in f.blocks.iter().enumerate() {
            let offset = i as u64 * block_size;
            let len = (f.size - offset).min(block_size) as usize;
            let got = file
                .read_fully_at(&mut buf[..len], offset)
                .map_err(io_err(format!("reading {}", path.display())))?;
            if got < len {
                break; // Truncated, reported above from its first short block.
            }
            if blake3::hash(&buf[..len]).as_bytes() != want {
                findings.push(Finding::Block {
                    file: f.name.clone(),
                    block: i as u64,
                    offset,
                });
            }
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, size: u64, block_size: u32, seed: u8) -> FileEntry {
        FileEntry {
            name: name.to_string(),
            size,
            blocks: (0..block_count(size, block_size))
                .map(|i| [seed.wrapping_add(i as u8); HASH])
                .collect(),
        }
    }

    fn sample() -> Manifest {
        Manifest {
            block_size: 4096,
            store_id: StoreId {
                created_millis: 0x0102,
                random: 0x0304,
            },
            format: FormatVersion(2),
            first_tx: 7,
            last_tx: 9,
            digest: Digest([0xdd; 32]),
            created_millis: 1000,
            written_millis: 2000,
            verification: Verification::Touched,
            last_full_verification: Some((1500, 8)),
            scrub_cursor: 3,
            scrubbed_since_full: 4,
            source: "db:6362".to_string(),
            tool_version: "0.1.0".to_string(),
            files: vec![entry("a", 5, 4096, 1), entry("b", 3 * 4096 + 1, 4096, 9)],
        }
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// `body` with its trailer computed again, to reach the checks behind the checksum.
    fn reseal(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend_from_slice(blake3::hash(body).as_bytes());
        out
    }

    #[test]
    fn mf_1_the_layout_byte_for_byte() {
        let m = sample();
        let b = m.encode();
        assert_eq!(&b[0..8], b"BKUPMANI", "MF-1: magic");
        assert_eq!(u32_at(&b, 8), 1, "MF-1: layout version");
        assert_eq!(u32_at(&b, 12), 4096, "MF-1: block size");
        assert_eq!((u64_at(&b, 16), u64_at(&b, 24)), (0x0102, 0x0304), "MF-1");
        assert_eq!(u32_at(&b, 32), 2, "MF-1: format");
        assert_eq!((u64_at(&b, 36), u64_at(&b, 44)), (7, 9), "MF-1: tx range");
        assert_eq!(&b[52..84], &[0xdd; 32], "MF-1: digest");
        assert_eq!((u64_at(&b, 84), u64_at(&b, 92)), (1000, 2000), "MF-1");
        assert_eq!(b[100], 1, "MF-1: verification");
        assert_eq!((u64_at(&b, 101), u64_at(&b, 109)), (1500, 8), "MF-1");
        assert_eq!((u64_at(&b, 117), u64_at(&b, 125)), (3, 4), "MF-1: scrub");
        assert_eq!(&b[133..135], &7u16.to_le_bytes(), "MF-1: source length");
        assert_eq!(&b[135..142], b"db:6362", "MF-1: source");
        assert_eq!(&b[142..144], &5u16.to_le_bytes(), "MF-1");
        assert_eq!(&b[144..149], b"0.1.0", "MF-1: tool version");
        assert_eq!(u32_at(&b, 149), 2, "MF-1: file count");
        // File "a": name, size, file hash, one block hash.
        assert_eq!(&b[153..156], &[1, 0, b'a'], "MF-1: name");
        assert_eq!(u64_at(&b, 156), 5, "MF-1: size");
        assert_eq!(&b[164..196], &m.files[0].file_hash(), "MF-1: file hash");
        assert_eq!(&b[196..228], &[1; 32], "MF-1: block hash");
        // File "b": four blocks.
        assert_eq!(&b[228..231], &[1, 0, b'b'], "MF-1");
        assert_eq!(u64_at(&b, 231), 3 * 4096 + 1, "MF-1");
        assert_eq!(b.len(), 231 + 8 + 32 + 4 * 32 + 32, "MF-1: length");
        let (body, trailer) = b.split_at(b.len() - 32);
        assert_eq!(trailer, blake3::hash(body).as_bytes(), "MF-1: trailer");
        assert_eq!(Manifest::decode(&b).unwrap(), m, "MF-1: round trip");
        let never = Manifest {
            last_full_verification: None,
            verification: Verification::Full,
            ..sample()
        };
        assert_eq!(
            Manifest::decode(&never.encode()).unwrap(),
            never,
            "MF-1: never fully verified is written as zero millis"
        );
    }

    #[test]
    fn mf_3_the_file_hash_covers_the_size_and_every_block_hash() {
        let f = entry("b", 3 * 4096 + 1, 4096, 9);
        let mut h = blake3::Hasher::new();
        h.update(&(3u64 * 4096 + 1).to_le_bytes());
        for b in &f.blocks {
            h.update(b);
        }
        assert_eq!(f.file_hash(), *h.finalize().as_bytes(), "MF-3");
        let mut changed = f.clone();
        changed.blocks[2][0] ^= 1;
        assert_ne!(changed.file_hash(), f.file_hash(), "MF-3: a block");
        let longer = FileEntry {
            size: f.size + 1,
            ..f.clone()
        };
        assert_ne!(longer.file_hash(), f.file_hash(), "MF-3: the size");
    }

    #[test]
    fn mf_2_a_damaged_manifest_is_refused_whatever_the_damage() {
        let good = sample().encode();
        for at in 0..good.len() {
            let mut b = good.clone();
            b[at] ^= 0x10;
            assert!(
                matches!(Manifest::decode(&b), Err(ManifestError::Damaged(_))),
                "MF-2: a flipped byte at {at}"
            );
        }
        for len in 0..good.len() {
            assert!(
                Manifest::decode(&good[..len]).is_err(),
                "MF-2: cut to {len} bytes"
            );
        }
        // Damage behind a valid checksum: each field's own check refuses it.
        let body = &good[..good.len() - 32];
        let edit = |at: usize, bytes: &[u8]| {
            let mut b = body.to_vec();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            reseal(&b)
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("magic", edit(0, b"XKUPMANI"), "magic"),
            ("layout", edit(8, &2u32.to_le_bytes()), "layout"),
            ("block size", edit(12, &4095u32.to_le_bytes()), "block size"),
            (
                "small blocks",
                edit(12, &2048u32.to_le_bytes()),
                "block size",
            ),
            (
                "first after last",
                edit(36, &10u64.to_le_bytes()),
                "first tx",
            ),
            ("verification", edit(100, &[3]), "verification"),
            ("source length", edit(133, &300u16.to_le_bytes()), ""),
            ("file count", edit(149, &4097u32.to_le_bytes()), "too many"),
            ("name order", edit(230, b"a"), "ascending"),
            ("name", edit(230, b"/"), "plain file name"),
            ("size", edit(156, &6u64.to_le_bytes()), "file hash of a"),
            ("huge size", edit(156, &u64::MAX.to_le_bytes()), "end early"),
            ("file hash", edit(164, &[0; 32]), "file hash of a"),
            ("trailing", reseal(&[body, &[0]].concat()), "trailing"),
        ];
        for (case, bytes, says) in cases {
            match Manifest::decode(&bytes) {
                Err(ManifestError::Damaged(why)) => {
                    assert!(why.contains(says), "MF-2: {case}: {why}")
                }
                other => panic!("MF-2: {case} was not refused: {other:?}"),
            }
        }
        let own = Manifest {
            files: vec![entry("MANIFEST.tmp", 1, 4096, 0)],
            ..sample()
        };
        assert!(
            Manifest::decode(&own.encode()).is_err(),
            "MF-2: the manifest never lists itself"
        );
        assert!(
            Manifest::decode(&vec![0; MAX_MANIFEST as usize + 1]).is_err(),
            "MF-2: too long"
        );
    }
}
