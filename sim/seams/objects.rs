//! Object storage in simulation (spec/objects.md): one of `object_store`'s in-memory stores per
//! bucket, shared by every host of the world, as a storage service outside the simulated
//! machines would be: a host's power loss does not touch it. The driver arms faults on it
//! (SIM-40): a put that fails and stores nothing, a put that stores but answers an error (a
//! lost answer), and a list that answers only after a while.
//! Each is drawn from the seed, call by call, so a seed replays them exactly.
//!
//! The in-memory store takes its objects' modification times from the system clock; nothing
//! the product decides reads them, so the simulation stays deterministic.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use online_backup::io::Objects;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The faults an object store answers with, each a probability per call (SIM-40).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ObjectFaults {
    /// A put fails and stores nothing.
    pub put_fails: f64,
    /// A put stores, then answers an error.
    pub put_lost: f64,
    /// A list answers after up to this long.
    pub slow_list: Duration,
}

/// How often each fault struck, over the simulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectFaultCounts {
    pub put_fails: u64,
    pub put_lost: u64,
    pub slow_lists: u64,
}

#[derive(Debug)]
struct Armed {
    faults: ObjectFaults,
    /// What the faults are armed for (`backup`, `aggregate`): the column their strikes count in.
    during: &'static str,
    rng: StdRng,
    counts: BTreeMap<&'static str, ObjectFaultCounts>,
}

impl Armed {
    fn counts(&mut self) -> &mut ObjectFaultCounts {
        self.counts.entry(self.during).or_default()
    }
}

/// The buckets of one simulation, created on first use, and the faults armed on them.
#[derive(Debug)]
pub struct SimObjects {
    buckets: Mutex<BTreeMap<String, Arc<InMemory>>>,
    armed: Arc<Mutex<Armed>>,
}

impl SimObjects {
    pub fn new(seed: u64) -> SimObjects {
        SimObjects {
            buckets: Mutex::default(),
            armed: Arc::new(Mutex::new(Armed {
                faults: ObjectFaults::default(),
                during: "backup",
                rng: StdRng::seed_from_u64(seed ^ 0x0b1e_c7f5_0000_0001),
                counts: BTreeMap::new(),
            })),
        }
    }

    /// Arms `faults` from now on (the default disarms), for the operation `during` (`backup`,
    /// `aggregate`), under which their strikes are counted.
    pub fn arm(&self, faults: ObjectFaults, during: &'static str) {
        let mut armed = self.armed.lock().unwrap();
        armed.faults = faults;
        armed.during = during;
    }

    /// How often each fault struck, by the operation it was armed for.
    pub fn counts(&self) -> BTreeMap<&'static str, ObjectFaultCounts> {
        self.armed.lock().unwrap().counts.clone()
    }

    /// The bucket's store as it is, without faults: what the driver inspects.
    pub fn bucket(&self, bucket: &str) -> Arc<InMemory> {
        self.buckets
            .lock()
            .unwrap()
            .entry(bucket.to_string())
            .or_default()
            .clone()
    }
}

impl Objects for SimObjects {
    fn open(&self, bucket: &str) -> object_store::Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(Faulty {
            inner: self.bucket(bucket),
            armed: self.armed.clone(),
        }))
    }
}

/// A bucket's store behind the armed faults.
struct Faulty {
    inner: Arc<InMemory>,
    armed: Arc<Mutex<Armed>>,
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Faulty(InMemory)")
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Faulty(InMemory)")
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "simulation",
        source: format!("injected fault: {what}").into(),
    }
}

impl Faulty {
    /// Draws whether the fault of probability `p` strikes this call, counting it.
    fn strikes(&self, pick: fn(&ObjectFaults) -> f64, count: fn(&mut ObjectFaultCounts)) -> bool {
        let mut armed = self.armed.lock().unwrap();
        let p = pick(&armed.faults);
        let hit = p > 0.0 && armed.rng.random_bool(p.min(1.0));
        if hit {
            count(armed.counts());
        }
        hit
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.strikes(|f| f.put_fails, |c| c.put_fails += 1) {
            return Err(injected("the put failed"));
        }
        let put = self.inner.put_opts(location, payload, opts).await?;
        if self.strikes(|f| f.put_lost, |c| c.put_lost += 1) {
            return Err(injected("the put landed but its answer was lost"));
        }
        Ok(put)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let delay = {
            let mut armed = self.armed.lock().unwrap();
            let most = armed.faults.slow_list;
            if most.is_zero() {
                Duration::ZERO
            } else {
                armed.counts().slow_lists += 1;
                Duration::from_millis(armed.rng.random_range(0..=most.as_millis() as u64))
            }
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
