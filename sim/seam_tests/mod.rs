//! Tests of the simulated seams themselves, in the spirit of turmoil's own durability tests: a
//! host runs one phase per start, and loses power between phases.

use std::any::Any;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use online_backup::io::{write_atomic, Env, OpenMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runner::{
    epoch, failure_report, replay_command, run_with, select, RunReport, Scenario, ScenarioCtx,
    SeedChoice,
};
use crate::scenarios::SCENARIOS;
use crate::seams::DiskConfig;
use crate::trace::{fnv64, Trace};

/// A disk without random writeback or torn writes, so a test can say exactly what survives.
pub const EXACT: DiskConfig = DiskConfig {
    blocking_latency_ms: 0,
    capacity: 1 << 20,
    torn_write_block: None,
    random_sync_probability: 0.0,
};

pub const HOST: &str = "box";

/// One start of the host: gets its seams, may park values in `keep` (held until the power
/// goes), fails with a message.
pub type Phase = fn(&Env, &mut Vec<Box<dyn Any>>) -> Result<(), String>;

pub fn unscripted(_: &mut ScenarioCtx) -> turmoil::Result {
    Err("driven by a test".into())
}

/// Runs `drive` as a one-off simulation on the exact disk and fails the test with the run's
/// report if it fails.
pub fn simulate(
    name: &'static str,
    drive: impl FnOnce(&mut ScenarioCtx) -> turmoil::Result,
) -> Trace {
    simulate_as(
        Scenario::new(name, "a seam test", unscripted).disk(EXACT),
        drive,
    )
}

pub fn simulate_as(
    scenario: Scenario,
    drive: impl FnOnce(&mut ScenarioCtx) -> turmoil::Result,
) -> Trace {
    let (report, trace) = run_with(&scenario, 0, true, drive);
    if report.failure.is_some() {
        panic!("{}", failure_report(&scenario, &report, &trace));
    }
    trace
}

/// Runs `phases[i]` as the host's software on its i-th start, with a power loss (crash and
/// restart) between consecutive phases.
pub fn run_phases(name: &'static str, phases: &'static [Phase]) -> Trace {
    simulate(name, |ctx| {
        let results: Arc<Mutex<Vec<Result<(), String>>>> = Arc::default();
        let starts = Arc::new(AtomicUsize::new(0));
        for i in 0..phases.len() {
            if i == 0 {
                let (results, starts) = (results.clone(), starts.clone());
                ctx.host(HOST, move |h| {
                    let phase = phases[starts.fetch_add(1, Ordering::SeqCst)];
                    let results = results.clone();
                    async move {
                        let mut keep = Vec::new();
                        let r = phase(&h.env, &mut keep);
                        results.lock().unwrap().push(r);
                        std::future::pending::<()>().await;
                        drop(keep);
                        Ok(())
                    }
                });
            } else {
                ctx.crash(HOST);
                ctx.restart(HOST);
            }
            let r = results.clone();
            ctx.run_until(100, "the phase", move || r.lock().unwrap().len() > i)?;
            results.lock().unwrap()[i]
                .clone()
                .map_err(|e| format!("phase {}: {e}", i + 1))?;
        }
        Ok(())
    })
}

pub fn p(s: &str) -> &Path {
    Path::new(s)
}

pub fn e<T: std::fmt::Debug>(what: &str) -> impl FnOnce(T) -> String + '_ {
    move |err| format!("{what}: {err:?}")
}

pub fn read_dir_names(env: &Env, dir: &str) -> Result<Vec<String>, String> {
    let entries = env.fs.read_dir(p(dir)).map_err(e("read_dir"))?;
    Ok(entries.into_iter().map(|d| d.name).collect())
}

pub fn read_all(env: &Env, path: &str) -> Result<Vec<u8>, String> {
    let f = env.fs.open(p(path), OpenMode::Read).map_err(e("open"))?;
    let len = f.len().map_err(e("len"))?;
    let mut buf = vec![0; len as usize];
    f.read_exact_at(&mut buf, 0).map_err(e("read"))?;
    Ok(buf)
}

/// Creates `path` with `data`, durably: data synced and the directory entry synced.
pub fn write_durable(env: &Env, path: &str, data: &[u8]) -> Result<(), String> {
    let f = env
        .fs
        .open(p(path), OpenMode::CreateTruncate)
        .map_err(e("open"))?;
    f.write_all_at(data, 0).map_err(e("write"))?;
    f.sync().map_err(e("sync"))?;
    env.fs
        .sync_dir(online_backup::io::parent_of(p(path)))
        .map_err(e("sync_dir"))
}

pub fn make_dir(env: &Env, dir: &str) -> Result<(), String> {
    env.fs.create_dir_all(p(dir)).map_err(e("create_dir_all"))?;
    env.fs.sync_dir(p("/")).map_err(e("sync_dir /"))
}

pub fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}

mod faults;
mod fs;
mod world;
