//! `neo4j-admin backup-info`: what a backup directory holds, from its pointer and its
//! generations' manifests (spec/manifest.md, MF-13), without opening a store.
//!
//! Owns: reading the directory's generations and describing each, and what a server's handshake
//! says about the next incremental.
//! Must not touch: any file (it only reads: no lock is taken, so it can run while a backup
//! runs; manifests are replaced atomically, so each one read is whole), or the network (the
//! caller asks the server, through `client::plan`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backup::history::{self, Span};
use crate::backup::manifest::{Manifest, ManifestError, Verification};
use crate::io::Fs;
use crate::store::layout::{self, parse_generation, POINTER_FILE};
use crate::store::meta::META_FILE;
use crate::store::StoreError;

/// Why the directory cannot be described.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// Missing, a file, its pointer unreadable (ST-14, BK-31).
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0} holds no backup (no {POINTER_FILE} naming a generation, and no {META_FILE})")]
    NoBackup(String),
}

/// One generation of a backup directory.
#[derive(Clone, Debug)]
pub struct Generation {
    pub number: u64,
    /// Whether the pointer names it. An older one with a manifest is one `--keep-generations`
    /// kept (PIT-12); any other is what an interrupted run left (removed by the next run,
    /// BK-36).
    pub live: bool,
    /// Whether it is an older finished generation `--keep-generations` kept (PIT-12).
    pub kept: bool,
    pub dir: PathBuf,
    /// Its manifest; `Ok(None)` for a generation without one (taken before manifests, or
    /// unfinished), `Err` when it is damaged.
    pub manifest: Result<Option<Manifest>, String>,
    /// What it can be restored to (PIT-5), with the commit times of the first and last of those
    /// txs the logs hold; `None` without a manifest, `Err` when its files could not be read.
    pub restorable: Option<Result<Span, String>>,
    /// Whether its metadata carries the unverified mark: a run's verification or scrub found
    /// damage, and the next run takes a full backup (BK-28, MF-11). `None` when the metadata
    /// cannot be read (an object store generation, or an unfinished one).
    pub unverified: Option<bool>,
}

impl Generation {
    /// The bytes its manifest lists.
    pub fn bytes(&self) -> Option<u64> {
        let m = self.manifest.as_ref().ok()?.as_ref()?;
        Some(m.files.iter().map(|f| f.size).sum())
    }
}

/// What a backup directory holds (MF-13), oldest generation first.
#[derive(Clone, Debug)]
pub struct Catalogue {
    pub dir: PathBuf,
    pub generations: Vec<Generation>,
}

/// Reads what the backup directory `dir` holds (MF-13).
pub fn catalogue(fs: &Arc<dyn Fs>, dir: &Path) -> Result<Catalogue, CatalogueError> {
    let arc = fs.clone();
    let fs = &**fs;
    let shown = dir.display().to_string();
    let io = |e| StoreError::io(format!("reading {shown}"), e);
    match fs.metadata(dir).map_err(io)? {
        None => return Err(StoreError::Missing(shown).into()),
        Some(m) if !m.is_dir => return Err(StoreError::NotADirectory(shown).into()),
        Some(_) => {}
    }
    let live = layout::read_pointer(fs, dir)?;
    let mut numbers: Vec<u64> = fs
        .read_dir(dir)
        .map_err(io)?
        .into_iter()
        .filter(|e| e.is_dir)
        .filter_map(|e| parse_generation(&e.name))
        .collect();
    numbers.sort_unstable();
    if live.is_none() || !live.is_some_and(|n| numbers.contains(&n)) {
        return Err(CatalogueError::NoBackup(shown));
    }
    let generations = numbers
        .into_iter()
        .map(|number| {
            let gen_dir = dir.join(layout::generation_name(number));
            let manifest = Manifest::read(fs, &gen_dir).map_err(|e| match e {
                ManifestError::Damaged(why) => format!("its manifest is damaged: {why}"),
                e => e.to_string(),
            });
            let restorable = match &manifest {
                Ok(Some(m)) => {
                    Some(history::span(arc.clone(), &gen_dir, m.last_tx).map_err(|e| e.to_string()))
                }
                _ => None,
            };
            let unverified = crate::store::meta::Meta::read(fs, &gen_dir)
                .ok()
                .map(|m| m.unverified);
            Generation {
                number,
                live: Some(number) == live,
                kept: live.is_some_and(|l| number < l) && matches!(manifest, Ok(Some(_))),
                dir: gen_dir,
                manifest,
                restorable,
                unverified,
            }
        })
        .collect();
    Ok(Catalogue {
        dir: dir.to_path_buf(),
        generations,
    })
}

/// Reads what the object store backup `url` holds (OBJ-15): its generations and their
/// manifests, without the lease, as a directory is read without its lock. A generation of an
/// object store restores to every tx from its full backup's to its last (OBJ-18); the commit
/// times are not listed, which would need its logs read.
pub async fn catalogue_objects(
    env: &crate::io::Env,
    url: &crate::backup::objects::ObjectUrl,
) -> Result<Catalogue, crate::backup::objects::ObjectsError> {
    use crate::backup::objects::{ObjectTarget, ObjectsError};
    let store = env
        .objects
        .open(&url.bucket)
        .map_err(|e| ObjectsError::from_store(url, "opening", &e))?;
    let target = ObjectTarget::read(store, url).await?;
    let Some(live) = target.live() else {
        return Err(ObjectsError::NotABackup {
            url: url.to_string(),
            why: "it holds no backup".to_string(),
        });
    };
    let mut generations = Vec::new();
    for &number in target.generations() {
        let manifest = target.manifest_of(number).await;
        let restorable = match &manifest {
            Ok(Some(m)) => Some(Ok(history::Span::replayable(m.first_tx, m.last_tx))),
            _ => None,
        };
        generations.push(Generation {
            number,
            live: number == live,
            kept: number < live && matches!(manifest, Ok(Some(_))),
            dir: PathBuf::from(format!("{url}/{}", layout::generation_name(number))),
            manifest,
            restorable,
            unverified: None,
        });
    }
    Ok(Catalogue {
        dir: PathBuf::from(url.to_string()),
        generations,
    })
}

/// The name `backup-info` gives a verification (MF-13), as `--json` names a backup's (BK-43).
pub fn verification_name(v: Verification) -> &'static str {
    match v {
        Verification::None => "skipped",
        Verification::Touched => "records_written",
        Verification::Full => "full_scan",
    }
}
