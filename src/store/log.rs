//! The logical log: numbered files of checksummed transaction entries (LOG-1 .. LOG-9).
//!
//! Owns: the log file header, the entry framing and the transaction entry body, finding the
//! log files of a store, and reading entries in order with torn-tail detection.
//! Must not touch: record files or metadata. Applying an entry is the store's job; deciding
//! which files may be deleted is retention's.
//!
//! The entry body is independent of the store's on-disk format (LOG-6): it carries records as
//! logical values, so logs survive `upgrade` unchanged and backups can ship them to a store of
//! either format.

use std::path::{Path, PathBuf};

use bytes::BufMut;

use crate::codec::{DecodeError, Reader};
use crate::digest::Digest;
use crate::io::{FileHandle, Fs, ReadAhead};
use crate::store::format::{BlockRecord, NodeRecord, RecordKind, RelRecord, BLOCK_DATA};

/// Log file names are this prefix plus the decimal log version (LOG-1).
pub const LOG_PREFIX: &str = "neostore.transaction.db.";
const MAGIC: &[u8; 8] = b"NEOTXLOG";
const LOG_LAYOUT_VERSION: u32 = 1;
/// Size of a log file header (LOG-2).
pub const HEADER_SIZE: u64 = 64;
/// Bytes before an entry's body: length and CRC32C (LOG-3).
pub const FRAME_SIZE: u64 = 8;
/// The largest entry body accepted; a transaction that would encode larger is refused before
/// anything is written (LOG-4). Bounds the memory a reader needs.
pub const MAX_ENTRY: u32 = 16 << 20;
/// The most record images one entry may carry (LOG-4): with [`MAX_ENTRY`], what bounds the
/// memory of a decoded entry, whoever wrote it ([`TxEntry::decoded_bound`]).
pub const MAX_IMAGES: u32 = 1 << 18;
/// The fewest bytes an encoded image takes (a block with no data, LOG-5): no count can reserve
/// more images than the bytes left could hold.
const MIN_IMAGE: usize = 20;

/// A log file's header (LOG-2): which file this is and where it stands in the tx sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogHeader {
    pub log_version: u64,
    /// The last tx committed before this file's first entry.
    pub prev_last_tx: u64,
    /// The store's digest at `prev_last_tx`, so the digest at every tx in the logs is known.
    pub prev_digest: Digest,
}

impl LogHeader {
    pub fn encode(&self) -> [u8; HEADER_SIZE as usize] {
        let mut out = Vec::with_capacity(HEADER_SIZE as usize);
        out.put_slice(MAGIC);
        out.put_u32_le(LOG_LAYOUT_VERSION);
        out.put_u64_le(self.log_version);
        out.put_u64_le(self.prev_last_tx);
        out.put_slice(&self.prev_digest.0);
        out.put_u32_le(crc32c::crc32c(&out));
        out.try_into().expect("a header is 64 bytes")
    }

    /// The header at the start of `b`, or `None` if it is missing, damaged or of another layout.
    pub fn decode(b: &[u8]) -> Option<LogHeader> {
        let mut r = Reader::new(b.get(..HEADER_SIZE as usize)?);
        let body = &b[..HEADER_SIZE as usize - 4];
        if r.bytes(8).ok()? != MAGIC || r.u32().ok()? != LOG_LAYOUT_VERSION {
            return None;
        }
        let header = LogHeader {
            log_version: r.u64().ok()?,
            prev_last_tx: r.u64().ok()?,
            prev_digest: Digest(r.array().ok()?),
        };
        (r.u32().ok()? == crc32c::crc32c(body)).then_some(header)
    }

    /// Reads the header of an open log file; `None` if missing or damaged.
    pub fn read(file: &dyn FileHandle) -> std::io::Result<Option<LogHeader>> {
        let mut buf = [0u8; HEADER_SIZE as usize];
        let n = file.read_fully_at(&mut buf, 0)?;
        Ok(if n < buf.len() {
            None
        } else {
            LogHeader::decode(&buf)
        })
    }
}

/// One record after-image in a transaction entry (LOG-5): the whole record, so applying it
/// twice, or onto a file copied while it changed, gives the same result (RC-2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordImage {
    Node(u64, NodeRecord),
    Rel(u64, RelRecord),
    Block(u64, BlockRecord),
}

/// The absolute state after a transaction (LOG-5): derived values are never deltas (RC-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxState {
    pub digest: Digest,
    pub nodes: u64,
    pub relationships: u64,
    pub next_node: u64,
    pub next_rel: u64,
    pub next_block: u64,
}

impl TxState {
    /// The high-water mark of `kind`: the next id its record file hands out (ST-9).
    pub fn mark(&self, kind: RecordKind) -> u64 {
        match kind {
            RecordKind::Node => self.next_node,
            RecordKind::Rel => self.next_rel,
            RecordKind::Block => self.next_block,
        }
    }

    /// The one encoding of a state, in log entries (LOG-5), the metadata's checkpoint (ST-10)
    /// and a full backup's start frame (PR-2): the digest (32 bytes), then nodes,
    /// relationships, next node, next relationship and next block (u64 each).
    pub fn put(&self, out: &mut impl BufMut) {
        out.put_slice(&self.digest.0);
        for v in [
            self.nodes,
            self.relationships,
            self.next_node,
            self.next_rel,
            self.next_block,
        ] {
            out.put_u64_le(v);
        }
    }

    pub fn read(r: &mut Reader<'_>) -> Result<TxState, DecodeError> {
        Ok(TxState {
            digest: Digest(r.array()?),
            nodes: r.u64()?,
            relationships: r.u64()?,
            next_node: r.u64()?,
            next_rel: r.u64()?,
            next_block: r.u64()?,
        })
    }
}

/// A committed transaction as the log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxEntry {
    pub tx_id: u64,
    /// Commit time, milliseconds since the Unix epoch, from the injected clock.
    pub timestamp_millis: u64,
    pub after: TxState,
    pub records: Vec<RecordImage>,
}

/// Why an entry could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed log entry: {0}")]
pub struct EntryError(#[from] pub DecodeError);

impl TxEntry {
    /// The framed entry: length (u32 LE), CRC32C of the body (u32 LE), body (LOG-3).
    pub fn encode_framed(&self) -> Vec<u8> {
        let mut out = vec![0u8; FRAME_SIZE as usize];
        out.put_u8(1); // entry kind: transaction
        out.put_u64_le(self.tx_id);
        out.put_u64_le(self.timestamp_millis);
        self.after.put(&mut out);
        out.put_u32_le(self.records.len() as u32);
        for r in &self.records {
            encode_image(&mut out, r);
        }
        let body_len = (out.len() - FRAME_SIZE as usize) as u32;
        let crc = crc32c::crc32c(&out[FRAME_SIZE as usize..]);
        out[..4].copy_from_slice(&body_len.to_le_bytes());
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a body whose CRC was already checked.
    pub fn decode_body(b: &[u8]) -> Result<TxEntry, EntryError> {
        let mut r = Reader::new(b);
        if r.u8()? != 1 {
            return Err(DecodeError::Invalid("unknown entry kind").into());
        }
        let tx_id = r.u64()?;
        let timestamp_millis = r.u64()?;
        let after = TxState::read(&mut r)?;
        let n = r.u32()?;
        if n > MAX_IMAGES {
            return Err(DecodeError::Invalid("more record images than an entry may carry").into());
        }
        let n = n as usize;
        // Never reserve more images than the bytes left could hold.
        let mut records = Vec::with_capacity(n.min(r.remaining() / MIN_IMAGE));
        for _ in 0..n {
            records.push(decode_image(&mut r)?);
        }
        r.finish()?;
        Ok(TxEntry {
            tx_id,
            timestamp_millis,
            after,
            records,
        })
    }
}

impl TxEntry {
    /// The most memory any decoded entry occupies (LOG-4): its images, plus the block data they
    /// carry, which cannot exceed the encoded body. What a reader of a log or of a backup
    /// stream must be ready to hold for one transaction.
    pub const fn decoded_bound() -> usize {
        MAX_IMAGES as usize * std::mem::size_of::<RecordImage>() + MAX_ENTRY as usize
    }

    /// Whether this entry's images and state can follow `before` (LOG-10): every image's id is
    /// below the high-water mark of its kind after the transaction, no mark goes down, and a
    /// mark grows by at most the number of images of its kind (each record a transaction
    /// allocates, it writes). What keeps an id from a peer from reaching a file offset
    /// unchecked.
    pub fn check_follows(&self, before: &TxState) -> Result<(), EntryError> {
        let after = &self.after;
        let mut counts = [0u64; 3];
        for image in &self.records {
            let (kind, id, next) = match image {
                RecordImage::Node(id, _) => (0, *id, after.next_node),
                RecordImage::Rel(id, _) => (1, *id, after.next_rel),
                RecordImage::Block(id, _) => (2, *id, after.next_block),
            };
            if id >= next {
                return Err(
                    DecodeError::Invalid("a record id at or above its high-water mark").into(),
                );
            }
            counts[kind] += 1;
        }
        let marks = [
            (before.next_node, after.next_node),
            (before.next_rel, after.next_rel),
            (before.next_block, after.next_block),
        ];
        for (kind, (was, is)) in marks.into_iter().enumerate() {
            if is < was || is - was > counts[kind] {
                return Err(DecodeError::Invalid(
                    "a high-water mark moved by more than the transaction's records",
                )
                .into());
            }
        }
        Ok(())
    }
}

fn encode_image(out: &mut Vec<u8>, image: &RecordImage) {
    match image {
        RecordImage::Node(id, n) => {
            out.put_u8(1);
            out.put_u64_le(*id);
            out.put_u8(n.in_use as u8);
            out.put_u64_le(n.first_rel);
            out.put_u64_le(n.payload_block);
            out.put_u32_le(n.payload_len);
        }
        RecordImage::Rel(id, r) => {
            out.put_u8(2);
            out.put_u64_le(*id);
            out.put_u8(r.in_use as u8);
            for v in [
                r.start,
                r.end,
                r.start_prev,
                r.start_next,
                r.end_prev,
                r.end_next,
                r.payload_block,
            ] {
                out.put_u64_le(v);
            }
            out.put_u32_le(r.payload_len);
        }
        RecordImage::Block(id, b) => {
            out.put_u8(3);
            out.put_u64_le(*id);
            out.put_u8(b.in_use as u8);
            out.put_u64_le(b.next);
            out.put_u16_le(b.data.len() as u16);
            out.put_slice(&b.data);
        }
    }
}

fn decode_image(r: &mut Reader<'_>) -> Result<RecordImage, DecodeError> {
    let tag = r.u8()?;
    let id = r.u64()?;
    let in_use = r.flag("bad in-use byte")?;
    Ok(match tag {
        1 => RecordImage::Node(
            id,
            NodeRecord {
                in_use,
                first_rel: r.u64()?,
                payload_block: r.u64()?,
                payload_len: r.u32()?,
            },
        ),
        2 => RecordImage::Rel(
            id,
            RelRecord {
                in_use,
                start: r.u64()?,
                end: r.u64()?,
                start_prev: r.u64()?,
                start_next: r.u64()?,
                end_prev: r.u64()?,
                end_next: r.u64()?,
                payload_block: r.u64()?,
                payload_len: r.u32()?,
            },
        ),
        3 => {
            let next = r.u64()?;
            let len = r.u16()? as usize;
            if len > BLOCK_DATA {
                return Err(DecodeError::Invalid("block data too long"));
            }
            RecordImage::Block(
                id,
                BlockRecord {
                    in_use,
                    next,
                    data: r.bytes(len)?.to_vec(),
                },
            )
        }
        _ => return Err(DecodeError::Invalid("unknown record tag")),
    })
}

/// The path of log file `version` in `dir`.
pub fn log_path(dir: &Path, version: u64) -> PathBuf {
    dir.join(format!("{LOG_PREFIX}{version}"))
}

/// The version of the log file named `name`, if it is one.
pub fn log_version_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(LOG_PREFIX)?;
    let v: u64 = digits.parse().ok()?;
    // Only the canonical spelling names a log file ("01" or "+1" is someone else's).
    (v.to_string() == digits).then_some(v)
}

/// The versions of the log files in `dir`, ascending (LOG-1).
pub fn list_log_versions(fs: &dyn Fs, dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut versions: Vec<u64> = fs
        .read_dir(dir)?
        .into_iter()
        .filter(|e| !e.is_dir)
        .filter_map(|e| log_version_of(&e.name))
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

/// What reading the next entry found.
#[derive(Debug)]
pub enum ReadOutcome {
    /// A whole, checksummed entry, and the offset just after it.
    Entry(Box<TxEntry>, u64),
    /// Clean end of the file at exactly this offset.
    End,
    /// Bytes at this offset do not form a whole valid entry: a torn or corrupt tail (LOG-7).
    Torn(&'static str),
}

/// Reads the entry at `offset` of an open log file, checking frame length and CRC.
pub fn read_entry(
    file: &dyn FileHandle,
    offset: u64,
    file_len: u64,
) -> std::io::Result<ReadOutcome> {
    if offset >= file_len {
        return Ok(ReadOutcome::End);
    }
    if file_len - offset < FRAME_SIZE {
        return Ok(ReadOutcome::Torn("partial entry frame"));
    }
    let mut frame = [0u8; FRAME_SIZE as usize];
    file.read_exact_at(&mut frame, offset)?;
    let len = u32::from_le_bytes(frame[..4].try_into().expect("4"));
    let crc = u32::from_le_bytes(frame[4..].try_into().expect("4"));
    if len == 0 && crc == 0 {
        // A zero-filled region (a file extended but never written): nothing committed here.
        return Ok(ReadOutcome::Torn("zero-filled tail"));
    }
    if len > MAX_ENTRY {
        return Ok(ReadOutcome::Torn("entry length out of range"));
    }
    let body_at = offset + FRAME_SIZE;
    if file_len - body_at < len as u64 {
        return Ok(ReadOutcome::Torn("partial entry body"));
    }
    let mut body = vec![0u8; len as usize];
    file.read_exact_at(&mut body, body_at)?;
    if crc32c::crc32c(&body) != crc {
        return Ok(ReadOutcome::Torn("entry checksum mismatch"));
    }
    match TxEntry::decode_body(&body) {
        Ok(entry) => Ok(ReadOutcome::Entry(Box::new(entry), body_at + len as u64)),
        Err(_) => Ok(ReadOutcome::Torn("entry body malformed")),
    }
}

/// Bytes a [`LogReader`] reads ahead: many small entries per read of the file. Entries up to
/// the last committed tx the caller observed never change once written, and the reader returns
/// none past it, so what the window holds of them is what the file holds (IO-13).
const READ_AHEAD: usize = 64 << 10;

/// Reads committed transactions in order from a store's log files, from a given tx on, while
/// the store's owner keeps committing and rotating (the backup service, PR-20). It holds no
/// lock: entries up to the last committed tx the caller observed are whole and durable, files
/// are only appended to, and the caller's pin keeps them from being pruned (RET-3).
#[derive(Debug)]
pub struct LogReader {
    fs: std::sync::Arc<dyn Fs>,
    dir: PathBuf,
    version: u64,
    file: ReadAhead,
    offset: u64,
    len: u64,
    next_tx: u64,
}

/// Where a reader found the tx before its first one.
#[derive(Debug)]
pub struct ReaderStart {
    pub reader: LogReader,
    /// The digest after tx `from - 1` (LOG-2: a header's `prev_digest`, or that tx's entry).
    pub digest_before: Digest,
}

impl LogReader {
    /// Positions a reader so that its first entry is tx `from`, and finds the digest at
    /// `from - 1`. `None` when the logs no longer hold what that needs (pruned). `from - 1`
    /// must be at most the store's last committed tx.
    pub fn open(
        fs: std::sync::Arc<dyn Fs>,
        dir: &Path,
        from: u64,
    ) -> Result<Option<ReaderStart>, crate::store::StoreError> {
        use crate::store::StoreError;
        let io_err = |what: String| move |e| StoreError::io(what, e);
        let versions =
            list_log_versions(&*fs, dir).map_err(io_err(format!("listing {}", dir.display())))?;
        // The newest file starting at or before `from`: its header's prev_last_tx < from.
        let mut chosen = None;
        for &version in versions.iter().rev() {
            let path = log_path(dir, version);
            let file = match fs.open(&path, crate::io::OpenMode::Read) {
                Ok(f) => f,
                // Pruned between the listing and now: older files are gone too.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
            };
            let header = LogHeader::read(&*file)
                .map_err(io_err(format!("reading {}", path.display())))?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("log file {version} has a damaged header"))
                })?;
            if header.prev_last_tx < from {
                chosen = Some((version, file, header));
                break;
            }
        }
        let Some((version, file, header)) = chosen else {
            return Ok(None);
        };
        let len = file
            .len()
            .map_err(io_err("reading a log file's length".into()))?;
        let mut reader = LogReader {
            fs,
            dir: dir.to_path_buf(),
            version,
            file: ReadAhead::new(file, READ_AHEAD),
            offset: HEADER_SIZE,
            len,
            next_tx: header.prev_last_tx + 1,
        };
        let mut digest_before = header.prev_digest;
        while reader.next_tx < from {
            match reader.next(from - 1)? {
                Some(entry) => digest_before = entry.after.digest,
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "the logs end before tx {}",
                        from - 1
                    )))
                }
            }
        }
        Ok(Some(ReaderStart {
            reader,
            digest_before,
        }))
    }

    /// The next entry, or `None` once past `upto` (a tx the caller knows is committed).
    pub fn next(&mut self, upto: u64) -> Result<Option<TxEntry>, crate::store::StoreError> {
        use crate::store::StoreError;
        if self.next_tx > upto {
            return Ok(None);
        }
        loop {
            let outcome = read_entry(&self.file, self.offset, self.len)
                .map_err(|e| StoreError::io(format!("reading log file {}", self.version), e))?;
            match outcome {
                ReadOutcome::Entry(entry, next) => {
                    if entry.tx_id != self.next_tx {
                        return Err(StoreError::Corrupt(format!(
                            "log file {} holds tx {} where tx {} was expected",
                            self.version, entry.tx_id, self.next_tx
                        )));
                    }
                    self.offset = next;
                    self.next_tx += 1;
                    return Ok(Some(*entry));
                }
                ReadOutcome::End | ReadOutcome::Torn(_) => {
                    // Either the file grew since its length was read, or the tx is in the next
                    // file (a rotation). A committed tx is never torn. What the window read of
                    // bytes being written then is read again.
                    self.file.forget();
                    let len = self.file.len().map_err(|e| {
                        StoreError::io(format!("reading log file {}", self.version), e)
                    })?;
                    if len > self.len {
                        self.len = len;
                        continue;
                    }
                    self.advance_file()?;
                }
            }
        }
    }

    fn advance_file(&mut self) -> Result<(), crate::store::StoreError> {
        use crate::store::StoreError;
        let version = self.version + 1;
        let path = log_path(&self.dir, version);
        let missing = || {
            StoreError::Corrupt(format!(
                "tx {} is in no log file (log file {} ends before it)",
                self.next_tx, self.version
            ))
        };
        let file = match self.fs.open(&path, crate::io::OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
        };
        let header = LogHeader::read(&*file)
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
        match header {
            Some(h) if h.log_version == version && h.prev_last_tx + 1 == self.next_tx => {}
            _ => return Err(missing()),
        }
        self.len = file
            .len()
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
        self.file = ReadAhead::new(file, READ_AHEAD);
        self.version = version;
        self.offset = HEADER_SIZE;
        Ok(())
    }
}

/// Cuts the logs in `dir`, of a store that is not open, right after `tx`: the file holding
/// the end of `tx` is cut there, the files after it removed, the file and the directory synced.
/// Opening the store then recovers it to `tx` and no further: how a restore brings back an
/// object store's generation, whose record files are a fuzzy copy at its checkpoint C, at a tx
/// from the one its full backup reached to its last (OBJ-18). `tx` must be at least C; an
/// error when the logs do not hold every tx up to it.
pub fn cut_after(
    fs: std::sync::Arc<dyn Fs>,
    dir: &Path,
    tx: u64,
) -> Result<(), crate::store::StoreError> {
    use crate::store::StoreError;
    let io = |what: String| move |e| StoreError::io(what, e);
    // A reader positioned at tx + 1 stands right after tx: in the file holding tx's end, or
    // at the start of the next when tx ended a file.
    let start = LogReader::open(fs.clone(), dir, tx + 1)?
        .ok_or_else(|| StoreError::Corrupt(format!("the logs no longer hold tx {tx}")))?;
    let (version, offset) = (start.reader.version, start.reader.offset);
    drop(start);
    let path = log_path(dir, version);
    let file = fs
        .open(&path, crate::io::OpenMode::ReadWrite)
        .map_err(io(format!("opening {}", path.display())))?;
    file.set_len(offset)
        .map_err(io(format!("cutting {}", path.display())))?;
    file.sync()
        .map_err(io(format!("syncing {}", path.display())))?;
    let versions =
        list_log_versions(&*fs, dir).map_err(io(format!("listing {}", dir.display())))?;
    for later in versions.into_iter().filter(|&v| v > version) {
        let path = log_path(dir, later);
        fs.remove_file(&path)
            .map_err(io(format!("removing {}", path.display())))?;
    }
    fs.sync_dir(dir)
        .map_err(io(format!("syncing {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> TxEntry {
        TxEntry {
            tx_id: 12,
            timestamp_millis: 99,
            after: TxState {
                digest: Digest([7; 32]),
                nodes: 1,
                relationships: 2,
                next_node: 3,
                next_rel: 4,
                next_block: 5,
            },
            records: vec![
                RecordImage::Node(1, NodeRecord::unused()),
                RecordImage::Rel(2, RelRecord::unused()),
                RecordImage::Block(
                    3,
                    BlockRecord {
                        in_use: true,
                        next: 9,
                        data: b"abc".to_vec(),
                    },
                ),
            ],
        }
    }

    // LOG-3, LOG-5: an entry round-trips through its frame.
    #[test]
    fn log_3_entry_round_trips() {
        let e = entry();
        let framed = e.encode_framed();
        let len = u32::from_le_bytes(framed[..4].try_into().unwrap()) as usize;
        assert_eq!(len + FRAME_SIZE as usize, framed.len());
        assert_eq!(TxEntry::decode_body(&framed[8..]).unwrap(), e);
    }

    // LOG-2: the header round-trips and a damaged one is rejected.
    #[test]
    fn log_2_header_round_trips() {
        let h = LogHeader {
            log_version: 3,
            prev_last_tx: 77,
            prev_digest: Digest([1; 32]),
        };
        let mut b = h.encode();
        assert_eq!(LogHeader::decode(&b), Some(h));
        b[13] ^= 1;
        assert_eq!(LogHeader::decode(&b), None);
    }
}
