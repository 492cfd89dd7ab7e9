//! The real filesystem with faults injected, for the failure paths of the store and the backup
//! client. Each fault applies to the files a [`Files`] selects and, but for `free`, only while
//! `armed`:
//!
//! - `fail_writes`: a write fails (a record write after the log was synced: ENOSPC, EIO);
//! - `forget_overwrites`: a write over bytes the file already has is acknowledged and dropped,
//!   writes that extend the file are kept (a disk that loses overwrites without saying so);
//! - `fail_removals`: removing the file fails; every removal that succeeds is recorded in order;
//! - `free`: the free space reported, whatever the disk has (a full disk without mounting one);
//! - `fail_opens`: opening the file fails with the given OS error (`EMFILE`: out of descriptors);
//! - `fail_dir_syncs`: syncing any directory fails with the given OS error;
//! - `slow_syncs`: every file sync takes at least this long (a disk whose fsync is the cost),
//!   and `syncs` counts the syncs of the files `slow_syncs` selects (both apply armed or not);
//! - `held_syncs`: a sync of the file waits, armed, until the [`Gate`] opens (a sync caught in
//!   the act, to see what goes on meanwhile);
//! - `traced`: every write, `set_len` and sync of the file that succeeded is recorded in order,
//!   armed or not (`write <offset> <len>`, `set_len <len>`, `sync`), to see what was made
//!   durable when;
//! - `counted_opens`: every open of the file adds one to the counter, armed or not;
//! - `fail_metadata`: looking at the path fails with the given OS error;
//! - `fail_locks`: locking any directory fails with the given OS error;
//! - `fail_set_lens`: truncating or extending the file fails;
//! - `flip_writes`: a write covering the given byte of the file writes that byte with its lowest
//!   bit flipped, and says nothing (a disk that damages what it is given);
//! - `misdirect_writes`: a write to the file writes instead the same bytes' range of the file of
//!   the same name in the given directory, and says nothing (a disk whose writes land other data:
//!   what it leaves is well formed, only not what it was given).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use online_backup::io::os::OsFs;
use online_backup::io::{DirEntry, FileHandle, Fs, LockGuard, Metadata, OpenMode};

/// Which files a fault applies to: those under `under` (anywhere when `None`) whose name ends
/// with `name`.
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub under: Option<PathBuf>,
    pub name: &'static str,
}

impl Files {
    pub fn named(name: &'static str) -> Files {
        Files { under: None, name }
    }

    fn select(&self, path: &Path) -> bool {
        self.under.as_ref().is_none_or(|u| path.starts_with(u))
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(self.name))
    }
}

#[derive(Debug, Default)]
pub struct Faulty {
    pub armed: Arc<AtomicBool>,
    pub fail_writes: Option<Files>,
    pub forget_overwrites: Option<Files>,
    pub fail_removals: Option<Files>,
    pub free: Option<u64>,
    pub fail_opens: Option<(Files, i32)>,
    pub fail_dir_syncs: Option<i32>,
    pub slow_syncs: Option<(Files, std::time::Duration)>,
    pub syncs: Arc<AtomicU64>,
    pub held_syncs: Option<(Files, Arc<Gate>)>,
    pub removed: Arc<Mutex<Vec<String>>>,
    pub traced: Option<(Files, Arc<Mutex<Vec<String>>>)>,
    pub counted_opens: Option<(Files, Arc<AtomicU64>)>,
    pub fail_metadata: Option<(Files, i32)>,
    pub fail_locks: Option<i32>,
    pub fail_set_lens: Option<Files>,
    pub flip_writes: Option<(Files, u64)>,
    pub misdirect_writes: Option<(Files, PathBuf)>,
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn FileHandle>,
    fail: bool,
    forget: bool,
    fail_set_len: bool,
    /// The byte whose lowest bit a write flips, if `flip_writes` selects the file.
    flip: Option<u64>,
    /// The file whose bytes a write writes instead, if `misdirect_writes` selects the file.
    misdirect: Option<PathBuf>,
    armed: Arc<AtomicBool>,
    /// How long a sync takes at least, and the count it adds to, if `slow_syncs` selects it.
    slow: Option<(std::time::Duration, Arc<AtomicU64>)>,
    /// Where a sync waits while armed, if `held_syncs` selects it.
    held: Option<Arc<Gate>>,
    /// Where writes, `set_len`s and syncs are recorded, if `traced` selects it.
    trace: Option<Arc<Mutex<Vec<String>>>>,
}

impl FaultyFile {
    fn record(&self, what: impl FnOnce() -> String) {
        if let Some(trace) = &self.trace {
            trace.lock().unwrap().push(what());
        }
    }
}

/// Holds syncs until opened, and counts those that came to it.
#[derive(Debug, Default)]
pub struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
    /// Syncs that reached the gate, open or not.
    pub reached: AtomicU64,
}

/// Opens its gate when dropped, so that a test that fails while syncs are held does not leave
/// threads waiting for ever (which would hang the test instead of failing it).
pub struct OpensOnDrop(pub Arc<Gate>);

impl Drop for OpensOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

impl Gate {
    /// Lets every held sync, and every later one, through.
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }

    /// Waits until `n` syncs reached the gate; false after `timeout` without.
    pub fn wait_reached(&self, n: u64, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.reached.load(Ordering::SeqCst) < n {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        true
    }

    fn pass(&self) {
        self.reached.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
    }
}

impl FileHandle for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let armed = self.armed.load(Ordering::SeqCst);
        if armed && self.fail {
            return Err(std::io::Error::other("no space left on device (injected)"));
        }
        if armed && self.forget && offset + buf.len() as u64 <= self.inner.len()? {
            return Ok(());
        }
        match (self.flip, &self.misdirect) {
            (_, Some(other)) if armed => {
                let mut instead = vec![0; buf.len()];
                OsFs.open(other, OpenMode::Read)?
                    .read_exact_at(&mut instead, offset)?;
                self.inner.write_all_at(&instead, offset)?;
            }
            (Some(at), _) if armed && (offset..offset + buf.len() as u64).contains(&at) => {
                let mut damaged = buf.to_vec();
                damaged[(at - offset) as usize] ^= 1;
                self.inner.write_all_at(&damaged, offset)?;
            }
            _ => self.inner.write_all_at(buf, offset)?,
        }
        self.record(|| format!("write {offset} {}", buf.len()));
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        if self.fail_set_len && self.armed.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("input/output error (injected)"));
        }
        self.inner.set_len(len)?;
        self.record(|| format!("set_len {len}"));
        Ok(())
    }
    fn sync(&self) -> std::io::Result<()> {
        if let Some(gate) = &self.held {
            if self.armed.load(Ordering::SeqCst) {
                gate.pass();
            }
        }
        if let Some((delay, count)) = &self.slow {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(*delay);
        }
        self.inner.sync()?;
        self.record(|| "sync".to_string());
        Ok(())
    }
}

impl Fs for Faulty {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn FileHandle>> {
        let selects = |f: &Option<Files>| f.as_ref().is_some_and(|f| f.select(path));
        if let Some((files, count)) = &self.counted_opens {
            if files.select(path) {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
        if let Some((files, errno)) = &self.fail_opens {
            if files.select(path) && self.armed.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(*errno));
            }
        }
        Ok(Box::new(FaultyFile {
            inner: OsFs.open(path, mode)?,
            fail: selects(&self.fail_writes),
            forget: selects(&self.forget_overwrites),
            fail_set_len: selects(&self.fail_set_lens),
            flip: self
                .flip_writes
                .as_ref()
                .filter(|(f, _)| f.select(path))
                .map(|(_, at)| *at),
            misdirect: self
                .misdirect_writes
                .as_ref()
                .filter(|(f, _)| f.select(path))
                .and_then(|(_, dir)| Some(dir.join(path.file_name()?))),
            armed: self.armed.clone(),
            slow: self
                .slow_syncs
                .as_ref()
                .filter(|(f, _)| f.select(path))
                .map(|(_, d)| (*d, self.syncs.clone())),
            held: self
                .held_syncs
                .as_ref()
                .filter(|(f, _)| f.select(path))
                .map(|(_, g)| g.clone()),
            trace: self
                .traced
                .as_ref()
                .filter(|(f, _)| f.select(path))
                .map(|(_, t)| t.clone()),
        }))
    }
    fn metadata(&self, path: &Path) -> std::io::Result<Option<Metadata>> {
        if let Some((files, errno)) = &self.fail_metadata {
            if files.select(path) && self.armed.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(*errno));
            }
        }
        OsFs.metadata(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<DirEntry>> {
        OsFs.read_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        OsFs.create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        OsFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        let refused = self.fail_removals.as_ref().is_some_and(|f| f.select(path));
        if refused && self.armed.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("permission denied (injected)"));
        }
        OsFs.remove_file(path)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        self.removed.lock().unwrap().push(name.into_owned());
        Ok(())
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        OsFs.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        if let Some(errno) = self.fail_dir_syncs {
            if self.armed.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(errno));
            }
        }
        OsFs.sync_dir(path)
    }
    fn lock_dir(&self, dir: &Path) -> std::io::Result<Box<dyn LockGuard>> {
        if let Some(errno) = self.fail_locks {
            if self.armed.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(errno));
            }
        }
        OsFs.lock_dir(dir)
    }
    fn available_space(&self, path: &Path) -> std::io::Result<u64> {
        match self.free {
            Some(free) => Ok(free),
            None => OsFs.available_space(path),
        }
    }
}
