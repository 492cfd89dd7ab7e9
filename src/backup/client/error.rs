//! Why a backup failed, one typed variant per cause, and the exit code of each (BK-40).

use std::time::Duration;

use crate::backup::decision::{FullReason, Refusal as Refused};
use crate::backup::objects::ObjectsError;
use crate::backup::protocol::ProtocolError;
use crate::backup::target::TargetError;
use crate::backup::tls::{TlsFailure, TlsSetupError};
use crate::digest::Digest;
use crate::store::format::FormatVersion;
use crate::store::meta::StoreId;
use crate::store::StoreError;
use crate::units;

/// Why a backup failed; each maps to one exit code (BK-40).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot reach the backup service at {addr}: {why}")]
    Unreachable { addr: String, why: String },
    #[error("the backup service at {addr} did not send anything for {} while the backup waited for {waiting_for}", units::duration(*.timeout))]
    Timeout {
        addr: String,
        timeout: Duration,
        waiting_for: String,
    },
    #[error("the connection to the backup service at {addr} failed while waiting for {waiting_for}: {source}")]
    Network {
        addr: String,
        waiting_for: String,
        #[source]
        source: ProtocolError,
    },
    #[error("{addr} does not speak the backup protocol{}", if *.looks_like_http {
        " (it answered in HTTP: it is probably the server's HTTP port; the backup service listens on online_backup_server, port 6362 by default)"
    } else {
        "; check that -port names the server's online_backup_server port"
    })]
    NotBackupService { addr: String, looks_like_http: bool },
    #[error("the backup service at {addr} answered with a {got} where {expected} was expected")]
    UnexpectedMessage {
        addr: String,
        got: &'static str,
        expected: String,
    },
    /// TLS with the service failed (SEC-11): its sentence names the service and what to do.
    #[error("{0}")]
    Tls(TlsFailure),
    /// A TLS file given on the command line cannot be used (SEC-11).
    #[error("{0}")]
    TlsSetup(#[from] TlsSetupError),
    /// A plaintext hello was answered by a TLS service (SEC-7).
    #[error("the backup service at {addr} requires TLS: run again with --tls-ca, --tls-cert and --tls-key (the CA that signed its certificate, and a client certificate it accepts)")]
    TlsRequired { addr: String },
    /// The service closed the connection before it answered the hello (PR-21).
    #[error("the backup service at {addr} closed the connection without answering: it may be serving as many backup connections as it allows, or shutting down; try again later")]
    ClosedUnanswered { addr: String },
    #[error("the server speaks backup protocol version {server}, this tool speaks {client}")]
    ProtocolVersion { server: u32, client: u32 },
    /// The server refused with a failure of its own (PR-7 code 6); its sentence, as it sent it,
    /// with control characters escaped (BK-54).
    #[error("the server failed: {message}")]
    ServerFailed { message: String },
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("{dir} holds a backup of store {backup}, but the server's store is {server}; back up into another directory")]
    StoreMismatch {
        dir: String,
        backup: StoreId,
        server: StoreId,
    },
    #[error("{dir} holds a backup in format version {backup}, but the server's store is in format version {server}; {}", format_advice(dir, *.backup, *.server))]
    VersionMismatch {
        dir: String,
        backup: FormatVersion,
        server: FormatVersion,
    },
    #[error("the backup in {dir} is at tx {backup_tx}, ahead of the server at {addr}, which is at tx {server_tx}: the backup holds transactions this server does not have (is it the right server, or one restored from an older backup?); nothing was changed; to replace the backup with the server's older state on purpose, run again with --type full")]
    BackupAhead {
        dir: String,
        addr: String,
        backup_tx: u64,
        server_tx: u64,
    },
    #[error("not enough room in {dir} for a full backup: it needs about {} ({needed} bytes) and only {} ({available} bytes) is free", units::bytes(*.needed), units::bytes(*.available))]
    NoRoom {
        dir: String,
        needed: u64,
        available: u64,
    },
    #[error("verification failed: {0}")]
    VerificationFailed(VerifyFailure),
    #[error("an incremental backup is impossible: {}", .why.describe(dir))]
    IncrementalImpossible { dir: String, why: FullReason },
    #[error("the backup store failed: {0}")]
    Store(#[from] StoreError),
    /// The backup recovered to another tx than reading it had found (BK-17): it changed under
    /// the run, although the run holds its lock.
    #[error("the backup recovered to tx {recovered} but reading it found tx {peeked}")]
    RecoveredElsewhere { recovered: u64, peeked: u64 },
    #[error("the server sent something wrong: {0}")]
    Protocol(Violation),
    /// An object store target failed or refused (OBJ-10).
    #[error("{0}")]
    Objects(#[from] ObjectsError),
}

/// What the server sent that the protocol does not allow (PR-11, PR-13, PR-15): the client
/// trusts nothing it receives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("it sent a file named {0}, which is not a store file")]
    NotAStoreFile(String),
    #[error("it sent {0} twice")]
    FileTwice(String),
    #[error("{name} is longer than the {len} bytes announced")]
    FileTooLong { name: String, len: u64 },
    #[error("{name} ended after {at} of the {len} bytes announced")]
    FileTooShort { name: String, at: u64, len: u64 },
    #[error("{0} arrived damaged (checksum mismatch)")]
    FileDamaged(String),
    #[error("tx {got} arrived where tx {expected} was expected")]
    OutOfOrder { got: u64, expected: u64 },
    /// A full backup must carry exactly the store's record files (BK-51).
    #[error("it announced {announced} store files, but a store has exactly {expected}")]
    FileCount { announced: u32, expected: u32 },
    /// A file longer than the checkpoint's high-water mark of its kind allows (BK-51).
    #[error("it announced {name} as {len} bytes, more than the {limit} bytes its checkpoint's high-water mark allows")]
    FileBeyondCheckpoint { name: String, len: u64, limit: u64 },
    /// The checkpoint or the end is older than what the server's welcome announced (BK-52).
    #[error("it announced tx {announced} when the connection opened, then sent a {what} at tx {got}, older than that")]
    OlderThanWelcome {
        what: &'static str,
        got: u64,
        announced: u64,
    },
    /// A transaction whose ids or high-water marks do not follow the state before it (BK-53,
    /// LOG-10).
    #[error("tx {tx} cannot follow the state before it: {why}")]
    TxOutOfBounds { tx: u64, why: String },
    #[error("the stream ended at tx {ended} but the server said it ends at tx {said}")]
    EndMismatch { ended: u64, said: u64 },
}

/// Why verification failed (BK-26 .. BK-28).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    /// A record an incremental wrote does not read back as its after-image (BK-27).
    #[error("a record written by tx {tx} reads back differently")]
    RecordDiffers { tx: u64 },
    /// The backup's digest at the end differs from the server's (BK-20).
    #[error("the backup's digest at tx {tx} is {backup} but the server's is {server}")]
    DigestDiffers {
        tx: u64,
        backup: Digest,
        server: Digest,
    },
    /// The full scan found the backup inconsistent (BK-26).
    #[error("the check found {count} {}, the first: {first}", if *.count == 1 { "problem" } else { "problems" })]
    Inconsistent { count: u64, first: String },
    /// The full scan's recomputed digest differs from the server's (BK-26).
    #[error("the recomputed digest {recomputed} differs from the server's {server} at tx {tx}")]
    RecomputedDiffers {
        tx: u64,
        recomputed: String,
        server: Digest,
    },
    /// A scrub found blocks that do not match the manifest (MF-11).
    #[error("scrubbing found {count} damaged {}, the first: {first}; the backup is marked unverified and the next run takes a full backup", if *.count == 1 { "block" } else { "blocks" })]
    Scrub { count: usize, first: String },
    /// A block an incremental was about to rewrite does not match the manifest (MF-8).
    #[error("a block the run was about to rewrite does not match the manifest: {0}; the backup is marked unverified and the next run takes a full backup")]
    DamagedBeforeWrite(String),
    /// The generation's manifest is damaged, or its files changed where no run wrote (MF-7).
    #[error("the backup's manifest cannot be trusted: {0}")]
    Manifest(String),
}

/// What to do about a backup in another format version (BK-15): upgrade the backup when the
/// server's format is newer, or replace it with `--type full` (BK-47), or use a new directory.
fn format_advice(dir: &str, backup: FormatVersion, server: FormatVersion) -> String {
    if server > backup {
        format!(
            "to keep this backup, run `neo4j-admin upgrade {dir}` and back up again; or replace it with a full backup in format version {server} with --type full, or back up into a new directory"
        )
    } else {
        format!(
            "replace it with a full backup in format version {server} with --type full, or back up into a new directory"
        )
    }
}

impl BackupError {
    /// The exit code of the brief (BK-40).
    pub fn exit_code(&self) -> u8 {
        match self {
            BackupError::Target(TargetError::NotABackup { .. }) => 3,
            BackupError::StoreMismatch { .. } => 4,
            BackupError::VersionMismatch { .. } => 5,
            BackupError::VerificationFailed(_) => 6,
            BackupError::IncrementalImpossible { .. } | BackupError::BackupAhead { .. } => 7,
            BackupError::Objects(e) => e.exit_code(),
            _ => 1,
        }
    }

    pub(super) fn refused(refusal: Refused, dir: &str, addr: &str) -> BackupError {
        let dir = dir.to_string();
        match refusal {
            Refused::OtherStore { backup, server } => BackupError::StoreMismatch {
                dir,
                backup,
                server,
            },
            Refused::OtherFormat { backup, server } => BackupError::VersionMismatch {
                dir,
                backup,
                server,
            },
            Refused::Ahead {
                backup_tx,
                server_tx,
            } => BackupError::BackupAhead {
                dir,
                addr: addr.to_string(),
                backup_tx,
                server_tx,
            },
            Refused::IncrementalImpossible(why) => BackupError::IncrementalImpossible { dir, why },
        }
    }
}
