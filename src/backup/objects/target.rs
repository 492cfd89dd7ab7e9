//! An object target under its lease (OBJ-3, OBJ-5, OBJ-7, OBJ-9): what it holds, the pointer
//! written last by a conditional put, and the generations removed only once no pointer can name
//! them.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};

use super::{ObjectUrl, ObjectsError};
use crate::backup::manifest::{FileEntry, Manifest, MANIFEST_FILE, MAX_MANIFEST};
use crate::io::{Clock, Env, Objects};
use crate::store::layout::{generation_name, parse_generation, parse_pointer, POINTER_FILE};
use crate::store::log::log_version_of;
use crate::units;

/// The most transaction segments a generation holds (OBJ-12): the run after the one that
/// reached it takes a new full generation, so a restore replays at most this many.
pub const MAX_SEGMENTS: u32 = 32;
/// The least the segments of a generation may grow to before a new full generation
/// consolidates them (OBJ-12), however small its store: below it, replaying them costs little.
pub const MIN_SEGMENT_BOUND: u64 = 1 << 20;
/// The lease object's name under the prefix (OBJ-5).
pub const LEASE_FILE: &str = "LEASE";
/// How long a lease holds without being renewed (OBJ-5): a run renews it well before, and a run
/// that died blocks the next for at most this long.
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(120);
/// A run renews its lease when this much of it has gone.
const RENEW_AFTER_MILLIS: u64 = 20_000;
/// The pointer and the lease are never larger than this.
const SMALL_OBJECT: u64 = 256;

/// A run's hold on a target (OBJ-5): the `LEASE` object at the version this run last wrote.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    url: ObjectUrl,
    clock: Arc<dyn Clock>,
    /// This run's token, so a lease is recognized as its own.
    token: String,
    /// The version the run last wrote: renewing replaces exactly it, so a run whose lease
    /// another run took over finds out instead of taking it back.
    version: UpdateVersion,
    /// When the run last wrote it, milliseconds.
    written: u64,
}

impl Lease {
    /// Takes the target's lease: creates it if absent, takes it over if expired, and refuses
    /// when another run holds it (OBJ-5).
    pub async fn take(
        store: Arc<dyn ObjectStore>,
        url: &ObjectUrl,
        env: &Env,
    ) -> Result<Lease, ObjectsError> {
        let clock = env.clock.clone();
        let token = new_token(env);
        let now = clock.now_millis();
        let body = lease_body(&token, now + LEASE_TTL.as_millis() as u64);
        let fail = |doing: &str, e: &object_store::Error| ObjectsError::from_store(url, doing, e);
        let created = put_checked(&*store, url, LEASE_FILE, body.clone(), PutMode::Create).await;
        let version = match created {
            Ok(version) => version,
            Err(object_store::Error::AlreadyExists { .. }) => {
                let (held, version) = match get_small(&*store, url, LEASE_FILE).await? {
                    Some(found) => found,
                    // Released between the two requests: the next run tries again.
                    None => return Err(locked(url, now)),
                };
                let expires = parse_lease(&held).map_or(0, |(_, expires)| expires);
                if expires > now {
                    return Err(locked(url, expires));
                }
                tracing::warn!(
                    "{url}: taking over a lease that expired at {} (a run that died left it)",
                    units::time_millis(expires)
                );
                match put_checked(&*store, url, LEASE_FILE, body, PutMode::Update(version)).await {
                    Ok(version) => version,
                    // Another run took it over first.
                    Err(object_store::Error::Precondition { .. }) => return Err(locked(url, now)),
                    Err(e) => return Err(fail("taking the lease of", &e)),
                }
            }
            Err(e) => return Err(fail("taking the lease of", &e)),
        };
        Ok(Lease {
            store,
            url: url.clone(),
            clock,
            token,
            version,
            written: now,
        })
    }

    /// Renews the lease once 20 seconds have gone since it was last written (OBJ-5); a lease
    /// another run changed stops this one.
    pub async fn renew_if_due(&mut self) -> Result<(), ObjectsError> {
        let now = self.clock.now_millis();
        if now.saturating_sub(self.written) < RENEW_AFTER_MILLIS {
            return Ok(());
        }
        let body = lease_body(&self.token, now + LEASE_TTL.as_millis() as u64);
        let mode = PutMode::Update(self.version.clone());
        match put_checked(&*self.store, &self.url, LEASE_FILE, body, mode).await {
            Ok(version) => {
                self.version = version;
                self.written = now;
                Ok(())
            }
            Err(object_store::Error::Precondition { .. }) => Err(ObjectsError::LeaseLost {
                url: self.url.to_string(),
            }),
            Err(e) => Err(ObjectsError::from_store(
                &self.url,
                "renewing the lease of",
                &e,
            )),
        }
    }

    /// Gives the lease back: deletes it if it is still this run's (OBJ-5). A failure is logged;
    /// the lease then expires on its own.
    pub async fn release(self) {
        let key = self.url.key(LEASE_FILE);
        match get_small(&*self.store, &self.url, LEASE_FILE).await {
            Ok(Some((held, _))) if parse_lease(&held).is_some_and(|(t, _)| t == self.token) => {
                if let Err(e) = self.store.delete(&key).await {
                    tracing::warn!("{}: could not release the lease: {e}", self.url);
                }
            }
            Ok(_) => tracing::warn!("{}: the lease was no longer this run's", self.url),
            Err(e) => tracing::warn!("{}: could not release the lease: {e}", self.url),
        }
    }
}

/// Whether `name`, an object of the generation whose manifest is `manifest`, is the segment
/// of an incremental that was interrupted before the manifest listed it (OBJ-11): a log after
/// the newest listed.
pub fn is_leftover_segment(manifest: &Manifest, name: &str) -> bool {
    let newest = manifest
        .files
        .iter()
        .filter_map(|f| log_version_of(&f.name))
        .max();
    log_version_of(name).is_some_and(|v| newest.is_none_or(|newest| v > newest))
        && manifest.file(name).is_none()
}

/// A token no other run has: 16 random bytes from the environment's randomness (seeded in
/// simulation), in hex.
fn new_token(env: &Env) -> String {
    let mut bytes = [0u8; 16];
    if env.crypto.secure_random.fill(&mut bytes).is_err() {
        // Without randomness the clock still tells two runs apart.
        bytes[..8].copy_from_slice(&env.clock.now_millis().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn locked(url: &ObjectUrl, expires: u64) -> ObjectsError {
    ObjectsError::Locked {
        url: url.to_string(),
        expires: units::time_millis(expires),
    }
}

/// The lease's bytes: `neo4j-backup lease <token> <expiry millis>` and a newline.
fn lease_body(token: &str, expires: u64) -> Bytes {
    Bytes::from(format!("neo4j-backup lease {token} {expires}\n"))
}

/// Puts `bytes` as the object `name` with `mode`. A put the store carried out but answered
/// with an error (a lost answer, or a retry of a request that had landed) is found by reading
/// the object back: when it holds exactly `bytes`, the put happened (OBJ-13). The objects put
/// so (the lease, the pointer, the manifest) are each unique to the run that writes them.
async fn put_checked(
    store: &dyn ObjectStore,
    url: &ObjectUrl,
    name: &str,
    bytes: Bytes,
    mode: PutMode,
) -> object_store::Result<UpdateVersion> {
    let put = store
        .put_opts(&url.key(name), PutPayload::from(bytes.clone()), mode.into())
        .await;
    match put {
        Ok(put) => Ok(UpdateVersion::from(put)),
        Err(e) => match get_bounded(store, url, name, bytes.len() as u64).await {
            Ok(Some((held, version))) if held == bytes => Ok(version),
            _ => Err(e),
        },
    }
}

/// The token and expiry of a lease's bytes; `None` for anything else (an unreadable lease is
/// treated as expired: the run that wrote it is not this tool).
fn parse_lease(bytes: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('\n')?;
    let rest = text.strip_prefix("neo4j-backup lease ")?;
    let (token, expires) = rest.split_once(' ')?;
    Some((token.to_string(), expires.parse().ok()?))
}

/// A small object's bytes and version (the pointer or the lease), or `None` if it does not
/// exist.
async fn get_small(
    store: &dyn ObjectStore,
    url: &ObjectUrl,
    name: &str,
) -> Result<Option<(Bytes, UpdateVersion)>, ObjectsError> {
    get_bounded(store, url, name, SMALL_OBJECT).await
}

/// What an object target holds (OBJ-3).
#[derive(Debug)]
pub struct ObjectTarget {
    store: Arc<dyn ObjectStore>,
    url: ObjectUrl,
    /// The live generation and the pointer's version as read, which the switch replaces
    /// exactly (OBJ-7); `None` when the target has no pointer.
    pointer: Option<(u64, UpdateVersion)>,
    /// The live generation's manifest, and its version as read: an incremental replaces
    /// exactly it (OBJ-11).
    manifest: Option<Manifest>,
    manifest_version: Option<UpdateVersion>,
    /// Every generation number present, ascending.
    generations: Vec<u64>,
    /// The highest generation number present when the target was read, leftovers counted: a
    /// new generation takes the next, so no number is ever used twice.
    highest: u64,
}

impl ObjectTarget {
    /// Reads what the target holds, writing nothing: the pointer, the live generation's
    /// manifest and the generations present. Anything else under the prefix, or a pointer or
    /// manifest that cannot be read, makes it "not a valid backup" (exit 3, BK-13, BK-37).
    pub async fn read(
        store: Arc<dyn ObjectStore>,
        url: &ObjectUrl,
    ) -> Result<ObjectTarget, ObjectsError> {
        let not_a_backup = |why: String| ObjectsError::NotABackup {
            url: url.to_string(),
            why,
        };
        let listed = store
            .list_with_delimiter(url.root().as_ref())
            .await
            .map_err(|e| ObjectsError::from_store(url, "listing", &e))?;
        let mut generations = Vec::new();
        for dir in &listed.common_prefixes {
            let name = dir.filename().unwrap_or_default();
            match parse_generation(name) {
                Some(n) => generations.push(n),
                None => {
                    return Err(not_a_backup(format!(
                        "it holds {name}/, which no backup has"
                    )))
                }
            }
        }
        generations.sort_unstable();
        for object in &listed.objects {
            let name = object.location.filename().unwrap_or_default();
            if name != POINTER_FILE && name != LEASE_FILE {
                return Err(not_a_backup(format!(
                    "it holds {name}, which no backup has"
                )));
            }
        }
        let pointer = match get_small(&*store, url, POINTER_FILE).await? {
            None => None,
            Some((bytes, version)) => {
                let n = parse_pointer(&bytes).ok_or_else(|| {
                        not_a_backup(format!(
                            "{POINTER_FILE} does not name a generation (it should hold one line like `generation-1`)"
                        ))
                    })?;
                Some((n, version))
            }
        };
        let (manifest, manifest_version) = match &pointer {
            None => (None, None),
            Some((n, _)) => {
                let name = format!("{}/{MANIFEST_FILE}", generation_name(*n));
                let (bytes, version) = get_bounded(&*store, url, &name, MAX_MANIFEST)
                    .await?
                    .ok_or_else(|| {
                        not_a_backup(format!(
                            "{POINTER_FILE} names {}, which has no {MANIFEST_FILE}",
                            generation_name(*n)
                        ))
                    })?;
                let manifest = Manifest::decode(&bytes)
                    .map_err(|e| not_a_backup(format!("{name} is damaged: {e}")))?;
                (Some(manifest), Some(version))
            }
        };
        Ok(ObjectTarget {
            store,
            url: url.clone(),
            pointer,
            manifest,
            manifest_version,
            highest: generations.last().copied().unwrap_or(0),
            generations,
        })
    }

    /// The transaction segments the live generation holds: its log objects after the first
    /// (OBJ-11).
    pub fn segments(&self) -> u32 {
        self.manifest.as_ref().map_or(0, |m| {
            m.files
                .iter()
                .filter(|f| log_version_of(&f.name).is_some_and(|v| v > 0))
                .count() as u32
        })
    }

    /// The bytes of the live generation's transaction segments, and what they may grow to
    /// before a new full generation consolidates them (OBJ-12): the bytes of the files the full
    /// backup wrote (its record files, metadata and first log), and at least
    /// [`MIN_SEGMENT_BOUND`].
    pub fn segment_bytes(&self) -> (u64, u64) {
        let Some(m) = &self.manifest else {
            return (0, MIN_SEGMENT_BOUND);
        };
        let (segments, base): (Vec<_>, Vec<_>) = m
            .files
            .iter()
            .partition(|f| log_version_of(&f.name).is_some_and(|v| v > 0));
        let sum = |files: Vec<&FileEntry>| files.iter().map(|f| f.size).sum::<u64>();
        (sum(segments), sum(base).max(MIN_SEGMENT_BOUND))
    }

    /// The live generation's manifest, when the target holds a backup.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Every generation number present, ascending.
    pub fn generations(&self) -> &[u64] {
        &self.generations
    }

    /// The manifest of generation `n`, read (`Ok(None)` when it has none).
    pub async fn manifest_of(&self, n: u64) -> Result<Option<Manifest>, String> {
        let name = format!("{}/{MANIFEST_FILE}", generation_name(n));
        match get_bounded(&*self.store, &self.url, &name, MAX_MANIFEST).await {
            Ok(None) => Ok(None),
            Ok(Some((bytes, _))) => Manifest::decode(&bytes)
                .map(Some)
                .map_err(|e| format!("its manifest is damaged: {e}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The live generation, when the target holds a backup.
    pub fn live(&self) -> Option<u64> {
        self.pointer.as_ref().map(|(n, _)| *n)
    }

    pub fn url(&self) -> &ObjectUrl {
        &self.url
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Whether `name`, an object of the live generation, is the segment of an incremental that
    /// was interrupted before its manifest listed it (OBJ-11): a log after the newest listed.
    pub fn is_leftover_segment(&self, name: &str) -> bool {
        self.manifest
            .as_ref()
            .is_some_and(|manifest| is_leftover_segment(manifest, name))
    }

    /// Replaces the live generation's manifest with `manifest` (OBJ-11): a conditional put on
    /// the version read, the commit point of an incremental. A manifest another writer changed
    /// is never overwritten.
    pub async fn update_manifest(&mut self, manifest: Manifest) -> Result<(), ObjectsError> {
        let (Some(n), Some(version)) = (self.live(), self.manifest_version.clone()) else {
            return Err(ObjectsError::NotABackup {
                url: self.url.to_string(),
                why: "it holds no backup".to_string(),
            });
        };
        let name = format!("{}/{MANIFEST_FILE}", generation_name(n));
        let bytes = Bytes::from(manifest.encode());
        let put = put_checked(
            &*self.store,
            &self.url,
            &name,
            bytes,
            PutMode::Update(version),
        )
        .await;
        match put {
            Ok(version) => {
                self.manifest_version = Some(version);
                self.manifest = Some(manifest);
                Ok(())
            }
            Err(object_store::Error::Precondition { .. }) => Err(ObjectsError::PointerChanged {
                url: self.url.to_string(),
            }),
            Err(e) => Err(ObjectsError::from_store(
                &self.url,
                "writing the manifest of",
                &e,
            )),
        }
    }

    /// Removes what interrupted runs left (OBJ-7, OBJ-11, BK-36): the multipart uploads a
    /// killed run never completed nor aborted, every generation above the live one, which no
    /// pointer ever named, and segments of the live one no manifest listed. Called once the run
    /// holds the lease and goes on.
    pub async fn clean(&mut self, objects: &dyn Objects) -> Result<(), ObjectsError> {
        let prefix = if self.url.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.url.prefix)
        };
        let aborted = objects
            .abort_orphans(&self.url.bucket, &prefix)
            .await
            .map_err(|e| {
                ObjectsError::from_store(&self.url, "aborting the unfinished uploads of", &e)
            })?;
        if aborted > 0 {
            tracing::warn!(
                "{}: aborted {aborted} multipart upload(s) an interrupted run left",
                self.url
            );
        }
        if let Some(n) = self.live() {
            let prefix = self.key(n, "");
            let objects: Vec<_> = self
                .store
                .list(Some(&prefix))
                .map_ok(|m| m.location)
                .try_collect()
                .await
                .map_err(|e| ObjectsError::from_store(&self.url, "listing", &e))?;
            for key in objects {
                if self.is_leftover_segment(key.filename().unwrap_or_default()) {
                    match self.store.delete(&key).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(ObjectsError::from_store(&self.url, "cleaning", &e)),
                    }
                }
            }
        }
        let live = self.live().unwrap_or(0);
        let leftovers: Vec<u64> = self
            .generations
            .iter()
            .copied()
            .filter(|&n| n > live)
            .collect();
        for n in leftovers {
            self.remove_generation(n).await?;
        }
        Ok(())
    }

    /// The number of the next generation: above every one present when the target was read,
    /// leftovers included.
    pub fn next_generation(&self) -> u64 {
        self.highest + 1
    }

    /// The object `file` of generation `n`.
    pub fn key(&self, n: u64, file: &str) -> object_store::path::Path {
        self.url.key(&format!("{}/{file}", generation_name(n)))
    }

    /// Names generation `n` live (OBJ-7): a conditional put that creates the pointer or replaces
    /// exactly the version this run read; then, the pointer written, removes the generations
    /// `keep` no longer covers, oldest first (OBJ-9).
    pub async fn switch_to(&mut self, n: u64, keep: u32) -> Result<(), ObjectsError> {
        let mode = match &self.pointer {
            None => PutMode::Create,
            Some((_, version)) => PutMode::Update(version.clone()),
        };
        let body = Bytes::from(format!("{}\n", generation_name(n)));
        let put = put_checked(&*self.store, &self.url, POINTER_FILE, body, mode).await;
        let version = match put {
            Ok(version) => version,
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => {
                return Err(ObjectsError::PointerChanged {
                    url: self.url.to_string(),
                })
            }
            Err(e) => {
                return Err(ObjectsError::from_store(
                    &self.url,
                    "switching the pointer of",
                    &e,
                ))
            }
        };
        self.pointer = Some((n, version));
        if !self.generations.contains(&n) {
            self.generations.push(n);
            self.generations.sort_unstable();
        }
        self.remove_excess(keep).await
    }

    /// Removes the generations older than the live one beyond the `keep - 1` newest, oldest
    /// first (OBJ-9, PIT-12: `keep` counts the live one). Nothing without a live generation.
    pub async fn remove_excess(&mut self, keep: u32) -> Result<(), ObjectsError> {
        let Some(live) = self.live() else {
            return Ok(());
        };
        let older: Vec<u64> = self
            .generations
            .iter()
            .copied()
            .filter(|&g| g < live)
            .collect();
        let kept = keep.max(1) as usize - 1;
        let remove = older.len().saturating_sub(kept);
        for g in older.into_iter().take(remove) {
            self.remove_generation(g).await?;
        }
        Ok(())
    }

    /// Deletes every object of generation `n`, never the live one.
    pub async fn remove_generation(&mut self, n: u64) -> Result<(), ObjectsError> {
        if self.live() == Some(n) {
            return Ok(());
        }
        let prefix = self.url.key(&generation_name(n));
        let url = self.url.clone();
        let fail = |e: object_store::Error| {
            ObjectsError::from_store(&url, &format!("removing {} of", generation_name(n)), &e)
        };
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(fail)?;
        for key in objects {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        self.generations.retain(|&g| g != n);
        Ok(())
    }
}

/// An object's bytes, at most `limit` of them, and its version; `None` if it does not exist.
/// A larger object is refused before it is read: the target holds no valid backup.
pub(super) async fn get_bounded(
    store: &dyn ObjectStore,
    url: &ObjectUrl,
    name: &str,
    limit: u64,
) -> Result<Option<(Bytes, UpdateVersion)>, ObjectsError> {
    let got = match store.get(&url.key(name)).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { ref source, .. })
            if !source.to_string().contains("NoSuchBucket") =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(ObjectsError::from_store(
                url,
                &format!("reading {name} of"),
                &e,
            ))
        }
    };
    if got.meta.size > limit {
        return Err(ObjectsError::NotABackup {
            url: url.to_string(),
            why: format!(
                "{name} is {} bytes, more than the {limit} it can be",
                got.meta.size
            ),
        });
    }
    let version = UpdateVersion {
        e_tag: got.meta.e_tag.clone(),
        version: got.meta.version.clone(),
    };
    let bytes = got
        .bytes()
        .await
        .map_err(|e| ObjectsError::from_store(url, &format!("reading {name} of"), &e))?;
    Ok(Some((bytes, version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obj_5_a_lease_reads_back_its_token_and_expiry() {
        let body = lease_body("abc", 42);
        assert_eq!(parse_lease(&body), Some(("abc".into(), 42)), "OBJ-5");
        assert_eq!(parse_lease(b"something else\n"), None, "OBJ-5");
        assert_eq!(parse_lease(b"neo4j-backup lease abc 42"), None, "OBJ-5");
    }

    // OBJ-11, OBJ-12: the segments are the logs after log 0; what they may grow to is the
    // bytes of the files the full backup wrote, log 0 among them, and at least 1 MiB.
    #[test]
    fn obj_12_segment_bytes_count_the_logs_after_the_first_against_the_full_backups_files() {
        let files = |records: usize| -> Vec<(String, Vec<u8>)> {
            vec![
                ("neostore.nodestore.db".into(), vec![1; records]),
                ("neostore.meta".into(), vec![2; 100]),
                ("neostore.transaction.db.0".into(), vec![3; 1000]),
                ("neostore.transaction.db.1".into(), vec![4; 200]),
                ("neostore.transaction.db.2".into(), vec![5; 300]),
            ]
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let big = rt
            .block_on(super::super::testing::target_with(
                &files(3 << 20),
                9,
                crate::digest::Digest([0; 32]),
            ))
            .expect("a target");
        assert_eq!(big.segments(), 2, "OBJ-11: two segments after log 0");
        assert_eq!(
            big.segment_bytes(),
            (500, (3 << 20) + 100 + 1000),
            "OBJ-12: segments against the full backup's files, log 0 counted with them"
        );
        let small = rt
            .block_on(super::super::testing::target_with(
                &files(10),
                9,
                crate::digest::Digest([0; 32]),
            ))
            .expect("a target");
        assert_eq!(
            small.segment_bytes(),
            (500, MIN_SEGMENT_BOUND),
            "OBJ-12: at least 1 MiB"
        );
    }

    /// Object storage holding no upload a killed run left: `clean` finds none to abort.
    #[derive(Debug)]
    struct NoUploads;

    impl crate::io::Objects for NoUploads {
        fn open(&self, _bucket: &str) -> object_store::Result<Arc<dyn ObjectStore>> {
            Ok(Arc::new(object_store::memory::InMemory::new()))
        }
    }

    // OBJ-7, OBJ-9: a run that removes a killed run's generation above the live one and then
    // switches to its own full backup still removes the generations `keep` no longer covers:
    // removing the leftover forgets it alone, not the others.
    #[test]
    fn obj_9_a_run_that_cleaned_a_leftover_generation_still_removes_the_old_live_one() {
        let file = |content: &str| {
            (
                "neostore.nodestore.db".to_string(),
                content.as_bytes().to_vec(),
            )
        };
        futures::executor::block_on(async {
            let first = super::super::testing::target_with(
                &[file("one")],
                9,
                crate::digest::Digest([0; 32]),
            )
            .await
            .expect("a target");
            let (store, url) = (first.store().clone(), first.url().clone());
            let put = async |key: &str| {
                store
                    .put(&url.key(key), PutPayload::from(b"x".to_vec()))
                    .await
                    .expect("put");
            };
            put("generation-2/neostore.nodestore.db").await;
            let mut target = ObjectTarget::read(store.clone(), &url).await.expect("read");
            assert_eq!(target.generations(), [1, 2], "OBJ-7");
            target.clean(&NoUploads).await.expect("clean");
            assert_eq!(target.generations(), [1], "OBJ-7: the leftover is gone");
            let n = target.next_generation();
            assert_eq!(n, 3, "OBJ-7: numbers are never reused");
            put("generation-3/neostore.nodestore.db").await;
            target.switch_to(n, 1).await.expect("switch");
            let mut left: Vec<String> = store
                .list(None)
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .expect("list");
            left.sort();
            assert_eq!(
                left,
                ["db/CURRENT", "db/generation-3/neostore.nodestore.db"],
                "OBJ-9: keep 1 leaves the live generation alone"
            );
        });
    }

    /// A clock that moves only when told.
    #[derive(Debug)]
    struct Manual(std::sync::atomic::AtomicU64);

    impl crate::io::Clock for Manual {
        fn now(&self) -> std::time::SystemTime {
            std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(self.0.load(std::sync::atomic::Ordering::SeqCst))
        }
        fn monotonic(&self) -> std::time::Duration {
            std::time::Duration::from_millis(self.0.load(std::sync::atomic::Ordering::SeqCst))
        }
    }

    // OBJ-5: a lease is renewed once 20 s have gone since it was written, not before, with a
    // new expiry 2 minutes ahead; a lease another run changed stops its run; one still live
    // refuses a second run, and one whose expiry has come is taken over.
    #[test]
    fn obj_5_a_lease_is_renewed_when_due_refused_while_live_and_taken_over_once_expired() {
        use std::sync::atomic::Ordering::SeqCst;
        let clock = Arc::new(Manual(std::sync::atomic::AtomicU64::new(1_000_000)));
        let env = Env {
            clock: clock.clone(),
            ..Env::os()
        };
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let url = ObjectUrl::parse("s3://bucket/p").unwrap();
        let expiry = async |store: &Arc<dyn ObjectStore>| {
            let got = get_small(&**store, &url, LEASE_FILE).await;
            parse_lease(&got.unwrap().unwrap().0).unwrap().1
        };
        futures::executor::block_on(async {
            let mut lease = Lease::take(store.clone(), &url, &env).await.unwrap();
            assert_eq!(expiry(&store).await, 1_000_000 + 120_000, "OBJ-5");
            clock.0.store(1_000_000 + RENEW_AFTER_MILLIS - 1, SeqCst);
            lease.renew_if_due().await.unwrap();
            assert_eq!(expiry(&store).await, 1_120_000, "OBJ-5: not due yet");
            clock.0.store(1_000_000 + RENEW_AFTER_MILLIS, SeqCst);
            lease.renew_if_due().await.unwrap();
            assert_eq!(
                expiry(&store).await,
                1_000_000 + RENEW_AFTER_MILLIS + 120_000,
                "OBJ-5: renewed when due"
            );
            // A second run while it is live is refused, naming the expiry.
            let refused = Lease::take(store.clone(), &url, &env).await.unwrap_err();
            assert!(
                matches!(refused, ObjectsError::Locked { .. }),
                "OBJ-5: {refused}"
            );
            // At its expiry it is taken over, and the first run's next renewal finds it lost.
            clock
                .0
                .store(1_000_000 + RENEW_AFTER_MILLIS + 120_000, SeqCst);
            let second = Lease::take(store.clone(), &url, &env).await.unwrap();
            clock
                .0
                .store(1_000_000 + 3 * RENEW_AFTER_MILLIS + 120_000, SeqCst);
            let lost = lease.renew_if_due().await.unwrap_err();
            assert!(
                matches!(lost, ObjectsError::LeaseLost { .. }),
                "OBJ-5: {lost}"
            );
            // Its release leaves the lease that is no longer its own; the owner's removes it.
            let held = expiry(&store).await;
            lease.release().await;
            assert_eq!(
                expiry(&store).await,
                held,
                "OBJ-5: another run's lease is kept"
            );
            second.release().await;
            assert!(
                get_small(&*store, &url, LEASE_FILE)
                    .await
                    .unwrap()
                    .is_none(),
                "OBJ-5: released"
            );
        });
    }
}
