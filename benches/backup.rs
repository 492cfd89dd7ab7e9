//! The backup benchmark (not a test): the brief's performance targets, each measured as a ratio
//! against a baseline taken in the same run on the same machine, so a noisy shared machine
//! moves both sides together.
//!
//! `cargo bench --bench backup` (release build). Environment:
//! - `BENCH_NODES` (default 1,870,000: a generated store of about 1 GiB);
//! - `BENCH_ROUNDS` (default 3): copy/backup pairs, alternated; the medians are compared;
//! - `BENCH_TXS` (default 10,000): small transactions before the incremental;
//! - `BENCH_DIR` (default the system temp dir): where the stores go. Use a real disk, not tmpfs:
//!   the targets compare against `cp -r` plus `sync`.
//!
//! Measures, each printed with its target:
//! 1. full backup (`-verify false`) over loopback vs `cp -r` + `sync` of the store;
//! 2. the verification of that backup (`-verify true` minus `-verify false`) vs the copy;
//! 3. incremental after `BENCH_TXS` small transactions vs the full backup;
//! 4. incremental with nothing new vs the full backup;
//! 5. peak memory (max RSS) of `neo4j-backup` during the full backup;
//! 6. TLS's cost: a full backup (`-verify false`) over TLS with client certificates vs the same
//!    without TLS, from two servers on stores of the same size (the second serves the backup
//!    taken above), alternated in `BENCH_TLS_ROUNDS` pairs (default 5, at least 5): the median
//!    of the pairs' ratios, with their lowest and highest.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

#[path = "../tests/kit/certs.rs"]
#[allow(dead_code)]
mod certs;
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
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

/// One small transaction over HTTP (a keep-alive connection would be faster; one per request
/// keeps this independent of the server's HTTP details).
fn post(addr: &str, body: &str) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /db/data/transaction HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
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

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. a filter) is ignored.
    let nodes = env_u64("BENCH_NODES", 1_870_000);
    let rounds = env_u64("BENCH_ROUNDS", 3).max(1);
    let txs = env_u64("BENCH_TXS", 10_000);
    let base = std::env::var("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let work = tempfile::Builder::new()
        .prefix("backup-bench")
        .tempdir_in(&base)
        .expect("a scratch directory");
    let store = work.path().join("store");
    println!("generating a store of {nodes} nodes in {}", store.display());
    run(Command::new(env!("CARGO_BIN_EXE_neo4j-admin")).args([
        "generate",
        "--store",
        store.to_str().unwrap(),
        "--nodes",
        &nodes.to_string(),
    ]));
    let store_bytes = dir_bytes(&store);
    println!("store: {:.2} GiB", store_bytes as f64 / (1u64 << 30) as f64);
    let config = work.path().join("neo4j.properties");
    std::fs::write(
        &config,
        "http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:0\nkeep_logical_logs=true\n",
    )
    .unwrap();
    let server = start_server(&store, &config);

    // 1. Full backup vs cp -r + sync, alternated so drift hits both.
    let (mut copies, mut fulls, mut rss) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        let copy = work.path().join(format!("copy-{round}"));
        let t_copy = run(Command::new("sh").arg("-c").arg(format!(
            "cp -r '{}' '{}' && sync",
            store.display(),
            copy.display()
        )));
        std::fs::remove_dir_all(&copy).unwrap();
        let target = work.path().join(format!("backup-{round}"));
        let (t_full, r) = backup(&server.backup, &target, "false");
        std::fs::remove_dir_all(&target).unwrap();
        println!(
            "round {round}: cp -r + sync {:.2} s, full backup -verify false {:.2} s",
            t_copy.as_secs_f64(),
            t_full.as_secs_f64()
        );
        copies.push(t_copy);
        fulls.push(t_full);
        rss = rss.max(r);
    }
    let (copy, full) = (median(copies), median(fulls));

    // 2. The same full backup with -verify true: the difference is the verification.
    let target = work.path().join("backup");
    let (t_verified, _) = backup(&server.backup, &target, "true");
    let verify = t_verified.saturating_sub(full);

    // 3. 10,000 small transactions, then an incremental with default flags.
    let started = Instant::now();
    for i in 0..txs {
        post(
            &server.http,
            &format!(r#"{{"ops":[{{"create_node":{{"labels":["Bench"],"props":{{"i":{i}}}}}}}]}}"#),
        );
    }
    println!(
        "{txs} transactions committed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (t_incr, _) = backup(&server.backup, &target, "true");
    // 4. Nothing new.
    let (t_none, _) = backup(&server.backup, &target, "true");

    // 6. TLS's cost: a second server, with TLS, on the backup just taken (a store of the same
    // size), and full backups from both, alternated.
    let tls_rounds = env_u64("BENCH_TLS_ROUNDS", 5).max(5);
    let (tls_args, tls_config) = tls_files(work.path());
    let tls_server = start_server(&target, &tls_config);
    let mut tls_ratios = Vec::new();
    for round in 0..tls_rounds {
        let plain = work.path().join(format!("plain-{round}"));
        let (t_plain, _) = backup(&server.backup, &plain, "false");
        std::fs::remove_dir_all(&plain).unwrap();
        let over_tls = work.path().join(format!("tls-{round}"));
        let (t_tls, _) = backup_with(&tls_server.backup, &over_tls, "false", &tls_args);
        std::fs::remove_dir_all(&over_tls).unwrap();
        println!(
            "round {round}: full backup {:.2} s, over TLS {:.2} s",
            t_plain.as_secs_f64(),
            t_tls.as_secs_f64()
        );
        tls_ratios.push(t_tls.as_secs_f64() / t_plain.as_secs_f64());
    }
    drop(tls_server);
    tls_ratios.sort_by(f64::total_cmp);
    let tls_median = tls_ratios[tls_ratios.len() / 2];

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!();
    println!("| measure | time | ratio | target |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| full backup (-verify false) / (cp -r + sync) | {:.2} s / {:.2} s | {:.2}x | <= 1.2x |",
        full.as_secs_f64(),
        copy.as_secs_f64(),
        ratio(full, copy)
    );
    println!(
        "| verification (-verify true minus false) / copy | {:.2} s | {:.2}x | <= 0.5x |",
        verify.as_secs_f64(),
        ratio(verify, full)
    );
    println!(
        "| incremental after {txs} txs / full backup | {:.3} s | {:.3}x | <= 0.05x |",
        t_incr.as_secs_f64(),
        ratio(t_incr, full)
    );
    println!(
        "| incremental, nothing new / full backup | {:.3} s | {:.3}x | <= 0.02x |",
        t_none.as_secs_f64(),
        ratio(t_none, full)
    );
    println!(
        "| peak memory of neo4j-backup (full backup) | {:.1} MiB | | <= 32 MiB |",
        rss as f64 / 1024.0
    );
    println!(
        "| full backup over TLS / without TLS ({tls_rounds} pairs; lowest..highest) | | {tls_median:.2}x ({:.2}..{:.2}) | |",
        tls_ratios[0],
        tls_ratios[tls_ratios.len() - 1]
    );
    drop(server);
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
