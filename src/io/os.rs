//! Production implementations of the seams: `std::fs`, `tokio::net` and the system clock.
//!
//! Owns: every direct use of the operating system's filesystem, sockets and clock in the
//! library. Must not touch: any decision of the product; this module only translates.
//! This is the one file where `std::fs`, `tokio::net` and `SystemTime::now` may appear (IO-1).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use super::{
    Blocking, BoxFuture, Clock, DirEntry, FileHandle, Fs, Listener, LockGuard, Metadata, Net,
    Objects, OpenMode, Stream,
};

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsClock;

impl Clock for OsClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn monotonic(&self) -> Duration {
        // The origin is the first reading in the process; only differences matter.
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs;

#[derive(Debug)]
struct OsFile(File);

impl FileHandle for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match self.0.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)] // an exemption (lib.rs): sync_file_range has no safe std API
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Ok(()); // a hint only: out of range is nothing to start
        };
        // SAFETY: the descriptor is this file's own, open for as long as `self`; the call reads
        // no memory of ours.
        let rc = unsafe {
            libc::sync_file_range(self.0.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// An flock(2) held on the directory itself, so locking adds no file to the directory.
#[derive(Debug)]
struct OsDirLock(File);

impl LockGuard for OsDirLock {}

impl Drop for OsDirLock {
    /// Unlocks before the descriptor closes (IO-3): closing alone frees the lock only when no
    /// other descriptor shares the open file, and a child forked by any thread of the process
    /// holds copies of every descriptor until it execs, so the directory would stay locked
    /// for that while after the guard is gone.
    fn drop(&mut self) {
        // A failed unlock leaves only the close, which releases the lock as before.
        let _ = self.0.unlock();
    }
}

impl Fs for OsFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>> {
        let mut opts = OpenOptions::new();
        opts.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                opts.write(true);
            }
            OpenMode::ReadWriteCreate => {
                opts.write(true).create(true);
            }
            OpenMode::CreateNew => {
                opts.write(true).create_new(true);
            }
            OpenMode::CreateTruncate => {
                opts.write(true).create(true).truncate(true);
            }
        }
        Ok(Box::new(OsFile(opts.open(path)?)))
    }

    fn metadata(&self, path: &Path) -> io::Result<Option<Metadata>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(Metadata {
                is_dir: m.is_dir(),
                len: if m.is_dir() { 0 } else { m.len() },
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            entries.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                is_dir: meta.is_dir(),
                len: if meta.is_dir() { 0 } else { meta.len() },
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn LockGuard>> {
        let file = File::open(dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(OsDirLock(file))),
            Err(TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another process", dir.display()),
            )),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    #[allow(unsafe_code)] // an exemption (lib.rs): statvfs has no safe std API
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
        // SAFETY: statvfs writes into the zeroed struct we own and reads the NUL-terminated path.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
    }
}

/// Real TCP.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsNet;

#[derive(Debug)]
struct OsListener(tokio::net::TcpListener);

impl Listener for OsListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Stream>, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream) as Box<dyn Stream>, peer))
        })
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Net for OsNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(OsListener(listener)) as Box<dyn Listener>)
        })
    }
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Stream>>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }

    fn connect_paced<'a>(
        &'a self,
        addr: &'a str,
        recv_buffer: usize,
    ) -> BoxFuture<'a, io::Result<Box<dyn Stream>>> {
        Box::pin(async move {
            // Setting the size before connecting fixes it (Linux stops growing the buffer on
            // its own), and it is what the window offered to the sender is computed from.
            let size = u32::try_from(recv_buffer).unwrap_or(u32::MAX);
            let mut last = None;
            for peer in tokio::net::lookup_host(addr).await? {
                let socket = if peer.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.set_recv_buffer_size(size)?;
                match socket.connect(peer).await {
                    Ok(stream) => {
                        stream.set_nodelay(true)?;
                        return Ok(Box::new(stream) as Box<dyn Stream>);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{addr} resolves to no address"),
                )
            }))
        })
    }
}

/// rustls's `ring` provider: its key exchange and `secure_random` draw from the operating
/// system (IO-11).
pub fn crypto() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Blocking work on tokio's blocking pool (IO-10), off the async workers.
#[derive(Debug)]
pub struct OsBlocking;

impl Blocking for OsBlocking {
    fn run(&self, job: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(e) = tokio::task::spawn_blocking(job).await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        })
    }

    /// The machine's cores, at most 8 (a scan is bound by the disk beyond a few).
    fn width(&self) -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    }

    /// Scoped threads, one per job but the first, which runs on the caller's thread.
    fn run_all<'a>(&self, jobs: Vec<Box<dyn FnOnce() + Send + 'a>>) {
        std::thread::scope(|scope| {
            let mut jobs = jobs.into_iter();
            let first = jobs.next();
            let others: Vec<_> = jobs.map(|job| scope.spawn(job)).collect();
            if let Some(job) = first {
                job();
            }
            for handle in others {
                if let Err(panic) = handle.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }
}

/// S3, or any S3-compatible server, through `object_store` (OBJ-1, OBJ-2).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsObjects;

impl OsObjects {
    /// The S3 client of `bucket`, and the options its requests use (OBJ-1, OBJ-2).
    fn s3(
        bucket: &str,
    ) -> object_store::Result<(
        object_store::aws::AmazonS3,
        object_store::aws::AmazonS3Builder,
        object_store::ClientOptions,
    )> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        use object_store::{BackoffConfig, ClientOptions, RetryConfig};
        use std::time::Duration;
        // reqwest's rustls takes the process's provider: ring, as the backup port's TLS. A
        // second installation (another open) changes nothing.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        // Client options replace the ones `from_env` read, so plain HTTP is allowed here, for
        // an endpoint that asks for it by name (OBJ-1).
        let http = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_some_and(|e| e.starts_with("http://"));
        let options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(60))
            .with_allow_http(http);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        };
        let builder = builder
            .with_client_options(options.clone())
            .with_retry(retry);
        Ok((builder.clone().build()?, builder, options))
    }

    /// One page of `ListMultipartUploads` of `bucket` under `prefix` (the first: every page
    /// before it was aborted), signed with the client's own credentials: `object_store` has no
    /// call for it.
    async fn list_uploads(bucket: &str, prefix: &str) -> object_store::Result<UploadsPage> {
        use futures::StreamExt;
        use object_store::aws::{AmazonS3ConfigKey, AwsAuthorizer};
        use object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};
        let (s3, builder, options) = OsObjects::s3(bucket)?;
        let region = builder
            .get_config_value(&AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".to_string());
        let query: String = prefix
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let url = match builder.get_config_value(&AmazonS3ConfigKey::Endpoint) {
            Some(endpoint) => format!(
                "{}/{bucket}?uploads&prefix={query}",
                endpoint.trim_end_matches('/')
            ),
            None => format!("https://{bucket}.s3.{region}.amazonaws.com/?uploads&prefix={query}"),
        };
        let credential = s3.credentials().get_credential().await?;
        let mut request = hyper::http::Request::builder()
            .method("GET")
            .uri(url)
            .body(HttpRequestBody::empty())
            .map_err(|e| store_error(Box::new(e)))?;
        AwsAuthorizer::new(&credential, "s3", &region)
            .try_authorize(&mut request, None)
            .map_err(|e| store_error(Box::new(e)))?;
        let client = ReqwestConnector::default().connect(&options)?;
        let response = client
            .execute(request)
            .await
            .map_err(|e| store_error(Box::new(e)))?;
        let status = response.status();
        // The endpoint is a peer: its answer is read up to a bound, not whole (a page of 1,000
        // uploads is about 400 KB).
        let mut body = Vec::new();
        let mut chunks = response.into_body().bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| store_error(Box::new(e)))?;
            if body.len() + chunk.len() > MAX_UPLOADS_PAGE {
                return Err(store_error(
                    format!(
                        "the list of multipart uploads is longer than {MAX_UPLOADS_PAGE} bytes"
                    )
                    .into(),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(store_error(
                format!("listing multipart uploads answered {status}: {text}").into(),
            ));
        }
        Ok(UploadsPage::parse(&text))
    }
}

/// The most bytes one page of `ListMultipartUploads` may hold (1,000 uploads of keys up to
/// 1,024 bytes, with their XML).
const MAX_UPLOADS_PAGE: usize = 4 << 20;

/// The most pages of unfinished uploads one run aborts (OBJ-17): 100,000 uploads, far more
/// than killed runs leave; what is left is for the next run.
const MAX_UPLOAD_PAGES: usize = 100;

fn store_error(source: Box<dyn std::error::Error + Send + Sync>) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source,
    }
}

/// One page of `ListMultipartUploads`: each upload's key and id, and whether more follow.
#[derive(Debug, PartialEq, Eq)]
struct UploadsPage {
    uploads: Vec<(String, String)>,
    truncated: bool,
}

impl UploadsPage {
    /// Reads the fields the aborts need from S3's XML answer, wherever `IsTruncated` stands
    /// among the uploads; an upload without a key or an id is skipped. Keys under a backup's prefix are the tool's own names (no XML escapes).
    fn parse(xml: &str) -> UploadsPage {
        let field = |chunk: &str, tag: &str| {
            chunk
                .split(&format!("<{tag}>"))
                .nth(1)
                .and_then(|s| s.split(&format!("</{tag}>")).next())
                .map(str::to_string)
        };
        UploadsPage {
            uploads: xml
                .split("<Upload>")
                .skip(1)
                .filter_map(|chunk| Some((field(chunk, "Key")?, field(chunk, "UploadId")?)))
                .collect(),
            truncated: field(xml, "IsTruncated").is_some_and(|t| t.trim() == "true"),
        }
    }
}

/// What the aborts of one run have done so far (OBJ-17): each listing starts again from the
/// first page, which the aborts before it emptied, until a page says none follow, `max_pages`
/// pages were listed, or a page lists nothing new (an abort that did not take would otherwise
/// be listed for ever).
struct Aborts {
    /// The ids of the uploads aborted, so one listed again is not aborted twice.
    done: std::collections::BTreeSet<String>,
    /// Pages still to list.
    pages_left: usize,
    /// Whether another page is to be listed.
    more: bool,
}

impl Aborts {
    fn new(max_pages: usize) -> Aborts {
        Aborts {
            done: std::collections::BTreeSet::new(),
            pages_left: max_pages,
            more: max_pages > 0,
        }
    }

    /// The uploads of `page` not aborted yet, to abort now; sets [`Aborts::more`] to whether
    /// another page is to be listed after them.
    fn take(&mut self, page: UploadsPage) -> Vec<(String, String)> {
        let fresh: Vec<_> = page
            .uploads
            .into_iter()
            .filter(|(_, id)| self.done.insert(id.clone()))
            .collect();
        self.pages_left -= 1;
        self.more = page.truncated && !fresh.is_empty() && self.pages_left > 0;
        fresh
    }
}

impl Objects for OsObjects {
    fn open(
        &self,
        bucket: &str,
    ) -> object_store::Result<std::sync::Arc<dyn object_store::ObjectStore>> {
        Ok(std::sync::Arc::new(OsObjects::s3(bucket)?.0))
    }

    fn abort_orphans<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, object_store::Result<usize>> {
        Box::pin(async move {
            use object_store::multipart::MultipartStore;
            let (s3, _, _) = OsObjects::s3(bucket)?;
            let mut aborts = Aborts::new(MAX_UPLOAD_PAGES);
            while aborts.more {
                let page = OsObjects::list_uploads(bucket, prefix).await?;
                for (key, id) in aborts.take(page) {
                    s3.abort_multipart(&object_store::path::Path::from(key.as_str()), &id)
                        .await?;
                }
            }
            Ok(aborts.done.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListMultipartUploadsResult>\
        <Bucket>b</Bucket><KeyMarker></KeyMarker><IsTruncated>true</IsTruncated>\
        <Upload><Key>p/generation-2/neostore.nodestore.db</Key><UploadId>u1</UploadId></Upload>\
        <Upload><Key>p/generation-2/neostore.propertystore.db</Key><UploadId>u2</UploadId>\
        <Initiated>2026-12-03T00:00:00.000Z</Initiated></Upload>\
        <Upload><Key>p/no-id</Key></Upload></ListMultipartUploadsResult>";

    #[test]
    fn obj_17_a_page_gives_each_uploads_key_and_id_and_whether_more_follow() {
        let page = UploadsPage::parse(PAGE);
        assert_eq!(
            page.uploads,
            vec![
                ("p/generation-2/neostore.nodestore.db".into(), "u1".into()),
                (
                    "p/generation-2/neostore.propertystore.db".into(),
                    "u2".into()
                ),
            ],
            "OBJ-17: an upload without an id is skipped"
        );
        assert!(page.truncated, "OBJ-17: IsTruncated true");
        let last = UploadsPage::parse(&PAGE.replace(">true<", ">false<"));
        assert!(!last.truncated, "OBJ-17: IsTruncated false");
        assert!(!UploadsPage::parse("<ListMultipartUploadsResult/>").truncated);
        let after = "<R><Upload><Key>k</Key><UploadId>u</UploadId></Upload><IsTruncated>true</IsTruncated></R>";
        assert!(
            UploadsPage::parse(after).truncated,
            "OBJ-17: IsTruncated after the uploads"
        );
    }

    /// Runs [`Aborts`] against a store of `n` unfinished uploads that lists `per_page` at a
    /// time; `sticky` aborts are acknowledged but not carried out. Returns how many were
    /// aborted, how many are left and how many listings were made.
    fn run(n: usize, per_page: usize, sticky: bool, max_pages: usize) -> (usize, usize, usize) {
        let mut left: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
        let (mut aborts, mut listings) = (Aborts::new(max_pages), 0);
        while aborts.more {
            listings += 1;
            let page = UploadsPage {
                uploads: left
                    .iter()
                    .take(per_page)
                    .map(|id| (format!("p/{id}"), id.clone()))
                    .collect(),
                truncated: left.len() > per_page,
            };
            for (_, id) in aborts.take(page) {
                if !sticky {
                    left.retain(|u| *u != id);
                }
            }
        }
        (aborts.done.len(), left.len(), listings)
    }

    #[test]
    fn obj_17_every_page_of_unfinished_uploads_is_aborted() {
        assert_eq!(
            run(2_501, 1_000, false, 100),
            (2_501, 0, 3),
            "OBJ-17: three pages, one listing each, none left"
        );
        assert_eq!(
            run(1_000, 1_000, false, 100),
            (1_000, 0, 1),
            "OBJ-17: a page not truncated is the last"
        );
        assert_eq!(
            run(0, 1_000, false, 100),
            (0, 0, 1),
            "OBJ-17: nothing to abort"
        );
    }

    #[test]
    fn obj_17_a_run_aborts_at_most_its_page_bound() {
        assert_eq!(
            run(5_000, 1_000, false, 2),
            (2_000, 3_000, 2),
            "OBJ-17: two pages a run, the rest for the next"
        );
    }

    #[test]
    fn obj_17_aborts_that_do_not_take_end_the_run() {
        assert_eq!(
            run(3_000, 1_000, true, 100),
            (1_000, 3_000, 2),
            "OBJ-17: each upload aborted once; a page with nothing new ends the run"
        );
    }
}
