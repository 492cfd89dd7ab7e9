//! The registered scenarios. A scenario is a [`Scenario`] constant in its own module, listed in
//! [`SCENARIOS`]; the runner and both simulation tests pick it up from there.
//!
//! `backup_world` is no scenario: the hosts, driver handle and invariant checker the backup
//! scenarios (`backup_chain`, `backup_faults`, `backup_io_faults`, `backup_tls`, `backup_objects`) share. Nor is `crash_rounds`: the driver of the
//! single-host crash scenarios (`log_crash`, `store_crash`).

use crate::runner::Scenario;

pub mod backup_chain;
pub mod backup_faults;
pub mod backup_hosts;
pub mod backup_io_faults;
pub mod backup_judge;
pub mod backup_objects;
pub mod backup_tls;
pub mod backup_world;
pub mod crash_rounds;
pub mod log_crash;
pub mod retention_time;
pub mod server_crash;
pub mod store_crash;

/// Every scenario, in the order the tests run them.
pub const SCENARIOS: &[Scenario] = &[
    log_crash::SCENARIO,
    store_crash::SCENARIO,
    server_crash::SCENARIO,
    retention_time::SCENARIO,
    backup_chain::SCENARIO,
    backup_faults::SCENARIO,
    backup_io_faults::SCENARIO,
    backup_tls::SCENARIO,
    backup_objects::SCENARIO,
];
