//! The open store as a running server shares it between concurrent HTTP requests and the backup
//! service (which is why it sits below both, ARCHITECTURE.md "Layers").
//!
//! Owns: serializing writers and keeping readers off a half-applied transaction: a commit holds
//! the write lock from validation to the last record written; reads take the read lock.
//! Must not touch: HTTP or sockets. A lock is never held across an `.await`.

use std::sync::RwLock;

use crate::graph::{CommitOutcome, Id, Node, Op};
use crate::store::{LogSummary, Store, StoreError, StoreStatus};

/// The server's store. `None` once closed at shutdown, after which requests are refused.
#[derive(Debug)]
pub struct Database {
    store: RwLock<Option<Store>>,
}

impl Database {
    pub fn new(store: Store) -> Database {
        Database {
            store: RwLock::new(Some(store)),
        }
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

    pub fn status(&self) -> Result<(StoreStatus, LogSummary), StoreError> {
        self.read(|s| Ok((s.status(), s.log_summary()?)))
    }

    pub fn commit(&self, ops: &[Op]) -> Result<CommitOutcome, StoreError> {
        self.write(|s| s.commit(ops))
    }

    /// The node and its relationship ids, or `None` if it does not exist.
    pub fn node(&self, id: Id) -> Result<Option<(Node, Vec<Id>)>, StoreError> {
        self.read(|s| {
            let Some(node) = s.node(id)? else {
                return Ok(None);
            };
            let rels = s.node_relationships(id)?.unwrap_or_default();
            Ok(Some((node, rels)))
        })
    }

    /// Runs `f` on the store under the read lock: commits wait, readers do not (the backup
    /// service's status reads and pins).
    pub fn inspect<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read(f)
    }

    /// Runs `f` on the store under the write lock (checkpoints, backup service requests).
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write(f)
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
