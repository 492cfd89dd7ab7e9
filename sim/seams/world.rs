//! What every simulated seam of one simulation shares ([`SimWorld`]): the trace, the clock
//! offset, the disk configuration and, per host ([`HostShared`]), its filesystem's state and its
//! power: a planned power loss makes the host's operations fail from then on (SIM-7).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use online_backup::io::Env;

use super::blocking::Inline;
use super::clock::SimClock;
use super::crypto::seeded_provider;
use super::fs::{FsState, SimFs};
use super::net::SimNet;
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
    /// TLS's cryptography, its randomness from the seed (IO-11).
    crypto: Arc<rustls::crypto::CryptoProvider>,
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

    /// The wall clock, the same on every host of this simulation.
    pub fn clock(&self) -> SimClock {
        SimClock::new(
            self.0.epoch,
            self.0.clock_offset_ms.clone(),
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
            clock: Arc::new(self.clock()),
            blocking: Arc::new(Inline),
            crypto: self.0.crypto.clone(),
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
        let mut p = host.power.lock().unwrap();
        p.power_loss_at = Some(p.mutating_ops + n.max(1));
    }

    /// Cancels a power loss of host `name` planned with [`SimWorld::power_loss_before_op`] that
    /// has not struck yet (a host that already lost power stays down).
    pub fn cancel_power_loss(&self, name: &str) {
        self.host(name).power.lock().unwrap().power_loss_at = None;
    }

    /// Whether a power loss of host `name` is planned and has not struck yet.
    pub fn power_loss_planned(&self, name: &str) -> bool {
        self.host(name)
            .power
            .lock()
            .unwrap()
            .power_loss_at
            .is_some()
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
        host.fs.lock().unwrap().power_lost();
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
        let mut p = self.power.lock().unwrap();
        if p.down {
            return Err(power_loss_error(&self.name));
        }
        if mutating {
            p.mutating_ops += 1;
            if p.power_loss_at.is_some_and(|at| p.mutating_ops >= at) {
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
}
