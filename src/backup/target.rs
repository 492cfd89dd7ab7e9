//! The backup directory as the client sees it (spec/backup.md, BK-30 .. BK-38): what it holds,
//! its lock, the leftovers of interrupted runs, new generations and the durable switch.
//!
//! Owns: the top level of the target directory. Classifying it never writes anything, so a
//! refusal leaves it byte for byte as it was (BK-13); cleaning and creating happen only once
//! the client has decided to go on.
//! Must not touch: the network, or the store files inside a generation (the store module
//! writes those).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backup::history::UNDO_PREFIX;
use crate::backup::manifest::MANIFEST_FILE;
use crate::io::{parent_of, Fs, LockGuard};
use crate::store::format::RecordKind;
use crate::store::layout::{self, generation_name, parse_generation, POINTER_FILE};
use crate::store::log::LOG_PREFIX;
use crate::store::meta::{Meta, MetaError, META_FILE};
use crate::store::StoreError;

/// Why the target cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{dir} is not a valid backup directory: {why}")]
    NotABackup { dir: String, why: String },
    #[error("{0} is locked: another backup, a server or an admin tool is using it")]
    Locked(String),
    #[error("cannot use {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the target directory holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holds {
    /// Nothing (missing, empty, or only the leftovers of an interrupted first backup).
    Nothing,
    /// A backup: its metadata as read (nothing opened or recovered), and where it lives.
    Backup { meta: Meta, live: Live },
}

/// Where a backup's store files are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    /// In generation `n`, named by the pointer file.
    Generation(u64),
    /// Directly in the directory (a plain store used as a backup target, e.g. a restored copy).
    Plain,
}

/// The locked target directory.
#[derive(Debug)]
pub struct Target {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    /// The directory's exclusive lock (BK-35): held for the whole run. Lent to the store while
    /// a plain backup is open in place.
    lock: Option<Box<dyn LockGuard>>,
    holds: Holds,
    /// Entries an interrupted run left, removed by [`Target::clean`] (BK-36).
    leftovers: Vec<Leftover>,
    /// Finished generations older than the live one, newest first: what `--keep-generations`
    /// kept (PIT-12).
    older: Vec<u64>,
    /// The highest generation number present, live or not.
    max_generation: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Leftover {
    name: String,
    is_dir: bool,
}

/// Names a store keeps directly in its directory (ST-1), those an upgrade stages, and a
/// generation's manifest (MF-1), which a copy of a generation used as a plain backup carries.
fn is_store_file(name: &str) -> bool {
    name.starts_with(MANIFEST_FILE)
        || name.starts_with(UNDO_PREFIX)
        || name == META_FILE
        || name.starts_with(&format!("{META_FILE}."))
        || name.starts_with(LOG_PREFIX)
        || RecordKind::ALL
            .iter()
            .any(|k| name == k.file_name() || name.starts_with(&format!("{}.", k.file_name())))
}

/// Says which top-level names the live backup owns (everything else of ours is a leftover).
type Keeps = Box<dyn Fn(&str) -> bool>;

/// Whether a generation directory was finished: a run writes its manifest before the pointer
/// switch (MF-6), so one without is what an interrupted run left, or the work of a version
/// from before manifests, which was never kept.
fn is_finished(fs: &dyn Fs, dir: &Path) -> bool {
    matches!(fs.metadata(&dir.join(MANIFEST_FILE)), Ok(Some(m)) if !m.is_dir)
}

/// The finished generations of the backup directory `dir` older than the live one, `live`,
/// newest first: what `--keep-generations` kept (PIT-12).
pub fn older_generations(fs: &dyn Fs, dir: &Path, live: u64) -> std::io::Result<Vec<u64>> {
    let mut older: Vec<u64> = fs
        .read_dir(dir)?
        .into_iter()
        .filter(|e| e.is_dir)
        .filter_map(|e| parse_generation(&e.name))
        .filter(|&g| g < live && is_finished(fs, &dir.join(generation_name(g))))
        .collect();
    older.sort_unstable_by(|a, b| b.cmp(a));
    Ok(older)
}

/// A mount point's own directory, which is not ours and not someone's data.
const LOST_FOUND: &str = "lost+found";

impl Target {
    /// Locks `dir` (creating it if missing) and classifies what it holds, writing nothing else.
    pub fn open(fs: Arc<dyn Fs>, dir: &Path) -> Result<Target, TargetError> {
        Target::open_inner(fs, dir, true)
    }

    /// Like [`Target::open`], but a missing directory is not created: it holds nothing and
    /// nothing is locked (`--plan`, which changes nothing).
    pub fn inspect(fs: Arc<dyn Fs>, dir: &Path) -> Result<Target, TargetError> {
        Target::open_inner(fs, dir, false)
    }

    fn open_inner(fs: Arc<dyn Fs>, dir: &Path, create: bool) -> Result<Target, TargetError> {
        let shown = dir.display().to_string();
        let io_err = |source| TargetError::Io {
            dir: shown.clone(),
            source,
        };
        match fs.metadata(dir).map_err(io_err)? {
            Some(m) if !m.is_dir => {
                return Err(TargetError::NotABackup {
                    dir: shown,
                    why: "it is a file, not a directory".into(),
                })
            }
            Some(_) => {}
            None if !create => {
                return Ok(Target {
                    fs,
                    dir: dir.to_path_buf(),
                    lock: None,
                    holds: Holds::Nothing,
                    leftovers: Vec::new(),
                    older: Vec::new(),
                    max_generation: 0,
                })
            }
            None => {
                // Every directory created, not only the last, must have a durable entry in its
                // parent: sync each parent from the deepest up to the one that existed.
                let mut created = vec![dir.to_path_buf()];
                let mut at = parent_of(dir).to_path_buf();
                while fs.metadata(&at).map_err(io_err)?.is_none() {
                    created.push(at.clone());
                    at = parent_of(&at).to_path_buf();
                }
                fs.create_dir_all(dir).map_err(io_err)?;
                for d in &created {
                    fs.sync_dir(parent_of(d)).map_err(io_err)?;
                }
            }
        }
        let lock = fs.lock_dir(dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                TargetError::Locked(shown.clone())
            } else {
                io_err(e)
            }
        })?;
        let entries = fs.read_dir(dir).map_err(io_err)?;
        let not_backup = |why: String| TargetError::NotABackup {
            dir: shown.clone(),
            why,
        };
        // What the pointer or the metadata holds decides; a read that fails says nothing about
        // it: an I/O failure (exit 1), never "not a valid backup" (BK-13, BK-40).
        // A file too large to be what it claims (`InvalidData`) is damage, though.
        let pointer_err = |e: StoreError| match e {
            StoreError::Io { context, source }
                if source.kind() != std::io::ErrorKind::InvalidData =>
            {
                TargetError::Io {
                    dir: shown.clone(),
                    source: std::io::Error::new(source.kind(), format!("{context}: {source}")),
                }
            }
            e => not_backup(e.to_string()),
        };
        let meta_err = |at: &str, e: MetaError| match e {
            MetaError::Io(source) if source.kind() != std::io::ErrorKind::InvalidData => {
                TargetError::Io {
                    dir: shown.clone(),
                    source,
                }
            }
            e if at.is_empty() => not_backup(e.to_string()),
            e => not_backup(format!("{at}: {e}")),
        };
        if let Some(e) = entries.iter().find(|e| {
            !(e.name == LOST_FOUND
                || e.name == POINTER_FILE
                || e.name == layout::pointer_temp_name()
                || (e.is_dir && parse_generation(&e.name).is_some())
                || (!e.is_dir && is_store_file(&e.name)))
        }) {
            return Err(not_backup(format!(
                "it holds {}, which no backup has",
                e.name
            )));
        }
        let max_generation = entries
            .iter()
            .filter(|e| e.is_dir)
            .filter_map(|e| parse_generation(&e.name))
            .max()
            .unwrap_or(0);
        let has = |name: &str| entries.iter().any(|e| e.name == name);
        let mut older = Vec::new();
        let (holds, keep): (Holds, Keeps) = if has(POINTER_FILE) {
            let n = layout::read_pointer(&*fs, dir)
                .map_err(pointer_err)?
                .expect("the pointer file exists");
            let live_name = generation_name(n);
            if !entries.iter().any(|e| e.is_dir && e.name == live_name) {
                return Err(not_backup(format!(
                    "its {POINTER_FILE} names {live_name}, which does not exist"
                )));
            }
            let meta =
                Meta::read(&*fs, &dir.join(&live_name)).map_err(|e| meta_err(&live_name, e))?;
            // Finished generations older than the live one are kept for
            // `--keep-generations` (PIT-12): `trim` decides how many stay.
            older = older_generations(&*fs, dir, n).map_err(io_err)?;
            let kept: Vec<String> = older.iter().map(|&g| generation_name(g)).collect();
            (
                Holds::Backup {
                    meta,
                    live: Live::Generation(n),
                },
                Box::new(move |name: &str| {
                    name == POINTER_FILE || name == live_name || kept.iter().any(|k| k == name)
                }),
            )
        } else if has(META_FILE) {
            let meta = Meta::read(&*fs, dir).map_err(|e| meta_err("", e))?;
            (
                Holds::Backup {
                    meta,
                    live: Live::Plain,
                },
                Box::new(is_store_file),
            )
        } else {
            if let Some(e) = entries.iter().find(|e| !e.is_dir && is_store_file(&e.name)) {
                return Err(not_backup(format!(
                    "it holds {} but no {META_FILE} (a damaged store?)",
                    e.name
                )));
            }
            (Holds::Nothing, Box::new(|_: &str| false))
        };
        let leftovers = entries
            .iter()
            .filter(|e| e.name != LOST_FOUND && !keep(&e.name))
            .map(|e| Leftover {
                name: e.name.clone(),
                is_dir: e.is_dir,
            })
            .collect();
        Ok(Target {
            fs,
            dir: dir.to_path_buf(),
            lock: Some(lock),
            holds,
            leftovers,
            older,
            max_generation,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn holds(&self) -> &Holds {
        &self.holds
    }

    /// The live backup's metadata as read, if there is a backup.
    pub fn meta(&self) -> Option<&Meta> {
        match &self.holds {
            Holds::Nothing => None,
            Holds::Backup { meta, .. } => Some(meta),
        }
    }

    /// Removes what interrupted runs left (BK-36): generations the pointer does not name, the
    /// pointer's temporary file, and store files beside a pointer.
    pub fn clean(&mut self) -> Result<(), TargetError> {
        if self.leftovers.is_empty() {
            return Ok(());
        }
        for l in std::mem::take(&mut self.leftovers) {
            let path = self.dir.join(&l.name);
            let removed = if l.is_dir {
                self.fs.remove_dir_all(&path)
            } else {
                self.fs.remove_file(&path)
            };
            removed.map_err(|e| self.io_err(e))?;
            tracing::info!("removed {}, which an interrupted backup left", l.name);
        }
        self.fs.sync_dir(&self.dir).map_err(|e| self.io_err(e))
    }

    fn io_err(&self, source: std::io::Error) -> TargetError {
        TargetError::Io {
            dir: self.dir.display().to_string(),
            source,
        }
    }

    /// Creates the next generation's empty directory, durably (BK-32), and returns its number
    /// and path. It is not live until [`Target::switch_to`].
    pub fn new_generation(&mut self) -> Result<(u64, PathBuf), TargetError> {
        let n = self.max_generation + 1;
        let path = self.dir.join(generation_name(n));
        self.fs.create_dir_all(&path).map_err(|e| self.io_err(e))?;
        self.fs.sync_dir(&self.dir).map_err(|e| self.io_err(e))?;
        self.max_generation = n;
        Ok((n, path))
    }

    /// Makes generation `n` (complete and synced) the live backup (BK-32): switches the
    /// pointer durably, then removes the old backup, or with `keep` above 1 keeps it among the
    /// older generations and removes those beyond `keep` (PIT-12). A failure to remove is only
    /// logged: the next run removes it.
    pub fn switch_to(&mut self, n: u64, meta: Meta, keep: u32) -> Result<(), TargetError> {
        layout::switch_pointer(&*self.fs, &self.dir, n).map_err(|e| self.io_err(e))?;
        let old = std::mem::replace(
            &mut self.holds,
            Holds::Backup {
                meta,
                live: Live::Generation(n),
            },
        );
        let removed = match old {
            Holds::Backup {
                live: Live::Generation(m),
                ..
            } if m != n => {
                if is_finished(&*self.fs, &self.dir.join(generation_name(m))) {
                    self.older.insert(0, m);
                    Ok(())
                } else {
                    self.fs.remove_dir_all(&self.dir.join(generation_name(m)))
                }
            }
            Holds::Backup {
                live: Live::Plain, ..
            } => self.remove_plain_store_files(),
            _ => Ok(()),
        };
        let synced = removed.and_then(|()| self.fs.sync_dir(&self.dir));
        if let Err(e) = synced
            .map_err(|e| self.io_err(e))
            .and_then(|()| self.trim(keep))
        {
            tracing::warn!("could not delete the previous backup ({e}); the next run will");
        }
        Ok(())
    }

    /// Removes the older generations beyond the newest `keep - 1` (the live one is the first
    /// of `keep`), oldest first, so an interruption leaves the newest (PIT-12). Never the live
    /// one.
    pub fn trim(&mut self, keep: u32) -> Result<(), TargetError> {
        let stay = (keep.max(1) - 1) as usize;
        if self.older.len() <= stay {
            return Ok(());
        }
        while self.older.len() > stay {
            let g = *self.older.last().expect("more than stay");
            let name = generation_name(g);
            self.fs
                .remove_dir_all(&self.dir.join(&name))
                .map_err(|e| self.io_err(e))?;
            self.older.pop();
            tracing::info!("removed {name}: --keep-generations keeps {keep}");
        }
        self.fs.sync_dir(&self.dir).map_err(|e| self.io_err(e))
    }

    fn remove_plain_store_files(&self) -> std::io::Result<()> {
        for e in self.fs.read_dir(&self.dir)? {
            if !e.is_dir && is_store_file(&e.name) {
                self.fs.remove_file(&self.dir.join(&e.name))?;
            }
        }
        Ok(())
    }

    /// Removes a generation that will not become live (a failed or refused full backup).
    pub fn discard(&mut self, n: u64) {
        let path = self.dir.join(generation_name(n));
        let removed = self
            .fs
            .remove_dir_all(&path)
            .and_then(|()| self.fs.sync_dir(&self.dir));
        if let Err(e) = removed {
            tracing::warn!("could not delete an unfinished generation ({e}); the next run will");
        }
    }

    /// Lends the directory lock to a store opened in place (a plain backup's files are in the
    /// locked directory itself).
    pub fn take_lock(&mut self) -> Box<dyn LockGuard> {
        self.lock.take().expect("the lock is not lent twice")
    }

    /// Takes the lock back from a closed store.
    pub fn return_lock(&mut self, lock: Box<dyn LockGuard>) {
        self.lock = Some(lock);
    }
}
