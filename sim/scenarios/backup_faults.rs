//! `backup_faults`: backups interrupted by a fault chosen from the seed, while a writer keeps
//! committing: the client host loses power at a random filesystem operation (mid-copy,
//! mid-apply, mid-verify) or during the generation switch of a full backup; the server host
//! loses power at a random filesystem operation or crashes at a random moment (or in the first
//! milliseconds, mid-handshake), or shuts down cleanly; the network between client and server is partitioned, or holds its messages for a
//! while (SIM-19). After each fault the directory must hold a valid backup (invariant 2: BK-24,
//! BK-33, BK-34), the server every acknowledged transaction, and the next undisturbed run must
//! pick up from what was left, incrementally whenever it can, cleaning up the leftovers
//! (invariants 1 and 4: BK-20, BK-25, BK-36). On about half of the seeds the backup port uses TLS
//! with client certificates (`Setup::tls`, spec/security.md), so every fault also strikes TLS
//! connections, mid-handshake and mid-transfer.

use std::time::Duration;

use online_backup::backup::client::{Kind, Mode};
use online_backup::backup::decision::FullReason;
use online_backup::backup::manifest::MANIFEST_FILE;
use rand::Rng;

use crate::runner::{Scenario, ScenarioCtx};
use crate::scenarios::backup_world::{
    check_invariants, configure, expectation, BackupJob, BackupSim, Expect, Facts, Holding, Job,
    Reply, Setup, Waited, CLIENT, SERVER, TARGET,
};

pub const SCENARIO: Scenario = Scenario::new(
    "backup_faults",
    "power loss of client or server, server crash or shutdown, partition mid-backup: the target stays valid",
    run,
)
.seeds(40)
.configure(configure)
.disk(crate::scenarios::backup_world::DISK);

/// The `-timeout` of interrupted runs: a silent partition fails them after this long, with
/// exit 1 (BK-7).
const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The client host loses power before a random filesystem operation of the run.
    ClientPowerLoss,
    /// The client host loses power in the last operations of a full backup: the pointer switch
    /// and the deletion of the old generation (BK-32).
    SwitchPowerLoss,
    /// The server host loses power before a random filesystem operation.
    ServerPowerLoss,
    /// The server host crashes at a random moment of the run.
    ServerCrash,
    /// The server host crashes in the first milliseconds of the run: while the client
    /// connects and, with TLS, in the middle of the TLS handshake (SEC-1).
    EarlyServerCrash,
    /// The server shuts down cleanly in the middle of the run: it closes the backup connection
    /// first, the run fails with exit 1 and the target stays valid (PR-19).
    ServerShutdown,
    /// The network between client and server drops everything.
    Partition,
    /// The network between client and server holds everything for a while.
    Hold,
    /// The client host loses power before one of the first operations on the generation's
    /// manifest (MF-6, MF-8): marking the blocks an incremental will write, or writing a full
    /// backup's before the pointer switch, or the incremental's last update. `op` 0 draws it.
    ManifestPowerLoss { op: u64 },
}

/// The operations a manifest write makes on its files (create the temporary file, write, sync,
/// rename): the manifest power loss strikes before one of the first two writes' worth.
pub const MANIFEST_OPS: u64 = 8;

const FAULTS: [Fault; 9] = [
    Fault::ClientPowerLoss,
    Fault::SwitchPowerLoss,
    Fault::ServerPowerLoss,
    Fault::ServerCrash,
    Fault::EarlyServerCrash,
    Fault::ServerShutdown,
    Fault::Partition,
    Fault::Hold,
    Fault::ManifestPowerLoss { op: 0 },
];

/// What an undisturbed run cost, to aim a fault inside one.
#[derive(Clone, Copy, Debug)]
struct Cost {
    /// Mutating filesystem operations of the client.
    client_ops: u64,
    /// Simulated steps (milliseconds) of the whole job.
    steps: u64,
    /// Mutating filesystem operations of the server meanwhile (commits, checkpoints).
    server_ops: u64,
}

/// The last cost of each kind.
struct Costs {
    full: Cost,
    incremental: Cost,
}

impl Costs {
    /// Guesses, until the first runs of each kind are measured.
    fn guessed() -> Costs {
        Costs {
            full: Cost {
                client_ops: 60,
                steps: 40,
                server_ops: 10,
            },
            incremental: Cost {
                client_ops: 20,
                steps: 30,
                server_ops: 10,
            },
        }
    }

    fn of(&self, kind: Kind) -> Cost {
        match kind {
            Kind::Full => self.full,
            Kind::Incremental => self.incremental,
        }
    }

    fn learn(&mut self, kind: Kind, cost: Cost) {
        match kind {
            Kind::Full => self.full = cost,
            Kind::Incremental => self.incremental = cost,
        }
    }
}

fn run(ctx: &mut ScenarioCtx) -> turmoil::Result {
    let setup = Setup::random(&mut ctx.rng);
    let mut sim = BackupSim::start(ctx, &setup)?;
    let warm_up = ctx.rng.random_range(10..80);
    sim.commits(ctx, warm_up)?;
    let mut costs = Costs::guessed();
    let mut holding = Holding::Nothing;
    // Sometimes even the very first backup is cut short by the client's power loss.
    if ctx.rng.random_bool(0.3) {
        holding = interrupted(
            ctx,
            &mut sim,
            &holding,
            Mode::Auto,
            Fault::ClientPowerLoss,
            &costs,
        )?;
    }
    let rounds = ctx.rng.random_range(2..=3);
    for _ in 0..rounds {
        // An undisturbed run: picks up from what was left (BK-36), and measures.
        let n = ctx.rng.random_range(0..15);
        sim.commits(ctx, n)?;
        let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
        let (done, now) = sim.backup_checked(ctx, &holding, job)?;
        holding = now;
        if let Ok(s) = &done.outcome {
            let cost = Cost {
                client_ops: done.fs_ops,
                steps: sim.last_steps,
                server_ops: sim.last_server_ops,
            };
            costs.learn(s.kind, cost);
        }
        let n = ctx.rng.random_range(0..15);
        sim.commits(ctx, n)?;
        let fault = FAULTS[ctx.rng.random_range(0..FAULTS.len())];
        let mode = if fault == Fault::SwitchPowerLoss || ctx.rng.random_bool(0.4) {
            Mode::Full
        } else {
            Mode::Auto
        };
        holding = interrupted(ctx, &mut sim, &holding, mode, fault, &costs)?;
    }
    // The last word: an undisturbed run, and the server holds every acknowledged tx.
    let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
    sim.backup_checked(ctx, &holding, job)?;
    sim.check_server_intact(ctx)
}

/// The client loses power before each of the first [`MANIFEST_OPS`] operations on the
/// manifest, once in a full backup (its manifest, written before the pointer switch) and once in
/// an incremental one (the pending blocks it marks before writing, and its last update), each
/// run judged by invariant 2 with the manifest checked against the live generation (MF-5, MF-6,
/// MF-8), and an undisturbed run after each. Returns how many of the losses struck.
pub fn manifest_power_losses(ctx: &mut ScenarioCtx) -> turmoil::Result<u64> {
    let setup = Setup::random(&mut ctx.rng);
    let mut sim = BackupSim::start(ctx, &setup)?;
    sim.commits(ctx, 20)?;
    let costs = Costs::guessed();
    let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
    let (_, mut holding) = sim.backup_checked(ctx, &Holding::Nothing, job)?;
    for op in 1..=MANIFEST_OPS {
        for mode in [Mode::Full, Mode::Auto] {
            let n = ctx.rng.random_range(1..15);
            sim.commits(ctx, n)?;
            let fault = Fault::ManifestPowerLoss { op };
            holding = interrupted(ctx, &mut sim, &holding, mode, fault, &costs)?;
            let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
            holding = sim.backup_checked(ctx, &holding, job)?.1;
        }
    }
    Ok(sim.manifest_losses)
}

/// Steps up to `n` times, stopping early when job `id` is answered or a host is down.
fn step_for(ctx: &mut ScenarioCtx, sim: &BackupSim, id: u64, n: u64) -> turmoil::Result {
    for _ in 0..n {
        if sim.answered(id) || ctx.world.is_down(CLIENT) || ctx.world.is_down(SERVER) {
            break;
        }
        ctx.step()?;
    }
    Ok(())
}

/// Steps `n` times whatever happens (a crashed host stays down meanwhile).
fn idle_for(ctx: &mut ScenarioCtx, n: u64) -> turmoil::Result {
    for _ in 0..n {
        ctx.step()?;
    }
    Ok(())
}

/// Crashes the server (power loss: SIM-7), leaves it down a while, and starts it again.
fn crash_and_restart_server(ctx: &mut ScenarioCtx) -> turmoil::Result {
    ctx.crash(SERVER);
    let down_for = ctx.rng.random_range(0..3000);
    idle_for(ctx, down_for)?;
    ctx.restart(SERVER);
    Ok(())
}

/// One backup run into `TARGET` with `fault` injected; returns what the directory holds after,
/// judged by invariant 2 (or 1 and 4 when the run finished anyway).
fn interrupted(
    ctx: &mut ScenarioCtx,
    sim: &mut BackupSim,
    holding: &Holding,
    mode: Mode,
    fault: Fault,
    costs: &Costs,
) -> turmoil::Result<Holding> {
    let mut holding = holding.clone();
    let mut job = BackupJob::new(TARGET, mode, &mut ctx.rng);
    job.timeout = TIMEOUT;
    let kind = match expectation(&holding, mode, false, None) {
        Expect::Finish { kind, .. } => kind,
        other => return Err(format!("no fault case: {other:?}").into()),
    };
    ctx.record(&format!("fault {fault:?} during a {} backup", kind.name()));
    let cost = costs.of(kind);
    let paused = fault == Fault::SwitchPowerLoss;
    match fault {
        Fault::ClientPowerLoss => {
            let n = ctx.rng.random_range(1..=cost.client_ops.max(1));
            ctx.power_loss_before_op(CLIENT, n);
        }
        Fault::SwitchPowerLoss => {
            // A measured full backup with the writer paused, then another: it makes the same
            // operations, so the last ones are the pointer switch (write CURRENT.tmp, sync,
            // rename, sync the directory) and the old generation's removal (BK-32, BK-33).
            sim.pause_writer(ctx)?;
            let (measured, now) = sim.backup_checked(ctx, &holding, job.clone())?;
            holding = now;
            sim.resume_writer();
            let n = ctx.rng.random_range(1..=5);
            sim.commits(ctx, n)?;
            sim.pause_writer(ctx)?;
            let back = ctx.rng.random_range(0..=10);
            ctx.power_loss_before_op(CLIENT, measured.fs_ops.saturating_sub(back).max(1));
        }
        Fault::ServerPowerLoss => {
            let n = ctx.rng.random_range(1..=cost.server_ops.max(2));
            ctx.power_loss_before_op(SERVER, n);
        }
        Fault::ManifestPowerLoss { op } => {
            let n = if op == 0 {
                ctx.rng.random_range(1..=MANIFEST_OPS)
            } else {
                op
            };
            ctx.power_loss_before_op_on(CLIENT, MANIFEST_FILE, n);
        }
        _ => {}
    }
    let began_after = sim.acked();
    let id = sim.submit(ctx, Job::Backup(job));
    let at = match fault {
        // A handshake is a few round trips of 1 to 8 ms (`configure`).
        Fault::EarlyServerCrash => ctx.rng.random_range(0..=30),
        _ => ctx.rng.random_range(0..=cost.steps),
    };
    step_for(ctx, sim, id, at)?;
    let mut partitioned = false;
    match fault {
        Fault::ServerCrash | Fault::EarlyServerCrash => crash_and_restart_server(ctx)?,
        Fault::ServerShutdown => {
            sim.shut_down_server(ctx)?;
            // The process exited; everything it wrote was synced by the clean close.
            crash_and_restart_server(ctx)?;
        }
        Fault::Partition => {
            ctx.record("partition client server");
            ctx.sim.partition(CLIENT, SERVER);
            partitioned = true;
        }
        Fault::Hold => {
            ctx.record("hold client server");
            ctx.sim.hold(CLIENT, SERVER);
            let held = ctx.rng.random_range(0..4000);
            step_for(ctx, sim, id, held)?;
            ctx.record("release client server");
            ctx.sim.release(CLIENT, SERVER);
        }
        _ => {}
    }
    let run = loop {
        match sim.wait(ctx, id)? {
            Waited::Reply(Reply::Backup(run)) => break Some(*run),
            Waited::Reply(other) => return Err(format!("a backup job answered {other:?}").into()),
            Waited::Down(host) if host == CLIENT => {
                if matches!(fault, Fault::ManifestPowerLoss { .. }) {
                    ctx.record("manifest power loss struck");
                    sim.manifest_losses += 1;
                }
                ctx.crash(CLIENT);
                ctx.restart(CLIENT);
                break None;
            }
            Waited::Down(host) if host == SERVER => crash_and_restart_server(ctx)?,
            Waited::Down(host) => return Err(format!("{host} lost power").into()),
        }
    };
    // Planned losses that did not fire are withdrawn; one that fired as the answer came in is
    // carried out.
    ctx.world.cancel_power_loss(CLIENT);
    ctx.world.cancel_power_loss(SERVER);
    if ctx.world.is_down(SERVER) {
        crash_and_restart_server(ctx)?;
    }
    if partitioned {
        ctx.record("repair client server");
        ctx.sim.repair(CLIENT, SERVER);
    }
    sim.wait_until_serving(ctx)?;
    if paused {
        sim.resume_writer();
    }
    // A run that finished anyway may have found the logs it needed pruned meanwhile (a count
    // retention prunes at the writer's rotations): a full backup then was right, if the server's
    // logs no longer hold the backup's next tx now (pruning only ever goes forward).
    let fell_back_rightly = match (&holding, run.as_ref().map(|r| &r.outcome)) {
        (Holding::Backup { tx, .. }, Some(Ok(s)))
            if kind == Kind::Incremental
                && s.kind == Kind::Full
                && matches!(s.full_reason, Some(FullReason::LogsPruned { .. })) =>
        {
            sim.status(ctx)?.oldest_logged_tx > tx + 1
        }
        _ => false,
    };
    let kind = if fell_back_rightly { Kind::Full } else { kind };
    let inspection = sim.inspect(ctx, TARGET)?;
    let digests = sim.digests();
    let now = check_invariants(&Facts {
        run: run.as_ref(),
        expect: &Expect::Interrupted { kind },
        before: &holding,
        after: Some(&inspection),
        digests: &digests,
        began_after: run.as_ref().map_or(began_after, |r| r.began_after),
    })?;
    ctx.record(&format!("checked after {fault:?}: {now:?}"));
    Ok(now)
}
