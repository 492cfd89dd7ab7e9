//! `backup_io_faults`: backups while the seams inject faults, each aimed by the seed at one
//! phase of the run (SIM-37): a read, write or fsync that fails with `EIO` (once, or for good on
//! that file), a read that returns a flipped bit, a full disk, the clock of either host jumping
//! forward by days or back by minutes, and, on the connection between client and server,
//! delays, a reset at a byte of a write, or a stalled peer. The writer keeps committing (or is
//! paused) meanwhile.
//!
//! Each round takes an undisturbed run of the job the fault will strike, which counts the
//! operations each host makes in each phase, then the same job again with the fault armed on
//! the n-th operation of its kind in its phase, n drawn up to that count. The rounds of the
//! seeds walk through every (fault, phase) cell a fault can strike in, so the default seeds hit
//! each of them several times (SIM-38). After each faulted run: the judge of the other backup
//! scenarios (SIM-21) with what a fault may add (SIM-30 .. SIM-35), the server holds every
//! acknowledged transaction (SIM-20), and a host whose fsync of a log or record file failed
//! committed nothing after it (SIM-31).

use std::collections::BTreeMap;
use std::time::Duration;

use online_backup::backup::client::{FullReason, Kind, Mode, Verified, Verify};
use online_backup::store::layout::{generation_name, POINTER_FILE};
use online_backup::store::meta::{Meta, META_FILE};
use rand::Rng;

use crate::coverage::{PHASE_TABLE, WORKLOAD_TABLE};
use crate::runner::{Scenario, ScenarioCtx};
use crate::scenarios::backup_world::{
    check_invariants, configure, expectation, kept_older, pruned, BackupJob, BackupRun, BackupSim,
    Entry, Expect, Facts, Holding, Inspection, Job, ManifestState, Reply, Retention, Setup, Tree,
    Waited, CLIENT, SERVER, TARGET,
};
use crate::seams::{BackupPhase, FaultKind, FaultSpec, Fired, OpClass};

pub const SCENARIO: Scenario = Scenario::new(
    "backup_io_faults",
    "EIO, bit flips, a full disk, clock jumps, latency, resets and stalls in every phase of a backup: never a damaged or lost backup",
    run,
)
.seeds(200)
.configure(configure)
.disk(crate::scenarios::backup_world::DISK)
.tables(&[PHASE_TABLE, WORKLOAD_TABLE]);

/// The `-timeout` of faulted runs: a stalled peer fails them after this long (BK-7).
const TIMEOUT: Duration = Duration::from_secs(2);
/// Faulted rounds per seed.
const ROUNDS: u64 = 3;

/// Every (fault, phase) a fault can strike in (SIM-38), in a fixed order: the seeds' rounds
/// walk through them. A fault on the connection while the client applies or verifies strikes
/// only when the server is still sending then (a stream that outlasts a run), about one aim in
/// three; those cells are walked through twice as often, so that the default seeds hit each of
/// them several times too.
fn cells() -> Vec<(FaultKind, BackupPhase)> {
    FaultKind::ALL
        .iter()
        .flat_map(|&k| k.phases().iter().map(move |&p| (k, p)))
        .flat_map(|(k, p)| {
            let rare = k.class() == OpClass::NetWrite
                && matches!(p, BackupPhase::Apply | BackupPhase::Verify);
            std::iter::repeat_n((k, p), if rare { 2 } else { 1 })
        })
        .collect()
}

/// What the driver knows of the backup directory beyond [`Holding`].
struct State {
    holding: Holding,
    /// The backup is marked unverified (BK-28): the next run must take a full backup.
    unverified: bool,
    /// A run without verification shipped a record a bit flip damaged (SIM-32): the next run
    /// must replace it with a full backup.
    damaged: bool,
    /// The server's clock jumped forward: retention may prune any time, so undisturbed runs
    /// pause the writer (nothing rotates), and a run may fall back because of it.
    server_jumped: bool,
}

fn run(ctx: &mut ScenarioCtx) -> turmoil::Result {
    let mut setup = Setup::random(&mut ctx.rng);
    // Its judge predicts each run's kind from the status before it (SIM-21): no count policy,
    // which prunes during runs (the other backup scenarios cover that, SIM-23).
    if let Retention::Files(_) = setup.retention {
        setup.retention = Retention::KeepAll;
    }
    let mut sim = BackupSim::start(ctx, &setup)?;
    let probe = sim.shared.clone();
    ctx.world
        .set_workload_probe(Box::new(move || match probe.try_lock() {
            Ok(s) if s.writer.paused => "paused",
            Ok(s) if s.writer.in_flight.is_some() => "committing",
            Ok(_) => "between commits",
            Err(_) => "unknown",
        }));
    let warm_up = ctx.rng.random_range(10..60);
    sim.commits(ctx, warm_up)?;
    let mut state = State {
        holding: Holding::Nothing,
        unverified: false,
        damaged: false,
        server_jumped: false,
    };
    let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
    clean(ctx, &mut sim, &mut state, job)?;
    let cells = cells();
    for round in 0..ROUNDS {
        let (kind, phase) = cells[((ctx.seed * ROUNDS + round) % cells.len() as u64) as usize];
        faulted(ctx, &mut sim, &mut state, kind, phase)?;
    }
    // The last word: an undisturbed run, and the server holds every acknowledged tx.
    let mode = if state.damaged {
        Mode::Full
    } else {
        Mode::Auto
    };
    let job = BackupJob::new(TARGET, mode, &mut ctx.rng);
    clean(ctx, &mut sim, &mut state, job)?;
    sim.check_server_intact(ctx)
}

/// What a run in `mode` must do on what the directory holds (SIM-21), knowing the mark of an
/// unverified backup too: a full backup, which is no fallback (BK-28).
fn expect(state: &State, mode: Mode, pruned: bool, server_tx: Option<u64>) -> Expect {
    if state.unverified && matches!(state.holding, Holding::Backup { .. }) && mode == Mode::Auto {
        return Expect::Finish {
            kind: Kind::Full,
            because: None,
        };
    }
    expectation(&state.holding, mode, pruned, server_tx)
}

/// An undisturbed run of `job`, judged (SIM-21); returns the operations each host made, by
/// phase and class (SIM-36).
fn clean(
    ctx: &mut ScenarioCtx,
    sim: &mut BackupSim,
    state: &mut State,
    job: BackupJob,
) -> turmoil::Result<BTreeMap<(String, BackupPhase, OpClass), u64>> {
    if state.server_jumped {
        sim.pause_writer(ctx)?;
    }
    let run = sim.backup(ctx, job)?;
    let counts = ctx.world.run_counts();
    let server_tx = run.status_before.as_ref().map(|s| s.last_committed_tx);
    let expected = expect(state, run.job.mode, pruned(&state.holding, &run), server_tx);
    let inspection = sim.inspect(ctx, TARGET)?;
    let digests = sim.digests();
    let now = check_invariants(&Facts {
        run: Some(&run),
        expect: &expected,
        before: &state.holding,
        after: Some(&inspection),
        digests: &digests,
        began_after: run.began_after,
    })?;
    if let (true, Ok(s)) = (state.unverified, &run.outcome) {
        if run.job.mode == Mode::Auto && s.full_reason != Some(FullReason::Unverified) {
            return Err(format!(
                "SIM-32, BK-28: the backup was marked unverified, but the next run took a {} backup saying {:?}",
                s.kind.name(),
                s.full_reason
            )
            .into());
        }
    }
    ctx.record(&format!("checked: {expected:?} -> {now:?}"));
    state.holding = now;
    state.unverified = false;
    state.damaged = false;
    if state.server_jumped {
        sim.resume_writer();
    }
    Ok(counts)
}

/// One round: an undisturbed run that measures, then the same job with fault `kind` aimed at
/// `phase` (SIM-36, SIM-37).
fn faulted(
    ctx: &mut ScenarioCtx,
    sim: &mut BackupSim,
    state: &mut State,
    kind: FaultKind,
    phase: BackupPhase,
) -> turmoil::Result {
    // Files are copied and the pointer switched by full backups only; transactions arrive
    // and are applied mostly in incremental ones (a full one gets those committed meanwhile).
    let full = match phase {
        BackupPhase::FileCopy | BackupPhase::Switch => 1.0,
        BackupPhase::TxStream | BackupPhase::Apply => 0.15,
        _ => 0.3,
    };
    let mode = if state.damaged || state.holding == Holding::Nothing || ctx.rng.random_bool(full) {
        Mode::Full
    } else {
        Mode::Auto
    };
    let mut job = BackupJob::new(TARGET, mode, &mut ctx.rng);
    if phase == BackupPhase::Verify && job.verify == Verify::Off {
        job.verify = Verify::Default;
    }
    // What the server writes while the client shakes hands or receives transactions is the
    // writer's commits: it commits back to back through both runs, so that there are some.
    let by_commits = matches!(kind.class(), OpClass::Write | OpClass::Sync | OpClass::Grow)
        && matches!(phase, BackupPhase::Handshake | BackupPhase::TxStream);
    // The server writes while the client applies a run or reads it back only when the stream
    // outlasts a run: many transactions, applied a few at a time (BK-24, BK-27).
    let amid_runs = kind.class() == OpClass::NetWrite
        && matches!(phase, BackupPhase::Apply | BackupPhase::Verify);
    if amid_runs {
        job.apply_run_txs = ctx.rng.random_range(1..=4);
        job.max_rate = None;
    }
    let by_commits = by_commits || amid_runs;
    let max_pause = sim.shared.lock().unwrap().writer.max_pause;
    if by_commits {
        sim.shared.lock().unwrap().writer.max_pause = Duration::ZERO;
    }
    // And the transactions arrive slowly enough for commits to land meanwhile (BK-41).
    if by_commits && phase == BackupPhase::TxStream {
        job.max_rate = std::num::NonZeroU64::new(32 << 10);
    }
    let counts = clean(ctx, sim, state, job.clone())?;
    // Enough for a stream longer than the network holds at once when it matters.
    let n = if amid_runs {
        ctx.rng.random_range(60..120)
    } else {
        ctx.rng.random_range(1..15)
    };
    sim.commits(ctx, n)?;

    // Where: a host that made operations of the fault's class in the phase, and which one.
    let class_on = |host: &str| match (kind.class(), host) {
        // The server's reads through read-only handles: the backup service's, never the
        // commit path's (SIM-30).
        (OpClass::Read, SERVER) => OpClass::ReadOnly,
        (class, _) => class,
    };
    let hosts: Vec<(&str, OpClass, u64)> = [CLIENT, SERVER]
        .into_iter()
        .map(|h| {
            let class = class_on(h);
            let count = counts
                .get(&(h.to_string(), phase, class))
                .copied()
                .unwrap_or(0);
            (h, class, count)
        })
        .filter(|(_, _, count)| *count > 0)
        .collect();
    let (host, class, count) = if hosts.is_empty() {
        let h = if by_commits {
            SERVER
        } else {
            [CLIENT, SERVER][ctx.rng.random_range(0..2)]
        };
        (h, class_on(h), 1)
    } else {
        hosts[ctx.rng.random_range(0..hosts.len())]
    };
    let amount = match kind {
        FaultKind::ClockForward => Duration::from_secs(ctx.rng.random_range(1..=5) * 24 * 3600),
        FaultKind::ClockBackward => Duration::from_secs(ctx.rng.random_range(1..=30) * 60),
        FaultKind::Latency => {
            Duration::from_millis([20, 200, 1000, 3000][ctx.rng.random_range(0..4)])
        }
        _ => Duration::ZERO,
    };
    let spec = FaultSpec {
        kind,
        phase,
        class,
        nth: ctx.rng.random_range(1..=count),
        persistent: ctx.rng.random_bool(0.5),
        amount,
        seed: ctx.rng.random(),
    };
    let streams = matches!(phase, BackupPhase::TxStream | BackupPhase::Apply);
    let paused = !by_commits && !streams && ctx.rng.random_bool(0.15);
    if paused {
        sim.pause_writer(ctx)?;
    }
    job.timeout = TIMEOUT;
    let fired_before = ctx.world.fired().len();
    ctx.world.arm_fault(host, spec.clone());
    let id = sim.submit(ctx, Job::Backup(job));
    let run = match sim.wait(ctx, id)? {
        Waited::Reply(Reply::Backup(run)) => *run,
        other => return Err(format!("a backup job answered {other:?}").into()),
    };
    let fired: Vec<Fired> = ctx.world.fired()[fired_before..].to_vec();
    ctx.record(&format!("faulted run ended; struck: {fired:?}"));
    fsync_acknowledged_nothing(ctx, &fired)?;
    if fired
        .iter()
        .any(|f| f.kind == FaultKind::ClockForward && f.host == SERVER)
    {
        state.server_jumped = true;
    }
    // A server whose store a write fault may have failed starts again (LOG-9: only a restart
    // recovers it), after a power loss.
    let server_write_fault = fired.iter().any(|f| {
        f.host == SERVER
            && matches!(
                f.kind,
                FaultKind::WriteError | FaultKind::SyncError | FaultKind::DiskFull
            )
    });
    if server_write_fault {
        ctx.crash(SERVER);
        let down_for = ctx.rng.random_range(0..500);
        for _ in 0..down_for {
            ctx.step()?;
        }
        ctx.restart(SERVER);
        sim.wait_until_serving(ctx)?;
    }
    if paused {
        sim.resume_writer();
    }
    sim.shared.lock().unwrap().writer.max_pause = max_pause;
    judge(ctx, sim, state, &spec, &fired, &run)
}

/// SIM-31: after a failed fsync of a log file or a record file, the host acknowledges nothing
/// more: its store commits no transaction until it is opened again (the client's at its next
/// run, the server's after a restart).
pub(crate) fn fsync_acknowledged_nothing(ctx: &ScenarioCtx, fired: &[Fired]) -> turmoil::Result {
    for f in fired {
        let Some(path) = &f.path else {
            continue;
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let covered = name.starts_with("neostore.transaction.db.")
            || online_backup::store::format::RecordKind::ALL
                .iter()
                .any(|k| k.file_name() == name);
        if f.kind != FaultKind::SyncError || !covered {
            continue;
        }
        if let Some(at) = ctx.world.trace().last_commit(&f.host) {
            if at > f.trace_index {
                return Err(format!(
                    "SIM-31, LOG-9: after the fsync of {} failed on {}, its store committed another transaction (trace record {at}, the failure was record {})",
                    path.display(),
                    f.host,
                    f.trace_index
                )
                .into());
            }
        }
    }
    Ok(())
}

/// The live store's metadata in a snapshot of the directory.
fn live_meta(tree: &Tree) -> Option<Meta> {
    let files = tree.as_ref()?;
    let dir = match files.get(POINTER_FILE) {
        Some(Entry::File(bytes)) => {
            let text = String::from_utf8_lossy(bytes);
            format!("{}/", text.trim())
        }
        _ => String::new(),
    };
    match files.get(&format!("{dir}{META_FILE}")) {
        Some(Entry::File(bytes)) => Meta::decode(bytes).ok(),
        _ => None,
    }
}

/// Whether the inspected backup is damaged: it does not open, is inconsistent, or its records
/// do not give the digest it recorded.
fn damaged(inspection: &Inspection) -> bool {
    match &inspection.held {
        Err(_) => true,
        Ok(Some(r)) => !r.consistent || r.digest != r.recorded_digest,
        Ok(None) => false,
    }
}

/// Judges a faulted run (SIM-21 with what SIM-30 .. SIM-35 add) and says what the directory
/// holds now.
fn judge(
    ctx: &mut ScenarioCtx,
    sim: &mut BackupSim,
    state: &mut State,
    spec: &FaultSpec,
    fired: &[Fired],
    run: &BackupRun,
) -> turmoil::Result {
    let mut inspection = sim.inspect(ctx, TARGET)?;
    let digests = sim.digests();
    let struck = |kind: FaultKind, host: Option<&str>, phase: Option<BackupPhase>| {
        fired.iter().any(|f| {
            f.kind == kind && host.is_none_or(|h| f.host == h) && phase.is_none_or(|p| f.phase == p)
        })
    };
    // A bit flip in what the client read back while it hashed its files (metadata, logs, the
    // blocks a replay or an apply wrote) puts a wrong hash in the manifest (MF-6, MF-8): damage
    // the manifest will report, so the next run replaces the backup with a full one.
    let manifest_misled =
        inspection.manifest.is_err() && struck(FaultKind::Corruption, Some(CLIENT), None);
    if manifest_misled {
        ctx.record(&format!(
            "the manifest took a bit flip the client read, to be replaced: {:?}",
            inspection.manifest
        ));
        inspection.manifest = Ok(ManifestState::Exact(None));
    }
    if manifest_misled || damaged(&inspection) {
        // A restore verifies the manifest and the records first (MF-10, PIT-11): it refuses
        // this backup, rightly; the next run replaces it.
        inspection.history = None;
    }
    // The kind the run should take (SIM-21, invariant 4), pruning aside.
    let mut kind = match expect(state, run.job.mode, false, None) {
        Expect::Finish { kind, .. } => kind,
        other => return Err(format!("no fault case: {other:?}").into()),
    };
    // A clock going back, or the client's going forward, is no reason to fail (SIM-34).
    let harmless_clock = fired.iter().any(|f| {
        f.kind == FaultKind::ClockBackward
            || (f.kind == FaultKind::ClockForward && f.host == CLIENT)
    });
    let what = format!(
        "the {:?} backup (verify {:?}) with {:?} on the n-th op: {fired:?}",
        run.job.mode, run.job.verify, spec
    );
    let now = match &run.outcome {
        Ok(summary) => {
            if summary.kind != kind
                && summary.fell_back
                && matches!(summary.full_reason, Some(FullReason::LogsPruned { .. }))
                && state.server_jumped
            {
                // Retention pruned after the server's clock jumped (SIM-34): the logs must
                // really no longer hold the backup's next tx.
                let status = sim.status(ctx)?;
                if let Holding::Backup { tx, .. } = state.holding {
                    if status.oldest_logged_tx <= tx + 1 {
                        return Err(format!(
                            "SIM-34, BK-11: {what} fell back saying the logs were pruned, but the server's oldest logged tx is {} and the backup is at tx {tx}",
                            status.oldest_logged_tx
                        )
                        .into());
                    }
                }
                ctx.record(
                    "the run fell back: the logs were pruned after the server's clock jumped",
                );
                kind = Kind::Full;
            }
            let is_damaged = damaged(&inspection);
            if is_damaged && summary.verified != Verified::Skipped {
                return Err(format!(
                    "SIM-32: {what} reported success {} but the backup holds damage: {:?}",
                    summary.verified.describe(),
                    inspection.held
                )
                .into());
            }
            if is_damaged && struck(FaultKind::Corruption, Some(SERVER), None) {
                // Shipped unverified (-verify false): the damage is the server's bit flip, in
                // the files of a full backup; the summary still names the source's state.
                if summary.kind != Kind::Full
                    || digests.get(&summary.to_tx) != Some(&summary.digest)
                {
                    return Err(format!(
                        "SIM-32, BK-20: {what}: an unverified damaged backup, but not the full backup of the source's state it claims: {summary:?}"
                    )
                    .into());
                }
                state.damaged = true;
                state.holding = Holding::Backup {
                    tx: summary.to_tx,
                    digest: summary.digest,
                    diverged: false,
                    plain: false,
                };
                ctx.record(&format!(
                    "judged after {:?}: unverified and damaged, to be replaced",
                    spec.kind
                ));
                return Ok(());
            }
            // The old generations a failed removal left after the switch (BK-32, PIT-12): the
            // next run removes them (BK-36). Those the run keeps must still be there.
            if struck(spec.kind, Some(CLIENT), Some(BackupPhase::Switch)) {
                if let Some(live) = inspection.live {
                    let kept = kept_older(&run.before, live, run.job.keep_generations);
                    inspection.names.retain(|n| {
                        n == POINTER_FILE
                            || *n == generation_name(live)
                            || kept.contains(n)
                            || !n.starts_with("generation-")
                    });
                }
            }
            let expected = if fired.is_empty() {
                Expect::Finish {
                    kind,
                    because: None,
                }
            } else {
                Expect::Interrupted { kind }
            };
            check_invariants(&Facts {
                run: Some(run),
                expect: &expected,
                before: &state.holding,
                after: Some(&inspection),
                digests: &digests,
                began_after: run.began_after,
            })?
        }
        Err(failure) => {
            if fired.is_empty() || harmless_clock {
                return Err(format!(
                    "SIM-34, SIM-37: {what} failed with exit {} where it should have finished: {}",
                    failure.exit, failure.message
                )
                .into());
            }
            match failure.exit {
                1 => check_invariants(&Facts {
                    run: Some(run),
                    expect: &Expect::Interrupted { kind },
                    before: &state.holding,
                    after: Some(&inspection),
                    digests: &digests,
                    began_after: run.began_after,
                })?,
                // A bit flip in what the client read of its backup makes it look damaged (exit
                // 3: SIM-32, BK-13), or verification catches one (exit 6: SIM-32, BK-26): the
                // backup itself is intact (invariant 2).
                3 | 6
                    if struck(FaultKind::Corruption, Some(CLIENT), None)
                        || (failure.exit == 6 && struck(FaultKind::Corruption, None, None)) =>
                {
                    check_invariants(&Facts {
                        run: None,
                        expect: &Expect::Interrupted { kind },
                        before: &state.holding,
                        after: Some(&inspection),
                        digests: &digests,
                        began_after: run.began_after,
                    })?
                }
                code => {
                    return Err(format!(
                        "SIM-30, SIM-32, SIM-37, BK-40: {what} failed with exit {code} ({}); a fault fails a run with exit 1 (6 for a bit flip verification caught)",
                        failure.message
                    )
                    .into())
                }
            }
        }
    };
    state.unverified = live_meta(&run.after).is_some_and(|m| m.unverified);
    state.damaged |= manifest_misled;
    ctx.record(&format!("judged after {:?}: {now:?}", spec.kind));
    state.holding = now;
    Ok(())
}
