//! Moving a generation's bytes: uploads whose memory is bounded whatever the object's size
//! (OBJ-6), each hashed into its manifest entry as it is sent, and the download of a generation
//! into a local directory, each object checked against the manifest as it arrives (OBJ-8).

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::target::{get_bounded, is_leftover_segment};
use super::{Lease, ObjectTarget, ObjectUrl, ObjectsError};
use crate::backup::manifest::{
    BlockHasher, FileEntry, Finding, Manifest, BLOCK_SIZE, MANIFEST_FILE,
};
use crate::io::{Env, FileHandle, OpenMode};
use crate::store::log::{
    log_version_of, LogHeader, TxEntry, TxState, FRAME_SIZE, HEADER_SIZE, MAX_ENTRY,
};
use crate::store::meta::{Meta, META_FILE, META_SIZE};

/// The size of an upload's parts: S3's smallest. An upload holds at most one part being filled
/// and one being sent (OBJ-6).
pub const PART_SIZE: usize = 5 << 20;

/// One object being uploaded, hashed into its manifest entry as its bytes go (OBJ-6). Small
/// objects go in one request; one that reaches a part's size becomes a multipart upload.
pub struct Upload {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    /// The file name its manifest entry carries.
    name: String,
    /// Bytes not yet handed to a multipart upload (less than a part, plus the last write).
    pending: Vec<u8>,
    multipart: Option<WriteMultipart>,
    hasher: BlockHasher,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("key", &self.key)
            .field("pending", &self.pending.len())
            .field("multipart", &self.multipart.is_some())
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// An upload of the object `name` of generation `n` of `target`.
    pub fn of(target: &ObjectTarget, n: u64, name: &str, block_size: u32) -> Upload {
        Upload::new(
            target.store().clone(),
            target.key(n, name),
            name,
            block_size,
        )
    }

    pub fn new(
        store: Arc<dyn ObjectStore>,
        key: ObjectPath,
        name: &str,
        block_size: u32,
    ) -> Upload {
        Upload {
            store,
            key,
            name: name.to_string(),
            pending: Vec::new(),
            multipart: None,
            hasher: BlockHasher::new(block_size),
        }
    }

    /// The object's next bytes. Waits while a part is still being sent, so at most one part
    /// is in flight and one is filling.
    pub async fn write(&mut self, data: &[u8]) -> object_store::Result<()> {
        self.hasher.update(data);
        if let Some(multipart) = &mut self.multipart {
            multipart.wait_for_capacity(1).await?;
            multipart.write(data);
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= PART_SIZE {
            let upload = self.store.put_multipart(&self.key).await?;
            let mut multipart = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            // Handed over, not copied: one part's bytes in memory, not two.
            multipart.put(bytes::Bytes::from(std::mem::take(&mut self.pending)));
            self.multipart = Some(multipart);
        }
        Ok(())
    }

    /// Completes the object and returns its manifest entry.
    pub async fn finish(self) -> object_store::Result<FileEntry> {
        match self.multipart {
            // `finish` aborts the upload itself when a part or the completion fails.
            Some(multipart) => multipart.finish().await?,
            None => {
                self.store
                    .put(&self.key, PutPayload::from(self.pending))
                    .await?
            }
        };
        Ok(self.hasher.finish(&self.name))
    }

    /// Abandons the object: a multipart upload is aborted, so no parts are left behind
    /// (OBJ-7). A failure to abort is logged.
    pub async fn abort(self) {
        if let Some(multipart) = self.multipart {
            if let Err(e) = multipart.abort().await {
                tracing::warn!("could not abort the upload of {}: {e}", self.key);
            }
        }
    }
}

/// Uploads `bytes` as the object `name` of generation `n` of `target`, in one request, and
/// gives its manifest entry.
pub async fn put_object(
    target: &ObjectTarget,
    n: u64,
    name: &str,
    bytes: &[u8],
) -> Result<FileEntry, ObjectsError> {
    let mut upload = Upload::of(target, n, name, BLOCK_SIZE);
    let failed = |e: object_store::Error| ObjectsError::uploading(target.url(), name, &e);
    upload.write(bytes).await.map_err(failed)?;
    upload.finish().await.map_err(failed)
}

/// What reading the live generation against its manifest found (OBJ-8, OBJ-14).
#[derive(Debug, Default)]
pub struct Fetched {
    /// Bytes read.
    pub bytes: u64,
    /// Blocks read and found as listed.
    pub blocks: u64,
    /// Damage, named by object and block (MF-4): unlisted objects first, then in manifest order.
    pub findings: Vec<Finding>,
}

/// Downloads generation `n` of `target`, whose manifest is `manifest`, into the directory
/// `dir`, which must not exist, checking each object against the manifest as it arrives
/// (OBJ-8): a damaged, missing or extra object is damage, named with its block, and fails the
/// download (exit 3). Every file is synced, and the directory. `lease` is renewed as the bytes
/// come, however long they take (OBJ-5). Returns the bytes downloaded.
pub async fn download_generation(
    env: &Env,
    target: &ObjectTarget,
    n: u64,
    manifest: &Manifest,
    dir: &Path,
    lease: &mut Lease,
) -> Result<u64, ObjectsError> {
    let fetched = fetch_generation(env, target, n, manifest, Some((dir, lease))).await?;
    if let Some(first) = fetched.findings.first() {
        return Err(ObjectsError::Damaged {
            url: target.url().to_string(),
            count: fetched.findings.len(),
            first: first.to_string(),
        });
    }
    Ok(fetched.bytes)
}

/// The live generation of `target` and its manifest; a target without one holds no backup
/// (exit 3).
pub fn live_generation(target: &ObjectTarget) -> Result<(u64, &Manifest), ObjectsError> {
    match (target.live(), target.manifest()) {
        (Some(n), Some(manifest)) => Ok((n, manifest)),
        _ => Err(ObjectsError::NotABackup {
            url: target.url().to_string(),
            why: "it holds no backup".to_string(),
        }),
    }
}

/// Reads every object of generation `n` of `target` against its manifest, block by block as
/// it streams (OBJ-8, OBJ-14), and, when given a directory and the lease the download holds,
/// writes each into the directory (created first; every file synced, and the directory),
/// renewing the lease as it goes. An object longer than listed is damage found without
/// reading it.
pub async fn fetch_generation(
    env: &Env,
    target: &ObjectTarget,
    n: u64,
    manifest: &Manifest,
    mut into: Option<(&Path, &mut Lease)>,
) -> Result<Fetched, ObjectsError> {
    let dir = into.as_ref().map(|(dir, _)| *dir);
    let url = target.url();
    let io = |doing: String| {
        move |e: std::io::Error| ObjectsError::Failed {
            url: url.to_string(),
            doing,
            detail: e.to_string(),
        }
    };
    if let Some(dir) = dir {
        env.fs
            .create_dir_all(dir)
            .map_err(io(format!("creating {} for", dir.display())))?;
    }
    let mut fetched = Fetched::default();
    // Objects the manifest does not list are damage (MF-4).
    let prefix = target.key(n, "");
    let mut listing = target.store().list(Some(&prefix));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| ObjectsError::from_store(url, "listing", &e))?;
        let name = meta.location.filename().unwrap_or_default().to_string();
        if is_leftover_segment(manifest, &name) {
            // An interrupted incremental's segment: not part of the generation (OBJ-11).
            continue;
        }
        if name != MANIFEST_FILE && manifest.file(&name).is_none() {
            fetched.findings.push(Finding::Unlisted { file: name });
        }
    }
    let block_size = manifest.block_size as u64;
    for listed in &manifest.files {
        let key = target.key(n, &listed.name);
        let got = match target.store().get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                fetched.findings.push(Finding::Missing {
                    file: listed.name.clone(),
                });
                continue;
            }
            Err(e) => {
                return Err(ObjectsError::from_store(
                    url,
                    &format!(
                        "reading {}/{} of",
                        crate::store::layout::generation_name(n),
                        listed.name
                    ),
                    &e,
                ))
            }
        };
        if got.meta.size > listed.size {
            // Longer than listed: damage, found without reading it.
            fetched.findings.push(Finding::Extended {
                file: listed.name.clone(),
                size: got.meta.size,
                listed: listed.size,
                block: listed.size / block_size,
            });
            continue;
        }
        let file: Option<(Arc<dyn FileHandle>, std::path::PathBuf)> = match dir {
            Some(dir) => {
                let path = dir.join(&listed.name);
                let file = env
                    .fs
                    .open(&path, OpenMode::CreateNew)
                    .map_err(io(format!("writing {} from", path.display())))?;
                Some((Arc::from(file), path))
            }
            None => None,
        };
        let mut hasher = BlockHasher::new(manifest.block_size);
        let mut at = 0u64;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ObjectsError::from_store(url, "downloading", &e))?;
            if at + chunk.len() as u64 > listed.size {
                break;
            }
            hasher.update(&chunk);
            if let Some((_, lease)) = into.as_mut() {
                lease.renew_if_due().await?;
            }
            let n = chunk.len() as u64;
            if let Some((file, path)) = &file {
                let writer = file.clone();
                env.blocking(move || writer.write_all_at(&chunk, at))
                    .await
                    .map_err(io(format!("writing {} from", path.display())))?;
            }
            at += n;
        }
        if let Some((file, path)) = &file {
            let writer = file.clone();
            env.blocking(move || writer.sync())
                .await
                .map_err(io(format!("syncing {} from", path.display())))?;
        }
        fetched.bytes += at;
        match listed.compare(&hasher.finish(&listed.name), block_size) {
            Some(found) => {
                fetched.blocks += match &found {
                    Finding::Block { block, .. }
                    | Finding::Truncated { block, .. }
                    | Finding::Extended { block, .. } => *block,
                    _ => 0,
                };
                fetched.findings.push(found);
            }
            None => fetched.blocks += listed.blocks.len() as u64,
        }
    }
    if let Some(dir) = dir {
        env.fs
            .sync_dir(dir)
            .map_err(io(format!("syncing {} for", dir.display())))?;
    }
    Ok(fetched)
}

/// Runs `work` on what the object store backup `url` holds, read under the target's lease
/// (OBJ-5), so no run changes or removes it meanwhile (`work` renews the lease as it goes); the
/// lease is released after, whatever `work` returned.
pub async fn under_lease<T, E: From<ObjectsError>>(
    env: &Env,
    url: &ObjectUrl,
    work: impl AsyncFnOnce(&mut ObjectTarget, &mut Lease) -> Result<T, E>,
) -> Result<T, E> {
    let store = env
        .objects
        .open(&url.bucket)
        .map_err(|e| ObjectsError::from_store(url, "opening", &e))?;
    let mut lease = Lease::take(store.clone(), url, env).await?;
    let done = match ObjectTarget::read(store, url).await {
        Ok(mut target) => work(&mut target, &mut lease).await,
        Err(e) => Err(e.into()),
    };
    lease.release().await;
    done
}

/// Downloads the live generation of the object store backup `url` into `dir` under the
/// target's lease (OBJ-8), so no run removes it meanwhile; a failed download leaves no `dir`.
/// Returns the bytes downloaded.
pub async fn stage(env: &Env, url: &ObjectUrl, dir: &Path) -> Result<u64, ObjectsError> {
    let downloaded = under_lease(
        env,
        url,
        async |target: &mut ObjectTarget, lease: &mut Lease| {
            let (n, manifest) = live_generation(target)?;
            download_generation(env, target, n, manifest, dir, lease).await
        },
    )
    .await;
    if downloaded.is_err() {
        if let Ok(Some(_)) = env.fs.metadata(dir) {
            if let Err(e) = env.fs.remove_dir_all(dir) {
                tracing::warn!("could not remove {}: {e}", dir.display());
            }
        }
    }
    downloaded
}

/// `neo4j-admin check --quick s3://...` (OBJ-14): every object of the live generation against
/// its manifest, block by block as it streams, nothing written; read without the lease, as
/// `backup-info` reads a directory without its lock.
pub async fn quick_check_objects(
    env: &Env,
    url: &ObjectUrl,
) -> Result<crate::backup::manifest::QuickCheck, ObjectsError> {
    let store = env
        .objects
        .open(&url.bucket)
        .map_err(|e| ObjectsError::from_store(url, "opening", &e))?;
    let target = ObjectTarget::read(store, url).await?;
    let (n, manifest) = live_generation(&target)?;
    let fetched = fetch_generation(env, &target, n, manifest, None).await?;
    let manifest = manifest.clone();
    Ok(crate::backup::manifest::QuickCheck {
        generation: std::path::PathBuf::from(format!(
            "{url}/{}",
            crate::store::layout::generation_name(n)
        )),
        manifest,
        report: crate::backup::manifest::VerifyReport {
            findings: fetched.findings,
            unchecked: Vec::new(),
            blocks_checked: fetched.blocks,
            bytes_read: fetched.bytes,
        },
    })
}

/// The state after the live generation's last tx (OBJ-11): the state the last entry of its
/// newest log object carries, read as that object streams (memory bounded by one entry), or the
/// metadata's checkpoint when its logs hold no entry. It must agree with the manifest's last tx
/// and digest; anything else is damage (exit 3).
pub async fn last_state(target: &ObjectTarget) -> Result<TxState, ObjectsError> {
    let url = target.url();
    let damaged = |why: String| ObjectsError::NotABackup {
        url: url.to_string(),
        why,
    };
    let (Some(n), Some(manifest)) = (target.live(), target.manifest()) else {
        return Err(damaged("it holds no backup".to_string()));
    };
    let newest = manifest
        .files
        .iter()
        .filter_map(|f| log_version_of(&f.name))
        .max()
        .ok_or_else(|| damaged("its live generation lists no log".to_string()))?;
    let name = format!("{}{newest}", crate::store::log::LOG_PREFIX);
    let got = target
        .store()
        .get(&target.key(n, &name))
        .await
        .map_err(|e| ObjectsError::from_store(url, &format!("reading {name} of"), &e))?;
    let mut stream = got.into_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut header: Option<LogHeader> = None;
    let mut last: Option<TxState> = None;
    let mut last_tx = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ObjectsError::from_store(url, &format!("reading {name} of"), &e))?;
        buf.extend_from_slice(&chunk);
        if header.is_none() {
            if buf.len() < HEADER_SIZE as usize {
                continue;
            }
            let h = LogHeader::decode(&buf)
                .filter(|h| h.log_version == newest)
                .ok_or_else(|| damaged(format!("{name} has a damaged header")))?;
            last_tx = h.prev_last_tx;
            buf.drain(..HEADER_SIZE as usize);
            header = Some(h);
        }
        // Every whole entry in the buffer; a partial one waits for more bytes. The entries
        // read are dropped from the buffer once per chunk, not one by one (each drop moves
        // what is left).
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            if rest.len() < FRAME_SIZE as usize {
                break;
            }
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4"));
            let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4"));
            if len > MAX_ENTRY {
                return Err(damaged(format!(
                    "{name} holds an entry longer than any can be"
                )));
            }
            let end = FRAME_SIZE as usize + len as usize;
            if rest.len() < end {
                break;
            }
            let body = &rest[FRAME_SIZE as usize..end];
            let entry = (crc32c::crc32c(body) == crc)
                .then(|| TxEntry::decode_body(body).ok())
                .flatten()
                .filter(|e| e.tx_id == last_tx + 1)
                .ok_or_else(|| {
                    damaged(format!("{name} holds a damaged entry after tx {last_tx}"))
                })?;
            last_tx = entry.tx_id;
            last = Some(entry.after);
            at += end;
        }
        buf.drain(..at);
    }
    let Some(header) = header else {
        return Err(damaged(format!("{name} is shorter than a log header")));
    };
    if !buf.is_empty() {
        return Err(damaged(format!(
            "{name} ends inside an entry after tx {last_tx}"
        )));
    }
    let state = match last {
        Some(state) => state,
        None if newest == 0 => {
            // No transaction after the checkpoint: the metadata's state is the last.
            let (bytes, _) = get_bounded(
                &**target.store(),
                url,
                &format!("{}/{META_FILE}", crate::store::layout::generation_name(n)),
                META_SIZE as u64,
            )
            .await?
            .ok_or_else(|| damaged(format!("its live generation has no {META_FILE}")))?;
            let meta = Meta::decode(&bytes).map_err(|e| damaged(format!("{META_FILE}: {e}")))?;
            meta.checkpoint.state()
        }
        None => return Err(damaged(format!("{name} holds no transaction"))),
    };
    if last_tx != manifest.last_tx
        || (last.is_none() && header.prev_digest != state.digest)
        || state.digest != manifest.digest
    {
        return Err(damaged(format!(
            "its logs end at tx {last_tx} with digest {}, but its manifest says tx {} with digest {}",
            state.digest, manifest.last_tx, manifest.digest
        )));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::store::log::LOG_PREFIX;

    // OBJ-6: an object smaller than a part is held and sent in one request; the write that
    // brings it to a part's size starts a multipart upload and hands the part over, so no more
    // than a part is held; both complete to the bytes written.
    #[test]
    fn obj_6_an_object_becomes_a_multipart_upload_when_it_reaches_a_parts_size() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let shape = |u: &Upload| format!("{u:?}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let mut small = Upload::new(store.clone(), "small".into(), "small", BLOCK_SIZE);
            small.write(&[1; 10]).await.unwrap();
            assert_eq!(
                shape(&small),
                r#"Upload { key: Path { raw: "small" }, pending: 10, multipart: false, .. }"#,
                "OBJ-6"
            );
            small.finish().await.unwrap();
            let mut big = Upload::new(store.clone(), "big".into(), "big", BLOCK_SIZE);
            big.write(&vec![2; PART_SIZE - 1]).await.unwrap();
            assert!(shape(&big).contains("multipart: false"), "OBJ-6: {big:?}");
            big.write(&[3]).await.unwrap();
            assert!(
                shape(&big).contains("pending: 0, multipart: true"),
                "OBJ-6: exactly a part's size starts the multipart upload: {big:?}"
            );
            big.write(&[4; 7]).await.unwrap();
            big.finish().await.unwrap();
            let got = |key: &'static str| {
                let store = store.clone();
                async move { store.get(&key.into()).await.unwrap().bytes().await.unwrap() }
            };
            assert_eq!(got("small").await.as_ref(), &[1; 10], "OBJ-6");
            let big = got("big").await;
            assert_eq!(big.len(), PART_SIZE + 7, "OBJ-6");
            assert!(
                big[..PART_SIZE - 1].iter().all(|&b| b == 2)
                    && big[PART_SIZE - 1] == 3
                    && big[PART_SIZE..].iter().all(|&b| b == 4),
                "OBJ-6: the bytes as written"
            );
        });
    }

    // OBJ-14, MF-9: a quick check of an object store backup reports the bytes it read and the
    // blocks it found as listed (a damaged object's up to its first damaged block), and names
    // an object longer than listed from the block where the listed bytes end.
    #[test]
    fn obj_14_a_quick_check_counts_what_it_read_and_names_where_damage_begins() {
        let big: Vec<u8> = (0..BLOCK_SIZE as usize * 5 / 2).map(|i| i as u8).collect();
        let files = vec![
            ("a".to_string(), big.clone()),
            ("b".to_string(), vec![7; 10]),
        ];
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let target = super::super::testing::target_with(&files, 9, Digest([0; 32]))
                .await
                .expect("a target");
            let manifest = target.manifest_of(1).await.unwrap().expect("a manifest");
            let env = Env::os();
            let fetch = async || {
                fetch_generation(&env, &target, 1, &manifest, None)
                    .await
                    .expect("fetched")
            };
            let intact = fetch().await;
            assert_eq!(intact.findings, [], "OBJ-14");
            assert_eq!(intact.bytes, big.len() as u64 + 10, "MF-9: bytes read");
            assert_eq!(intact.blocks, 4, "MF-9: three blocks of a, one of b");
            let put = async |name: &str, bytes: Vec<u8>| {
                let key = target.key(1, name);
                target
                    .store()
                    .put(&key, PutPayload::from(bytes))
                    .await
                    .unwrap();
            };
            let mut flipped = big.clone();
            flipped[BLOCK_SIZE as usize + 3] ^= 1;
            put("a", flipped).await;
            let damaged = fetch().await;
            assert_eq!(
                damaged.findings,
                [Finding::Block {
                    file: "a".into(),
                    block: 1,
                    offset: BLOCK_SIZE as u64
                }],
                "OBJ-14"
            );
            assert_eq!(damaged.bytes, big.len() as u64 + 10, "MF-9: bytes read");
            assert_eq!(
                damaged.blocks, 2,
                "MF-9: a's block before the damage, and b's"
            );
            put("a", big.clone()).await;
            put("b", vec![7; 11]).await;
            let extended = fetch().await;
            assert_eq!(
                extended.findings,
                [Finding::Extended {
                    file: "b".into(),
                    size: 11,
                    listed: 10,
                    block: 0
                }],
                "OBJ-14: longer than listed, from the block where the listed bytes end"
            );
            assert_eq!(extended.blocks, 3, "MF-9: b is not read");
        });
    }

    fn state(tx: u64) -> TxState {
        TxState {
            digest: Digest([tx as u8; 32]),
            nodes: tx,
            relationships: 0,
            next_node: tx,
            next_rel: 0,
            next_block: 0,
        }
    }

    fn header(version: u64, prev: u64) -> Vec<u8> {
        LogHeader {
            log_version: version,
            prev_last_tx: prev,
            prev_digest: state(prev).digest,
        }
        .encode()
        .to_vec()
    }

    fn entry(tx: u64) -> Vec<u8> {
        TxEntry {
            tx_id: tx,
            timestamp_millis: 1000 + tx,
            after: state(tx),
            records: Vec::new(),
        }
        .encode_framed()
    }

    /// An in-memory target whose live generation-1 holds `logs` (log version, bytes) and
    /// whose manifest says `last_tx` with `state(last_tx)`'s digest; what `last_state` says.
    async fn last_state_of(logs: &[(u64, Vec<u8>)], last_tx: u64) -> Result<TxState, String> {
        last_state_with(logs, last_tx, state(last_tx).digest).await
    }

    /// [`last_state_of`] with a manifest that says `digest` at `last_tx`.
    async fn last_state_with(
        logs: &[(u64, Vec<u8>)],
        last_tx: u64,
        digest: Digest,
    ) -> Result<TxState, String> {
        let files: Vec<(String, Vec<u8>)> = logs
            .iter()
            .map(|(v, bytes)| (format!("{LOG_PREFIX}{v}"), bytes.clone()))
            .collect();
        let target = super::super::testing::target_with(&files, last_tx, digest)
            .await
            .map_err(|e| e.to_string())?;
        last_state(&target).await.map_err(|e| e.to_string())
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    // OBJ-11: the state after the live generation's last tx is read from its newest log
    // object, which must hold whole entries in order after its header and end where its
    // manifest says; every other shape is damage, named.
    #[test]
    fn obj_11_the_last_state_is_the_newest_logs_last_entry_and_agrees_with_the_manifest() {
        let log = |version: u64, prev: u64, txs: std::ops::RangeInclusive<u64>| {
            let mut b = header(version, prev);
            for tx in txs {
                b.extend(entry(tx));
            }
            b
        };
        let whole = log(1, 5, 6..=8);
        let got = run(last_state_of(
            &[(0, log(0, 3, 4..=5)), (1, whole.clone())],
            8,
        ));
        assert_eq!(got, Ok(state(8)), "OBJ-11: the newest log's last entry");
        let refused = |case: &str, logs: &[(u64, Vec<u8>)], last_tx: u64, says: &str| match run(
            last_state_of(logs, last_tx),
        ) {
            Err(e) => assert!(e.contains(says), "OBJ-11: {case}: {e}"),
            Ok(s) => panic!("OBJ-11: {case} was accepted at {s:?}"),
        };
        refused(
            "a manifest past the logs",
            &[(1, whole.clone())],
            9,
            "end at tx 8",
        );
        refused(
            "a manifest short of the logs",
            &[(1, whole.clone())],
            7,
            "end at tx 8",
        );
        // Tx and digest are each checked: either one differing is damage.
        for (case, last_tx, digest) in [
            (
                "a manifest at the logs' tx with another digest",
                8,
                state(7).digest,
            ),
            (
                "a manifest past the logs with their digest",
                9,
                state(8).digest,
            ),
        ] {
            match run(last_state_with(&[(1, whole.clone())], last_tx, digest)) {
                Err(e) => assert!(e.contains("end at tx 8"), "OBJ-11: {case}: {e}"),
                Ok(s) => panic!("OBJ-11: {case} was accepted at {s:?}"),
            }
        }
        refused(
            "a segment with a header only",
            &[(0, log(0, 3, 4..=5)), (1, header(1, 5))],
            5,
            "holds no transaction",
        );
        refused(
            "a header of another log",
            &[(1, log(2, 5, 6..=8))],
            8,
            "damaged header",
        );
        refused(
            "a cut header",
            &[(1, header(1, 5)[..40].to_vec())],
            5,
            "shorter than a log header",
        );
        refused(
            "an entry cut short",
            &[(1, whole[..whole.len() - 3].to_vec())],
            8,
            "ends inside an entry after tx 7",
        );
        let mut flipped = whole.clone();
        let second = HEADER_SIZE as usize + entry(6).len();
        flipped[second + FRAME_SIZE as usize + 2] ^= 1;
        refused(
            "an entry whose checksum fails",
            &[(1, flipped)],
            8,
            "damaged entry after tx 6",
        );
        refused(
            "a tx out of order",
            &[(1, [header(1, 5), entry(6), entry(8)].concat())],
            8,
            "damaged entry after tx 6",
        );
        // An entry of exactly the largest size is read (here, cut short), one byte more is not.
        let mut largest = header(1, 5);
        largest.extend(MAX_ENTRY.to_le_bytes());
        largest.extend([0; 4]);
        refused(
            "an entry of the largest size cut short",
            &[(1, largest)],
            5,
            "ends inside an entry after tx 5",
        );
        let mut huge = header(1, 5);
        huge.extend((MAX_ENTRY + 1).to_le_bytes());
        huge.extend([0; 4]);
        refused(
            "an entry longer than any can be",
            &[(1, huge)],
            5,
            "longer than any can be",
        );
    }
}
