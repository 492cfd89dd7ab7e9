//! [`SimFs`]: the simulated filesystem of one host, on turmoil's. Every operation is recorded in
//! the trace (SIM-6) and fails once the host has lost power (SIM-7).
//!
//! turmoil's filesystem keys files by path, not by inode, which gets a few things wrong that a
//! store and a backup tool do. `SimFs` corrects them, only ever by making something durable
//! *earlier* than POSIX requires (which a real kernel may always do, so every outcome stays a
//! possible one), or by refusing loudly (SIM-9):
//! - read_dir: turmoil lists in hash order; `SimFs` sorts by name (IO-5).
//! - A name whose removal (unlink, rename away, remove_dir_all) is not yet durable still carries
//!   turmoil's old persisted data: creating the name again would show the old bytes, and the
//!   later directory sync would destroy the new file's synced data. Before re-creating such a
//!   name `SimFs` syncs its parent directory first.
//! - remove_dir_all: turmoil only forgets a removed directory, so after a crash its files come
//!   back under the old path once a directory of that name is made again. `SimFs` removes
//!   bottom-up and syncs each emptied directory before removing it.
//! - Open handles follow the path in turmoil, the inode in POSIX. A handle open on a file that
//!   is removed or replaced by a rename becomes an orphan that keeps the old contents, in memory,
//!   as an unlinked inode does. A handle open on a file that is renamed follows it: its data is
//!   synced and both directories are synced around the rename, then it is reopened.
//! - A non-empty directory cannot be renamed (turmoil would leave its files behind): the rename
//!   fails with `Unsupported`. An empty one is renamed durably at once (turmoil would report
//!   the new name as a file until the parents are synced).
//! - turmoil has no file locks: `lock_dir` uses a per-host table (IO-3, SIM-8).
//! - turmoil does not expose disk usage: `available_space` is the configured capacity minus the
//!   sum of the file lengths on the host.
//! - turmoil reports most failures as `ErrorKind::Other`; `SimFs` gives them the POSIX kind.
//!
//! Left as turmoil has it: syncing a directory also makes that directory's own entry durable in
//! its parent (POSIX needs the parent synced too), so a missing parent sync after `mkdir` goes
//! unnoticed here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use online_backup::io::{DirEntry, FileHandle, Fs, LockGuard, Metadata, OpenMode};
use turmoil::fs::shim::std::fs as tfs;

use super::faults::{FsInjection, FsOp};
use super::world::HostShared;
use super::{shown, Shown};
use crate::trace::fnv64;

/// What a host's filesystem keeps beside turmoil's files.
#[derive(Default)]
pub(super) struct FsState {
    /// Locked directories (IO-3, SIM-8).
    locks: BTreeMap<PathBuf, LockEntry>,
    next_token: u64,
    /// Handles open on each path, so removals and renames can treat them as POSIX would.
    open: BTreeMap<PathBuf, Vec<Weak<FileInner>>>,
    /// Names whose removal or rename-away is not yet durable (their parent was not synced).
    unsynced_removals: BTreeSet<PathBuf>,
}

impl FsState {
    /// The host lost power: its locks are released (IO-3), its handles are gone, and what was
    /// not durable is turmoil's to discard. Lock tokens keep counting, so a guard from before
    /// never releases a newer holder's entry.
    pub(super) fn power_lost(&mut self) {
        self.locks.clear();
        self.open.clear();
        self.unsynced_removals.clear();
    }
}

struct LockEntry {
    token: u64,
    /// The tokio runtime of the host's software when it took the lock. turmoil builds a new
    /// runtime each time it starts a host's software, so an entry from another runtime belongs
    /// to a process that is gone.
    runtime: Option<tokio::runtime::Id>,
}

/// turmoil reports most failures as `ErrorKind::Other` with the text of the POSIX error; give
/// them the kind the operating system's error would have, which the product may test for.
fn os_kind(e: io::Error) -> io::Error {
    if e.kind() != ErrorKind::Other {
        return e;
    }
    let kind = match e.to_string().as_str() {
        "No such file or directory" => ErrorKind::NotFound,
        "File exists" => ErrorKind::AlreadyExists,
        "Directory not empty" => ErrorKind::DirectoryNotEmpty,
        "Is a directory" => ErrorKind::IsADirectory,
        "Not a directory" => ErrorKind::NotADirectory,
        "No space left on device" => ErrorKind::StorageFull,
        _ => return e,
    };
    io::Error::new(kind, e.to_string())
}

fn parent(path: &Path) -> &Path {
    online_backup::io::parent_of(path)
}

/// turmoil's metadata of `path` as ours; `None` when nothing is there.
fn stat(path: &Path) -> io::Result<Option<Metadata>> {
    match tfs::metadata(path) {
        Ok(m) => Ok(Some(Metadata {
            is_dir: m.is_dir(),
            len: if m.is_dir() { 0 } else { m.len() },
        })),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether an operation changes the disk: a mutating one counts towards a planned power loss
/// (SIM-7).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Reads,
    Mutates,
}

use Access::{Mutates, Reads};

/// Runs one filesystem operation of `host`: admits it (or fails it, the host being down,
/// SIM-7), asks the fault plan what to do to it (fails it, or lets it run and hands `op` what
/// to do after: SIM-30 .. SIM-34), runs `op`, gives a failure the kind the operating system
/// would give (SIM-9), and records `fs <what> -> <result>` in the trace (SIM-6).
fn traced<T: Shown>(
    host: &HostShared,
    access: Access,
    (fsop, path): (FsOp, &Path),
    what: &str,
    op: impl FnOnce(&FsInjection) -> io::Result<T>,
) -> io::Result<T> {
    let r = host
        .begin_on(access == Mutates, Some(path))
        .and_then(|()| match host.fs_fault(fsop, path) {
            FsInjection::Fail(e) => Err(e),
            injection => op(&injection),
        })
        .map_err(os_kind);
    host.record(&format!("fs {what} -> {}", shown(&r)));
    r
}

impl Shown for Box<dyn FileHandle> {
    fn shown(&self) -> String {
        "ok".to_string()
    }
}

impl Shown for Box<dyn LockGuard> {
    fn shown(&self) -> String {
        "ok".to_string()
    }
}

impl Shown for Option<Metadata> {
    fn shown(&self) -> String {
        match self {
            Some(m) if m.is_dir => "dir".to_string(),
            Some(m) => format!("file len={}", m.len),
            None => "none".to_string(),
        }
    }
}

impl Shown for Vec<DirEntry> {
    fn shown(&self) -> String {
        let names: Vec<&str> = self.iter().map(|e| e.name.as_str()).collect();
        format!("[{}]", names.join(","))
    }
}

/// A failure of the kind the operating system would give, naming `path`: `<path> <what>`.
fn refusal(kind: ErrorKind, path: &Path, what: &str) -> io::Error {
    io::Error::new(kind, format!("{} {what}", path.display()))
}

/// The simulated filesystem of one host (see the module doc for how it differs from turmoil's).
#[derive(Clone)]
pub struct SimFs {
    host: Arc<HostShared>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimFs({})", self.host.name)
    }
}

impl SimFs {
    pub(super) fn new(host: Arc<HostShared>) -> SimFs {
        SimFs { host }
    }

    /// This host's filesystem state.
    fn state(&self) -> MutexGuard<'_, FsState> {
        self.host.fs.lock().unwrap()
    }

    /// The live handles open on `path`.
    fn handles_on(&self, path: &Path) -> Vec<Arc<FileInner>> {
        let mut s = self.state();
        let Some(list) = s.open.get_mut(path) else {
            return Vec::new();
        };
        list.retain(|w| w.strong_count() > 0);
        let live: Vec<_> = list.iter().filter_map(Weak::upgrade).collect();
        if list.is_empty() {
            s.open.remove(path);
        }
        live
    }

    /// Syncs `dir` in turmoil and forgets the removals it made durable.
    fn sync_dir_raw(&self, dir: &Path) -> io::Result<()> {
        tfs::sync_dir(dir)?;
        let mut s = self.state();
        s.unsynced_removals.retain(|p| parent(p) != dir);
        Ok(())
    }

    /// Before `path` is created again: if its removal is not durable yet, make it so.
    fn settle_removal(&self, path: &Path) -> io::Result<()> {
        let pending = self.state().unsynced_removals.contains(path);
        if pending {
            self.sync_dir_raw(parent(path))?;
        }
        Ok(())
    }

    /// Turns every handle open on `path` into an orphan holding the current contents, as an
    /// unlinked inode stays readable through its open descriptors.
    fn orphan_handles(&self, path: &Path) -> io::Result<()> {
        let handles = self.handles_on(path);
        if handles.is_empty() {
            return Ok(());
        }
        let data = tfs::read(path)?;
        for h in &handles {
            let mut b = h.backing.lock().unwrap();
            *b = Backing::Orphan {
                path: path.to_path_buf(),
                data: data.clone(),
            };
        }
        self.state().open.remove(path);
        Ok(())
    }

    fn open_inner(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>> {
        let existing = stat(path)?;
        if existing.as_ref().is_some_and(|m| m.is_dir) {
            return Err(refusal(ErrorKind::IsADirectory, path, "is a directory"));
        }
        let creates = matches!(
            mode,
            OpenMode::ReadWriteCreate | OpenMode::CreateNew | OpenMode::CreateTruncate
        );
        if creates && existing.is_none() {
            self.settle_removal(path)?;
        }
        let mut opts = tfs::OpenOptions::new();
        opts.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                opts.write(true);
            }
            OpenMode::ReadWriteCreate => {
                opts.write(true).create(true);
            }
            OpenMode::CreateNew => {
                opts.write(true).create_new(true);
            }
            OpenMode::CreateTruncate => {
                opts.write(true).create(true).truncate(true);
            }
        }
        let file = opts.open(path)?;
        let inner = Arc::new(FileInner {
            host: self.host.clone(),
            writable: mode != OpenMode::Read,
            backing: Mutex::new(Backing::Live {
                path: path.to_path_buf(),
                file,
            }),
        });
        let mut s = self.state();
        let handles = s.open.entry(path.to_path_buf()).or_default();
        handles.retain(|w| w.strong_count() > 0);
        handles.push(Arc::downgrade(&inner));
        drop(s);
        Ok(Box::new(SimFile(inner)))
    }

    fn rename_inner(&self, from: &Path, to: &Path) -> io::Result<()> {
        let Some(source) = stat(from)? else {
            return Err(refusal(ErrorKind::NotFound, from, "does not exist"));
        };
        if from == to {
            return Ok(());
        }
        if source.is_dir {
            if tfs::read_dir(from)?.next().is_some() {
                return Err(io::Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the simulated filesystem cannot rename the non-empty directory {} \
                         (turmoil keys files by path)",
                        from.display()
                    ),
                ));
            }
            // turmoil only sees a renamed directory at its new name if its creation is durable.
            self.sync_dir_raw(parent(from))?;
        }
        self.settle_removal(to)?;
        let replaced = stat(to)?.is_some_and(|m| !m.is_dir);
        let moving = if source.is_dir {
            Vec::new()
        } else {
            self.handles_on(from)
        };
        if !moving.is_empty() {
            // Handles follow the inode: make the file's data durable under its old name now, so
            // nothing the handles wrote stays pending under a name that is about to go away.
            tfs::OpenOptions::new().read(true).open(from)?.sync_all()?;
        }
        let snapshot = if replaced && !self.handles_on(to).is_empty() {
            Some(tfs::read(to)?)
        } else {
            None
        };
        tfs::rename(from, to)?;
        if source.is_dir {
            // Until the rename is durable turmoil reports the new name as a file: make it so.
            self.sync_dir_raw(parent(from))?;
            self.sync_dir_raw(parent(to))?;
            return Ok(());
        }
        if let Some(data) = snapshot {
            for h in self.handles_on(to) {
                *h.backing.lock().unwrap() = Backing::Orphan {
                    path: to.to_path_buf(),
                    data: data.clone(),
                };
            }
            self.state().open.remove(to);
        }
        if moving.is_empty() {
            self.state().unsynced_removals.insert(from.to_path_buf());
            return Ok(());
        }
        // Make the rename durable at once so turmoil's data moves to the new name, then point
        // the handles there.
        self.sync_dir_raw(parent(from))?;
        self.sync_dir_raw(parent(to))?;
        for h in &moving {
            let mut b = h.backing.lock().unwrap();
            if let Backing::Live { .. } = &*b {
                let file = tfs::OpenOptions::new()
                    .read(true)
                    .write(h.writable)
                    .open(to)?;
                *b = Backing::Live {
                    path: to.to_path_buf(),
                    file,
                };
            }
        }
        let mut s = self.state();
        let weak: Vec<_> = moving.iter().map(Arc::downgrade).collect();
        s.open.remove(from);
        s.open.entry(to.to_path_buf()).or_default().extend(weak);
        Ok(())
    }

    fn remove_tree(&self, dir: &Path) -> io::Result<()> {
        let mut names: Vec<PathBuf> = tfs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for child in names {
            if tfs::symlink_metadata(&child)?.is_dir() {
                self.remove_tree(&child)?;
                tfs::remove_dir(&child)?;
            } else {
                self.orphan_handles(&child)?;
                tfs::remove_file(&child)?;
            }
        }
        // Durable before the directory itself goes, or turmoil would bring the files back
        // under this path after a crash.
        self.sync_dir_raw(dir)
    }

    fn used_bytes(dir: &Path) -> io::Result<u64> {
        let mut total = 0;
        for entry in tfs::read_dir(dir)? {
            let path = entry?.path();
            let m = tfs::symlink_metadata(&path)?;
            total += if m.is_dir() {
                Self::used_bytes(&path)?
            } else {
                m.len()
            };
        }
        Ok(total)
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>> {
        let access = match mode {
            OpenMode::Read | OpenMode::ReadWrite => Reads,
            _ => Mutates,
        };
        let what = format!("open {} {mode:?}", path.display());
        let op = if access == Mutates {
            FsOp::Create
        } else {
            FsOp::Other
        };
        traced(&self.host, access, (op, path), &what, |_| {
            self.open_inner(path, mode)
        })
    }

    fn metadata(&self, path: &Path) -> io::Result<Option<Metadata>> {
        let what = format!("metadata {}", path.display());
        traced(&self.host, Reads, (FsOp::Other, path), &what, |_| {
            stat(path)
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let what = format!("read_dir {}", path.display());
        traced(&self.host, Reads, (FsOp::Other, path), &what, |_| {
            let mut out = Vec::new();
            for entry in tfs::read_dir(path)? {
                let entry = entry?;
                let m = tfs::symlink_metadata(entry.path())?;
                out.push(DirEntry {
                    name: entry.file_name().to_string_lossy().into_owned(),
                    is_dir: m.is_dir(),
                    len: if m.is_dir() { 0 } else { m.len() },
                });
            }
            // IO-5: turmoil lists in hash order.
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let what = format!("create_dir_all {}", path.display());
        traced(&self.host, Mutates, (FsOp::Other, path), &what, |_| {
            if stat(path)?.is_some_and(|m| !m.is_dir) {
                return Err(refusal(ErrorKind::AlreadyExists, path, "is a file"));
            }
            let mut missing: Vec<&Path> = path
                .ancestors()
                .take_while(|p| !p.as_os_str().is_empty())
                .collect();
            missing.reverse();
            for p in missing {
                if stat(p)?.is_none() {
                    self.settle_removal(p)?;
                }
            }
            tfs::create_dir_all(path)
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let what = format!("rename {} {}", from.display(), to.display());
        traced(&self.host, Mutates, (FsOp::Other, to), &what, |_| {
            self.rename_inner(from, to)
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let what = format!("remove_file {}", path.display());
        traced(&self.host, Mutates, (FsOp::Other, path), &what, |_| {
            match stat(path)? {
                None => return Err(refusal(ErrorKind::NotFound, path, "does not exist")),
                Some(m) if m.is_dir => {
                    return Err(refusal(ErrorKind::IsADirectory, path, "is a directory"))
                }
                Some(_) => {}
            }
            self.orphan_handles(path)?;
            tfs::remove_file(path)?;
            self.state().unsynced_removals.insert(path.to_path_buf());
            Ok(())
        })
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let what = format!("remove_dir_all {}", path.display());
        traced(&self.host, Mutates, (FsOp::Other, path), &what, |_| {
            match stat(path)? {
                Some(m) if m.is_dir => {}
                Some(_) => {
                    return Err(refusal(
                        ErrorKind::NotADirectory,
                        path,
                        "is not a directory",
                    ))
                }
                None => return Err(refusal(ErrorKind::NotFound, path, "does not exist")),
            }
            self.remove_tree(path)?;
            tfs::remove_dir(path)?;
            self.state().unsynced_removals.insert(path.to_path_buf());
            Ok(())
        })
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let what = format!("sync_dir {}", path.display());
        traced(&self.host, Mutates, (FsOp::Sync, path), &what, |_| {
            self.sync_dir_raw(path)
        })
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn LockGuard>> {
        let what = format!("lock {}", dir.display());
        traced(&self.host, Reads, (FsOp::Other, dir), &what, |_| {
            if !stat(dir)?.is_some_and(|m| m.is_dir) {
                return Err(refusal(ErrorKind::NotFound, dir, "is not a directory"));
            }
            let runtime = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
            let mut s = self.state();
            if let Some(held) = s.locks.get(dir) {
                if held.runtime == runtime {
                    return Err(refusal(
                        ErrorKind::WouldBlock,
                        dir,
                        "is locked by another process",
                    ));
                }
                // Held by software of this host that has since been stopped: released (IO-3).
            }
            s.next_token += 1;
            let token = s.next_token;
            s.locks
                .insert(dir.to_path_buf(), LockEntry { token, runtime });
            Ok(Box::new(SimLockGuard {
                host: self.host.clone(),
                dir: dir.to_path_buf(),
                token,
            }) as Box<dyn LockGuard>)
        })
    }

    fn available_space(&self, path: &Path) -> io::Result<u64> {
        let what = format!("available_space {}", path.display());
        traced(&self.host, Reads, (FsOp::Other, path), &what, |_| {
            if stat(path)?.is_none() {
                return Err(refusal(ErrorKind::NotFound, path, "does not exist"));
            }
            // A full disk has no space left (SIM-33).
            if self.host.disk_full() {
                return Ok(0);
            }
            Ok(self
                .host
                .capacity
                .saturating_sub(Self::used_bytes(Path::new("/"))?))
        })
    }
}

/// A held directory lock; dropping it releases the lock.
struct SimLockGuard {
    host: Arc<HostShared>,
    dir: PathBuf,
    token: u64,
}

impl fmt::Debug for SimLockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimLockGuard({}:{})", self.host.name, self.dir.display())
    }
}

impl LockGuard for SimLockGuard {}

impl Drop for SimLockGuard {
    fn drop(&mut self) {
        let mut s = self.host.fs.lock().unwrap();
        // Only our own entry: after a crash the table may hold a newer holder's.
        if s.locks
            .get(&self.dir)
            .is_some_and(|e| e.token == self.token)
        {
            s.locks.remove(&self.dir);
            drop(s);
            self.host
                .record(&format!("fs unlock {}", self.dir.display()));
        }
    }
}

/// What an open handle reads and writes.
enum Backing {
    /// The file in turmoil's filesystem.
    Live { path: PathBuf, file: tfs::File },
    /// The file was removed or replaced while open: its last contents, private to the handles
    /// that had it open, as an unlinked inode.
    Orphan { path: PathBuf, data: Vec<u8> },
}

impl Backing {
    fn path(&self) -> &Path {
        match self {
            Backing::Live { path, .. } | Backing::Orphan { path, .. } => path,
        }
    }

    /// The file's length now (0 when it cannot be read: the operation then fails on its own).
    fn len(&self) -> u64 {
        match self {
            Backing::Live { file, .. } => file.metadata().map_or(0, |m| m.len()),
            Backing::Orphan { data, .. } => data.len() as u64,
        }
    }
}

struct FileInner {
    host: Arc<HostShared>,
    writable: bool,
    backing: Mutex<Backing>,
}

/// An open simulated file.
struct SimFile(Arc<FileInner>);

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.backing.lock().unwrap();
        write!(f, "SimFile({}:{})", self.0.host.name, b.path().display())
    }
}

impl SimFile {
    /// Runs `op` on the backing as one traced operation (see [`traced`]) of kind `fsop` (given
    /// the backing, before the operation), recorded as `fs <what(the file's path)> -> <result>`.
    fn run<T: Shown>(
        &self,
        access: Access,
        fsop: impl FnOnce(&Backing) -> FsOp,
        what: impl FnOnce(&Path) -> String,
        op: impl FnOnce(&mut Backing, &FsInjection) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut b = self.0.backing.lock().unwrap();
        let what = what(b.path());
        let fsop = fsop(&b);
        let path = b.path().to_path_buf();
        traced(&self.0.host, access, (fsop, &path), &what, |injection| {
            op(&mut b, injection)
        })
    }

    /// Refuses a write to a handle opened read-only, as the operating system does.
    fn writable(&self) -> io::Result<()> {
        if self.0.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                ErrorKind::PermissionDenied,
                "file opened read-only",
            ))
        }
    }
}

impl FileHandle for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let want = buf.len();
        let read_only = !self.0.writable;
        let host = self.0.host.clone();
        self.run(
            Reads,
            |_| FsOp::Read { read_only },
            |p| format!("read {} @{offset} len={want}", p.display()),
            |b, injection| {
                let n = match b {
                    Backing::Live { file, .. } => file.read_at(buf, offset)?,
                    Backing::Orphan { data, .. } => {
                        let start = (offset as usize).min(data.len());
                        let n = want.min(data.len() - start);
                        buf[..n].copy_from_slice(&data[start..start + n]);
                        n
                    }
                };
                // A flipped bit in what was read (SIM-32).
                host.after_read(injection, b.path(), offset, &mut buf[..n]);
                Ok(n)
            },
        )
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.writable()?;
        let end = offset + buf.len() as u64;
        self.run(
            Mutates,
            |b| FsOp::Write {
                grows: end > b.len(),
            },
            |p| {
                format!(
                    "write {} @{offset} len={} h={:016x}",
                    p.display(),
                    buf.len(),
                    fnv64(buf)
                )
            },
            |b, _| match b {
                Backing::Live { file, .. } => file.write_all_at(buf, offset),
                Backing::Orphan { data, .. } => {
                    let end = offset as usize + buf.len();
                    if data.len() < end {
                        data.resize(end, 0);
                    }
                    data[offset as usize..end].copy_from_slice(buf);
                    Ok(())
                }
            },
        )
    }

    fn len(&self) -> io::Result<u64> {
        self.run(
            Reads,
            |_| FsOp::Other,
            |p| format!("len {}", p.display()),
            |b, _| match b {
                Backing::Live { file, .. } => Ok(file.metadata()?.len()),
                Backing::Orphan { data, .. } => Ok(data.len() as u64),
            },
        )
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        self.run(
            Mutates,
            |b| FsOp::Write {
                grows: len > b.len(),
            },
            |p| format!("set_len {} {len}", p.display()),
            |b, _| match b {
                Backing::Live { file, .. } => file.set_len(len),
                Backing::Orphan { data, .. } => {
                    data.resize(len as usize, 0);
                    Ok(())
                }
            },
        )
    }

    fn sync(&self) -> io::Result<()> {
        self.run(
            Mutates,
            |_| FsOp::Sync,
            |p| format!("sync {}", p.display()),
            |b, _| match b {
                Backing::Live { file, .. } => file.sync_all(),
                Backing::Orphan { .. } => Ok(()),
            },
        )
    }
}
