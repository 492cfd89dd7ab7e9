//! Crashes: SIGKILL of the tool or of the server in the middle of a backup, and the directory's
//! lock.
//!
//! Each crash test names the phase it kills in and kills there: it watches the run (the lines
//! the tool prints, the bytes in the target), freezes the tool (SIGSTOP) once it sees the phase,
//! checks that the directory is as that phase leaves it, and only then kills (SIGKILL), so what
//! the test checks afterwards is what a kill in that phase leaves. `--max-rate` (BK-41) makes
//! the copy and the shipping of transactions take seconds, so the phases last far longer than
//! the test needs to see them, however loaded the machine.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::ServerProcess;

/// A `neo4j-backup` run the test watches as it goes. Its output is read without blocking, only
/// when the test looks, so that once the run is frozen what was read is exactly what it printed
/// before the freeze. Killed when dropped: a failing test leaves no process behind, frozen or
/// not.
struct Watched {
    child: Child,
    stdout: ChildStdout,
    stderr: ChildStderr,
    printed: Vec<u8>,
    errors: Vec<u8>,
}

/// Makes a pipe's reads return `WouldBlock` instead of waiting.
fn nonblocking(fd: &impl AsRawFd) {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor the caller owns, changing only its status flags.
    let rc = unsafe {
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        )
    };
    assert_eq!(rc, 0, "fcntl: {}", std::io::Error::last_os_error());
}

/// Appends what `from` holds now to `into`; true at the end of the stream.
fn read_available(from: &mut impl Read, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the tool's output: {e}"),
        }
    }
}

impl Watched {
    fn spawn(addr: &str, dir: &Path, more: &[&str]) -> Watched {
        let mut child = spawn_backup(addr, dir, more);
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        nonblocking(&stdout);
        nonblocking(&stderr);
        Watched {
            child,
            stdout,
            stderr,
            printed: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn read_output(&mut self) {
        read_available(&mut self.stdout, &mut self.printed);
        read_available(&mut self.stderr, &mut self.errors);
    }

    /// Whether a line the tool printed on stdout so far contains `text`.
    fn printed(&mut self, text: &str) -> bool {
        self.read_output();
        String::from_utf8_lossy(&self.printed)
            .lines()
            .any(|l| l.contains(text))
    }

    /// Everything the tool printed so far, for failure messages.
    fn output(&mut self) -> String {
        self.read_output();
        format!(
            "stdout:\n{}stderr:\n{}",
            String::from_utf8_lossy(&self.printed),
            String::from_utf8_lossy(&self.errors)
        )
    }

    /// Polls until `seen` holds; fails if the run ends first (it ran past the phase) or after a
    /// generous deadline.
    fn wait_for(&mut self, what: &str, mut seen: impl FnMut(&mut Watched) -> bool) {
        let start = Instant::now();
        while !seen(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the run ended ({status}) before {what}: {}", self.output());
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "timed out waiting for {what}: {}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Freezes the run (SIGSTOP) and waits until every thread of it has stopped: from here to
    /// the kill, the directory holds what the kill will leave, and the output read is all it
    /// printed.
    fn freeze(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: a signal to our own child, which has not been waited for, so the pid is its.
        let rc = unsafe { libc::kill(pid, libc::SIGSTOP) };
        assert_eq!(rc, 0, "SIGSTOP: {}", std::io::Error::last_os_error());
        // SAFETY: siginfo_t is plain data; all zeroes is a valid value to be overwritten.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits on our own child; WNOWAIT leaves it waitable for `Child::wait`.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WSTOPPED | libc::WEXITED | libc::WNOWAIT,
            )
        };
        assert_eq!(rc, 0, "waitid: {}", std::io::Error::last_os_error());
        assert_eq!(
            info.si_code,
            libc::CLD_STOPPED,
            "the run ended before it could be frozen: {}",
            self.output()
        );
        self.read_output();
    }

    /// SIGKILL, then the end of the process; returns everything it printed.
    fn kill(mut self) -> Out {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "{status}"
        );
        self.finish()
    }

    /// Waits for the end of the process (without killing it) and returns all it printed.
    fn finish(mut self) -> Out {
        let status = self.child.wait().unwrap();
        while !read_available(&mut self.stdout, &mut self.printed) {}
        while !read_available(&mut self.stderr, &mut self.errors) {}
        Out {
            code: status.code(),
            stdout: String::from_utf8_lossy(&self.printed).into_owned(),
            stderr: String::from_utf8_lossy(&self.errors).into_owned(),
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes of the files in `dir` whose names `keep` accepts (0 when `dir` does not exist).
fn bytes_of(dir: &Path, keep: impl Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| keep(&e.file_name().to_string_lossy()))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The bytes of a store directory's three record files.
fn record_bytes(dir: &Path) -> u64 {
    bytes_of(dir, |n| {
        n.starts_with("neostore.") && n.ends_with("store.db")
    })
}

/// The bytes of a store directory's log files.
fn log_bytes(dir: &Path) -> u64 {
    bytes_of(dir, |n| n.starts_with("neostore.transaction.db."))
}

/// The backup in `b` is still `old`: the same tx and digest, and it checks (BK-23).
fn assert_still(b: &Path, old: &serde_json::Value, what: &str) {
    let report = check_json(b);
    assert_eq!(
        (tx(&report), &report["digest"]),
        (tx(old), &old["digest"]),
        "BK-33: {what}: the previous backup must stay live and valid"
    );
}

/// The next run after a killed one: incremental from the surviving backup, removing what the
/// killed run left (BK-36), and equal to the server.
fn next_run_catches_up(addr: &str, b: &Path, server: &ServerProcess) {
    let out = backup_from(addr, b, &[]).expect(0);
    assert!(
        out.stdout.contains("incremental backup from") && !out.stdout.contains("falling back"),
        "BK-33, BK-24: the run after the kill goes on incrementally from the surviving backup: {out:#?}"
    );
    assert_eq!(
        names(b),
        vec!["CURRENT".to_string(), current(b)],
        "BK-36: the next run removes what the killed run left"
    );
    assert_same_as_server(b, server);
}

// BK-33, BK-32, BK-36, PR-6: SIGKILL of `neo4j-backup` while a full backup copies the store
// files into a new generation (killed once the generation holds some of their bytes, checked to
// hold part of them, no metadata, and the pointer still on the old generation) leaves the
// previous backup live and valid; the next run catches up incrementally and removes the
// unfinished generation. The tool's memory stays bounded while it copies a store many times
// larger than its peak.
#[test]
fn bk_33_sigkill_of_the_tool_mid_file_copy_leaves_the_previous_backup_live() {
    let dir = scratch();
    let store = dir.path().join("db");
    let b = dir.path().join("backup");
    generate(&store, 60_000, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let (out, peak_kib) = run_measured(backup_cmd(&[
        "-from",
        &addr,
        "-verify",
        "false",
        "-to",
        path(&b),
    ]));
    let out = out.expect(0);
    let total = record_file_bytes(&store);
    eprintln!(
        "copied {total} bytes with a peak of {peak_kib} KiB: {}",
        out.summary()
    );
    assert!(
        peak_kib * 1024 < total / 2,
        "PR-6: peak {peak_kib} KiB for {total} bytes"
    );
    let old = check_json(&b);
    write_nodes(&server, 3);

    // At 8 MiB/s the copy of the 33 MiB of files takes four seconds.
    let mut run = Watched::spawn(&addr, &b, &["--type", "full", "--max-rate", "8M"]);
    let new = b.join("generation-2");
    run.wait_for("bytes in the new generation's files", |_| {
        record_bytes(&new) > 0
    });
    run.freeze();
    let copied = record_bytes(&new);
    assert!(
        copied < total && !new.join("neostore.meta").exists() && !run.printed("copied "),
        "BK-33: the kill must land mid-copy: {copied} of {total} bytes in {}, {:?}: {}",
        new.display(),
        names(&new),
        run.output()
    );
    assert_eq!(
        current(&b),
        "generation-1",
        "BK-32: the pointer names the old generation while the new one is copied"
    );
    let output = run.kill();
    eprintln!("killed with {copied} of {total} bytes copied: {output:#?}");
    assert_still(&b, &old, "killed mid-copy");
    next_run_catches_up(&addr, &b, &server);
}

// BK-33, BK-21, BK-32, BK-36: SIGKILL of `neo4j-backup` while a full backup replays onto the new
// generation the transactions committed during its copy (killed once a first run of them is in
// the generation's log, checked to be before verification and the pointer switch) leaves the
// previous backup live and valid; the next run catches up incrementally and removes the
// unfinished generation.
#[test]
fn bk_33_sigkill_of_the_tool_while_a_full_backup_replays_leaves_the_previous_backup_live() {
    let dir = scratch();
    let store = dir.path().join("db");
    let b = dir.path().join("backup");
    generate(&store, 20_000, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    backup_from(&addr, &b, &["-verify", "false"]).expect(0);
    let old = check_json(&b);

    // At 4 MiB/s the 11 MiB of files take three seconds, and the 7 MiB of transactions
    // committed meanwhile (shipped after the copy, replayed in runs of at most 4 MiB) two more.
    // The paced receive buffer (BK-41) holds the server back within about 5 MiB (its own send
    // buffer included), so it is still sending files a second after the first bytes land.
    let mut run = Watched::spawn(&addr, &b, &["--type", "full", "--max-rate", "4M"]);
    let new = b.join("generation-2");
    run.wait_for("bytes in the new generation's files", |_| {
        record_bytes(&new) > 0
    });
    write_big(&server, 45, None);
    assert!(
        !run.printed("copied "),
        "BK-41, IO-14: the copy ended before the transactions committed during it: {}",
        run.output()
    );
    run.wait_for(
        "a first run of transactions in the new generation's log",
        |_| log_bytes(&new) > 64,
    );
    run.freeze();
    assert!(
        run.printed("copied ")
            && !run.printed("verifying")
            && !run.printed("done:")
            && new.join("neostore.meta").exists(),
        "BK-33, BK-21: the kill must land while the transactions replay, after the copy and \
         before verification: {:?}: {}",
        names(&new),
        run.output()
    );
    assert_eq!(
        current(&b),
        "generation-1",
        "BK-32: the pointer names the old generation while the new one replays"
    );
    let output = run.kill();
    eprintln!(
        "killed with {} bytes of log replayed: {output:#?}",
        log_bytes(&new)
    );
    assert_still(&b, &old, "killed while replaying");
    next_run_catches_up(&addr, &b, &server);
}

// BK-33, BK-32, BK-36: SIGKILL of `neo4j-backup` while it verifies a full backup
// (killed once it says it is verifying, checked to be before the pointer switch, with the new
// generation complete) leaves the previous backup live and valid; the next run catches up
// incrementally and removes the unverified generation.
#[test]
fn bk_33_sigkill_of_the_tool_during_verification_leaves_the_previous_backup_live() {
    let dir = scratch();
    let store = dir.path().join("db");
    let b = dir.path().join("backup");
    // Verifying 58 MiB of records takes about half a second here, far longer than it takes to
    // see the line that starts it.
    generate(&store, 100_000, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    backup_from(&addr, &b, &["-verify", "false"]).expect(0);
    write_nodes(&server, 3);
    let old = check_json(&b);

    let mut run = Watched::spawn(&addr, &b, &["--type", "full"]);
    run.wait_for("the line that starts verification", |run| {
        run.printed("verifying: ")
    });
    run.freeze();
    let new = b.join("generation-2");
    assert!(
        !run.printed("done:")
            && new.join("neostore.meta").exists()
            && !b.join("CURRENT.tmp").exists(),
        "BK-33: the kill must land during verification, before the pointer switch: \
         {:?}: {}",
        names(&b),
        run.output()
    );
    assert_eq!(
        (current(&b).as_str(), record_bytes(&new)),
        ("generation-1", record_file_bytes(&store)),
        "BK-32: the pointer names the old generation while the new, complete one is verified"
    );
    let output = run.kill();
    eprintln!("killed during verification: {output:#?}");
    assert_still(&b, &old, "killed during verification");
    next_run_catches_up(&addr, &b, &server);
}

// BK-24, BK-33, PR-16: SIGKILL of `neo4j-backup` while it applies an incremental backup of
// many transactions (killed once a first run of them is in the backup's log, before the end)
// leaves a valid backup at a tx strictly between the old and the new, whose digest is the
// server's at that tx; the next run catches up incrementally.
#[test]
fn bk_24_sigkill_of_the_tool_mid_incremental_apply_leaves_a_backup_in_between() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let mut history = BTreeMap::new();
    write_recorded(&server, 1, 16, &mut history);
    backup_from(&addr, &b, &[]).expect(0);
    let old = tx(&check_json(&b));
    // 12 MiB of transactions: three runs of at most 4 MiB, shipped at 4 MiB/s.
    write_big(&server, 80, Some(&mut history));
    let new = *history.keys().last().unwrap();
    let live = b.join(current(&b));
    let logged = log_bytes(&live);
    let mut run = Watched::spawn(&addr, &b, &["--type", "incremental", "--max-rate", "4M"]);
    run.wait_for("a first run of transactions in the backup's log", |_| {
        log_bytes(&live) > logged
    });
    run.freeze();
    assert!(
        run.printed("incremental backup from") && !run.printed("done:"),
        "BK-24: the kill must land while the transactions are applied: {}",
        run.output()
    );
    let output = run.kill();
    let report = check_json(&b);
    let t = tx(&report);
    eprintln!("killed at tx {t} of {old}..={new}: {output:#?}");
    assert!(
        old < t && t < new,
        "BK-24: killed mid-apply, the backup holds some runs but not all: tx {t} of {old}..={new}"
    );
    assert_eq!(
        Some(&s(&report["digest"])),
        history.get(&t),
        "BK-24: the backup at tx {t} is the server's state at that tx"
    );
    next_run_catches_up(&addr, &b, &server);
}

// BK-34, BK-33, PR-19: SIGKILL of the server while a full backup copies the store files (killed
// once the new generation holds some of their bytes; the tool never finished the copy) fails the
// tool with exit 1 and one line; the directory still holds the previous backup, valid, without
// the unfinished generation; the restarted server lost no acknowledged transaction, and the next
// run succeeds incrementally.
#[test]
fn bk_34_sigkill_of_the_server_mid_file_copy() {
    let dir = scratch();
    let store = dir.path().join("db");
    let b = dir.path().join("backup");
    generate(&store, 60_000, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    backup_from(&addr, &b, &["-verify", "false"]).expect(0);
    let old = check_json(&b);
    write_nodes(&server, 3);
    let acknowledged = status(&server);
    let total = record_file_bytes(&store);

    // At 8 MiB/s the copy of the 33 MiB of files takes four seconds.
    let mut run = Watched::spawn(&addr, &b, &["--type", "full", "--max-rate", "8M"]);
    let new = b.join("generation-2");
    run.wait_for("bytes in the new generation's files", |_| {
        record_bytes(&new) > 0
    });
    server.kill();
    let copied = record_bytes(&new);
    let out = run.finish();
    assert!(
        out.code == Some(1) && !out.stdout.contains("copied "),
        "BK-34: a server killed mid-copy ({copied} of {total} bytes in the target) fails the run \
         with exit 1 before the copy ends: {out:#?}"
    );
    assert!(
        out.one_error_line().contains(&addr),
        "BK-34: one line naming the server: {out:#?}"
    );
    assert_eq!(
        names(&b),
        vec!["CURRENT".to_string(), "generation-1".to_string()],
        "BK-34, BK-33: the failed run discards its generation and the old one stays live"
    );
    assert_still(&b, &old, "server killed mid-copy");

    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let now = status(&server);
    assert_eq!(
        (tx(&now), &now["digest"]),
        (tx(&acknowledged), &acknowledged["digest"]),
        "BK-34: the restarted server lost no acknowledged transaction"
    );
    let addr = server.backup.clone().unwrap();
    next_run_catches_up(&addr, &b, &server);
}

// BK-35, BK-40: the tool holds the directory's lock for its whole run: a second run on the
// same directory fails at once with exit 1, as does a run on a directory a server has open.
#[test]
fn bk_35_a_second_run_on_a_locked_directory_fails_at_once() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let silent = SilentServer::start();
    let mut first = spawn_backup(&silent.addr, &b, &["-timeout", "60s"]);
    wait_until(Duration::from_secs(30), "the first run to connect", || {
        silent.accepted.load(Ordering::SeqCst) >= 1
    });
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let started = Instant::now();
    let out = backup_from(&addr, &b, &[]).expect(1);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(out.one_error_line().contains("locked"), "{out:#?}");
    first.kill().unwrap();
    first.wait().unwrap();
    // A server running on a backup directory holds its lock too.
    backup_from(&addr, &b, &[]).expect(0);
    let on_backup = ServerProcess::start(&b, Some(EPHEMERAL));
    let out = backup_from(&addr, &b, &[]).expect(1);
    assert!(out.one_error_line().contains("locked"), "{out:#?}");
    assert_eq!(on_backup.terminate(), Some(0));
    backup_from(&addr, &b, &[]).expect(0);
}
