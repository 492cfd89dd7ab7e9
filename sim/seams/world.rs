//! What every simulated seam of one simulation shares ([`SimWorld`]): the trace, the clock
//! offset, the disk configuration and, per host ([`HostShared`]), its filesystem's state and its
//! power: a planned power loss makes the host's operations fail from then on (SIM-7).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use online_backup::io::Env;

use super::blocking::Inline;
use super::clock::SimClock;
use super::crypto::seeded_provider;
use super::faults::{
    BackupPhase, FaultSpec, FaultWorld, Fired, FsInjection, FsOp, HostFaults, NetInjection,
    OpClass, PhaseLines, WorkloadProbe,
};
use super::fs::{FsState, SimFs};
use super::net::SimNet;
use super::objects::SimObjects;
use crate::trace::Trace;

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
    /// Each blocking job (a commit group, a chunk read, a checkpoint) takes up to this many
    /// milliseconds of simulated time (0: none), so that work on a host interleaves (SIM-23).
    pub blocking_latency_ms: u64,
}

impl DiskConfig {
    pub const DEFAULT: DiskConfig = DiskConfig {
        capacity: 1 << 30,
        torn_write_block: Some(512),
        random_sync_probability: 0.05,
        blocking_latency_ms: 0,
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
    /// The simulation's seed, for the draws of blocking work's latency.
    seed: u64,
    /// TLS's cryptography, its randomness from the seed (IO-11).
    crypto: Arc<rustls::crypto::CryptoProvider>,
    /// The backup run under way and the faults that struck (SIM-36, SIM-38).
    faults: Arc<Mutex<FaultWorld>>,
    /// The object stores every host reaches (spec/objects.md).
    objects: Arc<SimObjects>,
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
    pub fn new(trace: Trace, epoch: SystemTime, disk: DiskConfig, seed: u64) -> SimWorld {
        SimWorld(Arc::new(WorldInner {
            trace,
            epoch,
            disk,
            clock_offset_ms: Arc::new(AtomicU64::new(0)),
            hosts: Mutex::new(BTreeMap::new()),
            crypto: seeded_provider(seed),
            seed,
            faults: Arc::new(Mutex::new(FaultWorld::default())),
            objects: Arc::new(SimObjects::new(seed)),
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
                    power: Mutex::new(Power::default()),
                    fs: Mutex::new(FsState::default()),
                    streams: Mutex::new(Streams::default()),
                    faults: Mutex::new(HostFaults::default()),
                    fault_world: self.0.faults.clone(),
                })
            })
            .clone()
    }

    /// The filesystem of host `name`. Every `SimFs` of one host shares its lock table.
    pub fn fs(&self, name: &str) -> SimFs {
        SimFs::new(self.host(name))
    }

    pub fn net(&self, name: &str) -> SimNet {
        SimNet::new(self.host(name))
    }

    /// The wall clock every host shares, without any host's own jumps (the driver's).
    pub fn clock(&self) -> SimClock {
        SimClock::new(
            self.0.epoch,
            self.0.clock_offset_ms.clone(),
            None,
            self.0.trace.clone(),
        )
    }

    /// The wall clock of host `name`: the shared one plus the host's own jumps (SIM-34).
    pub fn host_clock(&self, name: &str) -> SimClock {
        let own = self.host(name).faults.lock().unwrap().clock();
        SimClock::new(
            self.0.epoch,
            self.0.clock_offset_ms.clone(),
            Some(own),
            self.0.trace.clone(),
        )
    }

    /// The seams of host `name`. Called when its software starts: the streams its last crash
    /// dropped are dropped now, in the order they were made.
    pub fn env(&self, name: &str) -> Env {
        self.host(name).drop_buried();
        Env {
            fs: Arc::new(self.fs(name)),
            net: Arc::new(self.net(name)),
            clock: Arc::new(self.host_clock(name)),
            blocking: Arc::new(if self.0.disk.blocking_latency_ms == 0 {
                Inline::default()
            } else {
                Inline::with_latency(
                    self.0.disk.blocking_latency_ms,
                    self.0.seed ^ crate::trace::fnv64(name.as_bytes()),
                )
            }),
            crypto: self.0.crypto.clone(),
            objects: self.0.objects.clone(),
        }
    }

    /// The object stores every host reaches, and the faults armed on them (SIM-40).
    pub fn objects(&self) -> &SimObjects {
        &self.0.objects
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
        let mut p = host.power.lock().unwrap();
        p.power_loss_at = Some(p.mutating_ops + n.max(1));
    }

    /// Plans a power loss of host `name` like [`SimWorld::power_loss_before_op`], before its
    /// `n`-th mutating filesystem operation from now on a path whose file name contains
    /// `fragment` (1 = the next one): aimed at the writes of one file, wherever they fall.
    pub fn power_loss_before_op_on(&self, name: &str, fragment: &str, n: u64) {
        let host = self.host(name);
        let mut p = host.power.lock().unwrap();
        p.power_loss_on = Some((fragment.to_string(), n.max(1)));
    }

    /// Cancels a power loss of host `name` planned with [`SimWorld::power_loss_before_op`] (or
    /// `_on`) that has not struck yet (a host that already lost power stays down).
    pub fn cancel_power_loss(&self, name: &str) {
        let host = self.host(name);
        let mut p = host.power.lock().unwrap();
        p.power_loss_at = None;
        p.power_loss_on = None;
    }

    /// Whether a power loss of host `name` is planned and has not struck yet.
    pub fn power_loss_planned(&self, name: &str) -> bool {
        let host = self.host(name);
        let p = host.power.lock().unwrap();
        p.power_loss_at.is_some() || p.power_loss_on.is_some()
    }

    /// Whether host `name` has lost power and awaits the driver's crash.
    pub fn is_down(&self, name: &str) -> bool {
        self.host(name).power.lock().unwrap().down
    }

    /// How many mutating filesystem operations host `name` has attempted so far.
    pub fn mutating_ops(&self, name: &str) -> u64 {
        self.host(name).power.lock().unwrap().mutating_ops
    }

    /// Called by the driver around its crash of host `name`: while `crashing`, the host's dropped
    /// streams are kept (see `TracedStream`'s `Drop`).
    pub fn set_crashing(&self, name: &str, crashing: bool) {
        self.host(name).streams.lock().unwrap().crashing = crashing;
    }

    /// Called by the driver after it crashed host `name`: the host's power is back, no loss is
    /// planned, and its lock table is empty (IO-3).
    pub fn host_crashed(&self, name: &str) {
        let host = self.host(name);
        let mut p = host.power.lock().unwrap();
        p.down = false;
        p.power_loss_at = None;
        p.power_loss_on = None;
        host.fs.lock().unwrap().power_lost();
        drop(p);
        if self.0.faults.lock().unwrap().is_client(name) {
            self.backup_ended();
        }
    }

    /// Arms `spec` on host `name` for the next backup run (SIM-36).
    pub fn arm_fault(&self, name: &str, spec: FaultSpec) {
        self.0
            .trace
            .record("driver", &format!("arm fault on {name}: {spec:?}"));
        self.host(name).faults.lock().unwrap().arm(spec);
    }

    /// The client host `client` starts a backup run into `target` from `server` (SIM-38):
    /// every host counts its operations afresh, by phase.
    pub fn backup_started(&self, client: &str, server: &str, target: &Path) {
        let hosts: Vec<_> = self.0.hosts.lock().unwrap().values().cloned().collect();
        for h in hosts {
            h.faults.lock().unwrap().start_run();
        }
        self.0
            .faults
            .lock()
            .unwrap()
            .start_run(client, server, target);
    }

    /// The backup run ended: no fault is armed any more and their effects stop (SIM-36).
    pub fn backup_ended(&self) {
        let hosts: Vec<_> = self.0.hosts.lock().unwrap().values().cloned().collect();
        for h in hosts {
            h.faults.lock().unwrap().end_run();
        }
        let now = self.0.trace.events();
        self.0.faults.lock().unwrap().end_run(now);
    }

    /// The client's observer: keeps its lines and moves the run's phase on (SIM-38).
    pub fn phase_lines(&self) -> PhaseLines {
        PhaseLines::new(self.0.faults.clone())
    }

    /// The phase of the backup run under way.
    pub fn phase(&self) -> Option<BackupPhase> {
        self.0.faults.lock().unwrap().phase()
    }

    /// Every fault that struck so far, in order.
    pub fn fired(&self) -> Vec<Fired> {
        self.0.faults.lock().unwrap().fired().to_vec()
    }

    /// Whether the effects of a fault on host `name` lasted until trace record `index` (a
    /// count of records, [`crate::trace::Trace::events`]) or later.
    pub fn fault_effects_since(&self, name: &str, index: u64) -> bool {
        self.0.faults.lock().unwrap().effects_since(name, index)
    }

    /// What the workload is doing when a fault strikes, as `probe` says (SIM-38).
    pub fn set_workload_probe(&self, probe: WorkloadProbe) {
        self.0.faults.lock().unwrap().set_workload_probe(probe);
    }

    /// The operations each host made during the last backup run, by phase and class (SIM-36):
    /// how a scenario aims a fault.
    pub fn run_counts(&self) -> BTreeMap<(String, BackupPhase, OpClass), u64> {
        let hosts: Vec<_> = self
            .0
            .hosts
            .lock()
            .unwrap()
            .iter()
            .map(|(n, h)| (n.clone(), h.clone()))
            .collect();
        let mut out = BTreeMap::new();
        for (name, h) in hosts {
            for (&(phase, class), &n) in h.faults.lock().unwrap().counts() {
                out.insert((name.clone(), phase, class), n);
            }
        }
        out
    }
}

/// The seams of host `host` in simulation `world`.
pub fn sim_env(host: &str, world: &SimWorld) -> Env {
    world.env(host)
}

/// What every seam of one host shares.
pub(super) struct HostShared {
    pub(super) name: String,
    trace: Trace,
    /// The disk's size in bytes.
    pub(super) capacity: u64,
    power: Mutex<Power>,
    /// What the host's filesystem keeps beside turmoil's files.
    pub(super) fs: Mutex<FsState>,
    /// The host's network streams: how many were made, whether the host is being crashed, and
    /// the streams a crash dropped, kept until it starts again (see `TracedStream`'s `Drop`).
    streams: Mutex<Streams>,
    /// The faults armed on this host and their effects (SIM-30 .. SIM-36).
    faults: Mutex<HostFaults>,
    fault_world: Arc<Mutex<FaultWorld>>,
}

#[derive(Default)]
struct Streams {
    made: u64,
    crashing: bool,
    buried: BTreeMap<u64, turmoil::net::TcpStream>,
}

/// Whether a host has power, and when it loses it (SIM-7).
#[derive(Default)]
struct Power {
    mutating_ops: u64,
    power_loss_at: Option<u64>,
    /// A power loss before the n-th mutating operation on a file whose name contains the
    /// fragment: the fragment, and how many such operations are left until it (1 = the next).
    power_loss_on: Option<(String, u64)>,
    down: bool,
}

pub(super) fn power_loss_error(host: &str) -> io::Error {
    io::Error::other(format!("simulated power loss: host {host} is down"))
}

impl HostShared {
    /// The number of the next stream made on this host.
    pub(super) fn next_stream(&self) -> u64 {
        let mut s = self.streams.lock().unwrap();
        s.made += 1;
        s.made
    }

    /// Keeps `stream` (number `seq`) while the host is being crashed; drops it otherwise.
    pub(super) fn bury(&self, seq: u64, stream: turmoil::net::TcpStream) {
        let mut s = self.streams.lock().unwrap();
        if s.crashing {
            s.buried.insert(seq, stream);
        } else {
            drop(s);
            drop(stream);
        }
    }

    /// Drops the streams the last crash kept, in the order they were made.
    fn drop_buried(&self) {
        let buried = std::mem::take(&mut self.streams.lock().unwrap().buried);
        for (_, stream) in buried {
            drop(stream);
        }
    }

    pub(super) fn record(&self, event: &str) {
        self.trace.record(&self.name, event);
    }

    /// Admits one operation, or fails it because the host is down (SIM-7). A mutating operation
    /// counts towards a planned power loss.
    pub(super) fn begin(&self, mutating: bool) -> io::Result<()> {
        self.begin_on(mutating, None)
    }

    /// [`HostShared::begin`] for an operation on `path`, which counts towards a power loss aimed
    /// at its file name.
    pub(super) fn begin_on(
        &self,
        mutating: bool,
        path: Option<&std::path::Path>,
    ) -> io::Result<()> {
        let mut p = self.power.lock().unwrap();
        if p.down {
            return Err(power_loss_error(&self.name));
        }
        if mutating {
            p.mutating_ops += 1;
            let named = path
                .and_then(|path| path.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            let aimed = match (&mut p.power_loss_on, named) {
                (Some((fragment, left)), Some(name)) if name.contains(fragment.as_str()) => {
                    *left -= 1;
                    *left == 0
                }
                _ => false,
            };
            if aimed {
                p.power_loss_on = None;
            }
            if aimed || p.power_loss_at.is_some_and(|at| p.mutating_ops >= at) {
                p.down = true;
                p.power_loss_at = None;
                drop(p);
                self.record("power lost");
                return Err(power_loss_error(&self.name));
            }
        }
        Ok(())
    }

    pub(super) fn is_down(&self) -> bool {
        self.power.lock().unwrap().down
    }

    /// Records the fault that just struck, if one did, and stamps it with its place in the
    /// trace.
    fn record_fired(&self, fw: &mut FaultWorld, before: usize) {
        if fw.fired_count() > before {
            let f = fw.fired().last().expect("a fault struck").clone();
            let at = f.path.map(|p| format!(" on {}", p.display()));
            self.record(&format!(
                "fault {:?} struck in {} ({}){}",
                f.kind,
                f.phase.name(),
                f.workload,
                at.unwrap_or_default()
            ));
            fw.stamp_last(self.trace.events());
        }
    }

    /// What the fault plan does to filesystem operation `op` on `path` (SIM-30 .. SIM-34).
    pub(super) fn fs_fault(&self, op: FsOp, path: &Path) -> FsInjection {
        let mut hf = self.faults.lock().unwrap();
        let mut fw = self.fault_world.lock().unwrap();
        let before = fw.fired_count();
        let injection = hf.fs_op(&mut fw, &self.name, op, path);
        self.record_fired(&mut fw, before);
        injection
    }

    /// Flips what a fault says in `buf`, just read at `offset` of `path` (SIM-32).
    pub(super) fn after_read(
        &self,
        injection: &FsInjection,
        path: &Path,
        offset: u64,
        buf: &mut [u8],
    ) {
        self.faults
            .lock()
            .unwrap()
            .after_read(injection, path, offset, buf);
    }

    /// What the fault plan does to a network write of `len` bytes to `peer`, or a read
    /// (`None`) (SIM-34, SIM-35).
    pub(super) fn net_fault(&self, peer: IpAddr, write: Option<usize>) -> NetInjection {
        let mut hf = self.faults.lock().unwrap();
        let mut fw = self.fault_world.lock().unwrap();
        let before = fw.fired_count();
        let injection = hf.net_op(&mut fw, &self.name, peer, write);
        self.record_fired(&mut fw, before);
        injection
    }

    /// Whether this host's disk is full (SIM-33).
    pub(super) fn disk_full(&self) -> bool {
        self.faults.lock().unwrap().is_full()
    }
}
