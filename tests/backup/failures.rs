//! Failing cleanly: an unreachable server, a service that is off, a port range, a port that is
//! not the backup service, timeouts, and network failures and damaged streams (through a silent
//! server or a proxy).

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::ServerProcess;

// BK-19, BK-40, BK-1: an unreachable server (nothing listening, an unknown host) fails with
// exit 1 and one sentence naming host and port (the default port 6362 when none is given),
// with the likely cause when nothing listens; an unwritable target fails with exit 1.
#[test]
fn bk_19_unreachable_server_and_unwritable_directory_fail_with_one_line() {
    let dir = scratch();
    let port = free_port();
    let a = dir.path().join("a");
    let port_s = port.to_string();
    let out = backup(&["-host", "127.0.0.1", "-port", &port_s, "-to", path(&a)]).expect(1);
    let line = out.one_error_line();
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(
        line.contains("online_backup_enabled") && line.contains("online_backup_server"),
        "{line}"
    );
    assert!(!a.exists(), "a failed run leaves no directory behind");
    let b = dir.path().join("b");
    for flag in ["-host", "-from"] {
        let args = [
            flag,
            "no-such-host.invalid",
            "-timeout",
            "20s",
            "-to",
            path(&b),
        ];
        let line = backup(&args).expect(1).one_error_line().to_string();
        assert!(line.contains("no-such-host.invalid:6362"), "{line}");
    }
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for target in [
        file.join("sub"),
        Path::new("/proc/neo4j-backup-test").to_path_buf(),
    ] {
        let out = backup_from(&addr, &target, &[]).expect(1);
        assert!(
            out.one_error_line().contains(&target.display().to_string()),
            "{out:#?}"
        );
    }
}

// BK-3, BK-19, PR-18: with online_backup_enabled=false nothing listens on the configured
// port; the tool fails there with exit 1 naming host and port.
#[test]
fn bk_3_service_off_fails_like_an_unreachable_server() {
    let dir = scratch();
    let port = free_port();
    let config = format!(
        "http_server=127.0.0.1:0\nonline_backup_enabled=false\nonline_backup_server=127.0.0.1:{port}\n"
    );
    let server = ServerProcess::start(&dir.path().join("db"), Some(&config));
    assert_eq!(server.backup, None);
    write_nodes(&server, 1);
    let target = dir.path().join("backup");
    let out = backup_from(&format!("127.0.0.1:{port}"), &target, &[]).expect(1);
    let line = out.one_error_line();
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(line.contains("online_backup_enabled"), "{line}");
}

// BK-2, PR-18: a range binds its first free port; the tool is given that port. A range with
// no free port stops the server at start.
#[test]
fn bk_2_port_range_binds_the_first_free_port() {
    let dir = scratch();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = taken.local_addr().unwrap().port();
    let last = p.saturating_add(20);
    let config = format!("http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:{p}-{last}\n");
    let server = ServerProcess::start(&dir.path().join("db"), Some(&config));
    let bound = server.backup.clone().unwrap();
    let q: u16 = bound.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(q > p && q <= last, "bound {q} for {p}-{last}");
    write_nodes(&server, 2);
    let b = dir.path().join("backup");
    let q_s = q.to_string();
    backup(&["-host", "127.0.0.1", "-port", &q_s, "-to", path(&b)]).expect(0);
    assert_same_as_server(&b, &server);
    // None free: the only port of the range is taken.
    let config_path = dir.path().join("none-free.properties");
    std::fs::write(
        &config_path,
        format!("http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:{p}-{p}\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_neo4j"))
        .args(["console", "--store"])
        .arg(dir.path().join("db2"))
        .arg("--config")
        .arg(&config_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&p.to_string()), "{stderr}");
    drop(taken);
}

// BK-48, PR-21: pointed at a port that does not speak the backup protocol (the server's HTTP
// port, or anything else), the tool says so in one sentence instead of reporting a damaged frame.
#[test]
fn bk_48_a_port_that_is_not_the_backup_service_is_named_as_such() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let to = dir.path().join("backup");
    let out = backup_from(&server.http, &to, &[]).expect(1);
    let line = out.one_error_line();
    assert!(
        line.contains(&format!(
            "{} does not speak the backup protocol",
            server.http
        )) && line.contains("probably the server's HTTP port"),
        "BK-48: {line}"
    );
    assert!(
        !line.contains("frame length"),
        "PR-21: the first answer is read with a welcome's bound: {line}"
    );
    assert!(!to.exists(), "BK-48: the target was created");
    // Something that is not HTTP either: a banner of another protocol.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            let Ok(mut s) = s else { break };
            let _ = std::io::Write::write_all(&mut s, b"SSH-2.0-OpenSSH_9.2\r\n");
            held.push(s);
        }
    });
    let out = backup_from(&other, &to, &[]).expect(1);
    let line = out.one_error_line();
    assert!(
        line.contains("does not speak the backup protocol") && !line.contains("HTTP"),
        "BK-48: {line}"
    );
}

// PR-21: a port that accepts and closes at once (a service past its connection limit drops
// what it cannot answer) is reported as a connection closed unanswered, not as a broken pipe.
#[test]
fn pr_21_a_connection_closed_unanswered_is_named_as_such() {
    let dir = scratch();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let to = dir.path().join("backup");
    let out = backup_from(&addr, &to, &[]).expect(1);
    let line = out.one_error_line();
    assert!(
        line.contains(&format!(
            "the backup service at {addr} closed the connection without answering"
        )),
        "PR-21: {line}"
    );
    assert!(!to.exists(), "PR-21: the target was not created");
}

// BK-7, BK-34: -timeout bounds the wait for a silent server (before the welcome, and in the
// middle of a file); the tool fails with exit 1 naming the server and what it waited for, and
// the directory is as it was.
#[test]
fn bk_7_timeout_bounds_the_wait_for_a_silent_server() {
    let dir = scratch();
    let silent = SilentServer::start();
    for (timeout, at_least) in [("1s", 1000), ("500ms", 500)] {
        let started = Instant::now();
        let target = dir.path().join(format!("t-{timeout}"));
        let out = backup_from(&silent.addr, &target, &["-timeout", timeout]).expect(1);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(at_least) && took < Duration::from_secs(30),
            "{took:?}"
        );
        let line = out.one_error_line();
        assert!(
            line.contains(&silent.addr) && line.contains("welcome"),
            "{line}"
        );
    }
    // A server that stops sending in the middle of a file.
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(server.backup.as_deref().unwrap(), &b, &[]).expect(0);
    write_nodes(&server, 3);
    let proxy = Proxy::start(server.backup.as_deref().unwrap(), |body| {
        if body[0] == kind::FILE_CHUNK {
            Action::Stall
        } else {
            Action::Pass
        }
    });
    let line = refused(&proxy.addr, &b, &["--type", "full", "-timeout", "1s"], 1);
    assert!(
        line.contains(&proxy.addr) && line.contains("chunk"),
        "{line}"
    );
}

/// A proxy for one connection that hands the `nth` frame of `kind` (counting from 0) to `edit`
/// and passes everything else.
fn editing_proxy(
    upstream: &str,
    kind: u8,
    nth: usize,
    mut edit: impl FnMut(&mut Vec<u8>) -> Action + Send + 'static,
) -> Proxy {
    let mut seen = 0;
    Proxy::start(upstream, move |body| {
        if body[0] != kind {
            return Action::Pass;
        }
        seen += 1;
        if seen - 1 == nth {
            edit(body)
        } else {
            Action::Pass
        }
    })
}

// BK-34, BK-17, PR-1, PR-11: a connection that fails in the middle of a full backup, a damaged
// frame, a file whose bytes do not match its CRC, and a file that is not a store file all fail
// the run with exit 1 and one line, and leave the previous backup as it was; a connection cut
// in the middle of an incremental backup leaves a valid backup, and the next run catches up.
#[test]
fn bk_34_network_failures_and_damaged_streams_leave_a_valid_backup() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let upstream = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(&upstream, &b, &[]).expect(0);
    write_nodes(&server, 3);
    let full = ["--type", "full"];

    let cut = editing_proxy(&upstream, kind::FILE_CHUNK, 1, |_| Action::Cut);
    let line = refused(&cut.addr, &b, &full, 1);
    assert!(line.contains(&cut.addr), "{line}");

    let bad_crc = editing_proxy(&upstream, kind::FILE_CHUNK, 0, |_| Action::BadCrc);
    let line = refused(&bad_crc.addr, &b, &full, 1);
    assert!(line.contains("checksum"), "{line}");

    let damaged = editing_proxy(&upstream, kind::FILE_END, 0, |body| {
        body[1] ^= 0x01;
        Action::Pass
    });
    let line = refused(&damaged.addr, &b, &full, 1);
    assert!(line.contains("damaged"), "{line}");

    for name in ["neostore.meta", "../evil"] {
        let renamed = editing_proxy(&upstream, kind::FILE_START, 0, move |body| {
            let mut f = Fields(&body[1..]);
            let _ = f.string();
            let len = f.u64();
            let mut out = vec![kind::FILE_START];
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            *body = out;
            Action::Pass
        });
        refused(&renamed.addr, &b, &full, 1);
        assert!(!dir.path().join("evil").exists());
    }

    // Cut after the first transaction of an incremental backup.
    let old = tx(&check_json(&b));
    let cut = editing_proxy(&upstream, kind::TX, 1, |_| Action::Cut);
    let out = backup_from(&cut.addr, &b, &[]).expect(1);
    out.one_error_line();
    let report = check_json(&b);
    assert!((old..=6).contains(&tx(&report)), "{report}");
    let out = backup_from(&upstream, &b, &[]).expect(0);
    assert!(out.summary().contains("incremental backup"), "{out:#?}");
    assert_same_as_server(&b, &server);
}
