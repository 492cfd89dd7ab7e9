//! `neo4j-admin restore`: a verified copy of a backup into a store directory (spec/admin.md,
//! ADM-6 .. ADM-8).
//!
//! Owns: choosing the generation and tx to restore (the live one at its last tx, or with
//! `--until-tx`/`--until-time` the newest that holds the point, PIT-10), checking the backup
//! (its manifest first, MF-10), copying it durably into a new generation of the target,
//! rewinding the copy when restoring to an earlier tx (through `history`, PIT-7), checking the
//! copy against the digest expected, and switching the target's pointer to it.
//! From an object store (OBJ-8), the generation is first downloaded into a staging directory
//! beside the target ([`stage_objects`]), then restored from there: the live one, or with
//! `--until-tx`/`--until-time` the newest that holds the point, its staged logs cut right after
//! the tx (OBJ-18), so the restore's recovery stops there.
//! Must not touch: the network (but an object store's, through `Env::objects`), or the backup's files beyond opening it as a store (which
//! recovers and checkpoints it, as every opener does). The target is never left broken: the
//! copy becomes live only through the pointer switch (BK-32), so a crash leaves the previous
//! target, and the next restore removes the unfinished generation (BK-36).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backup::history::{self, Restorable, Span};
use crate::backup::manifest::{verify, Manifest, ManifestError};
use crate::backup::objects::{Lease, ObjectTarget, ObjectUrl, ObjectsError};
use crate::backup::target::{older_generations, Holds, Target, TargetError};
use crate::digest::Digest;
use crate::io::{sibling_with_suffix, Blocking, Clock, Env, Fs, OpenMode};
use crate::progress::Phase;
use crate::store::check::{check_open_with_progress, check_with_progress, CheckReport};
use crate::store::format::{FormatVersion, RecordKind};
use crate::store::layout::{self, generation_name};
use crate::store::log::{LogReader, TxEntry};
use crate::store::meta::{Meta, MetaError, StoreId};
use crate::store::run::TxRun;
use crate::store::{initialize, lock_existing, Store, StoreError, StoreOptions};
use crate::units;

/// Bytes copied per read and write.
const COPY_CHUNK: usize = 1 << 20;

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the backup in {dir} is not consistent ({count} problem(s), the first: {first}); nothing was restored")]
    Inconsistent {
        dir: String,
        count: u64,
        first: String,
    },
    /// The backup's files do not match its manifest (MF-10).
    #[error("the backup in {dir} is damaged ({count} finding(s) against its manifest, the first: {first}); nothing was restored")]
    Damaged {
        dir: String,
        count: usize,
        first: String,
    },
    #[error("the backup in {dir}: {source}; nothing was restored")]
    Manifest {
        dir: String,
        #[source]
        source: ManifestError,
    },
    /// `--until-tx` or `--until-time` names a state no generation can be restored to (PIT-10).
    #[error("the backup in {dir} cannot be restored to {until}: it can be restored to {kept}; nothing was restored")]
    NotKept {
        dir: String,
        until: String,
        kept: String,
    },
    #[error("{0} already holds a store; add --force to replace it")]
    NotEmpty(String),
    #[error("{dir} holds files that are not a store ({why}); restore into an empty directory")]
    Foreign { dir: String, why: String },
    #[error("{0}")]
    Target(TargetError),
    #[error("the restored copy in {dir} does not check: digest {copy} where the backup's is {backup}; the target was left as it was")]
    CopyDiffers {
        dir: String,
        copy: String,
        backup: String,
    },
    /// The object store the backup is in failed or refused (OBJ-8, OBJ-10).
    #[error("{0}")]
    Objects(#[from] ObjectsError),
    /// The staging directory of a restore from an object store is there already (OBJ-8).
    #[error("{0} exists (left by an interrupted restore?); remove it and run again")]
    StagingExists(String),
    #[error("the restored copy in {dir} does not check: its metadata: {source}; the target was left as it was")]
    CopyMeta {
        dir: String,
        #[source]
        source: MetaError,
    },
}

impl RestoreError {
    /// The exit code of `neo4j-admin restore` (ADM-8).
    pub fn exit_code(&self) -> u8 {
        match self {
            RestoreError::Inconsistent { .. } | RestoreError::Damaged { .. } => 3,
            RestoreError::Objects(e) => e.exit_code(),
            RestoreError::Manifest {
                source: ManifestError::Damaged(_),
                ..
            } => 3,
            _ => 1,
        }
    }
}

/// What was restored.
#[derive(Clone, Debug)]
pub struct Restored {
    /// The restored copy's check report: the backup's digest and counts, or those its logs
    /// carry at the tx restored to.
    pub report: CheckReport,
    /// Where the restored store's files are (the target's live generation).
    pub live: PathBuf,
    pub bytes: u64,
}

/// The earlier state `--until-tx` or `--until-time` asks for (PIT-8, PIT-9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// The state right after this tx committed.
    Tx(u64),
    /// The state before the first tx committed after this time (milliseconds since the epoch).
    Time(u64),
}

impl std::fmt::Display for Until {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Until::Tx(tx) => write!(f, "tx {tx}"),
            Until::Time(ms) => write!(f, "{}", units::time_millis(*ms)),
        }
    }
}

/// The generation a restore reads, and the tx it restores to.
struct Chosen {
    store: Store,
    /// The tx to restore to, and what the generation can be restored to.
    tx: u64,
    range: Restorable,
}

/// Restores the backup in `from` into `to` (ADM-6, ADM-7), at its last tx, or with `until` at
/// an earlier one (PIT-8 .. PIT-11).
#[allow(clippy::too_many_arguments)]
pub fn restore(
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    par: &dyn Blocking,
    from: &Path,
    to: &Path,
    force: bool,
    until: Option<Until>,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<Restored, RestoreError> {
    // The target first: a refusal costs nothing and changes nothing. It is judged without
    // creating it, and created (and locked) only once the backup has opened, so a restore from
    // a missing backup leaves a missing target missing (ADM-7).
    judge_target(Target::inspect(fs.clone(), to), to, force)?;
    // The backup, locked while it is copied, checked before a byte is.
    let chosen = choose(&fs, &clock, from, until)?;
    let store = chosen.store;
    let mut target = judge_target(Target::open(fs.clone(), to), to, force)?;
    // The manifest first, when the backup has one (MF-10): damage is named by file and block
    // at the speed of reading the files, before the consistency check reads them again.
    let shown = || from.display().to_string();
    let manifest = Manifest::read(&*fs, store.dir()).map_err(|source| RestoreError::Manifest {
        dir: shown(),
        source,
    })?;
    if let Some(manifest) = manifest {
        let found =
            verify(&*fs, store.dir(), &manifest).map_err(|source| RestoreError::Manifest {
                dir: shown(),
                source,
            })?;
        if let Some(first) = found.findings.first() {
            return Err(RestoreError::Damaged {
                dir: shown(),
                count: found.findings.len(),
                first: first.to_string(),
            });
        }
    }
    let report = check_open_with_progress(&store, par, &mut |done, total| {
        progress(Phase::CheckBackup, done, total)
    })?;
    if !report.consistent {
        return Err(RestoreError::Inconsistent {
            dir: from.display().to_string(),
            count: report.finding_count,
            first: report.findings.first().cloned().unwrap_or_default(),
        });
    }
    let source_dir = store.dir().to_path_buf();
    let (store_id, format) = (store.meta().store_id, store.meta().format);
    // A checkpoint, so the files hold every tx and recovery of the copy replays nothing.
    let _source_lock = store.close_keeping_lock()?;

    target.clean().map_err(RestoreError::Target)?;
    let (n, generation) = target.new_generation().map_err(RestoreError::Target)?;
    let earlier = chosen.tx < chosen.range.to_tx;
    let copied = copy_store_files(
        &*fs,
        &source_dir,
        &generation,
        earlier,
        &mut |done, total| progress(Phase::CopyFiles, done, total),
    )
    .and_then(|bytes| {
        // The digest the copy must have: the backup's, or the one its logs carry at the tx.
        let expected = if earlier {
            let at = RewindTo {
                fs: &fs,
                clock: &clock,
                source: &source_dir,
                copy: &generation,
                store_id,
                format,
            };
            at.rewind(&chosen.range, chosen.tx)?.to_string()
        } else {
            report.digest.clone()
        };
        let copy =
            check_with_progress(fs.clone(), clock.clone(), &generation, par, &mut |d, t| {
                progress(Phase::CheckCopy, d, t)
            })?;
        if !copy.consistent || copy.digest != expected || copy.last_committed_tx != chosen.tx {
            return Err(RestoreError::CopyDiffers {
                dir: to.display().to_string(),
                copy: copy.digest,
                backup: expected,
            });
        }
        let meta = Meta::read(&*fs, &generation).map_err(|source| RestoreError::CopyMeta {
            dir: to.display().to_string(),
            source,
        })?;
        Ok((bytes, meta, copy))
    });
    let (bytes, meta, copy) = match copied {
        Ok(v) => v,
        Err(e) => {
            target.discard(n);
            return Err(e);
        }
    };
    target.switch_to(n, meta, 1).map_err(RestoreError::Target)?;
    Ok(Restored {
        report: copy,
        live: generation,
        bytes,
    })
}

/// The restore's target as it may be used (ADM-7): a directory of other files is foreign, and
/// one holding a store is replaced only with `force`.
fn judge_target(
    target: Result<Target, TargetError>,
    to: &Path,
    force: bool,
) -> Result<Target, RestoreError> {
    let target = target.map_err(|e| match e {
        TargetError::NotABackup { dir, why } => RestoreError::Foreign { dir, why },
        other => RestoreError::Target(other),
    })?;
    if matches!(target.holds(), Holds::Backup { .. }) && !force {
        return Err(RestoreError::NotEmpty(to.display().to_string()));
    }
    Ok(target)
}

/// Where a restore into `to` from an object store stages what it downloads (OBJ-8).
pub fn staging_dir(to: &Path) -> PathBuf {
    sibling_with_suffix(to, ".staging")
}

/// Downloads the generation of the object store backup `url` to restore from into
/// [`staging_dir`] of `to`, under the target's lease, each object checked against the
/// manifest as it arrives (OBJ-8); then [`restore`] restores from there, without `until`, and
/// [`remove_staging`] removes it. Without `until` that is the live generation; with it, the
/// newest that can be restored to the point asked, its logs cut right after the tx it means,
/// so the restore's recovery stops there (OBJ-18). The target is judged first, so a refusal
/// downloads nothing; a failed download or a refusal leaves no staging directory.
pub async fn stage_objects(
    env: &Env,
    url: &ObjectUrl,
    to: &Path,
    force: bool,
    until: Option<Until>,
) -> Result<PathBuf, RestoreError> {
    judge_target(Target::inspect(env.fs.clone(), to), to, force)?;
    let staging = staging_dir(to);
    let there = env
        .fs
        .metadata(&staging)
        .map_err(|e| StoreError::io(format!("reading {}", staging.display()), e))?;
    if there.is_some() {
        return Err(RestoreError::StagingExists(staging.display().to_string()));
    }
    let staged = match until {
        None => crate::backup::objects::stage(env, url, &staging)
            .await
            .map(drop)
            .map_err(RestoreError::from),
        Some(until) => {
            crate::backup::objects::under_lease(
                env,
                url,
                async |target: &mut ObjectTarget, lease: &mut Lease| {
                    stage_until(env, target, lease, &staging, until).await
                },
            )
            .await
        }
    };
    if staged.is_err() {
        remove_staging(&*env.fs, &staging);
    }
    staged.map(|()| staging)
}

/// Downloads into `staging` the newest finished generation of `target` (the live one, then the
/// ones `--keep-generations` kept) that can be restored to `until`, and cuts its logs right
/// after the tx that means (OBJ-18). A generation is chosen for `--until-tx` by its manifest
/// alone (every tx from its first to its last); for `--until-time` each is downloaded, newest
/// first, until one holds a tx committed by then, since only its logs know the times.
async fn stage_until(
    env: &Env,
    target: &ObjectTarget,
    lease: &mut Lease,
    staging: &Path,
    until: Until,
) -> Result<(), RestoreError> {
    let fs = &env.fs;
    let (live, live_manifest) = crate::backup::objects::live_generation(target)?;
    let mut ranges: Vec<(String, Span)> = Vec::new();
    for &n in target.generations().iter().rev().filter(|&&n| n <= live) {
        let manifest = if n == live {
            live_manifest.clone()
        } else {
            match target.manifest_of(n).await {
                Ok(Some(m)) => m,
                // Without a manifest a generation is not finished: a leftover (BK-36).
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("{}/{}: {e}", target.url(), generation_name(n));
                    continue;
                }
            }
        };
        let name = generation_name(n);
        let (first, last) = (manifest.first_tx, manifest.last_tx);
        if let Until::Tx(tx) = until {
            if !(first..=last).contains(&tx) {
                ranges.push((name, Span::replayable(first, last)));
                continue;
            }
        }
        crate::backup::objects::download_generation(env, target, n, &manifest, staging, lease)
            .await?;
        let range = history::replayable(&**fs, staging, first, last)?;
        let tx = match until {
            Until::Tx(tx) => Some(tx),
            Until::Time(ms) => history::tx_at_time(fs.clone(), staging, &range, ms)?,
        };
        if let Some(tx) = tx {
            // Every object was checked against the manifest as it arrived (the manifest itself
            // is not staged); what is cut now is cut on purpose.
            crate::store::log::cut_after(fs.clone(), staging, tx)?;
            return Ok(());
        }
        let times = history::time_range(fs.clone(), staging, &range)?;
        ranges.push((name, Span { range, times }));
        remove_staging(&**fs, staging);
    }
    Err(RestoreError::NotKept {
        dir: target.url().to_string(),
        until: until.to_string(),
        kept: describe_ranges(&ranges),
    })
}

/// Removes a restore's staging directory (OBJ-8); a failure is logged, not fatal: the restore
/// itself is done or refused by then.
pub fn remove_staging(fs: &dyn Fs, staging: &Path) {
    if let Ok(Some(_)) = fs.metadata(staging) {
        let removed = fs
            .remove_dir_all(staging)
            .and_then(|()| fs.sync_dir(crate::io::parent_of(staging)));
        if let Err(e) = removed {
            tracing::warn!("could not remove {}: {e}", staging.display());
        }
    }
}

/// Opens the generation of `from` to restore from, and the tx to restore to (PIT-10): without
/// `until`, the live one at its last tx; with it, the newest generation (the live one, then
/// the older ones `--keep-generations` kept) that can be restored to what `until` means.
fn choose(
    fs: &Arc<dyn Fs>,
    clock: &Arc<dyn Clock>,
    from: &Path,
    until: Option<Until>,
) -> Result<Chosen, RestoreError> {
    let mut guard = lock_existing(&**fs, from)?;
    let candidates: Vec<PathBuf> = match (until, layout::read_pointer(&**fs, from)?) {
        (None, _) => vec![layout::resolve(&**fs, from)?],
        (Some(_), None) => vec![from.to_path_buf()],
        (Some(_), Some(live)) => {
            let older = older_generations(&**fs, from, live)
                .map_err(|e| StoreError::io(format!("reading {}", from.display()), e))?;
            let mut dirs = vec![layout::resolve(&**fs, from)?];
            dirs.extend(older.into_iter().map(|g| from.join(generation_name(g))));
            dirs
        }
    };
    let mut ranges = Vec::new();
    for dir in candidates {
        let store = Store::open_locked(
            fs.clone(),
            clock.clone(),
            &dir,
            &StoreOptions::default(),
            guard,
        )?;
        let last = store.status().last_committed_tx;
        let range = history::restorable(&**fs, store.dir(), last)?;
        let tx = match until {
            None => Some(last),
            Some(Until::Tx(tx)) => Some(tx).filter(|&tx| range.holds(tx)),
            Some(Until::Time(ms)) => history::tx_at_time(fs.clone(), store.dir(), &range, ms)?,
        };
        if let Some(tx) = tx {
            return Ok(Chosen { store, tx, range });
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let times = history::time_range(fs.clone(), store.dir(), &range)?;
        ranges.push((name, Span { range, times }));
        guard = store.close_keeping_lock()?;
    }
    Err(RestoreError::NotKept {
        dir: from.display().to_string(),
        until: until.map_or(String::new(), |u| u.to_string()),
        kept: describe_ranges(&ranges),
    })
}

/// What the generations can be restored to, for a refusal: "tx 10 to tx 25 (committed
/// <time> to <time>) in generation-3; ...".
fn describe_ranges(ranges: &[(String, Span)]) -> String {
    ranges
        .iter()
        .map(|(name, Span { range: r, times })| {
            let txs = if r.from_tx == r.to_tx {
                format!("tx {} only", r.to_tx)
            } else {
                format!("tx {} to tx {}", r.from_tx, r.to_tx)
            };
            let times = times.map_or(String::new(), |(a, b)| {
                format!(
                    " (committed {} to {})",
                    units::time_millis(a),
                    units::time_millis(b)
                )
            });
            format!("{txs}{times} in {name}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Brings a copy of a generation's record files back to an earlier tx (PIT-7).
struct RewindTo<'a> {
    fs: &'a Arc<dyn Fs>,
    clock: &'a Arc<dyn Clock>,
    /// The generation copied: its undo segments and logs.
    source: &'a Path,
    /// The copy of its record files.
    copy: &'a Path,
    store_id: StoreId,
    format: FormatVersion,
}

impl RewindTo<'_> {
    /// Rewinds the copy to the newest undo segment's tx at or before `tx`, makes it a store at
    /// that tx, and replays the generation's logs into it up to `tx`. Returns the digest the
    /// logs say the source had at `tx`.
    fn rewind(&self, range: &Restorable, tx: u64) -> Result<Digest, RestoreError> {
        let fs = &**self.fs;
        let (at, state) = history::rewind(fs, self.source, self.copy, self.format, range, tx)?
            .ok_or_else(|| StoreError::Corrupt(format!("tx {tx} is the backup's last")))?;
        initialize(fs, self.copy, self.store_id, self.format, state, at)?;
        let mut store = Store::open(
            self.fs.clone(),
            self.clock.clone(),
            self.copy,
            &StoreOptions::default(),
        )?;
        let mut digest = state.digest;
        if at < tx {
            let mut reader = LogReader::open(self.fs.clone(), self.source, at + 1)?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("the backup's logs no longer hold tx {}", at + 1))
                })?
                .reader;
            let mut run = replay_run();
            loop {
                let entry = reader.next(tx)?;
                if entry.is_none() || run.is_full() {
                    store.apply_committed_batch(&run.take())?;
                }
                let Some(entry) = entry else { break };
                digest = entry.after.digest;
                push_replayed(&mut run, entry);
            }
        }
        if store.status().last_committed_tx != tx {
            return Err(StoreError::Corrupt(format!(
                "the backup's logs end at tx {} before tx {tx}",
                store.status().last_committed_tx
            ))
            .into());
        }
        store.close()?;
        Ok(digest)
    }
}

/// A replay applies at most this many transactions, or this many images, per durable run
/// (PIT-7).
const REPLAY_TXS: usize = 4096;
const REPLAY_IMAGES: usize = 1 << 16;

/// The transactions a rewind has read and not yet applied: one durable run, bounded by
/// [`REPLAY_TXS`] and [`REPLAY_IMAGES`] so memory stays bounded whatever the range replayed.
fn replay_run() -> TxRun {
    TxRun::new(REPLAY_TXS, REPLAY_IMAGES)
}

/// Adds a transaction to a rewind's run, weighed by its record images.
fn push_replayed(run: &mut TxRun, entry: TxEntry) {
    let images = entry.records.len();
    run.push(entry, images);
}

/// Copies the files of the store in `from` into `to` (every one but its undo segments and
/// manifest, or with `records_only` the record files alone, for a rewind), streaming, each
/// synced, then the directory synced. Returns the bytes copied.
fn copy_store_files(
    fs: &dyn Fs,
    from: &Path,
    to: &Path,
    records_only: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, RestoreError> {
    let io = |what: String| move |e| StoreError::io(what, e);
    let mut files = Vec::new();
    for entry in fs
        .read_dir(from)
        .map_err(io(format!("reading {}", from.display())))?
    {
        let wanted = if records_only {
            RecordKind::ALL.iter().any(|k| k.file_name() == entry.name)
        } else {
            entry.name.starts_with("neostore.")
                && !entry.name.ends_with(".tmp")
                && history::parse_undo_name(&entry.name).is_none()
        };
        if entry.is_dir || !wanted {
            continue;
        }
        let src_path = from.join(&entry.name);
        let src = fs
            .open(&src_path, OpenMode::Read)
            .map_err(io(format!("opening {}", src_path.display())))?;
        let len = src
            .len()
            .map_err(io(format!("reading {}", src_path.display())))?;
        files.push((entry.name, src, len));
    }
    let total: u64 = files.iter().map(|(_, _, len)| len).sum();
    let mut done = 0;
    let mut buf = vec![0u8; COPY_CHUNK];
    for (name, src, len) in files {
        let src_path = from.join(&name);
        let dst_path = to.join(&name);
        let dst = fs
            .open(&dst_path, OpenMode::CreateNew)
            .map_err(io(format!("creating {}", dst_path.display())))?;
        let mut at = 0;
        while at < len {
            let want = ((len - at) as usize).min(COPY_CHUNK);
            src.read_exact_at(&mut buf[..want], at)
                .map_err(io(format!("reading {}", src_path.display())))?;
            dst.write_all_at(&buf[..want], at)
                .map_err(io(format!("writing {}", dst_path.display())))?;
            at += want as u64;
            done += want as u64;
            progress(done, total);
        }
        dst.sync()
            .map_err(io(format!("syncing {}", dst_path.display())))?;
    }
    fs.sync_dir(to)
        .map_err(io(format!("syncing {}", to.display())))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::NodeRecord;
    use crate::store::log::{RecordImage, TxState};

    /// A transaction carrying `images` record images.
    fn tx(images: usize) -> TxEntry {
        TxEntry {
            tx_id: 1,
            timestamp_millis: 0,
            after: TxState::empty(),
            records: (0..images as u64)
                .map(|id| RecordImage::Node(id, NodeRecord::unused()))
                .collect(),
        }
    }

    /// Pushes `txs` transactions of `images` images each into `run`, and says whether it is
    /// full then.
    fn full_after(run: &mut TxRun, txs: usize, images: usize) -> bool {
        for _ in 0..txs {
            push_replayed(run, tx(images));
        }
        run.is_full()
    }

    #[test]
    fn pit_7_a_replay_run_is_bounded_by_its_transactions_and_images() {
        let mut run = replay_run();
        assert!(!run.is_full(), "PIT-7: an empty run is not full");
        assert!(
            !full_after(&mut run, REPLAY_TXS - 1, 1),
            "PIT-7: {} transactions of one image each are not a full run",
            REPLAY_TXS - 1
        );
        assert!(
            full_after(&mut run, 1, 1),
            "PIT-7: {REPLAY_TXS} transactions are a full run, whatever their images"
        );
        assert_eq!(
            (run.take().len(), run.is_full()),
            (REPLAY_TXS, false),
            "PIT-7: taking the run hands over every transaction and leaves it empty"
        );
        assert!(
            !full_after(&mut run, 1, REPLAY_IMAGES - 1),
            "PIT-7: one image short of the bound is not a full run"
        );
        assert!(
            full_after(&mut run, 1, 1),
            "PIT-7: {REPLAY_IMAGES} images are a full run, in two transactions"
        );
        assert_eq!(run.take().len(), 2, "PIT-7: the run held both transactions");
        assert!(
            !full_after(&mut run, 1, 0),
            "PIT-7: a taken run counts its images afresh"
        );
    }
}
