//! The three record files, accessed by position: record `id` lives at `id * record_size`.
//!
//! Owns: reading and writing single records and payload chains through the `Fs` seam.
//! Must not touch: the log, metadata, or any caching: every read goes to the file (the page
//! cache is the operating system's), so memory never grows with the store (ST-12).

use std::path::Path;
use std::sync::Arc;

use crate::graph::{Node, Relationship};
use crate::io::{FileHandle, Fs, OpenMode};
use crate::store::format::{
    decode_node_payload, decode_rel_payload, BlockRecord, FormatVersion, NodeRecord, RecordKind,
    RelRecord, NONE,
};
use crate::store::log::RecordImage;
use crate::store::StoreError;

/// Open handles on a store's record files.
#[derive(Debug)]
pub struct RecordFiles {
    pub format: FormatVersion,
    /// Shared, so that a checkpoint can fsync them without holding the store's lock (LOG-13).
    nodes: Arc<dyn FileHandle>,
    rels: Arc<dyn FileHandle>,
    blocks: Arc<dyn FileHandle>,
}

/// Shared handles on the three record files, in [`RecordKind::ALL`] order, to fsync them
/// while the store's lock is free (LOG-13).
#[derive(Debug)]
pub struct RecordSyncer([Arc<dyn FileHandle>; 3]);

impl RecordSyncer {
    /// Makes every record file durable: what was written to them before the call is on disk
    /// when it returns.
    pub fn sync_all(&self) -> Result<(), StoreError> {
        for (kind, file) in RecordKind::ALL.into_iter().zip(&self.0) {
            file.sync()
                .map_err(|e| StoreError::io(format!("syncing {}", kind.file_name()), e))?;
        }
        Ok(())
    }
}

impl RecordFiles {
    /// Opens the record files in `dir`; with `create`, missing ones are created empty, and
    /// without it a missing file means a damaged store.
    pub fn open(
        fs: &dyn Fs,
        dir: &Path,
        format: FormatVersion,
        create: bool,
    ) -> Result<RecordFiles, StoreError> {
        let mode = if create {
            OpenMode::ReadWriteCreate
        } else {
            OpenMode::ReadWrite
        };
        let open = |kind: RecordKind| {
            let path = dir.join(kind.file_name());
            fs.open(&path, mode).map(Arc::from).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    StoreError::Corrupt(format!("record file {} is missing", kind.file_name()))
                } else {
                    StoreError::io(format!("opening {}", path.display()), e)
                }
            })
        };
        Ok(RecordFiles {
            format,
            nodes: open(RecordKind::Node)?,
            rels: open(RecordKind::Rel)?,
            blocks: open(RecordKind::Block)?,
        })
    }

    pub fn file(&self, kind: RecordKind) -> &dyn FileHandle {
        match kind {
            RecordKind::Node => &*self.nodes,
            RecordKind::Rel => &*self.rels,
            RecordKind::Block => &*self.blocks,
        }
    }

    /// Reads the raw bytes of record `id`; a slot past the end of the file reads as zeros,
    /// which every format decodes as "not in use" (ST-7).
    fn read_raw(&self, kind: RecordKind, id: u64) -> Result<Vec<u8>, StoreError> {
        let size = kind.size(self.format);
        let mut buf = vec![0u8; size];
        self.file(kind)
            .read_fully_at(&mut buf, id * size as u64)
            .map_err(|e| StoreError::io(format!("reading {} record {id}", kind.file_name()), e))?;
        Ok(buf)
    }

    fn damaged(kind: RecordKind, id: u64, why: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(format!("{} record {id}: {why}", kind.file_name()))
    }

    pub fn read_node(&self, id: u64) -> Result<NodeRecord, StoreError> {
        let raw = self.read_raw(RecordKind::Node, id)?;
        NodeRecord::decode(self.format, &raw).map_err(|e| Self::damaged(RecordKind::Node, id, e))
    }

    pub fn read_rel(&self, id: u64) -> Result<RelRecord, StoreError> {
        let raw = self.read_raw(RecordKind::Rel, id)?;
        RelRecord::decode(self.format, &raw).map_err(|e| Self::damaged(RecordKind::Rel, id, e))
    }

    pub fn read_block(&self, id: u64) -> Result<BlockRecord, StoreError> {
        let raw = self.read_raw(RecordKind::Block, id)?;
        BlockRecord::decode(self.format, &raw).map_err(|e| Self::damaged(RecordKind::Block, id, e))
    }

    /// Record `id` of `kind` as the file holds it now, as an image (a slot past the end reads
    /// as "not in use", ST-7).
    pub fn image(&self, kind: RecordKind, id: u64) -> Result<RecordImage, StoreError> {
        Ok(match kind {
            RecordKind::Node => RecordImage::Node(id, self.read_node(id)?),
            RecordKind::Rel => RecordImage::Rel(id, self.read_rel(id)?),
            RecordKind::Block => RecordImage::Block(id, self.read_block(id)?),
        })
    }

    /// The last image of each record among `images` (a later one replaces an earlier one), in
    /// file order: what a run of transactions leaves in the files. References only, a few
    /// words per image: the bytes are encoded run by run.
    fn last_images<'a>(
        images: impl IntoIterator<Item = &'a RecordImage>,
    ) -> Vec<(RecordKind, u64, &'a RecordImage)> {
        let mut all: Vec<(RecordKind, u64, usize, &RecordImage)> = images
            .into_iter()
            .enumerate()
            .map(|(i, image)| {
                let (kind, id) = key_of(image);
                (kind, id, i, image)
            })
            .collect();
        // By record, and the last image of each record last among its own.
        all.sort_unstable_by_key(|&(kind, id, i, _)| (kind, id, i));
        let mut last: Vec<(RecordKind, u64, &RecordImage)> = Vec::with_capacity(all.len());
        for (kind, id, _, image) in all {
            match last.last_mut() {
                Some(prev) if (prev.0, prev.1) == (kind, id) => prev.2 = image,
                _ => last.push((kind, id, image)),
            }
        }
        last
    }

    /// Calls `each(kind, first id, bytes)` for each run of adjacent records of one kind in
    /// `last` (in file order), with their encoded bytes end to end in one reused buffer.
    fn runs(
        &self,
        last: &[(RecordKind, u64, &RecordImage)],
        mut each: impl FnMut(RecordKind, u64, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        let mut at = 0;
        while at < last.len() {
            let (kind, first, _) = last[at];
            let mut end = at;
            buf.clear();
            while end < last.len()
                && last[end].0 == kind
                && last[end].1 == first + (end - at) as u64
            {
                buf.extend_from_slice(&self.encoded(last[end].2).2);
                end += 1;
            }
            each(kind, first, &buf)?;
            at = end;
        }
        Ok(())
    }

    /// Writes the after-images of a run of transactions (not synced: the log already is):
    /// each record's last image only, and one write per run of adjacent records, so a run of
    /// transactions that fill neighbouring records costs a few writes, not one per image.
    pub fn apply_all<'a>(
        &self,
        images: impl IntoIterator<Item = &'a RecordImage>,
    ) -> Result<(), StoreError> {
        let last = Self::last_images(images);
        self.runs(&last, |kind, first, bytes| {
            let offset = first * kind.size(self.format) as u64;
            self.file(kind).write_all_at(bytes, offset).map_err(|e| {
                StoreError::io(format!("writing {} record {first}", kind.file_name()), e)
            })
        })
    }

    /// The first record (kind and id, in file order) among the last images of `images` that
    /// the files do not hold byte for byte, reading each run of adjacent records at once; `None`
    /// when they hold them all.
    pub fn first_differing<'a>(
        &self,
        images: impl IntoIterator<Item = &'a RecordImage>,
    ) -> Result<Option<(RecordKind, u64)>, StoreError> {
        let last = Self::last_images(images);
        let mut differing = None;
        let mut held = Vec::new();
        self.runs(&last, |kind, first, bytes| {
            if differing.is_some() {
                return Ok(());
            }
            let size = kind.size(self.format);
            held.clear();
            held.resize(bytes.len(), 0);
            self.file(kind)
                .read_fully_at(&mut held, first * size as u64)
                .map_err(|e| {
                    StoreError::io(format!("reading {} record {first}", kind.file_name()), e)
                })?;
            let at = bytes
                .chunks(size)
                .zip(held.chunks(size))
                .position(|(want, got)| want != got);
            differing = at.map(|i| (kind, first + i as u64));
            Ok(())
        })?;
        Ok(differing)
    }

    /// An image's kind, id and bytes in this store's format.
    fn encoded(&self, image: &RecordImage) -> (RecordKind, u64, Vec<u8>) {
        match image {
            RecordImage::Node(id, r) => (RecordKind::Node, *id, r.encode(self.format)),
            RecordImage::Rel(id, r) => (RecordKind::Rel, *id, r.encode(self.format)),
            RecordImage::Block(id, r) => (RecordKind::Block, *id, r.encode(self.format)),
        }
    }

    /// Makes every record file durable (the first half of a checkpoint).
    pub fn sync_all(&self) -> Result<(), StoreError> {
        self.syncer().sync_all()
    }

    /// The handles to make the record files durable with, usable without the store (LOG-13).
    pub fn syncer(&self) -> RecordSyncer {
        RecordSyncer([self.nodes.clone(), self.rels.clone(), self.blocks.clone()])
    }

    /// Reads a payload chain of `len` bytes starting at block `first`, checking that every
    /// block is in use and the chain ends where the length says.
    pub fn read_payload(&self, first: u64, len: u32) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::with_capacity(len as usize);
        let mut at = first;
        while out.len() < len as usize {
            if at == NONE {
                return Err(Self::damaged(
                    RecordKind::Block,
                    at,
                    "payload chain ends early",
                ));
            }
            let block = self.read_block(at)?;
            if !block.in_use {
                return Err(Self::damaged(
                    RecordKind::Block,
                    at,
                    "payload block not in use",
                ));
            }
            out.extend_from_slice(&block.data);
            at = block.next;
        }
        if out.len() != len as usize || at != NONE {
            return Err(Self::damaged(
                RecordKind::Block,
                first,
                "payload chain longer than its length",
            ));
        }
        Ok(out)
    }

    /// The user-visible node behind a record, or `None` if the record is not in use.
    pub fn load_node(&self, id: u64, rec: &NodeRecord) -> Result<Option<Node>, StoreError> {
        if !rec.in_use {
            return Ok(None);
        }
        let payload = self.read_payload(rec.payload_block, rec.payload_len)?;
        let (labels, props) =
            decode_node_payload(&payload).map_err(|e| Self::damaged(RecordKind::Node, id, e))?;
        Ok(Some(Node { id, labels, props }))
    }

    /// The user-visible relationship behind a record, or `None` if not in use.
    pub fn load_rel(&self, id: u64, rec: &RelRecord) -> Result<Option<Relationship>, StoreError> {
        if !rec.in_use {
            return Ok(None);
        }
        let payload = self.read_payload(rec.payload_block, rec.payload_len)?;
        let (rel_type, props) =
            decode_rel_payload(&payload).map_err(|e| Self::damaged(RecordKind::Rel, id, e))?;
        Ok(Some(Relationship {
            id,
            start: rec.start,
            end: rec.end,
            rel_type,
            props,
        }))
    }
}

/// The record an image is of.
pub fn key_of(image: &RecordImage) -> (RecordKind, u64) {
    match image {
        RecordImage::Node(id, _) => (RecordKind::Node, *id),
        RecordImage::Rel(id, _) => (RecordKind::Rel, *id),
        RecordImage::Block(id, _) => (RecordKind::Block, *id),
    }
}
