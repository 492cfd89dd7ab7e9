//! The simulated seams: `SimFs` on turmoil's simulated filesystem, `SimNet` on turmoil's
//! simulated TCP, `SimClock` on turmoil's simulated time, and the per-simulation [`SimWorld`]
//! that ties them to one trace and holds each host's lock table and fault plan.
//!
//! Everything here runs inside turmoil hosts (turmoil's filesystem and network panic outside
//! one), on the simulation's single thread. Every operation is recorded in the trace (SIM-6).
//!
//! One file a seam: `fs.rs` (and how it corrects turmoil's filesystem, SIM-9), `net.rs`,
//! `clock.rs`, `blocking.rs` (blocking work runs inline), `crypto.rs` (TLS's randomness and
//! key exchange from the seed, IO-11), `objects.rs` (in-memory object stores), `faults.rs` (the faults a scenario arms on a host and
//! the phase of the backup run they strike, SIM-30 .. SIM-38), and `world.rs`, what they share:
//! the trace, the clock offset, each host's power (SIM-7) and faults.

use std::io;

mod blocking;
mod clock;
mod crypto;
mod faults;
mod fs;
mod net;
mod objects;
mod world;

pub use faults::{BackupPhase, FaultKind, FaultSpec, Fired, OpClass};
pub use objects::{ObjectFaultCounts, ObjectFaults};
pub use world::{sim_env, DiskConfig, SimWorld};

/// How an operation's result reads in the trace (SIM-6).
trait Shown {
    fn shown(&self) -> String;
}

impl Shown for () {
    fn shown(&self) -> String {
        "ok".to_string()
    }
}

impl Shown for u64 {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for usize {
    fn shown(&self) -> String {
        self.to_string()
    }
}

/// An operation's outcome for the trace: its result shown, or `err <kind>` (error messages are
/// left out: only kinds are stable).
fn shown<T: Shown>(r: &io::Result<T>) -> String {
    match r {
        Ok(v) => v.shown(),
        Err(e) => format!("err {:?}", e.kind()),
    }
}
