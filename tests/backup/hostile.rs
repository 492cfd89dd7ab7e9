//! The backup port against hostile peers, through the real `neo4j`: frames a client could never
//! legitimately send are refused before anything is allocated (PR-22), and connections beyond
//! the limit are told so (PR-23).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use super::support::backup::*;
use super::support::scratch;
use super::support::server::ServerProcess;

/// The server's peak resident memory so far, in KiB (VmHWM).
fn peak_kib(server: &ServerProcess) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// PR-22, PR-1: before any handshake, a frame header announcing 64 MiB (then 16 MiB of its body)
// makes the service close the connection at once, buffering nothing: eight such peers leave
// the server's peak memory where it was (before: each body was buffered, 128 MiB in all, and
// the connections stayed open waiting for the rest).
#[test]
fn pr_22_an_oversized_first_frame_is_refused_before_allocating() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 2);
    let before = peak_kib(&server);
    let mut peers = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = (64u32 << 20).to_le_bytes().to_vec();
        head.extend_from_slice(&[0; 4]);
        s.write_all(&head).unwrap();
        // What a reader waiting for the announced body would buffer (ignored once refused).
        let _ = s.write_all(&vec![7u8; 16 << 20]);
        peers.push(s);
    }
    for mut s in peers {
        let mut rest = Vec::new();
        let closed = std::io::Read::read_to_end(&mut s, &mut rest);
        assert!(
            closed.is_ok()
                || closed.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "PR-22: the service should close the connection, not wait for 64 MiB"
        );
        assert!(
            rest.is_empty(),
            "PR-22: nothing is answered to a frame too large: {rest:?}"
        );
    }
    let grown = peak_kib(&server).saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "PR-22: eight 64 MiB frame headers grew the server's peak memory by {grown} KiB"
    );
    // The service still serves an honest client.
    backup_from(&addr, &dir.path().join("backup"), &[]).expect(0);
}

// PR-23, BK-19: beyond eight open backup connections, a ninth is refused at once with a
// sentence that says why, and the tool exits 1; once the others close, backups go on.
#[test]
fn pr_23_connections_beyond_the_limit_are_told_so() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 2);
    let mut open = Vec::new();
    for _ in 0..8 {
        let mut w = Wire::connect(&addr);
        w.send(&hello(1));
        assert_eq!(
            w.recv().unwrap()[0],
            kind::WELCOME,
            "PR-23: within the limit"
        );
        open.push(w);
    }
    let out = backup_from(&addr, &dir.path().join("backup"), &[]).expect(1);
    let line = out.one_error_line();
    assert!(
        line.contains("serving 8 backup connections already") && line.contains("try again later"),
        "PR-23: {line}"
    );
    assert!(
        !dir.path().join("backup").exists(),
        "PR-23: the refused run wrote nothing"
    );
    drop(open);
    let mut tries = 0;
    while backup_from(&addr, &dir.path().join("backup"), &[]).code != Some(0) {
        tries += 1;
        assert!(
            tries < 50,
            "PR-23: the closed connections were never counted out"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_same_as_server(&dir.path().join("backup"), &server);
}
