//! `neo4j-admin restore`: a verified copy of a backup into a store directory (spec/admin.md,
//! ADM-6 .. ADM-8).
//!
//! Owns: checking the backup (its manifest first, MF-10), copying its live store durably into a new generation of the
//! target, checking the copy, and switching the target's pointer to it.
//! Must not touch: the network, or the backup's files beyond opening it as a store (which
//! recovers and checkpoints it, as every opener does). The target is never left broken: the
//! copy becomes live only through the pointer switch (BK-32), so a crash leaves the previous
//! target, and the next restore removes the unfinished generation (BK-36).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backup::manifest::{verify, Manifest, ManifestError};
use crate::backup::target::{Holds, Target, TargetError};
use crate::io::{Blocking, Clock, Fs, OpenMode};
use crate::progress::Phase;
use crate::store::check::{check_open_with_progress, check_with_progress, CheckReport};
use crate::store::meta::{Meta, MetaError};
use crate::store::{Store, StoreError, StoreOptions};

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
    /// The backup's check report (the restored copy's digest and counts equal it).
    pub report: CheckReport,
    /// Where the restored store's files are (the target's live generation).
    pub live: PathBuf,
    pub bytes: u64,
}

/// Restores the backup in `from` into `to` (ADM-6, ADM-7).
pub fn restore(
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    par: &dyn Blocking,
    from: &Path,
    to: &Path,
    force: bool,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<Restored, RestoreError> {
    // The target first: a refusal costs nothing and changes nothing. It is judged without
    // creating it, and created (and locked) only once the backup has opened, so a restore from
    // a missing backup leaves a missing target missing (ADM-7).
    let classify = |target: Result<Target, TargetError>| {
        let target = target.map_err(|e| match e {
            TargetError::NotABackup { dir, why } => RestoreError::Foreign { dir, why },
            other => RestoreError::Target(other),
        })?;
        if matches!(target.holds(), Holds::Backup { .. }) && !force {
            return Err(RestoreError::NotEmpty(to.display().to_string()));
        }
        Ok(target)
    };
    classify(Target::inspect(fs.clone(), to))?;
    // The backup, locked while it is copied, checked before a byte is.
    let store = Store::open(fs.clone(), clock.clone(), from, &StoreOptions::default())?;
    let mut target = classify(Target::open(fs.clone(), to))?;
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
    // A checkpoint, so the files hold every tx and recovery of the copy replays nothing.
    let _source_lock = store.close_keeping_lock()?;

    target.clean().map_err(RestoreError::Target)?;
    let (n, generation) = target.new_generation().map_err(RestoreError::Target)?;
    let copied = copy_store_files(&*fs, &source_dir, &generation, &mut |done, total| {
        progress(Phase::CopyFiles, done, total)
    })
    .and_then(|bytes| {
        let copy =
            check_with_progress(fs.clone(), clock.clone(), &generation, par, &mut |d, t| {
                progress(Phase::CheckCopy, d, t)
            })?;
        if !copy.consistent || copy.digest != report.digest {
            return Err(RestoreError::CopyDiffers {
                dir: to.display().to_string(),
                copy: copy.digest,
                backup: report.digest.clone(),
            });
        }
        let meta = Meta::read(&*fs, &generation).map_err(|source| RestoreError::CopyMeta {
            dir: to.display().to_string(),
            source,
        })?;
        Ok((bytes, meta))
    });
    let (bytes, meta) = match copied {
        Ok(v) => v,
        Err(e) => {
            target.discard(n);
            return Err(e);
        }
    };
    target.switch_to(n, meta).map_err(RestoreError::Target)?;
    Ok(Restored {
        report,
        live: generation,
        bytes,
    })
}

/// Copies every file of the store in `from` into `to`, streaming, each synced, then the
/// directory synced. Returns the bytes copied.
fn copy_store_files(
    fs: &dyn Fs,
    from: &Path,
    to: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, RestoreError> {
    let io = |what: String| move |e| StoreError::io(what, e);
    let mut files = Vec::new();
    for entry in fs
        .read_dir(from)
        .map_err(io(format!("reading {}", from.display())))?
    {
        if entry.is_dir || !entry.name.starts_with("neostore.") || entry.name.ends_with(".tmp") {
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
