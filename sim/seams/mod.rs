//! The simulated seams: `SimFs` on turmoil's simulated filesystem, `SimNet` on turmoil's
//! simulated TCP, `SimClock` on turmoil's simulated time, and the per-simulation [`SimWorld`]
//! that ties them to one trace and holds each host's lock table and fault plan.
//!
//! Everything here runs inside turmoil hosts (turmoil's filesystem and network panic outside
//! one), on the simulation's single thread. Every operation is recorded in the trace (SIM-6).
//!
//! One file a seam: `fs.rs` (and how it corrects turmoil's filesystem, SIM-9), `net.rs`,
//! `clock.rs`, `blocking.rs` (blocking work runs inline), and `world.rs`, what they share: the
//! trace, the clock offset and each host's power (SIM-7).

use std::io;

mod blocking;
mod clock;
mod fs;
mod net;
mod world;

pub use world::{sim_env, DiskConfig, SimWorld};

/// `Ok`/`err <kind>` for the trace (error messages are left out: only kinds are stable).
fn outcome<T>(r: &io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("err {:?}", e.kind()),
    }
}
