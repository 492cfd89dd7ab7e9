//! `backup_objects` (SIM-40): backups into an object store (spec/objects.md), the simulated
//! world's in-memory store, while it fails: puts that fail, puts that land but whose answer is
//! lost, lists that answer late. The writer commits
//! between runs and during them. After every run, the faults disarmed, the driver restores the
//! target as `neo4j-admin restore --from` does and checks:
//!
//! 1. It restores (OBJ-8) to exactly the source's state at some tx: the recomputed digest is
//!    the writer's model's at that tx. Before the first successful run it may hold no backup.
//! 2. Never older: that tx is at least the last one restored, and after a run that succeeded
//!    it is the run's tx and digest (OBJ-7, OBJ-11). A run that failed may still have made its
//!    work live (a pointer or manifest whose put landed but answered an error), never half of
//!    it.
//! 3. No lease is left when a run has ended (OBJ-5, OBJ-13), and after a successful run the
//!    target holds only the pointer, the live generation and the newest older generations its
//!    `--keep-generations` keeps, those it held before (OBJ-7, OBJ-9, OBJ-11, PIT-12).
//! 4. On every other round, a restore to an earlier tx of the live generation (OBJ-18) is the
//!    source's state there, or refused before its full backup's tx.
//! 5. Some rounds end with `neo4j-admin aggregate` (OBJ-20), under the round's faults: it
//!    fails only as the object store does (exit 1) and changes no state: the target restores
//!    to the same tx and digest as before it, its new generation (when it made one) is at that
//!    tx, and it leaves no lease.
//! 6. Now and then a run finds an object no backup has under the prefix: it is refused with
//!    exit 3 and leaves every object as it was, byte for byte (invariant 3).
//!
//! Besides, a successful run is never older than the server when it began (invariant 1), and
//! under `auto` with a backup there it is an incremental unless the server's logs are gone or
//! the segments reached their bound (invariant 4, BK-25, OBJ-12).
//!
//! Runs are `auto` (incremental once there is a backup), sometimes `--type full`; every fault
//! kind strikes some run over the default seeds (checked by the test, SIM-40).

use std::time::Duration;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use online_backup::backup::client::{FullReason, Kind, Mode};
use online_backup::store::layout;
use rand::Rng;

use crate::runner::{Scenario, ScenarioCtx};
use crate::scenarios::backup_world::{configure, BackupJob, BackupSim, Job, Reply, Setup, DISK};
use crate::seams::ObjectFaults;

pub const SCENARIO: Scenario = Scenario::new(
    "backup_objects",
    "object store targets: failing, lost-answer and slow requests; restorable, never older",
    run,
)
.seeds(30)
.configure(configure)
.disk(DISK)
.tables(&[crate::coverage::OBJECT_TABLE]);

/// The bucket and prefix the runs back up into.
const BUCKET: &str = "sim-backups";
const URL: &str = "s3://sim-backups/db";

fn run(ctx: &mut ScenarioCtx) -> turmoil::Result {
    let setup = Setup::random(&mut ctx.rng);
    let mut sim = BackupSim::start(ctx, &setup)?;
    let warm_up = ctx.rng.random_range(5..20);
    sim.commits(ctx, warm_up)?;
    let mut reached: Option<u64> = None;
    let rounds = ctx.rng.random_range(2..5);
    for round in 0..rounds {
        let faults = if ctx.rng.random_bool(0.6) {
            let p = [0.0, 0.03, 0.15];
            ObjectFaults {
                put_fails: p[ctx.rng.random_range(0..3)],
                put_lost: p[ctx.rng.random_range(0..3)],
                slow_list: [Duration::ZERO, Duration::from_secs(3)][ctx.rng.random_range(0..2)],
            }
        } else {
            ObjectFaults::default()
        };
        ctx.record(&format!("round {round}: faults {faults:?}"));
        ctx.world.objects().arm(faults, "backup");
        let mode = if ctx.rng.random_bool(0.2) {
            Mode::Full
        } else {
            Mode::Auto
        };
        let job = BackupJob::new(URL, mode, &mut ctx.rng);
        let keep = job.keep_generations;
        // The live generation and those older than it, before the run: what it may keep (the
        // generations above the live one are leftovers of a failed run, which it removes).
        let held_before = keys(ctx)?;
        let live_before = if held_before.iter().any(|k| k == "db/CURRENT") {
            layout::parse_generation(&current(ctx)?)
        } else {
            None
        };
        let before: Vec<u64> = generations(&held_before)
            .into_iter()
            .filter(|&g| live_before.is_some_and(|l| g <= l))
            .collect();
        let run = sim.backup(ctx, job)?;
        ctx.world.objects().arm(ObjectFaults::default(), "backup");
        let outcome = match &run.outcome {
            Ok(s) => format!("{} to tx {}", s.kind.name(), s.to_tx),
            Err(f) => format!("failed, exit {}: {}", f.exit, f.message),
        };
        ctx.record(&format!("round {round}: {outcome}"));
        if let Ok(s) = &run.outcome {
            // Invariant 1: never older than the server when the run began.
            if s.to_tx < run.began_after {
                return Err(format!(
                    "SIM-40, BK-52: round {round} backed up to tx {}, but the server had tx {} when it began",
                    s.to_tx, run.began_after
                )
                .into());
            }
            // Invariant 4: with a backup there, `auto` takes an incremental, unless the
            // server's logs are gone or the segments reached their bound.
            let full_allowed = matches!(
                s.full_reason,
                Some(FullReason::LogsPruned { .. } | FullReason::Consolidate { .. })
            );
            if mode == Mode::Auto && reached.is_some() && s.kind == Kind::Full && !full_allowed {
                return Err(format!(
                    "SIM-40, BK-25: round {round} took a full backup of a target that holds one ({:?})",
                    s.full_reason
                )
                .into());
            }
        }
        if let Err(f) = &run.outcome {
            if f.exit != 1 {
                return Err(format!(
                    "OBJ-10: a failure of the object store is exit 1, not {}: {}",
                    f.exit, f.message
                )
                .into());
            }
        }

        // 1, 2: restorable, to the source's state, never older.
        let to = std::path::PathBuf::from(format!("/scratch/objects-{round}"));
        let after = format!("round {round} ({outcome})");
        let restored = restore_live(ctx, &mut sim, to, "OBJ-8", &after)?;
        let digests = sim.digests();
        match restored {
            None if reached.is_some() || run.outcome.is_ok() => {
                return Err(format!(
                    "SIM-40, OBJ-7: after round {round} ({outcome}) the target holds no backup"
                )
                .into())
            }
            None => {}
            Some((tx, digest)) => {
                let source = digests.get(&tx).map(|d| d.to_string());
                if source.as_deref() != Some(digest.as_str()) {
                    return Err(format!(
                        "SIM-40, OBJ-4: the backup restores to tx {tx} with digest {digest}, but the source's there is {source:?}"
                    )
                    .into());
                }
                if let Some(prev) = reached.filter(|&prev| tx < prev) {
                    return Err(format!(
                        "SIM-40, OBJ-7: round {round} ({outcome}) left a backup at tx {tx}, older than tx {prev} before it"
                    )
                    .into());
                }
                if let Ok(s) = &run.outcome {
                    if s.to_tx != tx || s.digest.to_string() != digest {
                        return Err(format!(
                            "SIM-40, OBJ-7: the run reported tx {} digest {}, the backup restores to tx {tx} digest {digest}",
                            s.to_tx, s.digest
                        )
                        .into());
                    }
                }
                reached = Some(tx);
                earlier_tx(ctx, &mut sim, round, tx)?;
            }
        }

        // 3: no lease left; after a success, only the pointer, the live generation and the older
        // ones `--keep-generations` keeps.
        let keys = keys(ctx)?;
        if keys.iter().any(|k| k.ends_with("/LEASE")) {
            return Err(format!(
                "SIM-40, OBJ-5, OBJ-13: round {round} ({outcome}) ended and left its lease: {keys:?}"
            )
            .into());
        }
        if run.outcome.is_ok() {
            let current = current(ctx)?;
            let live = layout::parse_generation(&current)
                .ok_or(format!("SIM-40, OBJ-7: the pointer names {current:?}"))?;
            // The newest `keep - 1` of the generations older than the live one (PIT-12).
            let mut kept: Vec<u64> = before.iter().copied().filter(|&g| g < live).collect();
            kept.sort_unstable_by(|a, b| b.cmp(a));
            kept.truncate(keep as usize - 1);
            let allowed = |k: &str| {
                k == "db/CURRENT"
                    || std::iter::once(live)
                        .chain(kept.iter().copied())
                        .any(|g| k.starts_with(&format!("db/{}/", layout::generation_name(g))))
            };
            if let Some(stray) = keys.iter().find(|k| !allowed(k)) {
                return Err(format!(
                    "SIM-40, OBJ-7, OBJ-9, PIT-12: after a successful run with --keep-generations {keep} the target still holds {stray} beside {current} and {kept:?}"
                )
                .into());
            }
            let held = generations(&keys);
            if held.len() != kept.len() + 1 {
                return Err(format!(
                    "SIM-40, OBJ-9, PIT-12: after a successful run with --keep-generations {keep} the target holds generations {held:?}; it should keep {live} and {kept:?} (it held {:?}, live {live_before:?})",
                    generations(&held_before)
                )
                .into());
            }
        }
        if let Some(tx) = reached.filter(|_| ctx.rng.random_bool(0.25)) {
            aggregate(ctx, &mut sim, round, faults, tx)?;
        }
        if ctx.rng.random_bool(0.15) {
            refused(ctx, &mut sim, round)?;
        }
        let n = ctx.rng.random_range(0..15);
        sim.commits(ctx, n)?;
    }
    let counts = ctx.world.objects().counts();
    ctx.record(&format!("object store faults: {counts:?}"));
    Ok(())
}

/// 6: a run into a prefix that holds an object no backup has is refused with exit 3 (BK-13,
/// OBJ-10) and leaves every object as it was, byte for byte (invariant 3); the object is then
/// taken away again.
fn refused(ctx: &mut ScenarioCtx, sim: &mut BackupSim, round: u32) -> turmoil::Result {
    let store = ctx.world.objects().bucket(BUCKET);
    let planted = object_store::path::Path::from("db/notes.txt");
    futures::executor::block_on(store.put(&planted, b"not a backup".to_vec().into()))?;
    let before = contents(ctx)?;
    let job = BackupJob::new(URL, Mode::Auto, &mut ctx.rng);
    let run = sim.backup(ctx, job)?;
    ctx.record(&format!(
        "round {round}: a foreign object: {:?}",
        run.outcome.as_ref().map(|s| s.to_tx)
    ));
    match &run.outcome {
        Err(f) if f.exit == 3 => {}
        other => {
            return Err(format!(
                "SIM-40, BK-13: a run into a prefix holding notes.txt ended {other:?}, not exit 3"
            )
            .into())
        }
    }
    if contents(ctx)? != before {
        return Err("SIM-40, BK-17: a refused run changed the target's objects"
            .to_string()
            .into());
    }
    futures::executor::block_on(store.delete(&planted))?;
    Ok(())
}

/// Every object of the bucket, by key, with its bytes.
fn contents(ctx: &ScenarioCtx) -> turmoil::Result<Vec<(String, Vec<u8>)>> {
    let store = ctx.world.objects().bucket(BUCKET);
    let mut out = Vec::new();
    for key in keys(ctx)? {
        let bytes = futures::executor::block_on(async {
            store.get(&key.as_str().into()).await?.bytes().await
        })?;
        out.push((key, bytes.to_vec()));
    }
    Ok(out)
}

/// Restores the target's live generation into `to` as `neo4j-admin restore --from` does
/// (OBJ-8): `None` when it holds no backup, else the tx and recomputed digest restored. A
/// failure is an error naming `rule` and what the restore came `after`.
fn restore_live(
    ctx: &mut ScenarioCtx,
    sim: &mut BackupSim,
    to: std::path::PathBuf,
    rule: &str,
    after: &str,
) -> turmoil::Result<Option<(u64, String)>> {
    let job = Job::RestoreObjects {
        url: URL.into(),
        to,
        until_tx: None,
    };
    match sim.call(ctx, job)? {
        Reply::Objects(r) => Ok(r.map_err(|e| {
            format!("SIM-40, {rule}: after {after} the backup does not restore: {e}")
        })?),
        other => Err(format!("a restore job answered {other:?}").into()),
    }
}

/// 5: `neo4j-admin aggregate` (OBJ-20) under `faults`, of a target that restores to tx `tx`:
/// it fails only with exit 1, and afterwards the target restores to the same state, with no
/// lease left.
fn aggregate(
    ctx: &mut ScenarioCtx,
    sim: &mut BackupSim,
    round: u32,
    faults: ObjectFaults,
    tx: u64,
) -> turmoil::Result {
    ctx.world.objects().arm(faults, "aggregate");
    let work = std::path::PathBuf::from(format!("/scratch/aggregate-{round}"));
    let reply = sim.call(
        ctx,
        Job::Aggregate {
            url: URL.into(),
            work,
        },
    )?;
    ctx.world.objects().arm(ObjectFaults::default(), "backup");
    let Reply::Aggregated(done) = reply else {
        return Err(format!("an aggregate job answered {reply:?}").into());
    };
    ctx.record(&format!("round {round}: aggregate {done:?}"));
    match &done {
        Ok(Some(at)) if *at != tx => {
            return Err(format!(
                "SIM-40, OBJ-20: round {round}'s aggregate made a generation at tx {at}, of a backup at tx {tx}"
            )
            .into())
        }
        Err((exit, message)) if *exit != 1 => {
            return Err(format!(
                "SIM-40, OBJ-10, OBJ-20: an aggregate failed with exit {exit}, not 1: {message}"
            )
            .into())
        }
        _ => {}
    }
    let to = std::path::PathBuf::from(format!("/scratch/objects-{round}-aggregated"));
    let after = format!("round {round}'s aggregate ({done:?})");
    let restored = restore_live(ctx, sim, to, "OBJ-20", &after)?;
    let source = sim.digests().get(&tx).map(|d| d.to_string());
    if restored
        .as_ref()
        .map(|(at, digest)| (*at, Some(digest.clone())))
        != Some((tx, source))
    {
        return Err(format!(
            "SIM-40, OBJ-20: after round {round}'s aggregate ({done:?}) the backup restores to {restored:?}, not the source's state at tx {tx}"
        )
        .into());
    }
    let keys = keys(ctx)?;
    if keys.iter().any(|k| k.ends_with("/LEASE")) {
        return Err(format!(
            "SIM-40, OBJ-5, OBJ-20: round {round}'s aggregate ended and left its lease: {keys:?}"
        )
        .into());
    }
    Ok(())
}

/// 4: restored to an earlier tx (OBJ-18), the live generation reaches every tx from its full
/// backup's (its manifest's first tx) to `last`, each the source's state there, and none
/// before (unless an older generation holds it): a tx picked from the seed, on every other
/// round.
fn earlier_tx(
    ctx: &mut ScenarioCtx,
    sim: &mut BackupSim,
    round: u32,
    last: u64,
) -> turmoil::Result {
    if !ctx.rng.random_bool(0.5) {
        return Ok(());
    }
    let first = live_manifest(ctx)?.first_tx;
    let refused = first > 0 && ctx.rng.random_bool(0.2);
    let tx = if refused {
        first - 1
    } else {
        ctx.rng.random_range(first..=last)
    };
    let to = std::path::PathBuf::from(format!("/scratch/objects-{round}-at-{tx}"));
    let reply = sim.call(
        ctx,
        Job::RestoreObjects {
            url: URL.into(),
            to,
            until_tx: Some(tx),
        },
    )?;
    let Reply::Objects(restored) = reply else {
        return Err(format!("a restore job answered {reply:?}").into());
    };
    ctx.record(&format!(
        "round {round}: restore to tx {tx} (generation from tx {first}): {restored:?}"
    ));
    match restored {
        Err(e) if refused && e.contains(&format!("cannot be restored to tx {tx}")) => Ok(()),
        // Before the live generation's first tx, an older one a failed run left may hold it.
        Ok(Some((at, digest)))
            if at == tx
                && sim.digests().get(&tx).map(|d| d.to_string()) == Some(digest.clone()) =>
        {
            Ok(())
        }
        other => Err(format!(
            "SIM-40, OBJ-18: a restore to tx {tx} of a generation from tx {first} to tx {last} gave {other:?}, {}",
            if refused { "not a refusal" } else { "not the source's state there" }
        )
        .into()),
    }
}

/// The live generation's manifest, read straight from the in-memory store (no faults).
fn live_manifest(ctx: &ScenarioCtx) -> turmoil::Result<online_backup::backup::manifest::Manifest> {
    let current = current(ctx)?;
    let store = ctx.world.objects().bucket(BUCKET);
    let bytes = futures::executor::block_on(async {
        store
            .get(&format!("db/{current}/MANIFEST").as_str().into())
            .await?
            .bytes()
            .await
    })?;
    Ok(online_backup::backup::manifest::Manifest::decode(&bytes)?)
}

/// Every key in the bucket, read straight from the in-memory store (no faults).
fn keys(ctx: &ScenarioCtx) -> turmoil::Result<Vec<String>> {
    let store = ctx.world.objects().bucket(BUCKET);
    let keys: Vec<String> = futures::executor::block_on(
        store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect(),
    )?;
    Ok(keys)
}

/// The generations whose objects `keys` hold, once each, in order.
fn generations(keys: &[String]) -> Vec<u64> {
    let mut held: Vec<u64> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("db/")?.split('/').next())
        .filter_map(layout::parse_generation)
        .collect();
    held.sort_unstable();
    held.dedup();
    held
}

/// The generation the pointer names.
fn current(ctx: &ScenarioCtx) -> turmoil::Result<String> {
    let store = ctx.world.objects().bucket(BUCKET);
    let bytes = futures::executor::block_on(async {
        store.get(&"db/CURRENT".into()).await?.bytes().await
    })?;
    Ok(String::from_utf8_lossy(&bytes).trim_end().to_string())
}
