//! The deterministic simulations (turmoil): the product's own code, run on simulated hosts whose
//! disks lose power, decided entirely by a seed. `spec/simulation.md` holds the rules (SIM-*).
//!
//! Layout, one sentence a module:
//! - [`seams`]: the simulated `Fs`, `Net` and `Clock` (on turmoil's filesystem, TCP and time),
//!   one file each, and [`seams::SimWorld`], the per-simulation state they share (trace, clock
//!   offset, each host's filesystem state and planned power loss).
//! - [`trace`]: the ordered record of a run and its hash, fed by the seams and, for commits, by a
//!   `tracing` layer.
//! - [`coverage`]: which faults struck in which phase of a backup run, counted over the seeds.
//! - [`runner`]: scenarios, seeds from the environment, one simulation per seed, the replay
//!   command on failure.
//! - [`scenarios`]: the registered scenarios; add one by writing a module with a `Scenario`
//!   constant and listing it in `scenarios::SCENARIOS`.
//! - [`kit`]: the test kit the simulations share with `tests/` (`tests/kit/`): the reference
//!   graph model scenarios check the product against, and the HTTP client hosts use to talk to
//!   the server's API over their `Net` seam.
//! - [`workload`]: random transactions over the model, from a scenario's generator.
//! - [`server_sim`]: what the server scenarios share (addresses, configuration, waiting).
//! - [`switches`]: the fault switches' test: each switch that breaks the product is caught.
//! - [`seam_tests`]: the simulated seams' own tests (durability, locks, clock, network).
//! - [`kit_tests`]: the test kit's own tests.
//! - [`rules`]: source scans for the determinism rules (`select!` biased, no threads, no hash
//!   maps).
//!
//! Running: `cargo test --test sim` runs every scenario over its default seeds; `SIM_SEEDS`,
//! `SIM_SEED`, `SIM_SEED_START`, `SIM_SCENARIO`, `SIM_TRACE` and `SIM_LOG` are described in
//! [`runner`]. A failure prints the one command that replays it.

/// SIM-3: without `--cfg tokio_unstable` turmoil cannot seed tokio's internal randomness, so
/// the simulations refuse to build.
mod sim_3_needs_tokio_unstable {
    #![allow(unexpected_cfgs)]
    #[cfg(not(tokio_unstable))]
    compile_error!(
        "the simulations need `--cfg tokio_unstable` (set in .cargo/config.toml; a RUSTFLAGS \
         variable replaces it): see spec/simulation.md, SIM-3"
    );
}

mod coverage;
#[path = "../tests/kit/mod.rs"]
mod kit;
mod kit_tests;
mod rules;
mod runner;
mod scenarios;
mod seam_tests;
mod seams;
mod server_sim;
mod switches;
mod trace;
mod workload;

use std::collections::BTreeSet;

use runner::{replay_command, run_all, run_seed, run_with, selected, SeedChoice};
use scenarios::SCENARIOS;

/// How many seeds the determinism check runs twice (fewer when `SIM_SEEDS` asks for fewer, as
/// the mutation runs do).
const DETERMINISM_SEEDS: u64 = 20;

/// Every registered scenario over its seeds (SIM-13): `store_crash` checks SIM-14, `log_crash`
/// SIM-15, `server_crash` SIM-16, `retention_time` SIM-17, `backup_chain` SIM-18,
/// `backup_faults` SIM-19 and `backup_io_faults` SIM-30 .. SIM-37, with SIM-20 and SIM-21
/// checked after every backup, and the coverage tables of the scenarios that count them printed
/// and checked (SIM-38). A failure prints its replay command (SIM-5).
#[test]
fn every_scenario_over_seeds() {
    run_all(SCENARIOS);
}

/// SIM-1: the same seed gives the same run, record for record; SIM-4: different seeds give
/// different runs (the seed reaches the simulation).
#[test]
fn same_seed_same_trace() {
    let choice = SeedChoice::from_env();
    let count = choice
        .count
        .map_or(DETERMINISM_SEEDS, |n| n.clamp(2, DETERMINISM_SEEDS));
    let seeds = SeedChoice {
        count: Some(count),
        ..choice
    }
    .seeds(count);
    for scenario in selected(SCENARIOS) {
        let mut hashes = BTreeSet::new();
        for &seed in &seeds {
            let (a, trace_a) = run_seed(scenario, seed, true);
            let (b, trace_b) = run_seed(scenario, seed, true);
            if a != b {
                let (la, lb) = (trace_a.all().unwrap(), trace_b.all().unwrap());
                let at = la.iter().zip(&lb).position(|(x, y)| x != y);
                let diff = match at {
                    Some(i) => format!(
                        "first difference at record {i}:\n  run 1: {}\n  run 2: {}",
                        la[i], lb[i]
                    ),
                    None => format!("one run has more records ({} vs {})", la.len(), lb.len()),
                };
                panic!(
                    "SIM-1, IO-11: simulation {} is not deterministic at seed {seed} (TLS's bytes are in the trace too): {a:?} vs {b:?}\n{diff}\nreplay: {}",
                    scenario.name,
                    replay_command(scenario.name, seed)
                );
            }
            hashes.insert(a.trace_hash);
        }
        if seeds.len() > 1 {
            assert!(
                hashes.len() > 1,
                "SIM-4: simulation {}: {} seeds gave one trace; the seed does not reach the run",
                scenario.name,
                seeds.len()
            );
        }
        println!(
            "sim {}: {} seeds twice, same traces ({} distinct)",
            scenario.name,
            seeds.len(),
            hashes.len()
        );
    }
}

/// MF-6, MF-8: the client loses power before each of the first operations on the manifest of
/// a full and of an incremental backup; after each the live generation matches its manifest
/// (what an unfinished run declared pending aside) and checks, and the next run picks up. The
/// losses must strike: in every full backup's manifest write, and in the incremental ones.
#[test]
fn mf_6_mf_8_power_loss_during_a_manifest_update_leaves_a_matching_manifest() {
    let scenario = &scenarios::backup_faults::SCENARIO;
    for seed in 0..2 {
        let mut struck = 0;
        let (report, trace) = run_with(scenario, seed, false, |ctx| {
            struck = scenarios::backup_faults::manifest_power_losses(ctx)?;
            Ok(())
        });
        if let Some(failure) = &report.failure {
            panic!(
                "MF-6, MF-8: seed {seed}: {failure}\n{}",
                trace.tail().join("\n")
            );
        }
        let runs = 2 * scenarios::backup_faults::MANIFEST_OPS;
        assert!(
            struck >= runs * 3 / 4,
            "MF-6, MF-8: seed {seed}: only {struck} of {runs} power losses aimed at the manifest struck"
        );
    }
}

/// SIM-13: scenario names are unique (the replay command names one), and the crash scenario
/// runs at least 200 seeds by default.
#[test]
fn sim_13_scenario_registry() {
    let names: BTreeSet<_> = SCENARIOS.iter().map(|s| s.name).collect();
    assert_eq!(names.len(), SCENARIOS.len(), "duplicate scenario names");
    let store_crash = SCENARIOS
        .iter()
        .find(|s| s.name == "store_crash")
        .expect("store_crash is registered");
    assert!(store_crash.default_seeds >= 200);
    for s in SCENARIOS {
        assert!(!s.about.is_empty() && s.default_seeds > 0, "{}", s.name);
    }
}

/// SIM-39: CI runs 1,000 seeds of every scenario, and seed ranges split a long run over
/// processes exactly: disjoint ranges together are the seeds of one run over their union.
#[test]
fn sim_39_ci_runs_a_thousand_seeds_and_ranges_split_a_run() {
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run"))
        .expect("SIM-39: .ci/run is readable");
    let default = ci
        .lines()
        .find_map(|l| l.trim().strip_prefix("export SIM_SEEDS=\"${SIM_SEEDS:-"))
        .and_then(|rest| rest.strip_suffix("}\""))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        default.is_some_and(|n| n >= 1000),
        "SIM-39: .ci/run must export SIM_SEEDS of at least 1000 by default, has {default:?}"
    );
    let whole = SeedChoice {
        count: Some(100_000),
        ..SeedChoice::default()
    }
    .seeds(50);
    let mut halves = SeedChoice {
        count: Some(50_000),
        ..SeedChoice::default()
    }
    .seeds(50);
    halves.extend(
        SeedChoice {
            start: Some(50_000),
            count: Some(50_000),
            ..SeedChoice::default()
        }
        .seeds(50),
    );
    assert_eq!(
        halves, whole,
        "SIM-39: two ranges must run exactly the seeds of the whole"
    );
}
