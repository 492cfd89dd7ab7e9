//! The simulation runner: which scenarios and seeds to run (from the environment), one turmoil
//! simulation per seed, the trace hash of each run, and the replay command on failure.
//!
//! Environment (SIM-5):
//! - `SIM_SEEDS=N`: run seeds `SIM_SEED_START .. SIM_SEED_START + N` of every scenario (default:
//!   the scenario's own `default_seeds`).
//! - `SIM_SEED_START=S`: the first seed (default 0), to explore further seeds in long runs.
//! - `SIM_SEED=S`: run only seed `S`.
//! - `SIM_SCENARIO=NAME`: run only the scenario named `NAME`, or, if none is, every scenario
//!   whose name contains `NAME`.
//! - `SIM_TRACE=1`: print every trace record as it happens.
//! - `SIM_LOG=<EnvFilter directives>`: print the product's `tracing` logs (e.g. `debug`).

use std::error::Error;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use online_backup::io::Env;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::coverage::{Coverage, TableSpec};
use crate::seams::{sim_env, DiskConfig, SimWorld};
use crate::trace::{self, Trace};

/// The wall-clock time every simulation starts at, in seconds since the Unix epoch:
/// 2024-01-01T00:00:00Z (SIM-4).
pub const EPOCH_SECS: u64 = 1_704_067_200;

/// [`EPOCH_SECS`] as a time.
pub fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(EPOCH_SECS)
}

/// Mixed into the seed for the scenario's own random generator, so it does not replay
/// turmoil's sequence.
const SCENARIO_RNG_SALT: u64 = 0x5eed_0f5c_e7a2_1005;

/// The name the driver's own trace records carry.
pub const DRIVER: &str = "driver";

/// One simulation scenario: a name, how many seeds it runs by default, how its disks and
/// turmoil are configured, and the function that drives it.
#[derive(Clone, Copy)]
pub struct Scenario {
    /// Unique; what `SIM_SCENARIO` matches and the replay command names.
    pub name: &'static str,
    /// One line: what the scenario checks.
    pub about: &'static str,
    pub default_seeds: u64,
    pub disk: DiskConfig,
    /// Adjusts turmoil's builder (latency, message loss, tick) after the runner's defaults.
    pub configure: fn(&mut turmoil::Builder),
    /// Drives one seed. Returns an error (or panics) when an invariant does not hold.
    pub run: fn(&mut ScenarioCtx) -> turmoil::Result,
    /// The coverage tables the runner prints after the seeds, and checks once the default
    /// number of seeds ran (SIM-38).
    pub tables: &'static [TableSpec],
}

fn no_configuration(_: &mut turmoil::Builder) {}

impl Scenario {
    /// A scenario with 50 seeds by default and the default disk.
    pub const fn new(
        name: &'static str,
        about: &'static str,
        run: fn(&mut ScenarioCtx) -> turmoil::Result,
    ) -> Scenario {
        Scenario {
            name,
            about,
            default_seeds: 50,
            disk: DiskConfig::DEFAULT,
            configure: no_configuration,
            run,
            tables: &[],
        }
    }

    pub const fn seeds(self, default_seeds: u64) -> Scenario {
        Scenario {
            default_seeds,
            ..self
        }
    }

    pub const fn disk(self, disk: DiskConfig) -> Scenario {
        Scenario { disk, ..self }
    }

    pub const fn configure(self, configure: fn(&mut turmoil::Builder)) -> Scenario {
        Scenario { configure, ..self }
    }

    pub const fn tables(self, tables: &'static [TableSpec]) -> Scenario {
        Scenario { tables, ..self }
    }
}

/// Why [`ScenarioCtx::run_until`] stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The condition held.
    Done,
    /// This host lost power (a planned power loss fired); the driver should crash it.
    HostDown(String),
}

/// What a scenario's driver works with: the seed, the turmoil simulation, the world of
/// simulated seams, and a random generator seeded from the seed.
pub struct ScenarioCtx {
    pub seed: u64,
    pub sim: turmoil::Sim<'static>,
    pub world: SimWorld,
    /// The scenario's own randomness (workloads, when to crash). Never use another source.
    pub rng: StdRng,
    hosts: Vec<String>,
}

/// What a host's software gets each time it starts.
#[derive(Clone, Debug)]
pub struct HostCtx {
    pub name: String,
    /// Fresh seams of this host (the filesystem keeps its durable contents across restarts).
    pub env: Env,
    pub world: SimWorld,
}

impl HostCtx {
    /// Whether this host lost power and waits for the driver to crash it.
    pub fn is_down(&self) -> bool {
        self.world.is_down(&self.name)
    }

    /// Passes `r` on, unless this host lost power (SIM-7): then the software stops here for
    /// good, as a machine without power does, and the driver crashes the host. Host code wraps
    /// every fallible call on a path where power may be lost in it, so an injected loss is never
    /// mistaken for a failure of the product.
    pub async fn check<T, E: Into<Box<dyn Error>>>(&self, r: Result<T, E>) -> turmoil::Result<T> {
        match r {
            Ok(v) => Ok(v),
            Err(_) if self.is_down() => std::future::pending().await,
            Err(e) => Err(e.into()),
        }
    }

    /// Records a scenario event on this host.
    pub fn record(&self, event: &str) {
        self.world.trace().record(&self.name, event);
    }
}

impl ScenarioCtx {
    /// Registers host `name`, whose software `software` builds afresh at every (re)start.
    pub fn host<F, Fut>(&mut self, name: &str, software: F)
    where
        F: Fn(HostCtx) -> Fut + 'static,
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        let world = self.world.clone();
        let host = name.to_string();
        self.hosts.push(host.clone());
        let trace = self.world.trace().clone();
        let sim = &mut self.sim;
        trace.at_driver_time(sim.elapsed(), || {
            sim.host(name, move || {
                world.trace().record(&host, "software start");
                software(HostCtx {
                    name: host.clone(),
                    env: sim_env(&host, &world),
                    world: world.clone(),
                })
            })
        });
    }

    /// Records a driver event at the current simulated time.
    pub fn record(&self, event: &str) {
        self.world
            .trace()
            .record_at(self.sim.elapsed(), DRIVER, event);
    }

    /// Advances the simulation one tick.
    pub fn step(&mut self) -> turmoil::Result {
        self.sim.step().map(|_| ())
    }

    /// Steps until `done` holds or a host loses power, failing after `max_steps` ticks.
    pub fn run_until(
        &mut self,
        max_steps: u64,
        what: &str,
        mut done: impl FnMut() -> bool,
    ) -> turmoil::Result<Stopped> {
        for _ in 0..max_steps {
            if done() {
                return Ok(Stopped::Done);
            }
            if let Some(h) = self.hosts.iter().find(|h| self.world.is_down(h)) {
                return Ok(Stopped::HostDown(h.clone()));
            }
            self.step()?;
        }
        if done() {
            return Ok(Stopped::Done);
        }
        Err(format!("gave up after {max_steps} steps waiting for: {what}").into())
    }

    /// Plans a power loss of `host` before its `n`-th mutating filesystem operation from now.
    pub fn power_loss_before_op(&mut self, host: &str, n: u64) {
        self.record(&format!("plan power loss of {host} before op +{n}"));
        self.world.power_loss_before_op(host, n);
    }

    /// Plans a power loss of `host` before its `n`-th mutating filesystem operation from now on a
    /// file whose name contains `fragment`.
    pub fn power_loss_before_op_on(&mut self, host: &str, fragment: &str, n: u64) {
        self.record(&format!(
            "plan power loss of {host} before op +{n} on {fragment}"
        ));
        self.world.power_loss_before_op_on(host, fragment, n);
    }

    /// Cancels a planned power loss of `host` that has not struck yet.
    pub fn cancel_power_loss(&mut self, host: &str) {
        if self.world.power_loss_planned(host) {
            self.record(&format!("cancel planned power loss of {host}"));
        }
        self.world.cancel_power_loss(host);
    }

    /// Power loss (SIM-7): the host's software stops and whatever its disk did not make durable
    /// is gone (turmoil discards it, tearing unsynced writes per the disk configuration). Its
    /// locks are released. Start it again with [`ScenarioCtx::restart`].
    pub fn crash(&mut self, host: &str) {
        self.record(&format!("crash {host}"));
        let sim = &mut self.sim;
        self.world.set_crashing(host, true);
        self.world
            .trace()
            .at_driver_time(sim.elapsed(), || sim.crash(host));
        self.world.set_crashing(host, false);
        self.world.host_crashed(host);
    }

    /// Starts `host`'s software again (after [`ScenarioCtx::crash`]).
    pub fn restart(&mut self, host: &str) {
        self.record(&format!("restart {host}"));
        let sim = &mut self.sim;
        self.world
            .trace()
            .at_driver_time(sim.elapsed(), || sim.bounce(host));
    }
}

/// The outcome of one seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    pub seed: u64,
    /// The trace hash (SIM-6).
    pub trace_hash: u64,
    pub events: u64,
    /// `None` when every invariant held, else why not.
    pub failure: Option<String>,
    /// The cells the faults that struck hit (SIM-38).
    pub coverage: Coverage,
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Runs seed `seed` of `scenario` in a fresh simulation with its own trace (SIM-4). With
/// `keep_all`, the returned trace holds every record.
pub fn run_seed(scenario: &Scenario, seed: u64, keep_all: bool) -> (RunReport, Trace) {
    run_with(scenario, seed, keep_all, scenario.run)
}

/// Runs `drive` as seed `seed` of a simulation configured as `scenario` says (its `run` is not
/// called): how the seam tests drive one-off simulations.
pub fn run_with(
    scenario: &Scenario,
    seed: u64,
    keep_all: bool,
    drive: impl FnOnce(&mut ScenarioCtx) -> turmoil::Result,
) -> (RunReport, Trace) {
    let trace = Trace::new();
    if keep_all {
        trace.keep_all();
    }
    let dispatch = trace::dispatch(trace.clone());
    let mut coverage = Coverage::default();
    let result = tracing::dispatcher::with_default(&dispatch, || {
        panic::catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
            let mut builder = turmoil::Builder::new();
            builder
                .rng_seed(seed)
                .epoch(epoch())
                .simulation_duration(Duration::from_secs(7 * 24 * 3600));
            let fs = builder.fs();
            fs.capacity(scenario.disk.capacity)
                .sync_probability(scenario.disk.random_sync_probability);
            if let Some(block) = scenario.disk.torn_write_block {
                fs.block_size(block);
            }
            (scenario.configure)(&mut builder);
            let mut ctx = ScenarioCtx {
                seed,
                sim: builder.build(),
                world: SimWorld::new(trace.clone(), epoch(), scenario.disk, seed),
                rng: StdRng::seed_from_u64(seed ^ SCENARIO_RNG_SALT),
                hosts: Vec::new(),
            };
            ctx.record(&format!("scenario {} seed {}", scenario.name, ctx.seed));
            let r = drive(&mut ctx).map_err(|e| e.to_string());
            ctx.record(match &r {
                Ok(()) => "scenario passed",
                Err(_) => "scenario failed",
            });
            coverage = Coverage::of_fired(&ctx.world.fired(), seed);
            coverage.merge(&Coverage::of_objects(&ctx.world.objects().counts(), seed));
            // The hosts' software is dropped here; what it records happens at the end.
            let end = ctx.sim.elapsed();
            trace.at_driver_time(end, || drop(ctx));
            r
        }))
    });
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(payload) => Some(format!("panicked: {}", panic_message(payload))),
    };
    let report = RunReport {
        seed,
        trace_hash: trace.hash(),
        events: trace.events(),
        failure,
        coverage,
    };
    (report, trace)
}

/// The one command that replays seed `seed` of `scenario` (SIM-5).
pub fn replay_command(scenario: &str, seed: u64) -> String {
    format!(
        "SIM_SEED={seed} SIM_SCENARIO={scenario} cargo test --test sim every_scenario_over_seeds -- --nocapture"
    )
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn parse_u64(name: &str, raw: Option<String>) -> Option<u64> {
    let raw = raw?;
    match raw.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={raw:?} is not a whole number"),
    }
}

/// The scenarios `SIM_SCENARIO` selects from `all` (all of them when unset).
pub fn selected(all: &[Scenario]) -> Vec<&Scenario> {
    select(all, env("SIM_SCENARIO").as_deref())
}

/// The scenarios `filter` selects: all when `None`, else the one named exactly `filter`, else
/// every one whose name contains it (SIM-5).
pub fn select<'a>(all: &'a [Scenario], filter: Option<&str>) -> Vec<&'a Scenario> {
    let Some(filter) = filter else {
        return all.iter().collect();
    };
    if let Some(exact) = all.iter().find(|s| s.name == filter) {
        return vec![exact];
    }
    let picked: Vec<_> = all.iter().filter(|s| s.name.contains(filter)).collect();
    assert!(
        !picked.is_empty(),
        "SIM_SCENARIO={filter:?} matches no scenario; there are: {}",
        all.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    );
    picked
}

/// Which seeds to run, from `SIM_SEED`, `SIM_SEED_START` and `SIM_SEEDS` (SIM-5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedChoice {
    pub only: Option<u64>,
    pub start: Option<u64>,
    pub count: Option<u64>,
}

impl SeedChoice {
    pub fn from_env() -> SeedChoice {
        SeedChoice {
            only: parse_u64("SIM_SEED", env("SIM_SEED")),
            start: parse_u64("SIM_SEED_START", env("SIM_SEED_START")),
            count: parse_u64("SIM_SEEDS", env("SIM_SEEDS")),
        }
    }

    /// `only` alone, else `count` (default: `default_count`) seeds from `start` (default 0).
    pub fn seeds(&self, default_count: u64) -> Vec<u64> {
        if let Some(seed) = self.only {
            return vec![seed];
        }
        let start = self.start.unwrap_or(0);
        (start..start + self.count.unwrap_or(default_count)).collect()
    }
}

/// The seeds to run for `scenario`, as the environment says.
pub fn seeds(scenario: &Scenario) -> Vec<u64> {
    SeedChoice::from_env().seeds(scenario.default_seeds)
}

/// The failure report: what failed, the end of its trace, and exactly one replay command.
pub fn failure_report(scenario: &Scenario, report: &RunReport, trace: &Trace) -> String {
    let mut out = format!(
        "simulation {} failed at seed {}: {}\n",
        scenario.name,
        report.seed,
        report.failure.as_deref().unwrap_or("(no failure)")
    );
    out.push_str(&format!(
        "last {} of {} trace records:\n",
        trace.tail().len(),
        report.events
    ));
    for line in trace.tail() {
        out.push_str("  ");
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("(SIM_TRACE=1 prints the whole trace, SIM_LOG=debug the product's logs)\n");
    out.push_str(&format!(
        "replay: {}\n",
        replay_command(scenario.name, report.seed)
    ));
    out
}

/// Runs every seed of `scenario` on a few threads (each simulation is confined to the thread
/// that runs it). Returns the reports in seed order, or the report of the lowest failing seed
/// with its trace.
pub fn run_seeds(scenario: &Scenario, seeds: &[u64]) -> Result<Vec<RunReport>, (RunReport, Trace)> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
        .min(seeds.len().max(1));
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let done: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<(RunReport, Trace)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if failed.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(&seed) = seeds.get(i) else {
                    return;
                };
                let (report, trace) = run_seed(scenario, seed, false);
                if report.failure.is_some() {
                    failed.store(true, Ordering::SeqCst);
                    failures.lock().unwrap().push((report, trace));
                } else {
                    done.lock().unwrap().push(report);
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(r, _)| r.seed);
    if let Some(first) = failures.into_iter().next() {
        return Err(first);
    }
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|r| r.seed);
    Ok(done)
}

/// Runs the selected seeds of every selected scenario; on the first failing scenario prints its
/// report with the replay command and panics.
pub fn run_all(all: &[Scenario]) {
    for scenario in selected(all) {
        let seeds = seeds(scenario);
        let started = Instant::now();
        match run_seeds(scenario, &seeds) {
            Ok(reports) => {
                check_coverage(scenario, &reports);
                let events: u64 = reports.iter().map(|r| r.events).sum();
                println!(
                    "sim {}: {} seeds passed in {:.1}s ({} trace records; first seed {} hash {:016x})",
                    scenario.name,
                    reports.len(),
                    started.elapsed().as_secs_f64(),
                    events,
                    reports.first().map_or(0, |r| r.seed),
                    reports.first().map_or(0, |r| r.trace_hash),
                );
            }
            Err((report, trace)) => {
                let text = failure_report(scenario, &report, &trace);
                eprintln!("{text}");
                panic!(
                    "simulation {} failed at seed {} (report and replay command above)",
                    scenario.name, report.seed
                );
            }
        }
    }
}

/// Prints the scenario's coverage tables over the seeds that ran, with the first seed of each
/// row and the command that replays it, and, when at least the default number of seeds ran,
/// fails if a cell that can be hit never was (SIM-38). Fewer seeds (a replay) only print.
fn check_coverage(scenario: &Scenario, reports: &[RunReport]) {
    if scenario.tables.is_empty() {
        return;
    }
    let mut total = Coverage::default();
    for r in reports {
        total.merge(&r.coverage);
    }
    let enough = reports.len() as u64 >= scenario.default_seeds;
    for spec in scenario.tables {
        println!("sim {}: {}", scenario.name, total.render(spec));
        if !spec.required {
            continue;
        }
        for row in spec.rows {
            match total.first_seed(spec, row) {
                Some(seed) => println!(
                    "  {row}: first at seed {seed}: {}",
                    replay_command(scenario.name, seed)
                ),
                None => println!("  {row}: never struck"),
            }
        }
        let missing = total.missing(spec);
        if enough && !missing.is_empty() {
            panic!(
                "SIM-38: simulation {}: over {} seeds (its default is {}) these cells of \"{}\" were never hit: {missing:?}",
                scenario.name,
                reports.len(),
                scenario.default_seeds,
                spec.name
            );
        }
    }
}
