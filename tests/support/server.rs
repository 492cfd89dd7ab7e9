//! Running the real `neo4j` binary in tests, and synchronous requests to its API (the kit's
//! HTTP client, `tests/kit/http.rs`).
//!
//! A server's stdout and stderr are captured, not inherited: a passing test prints none of the
//! server's log lines. They are printed when the test fails (the `ServerProcess` is dropped while
//! the thread panics, or the server exits before it is ready), when `NEO4J_TEST_LOGS=1` is set
//! (with `-- --nocapture` to see them), and [`ServerProcess::stderr`] returns them on demand.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use online_backup::io::os::OsNet;

use super::kit::http;
pub use super::kit::http::Answer;

/// A running server process; killed (SIGKILL) when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub http: String,
    /// The backup service's `host:port`, `None` when it is off.
    pub backup: Option<String>,
    /// `neo4j console --store <dir>`, to say whose output is printed.
    name: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    drains: Vec<JoinHandle<()>>,
}

/// Copies everything `from` yields into `into` until it closes, on a thread of its own.
fn drain(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

fn text(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

impl ServerProcess {
    /// Starts `neo4j console --store <store>` with `config` written to `<store>.properties`
    /// (none when `config` is None) and waits until it prints its HTTP address.
    pub fn start(store: &Path, config: Option<&str>) -> ServerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_neo4j"));
        cmd.arg("console").arg("--store").arg(store);
        if let Some(text) = config {
            let path = store.with_extension("properties");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(path);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start neo4j");
        let name = format!("neo4j console --store {}", store.display());
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr_drain = drain(child.stderr.take().unwrap(), stderr.clone());
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut http = None;
        let backup = loop {
            let mut line = String::new();
            if !matches!(out.read_line(&mut line), Ok(n) if n > 0) {
                let status = child.wait().unwrap();
                stderr_drain.join().unwrap();
                panic!(
                    "{name} exited ({status}) before it was ready; it printed:\n{}{}",
                    text(&stdout),
                    text(&stderr)
                );
            }
            stdout.lock().unwrap().extend_from_slice(line.as_bytes());
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix("neo4j: HTTP API on http://") {
                http = Some(rest.trim_end_matches("/db/data/").to_string());
            } else if let Some(rest) = line.strip_prefix("neo4j: backup service on ") {
                break Some(rest.to_string());
            } else if line.starts_with("neo4j: backup service off") {
                break None;
            }
        };
        let http = http.expect("the HTTP address is printed before the backup service's");
        // Keep draining stdout so the server never blocks on a full pipe.
        let stdout_drain = drain(out, stdout.clone());
        ServerProcess {
            child,
            http,
            backup,
            name,
            stdout,
            stderr,
            drains: vec![stdout_drain, stderr_drain],
        }
    }

    /// What the server wrote on stderr so far (its log lines). A thread copies it, so a line
    /// the server just wrote may not be here yet: [`ServerProcess::wait_for_stderr`] waits.
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// Waits (at most 30 s) until the server's stderr contains `wanted`; returns all of it.
    pub fn wait_for_stderr(&self, wanted: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let stderr = self.stderr();
            if stderr.contains(wanted) {
                return stderr;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} never wrote {wanted:?} on stderr; it wrote:\n{stderr}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        request(&self.http, "GET", path, b"")
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        request(&self.http, "POST", path, body.as_bytes())
    }

    /// What the server wrote on stdout so far (its address lines, `neo4j: stopped cleanly`).
    pub fn stdout(&self) -> String {
        text(&self.stdout)
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    }

    /// Waits at most `limit` for the process to exit; its exit code (`None` for a signal), or
    /// `Err(())` when it is still running then.
    pub fn wait_exit_within(&mut self, limit: Duration) -> Result<Option<i32>, ()> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The process is gone: its pipes are closed, so the drains finish.
                for d in self.drains.drain(..) {
                    d.join().unwrap();
                }
                return Ok(status.code());
            }
            if std::time::Instant::now() >= deadline {
                return Err(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lowers the process's limit of open file descriptors (soft and hard) to `n`, with
    /// `prlimit(1)` on the running process.
    pub fn limit_open_files(&self, n: u64) {
        let out = Command::new("prlimit")
            .arg(format!("--pid={}", self.child.id()))
            .arg(format!("--nofile={n}:{n}"))
            .output()
            .expect("prlimit(1) (util-linux) runs");
        assert!(
            out.status.success(),
            "prlimit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The process's peak resident memory so far (`VmHWM` of /proc/<pid>/status), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status of the server");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmHWM line in /proc/<pid>/status")
    }

    /// How many file descriptors the process has open (the entries of /proc/<pid>/fd).
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// SIGTERM, then waits for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        status.code()
    }

    /// SIGTERM; once the server exited 0, everything it wrote on stderr.
    pub fn stderr_when_stopped(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        for d in self.drains.drain(..) {
            d.join().unwrap();
        }
        assert_eq!(status.code(), Some(0), "{} did not stop cleanly", self.name);
        self.stderr()
    }

    /// SIGKILL: a crash of the process.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The process is gone, so its pipes are closed and the drains end.
        for d in self.drains.drain(..) {
            let _ = d.join();
        }
        if std::thread::panicking() || std::env::var_os("NEO4J_TEST_LOGS").is_some() {
            // eprintln! goes to the test's captured output, shown with its failure.
            eprintln!(
                "---- {} (pid {}) stdout ----\n{}---- its stderr ----\n{}---- end of {} ----",
                self.name,
                self.child.id(),
                text(&self.stdout),
                text(&self.stderr),
                self.name
            );
        }
    }
}

/// How long a test waits for the answer to one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request with `Connection: close`; returns the status and the JSON body (a JSON
/// string holding the raw body when it is not JSON).
pub fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let answer = request_raw(addr, method, path, body);
    let json = answer
        .json()
        .unwrap_or_else(|_| serde_json::Value::String(answer.text()));
    (answer.status, json)
}

/// One HTTP/1.1 request with `Connection: close`; returns the whole answer. The kit's client
/// (`http::request`) on a current-thread runtime of its own, so plain threads can call it.
pub fn request_raw(addr: &str, method: &str, path: &str, body: &[u8]) -> Answer {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for one request");
    runtime
        .block_on(http::request(
            &OsNet,
            addr,
            method,
            path,
            body,
            ANSWER_TIMEOUT,
        ))
        .unwrap_or_else(|e| panic!("{method} {path} on the HTTP API at {addr}: {e}"))
}

/// Asserts each of the server's log lines is the time, the level and a sentence: no Rust module
/// path, no `key=value` fields, no `Debug` forms (SRV-7, CLI-5).
pub fn assert_log_lines_are_sentences(lines: &[String]) {
    for line in lines {
        let mut words = line.split_whitespace();
        let (time, level) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        assert!(time.ends_with('Z'), "SRV-7: time first: {line}");
        assert!(
            ["INFO", "WARN", "ERROR"].contains(&level),
            "SRV-7: level: {line}"
        );
        let message = words.collect::<Vec<_>>().join(" ");
        assert!(!message.contains("::"), "SRV-7: no module path: {line}");
        assert!(
            !message
                .split_whitespace()
                .any(|w| w
                    .split_once('=')
                    .is_some_and(|(k, _)| !k.is_empty()
                        && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))),
            "SRV-7: no key=value fields: {line}"
        );
        assert!(
            !message.contains(" { ") && !message.contains("Some("),
            "SRV-7: no Debug forms: {line}"
        );
    }
}
