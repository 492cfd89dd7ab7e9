//! The open store as a running server shares it between concurrent HTTP requests and the backup
//! service (which is why it sits below both, ARCHITECTURE.md "Layers").
//!
//! Owns: serializing writers and keeping readers off a half-applied transaction: a commit holds
//! the write lock from validation to the last record written; reads take the read lock.
//! Must not touch: HTTP or sockets. A lock is never held across an `.await`: every step that
//! takes it runs as one job on the `Blocking` seam (IO-10), so a commit's fsync never stalls the
//! async workers that serve other requests.

use std::sync::{Arc, RwLock};

use crate::graph::{CommitOutcome, Id, Node, Op};
use crate::io::{run_blocking, Blocking};
use crate::store::{LogSummary, Store, StoreError, StoreStatus};

/// The server's store. `None` once closed at shutdown, after which requests are refused.
#[derive(Debug)]
pub struct Database {
    store: RwLock<Option<Store>>,
    /// Where the steps that take the lock run: off the async workers in production, inline in
    /// simulation.
    blocking: Arc<dyn Blocking>,
}

impl Database {
    pub fn new(store: Store, blocking: Arc<dyn Blocking>) -> Arc<Database> {
        Arc::new(Database {
            store: RwLock::new(Some(store)),
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

    pub async fn status(self: &Arc<Self>) -> Result<(StoreStatus, LogSummary), StoreError> {
        self.read_with(|s| Ok((s.status(), s.log_summary()?))).await
    }

    pub async fn commit(self: &Arc<Self>, ops: Vec<Op>) -> Result<CommitOutcome, StoreError> {
        self.write_with(move |s| s.commit(&ops)).await
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
