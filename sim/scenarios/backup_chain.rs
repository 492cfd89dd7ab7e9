//! `backup_chain`: a chain of backup runs into one directory while a writer keeps committing
//! over HTTP, with the cases a backup meets in normal operation chosen from the seed: a full
//! backup under writes, incremental ones (repeated, and with nothing new), a forced full one,
//! the fallback to a full backup when the server's logs were pruned (the clock moved past
//! `keep_logical_logs`) or when the backup's history diverged (it took writes of its own), and
//! refusals of directories that hold another store, another format version, or no valid backup
//! (SIM-18). Every run is judged by `backup_world::check_invariants` (invariants 1, 3 and 4 of
//! the brief; BK-10 .. BK-20, BK-23, BK-25, BK-30 .. BK-32, BK-36, BK-40), and the server must
//! hold every acknowledged transaction at the end.

use online_backup::backup::client::{Kind, Mode};
use online_backup::store::format::FormatVersion;
use online_backup::store::meta::StoreId;
use rand::Rng;

use crate::runner::{Scenario, ScenarioCtx};
use crate::scenarios::backup_world::{
    configure, BackupJob, BackupSim, Holding, Impossible, Job, Plant, Refused, Setup, TARGET,
};

pub const SCENARIO: Scenario = Scenario::new(
    "backup_chain",
    "full, incremental, fallback and refused backups under writes: digests, kinds, untouched refusals",
    run,
)
.seeds(40)
.configure(configure)
.disk(crate::scenarios::backup_world::DISK);

/// Where the chain stands.
struct Chain {
    sim: BackupSim,
    setup: Setup,
    /// What `TARGET` holds.
    holding: Holding,
    store_id: StoreId,
    format: FormatVersion,
    /// Directories planted for refusals, numbered.
    planted: u64,
}

fn run(ctx: &mut ScenarioCtx) -> turmoil::Result {
    let setup = Setup::random(&mut ctx.rng);
    let sim = BackupSim::start(ctx, &setup)?;
    let warm_up = ctx.rng.random_range(5..40);
    sim.commits(ctx, warm_up)?;
    // A full backup while the writer keeps committing (BK-10, BK-20): `auto` on a missing
    // directory, or `--type full`. The server copies its record files while commits change them;
    // the backup must still check consistent at the digest of its tx (PR-12).
    let mode = if ctx.rng.random_bool(0.5) {
        Mode::Auto
    } else {
        Mode::Full
    };
    let mut chain = Chain {
        sim,
        setup,
        holding: Holding::Nothing,
        store_id: StoreId {
            created_millis: 0,
            random: 0,
        },
        format: FormatVersion::CURRENT,
        planted: 0,
    };
    let job = BackupJob::new(TARGET, mode, &mut ctx.rng);
    let (first, holding) = chain.sim.backup_checked(ctx, &chain.holding, job)?;
    let summary = first.outcome.as_ref().expect("checked: it finished");
    chain.store_id = summary.store_id;
    chain.format = summary.format;
    chain.holding = holding;
    let steps = ctx.rng.random_range(5..=9);
    for _ in 0..steps {
        match ctx.rng.random_range(0..11) {
            0..=2 => incremental(ctx, &mut chain)?,
            3 => nothing_new(ctx, &mut chain)?,
            4 => forced_full(ctx, &mut chain)?,
            5 | 6 => pruned_fallback(ctx, &mut chain)?,
            7 => diverged(ctx, &mut chain)?,
            8 => restored_copy(ctx, &mut chain)?,
            _ => refusal(ctx, &mut chain)?,
        }
    }
    chain.sim.check_server_intact(ctx)
}

/// `auto` or `--type incremental` after some commits: incremental, since the logs hold what
/// the backup needs (BK-10, BK-24, BK-25).
fn incremental(ctx: &mut ScenarioCtx, chain: &mut Chain) -> turmoil::Result {
    let n = ctx.rng.random_range(0..25);
    chain.sim.commits(ctx, n)?;
    let mode = if ctx.rng.random_bool(0.3) {
        Mode::Incremental
    } else {
        Mode::Auto
    };
    let job = BackupJob::new(TARGET, mode, &mut ctx.rng);
    chain.holding = chain.sim.backup_checked(ctx, &chain.holding, job)?.1;
    Ok(())
}

/// With the writer paused, two runs: the second has nothing to ship, and the server ends the
/// stream at once (PR-15).
fn nothing_new(ctx: &mut ScenarioCtx, chain: &mut Chain) -> turmoil::Result {
    chain.sim.pause_writer(ctx)?;
    for _ in 0..2 {
        let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
        chain.holding = chain.sim.backup_checked(ctx, &chain.holding, job)?.1;
    }
    let Holding::Backup { tx, .. } = chain.holding else {
        return Err("no backup after two runs".into());
    };
    let job = BackupJob::new(TARGET, Mode::Incremental, &mut ctx.rng);
    let (run, holding) = chain.sim.backup_checked(ctx, &chain.holding, job)?;
    chain.holding = holding;
    let s = run.outcome.as_ref().expect("checked: it finished");
    if s.kind != Kind::Incremental || s.transactions != 0 || s.from_tx != Some(tx) || s.to_tx != tx
    {
        return Err(format!(
            "SIM-18, PR-15: with nothing new the incremental backup should ship nothing; it went from \
             {:?} to tx {} with {} transactions",
            s.from_tx, s.to_tx, s.transactions
        )
        .into());
    }
    chain.sim.resume_writer();
    Ok(())
}

/// `--type full` on a valid backup: a new generation, the old one deleted once the pointer
/// switched (BK-18, BK-32).
fn forced_full(ctx: &mut ScenarioCtx, chain: &mut Chain) -> turmoil::Result {
    let n = ctx.rng.random_range(0..15);
    chain.sim.commits(ctx, n)?;
    let live_before = chain.sim.inspect(ctx, TARGET)?.live;
    let job = BackupJob::new(TARGET, Mode::Full, &mut ctx.rng);
    chain.holding = chain.sim.backup_checked(ctx, &chain.holding, job)?.1;
    let live_after = chain.sim.inspect(ctx, TARGET)?.live;
    if live_before.is_some() && live_after <= live_before {
        return Err(format!(
            "SIM-18, BK-18: --type full should fill a new generation; live before {live_before:?}, after \
             {live_after:?}"
        )
        .into());
    }
    Ok(())
}

/// The clock moves past `keep_logical_logs` until the server pruned the tx after the backup's
/// (RET-9, RET-13: at the server's next checkpoints); then `--type incremental` exits 7 changing
/// nothing, and `auto` falls back to a full backup saying why, on the connection the refusal
/// left open (BK-11, BK-12, BK-25, PR-7).
fn pruned_fallback(ctx: &mut ScenarioCtx, chain: &mut Chain) -> turmoil::Result {
    let (Holding::Backup { tx, .. }, Some(age)) = (&chain.holding, chain.setup.retention.age_out())
    else {
        return incremental(ctx, chain);
    };
    let tx = *tx;
    // Enough commits since the backup that its next tx is in a log file that can go.
    let n = ctx.rng.random_range(20..40);
    chain.sim.commits(ctx, n)?;
    let mut rounds = 0;
    loop {
        ctx.world.advance_clock(age);
        chain.sim.commits(ctx, 10)?;
        let status = chain.sim.status(ctx)?;
        if status.oldest_logged_tx > tx + 1 {
            break;
        }
        rounds += 1;
        if rounds == 8 {
            return Err(format!(
                "SIM-18, RET-9: with the clock moved past keep_logical_logs={:?} {rounds} times the \
                 server still logs tx {} (oldest {})",
                chain.setup.retention,
                tx + 1,
                status.oldest_logged_tx
            )
            .into());
        }
    }
    // Pruning only ever moves forward, so the runs below see the tx gone too.
    if ctx.rng.random_bool(0.5) {
        let job = BackupJob::new(TARGET, Mode::Incremental, &mut ctx.rng);
        chain.holding = chain.sim.backup_checked(ctx, &chain.holding, job)?.1;
    }
    let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
    chain.holding = chain.sim.backup_checked(ctx, &chain.holding, job)?.1;
    Ok(())
}

/// The backup takes writes of its own (a restored copy put to use), so its history is no
/// longer the server's: `--type incremental` exits 7 changing nothing, `auto` takes a full
/// backup saying why (BK-11, BK-12, BK-25, PR-14); while the backup is ahead of the server,
/// `auto` refuses with exit 7 too and only `--type full` replaces it (BK-46).
fn diverged(ctx: &mut ScenarioCtx, chain: &mut Chain) -> turmoil::Result {
    if !matches!(chain.holding, Holding::Backup { .. }) {
        return incremental(ctx, chain);
    }
    let txs = ctx.rng.random_range(1..=4);
    chain.sim.call(
        ctx,
        Job::Diverge {
            target: TARGET.into(),
            txs,
        },
    )?;
    let inspection = chain.sim.inspect(ctx, TARGET)?;
    let report = match &inspection.held {
        Ok(Some(r)) => r.clone(),
        other => return Err(format!("the diverged backup does not check: {other:?}").into()),
    };
    chain.holding = Holding::Backup {
        tx: report.last_committed_tx,
        digest: online_backup::digest::Digest::from_hex(&report.digest)
            .ok_or("check printed a bad digest")?,
        diverged: true,
        plain: false,
    };
    // Sometimes the server gets past the backup's tx (the digests there differ), sometimes the
    // backup stays ahead of the server. The writer pauses, so the server's tx at each run's
    // handshake is the one its status showed just before (the expectation depends on it).
    if ctx.rng.random_bool(0.5) {
        chain.sim.commits(ctx, txs + 3)?;
    }
    chain.sim.pause_writer(ctx)?;
    if ctx.rng.random_bool(0.5) {
        let job = BackupJob::new(TARGET, Mode::Incremental, &mut ctx.rng);
        chain.holding = chain.sim.backup_checked(ctx, &chain.holding, job)?.1;
    }
    let job = BackupJob::new(TARGET, Mode::Auto, &mut ctx.rng);
    let (run, holding) = chain.sim.backup_checked(ctx, &chain.holding, job)?;
    chain.holding = holding;
    if run.outcome.is_err() {
        // BK-46: a backup ahead was refused, unchanged; only --type full replaces it.
        let job = BackupJob::new(TARGET, Mode::Full, &mut ctx.rng);
        chain.holding = chain.sim.backup_checked(ctx, &chain.holding, job)?.1;
    }
    chain.sim.resume_writer();
    Ok(())
}

/// A restored copy of the backup (a plain store directory with the server's store id and
/// history) as a target: `auto` applies the new transactions in place; `--type full` then fills
/// a generation, switches the pointer and deletes the plain store files (BK-38).
fn restored_copy(ctx: &mut ScenarioCtx, chain: &mut Chain) -> turmoil::Result {
    let Holding::Backup {
        tx,
        digest,
        diverged: false,
        ..
    } = chain.holding
    else {
        return incremental(ctx, chain);
    };
    chain.planted += 1;
    let dir = format!("/backup/restored-{}", chain.planted);
    chain.sim.call(
        ctx,
        Job::Restore {
            from: TARGET.into(),
            to: dir.clone().into(),
        },
    )?;
    let mut holding = Holding::Backup {
        tx,
        digest,
        diverged: false,
        plain: true,
    };
    let n = ctx.rng.random_range(0..15);
    chain.sim.commits(ctx, n)?;
    let job = BackupJob::new(&dir, Mode::Auto, &mut ctx.rng);
    holding = chain.sim.backup_checked(ctx, &holding, job)?.1;
    if ctx.rng.random_bool(0.5) {
        let job = BackupJob::new(&dir, Mode::Full, &mut ctx.rng);
        chain.sim.backup_checked(ctx, &holding, job)?;
    }
    Ok(())
}

/// A directory the tool must refuse, leaving it byte for byte as it was (BK-13 .. BK-17), in
/// any mode.
fn refusal(ctx: &mut ScenarioCtx, chain: &mut Chain) -> turmoil::Result {
    chain.planted += 1;
    let dir = format!("/backup/refused-{}", chain.planted);
    let other_format = *FormatVersion::SUPPORTED
        .iter()
        .find(|f| **f != chain.format)
        .expect("two supported formats");
    let (plant, refused) = match ctx.rng.random_range(0..8) {
        0 => (
            Some(Plant::ForeignStore {
                random: ctx.rng.random(),
            }),
            Refused::OtherStore,
        ),
        1 => (
            Some(Plant::OtherFormat {
                store_id: chain.store_id,
                format: other_format,
            }),
            Refused::OtherFormat,
        ),
        2 => (Some(Plant::StrayFile), Refused::NotABackup),
        3 => (Some(Plant::File), Refused::NotABackup),
        4 => (Some(Plant::DanglingPointer), Refused::NotABackup),
        5 => (Some(Plant::DamagedPointer), Refused::NotABackup),
        6 => (Some(Plant::FilesWithoutMeta), Refused::NotABackup),
        // Nothing there, and `--type incremental`: exit 7 (BK-12).
        _ => (None, Refused::Impossible(Impossible::NoBackup)),
    };
    let (holding, mode) = match plant {
        Some(what) => {
            chain.sim.call(
                ctx,
                Job::Plant {
                    target: dir.clone().into(),
                    what,
                },
            )?;
            let mode = [Mode::Auto, Mode::Full, Mode::Incremental][ctx.rng.random_range(0..3)];
            (Holding::Refusable(refused), mode)
        }
        None => (Holding::Nothing, Mode::Incremental),
    };
    let job = BackupJob::new(&dir, mode, &mut ctx.rng);
    let (run, _) = chain.sim.backup_checked(ctx, &holding, job)?;
    let message = match &run.outcome {
        Err(f) => f.message.clone(),
        // BK-47: `--type full` replaced the other format's backup (checked as a full backup).
        Ok(_) if refused == Refused::OtherFormat && mode == Mode::Full => return Ok(()),
        Ok(_) => return Err("checked: it was refused".into()),
    };
    // The messages show both sides (BK-14, BK-15).
    let names_both = match refused {
        Refused::OtherStore => message.contains(&chain.store_id.to_string()),
        Refused::OtherFormat => {
            message.contains(&chain.format.to_string())
                && message.contains(&other_format.to_string())
        }
        _ => true,
    };
    if !names_both {
        return Err(
            format!("SIM-18, BK-14, BK-15: the refusal should name both sides: {message}").into(),
        );
    }
    Ok(())
}
