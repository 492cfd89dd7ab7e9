//! The backup client: what `neo4j-backup` does (spec/backup.md).
//!
//! Owns: running the decision of `decision` against a target and a server, the refusals
//! (decided before anything is written), receiving a full backup into a new generation and
//! switching to it, applying an incremental one in place through the backup's log,
//! verification, and the account of what happened (an [`Observer`]).
//! Must not touch: the server's store, or any file outside the target directory. Sockets,
//! files and time only through the `Env` it is given, so simulations run it unchanged.

//!
//! Layout, by phase: [`connection`] (connect, handshake, the incremental request), the decision
//! (`backup::decision`, pure), [`full`] and [`incremental`] (the two kinds), [`apply`] (applying
//! a stream of transactions and verifying, shared by both), [`report`] (what a run tells its
//! [`Observer`] and the summary) and [`error`] (why a run failed, and its exit code). This file
//! ties them together: [`run`] and [`plan`].

mod apply;
mod connection;
mod error;
mod full;
mod incremental;
mod keeper;
mod objects;
mod report;
mod targets;

use std::path::PathBuf;
use std::time::Duration;

use crate::backup::decision::Existing;
pub use crate::backup::decision::{FullReason, Mode, ServerInfo};
use crate::backup::objects::{ObjectTarget, ObjectUrl, ObjectsError};
use crate::backup::target::{Target, TargetError};
use crate::backup::tls::{ClientTls, ClientTlsFiles};
use crate::digest::Digest;
use crate::io::{parent_of, Env};
pub use crate::progress::Phase;
use crate::retention::RetentionPolicy;
use crate::store::meta::StoreId;
use crate::store::{peek_last_tx, StoreError, StoreOptions};
pub use apply::APPLY_RUN_TXS;
pub use connection::paced_buffer;
use connection::Conn;
pub use error::{BackupError, VerifyFailure, Violation};
use objects::run_objects;
pub use report::{transactions, BackupFacts, Kind, Lines, Observer, Summary, Verified};

/// How much to verify (`-verify`, BK-26 .. BK-28).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// `false`: nothing beyond the end frame's digest check.
    Off,
    /// `true`: a full scan after a full backup; the records touched plus the digest after an
    /// incremental.
    Default,
    /// `full`: a full scan whatever the kind.
    Full,
}

/// What to back up, from where, to where.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    pub host: String,
    pub port: u16,
    /// The backup directory, or an object store spelled `s3://bucket/prefix` (OBJ-1).
    pub target: PathBuf,
    pub mode: Mode,
    pub verify: Verify,
    /// The longest to wait for the server to send anything (BK-7).
    pub timeout: Duration,
    /// The most bytes per second to receive (`--max-rate`, BK-41); `None` for no limit (a
    /// limit of nothing is no rate: the command line refuses `--max-rate 0`).
    pub max_rate: Option<std::num::NonZeroU64>,
    /// `--tls-ca`, `--tls-cert`, `--tls-key` (SEC-9); `None` for a plaintext connection.
    pub tls: Option<ClientTlsFiles>,
    /// The most transactions applied in one durable run (BK-24), at most [`APPLY_RUN_TXS`]:
    /// the binary uses that; the simulations use a few on some runs, so that runs, their read
    /// back and the stream interleave.
    pub apply_run_txs: usize,
    /// `--scrub-budget`: the percentage of the backup's blocks each incremental reads against
    /// the manifest (MF-11); 0 scrubs nothing.
    pub scrub_percent: u32,
    /// `--keep-transactions`: which of its own logs the backup keeps, and with them the undo
    /// segments that let it be restored to any tx they hold (PIT-3);
    /// [`RetentionPolicy::KeepRecoveryOnly`] keeps only what recovery needs.
    pub keep_transactions: RetentionPolicy,
    /// `--keep-generations`: how many finished generations the directory keeps, the live one
    /// counted (PIT-12); at least 1.
    pub keep_generations: u32,
}

impl BackupOptions {
    /// Whether the backup keeps transactions to be restored to earlier txs (PIT-3).
    pub fn keeps_transactions(&self) -> bool {
        self.keep_transactions != RetentionPolicy::KeepRecoveryOnly
    }
}

/// The default `--scrub-budget` (MF-11): 2 % of the blocks per incremental, so every block is
/// read within 50 runs.
pub const SCRUB_PERCENT: u32 = 2;

/// The options a backup's own store is opened with: retention keeps what `--keep-transactions`
/// says, by default only what recovery needs (a backup serves no one's incremental), and the
/// default rotation threshold.
fn backup_store_options(opts: &BackupOptions) -> StoreOptions {
    StoreOptions {
        retention: opts.keep_transactions,
        ..StoreOptions::default()
    }
}

/// Runs one backup (BK-10 .. BK-47). Refusals are decided before anything in the target is
/// written; an existing backup stays valid whatever fails. A run that fails on a target that
/// did not exist removes the directory it created (if it is still empty), so that a refusal
/// or a failure leaves no trace (BK-17).
pub async fn run(
    env: &Env,
    opts: &BackupOptions,
    out: &mut dyn Observer,
) -> Result<Summary, BackupError> {
    if let Some(url) = ObjectUrl::of_path(&opts.target)? {
        return run_objects(env, opts, &url, out).await;
    }
    let existed = !matches!(env.fs.metadata(&opts.target), Ok(None));
    let result = run_in(env, opts, out).await;
    if result.is_err() && !existed {
        if let Ok(entries) = env.fs.read_dir(&opts.target) {
            if entries.is_empty() {
                let removed = env
                    .fs
                    .remove_dir_all(&opts.target)
                    .and_then(|()| env.fs.sync_dir(parent_of(&opts.target)));
                if let Err(e) = removed {
                    tracing::warn!("could not remove the directory this run created: {e}");
                }
            }
        }
    }
    result
}

async fn run_in(
    env: &Env,
    opts: &BackupOptions,
    out: &mut dyn Observer,
) -> Result<Summary, BackupError> {
    let started = env.clock.monotonic();
    let shown = opts.target.display().to_string();
    // The TLS files first: one that cannot be read fails the run before anything (SEC-11).
    let tls = load_tls(env, opts)?;
    // BK-12, BK-17: `--type incremental` into a missing directory has nothing to build on;
    // it is refused before `Target::open` would create the directory.
    if opts.mode == Mode::Incremental {
        let missing = env
            .fs
            .metadata(&opts.target)
            .map_err(|source| TargetError::Io {
                dir: shown.clone(),
                source,
            })?
            .is_none();
        if missing {
            return Err(BackupError::IncrementalImpossible {
                dir: shown,
                why: FullReason::NoBackup,
            });
        }
    }
    let mut target = Target::open(env.fs.clone(), &opts.target)?;
    targets::drive(env, opts, &mut target, tls.as_ref(), started, out).await
}

/// The backup the target holds, read without writing (BK-17), or `None`. Its last tx is what
/// recovery would reach; when its logs cannot be read and the run will replace it anyway
/// (`--type full`, or a backup marked unverified), the checkpoint stands in.
fn existing_backup(
    env: &Env,
    target: &Target,
    mode: Mode,
    out: &mut dyn Observer,
) -> Result<Option<Existing>, BackupError> {
    let Some(meta) = target.meta() else {
        return Ok(None);
    };
    let (last_tx, digest) = match peek_backup(&*env.fs, target.dir()) {
        Ok(found) => found,
        Err(_) if mode == Mode::Full || meta.unverified => {
            (meta.checkpoint.last_tx, meta.checkpoint.state.digest)
        }
        Err(e) => return Err(e),
    };
    out.existing(&BackupFacts {
        store_id: meta.store_id,
        format: meta.format,
        last_tx,
    });
    Ok(Some(Existing {
        store_id: meta.store_id,
        format: meta.format,
        last_tx,
        digest,
        unverified: meta.unverified,
    }))
}

/// What a run would do (`--plan`, BK-42).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub kind: Kind,
    /// Why this kind, in one line.
    pub reason: String,
    /// Why a full backup, typed (`None` for an incremental one).
    pub full_reason: Option<FullReason>,
    pub store_id: StoreId,
    /// The backup's last tx, when the directory holds one.
    pub from_tx: Option<u64>,
    /// The server's last committed tx now: what the backup would reach at least.
    pub to_tx: u64,
    /// For a full backup, the store file bytes to copy; for an incremental, 0 (the transactions'
    /// size is not known before they are read).
    pub bytes: u64,
    /// Free bytes on the target's file system (of its nearest existing ancestor); `None` for
    /// an object store, which has no such bound.
    pub free: Option<u64>,
}

/// Says what [`run`] would do and why, changing nothing (BK-42): the same decision
/// (`decision::decide`, then the server's answer to the same incremental request, whose first
/// answer is read before the connection is dropped), so the same refusals with the same exit
/// codes.
pub async fn plan(
    env: &Env,
    opts: &BackupOptions,
    out: &mut dyn Observer,
) -> Result<Plan, BackupError> {
    let tls = load_tls(env, opts)?;
    if let Some(url) = ObjectUrl::of_path(&opts.target)? {
        let store = env
            .objects
            .open(&url.bucket)
            .map_err(|e| ObjectsError::from_store(&url, "opening", &e))?;
        let mut target = ObjectTarget::read(store, &url).await?;
        return targets::plan(env, opts, &mut target, tls.as_ref(), out).await;
    }
    let mut target = Target::inspect(env.fs.clone(), &opts.target)?;
    targets::plan(env, opts, &mut target, tls.as_ref(), out).await
}

/// The tool's TLS, when `--tls-ca` was given (SEC-9, SEC-11).
fn load_tls(env: &Env, opts: &BackupOptions) -> Result<Option<ClientTls>, BackupError> {
    Ok(opts
        .tls
        .as_ref()
        .map(|files| ClientTls::load(env, files))
        .transpose()?)
}

/// Why an incremental backup: the one line of BK-9.
fn incremental_reason(dir: &str, from: u64) -> String {
    format!("{dir} holds a backup at tx {from}")
}

/// The free space a full backup of `store_bytes` of record files needs (BK-16): the files, a
/// sixteenth more for the logs of the catch-up, and 1 MiB.
fn room_needed(store_bytes: u64) -> u64 {
    store_bytes + store_bytes / 16 + (1 << 20)
}

/// The backup's last tx and its digest, read without recovering (BK-17).
fn peek_backup(
    fs: &dyn crate::io::Fs,
    dir: &std::path::Path,
) -> Result<(u64, Digest), BackupError> {
    peek_last_tx(fs, dir).map_err(|e| match e {
        StoreError::Corrupt(_) | StoreError::NotAStore(_) => TargetError::NotABackup {
            dir: dir.display().to_string(),
            why: e.to_string(),
        }
        .into(),
        e => e.into(),
    })
}

/// One run's shared state.
struct Run<'a> {
    env: &'a Env,
    opts: &'a BackupOptions,
    out: &'a mut dyn Observer,
    conn: &'a mut Conn,
    server: ServerInfo,
    /// When the run began, a reading of [`crate::io::Clock::monotonic`] (IO-15).
    started: Duration,
    addr: String,
    /// The manifest of the generation the run writes, when it keeps one (MF-6).
    keeper: Option<keeper::Keeper>,
}

impl Run<'_> {
    fn elapsed(&self) -> Duration {
        self.env.clock.since(self.started)
    }
}
