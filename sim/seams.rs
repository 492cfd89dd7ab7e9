//! The simulated seams: [`SimFs`] on turmoil's simulated filesystem, [`SimNet`] on turmoil's
//! simulated TCP, [`SimClock`] on turmoil's simulated time, and the per-simulation
//! [`SimWorld`] that ties them to one trace and holds each host's lock table and fault plan.
//!
//! Everything here runs inside turmoil hosts (turmoil's filesystem and network panic outside
//! one), on the simulation's single thread. Every operation is recorded in the trace (SIM-6).
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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use online_backup::io::{
    BoxFuture, Clock, DirEntry, Env, FileHandle, Fs, Listener, LockGuard, Metadata, Net, OpenMode,
    Stream,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use turmoil::fs::shim::std::fs as tfs;

use crate::trace::{fnv64, Trace};

/// How every simulated host's disk behaves. The runner applies it to turmoil's `FsConfig` too,
/// so turmoil's `ENOSPC` and `SimFs::available_space` agree.
#[derive(Clone, Copy, Debug)]
pub struct DiskConfig {
    /// Bytes per host.
    pub capacity: u64,
    /// When set, a write that was not synced when the host lost power survives as a random
    /// whole number of blocks of this size from its start (a torn write).
    pub torn_write_block: Option<u64>,
    /// The chance that the disk flushes a file's pending writes on its own after a write
    /// (a kernel's writeback), making unsynced data survive a crash sometimes.
    pub random_sync_probability: f64,
}

impl DiskConfig {
    pub const DEFAULT: DiskConfig = DiskConfig {
        capacity: 1 << 30,
        torn_write_block: Some(512),
        random_sync_probability: 0.05,
    };
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig::DEFAULT
    }
}

/// The state every simulated seam of one simulation shares: the trace, the clock offset, the
/// disk configuration and, per host, the lock table, the open files and the fault plan.
/// Cloning gives another handle to the same world.
#[derive(Clone)]
pub struct SimWorld(Arc<WorldInner>);

struct WorldInner {
    trace: Trace,
    epoch: SystemTime,
    disk: DiskConfig,
    clock_offset_ms: Arc<AtomicU64>,
    hosts: Mutex<BTreeMap<String, Arc<HostShared>>>,
}

impl fmt::Debug for SimWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimWorld")
            .field("trace", &self.0.trace)
            .field("epoch", &self.0.epoch)
            .finish_non_exhaustive()
    }
}

impl SimWorld {
    pub fn new(trace: Trace, epoch: SystemTime, disk: DiskConfig) -> SimWorld {
        SimWorld(Arc::new(WorldInner {
            trace,
            epoch,
            disk,
            clock_offset_ms: Arc::new(AtomicU64::new(0)),
            hosts: Mutex::new(BTreeMap::new()),
        }))
    }

    pub fn trace(&self) -> &Trace {
        &self.0.trace
    }

    fn host(&self, name: &str) -> Arc<HostShared> {
        let mut hosts = self.0.hosts.lock().unwrap();
        hosts
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(HostShared {
                    name: name.to_string(),
                    trace: self.0.trace.clone(),
                    capacity: self.0.disk.capacity,
                    state: Mutex::new(HostState::default()),
                })
            })
            .clone()
    }

    /// The filesystem of host `name`. Every `SimFs` of one host shares its lock table.
    pub fn fs(&self, name: &str) -> SimFs {
        SimFs {
            host: self.host(name),
        }
    }

    pub fn net(&self, name: &str) -> SimNet {
        SimNet {
            host: self.host(name),
        }
    }

    /// The wall clock, the same on every host of this simulation.
    pub fn clock(&self) -> SimClock {
        SimClock {
            epoch: self.0.epoch,
            offset_ms: self.0.clock_offset_ms.clone(),
            trace: self.0.trace.clone(),
        }
    }

    /// The seams of host `name`.
    pub fn env(&self, name: &str) -> Env {
        Env {
            fs: Arc::new(self.fs(name)),
            net: Arc::new(self.net(name)),
            clock: Arc::new(self.clock()),
            blocking: Arc::new(Inline),
        }
    }

    /// Moves every host's wall clock forward by `by` at once (SIM-10).
    pub fn advance_clock(&self, by: Duration) {
        self.clock().advance(by);
        self.0
            .trace
            .record("driver", &format!("clock advance {}ms", by.as_millis()));
    }

    /// Plans a power loss of host `name` (SIM-7): its `n`-th mutating filesystem operation from
    /// now (1 = the next one) fails, and so does every filesystem and network operation after
    /// it, as if the machine had stopped right before that operation. The driver then sees
    /// [`SimWorld::is_down`] and crashes the host, which discards what was not durable.
    pub fn power_loss_before_op(&self, name: &str, n: u64) {
        let host = self.host(name);
        let mut s = host.state.lock().unwrap();
        s.power_loss_at = Some(s.mutating_ops + n.max(1));
    }

    /// Cancels a power loss of host `name` planned with [`SimWorld::power_loss_before_op`] that
    /// has not struck yet (a host that already lost power stays down).
    pub fn cancel_power_loss(&self, name: &str) {
        self.host(name).state.lock().unwrap().power_loss_at = None;
    }

    /// Whether a power loss of host `name` is planned and has not struck yet.
    pub fn power_loss_planned(&self, name: &str) -> bool {
        self.host(name)
            .state
            .lock()
            .unwrap()
            .power_loss_at
            .is_some()
    }

    /// Whether host `name` has lost power and awaits the driver's crash.
    pub fn is_down(&self, name: &str) -> bool {
        self.host(name).state.lock().unwrap().down
    }

    /// How many mutating filesystem operations host `name` has attempted so far.
    pub fn mutating_ops(&self, name: &str) -> u64 {
        self.host(name).state.lock().unwrap().mutating_ops
    }

    /// Called by the driver after it crashed host `name`: the host's power is back, no loss is
    /// planned, and its lock table is empty (IO-3).
    pub fn host_crashed(&self, name: &str) {
        let host = self.host(name);
        let mut s = host.state.lock().unwrap();
        s.down = false;
        s.power_loss_at = None;
        s.locks.clear();
        s.open.clear();
        s.unsynced_removals.clear();
    }
}

/// Blocking work in simulation (IO-10): run at once, on the host's one thread, so that nothing
/// escapes the seed (SIM-11).
#[derive(Debug)]
pub struct Inline;

impl online_backup::io::Blocking for Inline {
    fn run(&self, job: Box<dyn FnOnce() + Send>) -> online_backup::io::BoxFuture<'static, ()> {
        job();
        Box::pin(std::future::ready(()))
    }
}

/// The seams of host `host` in simulation `world`.
pub fn sim_env(host: &str, world: &SimWorld) -> Env {
    world.env(host)
}

/// What every seam of one host shares.
struct HostShared {
    name: String,
    trace: Trace,
    capacity: u64,
    state: Mutex<HostState>,
}

#[derive(Default)]
struct HostState {
    /// Locked directories (IO-3, SIM-8).
    locks: BTreeMap<PathBuf, LockEntry>,
    next_token: u64,
    /// Handles open on each path, so removals and renames can treat them as POSIX would.
    open: BTreeMap<PathBuf, Vec<Weak<FileInner>>>,
    /// Names whose removal or rename-away is not yet durable (their parent was not synced).
    unsynced_removals: BTreeSet<PathBuf>,
    mutating_ops: u64,
    power_loss_at: Option<u64>,
    down: bool,
}

struct LockEntry {
    token: u64,
    /// The tokio runtime of the host's software when it took the lock. turmoil builds a new
    /// runtime each time it starts a host's software, so an entry from another runtime belongs
    /// to a process that is gone.
    runtime: Option<tokio::runtime::Id>,
}

fn power_loss_error(host: &str) -> io::Error {
    io::Error::other(format!("simulated power loss: host {host} is down"))
}

impl HostShared {
    fn record(&self, event: &str) {
        self.trace.record(&self.name, event);
    }

    /// Admits one operation, or fails it because the host is down (SIM-7). A mutating operation
    /// counts towards a planned power loss.
    fn begin(&self, mutating: bool) -> io::Result<()> {
        let mut s = self.state.lock().unwrap();
        if s.down {
            return Err(power_loss_error(&self.name));
        }
        if mutating {
            s.mutating_ops += 1;
            if s.power_loss_at.is_some_and(|at| s.mutating_ops >= at) {
                s.down = true;
                s.power_loss_at = None;
                drop(s);
                self.record("power lost");
                return Err(power_loss_error(&self.name));
            }
        }
        Ok(())
    }

    fn is_down(&self) -> bool {
        self.state.lock().unwrap().down
    }

    /// The live handles open on `path`.
    fn handles_on(&self, path: &Path) -> Vec<Arc<FileInner>> {
        let mut s = self.state.lock().unwrap();
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
}

/// `Ok`/`err <kind>` for the trace (error messages are left out: only kinds are stable).
fn outcome<T>(r: &io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("err {:?}", e.kind()),
    }
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
    /// Syncs `dir` in turmoil and forgets the removals it made durable.
    fn sync_dir_raw(&self, dir: &Path) -> io::Result<()> {
        tfs::sync_dir(dir)?;
        let mut s = self.host.state.lock().unwrap();
        s.unsynced_removals.retain(|p| parent(p) != dir);
        Ok(())
    }

    /// Before `path` is created again: if its removal is not durable yet, make it so.
    fn settle_removal(&self, path: &Path) -> io::Result<()> {
        let pending = self
            .host
            .state
            .lock()
            .unwrap()
            .unsynced_removals
            .contains(path);
        if pending {
            self.sync_dir_raw(parent(path))?;
        }
        Ok(())
    }

    /// Turns every handle open on `path` into an orphan holding the current contents, as an
    /// unlinked inode stays readable through its open descriptors.
    fn orphan_handles(&self, path: &Path) -> io::Result<()> {
        let handles = self.host.handles_on(path);
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
        self.host.state.lock().unwrap().open.remove(path);
        Ok(())
    }

    fn open_inner(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>> {
        let existing = stat(path)?;
        if existing.as_ref().is_some_and(|m| m.is_dir) {
            return Err(io::Error::new(
                ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            ));
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
        let mut s = self.host.state.lock().unwrap();
        let handles = s.open.entry(path.to_path_buf()).or_default();
        handles.retain(|w| w.strong_count() > 0);
        handles.push(Arc::downgrade(&inner));
        drop(s);
        Ok(Box::new(SimFile(inner)))
    }

    fn rename_inner(&self, from: &Path, to: &Path) -> io::Result<()> {
        let Some(source) = stat(from)? else {
            return Err(io::Error::new(
                ErrorKind::NotFound,
                format!("{} does not exist", from.display()),
            ));
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
            self.host.handles_on(from)
        };
        if !moving.is_empty() {
            // Handles follow the inode: make the file's data durable under its old name now, so
            // nothing the handles wrote stays pending under a name that is about to go away.
            tfs::OpenOptions::new().read(true).open(from)?.sync_all()?;
        }
        let snapshot = if replaced && !self.host.handles_on(to).is_empty() {
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
            for h in self.host.handles_on(to) {
                *h.backing.lock().unwrap() = Backing::Orphan {
                    path: to.to_path_buf(),
                    data: data.clone(),
                };
            }
            self.host.state.lock().unwrap().open.remove(to);
        }
        if moving.is_empty() {
            self.host
                .state
                .lock()
                .unwrap()
                .unsynced_removals
                .insert(from.to_path_buf());
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
        let mut s = self.host.state.lock().unwrap();
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
        let mutating = !matches!(mode, OpenMode::Read | OpenMode::ReadWrite);
        let r = self
            .host
            .begin(mutating)
            .and_then(|()| self.open_inner(path, mode))
            .map_err(os_kind);
        self.host.record(&format!(
            "fs open {} {mode:?} -> {}",
            path.display(),
            outcome(&r)
        ));
        r
    }

    fn metadata(&self, path: &Path) -> io::Result<Option<Metadata>> {
        let r = self
            .host
            .begin(false)
            .and_then(|()| stat(path))
            .map_err(os_kind);
        let shown = match &r {
            Ok(Some(m)) if m.is_dir => "dir".to_string(),
            Ok(Some(m)) => format!("file len={}", m.len),
            Ok(None) => "none".to_string(),
            Err(e) => format!("err {:?}", e.kind()),
        };
        self.host
            .record(&format!("fs metadata {} -> {shown}", path.display()));
        r
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let r = self
            .host
            .begin(false)
            .and_then(|()| {
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
            .map_err(os_kind);
        let shown = match &r {
            Ok(entries) => {
                let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
                format!("[{}]", names.join(","))
            }
            Err(e) => format!("err {:?}", e.kind()),
        };
        self.host
            .record(&format!("fs read_dir {} -> {shown}", path.display()));
        r
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let r = self
            .host
            .begin(true)
            .and_then(|()| {
                if stat(path)?.is_some_and(|m| !m.is_dir) {
                    return Err(io::Error::new(
                        ErrorKind::AlreadyExists,
                        format!("{} is a file", path.display()),
                    ));
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
            .map_err(os_kind);
        self.host.record(&format!(
            "fs create_dir_all {} -> {}",
            path.display(),
            outcome(&r)
        ));
        r
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let r = self
            .host
            .begin(true)
            .and_then(|()| self.rename_inner(from, to))
            .map_err(os_kind);
        self.host.record(&format!(
            "fs rename {} {} -> {}",
            from.display(),
            to.display(),
            outcome(&r)
        ));
        r
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let r = self
            .host
            .begin(true)
            .and_then(|()| {
                match stat(path)? {
                    None => {
                        return Err(io::Error::new(
                            ErrorKind::NotFound,
                            format!("{} does not exist", path.display()),
                        ))
                    }
                    Some(m) if m.is_dir => {
                        return Err(io::Error::new(
                            ErrorKind::IsADirectory,
                            format!("{} is a directory", path.display()),
                        ))
                    }
                    Some(_) => {}
                }
                self.orphan_handles(path)?;
                tfs::remove_file(path)?;
                self.host
                    .state
                    .lock()
                    .unwrap()
                    .unsynced_removals
                    .insert(path.to_path_buf());
                Ok(())
            })
            .map_err(os_kind);
        self.host.record(&format!(
            "fs remove_file {} -> {}",
            path.display(),
            outcome(&r)
        ));
        r
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let r = self
            .host
            .begin(true)
            .and_then(|()| {
                match stat(path)? {
                    Some(m) if m.is_dir => {}
                    Some(_) => {
                        return Err(io::Error::new(
                            ErrorKind::NotADirectory,
                            format!("{} is not a directory", path.display()),
                        ))
                    }
                    None => {
                        return Err(io::Error::new(
                            ErrorKind::NotFound,
                            format!("{} does not exist", path.display()),
                        ))
                    }
                }
                self.remove_tree(path)?;
                tfs::remove_dir(path)?;
                self.host
                    .state
                    .lock()
                    .unwrap()
                    .unsynced_removals
                    .insert(path.to_path_buf());
                Ok(())
            })
            .map_err(os_kind);
        self.host.record(&format!(
            "fs remove_dir_all {} -> {}",
            path.display(),
            outcome(&r)
        ));
        r
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let r = self
            .host
            .begin(true)
            .and_then(|()| self.sync_dir_raw(path))
            .map_err(os_kind);
        self.host.record(&format!(
            "fs sync_dir {} -> {}",
            path.display(),
            outcome(&r)
        ));
        r
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn LockGuard>> {
        let r = self.host.begin(false).and_then(|()| {
            if !stat(dir)?.is_some_and(|m| m.is_dir) {
                return Err(io::Error::new(
                    ErrorKind::NotFound,
                    format!("{} is not a directory", dir.display()),
                ));
            }
            let runtime = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
            let mut s = self.host.state.lock().unwrap();
            if let Some(held) = s.locks.get(dir) {
                if held.runtime == runtime {
                    return Err(io::Error::new(
                        ErrorKind::WouldBlock,
                        format!("{} is locked by another process", dir.display()),
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
        });
        self.host
            .record(&format!("fs lock {} -> {}", dir.display(), outcome(&r)));
        r
    }

    fn available_space(&self, path: &Path) -> io::Result<u64> {
        let r = self.host.begin(false).and_then(|()| {
            if stat(path)?.is_none() {
                return Err(io::Error::new(
                    ErrorKind::NotFound,
                    format!("{} does not exist", path.display()),
                ));
            }
            Ok(self
                .host
                .capacity
                .saturating_sub(Self::used_bytes(Path::new("/"))?))
        });
        let shown = match &r {
            Ok(n) => n.to_string(),
            Err(e) => format!("err {:?}", e.kind()),
        };
        self.host
            .record(&format!("fs available_space {} -> {shown}", path.display()));
        r
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
        let mut s = self.host.state.lock().unwrap();
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
    /// Runs `op` on the backing (after admitting it) and records `what` with its outcome.
    fn run<T>(
        &self,
        mutating: bool,
        op: impl FnOnce(&mut Backing) -> io::Result<T>,
        what: impl FnOnce(&Path, &io::Result<T>) -> String,
    ) -> io::Result<T> {
        let host = &self.0.host;
        let mut b = self.0.backing.lock().unwrap();
        let r = host
            .begin(mutating)
            .and_then(|()| op(&mut b))
            .map_err(os_kind);
        let line = what(b.path(), &r);
        drop(b);
        host.record(&line);
        r
    }
}

impl FileHandle for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let want = buf.len();
        self.run(
            false,
            |b| match b {
                Backing::Live { file, .. } => file.read_at(buf, offset),
                Backing::Orphan { data, .. } => {
                    let start = (offset as usize).min(data.len());
                    let n = want.min(data.len() - start);
                    buf[..n].copy_from_slice(&data[start..start + n]);
                    Ok(n)
                }
            },
            |p, r| {
                let shown = match r {
                    Ok(n) => n.to_string(),
                    Err(e) => format!("err {:?}", e.kind()),
                };
                format!("fs read {} @{offset} len={want} -> {shown}", p.display())
            },
        )
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.0.writable {
            return Err(io::Error::new(
                ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        self.run(
            true,
            |b| match b {
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
            |p, r| {
                format!(
                    "fs write {} @{offset} len={} h={:016x} -> {}",
                    p.display(),
                    buf.len(),
                    fnv64(buf),
                    outcome(r)
                )
            },
        )
    }

    fn len(&self) -> io::Result<u64> {
        self.run(
            false,
            |b| match b {
                Backing::Live { file, .. } => Ok(file.metadata()?.len()),
                Backing::Orphan { data, .. } => Ok(data.len() as u64),
            },
            |p, r| {
                let shown = match r {
                    Ok(n) => n.to_string(),
                    Err(e) => format!("err {:?}", e.kind()),
                };
                format!("fs len {} -> {shown}", p.display())
            },
        )
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.0.writable {
            return Err(io::Error::new(
                ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        self.run(
            true,
            |b| match b {
                Backing::Live { file, .. } => file.set_len(len),
                Backing::Orphan { data, .. } => {
                    data.resize(len as usize, 0);
                    Ok(())
                }
            },
            |p, r| format!("fs set_len {} {len} -> {}", p.display(), outcome(r)),
        )
    }

    fn sync(&self) -> io::Result<()> {
        self.run(
            true,
            |b| match b {
                Backing::Live { file, .. } => file.sync_all(),
                Backing::Orphan { .. } => Ok(()),
            },
            |p, r| format!("fs sync {} -> {}", p.display(), outcome(r)),
        )
    }
}

/// The simulated network of one host: turmoil's TCP, every connection and message traced.
#[derive(Clone)]
pub struct SimNet {
    host: Arc<HostShared>,
}

impl fmt::Debug for SimNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimNet({})", self.host.name)
    }
}

impl SimNet {
    /// turmoil binds only the unspecified address or loopback. An address naming this host
    /// (its name or its IP) binds the unspecified address on that port instead, as binding a
    /// machine's own address makes it reachable from the others.
    fn own_address_port(&self, addr: &str) -> Option<u16> {
        let (host, port) = addr.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let own = turmoil::lookup(self.host.name.as_str());
        let names_us = host == self.host.name
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip == own);
        names_us.then_some(port)
    }

    async fn bind_inner(&self, addr: &str) -> io::Result<turmoil::net::TcpListener> {
        self.host.begin(false)?;
        match turmoil::net::TcpListener::bind(addr).await {
            Err(e) if e.kind() == ErrorKind::AddrNotAvailable => {
                let Some(port) = self.own_address_port(addr) else {
                    return Err(e);
                };
                let any = match turmoil::lookup(self.host.name.as_str()) {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                };
                turmoil::net::TcpListener::bind(SocketAddr::new(any, port)).await
            }
            other => other,
        }
    }
}

impl Net for SimNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let r = self.bind_inner(addr).await;
            let shown = match &r {
                Ok(l) => format!("ok {}", l.local_addr()?),
                Err(e) => format!("err {:?}", e.kind()),
            };
            self.host.record(&format!("net bind {addr} -> {shown}"));
            Ok(Box::new(SimListener {
                inner: r?,
                host: self.host.clone(),
            }) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Stream>>> {
        Box::pin(async move {
            let r = match self.host.begin(false) {
                Ok(()) => turmoil::net::TcpStream::connect(addr).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(stream) => {
                    let label = format!("{}->{}", stream.local_addr()?, stream.peer_addr()?);
                    self.host
                        .record(&format!("net connect {addr} -> ok {label}"));
                    Ok(Box::new(TracedStream {
                        inner: stream,
                        host: self.host.clone(),
                        label,
                    }) as Box<dyn Stream>)
                }
                Err(e) => {
                    self.host
                        .record(&format!("net connect {addr} -> err {:?}", e.kind()));
                    Err(e)
                }
            }
        })
    }
}

/// A bound simulated listener.
pub struct SimListener {
    inner: turmoil::net::TcpListener,
    host: Arc<HostShared>,
}

impl fmt::Debug for SimListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SimListener({}:{:?})",
            self.host.name,
            self.inner.local_addr()
        )
    }
}

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Stream>, SocketAddr)>> {
        Box::pin(async move {
            self.host.begin(false)?;
            let r = self.inner.accept().await;
            match r {
                Ok((stream, peer)) => {
                    let label = format!("{}->{}", stream.local_addr()?, peer);
                    self.host.record(&format!("net accept -> ok {label}"));
                    let stream = TracedStream {
                        inner: stream,
                        host: self.host.clone(),
                        label,
                    };
                    Ok((Box::new(stream) as Box<dyn Stream>, peer))
                }
                Err(e) => {
                    self.host
                        .record(&format!("net accept -> err {:?}", e.kind()));
                    Err(e)
                }
            }
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A simulated TCP stream that records every read and write (SIM-6) and fails once its host is
/// down (SIM-7).
pub struct TracedStream {
    inner: turmoil::net::TcpStream,
    host: Arc<HostShared>,
    /// `local->peer`.
    label: String,
}

impl fmt::Debug for TracedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TracedStream({}:{})", self.host.name, self.label)
    }
}

impl AsyncRead for TracedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.host.is_down() {
            return Poll::Ready(Err(power_loss_error(&self.host.name)));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                let line = format!(
                    "net read {} len={} h={:016x}",
                    self.label,
                    got.len(),
                    fnv64(got)
                );
                self.host.record(&line);
            }
            Poll::Ready(Err(e)) => {
                let line = format!("net read {} -> err {:?}", self.label, e.kind());
                self.host.record(&line);
            }
            Poll::Pending => {}
        }
        r
    }
}

impl AsyncWrite for TracedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.host.is_down() {
            return Poll::Ready(Err(power_loss_error(&self.host.name)));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        match &r {
            Poll::Ready(Ok(n)) => {
                let line = format!(
                    "net write {} len={n} h={:016x}",
                    self.label,
                    fnv64(&buf[..*n])
                );
                self.host.record(&line);
            }
            Poll::Ready(Err(e)) => {
                let line = format!("net write {} -> err {:?}", self.label, e.kind());
                self.host.record(&line);
            }
            Poll::Pending => {}
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        if let Poll::Ready(res) = &r {
            let line = format!("net shutdown {} -> {}", self.label, outcome(res));
            self.host.record(&line);
        }
        r
    }
}

impl Drop for TracedStream {
    fn drop(&mut self) {
        self.host.record(&format!("net close {}", self.label));
    }
}

/// The simulated wall clock (IO-4): the simulation's epoch (the one given to turmoil) plus the
/// simulated time elapsed plus an offset shared by every host of the simulation, which
/// [`SimClock::advance`] moves forward.
#[derive(Clone, Debug)]
pub struct SimClock {
    epoch: SystemTime,
    offset_ms: Arc<AtomicU64>,
    /// Where the simulated time comes from ([`Trace::now`]), so the clock and the trace agree.
    trace: Trace,
}

impl SimClock {
    /// Moves the clock forward by `by` in one step (days, to age logs for retention).
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// How far the clock has been advanced in total.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        self.epoch + self.trace.now() + self.offset()
    }
}
