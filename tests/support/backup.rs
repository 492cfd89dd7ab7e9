//! Running `neo4j-backup` and `neo4j-admin` in tests, looking at backup directories byte for
//! byte, and talking or relaying the backup protocol over real TCP (a raw client, a silent
//! server, a frame-rewriting proxy).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::server::{request, ServerProcess};

/// A config on ephemeral ports, so tests can run in parallel.
pub const EPHEMERAL: &str = "http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:0\n";

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn of(o: std::process::Output) -> Out {
        Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panics with everything printed unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Out {
        assert_eq!(self.code, Some(code), "{self:#?}");
        self
    }

    /// The final summary line of a finished backup (BK-9).
    pub fn summary(&self) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with("neo4j-backup: done: "))
            .unwrap_or_else(|| panic!("no summary line in {self:#?}"))
    }

    /// Asserts the failure is told in exactly one line on stderr, without a panic or a stack
    /// trace (BK-9, BK-8), and returns that line.
    pub fn one_error_line(&self) -> &str {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:#?}");
        for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(!self.stderr.contains(bad), "{self:#?}");
        }
        lines[0]
    }
}

/// The `neo4j-backup` binary with `args`.
pub fn backup_cmd<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_neo4j-backup"));
    cmd.args(args);
    cmd
}

/// Runs `neo4j-backup` to the end.
pub fn backup<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Out {
    Out::of(backup_cmd(args).output().expect("run neo4j-backup"))
}

/// `neo4j-backup -from <addr> -to <dir> <more>`.
pub fn backup_from(addr: &str, dir: &Path, more: &[&str]) -> Out {
    let mut args: Vec<std::ffi::OsString> = vec!["-from".into(), addr.into(), "-to".into()];
    args.push(dir.into());
    args.extend(more.iter().map(Into::into));
    backup(&args)
}

/// Spawns `neo4j-backup -from <addr> -to <dir> <more>` with stdout and stderr piped.
pub fn spawn_backup(addr: &str, dir: &Path, more: &[&str]) -> Child {
    backup_cmd(&["-from", addr, "-to"])
        .arg(dir)
        .args(more)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn neo4j-backup")
}

/// Waits for a spawned command (with piped output) to finish.
pub fn finish(child: Child) -> Out {
    Out::of(child.wait_with_output().expect("wait"))
}

/// Runs `neo4j-admin` to the end.
pub fn admin<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Out {
    Out::of(
        Command::new(env!("CARGO_BIN_EXE_neo4j-admin"))
            .args(args)
            .output()
            .expect("run neo4j-admin"),
    )
}

/// `neo4j-admin check --json <dir>`, which must pass (BK-23).
pub fn check_json(dir: &Path) -> Value {
    let out = admin(&["check".as_ref(), "--json".as_ref(), dir.as_os_str()]).expect(0);
    let v: Value = serde_json::from_str(&out.stdout).expect("check --json prints JSON");
    assert_eq!(v["consistent"], true, "{v}");
    v
}

/// `neo4j-admin generate --store <dir> --nodes <n> <more>`.
pub fn generate(dir: &Path, nodes: u64, more: &[&str]) {
    let mut args: Vec<std::ffi::OsString> = vec!["generate".into(), "--store".into()];
    args.push(dir.into());
    args.extend(["--nodes".into(), nodes.to_string().into()]);
    args.extend(more.iter().map(Into::into));
    admin(&args).expect(0);
}

/// [`EPHEMERAL`] with logs that rotate at 16 KiB and keep one file: a few padded writes
/// ([`prune_logs_past`]) prune the logs a backup would need (BK-11).
pub fn pruning_config() -> String {
    format!("{EPHEMERAL}logical_log_rotation_threshold=16k\nkeep_logical_logs=1 files\n")
}

/// Commits padded nodes until the server's logs no longer hold tx `tx + 1` (its oldest logged
/// tx is past it); fails if a thousand writes did not get there.
pub fn prune_logs_past(server: &ServerProcess, tx: u64) {
    let mut i = 0;
    while status(server)["oldest_logged_tx"].as_u64().unwrap() <= tx + 1 {
        write_node(&server.http, i, 1000);
        i += 1;
        assert!(i < 1000, "the logs were never pruned");
    }
}

/// The server's `GET /db/data/`.
pub fn status(server: &ServerProcess) -> Value {
    let (code, v) = server.get("/db/data/");
    assert_eq!(code, 200, "{v}");
    v
}

/// Asserts a backup directory (checked) holds exactly what the server reports.
pub fn assert_same_as_server(dir: &Path, server: &ServerProcess) -> Value {
    let report = check_json(dir);
    let s = status(server);
    for key in [
        "store_id",
        "format_version",
        "last_committed_tx",
        "nodes",
        "relationships",
        "digest",
    ] {
        assert_eq!(report[key], s[key], "{key}: backup {report} server {s}");
    }
    report
}

/// Commits one transaction creating a node with a padding property; returns its tx id.
pub fn write_node(http: &str, i: u64, pad: usize) -> u64 {
    let body = format!(
        r#"{{"ops": [{{"create_node": {{"labels": ["W"], "props": {{"i": {i}, "pad": "{}"}}}}}}]}}"#,
        "p".repeat(pad)
    );
    let (code, out) = request(http, "POST", "/db/data/transaction", body.as_bytes());
    assert_eq!(code, 200, "{out}");
    out["tx_id"].as_u64().unwrap()
}

/// Commits `n` small transactions; returns the last tx id.
pub fn write_nodes(server: &ServerProcess, n: u64) -> u64 {
    let mut last = 0;
    for i in 0..n {
        last = write_node(&server.http, i, 16);
    }
    last
}

/// One entry of a directory snapshot.
#[derive(Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File(Vec<u8>),
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Dir => f.write_str("dir"),
            Entry::File(b) => write!(f, "file({} bytes, crc {:08x})", b.len(), crc32c::crc32c(b)),
        }
    }
}

/// Every name under `path` (recursively, `path` itself as "") with its bytes; empty when the
/// path does not exist.
pub fn snapshot(path: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, rel: PathBuf, out: &mut BTreeMap<PathBuf, Entry>) {
        let path = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.insert(rel.clone(), Entry::Dir);
            for e in std::fs::read_dir(&path).unwrap() {
                walk(root, rel.join(e.unwrap().file_name()), out);
            }
        } else {
            out.insert(rel, Entry::File(std::fs::read(&path).unwrap()));
        }
    }
    let mut out = BTreeMap::new();
    if std::fs::symlink_metadata(path).is_ok() {
        walk(path, PathBuf::new(), &mut out);
    }
    out
}

/// The names directly in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The generation `dir/CURRENT` names.
pub fn current(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("CURRENT")).unwrap();
    text.strip_suffix('\n').unwrap().to_string()
}

/// Copies a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Polls `cond` every few milliseconds until it holds; panics after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server that accepts connections and never sends anything.
pub struct SilentServer {
    pub addr: String,
    pub accepted: Arc<AtomicUsize>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming() {
                let Ok(s) = s else { break };
                held.push(s);
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        SilentServer { addr, accepted }
    }
}

// --- The wire: frames of PR-1 (length u32, CRC32C u32, body), little-endian. ---

/// A frame around `body`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads one frame's body, checking its CRC; `None` when the peer closed (or reset) the
/// connection before a frame began.
pub fn read_frame(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = [0u8; 8];
    if let Err(e) = s.read_exact(&mut head) {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
        return None;
    }
    let len = u32::from_le_bytes(head[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    assert_eq!(crc32c::crc32c(&body), crc, "frame checksum");
    Some(body)
}

/// Message kinds of PR-2.
pub mod kind {
    pub const HELLO: u8 = 1;
    pub const WELCOME: u8 = 2;
    pub const REQUEST_FULL: u8 = 3;
    pub const REQUEST_INCREMENTAL: u8 = 4;
    pub const FULL_START: u8 = 5;
    pub const FILE_START: u8 = 6;
    pub const FILE_CHUNK: u8 = 7;
    pub const FILE_END: u8 = 8;
    pub const TX: u8 = 9;
    pub const END: u8 = 10;
    pub const REFUSED: u8 = 11;
}

/// Reads little-endian fields off a body.
pub struct Fields<'a>(pub &'a [u8]);

impl Fields<'_> {
    pub fn u8(&mut self) -> u8 {
        let v = self.0[0];
        self.0 = &self.0[1..];
        v
    }
    pub fn u16(&mut self) -> u16 {
        let v = u16::from_le_bytes(self.0[..2].try_into().unwrap());
        self.0 = &self.0[2..];
        v
    }
    pub fn u32(&mut self) -> u32 {
        let v = u32::from_le_bytes(self.0[..4].try_into().unwrap());
        self.0 = &self.0[4..];
        v
    }
    pub fn u64(&mut self) -> u64 {
        let v = u64::from_le_bytes(self.0[..8].try_into().unwrap());
        self.0 = &self.0[8..];
        v
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let v = self.0[..n].to_vec();
        self.0 = &self.0[n..];
        v
    }
    /// A store id as `GET /db/data/` prints it.
    pub fn store_id(&mut self) -> String {
        let created = self.u64();
        let random = self.u64();
        format!("{created:012x}-{random:016x}")
    }
    /// A digest as hex.
    pub fn digest(&mut self) -> String {
        hex(&self.bytes(32))
    }
    pub fn string(&mut self) -> String {
        let n = self.u16() as usize;
        String::from_utf8(self.bytes(n)).unwrap()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The body of a hello (PR-3).
pub fn hello(version: u32) -> Vec<u8> {
    let mut b = vec![kind::HELLO];
    b.extend_from_slice(b"NEOBAKUP");
    b.extend_from_slice(&version.to_le_bytes());
    b
}

/// The body of an incremental request (PR-2): store id as printed, format, N, digest at N.
pub fn incremental_request(store_id: &str, format: u32, last_tx: u64, digest: &str) -> Vec<u8> {
    let (a, b) = store_id.split_once('-').unwrap();
    let mut out = vec![kind::REQUEST_INCREMENTAL];
    out.extend_from_slice(&u64::from_str_radix(a, 16).unwrap().to_le_bytes());
    out.extend_from_slice(&u64::from_str_radix(b, 16).unwrap().to_le_bytes());
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&last_tx.to_le_bytes());
    out.extend_from_slice(&unhex(digest));
    out
}

/// A raw protocol client.
pub struct Wire {
    pub s: TcpStream,
}

impl Wire {
    pub fn connect(addr: &str) -> Wire {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Wire { s }
    }

    pub fn send(&mut self, body: &[u8]) {
        self.s.write_all(&frame(body)).unwrap();
    }

    pub fn recv(&mut self) -> Option<Vec<u8>> {
        read_frame(&mut self.s)
    }

    /// Reads until the server closes the connection; true when it sent nothing more.
    pub fn closed_without_answer(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.s.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// What a proxy does with one frame from the server.
pub enum Action {
    /// Forward it (the frame's CRC is recomputed over the possibly edited body).
    Pass,
    /// Forward it with a wrong frame CRC.
    BadCrc,
    /// Forward nothing more, keeping both connections open until the client leaves.
    Stall,
    /// Close both connections at once.
    Cut,
}

type Rewrite = Box<dyn FnMut(&mut Vec<u8>) -> Action + Send>;

/// A TCP proxy in front of a backup service that passes the client's bytes as they are and
/// hands every frame from the server to `rewrite`.
pub struct Proxy {
    pub addr: String,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(
        upstream: &str,
        rewrite: impl FnMut(&mut Vec<u8>) -> Action + Send + 'static,
    ) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        let rewrite: Arc<Mutex<Rewrite>> = Arc::new(Mutex::new(Box::new(rewrite)));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { break };
                count.fetch_add(1, Ordering::SeqCst);
                let (upstream, rewrite) = (upstream.clone(), rewrite.clone());
                std::thread::spawn(move || relay(client, &upstream, &rewrite));
            }
        });
        Proxy {
            addr,
            connections,
            stop,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn relay(client: TcpStream, upstream: &str, rewrite: &Mutex<Rewrite>) {
    let server = TcpStream::connect(upstream).unwrap();
    let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up: JoinHandle<()> = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_in, &mut s_out);
        let _ = s_out.shutdown(Shutdown::Write);
    });
    let (mut s_in, mut c_out) = (server.try_clone().unwrap(), client.try_clone().unwrap());
    loop {
        let mut head = [0u8; 8];
        if s_in.read_exact(&mut head).is_err() {
            let _ = c_out.shutdown(Shutdown::Both);
            break;
        }
        let len = u32::from_le_bytes(head[0..4].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len];
        if s_in.read_exact(&mut body).is_err() {
            let _ = c_out.shutdown(Shutdown::Both);
            break;
        }
        let action = (rewrite.lock().unwrap())(&mut body);
        let mut out = frame(&body);
        match action {
            Action::Pass => {}
            Action::BadCrc => out[4] ^= 0xff,
            Action::Stall => {
                let _ = up.join();
                return;
            }
            Action::Cut => {
                let _ = c_out.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                break;
            }
        }
        if c_out.write_all(&out).is_err() {
            let _ = server.shutdown(Shutdown::Both);
            break;
        }
    }
    let _ = up.join();
}

/// Runs a command to the end and returns its output and its peak resident memory in KiB as
/// last seen in `/proc/<pid>/status` (VmHWM, sampled every millisecond while it runs; the
/// high-water mark only grows, so this misses only a peak in its last millisecond). `wait4`'s
/// `ru_maxrss` would not do: a child spawned with vfork inherits the parent's high-water mark.
pub fn run_measured(mut cmd: Command) -> (Out, u64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        so.read_to_end(&mut v).unwrap();
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        se.read_to_end(&mut v).unwrap();
        v
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(peak > 0, "no sample of the child's memory");
    let out = Out {
        code: status.code(),
        stdout: String::from_utf8_lossy(&t1.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t2.join().unwrap()).into_owned(),
    };
    (out, peak)
}

/// Runs `cmd` with stdout on a pseudo-terminal (stderr piped away), and returns its exit code
/// and everything it drew on the terminal.
pub fn on_a_terminal(mut cmd: Command) -> (Option<i32>, String) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the two integers it is given.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = cmd
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn on a terminal");
    // The command holds our copy of the slave until it is dropped; the master reads EOF (EIO)
    // only once the child holds the last one.
    drop(cmd);
    let mut reader = std::fs::File::from(master);
    let drawn = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // Reading the master fails with EIO once the child, the last holder of the slave, exits.
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let code = child.wait().unwrap().code();
    (code, drawn.join().unwrap())
}
