//! Where a backup goes, behind one trait (OBJ-1): a directory ([`Target`], whose backup is a
//! store the transactions are applied to in place) or an object store ([`ObjectBackup`], whose
//! generations and segments are uploaded). A run — connect, handshake, the backup the target
//! holds, the decision and its refusals, the incremental request and the fallback when the
//! server refuses it — is written once, in [`drive`], against [`BackupTarget`]; each target
//! says only how it reads what it holds and how it takes each kind of backup.
//!
//! Owns: the order of a run's steps, and what differs between the two targets at each.
//! Must not touch: the decision itself (`backup::decision`, pure) or the protocol's checks,
//! which both targets share (`apply`, `full`); nor any target's bytes, which each
//! implementation writes.

use std::time::SystemTime;

use super::connection::{ask_incremental, connect, handshake, Answer};
use super::{existing_backup, BackupError, BackupOptions, Observer, Run, Summary};
use crate::backup::decision::{self, Existing, FullReason, Mode, Step};
use crate::backup::objects::{last_state, Lease, ObjectTarget, MAX_SEGMENTS};
use crate::backup::protocol::Message;
use crate::backup::target::Target;
use crate::backup::tls::ClientTls;
use crate::config::join_host_port;
use crate::io::Env;
use crate::store::log::TxState;

/// What a run needs of the place its backup goes (OBJ-1). Both implementations keep the same
/// guarantees: nothing is written before the decision and the server's answer (BK-17), the
/// live backup stays valid whatever fails, and a second concurrent run is refused (a lock or a
/// lease, held by the value for the whole run).
pub(super) trait BackupTarget {
    /// How the target is named in lines and errors: the directory, or the `s3://` URL.
    fn shown(&self) -> String;

    /// The backup it holds, read without writing anything (BK-17), told to `out`; `None` when
    /// it holds none.
    fn existing(
        &self,
        env: &Env,
        mode: Mode,
        out: &mut dyn Observer,
    ) -> Result<Option<Existing>, BackupError>;

    /// Why to take a full backup although the backup could be caught up: an object store whose
    /// generation reached its segment bound (OBJ-12). `None` for a directory.
    fn full_instead(&self) -> Option<FullReason>;

    /// What must be read before the server is asked for transactions, so that a damaged
    /// backup is refused before anything is sent (the state after an object store's last tx,
    /// OBJ-11). Nothing for a directory: its last tx and digest were peeked with
    /// [`BackupTarget::existing`].
    async fn prepare_incremental(&mut self) -> Result<(), BackupError>;

    /// Catches the backup up: the server accepted and sent `first`, the first transaction
    /// after `backup`'s last tx or the end of the stream.
    async fn incremental(
        &mut self,
        run: &mut Run<'_>,
        backup: &Existing,
        first: Message,
    ) -> Result<Summary, BackupError>;

    /// Takes a full backup into a new generation and makes it live, the pointer written last.
    async fn full(
        &mut self,
        run: &mut Run<'_>,
        reason: FullReason,
        existing: Option<&Existing>,
    ) -> Result<Summary, BackupError>;
}

/// One run against `target` (BK-10 .. BK-47, OBJ-5 .. OBJ-12): connect, handshake, the backup
/// the target holds, the decision (refusals before anything is written), then an incremental
/// backup when one is possible and the server accepts, a full one otherwise.
pub(super) async fn drive<T: BackupTarget>(
    env: &Env,
    opts: &BackupOptions,
    target: &mut T,
    tls: Option<&ClientTls>,
    started: SystemTime,
    out: &mut dyn Observer,
) -> Result<Summary, BackupError> {
    let addr = join_host_port(&opts.host, opts.port);
    let shown = target.shown();
    let mut conn = connect(env, opts, &addr, opts.max_rate, tls).await?;
    let server = handshake(&mut conn).await?;
    out.server(&addr, &server);
    // Refusals first (BK-13 .. BK-15, BK-46): nothing has been written yet.
    let existing = target.existing(env, opts.mode, out)?;
    let step = decision::decide(existing.as_ref(), opts.mode, &server)
        .map_err(|r| BackupError::refused(r, &shown, &addr))?;
    let mut run = Run {
        env,
        opts,
        out,
        conn: &mut conn,
        server,
        started,
        addr,
        keeper: None,
    };
    let reason = match step {
        Step::Full(reason) => reason,
        Step::AskIncremental(backup) => match target.full_instead() {
            Some(why) if opts.mode == Mode::Incremental => {
                return Err(BackupError::IncrementalImpossible { dir: shown, why });
            }
            Some(why) => why,
            None => {
                run.out.line(&format!(
                    "incremental backup from {} into {shown}: the backup is at tx {}, the server at tx {}",
                    run.addr, backup.last_tx, run.server.last_committed_tx
                ));
                target.prepare_incremental().await?;
                match ask_incremental(run.conn, &backup).await? {
                    Answer::Accepted(first) => {
                        return target.incremental(&mut run, &backup, first).await;
                    }
                    Answer::Refused(answer) => {
                        decision::after_server_refusal(opts.mode, &backup, answer)
                            .map_err(|r| BackupError::refused(r, &shown, &run.addr))?
                    }
                }
            }
        },
    };
    target.full(&mut run, reason, existing.as_ref()).await
}

/// A backup directory (BK-30): generations, a pointer, the directory's lock.
impl BackupTarget for Target {
    fn shown(&self) -> String {
        self.dir().display().to_string()
    }

    fn existing(
        &self,
        env: &Env,
        mode: Mode,
        out: &mut dyn Observer,
    ) -> Result<Option<Existing>, BackupError> {
        existing_backup(env, self, mode, out)
    }

    fn full_instead(&self) -> Option<FullReason> {
        None
    }

    async fn prepare_incremental(&mut self) -> Result<(), BackupError> {
        Ok(())
    }

    async fn incremental(
        &mut self,
        run: &mut Run<'_>,
        backup: &Existing,
        first: Message,
    ) -> Result<Summary, BackupError> {
        run.incremental(self, backup, first).await
    }

    async fn full(
        &mut self,
        run: &mut Run<'_>,
        reason: FullReason,
        existing: Option<&Existing>,
    ) -> Result<Summary, BackupError> {
        run.full(self, reason, existing).await
    }
}

/// A backup in an object store (spec/objects.md): what the prefix holds, read under the lease
/// the run took (OBJ-8), which the caller releases when the run ends.
pub(super) struct ObjectBackup {
    pub target: ObjectTarget,
    pub lease: Lease,
    /// The state after the backup's last tx, read back from its newest log object before the
    /// server is asked (OBJ-11).
    state: Option<TxState>,
}

impl ObjectBackup {
    pub fn new(target: ObjectTarget, lease: Lease) -> ObjectBackup {
        ObjectBackup {
            target,
            lease,
            state: None,
        }
    }
}

impl BackupTarget for ObjectBackup {
    fn shown(&self) -> String {
        self.target.url().to_string()
    }

    /// The live generation's manifest says what the backup holds. An object store backup is
    /// never marked unverified: its runs verify the stream and nothing is applied in place.
    fn existing(
        &self,
        _env: &Env,
        _mode: Mode,
        out: &mut dyn Observer,
    ) -> Result<Option<Existing>, BackupError> {
        let existing = self.target.manifest().map(|m| Existing {
            store_id: m.store_id,
            format: m.format,
            last_tx: m.last_tx,
            digest: m.digest,
            unverified: false,
        });
        if let Some(e) = &existing {
            out.existing(&super::BackupFacts {
                store_id: e.store_id,
                format: e.format,
                last_tx: e.last_tx,
            });
        }
        Ok(existing)
    }

    fn full_instead(&self) -> Option<FullReason> {
        let segments = self.target.segments();
        (segments >= MAX_SEGMENTS).then_some(FullReason::Consolidate { segments })
    }

    async fn prepare_incremental(&mut self) -> Result<(), BackupError> {
        self.state = Some(last_state(&self.target).await?);
        Ok(())
    }

    async fn incremental(
        &mut self,
        run: &mut Run<'_>,
        backup: &Existing,
        first: Message,
    ) -> Result<Summary, BackupError> {
        let state = match self.state.take() {
            Some(state) => state,
            None => last_state(&self.target).await?,
        };
        self.target.clean(&*run.env.objects).await?;
        run.incremental_to_objects(&mut self.target, &mut self.lease, backup, state, first)
            .await
    }

    async fn full(
        &mut self,
        run: &mut Run<'_>,
        reason: FullReason,
        existing: Option<&Existing>,
    ) -> Result<Summary, BackupError> {
        self.target.clean(&*run.env.objects).await?;
        run.full_to_objects(&mut self.target, &mut self.lease, reason, existing)
            .await
    }
}
