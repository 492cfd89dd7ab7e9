//! `log_crash`: a self-test of the harness, independent of the product. A tiny checksummed
//! append-only log, written by the scenario itself through `SimFs` (append, fsync, then
//! acknowledge), loses power at a random filesystem operation, round after round; every
//! acknowledged record must survive and the torn tail must be cut (SIM-7).
//!
//! If this scenario fails, the simulated disk or the runner is wrong, not the store (SIM-15).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use online_backup::io::{FileHandle, OpenMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::runner::{HostCtx, Scenario, ScenarioCtx};
use crate::scenarios::crash_rounds::{self, CrashRounds, LossAt, RoundDone};

pub const SCENARIO: Scenario = Scenario::new(
    "log_crash",
    "harness self-test: a checksummed append-only log keeps every acknowledged record across power loss",
    run,
)
.seeds(100);

const HOST: &str = "logger";
const DIR: &str = "/data";
const LOG: &str = "/data/records.log";
const ROUNDS: CrashRounds = CrashRounds {
    host: HOST,
    rounds: 4,
    loss_probability: 0.8,
    loss_at: LossAt::Within(30),
    max_steps: 100_000,
    what: "a round of appends",
};
const APPENDS_PER_ROUND: u64 = 8;
/// A record: payload length (u32 LE), CRC32C of the payload (u32 LE), payload (the value as
/// u64 LE, then filler).
const HEADER: usize = 8;

#[derive(Default)]
struct Model {
    /// Values acknowledged, in order.
    acked: Vec<u64>,
    /// The value being appended, not yet acknowledged: it may or may not have survived.
    in_flight: Option<u64>,
    next_value: u64,
}

fn encode(value: u64, filler: usize) -> Vec<u8> {
    let mut payload = value.to_le_bytes().to_vec();
    payload.extend((0..filler).map(|i| (value as usize + i) as u8));
    let mut rec = (payload.len() as u32).to_le_bytes().to_vec();
    rec.extend(crc32c::crc32c(&payload).to_le_bytes());
    rec.extend(payload);
    rec
}

/// The values of the whole, valid records from the start of the file, and where they end.
fn scan(file: &dyn FileHandle) -> std::io::Result<(Vec<u64>, u64)> {
    let len = file.len()?;
    let mut values = Vec::new();
    let mut at = 0u64;
    loop {
        if at + HEADER as u64 > len {
            break;
        }
        let mut header = [0u8; HEADER];
        file.read_exact_at(&mut header, at)?;
        let size = u32::from_le_bytes(header[..4].try_into().unwrap()) as u64;
        let crc = u32::from_le_bytes(header[4..].try_into().unwrap());
        if !(8..=4096).contains(&size) || at + HEADER as u64 + size > len {
            break;
        }
        let mut payload = vec![0u8; size as usize];
        file.read_exact_at(&mut payload, at + HEADER as u64)?;
        if crc32c::crc32c(&payload) != crc {
            break;
        }
        values.push(u64::from_le_bytes(payload[..8].try_into().unwrap()));
        at += HEADER as u64 + size;
    }
    Ok((values, at))
}

/// The recovered records must be the acknowledged ones, plus at most the one in flight.
fn verify(m: &Model, found: &[u64]) -> Result<(), String> {
    let extra = &found[m.acked.len().min(found.len())..];
    let prefix_ok = found.len() >= m.acked.len() && found[..m.acked.len()] == m.acked[..];
    let extra_ok = extra.is_empty() || (extra.len() == 1 && Some(extra[0]) == m.in_flight);
    if prefix_ok && extra_ok {
        Ok(())
    } else {
        Err(format!(
            "SIM-15: after power loss the log holds {found:?}, but {:?} were acknowledged (in flight: {:?})",
            m.acked, m.in_flight
        ))
    }
}

async fn software(
    h: HostCtx,
    model: Arc<Mutex<Model>>,
    rng: Arc<Mutex<StdRng>>,
    done: RoundDone,
) -> turmoil::Result {
    let fs = h.env.fs.clone();
    h.check(fs.create_dir_all(Path::new(DIR))).await?;
    h.check(fs.sync_dir(Path::new("/"))).await?;
    // IO-3: the previous incarnation's lock died with it.
    let _lock = h.check(fs.lock_dir(Path::new(DIR))).await?;
    let file = h
        .check(fs.open(Path::new(LOG), OpenMode::ReadWriteCreate))
        .await?;
    h.check(fs.sync_dir(Path::new(DIR))).await?;
    let (found, mut end) = h.check(scan(&*file)).await?;
    {
        let mut m = model.lock().unwrap();
        verify(&m, &found)?;
        m.acked = found;
        m.in_flight = None;
    }
    // Cut the torn tail, durably, before appending after it.
    h.check(file.set_len(end)).await?;
    h.check(file.sync()).await?;
    for _ in 0..APPENDS_PER_ROUND {
        let (filler, pause) = {
            let mut r = rng.lock().unwrap();
            (r.random_range(0..1500), r.random_range(0..2000))
        };
        let value = {
            let mut m = model.lock().unwrap();
            m.next_value += 1;
            m.in_flight = Some(m.next_value);
            m.next_value
        };
        let rec = encode(value, filler);
        h.check(file.write_all_at(&rec, end)).await?;
        h.check(file.sync()).await?;
        end += rec.len() as u64;
        let tx_id = {
            let mut m = model.lock().unwrap();
            m.acked.push(value);
            m.in_flight = None;
            m.acked.len()
        };
        // The same event the store emits per commit, so this self-test covers the trace's
        // commit layer too (SIM-6).
        tracing::debug!(target: "online_backup::commit", tx_id, digest = %format!("{value:016x}"), "committed");
        tokio::time::sleep(Duration::from_micros(pause)).await;
    }
    done.set();
    std::future::pending::<()>().await;
    Ok(())
}

fn run(ctx: &mut ScenarioCtx) -> turmoil::Result {
    let model = Arc::new(Mutex::new(Model::default()));
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(ctx.rng.random())));
    let m = model.clone();
    crash_rounds::run(ctx, &ROUNDS, move |h, done| {
        software(h, m.clone(), rng.clone(), done)
    })?;
    let m = model.lock().unwrap();
    if m.acked.is_empty() {
        return Err("no record was ever acknowledged".into());
    }
    Ok(())
}
