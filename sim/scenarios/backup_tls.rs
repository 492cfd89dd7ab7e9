//! `backup_tls` (SIM-22): the backup port with TLS and client certificates (spec/security.md)
//! under what only TLS has: clients that stall in the handshake, and a certificate that expires
//! while a backup runs. (Partitions and crashes strike TLS connections in `backup_faults` and
//! `backup_chain`, which use TLS on about half of their seeds.)
//!
//! 1. A full backup over TLS, judged by SIM-21.
//! 2. SEC-13: eight connections send the first bytes of a TLS handshake and stall. They fill the
//!    service (PR-23): a backup meanwhile is refused (exit 1, the directory unchanged); the
//!    service closes each stalled connection after the handshake timeout, and a backup after that
//!    succeeds.
//! 3. SEC-14: the client's certificate is replaced by one that expires a second from now, and
//!    with the writer paused a full backup slowed by `--max-rate` to last four seconds or more
//!    starts before that: it
//!    finishes (judged by SIM-21) although the certificate expired while it ran; the next run is
//!    refused with a sentence saying the certificate expired (exit 1, nothing changed); with a
//!    valid certificate again, an `auto` run picks up incrementally.

use std::time::Duration;

use online_backup::backup::client::Mode;
use online_backup::io::Clock;
use rand::Rng;

use crate::kit::certs::Validity;
use crate::runner::{Scenario, ScenarioCtx};
use crate::scenarios::backup_world::{
    configure, BackupJob, BackupRun, BackupSim, Holding, Job, Reply, Setup, SimTls, MAX_STEPS,
    TARGET,
};

pub const SCENARIO: Scenario = Scenario::new(
    "backup_tls",
    "TLS: stalled handshakes free their connections, a certificate expiring mid-backup",
    run,
)
.seeds(20)
.configure(configure_tls)
.disk(crate::scenarios::backup_world::DISK);

/// The backup scenarios' network, stepped 5 ms at a time rather than 1: this scenario spends
/// most of its simulated time waiting out a handshake timeout and a rate-limited copy, and the
/// steps, not the work, were its cost. Interleavings at finer grain are the other backup
/// scenarios' job.
fn configure_tls(b: &mut turmoil::Builder) {
    configure(b);
    b.tick_duration(Duration::from_millis(5));
}

/// The service's handshake timeout (SEC-13), as the driver expects it.
const HANDSHAKE_TIMEOUT: Duration = online_backup::backup::tls::HANDSHAKE_TIMEOUT;

fn run(ctx: &mut ScenarioCtx) -> turmoil::Result {
    let mut setup = Setup::random(&mut ctx.rng);
    let tls = SimTls::random(&mut ctx.rng);
    setup.tls = Some(tls.clone());
    let mut sim = BackupSim::start(ctx, &setup)?;
    let warm_up = ctx.rng.random_range(20..80);
    sim.commits(ctx, warm_up)?;

    // 1. A full backup over TLS.
    let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
    let (first, mut holding) = sim.backup_checked(ctx, &Holding::Nothing, job)?;
    let bytes = match &first.outcome {
        Ok(s) => s.bytes,
        Err(f) => {
            return Err(format!(
                "SIM-22, SEC-1: the first backup over TLS failed: {}",
                f.message
            )
            .into())
        }
    };

    // 2. Stalled handshakes (SEC-13), the writer paused meanwhile (the wait is long).
    sim.pause_writer(ctx)?;
    match sim.call(ctx, Job::Stall(8))? {
        Reply::Done => {}
        other => return Err(format!("a stall job answered {other:?}").into()),
    }
    idle_for(ctx, 50)?;
    let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
    let busy = sim.backup(ctx, job)?;
    expect_refused(
        &busy,
        "its limit",
        "SEC-13, PR-23: with eight stalled handshakes",
    )?;
    let sh = sim.shared.clone();
    ctx.run_until(MAX_STEPS, "the stalled connections to close", move || {
        sh.lock().unwrap().stalls.len() == 8
    })?;
    let stalls = sim.shared.lock().unwrap().stalls.clone();
    ctx.record(&format!("stalled connections closed after {stalls:?}"));
    if let Some(bad) = stalls
        .iter()
        .find(|d| **d < HANDSHAKE_TIMEOUT || **d > HANDSHAKE_TIMEOUT + Duration::from_secs(2))
    {
        return Err(format!(
            "SEC-13: a stalled handshake was closed after {bad:?}, not after the handshake \
             timeout of {HANDSHAKE_TIMEOUT:?}"
        )
        .into());
    }
    sim.resume_writer();
    let n = ctx.rng.random_range(1..10);
    sim.commits(ctx, n)?;
    let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
    let (after_stalls, now) = sim.backup_checked(ctx, &holding, job)?;
    holding = now;
    if let Err(f) = &after_stalls.outcome {
        return Err(format!(
            "SEC-13: after the stalled handshakes were closed, a backup failed: {}",
            f.message
        )
        .into());
    }

    // 3. A certificate that expires while a backup runs (SEC-14).
    // The writer paused, so that the slowed run ships a bounded store and no stream of new
    // transactions.
    sim.pause_writer(ctx)?;
    let clock = ctx.world.clock();
    let now = clock.now();
    let expires = now + Duration::from_secs(1);
    let short = Validity {
        not_before: now - Duration::from_secs(86_400),
        not_after: expires,
    };
    let original = tls.client.clone();
    sim.shared.lock().unwrap().tls.as_mut().unwrap().client = tls.client_valid(short, &mut ctx.rng);
    sim.call(ctx, Job::WriteTls)?;
    let mut job = BackupJob::new(TARGET, Mode::Full, &mut ctx.rng);
    // Four seconds at least: the store holds at least what the first full backup copied.
    job.max_rate = std::num::NonZeroU64::new((bytes / 4).max(1024));
    let (long, now) = sim.backup_checked(ctx, &holding, job)?;
    holding = now;
    let ended = clock.now();
    if let Err(f) = &long.outcome {
        return Err(format!(
            "SEC-14: a backup whose certificate expired after its handshake failed: {}",
            f.message
        )
        .into());
    }
    if ended <= expires {
        return Err(format!(
            "SIM-22: the slowed backup ended before the certificate expired ({ended:?} <= \
             {expires:?}): the scenario did not test SEC-14"
        )
        .into());
    }
    let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
    let refused = sim.backup(ctx, job)?;
    expect_refused(
        &refused,
        "it has expired or is not valid yet by the server's clock",
        "SEC-14, SEC-5: the run after the certificate expired",
    )?;
    sim.shared.lock().unwrap().tls.as_mut().unwrap().client = original;
    sim.call(ctx, Job::WriteTls)?;
    sim.resume_writer();
    let n = ctx.rng.random_range(1..10);
    sim.commits(ctx, n)?;
    let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
    let (last, _) = sim.backup_checked(ctx, &holding, job)?;
    if last.outcome.is_err() {
        return Err("SIM-22: with a valid certificate again the backup failed".into());
    }
    sim.check_server_intact(ctx)
}

/// Steps `n` times.
fn idle_for(ctx: &mut ScenarioCtx, n: u64) -> turmoil::Result {
    for _ in 0..n {
        ctx.step()?;
    }
    Ok(())
}

/// `run` failed with exit 1 and a message containing `said`, leaving the directory as it was.
fn expect_refused(run: &BackupRun, said: &str, what: &str) -> turmoil::Result {
    match &run.outcome {
        Ok(s) => Err(format!(
            "{what}: the run finished ({} to tx {})",
            s.kind.name(),
            s.to_tx
        )
        .into()),
        Err(f) if f.exit != 1 || !f.message.contains(said) => Err(format!(
            "{what}: exit {} and {:?}; expected exit 1 saying {said:?}",
            f.exit, f.message
        )
        .into()),
        Err(_) if run.before != run.after => {
            Err(format!("{what}: the refused run changed the directory").into())
        }
        Err(_) => Ok(()),
    }
}
