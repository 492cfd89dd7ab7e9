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
/// The longest source a manifest holds (MF-1).
pub const MAX_SOURCE: usize = 255;

/// The source a manifest records for a backup from `addr` (MF-1): made printable (control
/// characters escaped), cut to [`MAX_SOURCE`] bytes.
pub fn source_of(addr: &str) -> String {
    let mut source = crate::units::printable(addr);
    while source.len() > MAX_SOURCE {
        source.pop();
    }
    source
}
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

/// What reading one listed block found (MF-4).
enum BlockCheck {
    Intact,
    /// Its bytes hash otherwise.
    Differs,
    /// The file ends inside it (or before it), at this size.
    Short(u64),
}

impl FileEntry {
    /// Reads block `block` of this file from `file` into `buf` (at least a block long) and
    /// compares it with its listed hash; returns what it found and the bytes read.
    fn check_block(
        &self,
        file: &dyn crate::io::FileHandle,
        block: u64,
        block_size: u64,
        buf: &mut [u8],
    ) -> std::io::Result<(BlockCheck, u64)> {
        let offset = block * block_size;
        let len = (self.size - offset).min(block_size) as usize;
        let got = file.read_fully_at(&mut buf[..len], offset)?;
        let found = if got < len {
            BlockCheck::Short(offset + got as u64)
        } else if blake3::hash(&buf[..len]).as_bytes() != &self.blocks[block as usize] {
            BlockCheck::Differs
        } else {
            BlockCheck::Intact
        };
        Ok((found, got as u64))
    }

    /// The finding of a block that is not intact.
    fn finding(&self, block: u64, block_size: u64, found: BlockCheck) -> Option<Finding> {
        match found {
            BlockCheck::Intact => None,
            BlockCheck::Differs => Some(Finding::Block {
                file: self.name.clone(),
                block,
                offset: block * block_size,
            }),
            BlockCheck::Short(size) => Some(Finding::Truncated {
                file: self.name.clone(),
                size,
                listed: self.size,
                block,
            }),
        }
    }

    /// What a copy of this file hashed as it streamed (`got`) shows against this entry (MF-4):
    /// the first damage, named by block, or `None` when it is intact.
    pub fn compare(&self, got: &FileEntry, block_size: u64) -> Option<Finding> {
        let differs = self
            .blocks
            .iter()
            .zip(&got.blocks)
            .position(|(a, b)| a != b);
        let file = self.name.clone();
        if got.size < self.size {
            let block = differs.map_or(got.size / block_size, |b| b as u64);
            Some(Finding::Truncated {
                file,
                size: got.size,
                listed: self.size,
                block,
            })
        } else if got.size > self.size {
            let block = differs.map_or(self.size / block_size, |b| b as u64);
            Some(Finding::Extended {
                file,
                size: got.size,
                listed: self.size,
                block,
            })
        } else {
            differs.map(|b| Finding::Block {
                file,
                block: b as u64,
                offset: b as u64 * block_size,
            })
        }
    }

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
    /// What a run that has not finished may have changed (MF-5); empty when the manifest
    /// describes the files exactly.
    pub pending: Pending,
}

/// The blocks a run may change before it rehashes them (MF-5): written into the manifest, and
/// synced, before the run writes, so that after a crash the manifest still says which of its
/// hashes may be stale.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// By file name, the block ranges `first ..= last` that may differ, ascending, disjoint
    /// and not adjacent. A range ending at [`TO_END`] also lets the size change and the file
    /// be removed.
    ranges: std::collections::BTreeMap<String, Vec<(u64, u64)>>,
    /// Whether files the manifest does not list may appear.
    pub new_files: bool,
}

/// The `last` of a pending range that runs to the end of its file, whatever its size (MF-5).
pub const TO_END: u64 = u64::MAX;

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && !self.new_files
    }

    /// Adds blocks `first ..= last` of `name`; says whether anything was not pending already.
    pub fn add(&mut self, name: &str, first: u64, last: u64) -> bool {
        debug_assert!(first <= last);
        if self.covers_range(name, first, last) {
            return false;
        }
        let ranges = self.ranges.entry(name.to_string()).or_default();
        // Merge with every range it overlaps or touches.
        let (mut lo, mut hi) = (first, last);
        ranges.retain(|&(a, b)| {
            let apart = b.saturating_add(1) < lo || hi.saturating_add(1) < a;
            if !apart {
                lo = lo.min(a);
                hi = hi.max(b);
            }
            apart
        });
        let at = ranges.partition_point(|&(a, _)| a < lo);
        ranges.insert(at, (lo, hi));
        true
    }

    /// Whether blocks `first ..= last` of `name` are all pending already.
    pub fn covers_range(&self, name: &str, first: u64, last: u64) -> bool {
        self.ranges
            .get(name)
            .is_some_and(|r| r.iter().any(|&(a, b)| a <= first && last <= b))
    }

    /// Whether block `block` of `name` may differ.
    pub fn covers(&self, name: &str, block: u64) -> bool {
        self.ranges
            .get(name)
            .is_some_and(|r| r.iter().any(|&(a, b)| a <= block && block <= b))
    }

    /// Whether `name` may have changed size or been removed (a range runs to its end).
    pub fn to_end(&self, name: &str) -> bool {
        self.ranges
            .get(name)
            .is_some_and(|r| r.last().is_some_and(|&(_, b)| b == TO_END))
    }

    /// The files with pending blocks, each with its ranges.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[(u64, u64)])> {
        self.ranges.iter().map(|(n, r)| (n.as_str(), r.as_slice()))
    }
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
        out.put_u8(u8::from(self.pending.new_files));
        let ranges: Vec<(&str, u64, u64)> = self
            .pending
            .files()
            .flat_map(|(name, r)| r.iter().map(move |&(a, b)| (name, a, b)))
            .collect();
        out.put_u32_le(ranges.len() as u32);
        for (name, first, last) in ranges {
            put_str_u16(&mut out, name);
            out.put_u64_le(first);
            out.put_u64_le(last);
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
        let pending = Pending::read(&mut r)?;
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
            pending,
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

impl Pending {
    /// The pending section (MF-1, MF-5), every range checked.
    fn read(r: &mut Reader<'_>) -> Result<Pending, ManifestError> {
        let damaged = |why: &str| ManifestError::Damaged(why.to_string());
        let new_files = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(damaged("unknown pending flags")),
        };
        let count = r.u32()?;
        // Each range takes at least 19 bytes: bound the count by the bytes left.
        if count as usize > r.remaining() / 19 {
            return Err(damaged("its pending ranges end early"));
        }
        let mut pending = Pending {
            ranges: Default::default(),
            new_files,
        };
        let mut prev: Option<(String, u64)> = None;
        for _ in 0..count {
            let name = r.str_u16()?;
            let (first, last) = (r.u64()?, r.u64()?);
            if !valid_name(&name) {
                return Err(damaged("a pending file name is not a plain file name"));
            }
            if first > last {
                return Err(damaged("a pending range ends before it starts"));
            }
            if let Some((p_name, p_last)) = &prev {
                if *p_name > name || (*p_name == name && p_last.saturating_add(1) >= first) {
                    return Err(damaged(
                        "its pending ranges are not ascending, disjoint and apart",
                    ));
                }
            }
            pending
                .ranges
                .entry(name.clone())
                .or_default()
                .push((first, last));
            prev = Some((name, last));
        }
        Ok(pending)
    }
}

/// Hashes a file's bytes as they are written front to back (MF-3), one block at a time, so a
/// copy hashes what it writes without reading it again.
pub struct BlockHasher {
    block_size: u64,
    hasher: blake3::Hasher,
    /// Bytes of the current block hashed so far.
    in_block: u64,
    size: u64,
    blocks: Vec<[u8; HASH]>,
}

impl BlockHasher {
    pub fn new(block_size: u32) -> BlockHasher {
        BlockHasher {
            block_size: block_size as u64,
            hasher: blake3::Hasher::new(),
            in_block: 0,
            size: 0,
            blocks: Vec::new(),
        }
    }

    /// The next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = ((self.block_size - self.in_block) as usize).min(data.len());
            self.hasher.update(&data[..take]);
            self.in_block += take as u64;
            self.size += take as u64;
            data = &data[take..];
            if self.in_block == self.block_size {
                self.blocks.push(*self.hasher.finalize().as_bytes());
                self.hasher.reset();
                self.in_block = 0;
            }
        }
    }

    /// The file's entry: its size and block hashes.
    pub fn finish(mut self, name: &str) -> FileEntry {
        if self.in_block > 0 {
            self.blocks.push(*self.hasher.finalize().as_bytes());
        }
        FileEntry {
            name: name.to_string(),
            size: self.size,
            blocks: self.blocks,
        }
    }
}

impl Manifest {
    /// Rehashes what [`Manifest::pending`] names and clears it (MF-5): each pending block of a
    /// file that is there, every block of a file that grew or shrank from the first pending
    /// block on, files that are gone are dropped, and when new files may appear, each file not
    /// listed is hashed whole. A file whose size changed without a pending range to its end is
    /// damage the run did not cause, and is refused.
    pub fn refresh(&mut self, fs: &dyn Fs, dir: &Path) -> Result<(), ManifestError> {
        let io_err = |context: String| move |source| ManifestError::Io { context, source };
        let pending = std::mem::take(&mut self.pending);
        let block_size = self.block_size as u64;
        let mut buf = vec![0u8; self.block_size as usize];
        for (name, ranges) in pending.files() {
            let path = dir.join(name);
            let listed = self.files.iter().position(|f| f.name == name);
            let Some(meta) = fs
                .metadata(&path)
                .map_err(io_err(format!("reading {}", path.display())))?
            else {
                if let Some(i) = listed {
                    self.files.remove(i);
                }
                continue;
            };
            let Some(i) = listed else {
                let entry = hash_file(fs, dir, name, self.block_size)
                    .map_err(io_err(format!("reading {}", path.display())))?;
                self.insert(entry);
                continue;
            };
            let file = fs
                .open(&path, OpenMode::Read)
                .map_err(io_err(format!("reading {}", path.display())))?;
            let entry = &mut self.files[i];
            let size = meta.len;
            if size != entry.size && !pending.to_end(name) {
                return Err(ManifestError::Damaged(format!(
                    "{name} changed size from {} to {size} bytes outside what the run changed",
                    entry.size
                )));
            }
            let count = block_count(size, self.block_size);
            // A size that changed changes the old last block and every block after it.
            let grown = (size != entry.size).then_some((entry.size.min(size) / block_size, TO_END));
            entry.size = size;
            entry.blocks.resize(count as usize, [0; HASH]);
            for &(first, last) in ranges.iter().chain(grown.iter()) {
                for block in first..=last.min(count.saturating_sub(1)) {
                    if block >= count {
                        break;
                    }
                    let offset = block * block_size;
                    let len = (size - offset).min(block_size) as usize;
                    file.read_exact_at(&mut buf[..len], offset)
                        .map_err(io_err(format!("reading {}", path.display())))?;
                    entry.blocks[block as usize] = *blake3::hash(&buf[..len]).as_bytes();
                }
            }
        }
        if pending.new_files {
            let present = fs
                .read_dir(dir)
                .map_err(io_err(format!("reading {}", dir.display())))?;
            for e in present {
                if e.is_dir || is_manifest_own(&e.name) || self.lists(&e.name) {
                    continue;
                }
                let entry = hash_file(fs, dir, &e.name, self.block_size)
                    .map_err(io_err(format!("reading {}", dir.join(&e.name).display())))?;
                self.insert(entry);
            }
        }
        Ok(())
    }

    fn lists(&self, name: &str) -> bool {
        self.files.iter().any(|f| f.name == name)
    }

    /// Adds `entry` in name order.
    fn insert(&mut self, entry: FileEntry) {
        let at = self.files.partition_point(|f| f.name < entry.name);
        self.files.insert(at, entry);
    }

    /// Scrubs `blocks` blocks (MF-11): from the scrub cursor on, counting every file's blocks in
    /// manifest order and going round to the first after the last, each block is read and
    /// hashed against the manifest; the cursor moves past them and they count towards what has
    /// been read since the last full verification (at most every block). A block of a file that
    /// is missing or shorter than listed is a finding, as is one that hashes otherwise.
    pub fn scrub(
        &mut self,
        fs: &dyn Fs,
        dir: &Path,
        blocks: u64,
    ) -> Result<Scrubbed, ManifestError> {
        let io_err = |context: String| move |source| ManifestError::Io { context, source };
        let total = self.total_blocks();
        let mut out = Scrubbed {
            from: 0,
            blocks: 0,
            bytes: 0,
            findings: Vec::new(),
            since_full: self.scrubbed_since_full,
            total,
        };
        if total == 0 || blocks == 0 {
            return Ok(out);
        }
        let blocks = blocks.min(total);
        let mut at = self.scrub_cursor % total;
        out.from = at;
        let block_size = self.block_size as u64;
        let mut buf = vec![0u8; self.block_size as usize];
        // The file holding global block `at`, and the block's index in it.
        let locate = |at: u64| {
            let mut first = 0;
            for (i, f) in self.files.iter().enumerate() {
                let n = f.blocks.len() as u64;
                if at < first + n {
                    return (i, at - first);
                }
                first += n;
            }
            unreachable!("a block below the total is in a file")
        };
        let mut open: Option<(usize, Option<Box<dyn crate::io::FileHandle>>)> = None;
        for _ in 0..blocks {
            let (i, block) = locate(at);
            let f = &self.files[i];
            if open.as_ref().is_none_or(|(j, _)| *j != i) {
                let path = dir.join(&f.name);
                let handle = match fs.open(&path, OpenMode::Read) {
                    Ok(h) => Some(h),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        out.findings.push(Finding::Missing {
                            file: f.name.clone(),
                        });
                        None
                    }
                    Err(e) => return Err(io_err(format!("opening {}", path.display()))(e)),
                };
                open = Some((i, handle));
            }
            if let Some((_, Some(file))) = &open {
                let (found, got) = f
                    .check_block(&**file, block, block_size, &mut buf)
                    .map_err(io_err(format!("reading {}", dir.join(&f.name).display())))?;
                out.bytes += got;
                out.findings.extend(f.finding(block, block_size, found));
            }
            out.blocks += 1;
            at = (at + 1) % total;
        }
        self.scrub_cursor = at;
        self.scrubbed_since_full = (self.scrubbed_since_full + out.blocks).min(total);
        out.since_full = self.scrubbed_since_full;
        Ok(out)
    }

    /// Checks blocks `first ..= last` of `name` that are listed and not pending against the
    /// manifest (MF-8): what a run is about to rewrite must be intact first, or the rehash after
    /// it would take damage it did not cause for its own writing.
    pub fn check_blocks(
        &self,
        fs: &dyn Fs,
        dir: &Path,
        name: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<Finding>, ManifestError> {
        let Some(f) = self.file(name) else {
            return Ok(Vec::new());
        };
        let count = f.blocks.len() as u64;
        let wanted: Vec<u64> = (first..=last.min(count.saturating_sub(1)))
            .take_while(|&b| b < count)
            .filter(|&b| !self.pending.covers(name, b))
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let path = dir.join(name);
        let io_err = |source| ManifestError::Io {
            context: format!("reading {}", path.display()),
            source,
        };
        let file = match fs.open(&path, OpenMode::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(vec![Finding::Missing {
                    file: name.to_string(),
                }])
            }
            Err(e) => return Err(io_err(e)),
        };
        let block_size = self.block_size as u64;
        let mut buf = vec![0u8; self.block_size as usize];
        let mut findings = Vec::new();
        for block in wanted {
            let (found, _) = f
                .check_block(&*file, block, block_size, &mut buf)
                .map_err(io_err)?;
            findings.extend(f.finding(block, block_size, found));
        }
        Ok(findings)
    }

    /// Every block of every file (what scrubbing goes round).
    pub fn total_blocks(&self) -> u64 {
        self.files.iter().map(|f| f.blocks.len() as u64).sum()
    }

    /// The entry of `name`, if listed.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// What one scrub read (MF-11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scrubbed {
    /// The first block read, counted over every file's blocks in manifest order.
    pub from: u64,
    pub blocks: u64,
    pub bytes: u64,
    /// Damage found, each naming its file and block.
    pub findings: Vec<Finding>,
    /// Blocks read by scrubs since the last full verification, this one included (at most
    /// `total`).
    pub since_full: u64,
    /// Every block of the generation.
    pub total: u64,
}

/// The blocks a scrub of `percent` percent of `total` reads (MF-11): rounded up, so every block
/// is read within `ceil(100 / percent)` runs; none for 0 %.
pub fn scrub_slice(total: u64, percent: u32) -> u64 {
    (total * percent.min(100) as u64).div_ceil(100)
}

/// The manifest's own file and its temporary file, which it never lists (MF-1).
fn is_manifest_own(name: &str) -> bool {
    name.starts_with(MANIFEST_FILE)
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

/// What [`verify`] found (MF-4, MF-5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Damage, in manifest order (unlisted files first).
    pub findings: Vec<Finding>,
    /// What a run that has not finished may have changed, so was not checked (MF-5): one line
    /// per file.
    pub unchecked: Vec<String>,
    /// Blocks read and found as listed.
    pub blocks_checked: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

/// Verifies the files of `dir` against `manifest` (MF-4): every listed file is read once,
/// block by block; every block that does not hash as listed, every size that differs, every
/// missing file and every file not listed is a finding, except what the manifest's pending
/// section says a run may have changed, which is reported as not checked (MF-5). An I/O error
/// other than a missing file stops the verification.
pub fn verify(fs: &dyn Fs, dir: &Path, manifest: &Manifest) -> Result<VerifyReport, ManifestError> {
    let io_err = |context: String| move |source| ManifestError::Io { context, source };
    let pending = &manifest.pending;
    let mut report = VerifyReport::default();
    let mut present = fs
        .read_dir(dir)
        .map_err(io_err(format!("reading {}", dir.display())))?;
    present.sort_by(|a, b| a.name.cmp(&b.name));
    for entry in &present {
        if is_manifest_own(&entry.name) || manifest.lists(&entry.name) {
            continue;
        }
        if pending.new_files || pending.to_end(&entry.name) {
            report
                .unchecked
                .push(format!("{} (created by an unfinished run)", entry.name));
        } else {
            report.findings.push(Finding::Unlisted {
                file: entry.name.clone(),
            });
        }
    }
    let block_size = manifest.block_size as u64;
    let mut buf = vec![0u8; manifest.block_size as usize];
    for f in &manifest.files {
        let path = dir.join(&f.name);
        let may_change_size = pending.to_end(&f.name);
        let file = match fs.open(&path, OpenMode::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if may_change_size {
                    report
                        .unchecked
                        .push(format!("{} (removed by an unfinished run)", f.name));
                } else {
                    report.findings.push(Finding::Missing {
                        file: f.name.clone(),
                    });
                }
                continue;
            }
            Err(e) => return Err(io_err(format!("opening {}", path.display()))(e)),
        };
        let size = file
            .len()
            .map_err(io_err(format!("reading {}", path.display())))?;
        if size != f.size && !may_change_size {
            report.findings.push(if size < f.size {
                Finding::Truncated {
                    file: f.name.clone(),
                    size,
                    listed: f.size,
                    block: size / block_size,
                }
            } else {
                Finding::Extended {
                    file: f.name.clone(),
                    size,
                    listed: f.size,
                    block: f.size / block_size,
                }
            });
        }
        let mut skipped = 0u64;
        for block in 0..f.blocks.len() as u64 {
            if pending.covers(&f.name, block) {
                skipped += 1;
                continue;
            }
            let (found, got) = f
                .check_block(&*file, block, block_size, &mut buf)
                .map_err(io_err(format!("reading {}", path.display())))?;
            report.bytes_read += got;
            match found {
                BlockCheck::Intact => report.blocks_checked += 1,
                // Truncated, reported above from its first short block.
                BlockCheck::Short(_) => break,
                differs => report
                    .findings
                    .extend(f.finding(block, block_size, differs)),
            }
        }
        if skipped > 0 || may_change_size {
            report.unchecked.push(format!(
                "{}: {skipped} block(s) an unfinished run may have changed",
                f.name
            ));
        }
    }
    Ok(report)
}

/// Why `check --quick` could not say whether a backup is intact (MF-9).
#[derive(Debug, thiserror::Error)]
pub enum QuickCheckError {
    /// The directory is missing, a file, locked, or its pointer names nothing (ST-14, IO-3,
    /// BK-31).
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{dir} has no {MANIFEST_FILE} (a plain store, or a backup taken by a version that wrote none): check it without --quick")]
    NoManifest { dir: String },
    #[error("{dir}: {source}")]
    Manifest {
        dir: String,
        #[source]
        source: ManifestError,
    },
}

impl QuickCheckError {
    /// The exit code of `check --quick` (MF-9): 3 when the backup is damaged (its pointer or
    /// its manifest), 1 when it could not be checked.
    pub fn exit_code(&self) -> u8 {
        match self {
            QuickCheckError::Store(crate::store::StoreError::Corrupt(_))
            | QuickCheckError::Manifest {
                source: ManifestError::Damaged(_),
                ..
            } => 3,
            _ => 1,
        }
    }
}

/// What `check --quick` found (MF-9).
#[derive(Clone, Debug)]
pub struct QuickCheck {
    /// The directory whose files were verified (the live generation of a backup).
    pub generation: std::path::PathBuf,
    pub manifest: Manifest,
    pub report: VerifyReport,
}

/// Verifies the live generation of the backup in `dir` against its manifest (MF-9), under the
/// directory's lock, reading every block once and nothing else: no store is opened, nothing
/// recovered or written.
pub fn quick_check(fs: &dyn Fs, dir: &Path) -> Result<QuickCheck, QuickCheckError> {
    let _lock = crate::store::lock_existing(fs, dir)?;
    let generation = crate::store::layout::resolve(fs, dir)?;
    let shown = || generation.display().to_string();
    let manifest = Manifest::read(fs, &generation)
        .map_err(|source| QuickCheckError::Manifest {
            dir: shown(),
            source,
        })?
        .ok_or_else(|| QuickCheckError::NoManifest {
            dir: dir.display().to_string(),
        })?;
    let report =
        verify(fs, &generation, &manifest).map_err(|source| QuickCheckError::Manifest {
            dir: shown(),
            source,
        })?;
    Ok(QuickCheck {
        generation,
        manifest,
        report,
    })
}

/// Hashes the live generation of the backup in `dir` again after `neo4j-admin upgrade`
/// rewrote its files (MF-12): every file, with the format its metadata now names; what the
/// manifest says of where the backup came from and what was verified is kept. Returns whether
/// there was a manifest to rewrite.
pub fn rehash_after_upgrade(
    fs: &dyn Fs,
    dir: &Path,
    now_millis: u64,
) -> Result<bool, QuickCheckError> {
    let _lock = crate::store::lock_existing(fs, dir)?;
    let generation = crate::store::layout::resolve(fs, dir)?;
    let manifest_err = |source| QuickCheckError::Manifest {
        dir: generation.display().to_string(),
        source,
    };
    let Some(mut m) = Manifest::read(fs, &generation).map_err(manifest_err)? else {
        return Ok(false);
    };
    let meta = crate::store::meta::Meta::read(fs, &generation)
        .map_err(|e| crate::store::StoreError::from_meta(&generation, e))?;
    m.format = meta.format;
    m.files.clear();
    m.pending = Pending {
        ranges: Default::default(),
        new_files: true,
    };
    m.refresh(fs, &generation).map_err(manifest_err)?;
    m.written_millis = now_millis;
    m.write(fs, &generation).map_err(|source| {
        manifest_err(ManifestError::Io {
            context: format!("writing {}", generation.join(MANIFEST_FILE).display()),
            source,
        })
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::{FileEntry, Finding};

    /// A file of `size` bytes whose blocks hash as `blocks` say.
    fn listed_as(size: u64, blocks: &[u8]) -> FileEntry {
        FileEntry {
            name: "f".into(),
            size,
            blocks: blocks.iter().map(|&b| [b; super::HASH]).collect(),
        }
    }

    #[test]
    fn mf_4_a_copy_shorter_or_longer_with_the_blocks_it_shares_intact_is_named_by_its_first_block_past_them(
    ) {
        let listed = listed_as(20, &[1, 2, 3, 4, 5]);
        assert_eq!(
            listed.compare(&listed_as(8, &[1, 2]), 4),
            Some(Finding::Truncated {
                file: "f".into(),
                size: 8,
                listed: 20,
                block: 2
            }),
            "MF-4: a copy cut after its second block"
        );
        assert_eq!(
            listed_as(8, &[1, 2]).compare(&listed, 4),
            Some(Finding::Extended {
                file: "f".into(),
                size: 20,
                listed: 8,
                block: 2
            }),
            "MF-4: a copy grown past its second block"
        );
        assert_eq!(
            listed.compare(&listed_as(12, &[1, 9, 3]), 4),
            Some(Finding::Truncated {
                file: "f".into(),
                size: 12,
                listed: 20,
                block: 1
            }),
            "MF-4: a short copy whose second block differs"
        );
        assert_eq!(listed.compare(&listed.clone(), 4), None, "MF-4");
    }

    // MF-1: the source is the address made printable, at most 255 bytes of it.
    #[test]
    fn mf_1_the_source_is_printable_and_bounded() {
        assert_eq!(super::source_of("db1:6362"), "db1:6362", "MF-1");
        assert_eq!(
            super::source_of("db\u{7}1:6362"),
            "db\\u{7}1:6362",
            "MF-1: a control character escaped"
        );
        let exact = "a".repeat(super::MAX_SOURCE);
        assert_eq!(super::source_of(&exact), exact, "MF-1: 255 bytes are kept");
        let over = format!("{exact}b");
        assert_eq!(super::source_of(&over), exact, "MF-1: cut to 255 bytes");
        let wide = "\u{e9}".repeat(200);
        let cut = super::source_of(&wide);
        assert!(
            cut.len() <= super::MAX_SOURCE && cut.len() >= super::MAX_SOURCE - 1,
            "MF-1: cut at a character boundary: {} bytes",
            cut.len()
        );
    }

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
            pending: Pending::default(),
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
        // The pending section: no new files, no ranges.
        let pending_at = 231 + 8 + 32 + 4 * 32;
        assert_eq!(b[pending_at], 0, "MF-1: pending flags");
        assert_eq!(u32_at(&b, pending_at + 1), 0, "MF-1: pending ranges");
        assert_eq!(b.len(), pending_at + 5 + 32, "MF-1: length");
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
            (
                // More blocks than the bytes left hold, but not absurdly many: the bound is
                // the bytes left over a hash's size, before anything is allocated.
                "a few blocks too many",
                edit(
                    156,
                    &((((body.len() - 196) / 32 + 2) * 4096) as u64).to_le_bytes(),
                ),
                "block hashes end early",
            ),
            ("file hash", edit(164, &[0; 32]), "file hash of a"),
            ("trailing", reseal(&[body, &[0]].concat()), "trailing"),
            ("pending flags", edit(body.len() - 5, &[2]), "pending flags"),
            (
                "pending count",
                edit(body.len() - 4, &1000u32.to_le_bytes()),
                "end early",
            ),
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

    // MF-1, MF-2: every bound accepts its edge and refuses one past it, and every value of an
    // enumerated field decodes.
    #[test]
    fn mf_2_every_bound_holds_at_its_edge() {
        let decodes = |m: &Manifest| Manifest::decode(&m.encode());
        let accepted = |case: &str, m: Manifest| match decodes(&m) {
            Ok(back) => assert_eq!(back, m, "MF-1: {case} round-trips"),
            Err(e) => panic!("MF-1: {case} is accepted, not refused: {e}"),
        };
        let blocks_of = |block_size: u32| Manifest {
            block_size,
            files: vec![
                entry("a", 5, block_size, 1),
                entry("b", 3 * 4096 + 1, block_size, 9),
            ],
            ..sample()
        };
        let refused = |case: &str, m: Manifest| {
            assert!(
                matches!(decodes(&m), Err(ManifestError::Damaged(_))),
                "MF-2: {case} is refused"
            );
        };
        accepted("a block size of 64 MiB", blocks_of(64 << 20));
        refused("a block size of 128 MiB", blocks_of(128 << 20));
        refused("a block size of 2 KiB", blocks_of(2048));
        accepted(
            "the first tx equal to the last",
            Manifest {
                first_tx: 9,
                ..sample()
            },
        );
        accepted(
            "a source of 255 bytes",
            Manifest {
                source: "s".repeat(MAX_SOURCE),
                ..sample()
            },
        );
        refused(
            "a source of 256 bytes",
            Manifest {
                source: "s".repeat(MAX_SOURCE + 1),
                ..sample()
            },
        );
        accepted(
            "a tool version of 64 bytes",
            Manifest {
                tool_version: "v".repeat(MAX_TOOL_VERSION),
                ..sample()
            },
        );
        refused(
            "a tool version of 65 bytes",
            Manifest {
                tool_version: "v".repeat(MAX_TOOL_VERSION + 1),
                ..sample()
            },
        );
        let many = |n: u32| Manifest {
            files: (0..n)
                .map(|i| entry(&format!("f{i:05}"), 0, 4096, 0))
                .collect(),
            ..sample()
        };
        accepted("4,096 files", many(MAX_FILES));
        refused("4,097 files", many(MAX_FILES + 1));
        // A manifest of exactly MAX_MANIFEST bytes (one file of as many blocks as fit, the
        // source padding the rest), and one a byte longer.
        let of_length = |extra: usize| {
            let with = |blocks: u64, source: usize| Manifest {
                source: "s".repeat(source),
                files: vec![entry("big", blocks * 4096, 4096, 0)],
                ..sample()
            };
            let room = MAX_MANIFEST - with(0, 0).encode().len() as u64;
            let m = with(room / HASH as u64, (room % HASH as u64) as usize + extra);
            assert_eq!(m.encode().len() as u64, MAX_MANIFEST + extra as u64);
            m
        };
        accepted("a manifest of MAX_MANIFEST bytes", of_length(0));
        refused("a manifest one byte longer", of_length(1));
        accepted(
            "a file name of 255 bytes",
            Manifest {
                files: vec![entry(&"n".repeat(255), 5, 4096, 1)],
                ..sample()
            },
        );
        refused(
            "a file name of 256 bytes",
            Manifest {
                files: vec![entry(&"n".repeat(256), 5, 4096, 1)],
                ..sample()
            },
        );
        for bad in ["", ".", "..", "a/b", "a\0b", "MANIFEST"] {
            refused(
                &format!("the file name {bad:?}"),
                Manifest {
                    files: vec![entry(bad, 5, 4096, 1)],
                    ..sample()
                },
            );
        }
        for verification in [
            Verification::None,
            Verification::Touched,
            Verification::Full,
        ] {
            accepted(
                &format!("verification {verification:?}"),
                Manifest {
                    verification,
                    ..sample()
                },
            );
        }
        accepted(
            "a pending section that allows new files",
            Manifest {
                pending: Pending {
                    ranges: Default::default(),
                    new_files: true,
                },
                ..sample()
            },
        );
    }

    #[test]
    fn mf_11_a_scrub_of_a_generation_without_blocks_reads_nothing() {
        let mut m = Manifest {
            files: vec![entry("empty", 0, 4096, 0)],
            ..sample()
        };
        assert_eq!(m.total_blocks(), 0, "MF-11");
        let fs = crate::io::os::OsFs;
        let scrubbed = m
            .scrub(&fs, Path::new("/nonexistent"), 5)
            .expect("MF-11: nothing to scrub is not an error");
        assert_eq!((scrubbed.blocks, scrubbed.bytes), (0, 0), "MF-11");
        assert!(scrubbed.findings.is_empty(), "MF-11");
    }

    #[test]
    fn mf_5_pending_ranges_merge_and_their_encoding_is_checked() {
        let mut p = Pending::default();
        assert!(p.is_empty(), "MF-5");
        let mut ranges_only = Pending::default();
        ranges_only.add("a", 3, 3);
        let new_files_only = Pending {
            new_files: true,
            ..Pending::default()
        };
        assert!(
            !ranges_only.is_empty() && !new_files_only.is_empty(),
            "MF-5: a range alone, or new files alone, is pending"
        );
        assert!(
            p.add("b", 4, 4) && p.add("b", 6, 7) && p.add("a", 0, TO_END),
            "MF-5"
        );
        assert!(p.add("b", 5, 5), "MF-5: fills the gap");
        assert_eq!(
            p.files().collect::<Vec<_>>(),
            vec![("a", &[(0, TO_END)][..]), ("b", &[(4, 7)][..])],
            "MF-5: adjacent ranges merge"
        );
        assert!(!p.add("b", 5, 6), "MF-5: inside a range");
        assert!(
            p.covers("b", 7) && !p.covers("b", 8) && !p.covers("c", 0),
            "MF-5"
        );
        assert!(p.to_end("a") && !p.to_end("b"), "MF-5");
        assert!(p.add("b", 9, 9) && p.add("b", 0, 20), "MF-5: swallows both");
        assert_eq!(p.files().nth(1).unwrap().1, &[(0, 20)], "MF-5");
        let m = Manifest {
            pending: p,
            ..sample()
        };
        let b = m.encode();
        assert_eq!(
            Manifest::decode(&b).unwrap(),
            m,
            "MF-1: pending round-trips"
        );
        // Behind a valid checksum: one range more than the bytes left can hold (each takes at
        // least 19) is refused before anything is read or allocated.
        let body = &b[..b.len() - 32];
        let empty = Manifest {
            pending: Pending::default(),
            ..m.clone()
        }
        .encode();
        let count_at = empty.len() - 32 - 4;
        let ranges = body.len() - (count_at + 4);
        let mut more = body.to_vec();
        more[count_at..count_at + 4].copy_from_slice(&((ranges / 19 + 1) as u32).to_le_bytes());
        match Manifest::decode(&reseal(&more)) {
            Err(ManifestError::Damaged(why)) => {
                assert!(why.contains("pending ranges end early"), "MF-2: {why}")
            }
            other => panic!("MF-2: one range too many was not refused: {other:?}"),
        }
        // Behind a valid checksum: the second range of "b" made to overlap, or run backwards.
        let second = body.len() - (2 + 1 + 16);
        for (case, first, last, says) in [
            ("backwards", 30u64, 29u64, "ends before"),
            ("overlapping", 0, 20, "ascending"),
        ] {
            let mut m2 = body.to_vec();
            m2[second..second + 3].copy_from_slice(&[1, 0, b'b']);
            m2[second + 3..second + 11].copy_from_slice(&first.to_le_bytes());
            m2[second + 11..second + 19].copy_from_slice(&last.to_le_bytes());
            // The first range becomes "b" 0 ..= 20 as well: patch its name from "a".
            let first_at = body.len() - 2 * 19;
            m2[first_at + 2] = b'b';
            m2[first_at + 3..first_at + 11].copy_from_slice(&0u64.to_le_bytes());
            m2[first_at + 11..first_at + 19].copy_from_slice(&20u64.to_le_bytes());
            match Manifest::decode(&reseal(&m2)) {
                Err(ManifestError::Damaged(why)) => {
                    assert!(why.contains(says), "MF-2: {case}: {why}")
                }
                other => panic!("MF-2: {case} was not refused: {other:?}"),
            }
        }
    }
}
