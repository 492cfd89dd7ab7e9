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

use std::path::Path;
use std::time::Duration;

use super::connection::{ask_incremental, connect, handshake, Answer, Conn};
use super::{
    existing_backup, incremental_reason, room_needed, BackupError, BackupOptions, Kind, Observer,
    Plan, Run, Summary,
};
use crate::backup::decision::{self, Existing, FullReason, Mode, ServerInfo, Step};
use crate::backup::objects::{last_state, Lease, ObjectTarget, MAX_SEGMENTS};
use crate::backup::protocol::Message;
use crate::backup::target::{Target, TargetError};
use crate::backup::tls::ClientTls;
use crate::config::join_host_port;
use crate::io::{parent_of, Env};
use crate::store::log::TxState;

/// What a run, or a plan of one (BK-42), reads of the place its backup goes (OBJ-1), changing
/// nothing.
pub(super) trait TargetView {
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
    /// [`TargetView::existing`].
    async fn prepare_incremental(&mut self) -> Result<(), BackupError>;
}

/// What a plan (BK-42) reads beyond what a run reads: the room. A run checks the room
/// against the server's start frame instead (BK-16, BK-51), so only the views a plan opens
/// (a directory inspected, an object store without its lease) need this.
pub(super) trait PlanView: TargetView {
    /// The free bytes where a full backup would go (BK-16, BK-42): the file system of the
    /// directory (of its nearest existing ancestor); `None` for an object store, which has no
    /// such bound to check.
    fn free_space(&self, env: &Env, path: &Path) -> Result<Option<u64>, BackupError>;
}

/// What a run needs of the place its backup goes (OBJ-1), beyond reading it. Both
/// implementations keep the same guarantees: nothing is written before the decision and the
/// server's answer (BK-17), the live backup stays valid whatever fails, and a second concurrent
/// run is refused (a lock or a lease, held by the value for the whole run).
pub(super) trait BackupTarget: TargetView {
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

/// What a run takes, decided with the server.
enum Decided {
    Full(FullReason),
    /// The server accepted to send the transactions after `backup`'s last tx; `first` is the
    /// first of them, or the end of the stream.
    Incremental {
        backup: Existing,
        first: Message,
    },
}

/// What a run, or a plan of one, knows once the server has answered its handshake: the
/// connection, the server, and the names lines and errors use for both ends.
struct Session {
    conn: Conn,
    server: ServerInfo,
    /// `host:port` of the server, as lines and errors name it.
    addr: String,
    /// The target as lines and errors name it ([`TargetView::shown`]).
    shown: String,
}

impl Session {
    /// Connects (paced at `max_rate` when given, BK-41) and shakes hands; the server is told
    /// to `out` before anything of the target is read.
    async fn open(
        env: &Env,
        opts: &BackupOptions,
        shown: String,
        max_rate: Option<std::num::NonZeroU64>,
        tls: Option<&ClientTls>,
        out: &mut dyn Observer,
    ) -> Result<Session, BackupError> {
        let addr = join_host_port(&opts.host, opts.port);
        let mut conn = connect(env, opts, &addr, max_rate, tls).await?;
        let server = handshake(&mut conn).await?;
        out.server(&addr, &server);
        Ok(Session {
            conn,
            server,
            addr,
            shown,
        })
    }

    /// The decision (refusals before anything is written, BK-13 .. BK-15, BK-46), then, when
    /// an incremental backup is possible, the target's preparation and the server's answer to
    /// the request (BK-10, BK-11, OBJ-11, OBJ-12); a refusal by the server falls back as
    /// `decision::after_server_refusal` says. `announce` is told the backup about to be caught
    /// up, before anything is asked.
    async fn decide<T: TargetView>(
        &mut self,
        opts: &BackupOptions,
        target: &mut T,
        existing: Option<&Existing>,
        announce: &mut dyn FnMut(&Existing),
    ) -> Result<Decided, BackupError> {
        let (shown, addr) = (self.shown.as_str(), self.addr.as_str());
        let refused = |r| BackupError::refused(r, shown, addr);
        let backup = match decision::decide(existing, opts.mode, &self.server).map_err(refused)? {
            Step::Full(reason) => return Ok(Decided::Full(reason)),
            Step::AskIncremental(backup) => backup,
        };
        match target.full_instead() {
            Some(why) if opts.mode == Mode::Incremental => {
                Err(BackupError::IncrementalImpossible {
                    dir: shown.to_string(),
                    why,
                })
            }
            Some(why) => Ok(Decided::Full(why)),
            None => {
                announce(&backup);
                target.prepare_incremental().await?;
                match ask_incremental(&mut self.conn, &backup).await? {
                    Answer::Accepted(first) => Ok(Decided::Incremental { backup, first }),
                    Answer::Refused(answer) => {
                        decision::after_server_refusal(opts.mode, &backup, answer)
                            .map(Decided::Full)
                            .map_err(refused)
                    }
                }
            }
        }
    }
}

/// One run against `target` (BK-10 .. BK-47, OBJ-5 .. OBJ-12): connect, handshake, the backup
/// the target holds, the decision, then an incremental backup when one is possible and the
/// server accepts, a full one otherwise.
pub(super) async fn drive<T: BackupTarget>(
    env: &Env,
    opts: &BackupOptions,
    target: &mut T,
    tls: Option<&ClientTls>,
    started: Duration,
    out: &mut dyn Observer,
) -> Result<Summary, BackupError> {
    let mut session = Session::open(env, opts, target.shown(), opts.max_rate, tls, out).await?;
    let existing = target.existing(env, opts.mode, out)?;
    let to_tx = session.server.last_committed_tx;
    let (addr, shown) = (session.addr.clone(), session.shown.clone());
    let mut announce = |backup: &Existing| {
        out.line(&format!(
            "incremental backup from {addr} into {shown}: the backup is at tx {}, the server at tx {to_tx}",
            backup.last_tx
        ))
    };
    let decided = session
        .decide(opts, target, existing.as_ref(), &mut announce)
        .await?;
    let Session {
        mut conn,
        server,
        addr,
        ..
    } = session;
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
    match decided {
        Decided::Incremental { backup, first } => {
            target.incremental(&mut run, &backup, first).await
        }
        Decided::Full(reason) => target.full(&mut run, reason, existing.as_ref()).await,
    }
}

/// What a run against `target` would do and why, changing nothing (BK-42): the same
/// decision, then the server's answer to the same incremental request (its first answer read
/// before the connection is dropped), so the same refusals with the same exit codes.
pub(super) async fn plan<T: PlanView>(
    env: &Env,
    opts: &BackupOptions,
    target: &mut T,
    tls: Option<&ClientTls>,
    out: &mut dyn Observer,
) -> Result<Plan, BackupError> {
    let mut session = Session::open(env, opts, target.shown(), None, tls, out).await?;
    let free = target.free_space(env, &opts.target)?;
    let existing = target.existing(env, opts.mode, out)?;
    let from_tx = existing.as_ref().map(|e| e.last_tx);
    let decided = session
        .decide(opts, target, existing.as_ref(), &mut |_| {})
        .await?;
    let Session { server, shown, .. } = session;
    let (kind, reason, full_reason, bytes) = match decided {
        Decided::Incremental { backup, .. } => (
            Kind::Incremental,
            incremental_reason(&shown, backup.last_tx),
            None,
            0,
        ),
        Decided::Full(reason) => {
            let needed = room_needed(server.store_bytes);
            if let Some(available) = free.filter(|&free| free < needed) {
                return Err(BackupError::NoRoom {
                    dir: shown,
                    needed,
                    available,
                });
            }
            (
                Kind::Full,
                reason.describe(&shown),
                Some(reason),
                server.store_bytes,
            )
        }
    };
    Ok(Plan {
        kind,
        reason,
        full_reason,
        store_id: server.store_id,
        from_tx,
        to_tx: server.last_committed_tx,
        bytes,
        free,
    })
}

/// A backup directory (BK-30): generations, a pointer, the directory's lock (none when it
/// is only inspected, for a plan).
impl TargetView for Target {
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
}

impl PlanView for Target {
    fn free_space(&self, env: &Env, path: &Path) -> Result<Option<u64>, BackupError> {
        let mut at = path.to_path_buf();
        while env.fs.metadata(&at).ok().flatten().is_none() {
            at = parent_of(&at).to_path_buf();
        }
        let free = env
            .fs
            .available_space(&at)
            .map_err(|source| TargetError::Io {
                dir: path.display().to_string(),
                source,
            })?;
        Ok(Some(free))
    }
}

impl BackupTarget for Target {
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

/// An object store backup read without the lease, for a plan (BK-42): nothing is written, as
/// `backup-info` reads one (OBJ-15).
impl TargetView for ObjectTarget {
    fn shown(&self) -> String {
        self.url().to_string()
    }

    /// The live generation's manifest says what the backup holds. An object store backup is
    /// never marked unverified: its runs verify the stream and nothing is applied in place.
    fn existing(
        &self,
        _env: &Env,
        _mode: Mode,
        out: &mut dyn Observer,
    ) -> Result<Option<Existing>, BackupError> {
        let existing = self.manifest().map(|m| Existing {
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
        let (bytes, bound) = self.segment_bytes();
        consolidation(self.segments(), bytes, bound)
    }

    /// The state after the last tx is read and checked, then dropped: a plan refuses a damaged
    /// backup as a run would (OBJ-11).
    async fn prepare_incremental(&mut self) -> Result<(), BackupError> {
        last_state(self).await?;
        Ok(())
    }
}

impl PlanView for ObjectTarget {
    fn free_space(&self, _env: &Env, _path: &Path) -> Result<Option<u64>, BackupError> {
        Ok(None)
    }
}

impl TargetView for ObjectBackup {
    fn shown(&self) -> String {
        self.target.shown()
    }

    fn existing(
        &self,
        env: &Env,
        mode: Mode,
        out: &mut dyn Observer,
    ) -> Result<Option<Existing>, BackupError> {
        self.target.existing(env, mode, out)
    }

    fn full_instead(&self) -> Option<FullReason> {
        self.target.full_instead()
    }

    /// Kept for the run: the state the first shipped tx must follow (OBJ-11).
    async fn prepare_incremental(&mut self) -> Result<(), BackupError> {
        self.state = Some(last_state(&self.target).await?);
        Ok(())
    }
}

impl BackupTarget for ObjectBackup {
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

/// Why a generation of `segments` segments holding `bytes` bytes is replaced by a full one
/// (OBJ-12): it holds as many segments as a generation may, or more bytes of segments than its
/// `bound`; `None` while it may take another.
fn consolidation(segments: u32, bytes: u64, bound: u64) -> Option<FullReason> {
    if segments >= MAX_SEGMENTS {
        Some(FullReason::Consolidate {
            segments,
            by_size: None,
        })
    } else if bytes > bound {
        Some(FullReason::Consolidate {
            segments,
            by_size: Some((bytes, bound)),
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // OBJ-12: a generation takes segments up to MAX_SEGMENTS of them and up to its bound in
    // bytes, each limit inclusive; one past either is consolidated, the count named first.
    #[test]
    fn obj_12_the_segment_limits_are_inclusive() {
        let under = MAX_SEGMENTS - 1;
        assert_eq!(consolidation(under, 100, 100), None, "OBJ-12");
        assert_eq!(
            consolidation(under, 101, 100),
            Some(FullReason::Consolidate {
                segments: under,
                by_size: Some((101, 100)),
            }),
            "OBJ-12"
        );
        for bytes in [0, 101] {
            assert_eq!(
                consolidation(MAX_SEGMENTS, bytes, 100),
                Some(FullReason::Consolidate {
                    segments: MAX_SEGMENTS,
                    by_size: None,
                }),
                "OBJ-12"
            );
        }
    }
}
