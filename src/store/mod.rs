//! The crash-safe graph store: record files, logical logs, durable commit, checkpoint and
//! recovery (spec/store.md, spec/log.md, spec/recovery.md).
//!
//! Owns: a store directory while it is open (it holds the directory's exclusive lock), the
//! commit path, checkpoints, log rotation, recovery on open.
//! Must not touch: the network, the HTTP API, backup protocol decisions. Everything goes
//! through the `Fs` and `Clock` seams it is given.
//!
//! Layout of the submodules: `format` (record bytes), `meta` (metadata file), `log` (log files
//! and entries), `records` (positioned record I/O), `tx` (building a transaction), `recovery`
//! (replaying the log on open, and finding a store's last tx without writing), `check`,
//! `generate` and `upgrade` (the offline tools).

pub mod check;
pub mod format;
pub mod generate;
pub mod layout;
pub mod log;
pub mod meta;
pub mod records;
mod recovery;
pub mod run;
pub mod tx;
pub mod upgrade;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::digest::Digest;
use crate::faults::{self, Switch};
use crate::graph::{CommitOutcome, Id, Node, Op};
use crate::io::{Clock, FileHandle, Fs, LockGuard, OpenMode};
use crate::retention::{files_to_prune, LogFile, Pins, PruneInput, RetentionPolicy};
use format::{FormatVersion, RecordKind, NONE};
use log::{LogHeader, ReadOutcome, TxEntry, TxState, HEADER_SIZE, MAX_ENTRY};
use meta::{Checkpoint, Meta, MetaError, StoreId};
use records::RecordFiles;
pub use recovery::peek_last_tx;
use recovery::recover;
pub use tx::TxRejection;

/// Errors of the store. The binaries map them to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The path a store was to be opened from does not exist (ST-14).
    #[error("{0} does not exist")]
    Missing(String),
    /// The path names something other than a directory, such as a regular file (ST-14).
    #[error("{0} is a file, not a store directory")]
    NotADirectory(String),
    #[error("{0} is not a store directory (it has no neostore.meta)")]
    NotAStore(String),
    #[error("{0} is locked by another process (a server, backup or admin tool has it open)")]
    Locked(String),
    #[error("{dir} already holds a store")]
    AlreadyExists { dir: String },
    #[error("{0} is not an empty directory; a new store needs one")]
    NotEmpty(String),
    #[error("the store's format version {0} is not supported (supported: 1, 2)")]
    UnsupportedFormat(u32),
    #[error("the store is damaged: {0}")]
    Corrupt(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("transaction refused: {0}")]
    Rejected(#[from] TxRejection),
    #[error("the store stopped accepting writes after an I/O failure ({0}); restart to recover")]
    Failed(String),
    #[error("the store is closed (the server is shutting down)")]
    Closed,
}

impl StoreError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }

    /// The store error a metadata error means for the store in `dir`.
    pub fn from_meta(dir: &Path, e: MetaError) -> StoreError {
        match e {
            MetaError::Missing(_) => StoreError::NotAStore(dir.display().to_string()),
            MetaError::Io(e) => {
                StoreError::io(format!("reading the metadata of {}", dir.display()), e)
            }
            MetaError::Damaged(why) => StoreError::Corrupt(format!("neostore.meta: {why}")),
            MetaError::UnsupportedFormat(v) => StoreError::UnsupportedFormat(v),
        }
    }
}

/// The default log rotation threshold, 25 MiB (LOG-8): the store's default and the default of
/// the server's `logical_log_rotation_threshold` (CFG-8).
pub const DEFAULT_ROTATION_THRESHOLD: u64 = 25 << 20;

/// Tunables of an open store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Rotate the active log once it passes this many bytes; 0 never rotates on size (LOG-8).
    pub log_rotation_threshold: u64,
    /// Which log files to delete after each checkpoint (RET-13). The default keeps all: offline
    /// tools and backup targets never prune; the server passes `keep_logical_logs`.
    pub retention: RetentionPolicy,
    /// Pins of running backups; pruning never deletes a pinned transaction (RET-3).
    pub pins: Pins,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            log_rotation_threshold: DEFAULT_ROTATION_THRESHOLD,
            retention: RetentionPolicy::KeepAll,
            pins: Pins::new(),
        }
    }
}

/// What `GET /db/data/` and `neo4j-admin check` report about a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    pub store_id: StoreId,
    pub format: FormatVersion,
    pub last_committed_tx: u64,
    pub nodes: u64,
    pub relationships: u64,
    pub digest: Digest,
}

/// What the logical logs hold (HTTP status fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSummary {
    /// The oldest transaction whose entry is still in the logs; the last committed tx + 1 when
    /// the logs hold none.
    pub oldest_logged_tx: u64,
    /// Total size of the log files, headers included.
    pub log_bytes: u64,
}

/// The log file commits are appended to.
#[derive(Debug)]
struct ActiveLog {
    version: u64,
    file: Box<dyn FileHandle>,
    /// Where the next entry goes: the end of the last whole entry.
    end: u64,
}

/// An open store. Commits take `&mut self`; the server serializes them (and excludes readers
/// during the apply) with a lock around the store.
#[derive(Debug)]
pub struct Store {
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    dir: PathBuf,
    /// The directory's exclusive lock, released when the store is dropped (IO-3).
    _lock: Box<dyn LockGuard>,
    options: StoreOptions,
    /// The metadata as last written: store id, format, and the last checkpoint.
    meta: Meta,
    files: RecordFiles,
    log: ActiveLog,
    last_tx: u64,
    /// Counts, digest and high-water marks after `last_tx`.
    state: TxState,
    /// Set when a write on the commit path failed: the files may no longer match what was
    /// acknowledged, so the store refuses further commits until reopened (recovery repairs it).
    failed: Option<String>,
    /// A rotation failed for a shortage that can pass and is tried again after each commit
    /// (LOG-11); set, so that the warning is logged once.
    rotation_deferred: bool,
    /// Checkpoints written since the store was opened.
    checkpoints: u64,
    /// What [`Store::describe_logs`] read of each sealed log file, by version. A sealed file
    /// never changes, so it is opened once, not at every checkpoint's pruning: under time-based
    /// retention there may be hundreds (RET-16).
    sealed_logs: BTreeMap<u64, SealedLog>,
}

/// The header and first commit time of a sealed log file, as [`Store::describe_logs`] read
/// them.
#[derive(Clone, Copy, Debug)]
struct SealedLog {
    prev_last_tx: u64,
    bytes: u64,
    first_tx_millis: Option<u64>,
}

/// A checkpoint planned at a tx by [`Store::plan_checkpoint`]: its record files are synced
/// with no lock held, then [`Store::finish_checkpoint`] records it (LOG-13).
#[derive(Debug)]
pub struct CheckpointPlan {
    at: Checkpoint,
    files: records::RecordSyncer,
}

impl CheckpointPlan {
    /// The tx the checkpoint is at.
    pub fn tx(&self) -> u64 {
        self.at.last_tx
    }

    /// Makes the record files durable, with everything written to them up to the planned tx
    /// (and possibly later writes, which recovery's replay from the planned tx writes again).
    pub fn sync_files(&self) -> Result<(), StoreError> {
        self.files.sync_all()
    }
}

/// A group of transactions built and logged by [`Store::log_group`], to be applied by
/// [`Store::apply_logged`] (LOG-12).
#[derive(Debug)]
pub struct LoggedGroup {
    /// The last tx, and the active log's version and end, it was built and logged after.
    after_tx: u64,
    at: (u64, u64),
    /// The framed bytes written to the log.
    len: u64,
    /// The accepted transactions, in tx order.
    entries: Vec<TxEntry>,
    /// One per transaction of the group, in its order: the accepted ones' outcomes as they will
    /// be once applied, and the refused ones' refusals.
    outcomes: Vec<Result<CommitOutcome, StoreError>>,
    /// Whether the log write and its fsync succeeded.
    written: Result<(), StoreError>,
}

/// Why a rotation failed: a shortage that can pass, after which the store goes on (LOG-11), or
/// anything else, after which it stops accepting commits (LOG-9).
enum RotationFailure {
    Passing(StoreError),
    Fatal(StoreError),
}

impl RotationFailure {
    /// A failed step of a rotation: passing when the system was short of descriptors or space.
    fn of(context: String, e: std::io::Error) -> RotationFailure {
        let passing = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOSPC | libc::EDQUOT)
        ) || matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        );
        let e = StoreError::io(context, e);
        if passing {
            RotationFailure::Passing(e)
        } else {
            RotationFailure::Fatal(e)
        }
    }
}

/// Creates `dir` if missing and locks it for a new store; refuses a directory holding anything
/// (ST-1): a new store never adopts someone else's files.
pub fn lock_new_store_dir(fs: &dyn Fs, dir: &Path) -> Result<Box<dyn LockGuard>, StoreError> {
    let io_err = |what: &str, e| StoreError::io(format!("{what} {}", dir.display()), e);
    if let Some(m) = fs.metadata(dir).map_err(|e| io_err("reading", e))? {
        if !m.is_dir {
            return Err(StoreError::NotADirectory(dir.display().to_string()));
        }
    }
    fs.create_dir_all(dir).map_err(|e| io_err("creating", e))?;
    fs.sync_dir(crate::io::parent_of(dir))
        .map_err(|e| io_err("syncing the parent of", e))?;
    let guard = lock(fs, dir)?;
    let entries = fs.read_dir(dir).map_err(|e| io_err("reading", e))?;
    if entries.iter().any(|e| e.name == meta::META_FILE) {
        return Err(StoreError::AlreadyExists {
            dir: dir.display().to_string(),
        });
    }
    // Without metadata, files a store creation writes are what an interrupted creation left:
    // nothing was ever committed to them, so they are removed. Anything else is someone's data.
    let leftover = |name: &str| {
        format::RecordKind::ALL
            .iter()
            .any(|k| k.file_name() == name)
            || name.starts_with(log::LOG_PREFIX)
            || name == format!("{}.tmp", meta::META_FILE)
    };
    if entries.iter().any(|e| e.is_dir || !leftover(&e.name)) {
        return Err(StoreError::NotEmpty(dir.display().to_string()));
    }
    if !entries.is_empty() {
        for e in &entries {
            fs.remove_file(&dir.join(&e.name))
                .map_err(|e| io_err("removing an interrupted creation's files from", e))?;
        }
        fs.sync_dir(dir).map_err(|e| io_err("syncing", e))?;
    }
    Ok(guard)
}

/// Locks an existing store or backup directory for a tool that reads its files without opening
/// the store (`check --quick`): a path that is not a directory fails as ST-14 says, a directory
/// in use as IO-3 says.
pub fn lock_existing(fs: &dyn Fs, dir: &Path) -> Result<Box<dyn LockGuard>, StoreError> {
    classify_dir(fs, dir)?;
    lock(fs, dir)
}

/// Says why `dir` cannot hold a store when it is not a directory at all (ST-14): it does not
/// exist (nor does a path that goes through a file), or it is a file. A directory passes; whether
/// it holds a store is the metadata's to say.
fn classify_dir(fs: &dyn Fs, dir: &Path) -> Result<(), StoreError> {
    match fs.metadata(dir) {
        Ok(Some(m)) if m.is_dir => Ok(()),
        Ok(Some(_)) => Err(StoreError::NotADirectory(dir.display().to_string())),
        Ok(None) => Err(StoreError::Missing(dir.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(StoreError::Missing(dir.display().to_string()))
        }
        Err(e) => Err(StoreError::io(format!("reading {}", dir.display()), e)),
    }
}

fn lock(fs: &dyn Fs, dir: &Path) -> Result<Box<dyn LockGuard>, StoreError> {
    fs.lock_dir(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            StoreError::Locked(dir.display().to_string())
        } else if e.kind() == std::io::ErrorKind::NotFound {
            // Removed between the look at the path and the lock (ST-14).
            StoreError::Missing(dir.display().to_string())
        } else {
            StoreError::io(format!("locking {}", dir.display()), e)
        }
    })
}

impl Store {
    /// Creates a new, empty store in `dir` (created if missing; it must not hold a store).
    /// `random` is the random half of the store id (ST-11); the clock gives the other half.
    pub fn create(
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        dir: &Path,
        options: &StoreOptions,
        format: FormatVersion,
        random: u64,
    ) -> Result<Store, StoreError> {
        let guard = lock_new_store_dir(&*fs, dir)?;
        let store_id = StoreId {
            created_millis: clock.now_millis(),
            random,
        };
        initialize(&*fs, dir, store_id, format, TxState::empty(), 0)?;
        Store::open_locked(fs, clock, dir, options, guard)
    }

    /// Opens the store in `dir`, recovering from its last checkpoint (RC-1).
    pub fn open(
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        dir: &Path,
        options: &StoreOptions,
    ) -> Result<Store, StoreError> {
        classify_dir(&*fs, dir)?;
        let guard = lock(&*fs, dir)?;
        Store::open_with_lock(fs, clock, dir, options, guard)
    }

    /// Opens the store `dir` means, whose lock the caller already holds: the live generation
    /// when `dir` is a backup directory with a pointer file, else `dir` itself (BK-31).
    pub fn open_with_lock(
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        dir: &Path,
        options: &StoreOptions,
        guard: Box<dyn LockGuard>,
    ) -> Result<Store, StoreError> {
        let data_dir = layout::resolve(&*fs, dir)?;
        Store::open_locked(fs, clock, &data_dir, options, guard)
    }

    /// Opens the store whose files are in `dir`, whose lock the caller already holds (for a
    /// backup directory's generation, the directory's lock).
    pub fn open_locked(
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        dir: &Path,
        options: &StoreOptions,
        guard: Box<dyn LockGuard>,
    ) -> Result<Store, StoreError> {
        upgrade::finish_interrupted(&*fs, dir)?;
        let meta = Meta::read(&*fs, dir).map_err(|e| StoreError::from_meta(dir, e))?;
        let files = RecordFiles::open(&*fs, dir, meta.format, false)?;
        let recovered = recover(&*fs, dir, &meta, &files)?;
        let mut store = Store {
            fs,
            clock,
            dir: dir.to_path_buf(),
            _lock: guard,
            options: options.clone(),
            meta,
            files,
            log: recovered.log,
            last_tx: recovered.last_tx,
            state: recovered.state,
            failed: None,
            rotation_deferred: false,
            checkpoints: 0,
            sealed_logs: BTreeMap::new(),
        };
        if recovered.replayed > 0 {
            tracing::info!(
                "recovered {} transaction(s) from the logical log, up to tx {}",
                recovered.replayed,
                store.last_tx
            );
            store.checkpoint()?;
        }
        Ok(store)
    }

    /// The directory holding the store's files (a backup's live generation, BK-31).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state after the last committed tx: what the next entry must follow (LOG-10).
    pub fn state(&self) -> TxState {
        self.state
    }

    /// Why the store stopped accepting writes (LOG-9), if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    pub fn status(&self) -> StoreStatus {
        StoreStatus {
            store_id: self.meta.store_id,
            format: self.meta.format,
            last_committed_tx: self.last_tx,
            nodes: self.state.nodes,
            relationships: self.state.relationships,
            digest: self.state.digest,
        }
    }

    /// The metadata as of the last checkpoint.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// How many checkpoints this store has written since it was opened (a checkpoint costs
    /// several fsyncs under the store lock; PR-24 keeps full backups from multiplying them).
    pub fn checkpoints_written(&self) -> u64 {
        self.checkpoints
    }

    /// Commits `ops` as one transaction: validated against the current records, logged and
    /// fsynced before it is acknowledged, then applied to the record files (ST-3, LOG-9).
    pub fn commit(&mut self, ops: &[Op]) -> Result<CommitOutcome, StoreError> {
        let mut outcomes = self.commit_group(std::slice::from_ref(&ops));
        outcomes.pop().expect("one outcome per transaction")
    }

    /// Commits each element of `group` as a transaction of its own, in order, with one log
    /// write and one fsync for all the accepted ones (group commit, LOG-12): each is validated
    /// against the records as the accepted ones before it leave them, a refused one consumes no
    /// tx id and does not affect the others, and none is acknowledged (returned `Ok`) before
    /// the fsync that covers all of them. Then their images are applied in tx order. A failure
    /// to log fails every accepted one, as LOG-9 says for one.
    pub fn commit_group<O: AsRef<[Op]>>(
        &mut self,
        group: &[O],
    ) -> Vec<Result<CommitOutcome, StoreError>> {
        let logged = self.log_group(group);
        self.apply_logged(logged)
    }

    /// The first half of [`Store::commit_group`], which needs only shared access: builds the
    /// group's transactions, writes them to the log and fsyncs it, so that readers go on
    /// meanwhile (LOG-12). Nothing is visible to readers, or acknowledged, until
    /// [`Store::apply_logged`] applies the result. Callers log one group at a time and apply
    /// each before logging the next; the server's one writer does (`db`).
    pub fn log_group<O: AsRef<[Op]>>(&self, group: &[O]) -> LoggedGroup {
        let mut logged = LoggedGroup {
            after_tx: self.last_tx,
            at: (self.log.version, self.log.end),
            len: 0,
            entries: Vec::new(),
            outcomes: Vec::with_capacity(group.len()),
            written: Ok(()),
        };
        if let Some(why) = &self.failed {
            logged.outcomes = group
                .iter()
                .map(|_| Err(StoreError::Failed(why.clone())))
                .collect();
            return logged;
        }
        let now = self.clock.now_millis();
        let mut overlay = tx::Overlay::default();
        let mut state = self.state;
        let mut framed = Vec::new();
        for ops in group {
            let tx_id = self.last_tx + 1 + logged.entries.len() as u64;
            let built = (|| {
                let mut builder = tx::TxBuilder::over(&self.files, Some(&overlay), state);
                builder.apply_all(ops.as_ref())?;
                let (entry, ids) = builder.finish(tx_id, now)?;
                if entry.records.len() > log::MAX_IMAGES as usize {
                    return Err(TxRejection::TooManyRecords(entry.records.len()).into());
                }
                let bytes = entry.encode_framed();
                if bytes.len() as u64 - log::FRAME_SIZE > MAX_ENTRY as u64 {
                    return Err(
                        TxRejection::TooLarge(bytes.len() - log::FRAME_SIZE as usize).into(),
                    );
                }
                Ok((entry, ids, bytes))
            })();
            match built {
                Ok((entry, ids, bytes)) => {
                    overlay.absorb(&entry);
                    state = entry.after;
                    framed.extend_from_slice(&bytes);
                    logged.entries.push(entry);
                    logged.outcomes.push(Ok(CommitOutcome { tx_id, ids }));
                }
                Err(e) => logged.outcomes.push(Err(e)),
            }
        }
        if !logged.entries.is_empty() {
            logged.len = framed.len() as u64;
            logged.written = self
                .log
                .file
                .write_all_at(&framed, self.log.end)
                .and_then(|()| {
                    if faults::on(Switch::AckBeforeFsync) {
                        return Ok(());
                    }
                    self.log.file.sync()
                })
                .map_err(|e| {
                    StoreError::io(format!("appending to log file {}", self.log.version), e)
                });
        }
        logged
    }

    /// The second half of [`Store::commit_group`]: applies a group [`Store::log_group`] logged,
    /// and answers each of its transactions. A group logged against another state than this
    /// store's now (another group applied or a rotation in between, which the one writer never
    /// does) is refused, and the store stops accepting commits: the log may hold entries that do
    /// not follow each other.
    pub fn apply_logged(&mut self, logged: LoggedGroup) -> Vec<Result<CommitOutcome, StoreError>> {
        let LoggedGroup {
            after_tx,
            at,
            len,
            entries,
            mut outcomes,
            written,
        } = logged;
        if entries.is_empty() {
            return outcomes;
        }
        let result = if let Some(why) = &self.failed {
            Err(StoreError::Failed(why.clone()))
        } else if (after_tx, at) != (self.last_tx, (self.log.version, self.log.end)) {
            let e = StoreError::Corrupt(format!(
                "a group of transactions was logged after tx {after_tx} at offset {} of log file {}, but the store is at tx {} with log file {} ending at {}",
                at.1, at.0, self.last_tx, self.log.version, self.log.end
            ));
            Err(self.fail(e))
        } else {
            match written {
                // The tail may or may not be durable now; recovery on reopen decides (RC-4).
                Err(e) => Err(self.fail(e)),
                Ok(()) => self.apply_written(&entries, len),
            }
        };
        if let Err(e) = result {
            // Nothing of the group is acknowledged: the first accepted one gets the failure,
            // the others the store's refusal that follows from it.
            let why = self.failed.clone().unwrap_or_else(|| e.to_string());
            let mut first = Some(e);
            for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *outcome = Err(first
                    .take()
                    .unwrap_or_else(|| StoreError::Failed(why.clone())));
            }
        }
        outcomes
    }

    /// Appends an already-built entry (from this store's own commit, or shipped by a backup
    /// server) durably to the log, then applies it. The entry must be the next tx.
    pub fn apply_committed(&mut self, entry: &TxEntry) -> Result<(), StoreError> {
        self.apply_committed_batch(std::slice::from_ref(entry))
    }

    /// Appends a run of already-built entries (shipped by a backup server) to the log with one
    /// fsync, then applies them in order (BK-24). The first must be the next tx and each the one
    /// after the previous. A crash leaves the log holding a prefix of them, which recovery
    /// replays: the store is valid at some tx of the run.
    pub fn apply_committed_batch(&mut self, entries: &[TxEntry]) -> Result<(), StoreError> {
        if let Some(why) = &self.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        let mut before = self.state;
        for (i, entry) in entries.iter().enumerate() {
            if entry.tx_id != self.last_tx + 1 + i as u64 {
                return Err(StoreError::Corrupt(format!(
                    "transaction {} cannot follow {}",
                    entry.tx_id,
                    self.last_tx + i as u64
                )));
            }
            // LOG-10: nothing is written for a run with an entry whose ids or marks are out of
            // bounds.
            entry.check_follows(&before).map_err(|e| {
                StoreError::Corrupt(format!(
                    "transaction {} cannot be applied: {e}",
                    entry.tx_id
                ))
            })?;
            before = entry.after;
        }
        if entries.is_empty() {
            return Ok(());
        }
        let mut framed = Vec::new();
        for entry in entries {
            framed.extend_from_slice(&entry.encode_framed());
        }
        self.append_and_apply(entries, &framed)
    }

    /// The first record (kind and id) among the last images of `images` that the record files
    /// do not hold byte for byte, or `None` (BK-27: an incremental's records read back).
    pub fn first_record_differing<'a>(
        &self,
        images: impl IntoIterator<Item = &'a log::RecordImage>,
    ) -> Result<Option<(RecordKind, u64)>, StoreError> {
        self.files.first_differing(images)
    }

    /// What the record files hold now of each record `images` will write, below the high-water
    /// marks (records at or above them are allocated by the writes, and a rewind cuts the files
    /// back to the marks instead): each record once, in file order. A point-in-time backup
    /// keeps these before a run of transactions is applied (PIT-2).
    pub fn images_before<'a>(
        &self,
        images: impl IntoIterator<Item = &'a log::RecordImage>,
    ) -> Result<Vec<log::RecordImage>, StoreError> {
        let mut keys: Vec<(RecordKind, u64)> = images
            .into_iter()
            .map(records::key_of)
            .filter(|&(kind, id)| id < self.state.mark(kind))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .map(|(kind, id)| self.files.image(kind, id))
            .collect()
    }

    /// Durably marks the store as a backup whose verification failed, so that the next backup
    /// run takes a full backup instead of applying more on top (BK-28). A checkpoint first, so
    /// the mark and the data agree.
    pub fn mark_unverified(&mut self) -> Result<(), StoreError> {
        self.files.sync_all()?;
        let mut meta = self.meta.clone();
        meta.unverified = true;
        meta.write(&*self.fs, &self.dir)
            .map_err(|e| StoreError::io("writing neostore.meta", e))?;
        self.meta = meta;
        Ok(())
    }

    /// Appends `framed` (the entries, framed, in order) to the log with one fsync, then applies
    /// each entry's records: the one path by which transactions reach a store's files.
    fn append_and_apply(&mut self, entries: &[TxEntry], framed: &[u8]) -> Result<(), StoreError> {
        if faults::on(Switch::ApplyWithoutLogging) {
            return self.apply_written(entries, 0);
        }
        let written = self
            .log
            .file
            .write_all_at(framed, self.log.end)
            .and_then(|()| self.log.file.sync())
            .map_err(|e| StoreError::io(format!("appending to log file {}", self.log.version), e));
        match written {
            // The tail may or may not be durable now; recovery on reopen decides (RC-4).
            Err(e) => Err(self.fail(e)),
            Ok(()) => self.apply_written(entries, framed.len() as u64),
        }
    }

    /// Stops further commits until the store is reopened (LOG-9), for the reason `e` gives.
    fn fail(&mut self, e: StoreError) -> StoreError {
        self.failed = Some(e.to_string());
        e
    }

    /// Applies entries whose `len` framed bytes were just written at the log's end and synced.
    fn apply_written(&mut self, entries: &[TxEntry], len: u64) -> Result<(), StoreError> {
        self.log.end += len;
        // The images of the whole run at once: each record's last image, one write per run of
        // neighbouring records.
        if let Err(e) = self
            .files
            .apply_all(entries.iter().flat_map(|e| &e.records))
        {
            return Err(self.fail(e));
        }
        for entry in entries {
            self.last_tx = entry.tx_id;
            self.state = entry.after;
            tracing::debug!(
                target: "online_backup::commit",
                tx_id = entry.tx_id,
                digest = %entry.after.digest,
                "committed"
            );
        }

        let threshold = self.options.log_rotation_threshold;
        if threshold > 0 && self.log.end > threshold {
            // The transaction is durable and applied whatever happens here: it stands.
            self.rotate_after_commit();
        }
        Ok(())
    }

    /// Rotates after a commit took the active file past the threshold (LOG-8). A shortage that
    /// can pass defers the rotation to the next commit (LOG-11); any other failure stops further
    /// commits until the store is reopened (LOG-9).
    fn rotate_after_commit(&mut self) {
        match self.try_rotate() {
            Ok(()) => {
                if self.rotation_deferred {
                    self.rotation_deferred = false;
                    tracing::info!(
                        "rotated the logical log to log file {}, which an earlier shortage had deferred",
                        self.log.version
                    );
                }
            }
            Err(RotationFailure::Passing(e)) => {
                if !self.rotation_deferred {
                    tracing::warn!(
                        "could not rotate the logical log ({e}); log file {} grows past the rotation threshold, and the rotation is tried again after the next commit",
                        self.log.version
                    );
                }
                self.rotation_deferred = true;
            }
            Err(RotationFailure::Fatal(e)) => {
                tracing::error!("log rotation failed ({e}); refusing further commits");
                self.failed = Some(format!("log rotation failed: {e}"));
            }
        }
    }

    /// Starts a new log file and checkpoints into it (LOG-8): the header is synced and the
    /// directory entry made durable before any commit lands in the new file.
    pub fn rotate(&mut self) -> Result<(), StoreError> {
        self.try_rotate()
            .map_err(|(RotationFailure::Passing(e) | RotationFailure::Fatal(e))| e)
    }

    /// [`Store::rotate`], saying whether a failure leaves the store sound to go on (LOG-11).
    fn try_rotate(&mut self) -> Result<(), RotationFailure> {
        let version = self.log.version + 1;
        let path = log::log_path(&self.dir, version);
        let header = LogHeader {
            log_version: version,
            prev_last_tx: self.last_tx,
            prev_digest: self.state.digest,
        };
        let file = self
            .fs
            .open(&path, OpenMode::CreateTruncate)
            .map_err(|e| RotationFailure::of(format!("creating {}", path.display()), e))?;
        let made = file
            .write_all_at(&header.encode(), 0)
            .and_then(|()| file.sync())
            .map_err(|e| (format!("writing {}", path.display()), e))
            .and_then(|()| {
                self.fs
                    .sync_dir(&self.dir)
                    .map_err(|e| ("syncing the store directory".to_string(), e))
            });
        if let Err((context, e)) = made {
            // The file never becomes the active one. Emptied, whatever of it is durable reads
            // after a crash as a rotation that crashed before its header (RC-5), never as a file
            // whose header disagrees with the commits that go on in the current one.
            let emptied = file.set_len(0).and_then(|()| file.sync()).is_ok();
            drop(file);
            let _ = self.fs.remove_file(&path);
            return Err(match RotationFailure::of(context, e) {
                RotationFailure::Passing(e) if !emptied => RotationFailure::Fatal(e),
                failure => failure,
            });
        }
        self.log = ActiveLog {
            version,
            file,
            end: HEADER_SIZE,
        };
        // A failed fsync of the record files is never retried: the kernel may have dropped the
        // pages it could not write (LOG-9).
        self.files.sync_all().map_err(RotationFailure::Fatal)?;
        // Without the new metadata the previous checkpoint stands: recovery replays from it,
        // through the old file into the new one.
        self.record_checkpoint()
            .map_err(|e| RotationFailure::of("writing neostore.meta".to_string(), e))
    }

    /// Flushes the record files and records in the metadata that every tx up to the last
    /// committed one is in them (ST-10).
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        // A failed store's record files may lack the images of a logged transaction: a
        // checkpoint now would record a log offset past it, and recovery would never replay it
        // (LOG-9). Only a reopen, which recovers from the log, gets past a failure.
        if let Some(why) = &self.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        self.files.sync_all()?;
        self.record_checkpoint()
            .map_err(|e| StoreError::io("writing neostore.meta", e))
    }

    /// The first step of a checkpoint taken without holding the store exclusively (LOG-13),
    /// which needs only shared access: the checkpoint at the last applied tx, with the handles
    /// to sync the record files with. `None` when the last checkpoint already covers tx
    /// `covering` (PR-24). A failed store refuses, as [`Store::checkpoint`] does (LOG-9).
    pub fn plan_checkpoint(&self, covering: u64) -> Result<Option<CheckpointPlan>, StoreError> {
        if let Some(why) = &self.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        if self.meta.checkpoint.last_tx >= covering {
            return Ok(None);
        }
        Ok(Some(CheckpointPlan {
            at: self.checkpoint_here(),
            files: self.files.syncer(),
        }))
    }

    /// The last step of a planned checkpoint (LOG-13), once [`CheckpointPlan::sync_files`]
    /// returned `synced`: records it in the metadata and prunes, unless a checkpoint as new was
    /// recorded meanwhile (a rotation's). A failed sync fails the store: it is never retried,
    /// as the kernel may have dropped the pages it could not write (LOG-9).
    pub fn finish_checkpoint(
        &mut self,
        plan: CheckpointPlan,
        synced: Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if let Err(e) = synced {
            return Err(self.fail(e));
        }
        if let Some(why) = &self.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        if self.meta.checkpoint.last_tx >= plan.at.last_tx {
            return Ok(());
        }
        self.record_checkpoint_at(plan.at)
            .map_err(|e| StoreError::io("writing neostore.meta", e))
    }

    /// A checkpoint at the last committed tx and the active log's end.
    fn checkpoint_here(&self) -> Checkpoint {
        Checkpoint::at(self.last_tx, self.log.version, self.log.end, &self.state)
    }

    /// Writes the metadata of a checkpoint at the last committed tx, the record files being
    /// synced, then prunes what retention allows.
    fn record_checkpoint(&mut self) -> std::io::Result<()> {
        self.record_checkpoint_at(self.checkpoint_here())
    }

    /// Writes the metadata of checkpoint `at`, the record files being synced up to its tx, then
    /// prunes what retention allows.
    fn record_checkpoint_at(&mut self, at: Checkpoint) -> std::io::Result<()> {
        let mut meta = self.meta.clone();
        meta.checkpoint = at;
        meta.write(&*self.fs, &self.dir)?;
        self.meta = meta;
        self.checkpoints += 1;
        // Only now, with the new checkpoint durable, may files the old one needed go (RET-13).
        if let Err(e) = self.prune_logs() {
            tracing::warn!("pruning logical logs failed ({e}); retrying at the next checkpoint");
        }
        tracing::debug!(
            last_tx = self.last_tx,
            log_version = self.log.version,
            "checkpoint"
        );
        Ok(())
    }

    /// Checkpoints and releases the store (a clean shutdown).
    pub fn close(self) -> Result<(), StoreError> {
        self.close_keeping_lock().map(drop)
    }

    /// Checkpoints and closes the store but hands back its directory lock, for offline tools
    /// that go on working on the files (upgrade) without letting another opener in.
    pub fn close_keeping_lock(mut self) -> Result<Box<dyn LockGuard>, StoreError> {
        // A store whose last checkpoint is where it stands (nothing committed or applied since)
        // has nothing to flush: closing it writes no checkpoint (ST-16). Retention still runs,
        // as at every checkpoint: time may have aged files out since the last one (RET-13).
        if self.failed.is_none() {
            if self.meta.checkpoint != self.checkpoint_here() {
                self.checkpoint()?;
            } else if let Err(e) = self.prune_logs() {
                tracing::warn!(
                    "pruning logical logs failed ({e}); retrying at the next checkpoint"
                );
            }
        }
        Ok(self._lock)
    }

    pub fn node(&self, id: Id) -> Result<Option<Node>, StoreError> {
        if id >= self.state.next_node {
            return Ok(None);
        }
        let rec = self.files.read_node(id)?;
        self.files.load_node(id, &rec)
    }

    /// The ids of the relationships of node `id`, newest first; `None` if the node does not
    /// exist.
    pub fn node_relationships(&self, id: Id) -> Result<Option<Vec<Id>>, StoreError> {
        if id >= self.state.next_node {
            return Ok(None);
        }
        let node = self.files.read_node(id)?;
        if !node.in_use {
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut at = node.first_rel;
        while at != NONE {
            if out.len() as u64 > self.state.relationships {
                return Err(StoreError::Corrupt(format!(
                    "relationship chain of node {id} loops"
                )));
            }
            out.push(at);
            at = self.files.read_rel(at)?.links_for(id).1;
        }
        Ok(Some(out))
    }

    /// Describes the log files, oldest first, the active file last (for retention). Sealed
    /// files are read once and remembered (RET-16); the active one is read each time.
    pub fn describe_logs(&mut self) -> Result<Vec<LogFile>, StoreError> {
        let versions = log::list_log_versions(&*self.fs, &self.dir)
            .map_err(|e| StoreError::io(format!("listing {}", self.dir.display()), e))?;
        // Forget files that are gone (pruned, or removed by hand).
        self.sealed_logs
            .retain(|v, _| versions.binary_search(v).is_ok());
        let mut files: Vec<LogFile> = Vec::with_capacity(versions.len());
        for &version in versions.iter().filter(|&&v| v <= self.log.version) {
            let read = match self.sealed_logs.get(&version) {
                Some(&known) => known,
                None => {
                    let read = self.read_log_description(version)?;
                    if version < self.log.version {
                        self.sealed_logs.insert(version, read);
                    }
                    read
                }
            };
            if let Some(prev) = files.last_mut() {
                prev.last_tx = read.prev_last_tx;
            }
            files.push(LogFile {
                version,
                prev_last_tx: read.prev_last_tx,
                last_tx: self.last_tx,
                bytes: read.bytes,
                first_tx_millis: read.first_tx_millis,
            });
        }
        Ok(files)
    }

    /// Reads log file `version`'s header, length and first commit time.
    fn read_log_description(&self, version: u64) -> Result<SealedLog, StoreError> {
        let path = log::log_path(&self.dir, version);
        let io_err = |e| StoreError::io(format!("reading {}", path.display()), e);
        let file = self.fs.open(&path, OpenMode::Read).map_err(io_err)?;
        let header = LogHeader::read(&*file).map_err(io_err)?.ok_or_else(|| {
            StoreError::Corrupt(format!("log file {version} has a damaged header"))
        })?;
        let bytes = file.len().map_err(io_err)?;
        let first_tx_millis = match log::read_entry(&*file, HEADER_SIZE, bytes).map_err(io_err)? {
            ReadOutcome::Entry(entry, _) => Some(entry.timestamp_millis),
            _ => None,
        };
        Ok(SealedLog {
            prev_last_tx: header.prev_last_tx,
            bytes,
            first_tx_millis,
        })
    }

    /// Deletes the log files retention allows, oldest first, then syncs the directory once
    /// (RET-14). A failed deletion ends the run; nothing newer is deleted, so no gap.
    fn prune_logs(&mut self) -> Result<(), StoreError> {
        if self.options.retention == RetentionPolicy::KeepAll {
            return Ok(());
        }
        let files = self.describe_logs()?;
        let now = self.clock.now_millis();
        let doomed = files_to_prune(&PruneInput {
            files: &files,
            policy: self.options.retention,
            now_millis: now,
            recovery_version: self.meta.checkpoint.log_version,
            pinned_from_tx: self
                .options
                .pins
                .oldest_pinned_tx(self.clock.monotonic_millis()),
        });
        let mut deleted = 0;
        for version in &doomed {
            if let Err(e) = self.fs.remove_file(&log::log_path(&self.dir, *version)) {
                tracing::warn!(
                    "could not delete log file {version} ({e}); retrying at the next checkpoint"
                );
                break;
            }
            deleted += 1;
        }
        if deleted > 0 {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| StoreError::io("syncing the store directory", e))?;
            tracing::info!(
                "pruned {deleted} logical log file(s); the oldest kept is log file {}",
                doomed[deleted - 1] + 1
            );
        }
        Ok(())
    }

    /// What the logical logs hold: the oldest transaction still in them and their total size
    /// (`GET /db/data/`'s `oldest_logged_tx` and `log_bytes`).
    pub fn log_summary(&self) -> Result<LogSummary, StoreError> {
        let io_err = |e| StoreError::io(format!("listing {}", self.dir.display()), e);
        let entries = self.fs.read_dir(&self.dir).map_err(io_err)?;
        let versions = log::list_log_versions(&*self.fs, &self.dir).map_err(io_err)?;
        let log_bytes = entries
            .iter()
            .filter(|e| !e.is_dir && e.name.starts_with(log::LOG_PREFIX))
            .filter(|e| {
                e.name[log::LOG_PREFIX.len()..]
                    .parse::<u64>()
                    .is_ok_and(|v| versions.contains(&v))
            })
            .map(|e| e.len)
            .sum();
        let oldest = versions.first().copied().unwrap_or(self.log.version);
        let oldest_logged_tx = if oldest == self.log.version {
            self.active_prev_last_tx()? + 1
        } else {
            let path = log::log_path(&self.dir, oldest);
            let file = self
                .fs
                .open(&path, OpenMode::Read)
                .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
            LogHeader::read(&*file)
                .map_err(|e| StoreError::io("reading a log header", e))?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("log file {oldest} has a damaged header"))
                })?
                .prev_last_tx
                + 1
        };
        Ok(LogSummary {
            oldest_logged_tx,
            log_bytes,
        })
    }

    fn active_prev_last_tx(&self) -> Result<u64, StoreError> {
        Ok(LogHeader::read(&*self.log.file)
            .map_err(|e| StoreError::io("reading the active log header", e))?
            .map(|h| h.prev_last_tx)
            .unwrap_or(self.last_tx))
    }

    /// The digest recomputed by reading every record; equals `status().digest` in a healthy
    /// store (DG-10).
    pub fn scan_digest(&self) -> Result<Digest, StoreError> {
        tx::scan_digest(&self.files, self.state.next_node, self.state.next_rel)
    }
}

impl TxState {
    pub fn empty() -> TxState {
        TxState {
            digest: Digest::ZERO,
            nodes: 0,
            relationships: 0,
            next_node: 0,
            next_rel: 0,
            next_block: 0,
        }
    }
}

/// Creates log file `path` holding only `header`, synced (the caller syncs the directory).
fn create_log_file(
    fs: &dyn Fs,
    path: &Path,
    header: &LogHeader,
) -> Result<Box<dyn FileHandle>, StoreError> {
    let file = fs
        .open(path, OpenMode::CreateTruncate)
        .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
    file.write_all_at(&header.encode(), 0)
        .and_then(|()| file.sync())
        .map_err(|e| StoreError::io(format!("writing {}", path.display()), e))?;
    Ok(file)
}

/// Writes the files of a store whose record files already hold `state` at tx `last_tx`: the
/// first log file (empty), then the metadata, which is the commit point (ST-1). Used by
/// `create`, `generate` and the backup client.
pub fn initialize(
    fs: &dyn Fs,
    dir: &Path,
    store_id: StoreId,
    format: FormatVersion,
    state: TxState,
    last_tx: u64,
) -> Result<(), StoreError> {
    let files = RecordFiles::open(fs, dir, format, true)?;
    if !faults::on(Switch::SkipSyncBeforeSwitch) {
        files.sync_all()?;
    }
    drop(files);
    let header = LogHeader {
        log_version: 0,
        prev_last_tx: last_tx,
        prev_digest: state.digest,
    };
    drop(create_log_file(fs, &log::log_path(dir, 0), &header)?);
    fs.sync_dir(dir)
        .map_err(|e| StoreError::io(format!("syncing {}", dir.display()), e))?;
    let meta = Meta {
        store_id,
        format,
        checkpoint: Checkpoint::at(last_tx, 0, HEADER_SIZE, &state),
        unverified: false,
    };
    meta.write(fs, dir)
        .map_err(|e| StoreError::io("writing neostore.meta", e))
}

/// The most bytes a record file holds at a state: the high-water mark of its kind times the
/// record size. A full backup copies each file up to this at its checkpoint (PR-11); records
/// above the mark belong to transactions after it, which the stream replays.
pub fn record_file_limit(kind: RecordKind, state: &TxState, format: FormatVersion) -> u64 {
    state.mark(kind).saturating_mul(kind.size(format) as u64)
}
