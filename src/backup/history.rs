//! A generation's history (spec/history.md, PIT-1 .. PIT-12): the undo segments an incremental
//! keeps when it keeps transactions, what the generation can be restored to, and rewinding a
//! copy of it to an earlier transaction.
//!
//! Owns: the undo segment format (`neostore.undo.<tx>`), reading, listing and pruning
//! segments, a generation's restorable range, finding the tx a time means, and rewinding the
//! record files of a copy to a segment's tx.
//! Must not touch: the generation's record files, metadata or logs (a rewind writes only a
//! copy; the store owns the logs and their retention), the manifest (the backup client keeps
//! it in step), or the network.
//!
//! A kept transaction is an after-image (LOG-5), so the logs replay forward only. Before each
//! durable run of transactions an incremental applies, it writes the records the run will
//! overwrite as they were, with the state before the run: its undo segment (PIT-2). A rewind
//! writes the segments back, newest first, down to the first at or before the tx wanted, cuts
//! the files to that state's marks and replays the kept logs forward to the tx (PIT-7).

use std::path::Path;

use bytes::BufMut;

use crate::codec::Reader;
use crate::io::{FileHandle, Fs, OpenMode};
use crate::store::format::{FormatVersion, RecordKind};
use crate::store::log::{
    list_log_versions, log_path, read_entry, LogHeader, LogReader, ReadOutcome, RecordImage,
    TxEntry, TxState,
};
use crate::store::records::RecordFiles;
use crate::store::{record_file_limit, StoreError};

/// An undo segment's name is this prefix plus the tx whose state it brings back (PIT-1).
pub const UNDO_PREFIX: &str = "neostore.undo.";
/// The header of an undo segment (PIT-1).
const MAGIC: &[u8; 8] = b"NEOUNDO\0";
const LAYOUT_VERSION: u32 = 1;
const HEADER_SIZE: usize = 64;
/// Images per entry of a segment: far below what one log entry may hold (LOG-4), whatever the
/// records' size.
const IMAGES_PER_ENTRY: usize = 4096;

/// The name of the undo segment that brings back the state at `tx`.
pub fn undo_name(tx: u64) -> String {
    format!("{UNDO_PREFIX}{tx}")
}

/// The tx of an undo segment's name (canonical spelling only), if `name` is one.
pub fn parse_undo_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(UNDO_PREFIX)?;
    let tx: u64 = digits.parse().ok()?;
    (tx.to_string() == digits).then_some(tx)
}

/// What an undo segment's header says (PIT-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The tx whose state the segment brings back: the last tx before its run.
    pub from_tx: u64,
    /// The last tx of its run, as planned (a crash may have ended the run earlier, PIT-4).
    pub to_tx: u64,
    /// Entries after the header.
    pub entries: u32,
}

impl SegmentHeader {
    fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = Vec::with_capacity(HEADER_SIZE);
        out.put_slice(MAGIC);
        out.put_u32_le(LAYOUT_VERSION);
        out.put_u64_le(self.from_tx);
        out.put_u64_le(self.to_tx);
        out.put_u32_le(self.entries);
        out.resize(HEADER_SIZE - 4, 0);
        out.put_u32_le(crc32c::crc32c(&out));
        out.try_into().expect("a header is 64 bytes")
    }

    fn decode(b: &[u8; HEADER_SIZE]) -> Option<SegmentHeader> {
        let crc = u32::from_le_bytes(b[HEADER_SIZE - 4..].try_into().expect("4 bytes"));
        if crc32c::crc32c(&b[..HEADER_SIZE - 4]) != crc {
            return None;
        }
        let mut r = Reader::new(&b[..]);
        if r.bytes(8).ok()? != MAGIC || r.u32().ok()? != LAYOUT_VERSION {
            return None;
        }
        let header = SegmentHeader {
            from_tx: r.u64().ok()?,
            to_tx: r.u64().ok()?,
            entries: r.u32().ok()?,
        };
        (header.from_tx < header.to_tx).then_some(header)
    }
}

/// Writes the undo segment of a run about to be applied (PIT-2): `before` holds what the
/// records the run writes below `state`'s marks are now, `state` is the state at `from_tx`,
/// the run ends at `to_tx`. The file is synced, and the directory, before the call returns, so
/// nothing the run writes reaches the disk before what undoes it. A segment of the same name
/// (a run that crashed before it logged anything) is replaced.
pub fn write_segment(
    fs: &dyn Fs,
    dir: &Path,
    from_tx: u64,
    to_tx: u64,
    state: &TxState,
    before: &[RecordImage],
) -> Result<(), StoreError> {
    let path = dir.join(undo_name(from_tx));
    let io = |e| StoreError::io(format!("writing {}", path.display()), e);
    let chunks: Vec<&[RecordImage]> = if before.is_empty() {
        vec![&[]]
    } else {
        before.chunks(IMAGES_PER_ENTRY).collect()
    };
    let header = SegmentHeader {
        from_tx,
        to_tx,
        entries: chunks.len() as u32,
    };
    let file = fs.open(&path, OpenMode::CreateTruncate).map_err(io)?;
    file.write_all_at(&header.encode(), 0).map_err(io)?;
    let mut at = HEADER_SIZE as u64;
    for chunk in chunks {
        let entry = TxEntry {
            tx_id: from_tx,
            timestamp_millis: 0,
            after: *state,
            records: chunk.to_vec(),
        };
        let framed = entry.encode_framed();
        file.write_all_at(&framed, at).map_err(io)?;
        at += framed.len() as u64;
    }
    file.sync().map_err(io)?;
    fs.sync_dir(dir)
        .map_err(|e| StoreError::io(format!("syncing {}", dir.display()), e))
}

/// An open undo segment whose header was checked.
struct Segment {
    header: SegmentHeader,
    file: Box<dyn FileHandle>,
    len: u64,
}

fn open_segment(fs: &dyn Fs, dir: &Path, from_tx: u64) -> Result<Segment, StoreError> {
    let name = undo_name(from_tx);
    let path = dir.join(&name);
    let io = |e| StoreError::io(format!("reading {}", path.display()), e);
    let file = fs.open(&path, OpenMode::Read).map_err(io)?;
    let len = file.len().map_err(io)?;
    let mut buf = [0u8; HEADER_SIZE];
    let header = match file.read_fully_at(&mut buf, 0).map_err(io)? {
        HEADER_SIZE => SegmentHeader::decode(&buf),
        _ => None,
    };
    match header {
        Some(header) if header.from_tx == from_tx => Ok(Segment { header, file, len }),
        _ => Err(StoreError::Corrupt(format!(
            "undo segment {name} has a damaged header"
        ))),
    }
}

impl Segment {
    /// Calls `each` with every entry, in order: each holds the state at `from_tx` and some of
    /// the images (PIT-1). One entry in memory at a time.
    fn for_each(
        &self,
        mut each: impl FnMut(TxEntry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let name = undo_name(self.header.from_tx);
        let damaged =
            |why: &str| StoreError::Corrupt(format!("undo segment {name} is damaged: {why}"));
        let mut at = HEADER_SIZE as u64;
        for _ in 0..self.header.entries {
            match read_entry(&*self.file, at, self.len)
                .map_err(|e| StoreError::io(format!("reading {name}"), e))?
            {
                ReadOutcome::Entry(entry, next) if entry.tx_id == self.header.from_tx => {
                    at = next;
                    each(*entry)?;
                }
                ReadOutcome::Entry(..) => return Err(damaged("an entry of another tx")),
                ReadOutcome::End => return Err(damaged("it ends early")),
                ReadOutcome::Torn(why) => return Err(damaged(why)),
            }
        }
        if at != self.len {
            return Err(damaged("bytes after its last entry"));
        }
        Ok(())
    }
}

/// The undo segments in `dir`, by the tx they bring back, ascending (names only).
pub fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut txs: Vec<u64> = fs
        .read_dir(dir)
        .map_err(|e| StoreError::io(format!("reading {}", dir.display()), e))?
        .into_iter()
        .filter(|e| !e.is_dir)
        .filter_map(|e| parse_undo_name(&e.name))
        .collect();
    txs.sort_unstable();
    Ok(txs)
}

/// What a generation can be restored to (PIT-5): every tx from `from_tx` to `to_tx`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restorable {
    pub from_tx: u64,
    pub to_tx: u64,
    /// The segments a rewind may use, newest first, each by the tx it brings back; the last is
    /// at `from_tx` when there are any.
    chain: Vec<u64>,
    /// The first tx the logs hold (the oldest log file's previous tx plus one);
    /// [`NONE_LOGGED`] when they hold none.
    first_logged: u64,
}

/// [`Restorable::first_logged`] of a generation whose logs hold no tx, or were not read: past
/// every tx, so no segment chains to the logs and no commit time is known.
const NONE_LOGGED: u64 = u64::MAX;

/// What the generation in `dir`, at `last_tx`, can be restored to (PIT-5): back from
/// `last_tx` through an unbroken chain of readable undo segments, each reaching the next (or
/// `last_tx`), as far as the logs hold every tx after the oldest segment used. Segments off the
/// chain are ignored (and pruned, PIT-6).
pub fn restorable(fs: &dyn Fs, dir: &Path, last_tx: u64) -> Result<Restorable, StoreError> {
    let first_logged = first_logged(fs, dir)?.unwrap_or(NONE_LOGGED);
    let mut chain = Vec::new();
    let mut at = last_tx;
    for from_tx in list_segments(fs, dir)?.into_iter().rev() {
        if from_tx >= at {
            // A run that crashed before it logged anything, or one the chain went past.
            continue;
        }
        let header = match open_segment(fs, dir, from_tx) {
            Ok(s) => s.header,
            Err(StoreError::Corrupt(_)) => break,
            Err(e) => return Err(e),
        };
        // It must reach where the newer part of the chain starts, and the logs must hold every
        // tx after it.
        if header.to_tx < at || from_tx + 1 < first_logged {
            break;
        }
        chain.push(from_tx);
        at = from_tx;
    }
    Ok(Restorable {
        from_tx: at,
        to_tx: last_tx,
        chain,
        first_logged,
    })
}

/// The first tx the logs in `dir` hold, from the oldest log file's header; `None` without logs.
fn first_logged(fs: &dyn Fs, dir: &Path) -> Result<Option<u64>, StoreError> {
    let Some(&oldest) = list_log_versions(fs, dir)
        .map_err(|e| StoreError::io(format!("reading {}", dir.display()), e))?
        .first()
    else {
        return Ok(None);
    };
    let path = log_path(dir, oldest);
    let io = |e| StoreError::io(format!("reading {}", path.display()), e);
    let file = fs.open(&path, OpenMode::Read).map_err(io)?;
    let header = LogHeader::read(&*file)
        .map_err(io)?
        .ok_or_else(|| StoreError::Corrupt(format!("log file {oldest} has a damaged header")))?;
    Ok(Some(header.prev_last_tx + 1))
}

/// What a generation that recovery has not run on can be restored to (an object store's,
/// OBJ-18): every tx from `from_tx`, the one its full backup reached, to `to_tx`, its last,
/// by replaying its logs from its checkpoint. It keeps no undo segments; its logs in `dir`
/// say which commit times are known.
pub fn replayable(
    fs: &dyn Fs,
    dir: &Path,
    from_tx: u64,
    to_tx: u64,
) -> Result<Restorable, StoreError> {
    Ok(Restorable {
        from_tx,
        to_tx,
        chain: Vec::new(),
        first_logged: first_logged(fs, dir)?.unwrap_or(NONE_LOGGED),
    })
}

impl Restorable {
    /// Whether the generation can be restored to `tx`.
    pub fn holds(&self, tx: u64) -> bool {
        (self.from_tx..=self.to_tx).contains(&tx)
    }

    /// The first tx whose commit time the logs know, at or after `from_tx` (PIT-9).
    fn first_timed(&self) -> u64 {
        self.from_tx.max(self.first_logged)
    }
}

/// What a generation can be restored to, with the commit times of the first and last of
/// those txs the logs hold (PIT-5, PIT-9): what `backup-info` lists and a refusal names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub range: Restorable,
    /// `None` when the logs hold no entry of those txs.
    pub times: Option<(u64, u64)>,
}

impl Span {
    /// A generation that can be restored to every tx from `from_tx` to `to_tx`, as its
    /// manifest says without its logs being read, so with no commit times (an object store's,
    /// OBJ-15, OBJ-18).
    pub fn replayable(from_tx: u64, to_tx: u64) -> Span {
        Span {
            range: Restorable {
                from_tx,
                to_tx,
                chain: Vec::new(),
                first_logged: NONE_LOGGED,
            },
            times: None,
        }
    }
}

/// The [`Span`] of the generation in `dir` at `last_tx`.
pub fn span(fs: std::sync::Arc<dyn Fs>, dir: &Path, last_tx: u64) -> Result<Span, StoreError> {
    let range = restorable(&*fs, dir, last_tx)?;
    let times = time_range(fs, dir, &range)?;
    Ok(Span { range, times })
}

/// The commit times of the first and last txs the generation can be restored to whose times
/// the logs hold (PIT-9), or `None` when they hold none.
pub fn time_range(
    fs: std::sync::Arc<dyn Fs>,
    dir: &Path,
    r: &Restorable,
) -> Result<Option<(u64, u64)>, StoreError> {
    let first = r.first_timed();
    if first > r.to_tx {
        return Ok(None);
    }
    let time_of = |tx: u64| -> Result<u64, StoreError> {
        let mut start = LogReader::open(fs.clone(), dir, tx)?
            .ok_or_else(|| StoreError::Corrupt(format!("the logs no longer hold tx {tx}")))?;
        match start.reader.next(tx)? {
            Some(entry) => Ok(entry.timestamp_millis),
            None => Err(StoreError::Corrupt(format!("the logs end before tx {tx}"))),
        }
    };
    Ok(Some((time_of(first)?, time_of(r.to_tx)?)))
}

/// The tx `--until-time` means (PIT-9): the last one before the first tx, from the first
/// whose time the logs know, committed after `millis`; `None` when even that first one was
/// committed after it, or the logs know no time.
pub fn tx_at_time(
    fs: std::sync::Arc<dyn Fs>,
    dir: &Path,
    r: &Restorable,
    millis: u64,
) -> Result<Option<u64>, StoreError> {
    let first = r.first_timed();
    if first > r.to_tx {
        return Ok(None);
    }
    let mut start = LogReader::open(fs, dir, first)?
        .ok_or_else(|| StoreError::Corrupt(format!("the logs no longer hold tx {first}")))?;
    let mut found = None;
    while let Some(entry) = start.reader.next(r.to_tx)? {
        if entry.timestamp_millis > millis {
            break;
        }
        found = Some(entry.tx_id);
    }
    Ok(found)
}

/// Rewinds the record files in `copy`, a copy of the generation in `dir` at `r.to_tx`, to
/// the newest segment's tx at or before `tx` (PIT-7): each segment newest first writes its
/// images back, then the files are cut to the marks of the state reached, and synced. Returns
/// that tx and its state; `None` when `tx` is the generation's last (nothing to undo). The
/// caller replays the logs from there to `tx`.
pub fn rewind(
    fs: &dyn Fs,
    dir: &Path,
    copy: &Path,
    format: FormatVersion,
    r: &Restorable,
    tx: u64,
) -> Result<Option<(u64, TxState)>, StoreError> {
    if tx >= r.to_tx {
        return Ok(None);
    }
    let files = RecordFiles::open(fs, copy, format, false)?;
    let mut reached = None;
    for &from_tx in &r.chain {
        let segment = open_segment(fs, dir, from_tx)?;
        let mut state = None;
        segment.for_each(|entry| {
            files.apply_all(&entry.records)?;
            state = Some(entry.after);
            Ok(())
        })?;
        let state = state.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "undo segment {} holds no entry",
                undo_name(from_tx)
            ))
        })?;
        reached = Some((from_tx, state));
        if from_tx <= tx {
            break;
        }
    }
    let Some((at, state)) = reached.filter(|&(at, _)| at <= tx) else {
        return Err(StoreError::Corrupt(format!(
            "the backup's undo segments do not reach back to tx {tx}"
        )));
    };
    for kind in RecordKind::ALL {
        let file = files.file(kind);
        let io = |e| StoreError::io(format!("cutting {}", kind.file_name()), e);
        file.set_len(record_file_limit(kind, &state, format))
            .map_err(io)?;
    }
    files.sync_all()?;
    Ok(Some((at, state)))
}

/// Removes the undo segments in `dir` off the chain `r` (PIT-6), or all of them when
/// transactions are no longer kept; `before_remove` is told each name first (the manifest
/// marks it). Returns the names removed.
pub fn prune<E: From<StoreError>>(
    fs: &dyn Fs,
    dir: &Path,
    r: Option<&Restorable>,
    mut before_remove: impl FnMut(&[String]) -> Result<(), E>,
) -> Result<Vec<String>, E> {
    let doomed: Vec<String> = list_segments(fs, dir)?
        .into_iter()
        .filter(|tx| r.is_none_or(|r| !r.chain.contains(tx)))
        .map(undo_name)
        .collect();
    if doomed.is_empty() {
        return Ok(doomed);
    }
    before_remove(&doomed)?;
    for name in &doomed {
        let path = dir.join(name);
        match fs.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(format!("removing {}", path.display()), e).into()),
        }
    }
    fs.sync_dir(dir)
        .map_err(|e| StoreError::io(format!("syncing {}", dir.display()), e))?;
    Ok(doomed)
}
