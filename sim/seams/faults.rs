//! The faults the simulated seams inject, each scheduled by the seed (spec/simulation.md,
//! SIM-30 .. SIM-37), and the phase of the backup run they strike (SIM-38).
//!
//! A scenario arms one [`FaultSpec`] on a host before a backup run: "the `nth` operation of
//! class `class` that the host makes while the run is in phase `phase`". The host's seams count
//! their operations by class and phase while a run is under way ([`BackupPhase`], tracked from
//! the client's own operations and lines), and the operation that reaches the count gets the
//! fault: an I/O error (`EIO`), a flipped bit in what a read returns, a full disk (`ENOSPC`), a
//! jump of the host's clock, or, on the connection between client and server, delays, a reset
//! at a byte of a write, or a stall. Every fault ends with the run (what it broke stays broken:
//! a failed store, a reset connection); a clock that jumped stays where it jumped to.
//!
//! Everything the faults draw (which bit, which byte, how long a delay) comes from a generator
//! seeded by the spec, so a run stays decided by its seed (SIM-1).

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use online_backup::backup::client::{BackupFacts, Observer, Phase, ServerInfo};
use online_backup::store::format::RecordKind;
use online_backup::store::layout::{parse_generation, pointer_temp_name};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `EIO` and `ENOSPC`, as Linux numbers them: the product sees the error a kernel would give.
const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// A kind of fault (the rows of the coverage table, SIM-38).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// A read fails with `EIO` (SIM-30).
    ReadError,
    /// A write fails with `EIO` (SIM-30).
    WriteError,
    /// An fsync (of a file or a directory) fails with `EIO` (SIM-30, SIM-31).
    SyncError,
    /// A read returns its bytes with one bit flipped: a latent sector error (SIM-32).
    Corruption,
    /// The disk is full: a write that needs more space fails with `ENOSPC` (SIM-33).
    DiskFull,
    /// The host's clock jumps forward by days (SIM-34).
    ClockForward,
    /// The host's clock jumps backward by minutes (SIM-34).
    ClockBackward,
    /// The host's writes to its peer are delayed, each by a random while (SIM-35).
    Latency,
    /// The connection is reset at a byte of a write (SIM-35).
    Reset,
    /// The peer stalls: the connection stays open and nothing more moves on it (SIM-35).
    Stall,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::ReadError,
        FaultKind::WriteError,
        FaultKind::SyncError,
        FaultKind::Corruption,
        FaultKind::DiskFull,
        FaultKind::ClockForward,
        FaultKind::ClockBackward,
        FaultKind::Latency,
        FaultKind::Reset,
        FaultKind::Stall,
    ];

    /// The row's name in the coverage table.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::ReadError => "read EIO",
            FaultKind::WriteError => "write EIO",
            FaultKind::SyncError => "fsync EIO",
            FaultKind::Corruption => "bit flip on read",
            FaultKind::DiskFull => "disk full",
            FaultKind::ClockForward => "clock +days",
            FaultKind::ClockBackward => "clock -minutes",
            FaultKind::Latency => "latency",
            FaultKind::Reset => "reset",
            FaultKind::Stall => "stall",
        }
    }

    /// The operations that count towards the fault (SIM-36).
    pub fn class(self) -> OpClass {
        match self {
            FaultKind::ReadError | FaultKind::Corruption => OpClass::Read,
            FaultKind::WriteError => OpClass::Write,
            FaultKind::SyncError => OpClass::Sync,
            FaultKind::DiskFull => OpClass::Grow,
            FaultKind::ClockForward | FaultKind::ClockBackward => OpClass::Any,
            FaultKind::Latency | FaultKind::Reset | FaultKind::Stall => OpClass::NetWrite,
        }
    }

    /// The phases in which some host makes an operation of the fault's class (SIM-38). The
    /// client reads nothing while it applies (shipped transactions carry whole record images)
    /// or switches; the server streams on while the client applies a run and reads it back
    /// (BK-24, BK-27), but nothing crosses the network once the end frame has: the switch has
    /// no network operation.
    pub fn phases(self) -> &'static [BackupPhase] {
        use BackupPhase::*;
        match self.class() {
            OpClass::Read | OpClass::ReadOnly => &[Handshake, FileCopy, TxStream, Verify],
            OpClass::NetWrite => &[Handshake, FileCopy, TxStream, Apply, Verify],
            _ => &BackupPhase::ALL,
        }
    }
}

/// The phase of a backup run (the columns of the coverage table, SIM-38).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BackupPhase {
    /// From the run's start: connecting, TLS, hello and welcome, reading the target, deciding.
    Handshake,
    /// A full backup: from its request (the server's checkpoint) through the store files.
    FileCopy,
    /// Transactions arriving: after the files of a full backup, or from an incremental request.
    TxStream,
    /// The client writes what arrived into the backup's log and record files.
    Apply,
    /// The client reads the backup back (and closes it).
    Verify,
    /// A full backup's pointer switch and the old generation's removal.
    Switch,
}

impl BackupPhase {
    pub const ALL: [BackupPhase; 6] = [
        BackupPhase::Handshake,
        BackupPhase::FileCopy,
        BackupPhase::TxStream,
        BackupPhase::Apply,
        BackupPhase::Verify,
        BackupPhase::Switch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BackupPhase::Handshake => "handshake",
            BackupPhase::FileCopy => "file copy",
            BackupPhase::TxStream => "tx stream",
            BackupPhase::Apply => "apply",
            BackupPhase::Verify => "verify",
            BackupPhase::Switch => "switch",
        }
    }
}

/// What an operation is, for counting (SIM-36). An operation belongs to several classes: a
/// write that extends its file is `Write`, `Grow` and `Any`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpClass {
    /// A read of a file's bytes.
    Read,
    /// A read through a handle opened read-only (on the server: the backup service's reads of
    /// record and log files, never the commit path's).
    ReadOnly,
    /// A write or a length change of a file.
    Write,
    /// A write or a length change that makes a file longer: what needs free space.
    Grow,
    /// An fsync of a file or a directory.
    Sync,
    /// A write on the connection between the backup client and the server.
    NetWrite,
    /// Any filesystem or network operation.
    Any,
}

/// One fault to inject (SIM-36): on the `nth` operation of `class` that the host makes while
/// the run is in `phase`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub phase: BackupPhase,
    pub class: OpClass,
    pub nth: u64,
    /// I/O errors: every later operation of the class on the same file fails too, until the
    /// run ends. A flipped bit: every later read of that byte returns it flipped.
    pub persistent: bool,
    /// How far a clock jumps, or the longest delay of `Latency`.
    pub amount: Duration,
    /// Seeds what the fault draws (bit, byte, delays).
    pub seed: u64,
}

/// A fault that struck (SIM-38): what, where, in which phase, and what the workload was doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    pub kind: FaultKind,
    pub host: String,
    pub phase: BackupPhase,
    /// The file (or directory) of a filesystem fault.
    pub path: Option<PathBuf>,
    pub persistent: bool,
    /// The trace's record count when it struck: what happened after it comes later.
    pub trace_index: u64,
    /// What the workload was doing ([`FaultWorld::set_workload_probe`]).
    pub workload: &'static str,
}

/// What a filesystem operation gets from the fault plan, decided before it runs.
pub(super) enum FsInjection {
    None,
    /// Fail with this error; the operation does not happen.
    Fail(io::Error),
    /// Run, then flip one bit of what was read (drawn with this value), persistently or not.
    Flip {
        draw: u64,
        persistent: bool,
    },
}

/// What a network write gets from the fault plan.
pub(super) enum NetInjection {
    None,
    Delay(Duration),
    /// Write this many bytes of it, then the connection is reset.
    Reset(usize),
    Stall,
}

/// Which filesystem operation, for phases and counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FsOp {
    /// A read of bytes; `read_only` when the handle was opened read-only.
    Read {
        read_only: bool,
    },
    /// A write or a length change; `grows` when the file gets longer.
    Write {
        grows: bool,
    },
    Sync,
    /// An open that may create the file.
    Create,
    Other,
}

impl FsOp {
    fn classes(self) -> &'static [OpClass] {
        match self {
            FsOp::Read { read_only: true } => &[OpClass::Read, OpClass::ReadOnly, OpClass::Any],
            FsOp::Read { read_only: false } => &[OpClass::Read, OpClass::Any],
            FsOp::Write { grows: true } => &[OpClass::Write, OpClass::Grow, OpClass::Any],
            FsOp::Write { grows: false } => &[OpClass::Write, OpClass::Any],
            FsOp::Sync => &[OpClass::Sync, OpClass::Any],
            FsOp::Create | FsOp::Other => &[OpClass::Any],
        }
    }
}

/// The one backup run under way, as the client host announced it.
struct Run {
    client: String,
    server: String,
    target: PathBuf,
    phase: BackupPhase,
}

/// What the faults of one simulation share: the run under way and its phase, the faults that
/// struck, and how to read the workload's state.
#[derive(Default)]
pub struct FaultWorld {
    run: Option<Run>,
    fired: Vec<Fired>,
    probe: Option<WorkloadProbe>,
    /// Per host struck by a fault, the trace's record count when the effects of its last fault
    /// ended (`u64::MAX` while they last).
    effects_until: BTreeMap<String, u64>,
}

/// Says what the workload is doing (`committing`, `between commits`, `paused`).
pub type WorkloadProbe = Box<dyn Fn() -> &'static str + Send + Sync>;

impl FaultWorld {
    pub fn set_workload_probe(&mut self, probe: WorkloadProbe) {
        self.probe = Some(probe);
    }

    pub fn fired(&self) -> &[Fired] {
        &self.fired
    }

    /// The phase of the run under way, if any.
    pub fn phase(&self) -> Option<BackupPhase> {
        self.run.as_ref().map(|r| r.phase)
    }

    pub(super) fn start_run(&mut self, client: &str, server: &str, target: &Path) {
        self.run = Some(Run {
            client: client.to_string(),
            server: server.to_string(),
            target: target.to_path_buf(),
            phase: BackupPhase::Handshake,
        });
    }

    pub(super) fn end_run(&mut self, trace_index: u64) {
        self.run = None;
        for until in self.effects_until.values_mut() {
            *until = (*until).min(trace_index);
        }
    }

    /// Whether the effects of a fault on `host` lasted until trace record `index` or later.
    pub fn effects_since(&self, host: &str, index: u64) -> bool {
        self.effects_until.get(host).is_some_and(|&u| u >= index)
    }

    /// Whether `host` is the client of the run under way.
    pub(super) fn is_client(&self, host: &str) -> bool {
        self.run.as_ref().is_some_and(|r| r.client == host)
    }

    /// The other end of the backup connection for `host`, during a run.
    pub(super) fn backup_peer(&self, host: &str) -> Option<&str> {
        let r = self.run.as_ref()?;
        if r.client == host {
            Some(&r.server)
        } else if r.server == host {
            Some(&r.client)
        } else {
            None
        }
    }

    /// The phase moves on by what the client said (SIM-38): the lines of BK-9.
    pub(super) fn observe_line(&mut self, text: &str) {
        let Some(run) = &mut self.run else {
            return;
        };
        if text.starts_with("full backup from") || text.starts_with("falling back to a full") {
            run.phase = BackupPhase::FileCopy;
        } else if text.starts_with("copied ") || text.starts_with("incremental backup from") {
            run.phase = BackupPhase::TxStream;
        } else if text.starts_with("verifying:") {
            run.phase = BackupPhase::Verify;
        }
    }

    /// The phase moves on by what the client does to its target (SIM-38).
    pub(super) fn observe_fs(&mut self, host: &str, op: FsOp, path: &Path) {
        let Some(run) = &mut self.run else {
            return;
        };
        if run.client != host || !path.starts_with(&run.target) {
            return;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parent = path.parent().unwrap_or(Path::new(""));
        let record_file = RecordKind::ALL.iter().any(|k| k.file_name() == name);
        let log_file = name
            .strip_prefix("neostore.transaction.db.")
            .is_some_and(|n| n.parse::<u64>().is_ok());
        let in_generation = parent
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| parse_generation(n).is_some());
        let pointer = parent == run.target && name == pointer_temp_name();
        let phase = run.phase;
        run.phase = match op {
            FsOp::Create | FsOp::Write { .. } if pointer => BackupPhase::Switch,
            FsOp::Create if record_file && in_generation && phase == BackupPhase::Handshake => {
                BackupPhase::FileCopy
            }
            FsOp::Write { .. } if log_file && phase == BackupPhase::TxStream => BackupPhase::Apply,
            FsOp::Read { .. } if record_file && phase == BackupPhase::Apply => BackupPhase::Verify,
            _ => phase,
        };
    }

    /// A network read by the client during apply, or during the read back of a run it applied
    /// (BK-27): transactions are arriving again.
    pub(super) fn observe_net_read(&mut self, host: &str) {
        if let Some(run) = &mut self.run {
            if run.client == host && matches!(run.phase, BackupPhase::Apply | BackupPhase::Verify) {
                run.phase = BackupPhase::TxStream;
            }
        }
    }

    fn workload(&self) -> &'static str {
        self.probe.as_ref().map_or("unknown", |p| p())
    }
}

/// One host's faults: what is armed, what the run counted, and the effects that last until the
/// run ends.
pub(super) struct HostFaults {
    plan: Option<FaultSpec>,
    rng: StdRng,
    /// Operations by phase and class during the last (or current) run.
    counts: BTreeMap<(BackupPhase, OpClass), u64>,
    /// A persistent I/O error: operations of this class on this path fail.
    failing: Option<(OpClass, PathBuf)>,
    /// A persistent flipped bit: (file, byte offset, bit).
    flipped: Option<(PathBuf, u64, u8)>,
    /// The disk is full.
    full: bool,
    /// Writes to the backup peer are delayed by up to this long.
    latency: Option<Duration>,
    /// The host's own clock jumps, in milliseconds (SIM-34).
    clock_ms: Arc<AtomicI64>,
}

impl Default for HostFaults {
    fn default() -> Self {
        HostFaults {
            plan: None,
            rng: StdRng::seed_from_u64(0),
            counts: BTreeMap::new(),
            failing: None,
            flipped: None,
            full: false,
            latency: None,
            clock_ms: Arc::new(AtomicI64::new(0)),
        }
    }
}

fn os_error(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl HostFaults {
    pub(super) fn clock(&self) -> Arc<AtomicI64> {
        self.clock_ms.clone()
    }

    pub(super) fn arm(&mut self, spec: FaultSpec) {
        self.rng = StdRng::seed_from_u64(spec.seed);
        self.plan = Some(spec);
    }

    pub(super) fn start_run(&mut self) {
        self.counts.clear();
    }

    /// The run ended: nothing more is injected, and the effects stop.
    pub(super) fn end_run(&mut self) {
        self.plan = None;
        self.failing = None;
        self.flipped = None;
        self.full = false;
        self.latency = None;
    }

    pub(super) fn counts(&self) -> &BTreeMap<(BackupPhase, OpClass), u64> {
        &self.counts
    }

    pub(super) fn is_full(&self) -> bool {
        self.full
    }

    /// Counts an operation of `classes` in `phase`; the armed fault if this one reaches it.
    fn count(&mut self, phase: BackupPhase, classes: &[OpClass]) -> Option<FaultSpec> {
        let mut hit = None;
        for &class in classes {
            let n = self.counts.entry((phase, class)).or_insert(0);
            *n += 1;
            if let Some(spec) = &self.plan {
                if spec.phase == phase && spec.class == class && spec.nth == *n {
                    hit = self.plan.take();
                }
            }
        }
        hit
    }

    /// A filesystem operation of `host` on `path` (SIM-30 .. SIM-34).
    pub(super) fn fs_op(
        &mut self,
        world: &mut FaultWorld,
        host: &str,
        op: FsOp,
        path: &Path,
    ) -> FsInjection {
        world.observe_fs(host, op, path);
        let Some(phase) = world.phase() else {
            return FsInjection::None;
        };
        let fired = self.count(phase, op.classes());
        if let Some(spec) = fired {
            let injection = self.strike(&spec, op, path);
            world.fired.push(Fired {
                kind: spec.kind,
                host: host.to_string(),
                phase,
                path: Some(path.to_path_buf()),
                persistent: spec.persistent,
                trace_index: 0,
                workload: world.workload(),
            });
            return injection;
        }
        if let Some((class, failing)) = &self.failing {
            if failing == path && op.classes().contains(class) {
                return FsInjection::Fail(os_error(EIO));
            }
        }
        if self.full && matches!(op, FsOp::Write { grows: true }) {
            return FsInjection::Fail(os_error(ENOSPC));
        }
        FsInjection::None
    }

    /// What the fault `spec` does to the operation it struck.
    fn strike(&mut self, spec: &FaultSpec, op: FsOp, path: &Path) -> FsInjection {
        let persist = |s: &mut HostFaults| {
            if spec.persistent {
                s.failing = Some((spec.class, path.to_path_buf()));
            }
            FsInjection::Fail(os_error(EIO))
        };
        match spec.kind {
            FaultKind::ReadError | FaultKind::WriteError | FaultKind::SyncError => persist(self),
            FaultKind::Corruption => FsInjection::Flip {
                draw: self.rng.random(),
                persistent: spec.persistent,
            },
            FaultKind::DiskFull => {
                self.full = true;
                if matches!(op, FsOp::Write { grows: true }) {
                    FsInjection::Fail(os_error(ENOSPC))
                } else {
                    FsInjection::None
                }
            }
            FaultKind::ClockForward | FaultKind::ClockBackward => {
                self.jump(spec);
                FsInjection::None
            }
            FaultKind::Latency | FaultKind::Reset | FaultKind::Stall => FsInjection::None,
        }
    }

    fn jump(&mut self, spec: &FaultSpec) {
        let ms = spec.amount.as_millis() as i64;
        let by = if spec.kind == FaultKind::ClockBackward {
            -ms
        } else {
            ms
        };
        self.clock_ms.fetch_add(by, Ordering::SeqCst);
    }

    /// After a read of `buf` at `offset` of `path`: flips the bit a fault chose (SIM-32).
    pub(super) fn after_read(
        &mut self,
        injection: &FsInjection,
        path: &Path,
        offset: u64,
        buf: &mut [u8],
    ) {
        if let FsInjection::Flip { draw, persistent } = injection {
            if !buf.is_empty() {
                let at = (draw % buf.len() as u64) as usize;
                let bit = ((draw >> 32) % 8) as u8;
                if *persistent {
                    self.flipped = Some((path.to_path_buf(), offset + at as u64, bit));
                } else {
                    buf[at] ^= 1 << bit;
                }
            }
        }
        if let Some((p, at, bit)) = &self.flipped {
            if p == path && *at >= offset && *at < offset + buf.len() as u64 {
                buf[(*at - offset) as usize] ^= 1 << bit;
            }
        }
    }

    /// A network operation of `host` to `peer` (a write of `len` bytes, or a read: `None`)
    /// (SIM-34, SIM-35).
    pub(super) fn net_op(
        &mut self,
        world: &mut FaultWorld,
        host: &str,
        peer: IpAddr,
        write: Option<usize>,
    ) -> NetInjection {
        let to_peer = world
            .backup_peer(host)
            .is_some_and(|p| turmoil::lookup(p) == peer);
        if write.is_none() && to_peer {
            world.observe_net_read(host);
        }
        let Some(phase) = world.phase() else {
            return NetInjection::None;
        };
        let classes: &[OpClass] = match write {
            Some(n) if n > 0 && to_peer => &[OpClass::NetWrite, OpClass::Any],
            _ => &[OpClass::Any],
        };
        let fired = self.count(phase, classes);
        let mut injection = NetInjection::None;
        if let Some(spec) = fired {
            injection = match spec.kind {
                FaultKind::ClockForward | FaultKind::ClockBackward => {
                    self.jump(&spec);
                    NetInjection::None
                }
                FaultKind::Latency => {
                    self.latency = Some(spec.amount);
                    NetInjection::None
                }
                FaultKind::Reset => {
                    NetInjection::Reset(self.rng.random_range(0..write.unwrap_or(1).max(1)))
                }
                FaultKind::Stall => NetInjection::Stall,
                // Filesystem faults are never armed on network classes.
                _ => NetInjection::None,
            };
            world.fired.push(Fired {
                kind: spec.kind,
                host: host.to_string(),
                phase,
                path: None,
                persistent: spec.persistent,
                trace_index: 0,
                workload: world.workload(),
            });
        }
        if let (Some(max), Some(n)) = (self.latency, write) {
            if n > 0 && to_peer && matches!(injection, NetInjection::None) {
                let ms = self.rng.random_range(0..=max.as_millis() as u64);
                injection = NetInjection::Delay(Duration::from_millis(ms));
            }
        }
        injection
    }
}

impl FaultWorld {
    /// Stamps the last fault with the trace's record count once it is recorded; its effects
    /// last until the run ends.
    pub(super) fn stamp_last(&mut self, trace_index: u64) {
        if let Some(f) = self.fired.last_mut() {
            f.trace_index = trace_index;
            self.effects_until.insert(f.host.clone(), u64::MAX);
        }
    }

    pub(super) fn fired_count(&self) -> usize {
        self.fired.len()
    }
}

/// The client's observer in the simulations: keeps the lines, as [`online_backup::backup::client::Lines`]
/// does, and tells the world each one, which moves the run's phase on (SIM-38).
pub struct PhaseLines {
    pub lines: Vec<String>,
    world: Arc<Mutex<FaultWorld>>,
}

impl PhaseLines {
    pub(super) fn new(world: Arc<Mutex<FaultWorld>>) -> PhaseLines {
        PhaseLines {
            lines: Vec::new(),
            world,
        }
    }
}

impl Observer for PhaseLines {
    fn line(&mut self, text: &str) {
        self.world.lock().unwrap().observe_line(text);
        self.lines.push(text.to_string());
    }

    fn progress(&mut self, _phase: Phase, _done: u64, _total: u64) {}

    fn server(&mut self, _addr: &str, _server: &ServerInfo) {}

    fn existing(&mut self, _backup: &BackupFacts) {}
}
