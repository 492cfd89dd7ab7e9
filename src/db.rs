//! The open store as a running server shares it between concurrent HTTP requests and the backup
//! service (which is why it sits below both, ARCHITECTURE.md "Layers").
//!
//! Owns: serializing writers and keeping readers off a half-applied transaction: reads take the
//! read lock, and a group of commits takes the write lock only to apply its records, after its
//! log write and fsync done under the read lock, so readers never wait for a commit's fsync
//! (LOG-12). Group commit: commits that arrive while one is being written queue up, and the next
//! writer takes them all as one group, with one fsync. And checkpoints whose fsyncs hold no lock
//! (LOG-13), so commits go on during a full backup's checkpoint.
//! Must not touch: HTTP or sockets. A lock is never held across an `.await`: every step that
//! takes it runs as one job on the `Blocking` seam (IO-10), so a commit's fsync never stalls the
//! async workers that serve other requests.

use std::sync::{Arc, Mutex, RwLock};

use crate::graph::{CommitOutcome, Id, Node, Op};
use crate::io::{run_blocking, Blocking};
use crate::store::{LogSummary, Store, StoreError, StoreStatus};

/// The server's store. `None` once closed at shutdown, after which requests are refused.
#[derive(Debug)]
pub struct Database {
    store: RwLock<Option<Store>>,
    /// Commits waiting for the writer, and whether one is at work (LOG-12).
    queue: Mutex<Queue>,
    /// Held through a checkpoint's three steps (LOG-13), so that checkpoints asked for together
    /// run one after the other and the later ones find the first enough (PR-24).
    checkpointing: Mutex<()>,
    /// Where the steps that take the lock run: off the async workers in production, inline in
    /// simulation.
    blocking: Arc<dyn Blocking>,
}

/// The most commits one group takes: bounds the memory and the lock time of a group.
const MAX_GROUP: usize = 256;

/// Commits waiting for the writer (LOG-12).
#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// A writer is at work and will take what is queued; a new commit need not start one.
    writing: bool,
}

/// A writer's turn (LOG-12). Dropped before the turn `ended` (a panic unwinding through it),
/// it leaves no writer at work and answers every commit still queued (`Closed`) by dropping its
/// reply, so none waits for an answer that will not come.
struct WriterTurn<'a> {
    db: &'a Database,
    ended: bool,
}

impl Drop for WriterTurn<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let mut queue = self.db.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.writing = false;
            queue.waiting.clear();
        }
    }
}

/// One commit waiting in the queue, and where its answer goes.
#[derive(Debug)]
struct Waiting {
    ops: Vec<Op>,
    reply: tokio::sync::oneshot::Sender<Result<CommitOutcome, StoreError>>,
}

impl Database {
    pub fn new(store: Store, blocking: Arc<dyn Blocking>) -> Arc<Database> {
        Arc::new(Database {
            store: RwLock::new(Some(store)),
            queue: Mutex::new(Queue::default()),
            checkpointing: Mutex::new(()),
            blocking,
        })
    }

    /// Runs `f` under the read lock, as one blocking job: commits wait, readers do not (the
    /// backup service's status reads and pins, HTTP reads).
    pub async fn read_with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.clone();
        run_blocking(&*self.blocking, move || db.read(f)).await
    }

    /// Runs `f` under the write lock, as one blocking job (commits, checkpoints).
    pub async fn write_with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.clone();
        run_blocking(&*self.blocking, move || db.write(f)).await
    }

    fn read<T>(&self, f: impl FnOnce(&Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave a half-applied transaction visible: the
        // store itself refuses commits after a failed write, so a poisoned lock is still usable.
        let guard = self.store.read().unwrap_or_else(|p| p.into_inner());
        f(guard.as_ref().ok_or(StoreError::Closed)?)
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.store.write().unwrap_or_else(|p| p.into_inner());
        f(guard.as_mut().ok_or(StoreError::Closed)?)
    }

    /// The store's status and its logs' summary; refused while the store is failed (LOG-9):
    /// recovery decides at the next start whether the transaction whose write failed is
    /// committed, so the state a failed store holds in memory may be contradicted (HTTP-1).
    pub async fn status(self: &Arc<Self>) -> Result<(StoreStatus, LogSummary), StoreError> {
        self.read_with(|s| {
            if let Some(why) = s.failure() {
                return Err(StoreError::Failed(why.to_string()));
            }
            Ok((s.status(), s.log_summary()?))
        })
        .await
    }

    /// Commits `ops` as one transaction (ST-3), as part of a group (LOG-12): it joins the queue,
    /// and if no writer is at work this call becomes the writer, which takes every queued
    /// commit as one group until the queue is empty. The answer comes once the fsync covering
    /// it is done.
    pub async fn commit(self: &Arc<Self>, ops: Vec<Op>) -> Result<CommitOutcome, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.waiting.push(Waiting { ops, reply });
            !std::mem::replace(&mut queue.writing, true)
        };
        if lead {
            // The writer runs on its own: this caller's answer comes with its group, not when
            // the queue is finally empty.
            // A task of its own starts it, after the tasks already ready to run: commits they
            // bring join this group (in simulation too, where the job runs inline).
            let db = self.clone();
            tokio::spawn(async move {
                let blocking = db.blocking.clone();
                blocking.run(Box::new(move || db.write_groups())).await
            });
        }
        match answer.await {
            Ok(outcome) => outcome,
            // The writer went away without answering: only a panic in it does that.
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// The writer's loop: takes the queued commits as a group, commits them under the write
    /// lock with one fsync, answers each, and goes on until none is waiting.
    fn write_groups(&self) {
        // Should the loop panic, the next commit finds no writer at work and no commit is left
        // waiting for an answer that will not come (it gets `Closed`).
        let mut turn = WriterTurn {
            db: self,
            ended: false,
        };
        loop {
            let group = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if queue.waiting.is_empty() {
                    // In the same critical section as the check: a commit queued after it
                    // finds no writer and becomes one.
                    queue.writing = false;
                    turn.ended = true;
                    return;
                }
                let take = queue.waiting.len().min(MAX_GROUP);
                queue.waiting.drain(..take).collect::<Vec<_>>()
            };
            let (ops, replies): (Vec<Vec<Op>>, Vec<_>) =
                group.into_iter().map(|w| (w.ops, w.reply)).unzip();
            // Built, written and fsynced under the read lock, so readers go on meanwhile; only
            // applying the records excludes them. Nothing else logs a group in between: this
            // is the one writer.
            let outcomes = match self
                .read(|s| Ok(s.log_group(&ops)))
                .and_then(|logged| self.write(|s| Ok(s.apply_logged(logged))))
            {
                Ok(outcomes) => outcomes,
                // Only a closed store refuses the lock's closure. Closed at shutdown between the
                // fsync and the apply, the group is in the log but not acknowledged: recovery
                // replays it at the next start.
                Err(_) => ops.iter().map(|_| Err(StoreError::Closed)).collect(),
            };
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A caller that gave up (its request was dropped) no longer wants the answer.
                let _ = reply.send(outcome);
            }
        }
    }

    /// Makes sure the last checkpoint covers tx `tx` (PR-24), checkpointing when it does not,
    /// without holding the store's lock through the record files' fsync (LOG-13): planned under
    /// the read lock, synced with no lock (commits and reads go on), recorded under the write
    /// lock.
    pub async fn checkpoint_covering(self: &Arc<Self>, tx: u64) -> Result<(), StoreError> {
        let db = self.clone();
        run_blocking(&*self.blocking, move || {
            let _one = db.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
            let Some(plan) = db.read(|s| s.plan_checkpoint(tx))? else {
                return Ok(());
            };
            let synced = plan.sync_files();
            db.write(|s| s.finish_checkpoint(plan, synced))
        })
        .await
    }

    /// The node and its relationship ids, or `None` if it does not exist.
    pub async fn node(self: &Arc<Self>, id: Id) -> Result<Option<(Node, Vec<Id>)>, StoreError> {
        self.read_with(move |s| {
            let Some(node) = s.node(id)? else {
                return Ok(None);
            };
            let rels = s.node_relationships(id)?.unwrap_or_default();
            Ok(Some((node, rels)))
        })
        .await
    }

    /// Checkpoints and closes the store; later requests get [`StoreError::Closed`].
    pub fn close(&self) -> Result<(), StoreError> {
        let store = self.store.write().unwrap_or_else(|p| p.into_inner()).take();
        match store {
            Some(s) => s.close(),
            None => Ok(()),
        }
    }
}
