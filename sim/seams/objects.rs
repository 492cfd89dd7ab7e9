//! Object storage in simulation (spec/objects.md): one of `object_store`'s in-memory stores per
//! bucket, shared by every host of the world, as a storage service outside the simulated
//! machines would be: a host's power loss does not touch it.
//!
//! The in-memory store takes its objects' modification times from the system clock; nothing
//! the product decides reads them, so the simulation stays deterministic.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use object_store::memory::InMemory;
use object_store::ObjectStore;
use online_backup::io::Objects;

/// The buckets of one simulation, created on first use.
#[derive(Debug, Default)]
pub struct SimObjects {
    buckets: Mutex<BTreeMap<String, Arc<InMemory>>>,
}

impl Objects for SimObjects {
    fn open(&self, bucket: &str) -> object_store::Result<Arc<dyn ObjectStore>> {
        let mut buckets = self.buckets.lock().unwrap();
        Ok(buckets.entry(bucket.to_string()).or_default().clone())
    }
}
