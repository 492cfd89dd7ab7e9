//! The backup benchmark (not a test): the performance targets of issue 12, each measured as a
//! ratio against a baseline taken in the same run on the same machine, so a noisy shared machine
//! moves both sides together. Both sides of a ratio are measured in pairs (or rounds), their
//! order alternated from one pair to the next, with `sync` (untimed) before each timed run; each
//! ratio is the median of the pairs' ratios, printed with the lowest and the highest.
//!
//! `cargo bench --bench backup` (release build). Environment:
//! - `BENCH_NODES` (default 1,870,000: a generated store of about 1 GiB);
//! - `BENCH_ROUNDS` (default 5, at least 5): pairs of backup measures;
//! - `BENCH_TXS` (default 10,000): small transactions before each incremental;
//! - `BENCH_LOAD_SECS` (default 3, may be fractional): how long each commit-throughput
//!   measure runs;
//! - `BENCH_LOAD_ROUNDS` (default 5, at least 5): rounds of commit-throughput measures;
//! - `BENCH_TLS_ROUNDS` (default 5, at least 5): pairs of plain and TLS full backups;
//! - `BENCH_LARGE=1` (default off): also generate a store `BENCH_LARGE_NODES` nodes large
//!   (default 4 x `BENCH_NODES`, about 4 GiB; minutes to generate, and about 10 GiB of disk at
//!   once) for rows 7 and 8;
//! - `BENCH_DIR` (default the system temp dir): where the stores go. Use a real disk, not tmpfs:
//!   the targets compare against `cp -r` plus `sync`.
//!
//! Rows, each printed with its target in a final table in README.md's format:
//! 1. full backup (`-verify false`; the tool fsyncs what it writes) over loopback vs `cp -r` +
//!    `sync` of the store;
//! 2. the verification (`-verify true` minus `-verify false`, in the same round) vs the
//!    `-verify false` backup; rows 1 and 2 come from rounds of the three runs in rotated order;
//! 3. incremental (default flags) after `BENCH_TXS` small transactions vs a full backup
//!    (`-verify false`) in the same round, taken before the transactions in even rounds and
//!    after the incrementals in odd ones;
//! 4. incremental with nothing new vs that full backup;
//! 5. commit throughput of 32 writers vs 1 (and 8 printed): each writer a thread on its own
//!    keep-alive HTTP/1.1 connection committing one-node transactions for `BENCH_LOAD_SECS`,
//!    in the order 1, 8, 32 in even rounds and 32, 8, 1 in odd ones;
//! 6. commit throughput of 8 writers while full backups (`-verify false`, each into a fresh
//!    directory) run back to back vs 8 writers alone, and, no target, while `cp -r` + `sync` of
//!    the store runs back to back vs alone (what sharing the disk and the cores costs commits
//!    whoever copies);
//! 7. peak memory (max RSS) of `neo4j-backup` over every run on each store (with
//!    `BENCH_LARGE=1`, on both stores);
//! 8. with `BENCH_LARGE=1`: incremental after `BENCH_TXS` transactions on the large store vs
//!    on the first one, alternated;
//! 9. TLS's cost, no target: a full backup (`-verify false`) over TLS with client certificates vs
//!    the same without TLS, from two servers on stores of the same size (the second serves a
//!    backup of the first).
//!
//! 10. `neo4j-admin check --quick` (every block of the backup against its manifest) vs
//!     `neo4j-admin check` (the full consistency check) of the backup the incrementals of rows 3
//!     and 4 kept, alternated.
//!
//! 11. a full backup (`-verify false`) into an S3-compatible server (moto on loopback, as the
//!     tests start it: `tests/support/moto.rs`) vs into a local directory, alternated; each S3
//!     run replaces the last one's generation (`--type full`, one generation kept).
//!
//! Rows 7 and 8 run before the commit load (rows 5 and 6), which grows the first store and its
//! logs, and so does the TLS row.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

#[path = "../tests/kit/certs.rs"]
#[allow(dead_code)]
mod certs;
#[path = "../tests/support/moto.rs"]
#[allow(dead_code)]
mod moto;
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().expect("run a command");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

struct Server {
    child: Child,
    http: String,
    backup: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn start_server(store: &Path, config: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_neo4j"))
        .arg("console")
        .arg("--store")
        .arg(store)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start neo4j");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut http, mut backup) = (None, None);
    while backup.is_none() {
        let line = lines.next().expect("neo4j exited").unwrap();
        if let Some(rest) = line.strip_prefix("neo4j: HTTP API on http://") {
            http = Some(rest.trim_end_matches("/db/data/").to_string());
        } else if let Some(rest) = line.strip_prefix("neo4j: backup service on ") {
            backup = Some(rest.to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        http: http.unwrap(),
        backup: backup.unwrap(),
    }
}

/// Runs `neo4j-backup` and returns its wall time and its peak RSS in KiB.
fn backup(addr: &str, to: &Path, verify: &str) -> (Duration, u64) {
    backup_with(addr, to, verify, &[])
}

/// [`backup`] with more flags.
fn backup_with(addr: &str, to: &Path, verify: &str, more: &[String]) -> (Duration, u64) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_neo4j-backup"))
        .args(["-from", addr, "-to"])
        .arg(to)
        .args(["-verify", verify])
        .args(more)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start neo4j-backup");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let (status, max_rss_kib) = wait_with_rusage(&mut child);
    let took = start.elapsed();
    assert!(status == 0, "neo4j-backup failed ({status}): {out}{err}");
    (took, max_rss_kib)
}

/// Waits for `child` and reads its own peak RSS (wait4's rusage), in KiB.
fn wait_with_rusage(child: &mut Child) -> (i32, u64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child's; status and usage point at live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss as u64)
}

/// `sync(2)`: flushes every dirty page, so a timed run does not pay for the previous one's
/// writes. Called, untimed, before each timed run.
fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// The median of `v` (the mean of the two middle values for an even count) and its lowest and
/// highest value.
#[derive(Clone, Copy, Debug)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(v: &[f64]) -> Spread {
    assert!(!v.is_empty(), "no samples");
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Spread {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

fn secs(v: &[Duration]) -> Vec<f64> {
    v.iter().map(Duration::as_secs_f64).collect()
}

/// Pairwise ratios `a[i] / b[i]`.
fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(a, b)| a / b).collect()
}

/// A number printed with about three significant digits.
fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 0.1 {
        format!("{x:.2}")
    } else if a >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.4}")
    }
}

fn fmt_secs(s: f64) -> String {
    format!("{} s", num(s))
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A target of the issue's table: a bound on a ratio.
#[derive(Clone, Copy)]
enum Target {
    AtMost(f64, &'static str),
    AtLeast(f64, &'static str),
    /// Checked where the row is made.
    Other(&'static str),
    None,
}

impl Target {
    fn met(self, x: f64) -> bool {
        match self {
            Target::AtMost(t, _) => x <= t,
            Target::AtLeast(t, _) => x >= t,
            Target::Other(_) | Target::None => true,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Target::AtMost(_, s) | Target::AtLeast(_, s) | Target::Other(s) => s,
            Target::None => "(none)",
        }
    }
}

/// One row of the summary table, in README.md's format; a missed target's ratio is in bold.
struct Row {
    measure: String,
    time: String,
    ratio: String,
    target: &'static str,
}

impl Row {
    fn ratio(measure: String, time: String, r: Spread, unit: &str, target: Target) -> Row {
        let value = format!("{}{unit}", num(r.median));
        let value = if target.met(r.median) {
            value
        } else {
            format!("**{value}**")
        };
        Row {
            measure,
            time,
            ratio: format!("{value} ({}..{})", num(r.min), num(r.max)),
            target: target.text(),
        }
    }

    fn not_measured(measure: String, why: &str, target: Target) -> Row {
        Row {
            measure,
            time: format!("not measured ({why})"),
            ratio: String::new(),
            target: target.text(),
        }
    }
}

/// One keep-alive HTTP/1.1 connection to the server's API.
struct Http {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Http {
    fn connect(addr: &str) -> Http {
        let writer = TcpStream::connect(addr).expect("connect to the HTTP API");
        writer.set_nodelay(true).unwrap();
        Http {
            reader: BufReader::new(writer.try_clone().unwrap()),
            writer,
            request: Vec::new(),
            line: String::new(),
            body: Vec::new(),
        }
    }

    /// Commits one transaction creating a node with property `i`; panics unless it answers 200.
    fn create_node(&mut self, i: u64) {
        let body =
            format!(r#"{{"ops":[{{"create_node":{{"labels":["W"],"props":{{"i":{i}}}}}}}]}}"#);
        self.request.clear();
        write!(
            self.request,
            "POST /db/data/transaction HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        self.writer
            .write_all(&self.request)
            .expect("send a request");
        self.line.clear();
        self.reader
            .read_line(&mut self.line)
            .expect("read a status line");
        let ok = self.line.starts_with("HTTP/1.1 200 ");
        let status = std::mem::take(&mut self.line);
        let (mut length, mut close) = (None, false);
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_line(&mut self.line)
                .expect("read a header");
            assert!(n > 0, "the server closed the connection mid-answer");
            if self.line == "\r\n" {
                break;
            }
            if let Some((name, value)) = self.line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse::<usize>().expect("a Content-Length"));
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        let length = length.unwrap_or_else(|| panic!("an answer without Content-Length: {status}"));
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body).expect("read a body");
        assert!(
            ok,
            "{}: {}",
            status.trim_end(),
            String::from_utf8_lossy(&self.body)
        );
        assert!(!close, "the server closed a keep-alive connection");
        self.line = status;
    }
}

/// How long writers of [`commit_load`] run.
#[derive(Clone, Copy)]
enum Until {
    /// For this long; the transactions in flight at the end are finished and counted.
    Elapsed(Duration),
    /// Until this many transactions are committed, by all writers together.
    Count(u64),
}

/// `writers` threads, each on its own keep-alive connection, commit one-node transactions until
/// `until`. Returns the transactions committed and the time from the writers' start to the last
/// one's end.
fn commit_load(addr: &str, writers: usize, until: Until) -> (u64, Duration) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Barrier;
    let stop = AtomicBool::new(false);
    let next = AtomicU64::new(0);
    let barrier = Barrier::new(writers + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                s.spawn(|| {
                    let mut http = Http::connect(addr);
                    barrier.wait();
                    let mut done = 0u64;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        match until {
                            Until::Elapsed(_) if stop.load(Ordering::Relaxed) => break,
                            Until::Count(total) if i >= total => break,
                            _ => {}
                        }
                        http.create_node(i);
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        if let Until::Elapsed(d) = until {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        }
        let total = handles.into_iter().map(|h| h.join().unwrap()).sum();
        (total, start.elapsed())
    })
}

/// Commit throughput, tx/s, of `writers` writers over `d`.
fn throughput(addr: &str, writers: usize, d: Duration) -> f64 {
    sync();
    let (txs, took) = commit_load(addr, writers, Until::Elapsed(d));
    txs as f64 / took.as_secs_f64()
}

/// Commits `txs` small transactions over 8 connections (untimed: the load before an
/// incremental).
fn commit_txs(addr: &str, txs: u64) {
    commit_load(addr, 8, Until::Count(txs));
}

fn generate(store: &Path, nodes: u64) -> u64 {
    println!("generating a store of {nodes} nodes in {}", store.display());
    let took = run(Command::new(env!("CARGO_BIN_EXE_neo4j-admin")).args([
        "generate",
        "--store",
        store.to_str().unwrap(),
        "--nodes",
        &nodes.to_string(),
    ]));
    let bytes = dir_bytes(store);
    println!("store: {} in {:.1} s", gib(bytes), took.as_secs_f64());
    bytes
}

/// Times one full backup of `server` into a fresh directory (then removed); returns its time
/// and peak RSS.
fn timed_full(server: &Server, to: &Path, verify: &str) -> (Duration, u64) {
    sync();
    let r = backup(&server.backup, to, verify);
    std::fs::remove_dir_all(to).unwrap();
    r
}

/// Commits `txs` transactions to `server`, then times an incremental (default flags) into `to`.
fn timed_incremental(server: &Server, to: &Path, txs: u64) -> (Duration, u64) {
    commit_txs(&server.http, txs);
    sync();
    backup(&server.backup, to, "true")
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. a filter) is ignored.
    let nodes = env_u64("BENCH_NODES", 1_870_000);
    let rounds = env_u64("BENCH_ROUNDS", 5).max(5) as usize;
    let txs = env_u64("BENCH_TXS", 10_000);
    let load_rounds = env_u64("BENCH_LOAD_ROUNDS", 5).max(5) as usize;
    let load_secs = std::env::var("BENCH_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(3.0);
    let load = Duration::from_secs_f64(load_secs);
    let large = std::env::var("BENCH_LARGE").is_ok_and(|v| v == "1");
    let large_nodes = env_u64("BENCH_LARGE_NODES", nodes * 4);
    let base = std::env::var("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let work = tempfile::Builder::new()
        .prefix("backup-bench")
        .tempdir_in(&base)
        .expect("a scratch directory");
    let dir = work.path();
    let store = dir.join("store");
    let store_bytes = generate(&store, nodes);
    let config = dir.join("neo4j.properties");
    std::fs::write(
        &config,
        "http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:0\nkeep_logical_logs=true\n",
    )
    .unwrap();
    let server = start_server(&store, &config);
    // The peak RSS of every neo4j-backup run on this store (full, verified, incremental).
    let mut rss = 0;

    // 1, 2. cp -r + sync, full backup -verify false, full backup -verify true: one of each per
    // round, their order rotated each round so drift hits all three.
    let (mut copies, mut fulls, mut verifieds) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (mut t_copy, mut t_full, mut t_verified) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for step in 0..3 {
            match (round + step) % 3 {
                0 => {
                    let copy = dir.join(format!("copy-{round}"));
                    sync();
                    t_copy = run(Command::new("sh").arg("-c").arg(format!(
                        "cp -r '{}' '{}' && sync",
                        store.display(),
                        copy.display()
                    )));
                    std::fs::remove_dir_all(&copy).unwrap();
                }
                1 => {
                    let r;
                    (t_full, r) = timed_full(&server, &dir.join(format!("full-{round}")), "false");
                    rss = rss.max(r);
                }
                _ => {
                    let r;
                    (t_verified, r) =
                        timed_full(&server, &dir.join(format!("verified-{round}")), "true");
                    rss = rss.max(r);
                }
            }
        }
        println!(
            "round {round}: cp -r + sync {:.2} s, full backup -verify false {:.2} s, -verify true {:.2} s",
            t_copy.as_secs_f64(),
            t_full.as_secs_f64(),
            t_verified.as_secs_f64()
        );
        copies.push(t_copy);
        fulls.push(t_full);
        verifieds.push(t_verified);
    }
    let (copies, fulls, verifieds) = (secs(&copies), secs(&fulls), secs(&verifieds));
    let extras: Vec<f64> = verifieds.iter().zip(&fulls).map(|(v, f)| v - f).collect();

    // 3, 4. BENCH_TXS transactions then an incremental, an incremental with nothing new, and a
    // full backup (-verify false) to compare both with: the full backup first in even rounds,
    // last in odd ones.
    let target = dir.join("backup");
    sync();
    let (_, r) = backup(&server.backup, &target, "false");
    rss = rss.max(r);
    let (mut incr_fulls, mut incrs, mut nones) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let full_at = dir.join(format!("incr-full-{round}"));
        let mut t_full = Duration::ZERO;
        if round % 2 == 0 {
            let r;
            (t_full, r) = timed_full(&server, &full_at, "false");
            rss = rss.max(r);
        }
        let (t_incr, r) = timed_incremental(&server, &target, txs);
        rss = rss.max(r);
        sync();
        let (t_none, r) = backup(&server.backup, &target, "true");
        rss = rss.max(r);
        if round % 2 == 1 {
            let r;
            (t_full, r) = timed_full(&server, &full_at, "false");
            rss = rss.max(r);
        }
        println!(
            "round {round}: incremental after {txs} txs {:.3} s, nothing new {:.3} s, full backup {:.2} s",
            t_incr.as_secs_f64(),
            t_none.as_secs_f64(),
            t_full.as_secs_f64()
        );
        incr_fulls.push(t_full);
        incrs.push(t_incr);
        nones.push(t_none);
    }
    let (incr_fulls, incrs, nones) = (secs(&incr_fulls), secs(&incrs), secs(&nones));

    // 11. A full backup into moto's S3 vs into a local directory, alternated.
    let objects = moto::Moto::start();
    objects.create_bucket("bench");
    let s3_env = objects.env();
    let (mut s3s, mut locals) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut t = [Duration::ZERO; 2];
        for step in 0..2 {
            let to_s3 = (round + step) % 2 == 0;
            if to_s3 {
                sync();
                let start = Instant::now();
                let out = Command::new(env!("CARGO_BIN_EXE_neo4j-backup"))
                    .args(["-from", &server.backup, "-to", "s3://bench/store"])
                    .args(["-verify", "false", "--type", "full"])
                    .envs(s3_env.iter().map(|(k, v)| (*k, v.as_str())))
                    .output()
                    .expect("start neo4j-backup");
                t[0] = start.elapsed();
                assert!(out.status.success(), "{out:?}");
            } else {
                let r;
                (t[1], r) = timed_full(&server, &dir.join(format!("local-{round}")), "false");
                rss = rss.max(r);
            }
        }
        println!(
            "round {round}: full backup to S3 (moto) {:.2} s, to a directory {:.2} s",
            t[0].as_secs_f64(),
            t[1].as_secs_f64()
        );
        s3s.push(t[0]);
        locals.push(t[1]);
    }
    drop(objects);
    let (s3s, locals) = (secs(&s3s), secs(&locals));

    // 10. check --quick vs check of that backup, alternated.
    let (mut quicks, mut checks) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut t = [Duration::ZERO; 2];
        for step in 0..2 {
            let quick = (round + step) % 2 == 0;
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_neo4j-admin"));
            cmd.arg("check");
            if quick {
                cmd.arg("--quick");
            }
            cmd.arg(&target);
            sync();
            t[usize::from(!quick)] = run(&mut cmd);
        }
        println!(
            "round {round}: check --quick {:.2} s, check {:.2} s",
            t[0].as_secs_f64(),
            t[1].as_secs_f64()
        );
        quicks.push(t[0]);
        checks.push(t[1]);
    }
    let (quicks, checks) = (secs(&quicks), secs(&checks));

    // 7, 8. A store BENCH_LARGE_NODES large (4x by default): peak RSS of neo4j-backup on it, and
    // incrementals after BENCH_TXS transactions on it against the same on the first store,
    // alternated. Before the load below grows the first store and its logs.
    let mut large_result = None;
    if large {
        let large_store = dir.join("large-store");
        let large_bytes = generate(&large_store, large_nodes);
        let large_server = start_server(&large_store, &config);
        let mut large_rss = 0;
        let (t, r) = timed_full(&large_server, &dir.join("large-full"), "false");
        large_rss = large_rss.max(r);
        println!(
            "large store: full backup -verify false {:.2} s",
            t.as_secs_f64()
        );
        let (small_target, large_target) = (&target, dir.join("large-incr"));
        sync();
        let (t, r) = backup(&large_server.backup, &large_target, "true");
        large_rss = large_rss.max(r);
        println!(
            "large store: full backup -verify true {:.2} s",
            t.as_secs_f64()
        );
        let (mut small_incrs, mut large_incrs) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let (mut t_small, mut t_large) = (Duration::ZERO, Duration::ZERO);
            for step in 0..2 {
                let r;
                if (round + step) % 2 == 0 {
                    (t_small, r) = timed_incremental(&server, small_target, txs);
                    rss = rss.max(r);
                } else {
                    (t_large, r) = timed_incremental(&large_server, &large_target, txs);
                    large_rss = large_rss.max(r);
                }
            }
            println!(
                "round {round}: incremental after {txs} txs: {} store {:.3} s, {} store {:.3} s",
                gib(store_bytes),
                t_small.as_secs_f64(),
                gib(large_bytes),
                t_large.as_secs_f64()
            );
            small_incrs.push(t_small);
            large_incrs.push(t_large);
        }
        drop(large_server);
        std::fs::remove_dir_all(&large_store).unwrap();
        std::fs::remove_dir_all(&large_target).unwrap();
        large_result = Some((
            large_bytes,
            large_rss,
            secs(&small_incrs),
            secs(&large_incrs),
        ));
    }

    // TLS's cost: a second server, with TLS, on the backup just taken (a store of the same
    // size), and full backups from both, alternated. Before the load below grows the first
    // server's store and logs.
    let tls_rounds = env_u64("BENCH_TLS_ROUNDS", 5).max(5) as usize;
    let (tls_args, tls_config) = tls_files(dir);
    let tls_store = dir.join("tls-store");
    sync();
    backup(&server.backup, &tls_store, "false");
    let tls_server = start_server(&tls_store, &tls_config);
    let (mut plains, mut tlss) = (Vec::new(), Vec::new());
    for round in 0..tls_rounds {
        let (mut t_plain, mut t_tls) = (Duration::ZERO, Duration::ZERO);
        for step in 0..2 {
            if (round + step) % 2 == 0 {
                (t_plain, _) = timed_full(&server, &dir.join(format!("plain-{round}")), "false");
            } else {
                let over_tls = dir.join(format!("tls-{round}"));
                sync();
                (t_tls, _) = backup_with(&tls_server.backup, &over_tls, "false", &tls_args);
                std::fs::remove_dir_all(&over_tls).unwrap();
            }
        }
        println!(
            "round {round}: full backup {:.2} s, over TLS {:.2} s",
            t_plain.as_secs_f64(),
            t_tls.as_secs_f64()
        );
        plains.push(t_plain);
        tlss.push(t_tls);
    }
    drop(tls_server);
    std::fs::remove_dir_all(&tls_store).unwrap();
    let (plains, tlss) = (secs(&plains), secs(&tlss));

    // 5. Commit throughput of 1, 8 and 32 writers, in that order in even rounds and the reverse
    // in odd ones.
    let counts = [1usize, 8, 32];
    let mut tput: [Vec<f64>; 3] = Default::default();
    for round in 0..load_rounds {
        for step in 0..3 {
            let k = if round % 2 == 0 { step } else { 2 - step };
            tput[k].push(throughput(&server.http, counts[k], load));
        }
        println!(
            "round {round}: commit throughput 1 writer {:.0} tx/s, 8 writers {:.0} tx/s, 32 writers {:.0} tx/s",
            tput[0][round], tput[1][round], tput[2][round]
        );
    }

    // 6. 8 writers while full backups (-verify false, each into a fresh directory) run back to
    // back, against 8 writers alone, and (no target: what the disk and the cores alone cost)
    // while `cp -r` + `sync` of the store runs back to back; the order rotates each round.
    let (mut busy, mut quiet, mut copying, mut busy_backups) =
        (Vec::new(), Vec::new(), Vec::new(), 0);
    for round in 0..load_rounds {
        let (mut t_busy, mut t_quiet, mut t_copying) = (0.0, 0.0, 0.0);
        for step in 0..3 {
            let which = (round + step) % 3;
            if which == 0 {
                t_quiet = throughput(&server.http, 8, load);
                continue;
            }
            use std::sync::atomic::{AtomicBool, Ordering};
            let stop = AtomicBool::new(false);
            sync();
            let (t, n, r) = std::thread::scope(|s| {
                let background = s.spawn(|| {
                    let (mut n, mut peak) = (0, 0);
                    while !stop.load(Ordering::Relaxed) {
                        let to = dir.join(format!("busy-{round}-{n}"));
                        if which == 1 {
                            let (_, r) = backup(&server.backup, &to, "false");
                            peak = peak.max(r);
                        } else {
                            run(Command::new("sh").arg("-c").arg(format!(
                                "cp -r '{}' '{}' && sync",
                                store.display(),
                                to.display()
                            )));
                        }
                        std::fs::remove_dir_all(&to).unwrap();
                        n += 1;
                    }
                    (n, peak)
                });
                let (committed, took) = commit_load(&server.http, 8, Until::Elapsed(load));
                stop.store(true, Ordering::Relaxed);
                let (n, r) = background.join().unwrap();
                (committed as f64 / took.as_secs_f64(), n, r)
            });
            if which == 1 {
                (t_busy, busy_backups) = (t, busy_backups + n);
                rss = rss.max(r);
                println!("round {round}: {n} full backup(s) ran during the 8 writers");
            } else {
                t_copying = t;
                println!("round {round}: {n} cp -r + sync ran during the 8 writers");
            }
        }
        println!(
            "round {round}: 8 writers {t_quiet:.0} tx/s alone, {t_busy:.0} tx/s during full backups, {t_copying:.0} tx/s during cp -r + sync"
        );
        busy.push(t_busy);
        quiet.push(t_quiet);
        copying.push(t_copying);
    }

    // The summary, in README.md's format.
    let size = gib(store_bytes);
    let full = spread(&fulls).median;
    let mut rows = vec![
        Row::ratio(
            format!("full backup (`-verify false`, durable) / (`cp -r` + `sync`), {size} store"),
            format!("{} / {}", fmt_secs(full), fmt_secs(spread(&copies).median)),
            spread(&ratios(&fulls, &copies)),
            "x",
            Target::AtMost(1.1, "<= 1.1x"),
        ),
        Row::ratio(
            "`-verify true` extra time / the full backup's copy (`-verify false`)".to_string(),
            format!("{} / {}", fmt_secs(spread(&extras).median), fmt_secs(full)),
            spread(&ratios(&extras, &fulls)),
            "x",
            Target::AtMost(0.5, "<= 0.5x"),
        ),
        Row::ratio(
            format!("incremental after {txs} small txs / full backup"),
            format!(
                "{} / {}",
                fmt_secs(spread(&incrs).median),
                fmt_secs(spread(&incr_fulls).median)
            ),
            spread(&ratios(&incrs, &incr_fulls)),
            "x",
            Target::AtMost(0.03, "<= 0.03x"),
        ),
        Row::ratio(
            "incremental, nothing new / full backup".to_string(),
            format!(
                "{} / {}",
                fmt_secs(spread(&nones).median),
                fmt_secs(spread(&incr_fulls).median)
            ),
            spread(&ratios(&nones, &incr_fulls)),
            "x",
            Target::AtMost(0.002, "<= 0.002x"),
        ),
        Row::ratio(
            "`check --quick` (the manifest) / `check` (the consistency check) of the backup"
                .to_string(),
            format!(
                "{} / {}",
                fmt_secs(spread(&quicks).median),
                fmt_secs(spread(&checks).median)
            ),
            spread(&ratios(&quicks, &checks)),
            "x",
            Target::AtMost(1.0, "< 1x (faster than the full check)"),
        ),
        Row::ratio(
            "commit throughput, 32 concurrent HTTP writers / 1 writer".to_string(),
            format!(
                "{} / {} tx/s (8 writers: {} tx/s)",
                num(spread(&tput[2]).median),
                num(spread(&tput[0]).median),
                num(spread(&tput[1]).median)
            ),
            spread(&ratios(&tput[2], &tput[0])),
            "x",
            Target::AtLeast(6.0, ">= 6x"),
        ),
        Row::ratio(
            format!(
                "commit throughput with 8 writers during full backups / without ({busy_backups} backups)"
            ),
            format!(
                "{} / {} tx/s",
                num(spread(&busy).median),
                num(spread(&quiet).median)
            ),
            spread(&ratios(&busy, &quiet)),
            "",
            Target::AtLeast(0.75, ">= 0.75"),
        ),
        Row::ratio(
            "commit throughput with 8 writers during `cp -r` + `sync` of the store / without"
                .to_string(),
            format!(
                "{} / {} tx/s",
                num(spread(&copying).median),
                num(spread(&quiet).median)
            ),
            spread(&ratios(&copying, &quiet)),
            "",
            Target::None,
        ),
    ];
    let rss_target = Target::Other("<= 16 MiB each, within 2 MiB of each other");
    let incr_target = Target::AtMost(1.2, "<= 1.2x");
    match &large_result {
        Some((large_bytes, large_rss, small_incrs, large_incrs)) => {
            let (a, b) = (rss as f64 / 1024.0, *large_rss as f64 / 1024.0);
            let met = a <= 16.0 && b <= 16.0 && (a - b).abs() <= 2.0;
            let diff = format!("{:.1} MiB apart", (a - b).abs());
            rows.push(Row {
                measure: format!(
                    "`neo4j-backup` peak RSS, {size} and {} stores",
                    gib(*large_bytes)
                ),
                time: format!("{} / {}", mib(rss), mib(*large_rss)),
                ratio: if met { diff } else { format!("**{diff}**") },
                target: rss_target.text(),
            });
            rows.push(Row::ratio(
                format!(
                    "incremental after {txs} txs, {} store / {size} store",
                    gib(*large_bytes)
                ),
                format!(
                    "{} / {}",
                    fmt_secs(spread(large_incrs).median),
                    fmt_secs(spread(small_incrs).median)
                ),
                spread(&ratios(large_incrs, small_incrs)),
                "x",
                incr_target,
            ));
        }
        None => {
            let over = rss as f64 / 1024.0 > 16.0;
            let peak = mib(rss);
            rows.push(Row {
                measure: format!(
                    "`neo4j-backup` peak RSS, {size} store (the {} store: BENCH_LARGE=1)",
                    gib(store_bytes * large_nodes / nodes.max(1))
                ),
                time: if over { format!("**{peak}**") } else { peak },
                ratio: String::new(),
                target: rss_target.text(),
            });
            rows.push(Row::not_measured(
                format!("incremental after {txs} txs, larger store / {size} store"),
                "BENCH_LARGE=1",
                incr_target,
            ));
        }
    }
    rows.push(Row::ratio(
        "full backup into S3 (moto on loopback) / into a local directory".to_string(),
        format!(
            "{} / {}",
            fmt_secs(spread(&s3s).median),
            fmt_secs(spread(&locals).median)
        ),
        spread(&ratios(&s3s, &locals)),
        "x",
        Target::None,
    ));
    rows.push(Row::ratio(
        "full backup over TLS / without TLS".to_string(),
        format!(
            "{} / {}",
            fmt_secs(spread(&tlss).median),
            fmt_secs(spread(&plains).median)
        ),
        spread(&ratios(&tlss, &plains)),
        "x",
        Target::None,
    ));
    drop(server);

    println!();
    println!(
        "{size} store; {rounds} alternated pairs (backups), {load_rounds} rounds of {load_secs} s (commit load), {tls_rounds} pairs (TLS); time: the median of each side; ratio: the median of the pairs' ratios (lowest..highest), in bold when it misses the target"
    );
    println!();
    println!("| measure | time | ratio | target |");
    println!("| --- | --- | --- | --- |");
    for row in rows {
        println!(
            "| {} | {} | {} | {} |",
            row.measure, row.time, row.ratio, row.target
        );
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate under `dir`; returns the
/// tool's `--tls-*` flags and the TLS server's configuration file.
fn tls_files(dir: &Path) -> (Vec<String>, PathBuf) {
    use certs::{Ca, Role, Validity};
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let valid = Validity::days_around(SystemTime::now(), 2);
    let ca = Ca::new("bench CA", valid, None);
    let server = ca.issue(Role::Server, &["127.0.0.1"], valid, None);
    let client = ca.issue(Role::Client, &["bench"], valid, None);
    let write = |name: &str, text: &str| {
        let path = tls.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let ca_pem = write("ca.pem", &ca.cert);
    let config = format!(
        "http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:0\nkeep_logical_logs=true\n\
         online_backup_tls_cert={}\nonline_backup_tls_key={}\nonline_backup_tls_client_ca={ca_pem}\n",
        write("server.pem", &server.cert),
        write("server.key", &server.key),
    );
    let args = vec![
        "--tls-ca".to_string(),
        ca_pem,
        "--tls-cert".to_string(),
        write("client.pem", &client.cert),
        "--tls-key".to_string(),
        write("client.key", &client.key),
    ];
    let path = dir.join("tls.properties");
    std::fs::write(&path, config).unwrap();
    (args, path)
}
