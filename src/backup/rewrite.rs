//! The two rewrites of a backup in an object store (spec/objects.md): `neo4j-admin upgrade
//! s3://...` (OBJ-19) brings it to the current store format, as `neo4j-admin upgrade DIR` brings
//! a directory (ADM-5); `neo4j-admin aggregate s3://...` (OBJ-20) folds the transactions its
//! log objects hold into its record files, so a restore replays none.
//!
//! Owns: the steps both take, under the target's lease: the live generation downloaded into a
//! local working directory and checked against its manifest, recovered (and upgraded) and
//! checked there, then uploaded as a new generation whose pointer switch is the commit point.
//! Must not touch: the generations present. Objects are never rewritten (OBJ-3), so the
//! rewritten store is a new generation, and the previous live one is kept as an older one
//! (OBJ-9), never removed here: the next backup run's `--keep-generations` decides. The
//! working directory is the caller's to name and is removed after.

use std::path::Path;

use crate::backup::manifest::{Manifest, Verification, BLOCK_SIZE, MANIFEST_FILE};
use crate::backup::objects::{
    download_generation, live_generation, put_object, under_lease, Lease, ObjectTarget, ObjectUrl,
    ObjectsError, Upload,
};
use crate::io::{Env, OpenMode};
use crate::store::check::check_with_progress;
use crate::store::format::{FormatVersion, RecordKind};
use crate::store::layout::generation_name;
use crate::store::log::{LogHeader, HEADER_SIZE, LOG_PREFIX};
use crate::store::meta::{Checkpoint, Meta, META_FILE};
use crate::store::upgrade::{upgrade, UpgradeOutcome};
use crate::store::{Store, StoreError, StoreOptions};

/// Bytes read from a local file per upload write.
const CHUNK: usize = 1 << 20;

/// Which rewrite of the live generation a run makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// To the current format (OBJ-19).
    Upgrade,
    /// Its logs folded into its record files, in the format it has (OBJ-20).
    Aggregate,
}

impl Rewrite {
    /// The rewrite as the verb of a sentence.
    fn doing(self) -> &'static str {
        match self {
            Rewrite::Upgrade => "upgrading",
            Rewrite::Aggregate => "aggregating",
        }
    }

    /// The rewritten copy, as the end of a sentence.
    fn done(self) -> &'static str {
        match self {
            Rewrite::Upgrade => "upgraded",
            Rewrite::Aggregate => "aggregated",
        }
    }
}

/// Why an object store's upgrade or aggregation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("{0}")]
    Objects(#[from] ObjectsError),
    /// The downloaded copy could not be rewritten or checked on this machine.
    #[error("{url}: {} its downloaded copy failed: {source}; nothing was changed", .rewrite.doing())]
    Local {
        url: String,
        rewrite: Rewrite,
        #[source]
        source: StoreError,
    },
    /// The rewritten copy does not check: the backup was damaged in a way its manifest did not
    /// show (exit 3).
    #[error("the backup in {url} does not check once {} ({count} problem(s), the first: {first}); nothing was changed", .rewrite.done())]
    Inconsistent {
        url: String,
        rewrite: Rewrite,
        count: u64,
        first: String,
    },
}

impl RewriteError {
    /// The exit code of `neo4j-admin upgrade s3://...` and `aggregate s3://...` (OBJ-10,
    /// OBJ-19, OBJ-20).
    pub fn exit_code(&self) -> u8 {
        match self {
            RewriteError::Objects(e) => e.exit_code(),
            RewriteError::Local { .. } => 1,
            RewriteError::Inconsistent { .. } => 3,
        }
    }
}

/// What an object store's upgrade or aggregation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RewriteOutcome {
    /// The live generation was in `from`; generation `generation`, at tx `tx`, is now live in
    /// the current format.
    Upgraded {
        from: FormatVersion,
        generation: u64,
        tx: u64,
    },
    /// The live generation is in the current format already: nothing was written.
    AlreadyCurrent(FormatVersion),
    /// The live generation's `replayed` transactions after its checkpoint are in the record
    /// files of generation `generation`, now live at tx `tx` (OBJ-20).
    Aggregated {
        replayed: u64,
        generation: u64,
        tx: u64,
    },
    /// The live generation's logs hold no transaction: nothing was written (OBJ-20).
    NothingToFold { tx: u64 },
}

/// Upgrades the backup in the object store `url` to [`FormatVersion::CURRENT`] (OBJ-19), or
/// folds its logs into its record files (OBJ-20), as `rewrite` says, using the local directory
/// `work`, which must not exist and is removed after.
pub async fn rewrite_objects(
    env: &Env,
    url: &ObjectUrl,
    work: &Path,
    rewrite: Rewrite,
) -> Result<RewriteOutcome, RewriteError> {
    let done = under_lease(
        env,
        url,
        async |target: &mut ObjectTarget, lease: &mut Lease| {
            rewrite_live(env, target, lease, work, rewrite).await
        },
    )
    .await;
    if let Ok(Some(_)) = env.fs.metadata(work) {
        if let Err(e) = env.fs.remove_dir_all(work) {
            tracing::warn!("could not remove {}: {e}", work.display());
        }
    }
    done
}

async fn rewrite_live(
    env: &Env,
    target: &mut ObjectTarget,
    lease: &mut Lease,
    work: &Path,
    rewrite: Rewrite,
) -> Result<RewriteOutcome, RewriteError> {
    let url = target.url().to_string();
    let (live, manifest) = live_generation(target)?;
    let manifest = manifest.clone();
    match rewrite {
        Rewrite::Upgrade if manifest.format == FormatVersion::CURRENT => {
            return Ok(RewriteOutcome::AlreadyCurrent(manifest.format));
        }
        Rewrite::Aggregate if holds_no_transaction(&manifest) => {
            return Ok(RewriteOutcome::NothingToFold {
                tx: manifest.last_tx,
            });
        }
        _ => {}
    }
    // What an interrupted run left goes first, as a run's start does (OBJ-7).
    target.clean(&*env.objects).await?;
    download_generation(env, target, live, &manifest, work, lease).await?;
    let local = |source: StoreError| RewriteError::Local {
        url: url.clone(),
        rewrite,
        source,
    };
    let checkpoint = Meta::read(&*env.fs, work)
        .map_err(|e| local(StoreError::Corrupt(format!("its metadata: {e}"))))?
        .checkpoint
        .last_tx;
    // Opening recovers the fuzzy copy (OBJ-4) and replays its logs into its record files;
    // closing checkpoints. The upgrade converts the records one for one and keeps the store id
    // and digest (ADM-5). The check proves the result.
    let from = match rewrite {
        Rewrite::Upgrade => {
            match upgrade(env.fs.clone(), env.clock.clone(), work).map_err(local)? {
                UpgradeOutcome::Upgraded { from, .. } => from,
                UpgradeOutcome::AlreadyCurrent(v) => {
                    return Err(local(StoreError::Corrupt(format!(
                        "its manifest says format {} but its metadata says format {v}",
                        manifest.format
                    ))))
                }
            }
        }
        Rewrite::Aggregate => {
            let store = Store::open(
                env.fs.clone(),
                env.clock.clone(),
                work,
                &StoreOptions::default(),
            )
            .map_err(local)?;
            store.close().map_err(local)?;
            manifest.format
        }
    };
    let report = check_with_progress(
        env.fs.clone(),
        env.clock.clone(),
        work,
        &*env.blocking,
        &mut |_, _| {},
    )
    .map_err(local)?;
    if !report.consistent {
        return Err(RewriteError::Inconsistent {
            url,
            rewrite,
            count: report.finding_count,
            first: report.findings.first().cloned().unwrap_or_default(),
        });
    }
    // The state it reached must be the one its manifest names (MF-1).
    if report.last_committed_tx != manifest.last_tx || report.digest != manifest.digest.to_hex() {
        return Err(RewriteError::Inconsistent {
            url,
            rewrite,
            count: 1,
            first: format!(
                "it recovers to tx {} with digest {}, but its manifest says tx {} with digest {}",
                report.last_committed_tx, report.digest, manifest.last_tx, manifest.digest
            ),
        });
    }
    let meta = Meta::read(&*env.fs, work).map_err(|e| {
        local(StoreError::Corrupt(format!(
            "the {} copy's metadata: {e}",
            rewrite.done()
        )))
    })?;
    lease.renew_if_due().await?;
    let n = target.next_generation();
    let uploaded = upload_generation(
        env,
        target,
        lease,
        n,
        Rewritten {
            work,
            meta: &meta,
            previous: &manifest,
            rewrite,
        },
    )
    .await;
    if let Err(e) = uploaded {
        // What was uploaded is a leftover no pointer names; the next run would remove it too.
        if let Err(left) = target.remove_generation(n).await {
            tracing::warn!(
                "{url}: could not remove the unfinished {}: {left}",
                generation_name(n)
            );
        }
        return Err(e);
    }
    // Every generation present is kept: the previous live one joins the older ones (OBJ-9).
    let keep = u32::try_from(target.generations().len() + 1).unwrap_or(u32::MAX);
    target.switch_to(n, keep).await?;
    let tx = meta.checkpoint.last_tx;
    Ok(match rewrite {
        Rewrite::Upgrade => RewriteOutcome::Upgraded {
            from,
            generation: n,
            tx,
        },
        Rewrite::Aggregate => RewriteOutcome::Aggregated {
            replayed: tx - checkpoint.min(tx),
            generation: n,
            tx,
        },
    })
}

/// Whether a generation's logs hold no transaction (OBJ-20): one log object, a bare header, as
/// an upgrade or an aggregation leaves it.
fn holds_no_transaction(manifest: &Manifest) -> bool {
    let mut logs = manifest
        .files
        .iter()
        .filter(|f| f.name.starts_with(LOG_PREFIX));
    matches!((logs.next(), logs.next()), (Some(log), None) if log.size == HEADER_SIZE)
}

/// A rewritten store on this machine, ready to upload.
struct Rewritten<'a> {
    /// The working directory that holds it.
    work: &'a Path,
    /// Its metadata, checkpointed at its last tx.
    meta: &'a Meta,
    /// The manifest of the generation it was rewritten from, whose source is carried over.
    previous: &'a Manifest,
    /// How it was rewritten, for the errors.
    rewrite: Rewrite,
}

/// Uploads the rewritten store as generation `n` (OBJ-3, OBJ-4): its record files, its
/// metadata at its last tx naming an empty first log, that log's header, then the manifest.
async fn upload_generation(
    env: &Env,
    target: &ObjectTarget,
    lease: &mut Lease,
    n: u64,
    copy: Rewritten<'_>,
) -> Result<(), RewriteError> {
    let Rewritten {
        work,
        meta,
        previous,
        rewrite,
    } = copy;
    let url = target.url().to_string();
    let last_tx = meta.checkpoint.last_tx;
    let state = meta.checkpoint.state;
    let mut files = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    for kind in RecordKind::ALL {
        let name = kind.file_name();
        let path = work.join(name);
        let io = |doing: &str| {
            let (url, doing) = (url.clone(), format!("{doing} {}", path.display()));
            move |e: std::io::Error| RewriteError::Local {
                url,
                rewrite,
                source: StoreError::io(doing, e),
            }
        };
        let file = env.fs.open(&path, OpenMode::Read).map_err(io("opening"))?;
        let len = file.len().map_err(io("reading"))?;
        let mut upload = Upload::of(target, n, name, BLOCK_SIZE);
        let failed = |e: object_store::Error| ObjectsError::uploading(target.url(), name, &e);
        let mut at = 0u64;
        while at < len {
            let want = ((len - at) as usize).min(CHUNK);
            let read = file
                .read_exact_at(&mut buf[..want], at)
                .map_err(io("reading"));
            let sent = match read {
                Ok(()) => upload
                    .write(&buf[..want])
                    .await
                    .map_err(|e| failed(e).into()),
                Err(e) => Err(e),
            };
            let renewed = match sent {
                Ok(()) => lease.renew_if_due().await.map_err(RewriteError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = renewed {
                upload.abort().await;
                return Err(e);
            }
            at += want as u64;
        }
        files.push(upload.finish().await.map_err(failed)?);
    }
    let meta = Meta {
        checkpoint: Checkpoint::at(last_tx, 0, HEADER_SIZE, &state),
        unverified: false,
        ..meta.clone()
    };
    files.push(put_object(target, n, META_FILE, &meta.encode()).await?);
    let header = LogHeader {
        log_version: 0,
        prev_last_tx: last_tx,
        prev_digest: state.digest,
    };
    files.push(put_object(target, n, &format!("{LOG_PREFIX}0"), &header.encode()).await?);
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let now = env.clock.now_millis();
    let manifest = Manifest {
        block_size: BLOCK_SIZE,
        store_id: meta.store_id,
        format: meta.format,
        first_tx: last_tx,
        last_tx,
        digest: state.digest,
        created_millis: now,
        written_millis: now,
        verification: Verification::Full,
        last_full_verification: Some((now, last_tx)),
        scrub_cursor: 0,
        scrubbed_since_full: 0,
        source: previous.source.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        files,
        pending: Default::default(),
    };
    // The manifest before the pointer names the generation (OBJ-7, MF-6).
    put_object(target, n, MANIFEST_FILE, &manifest.encode()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obj_19_obj_20_a_local_failure_names_the_rewrite_and_says_nothing_changed() {
        for (rewrite, verb) in [
            (Rewrite::Upgrade, "upgrading"),
            (Rewrite::Aggregate, "aggregating"),
        ] {
            let shown = RewriteError::Local {
                url: "s3://b/g".into(),
                rewrite,
                source: StoreError::Corrupt("its metadata: short".into()),
            }
            .to_string();
            assert!(
                shown.starts_with(&format!("s3://b/g: {verb} its downloaded copy failed: "))
                    && shown.contains("its metadata: short")
                    && shown.ends_with("; nothing was changed"),
                "OBJ-19, OBJ-20: {shown}"
            );
        }
    }
}
