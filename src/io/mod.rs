//! The I/O seams: every byte the core reads or writes, every connection it makes and every
//! reading of the clock goes through [`Fs`], [`Net`] or [`Clock`]; the randomness TLS draws
//! comes from [`Env::crypto`] (IO-11).
//!
//! Owns: the traits, and the small value types they return.
//! Must not touch: anything real. Production implementations live in [`os`] and nowhere else;
//! the simulated ones live under `sim/` (turmoil's network and filesystem). The test
//! `tests/seams.rs` scans `src/` and fails if `std::fs`, `tokio::net`, `SystemTime::now` or
//! `Instant::now` appear outside `src/io/os.rs` (rule IO-1).
//!
//! The filesystem seam is synchronous on purpose: the store is a sequence of small positioned
//! reads and writes plus fsyncs, and turmoil's simulated filesystem is synchronous too. Callers on
//! an async runtime decide where the blocking happens (see ARCHITECTURE.md).

pub mod os;

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed future, so the network traits stay object safe without a macro crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Wall-clock time (IO-4), and a monotonic reading for durations (IO-15). In simulation the
/// wall clock is turmoil's epoch plus simulated elapsed time plus an offset a test can advance
/// by days in one step, plus the host's own jumps; the monotonic reading leaves the jumps out.
pub trait Clock: Send + Sync + Debug {
    /// The current wall-clock time. It can jump back or forward (an operator or NTP sets it),
    /// so it dates things; it never measures how long something took.
    fn now(&self) -> SystemTime;

    /// Time since a fixed origin, never going back: what durations and rates are measured with
    /// (IO-15). A run's reported duration and the pacing of `--max-rate` use it, so a wall clock
    /// stepped during a run cannot make either wrong.
    fn monotonic(&self) -> Duration;

    /// How long since `mark`, a reading of [`Clock::monotonic`].
    fn since(&self, mark: Duration) -> Duration {
        self.monotonic().saturating_sub(mark)
    }

    /// [`Clock::monotonic`] in milliseconds: what the backup pins' idleness is measured in
    /// (RET-11), so a wall clock set forward releases no pin of a backup that is making progress.
    fn monotonic_millis(&self) -> u64 {
        self.monotonic().as_millis() as u64
    }

    /// Milliseconds since the Unix epoch (0 for a clock set before 1970).
    fn now_millis(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64
    }
}

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write, creating the file if missing (contents kept if present).
    ReadWriteCreate,
    /// Read and write a new, empty file; fails if it exists.
    CreateNew,
    /// Read and write, creating the file or truncating it to zero length.
    CreateTruncate,
}

/// What [`Fs::metadata`] and [`Fs::read_dir`] report about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub is_dir: bool,
    /// Length in bytes (0 for directories).
    pub len: u64,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    pub len: u64,
}

/// An open file: positioned reads and writes only, so no shared cursor can race.
#[allow(clippy::len_without_is_empty)] // a file's length is I/O, not a collection's size
pub trait FileHandle: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, extending the file if needed. Not durable until synced.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data and length durable (fdatasync semantics suffice: we never rely on
    /// timestamps).
    fn sync(&self) -> io::Result<()>;

    /// Starts writing `len` bytes at `offset` to the disk without waiting for them, so that a
    /// later [`FileHandle::sync`] finds less to do (a file written in one pass, synced at its
    /// end). Durability still comes only from `sync`; the default does nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, offset)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file ended before the expected bytes",
                ));
            }
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    /// Reads as many bytes as are available at `offset`, up to `buf.len()`; stops early only at
    /// the end of the file.
    fn read_fully_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }
}

/// A file read through a window of bytes read ahead (IO-13): a read that falls inside the
/// window is served from it, any other refills the window from the read's offset with one read
/// of the file, and a read as large as the window goes to the file. Only for bytes that never
/// change once they can be read: a log read below its last whole entry, which is only ever
/// appended to. Writes go to the file and empty the window.
#[derive(Debug)]
pub struct ReadAhead {
    inner: Box<dyn FileHandle>,
    capacity: usize,
    /// Where the window starts in the file, and its bytes.
    window: std::sync::Mutex<(u64, Vec<u8>)>,
}

impl ReadAhead {
    pub fn new(inner: Box<dyn FileHandle>, capacity: usize) -> ReadAhead {
        ReadAhead {
            inner,
            capacity,
            window: std::sync::Mutex::new((0, Vec::new())),
        }
    }

    /// Empties the window: the next read goes to the file.
    pub fn forget(&self) {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        window.1.clear();
    }
}

impl FileHandle for ReadAhead {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if buf.len() >= self.capacity {
            return self.inner.read_at(buf, offset);
        }
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let (start, data) = &mut *window;
        let inside = offset >= *start && offset + buf.len() as u64 <= *start + data.len() as u64;
        if !inside {
            data.resize(self.capacity, 0);
            let n = self.inner.read_fully_at(data, offset)?;
            data.truncate(n);
            *start = offset;
        }
        let from = (offset - *start) as usize;
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.forget();
        self.inner.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.forget();
        self.inner.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

/// Held while a directory is locked; dropping it releases the lock.
pub trait LockGuard: Send + Sync + Debug {}

/// The filesystem. Paths are absolute or relative to the process's working directory in
/// production, and absolute in simulation.
pub trait Fs: Send + Sync + Debug {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>>;
    /// `None` when nothing exists at `path`.
    fn metadata(&self, path: &Path) -> io::Result<Option<Metadata>>;
    /// The directory's entries, sorted by name (so iteration order never depends on the host).
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from` (a file, or a directory onto a missing name).
    /// Durable only after [`Fs::sync_dir`] of the parent.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes the exclusive lock of directory `dir` without waiting. Fails with
    /// `io::ErrorKind::WouldBlock` when another holder has it (rule IO-3).
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn LockGuard>>;
    /// Bytes free for an unprivileged writer on the filesystem holding `path`.
    fn available_space(&self, path: &Path) -> io::Result<u64>;
}

/// A connected byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + Debug {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + Debug> Stream for T {}

/// A bound listener.
pub trait Listener: Send + Debug {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Stream>, SocketAddr)>>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// The network: TCP only.
pub trait Net: Send + Sync + Debug {
    /// Binds `addr` (`host:port`).
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>>;
    /// Connects to `addr` (`host:port`).
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Stream>>>;

    /// Connects to `addr` asking that no more than about `recv_buffer` bytes received and not
    /// yet read be held for this side (IO-14): a reader that paces itself then paces the
    /// sender too, instead of letting it fill a buffer the system grows on its own. The
    /// default ignores the hint: the simulated network bounds what it holds by itself.
    fn connect_paced<'a>(
        &'a self,
        addr: &'a str,
        recv_buffer: usize,
    ) -> BoxFuture<'a, io::Result<Box<dyn Stream>>> {
        let _ = recv_buffer;
        self.connect(addr)
    }
}

/// Where blocking work runs (IO-10): a commit's fsync under the store lock, a 1 MiB read of a
/// record file, a run of log entries. In production it runs off the async workers, so a slow
/// disk never stalls other requests and handshakes; in simulation it runs inline on turmoil's
/// one thread, so the seed decides everything.
pub trait Blocking: Send + Sync + Debug {
    /// Runs `job` where blocking is allowed; the future completes once it has run. A panic in
    /// `job` resumes in the caller.
    fn run(&self, job: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()>;

    /// How many of [`Blocking::run_all`]'s jobs run at once: the cores to use.
    fn width(&self) -> usize {
        1
    }

    /// Runs `jobs`, which may borrow from the caller, and returns once all have run: at once on
    /// up to [`Blocking::width`] threads in production (the first on the caller's), one after
    /// the other in simulation, so the seed still decides everything (IO-12). A panic in a job
    /// resumes in the caller.
    fn run_all<'a>(&self, jobs: Vec<Box<dyn FnOnce() + Send + 'a>>) {
        for job in jobs {
            job();
        }
    }
}

/// Runs `f` through `blocking` and returns what it returned.
pub async fn run_blocking<T: Send + 'static>(
    blocking: &dyn Blocking,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    blocking
        .run(Box::new(move || {
            let _ = tx.send(f());
        }))
        .await;
    match rx.await {
        Ok(value) => value,
        // Only a job that never ran (the runtime shutting down under it) leaves this empty.
        Err(_) => panic!("a blocking job was dropped before it ran: the runtime is shutting down"),
    }
}

/// Object storage (spec/objects.md): the store behind each bucket. Production opens S3 (or any
/// S3-compatible server) from the usual `AWS_*` environment variables with bounded timeouts and
/// retries (OBJ-1, OBJ-2); simulations hand out in-memory stores. Opening makes no request:
/// a bucket that does not exist, or credentials that are refused, show at the first one.
pub trait Objects: Send + Sync + Debug {
    fn open(&self, bucket: &str) -> object_store::Result<Arc<dyn object_store::ObjectStore>>;

    /// Aborts the multipart uploads begun under `prefix` in `bucket` and never completed nor
    /// aborted: what a run killed mid-upload left (OBJ-7). Returns how many. A store without
    /// such uploads (the simulations' in-memory one keeps none once its upload is dropped)
    /// answers 0.
    fn abort_orphans<'a>(
        &'a self,
        _bucket: &'a str,
        _prefix: &'a str,
    ) -> BoxFuture<'a, object_store::Result<usize>> {
        Box::pin(async { Ok(0) })
    }
}

/// The seams together, as every component that does I/O receives them.
#[derive(Clone, Debug)]
pub struct Env {
    pub fs: Arc<dyn Fs>,
    pub net: Arc<dyn Net>,
    pub clock: Arc<dyn Clock>,
    pub blocking: Arc<dyn Blocking>,
    /// The cryptography TLS runs on, and where its randomness comes from (IO-11): rustls's `ring`
    /// provider in production; in simulation the same algorithms with the randomness (and the key
    /// exchange, which draws it) taken from the seed.
    pub crypto: Arc<rustls::crypto::CryptoProvider>,
    /// Object storage targets (spec/objects.md).
    pub objects: Arc<dyn Objects>,
}

impl Env {
    /// The production environment: the real filesystem, TCP and system clock, tokio's blocking
    /// pool, and rustls's `ring` provider with the operating system's randomness.
    pub fn os() -> Env {
        Env {
            fs: Arc::new(os::OsFs),
            net: Arc::new(os::OsNet),
            clock: Arc::new(os::OsClock),
            blocking: Arc::new(os::OsBlocking),
            crypto: Arc::new(os::crypto()),
            objects: Arc::new(os::OsObjects),
        }
    }

    /// Runs `f` where blocking is allowed (IO-10) and returns what it returned.
    pub async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        run_blocking(&*self.blocking, f).await
    }
}

/// Writes `contents` to `path` durably and atomically: a temporary sibling is written and
/// synced, renamed over `path`, and the parent directory synced (rule IO-2).
pub fn write_atomic(fs: &dyn Fs, path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = sibling_with_suffix(path, ".tmp");
    let file = fs.open(&tmp, OpenMode::CreateTruncate)?;
    file.write_all_at(contents, 0)?;
    file.sync()?;
    drop(file);
    fs.rename(&tmp, path)?;
    fs.sync_dir(parent_of(path))
}

/// Reads a whole small file (metadata, pointer files). Never used for record files or logs.
pub fn read_small_file(fs: &dyn Fs, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = fs.open(path, OpenMode::Read)?;
    let len = file.len()?;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is {len} bytes, more than the {limit} expected",
                path.display()
            ),
        ));
    }
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// `path` with `suffix` appended to its file name.
pub fn sibling_with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The parent directory of `path`, or `.` for a bare name.
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
