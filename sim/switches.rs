//! The fault switches' test (SIM-23): each switch of `online_backup::faults` breaks one thing a
//! backup's correctness rests on; this runs the simulations with it on, seed after seed, and
//! fails unless some seed of the scenarios named for it fails within its budget. A switch no
//! simulation catches is a checker that would not notice the bug it stands for.

use online_backup::faults::{self, Switch};

use crate::runner::{run_seed, Scenario};
use crate::scenarios::{backup_chain, backup_faults, server_crash, store_crash};

/// The scenarios that should catch `switch`, and the most seeds of each to try.
fn where_caught(switch: Switch) -> (&'static [Scenario], u64) {
    const BACKUPS: &[Scenario] = &[backup_faults::SCENARIO, backup_chain::SCENARIO];
    const COMMITS: &[Scenario] = &[store_crash::SCENARIO, server_crash::SCENARIO];
    match switch {
        Switch::AckBeforeFsync => (COMMITS, 40),
        _ => (BACKUPS, 60),
    }
}

/// Where a switch was caught: the scenario, the seed and why it failed.
type Caught = Option<(&'static str, u64, String)>;

/// The first seed of `scenarios` (tried in turn, seed by seed) that fails with `switch` on, and
/// why; `None` when none fails within `budget` seeds each.
fn first_caught(switch: Switch, scenarios: &[Scenario], budget: u64) -> Caught {
    for seed in 0..budget {
        for scenario in scenarios {
            faults::set(Some(switch));
            let (report, _) = run_seed(scenario, seed, false);
            faults::set(None);
            if let Some(why) = report.failure {
                return Some((scenario.name, seed, why));
            }
        }
    }
    None
}

/// SIM-23: every fault switch is caught by the simulations within its seed budget. The
/// switches run on threads of their own (a switch is per thread, and so per simulation).
#[test]
fn sim_23_every_fault_switch_is_caught() {
    let results: Vec<(Switch, Caught)> = std::thread::scope(|s| {
        let handles: Vec<_> = Switch::ALL
            .into_iter()
            .map(|switch| {
                s.spawn(move || {
                    let (scenarios, budget) = where_caught(switch);
                    (switch, first_caught(switch, scenarios, budget))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut missed = Vec::new();
    for (switch, caught) in results {
        match caught {
            Some((scenario, seed, why)) => {
                let why: String = why.chars().take(160).collect();
                println!("switch {switch:?}: caught by {scenario} seed {seed}: {why}");
            }
            None => missed.push(switch),
        }
    }
    assert!(
        missed.is_empty(),
        "SIM-23: no simulation caught the fault switches {missed:?} within their seed budgets"
    );
}
