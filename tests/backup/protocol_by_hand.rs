//! The protocol, spoken by hand to the real server.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::ServerProcess;

/// SIGTERM, then waits at most `limit` for the exit code.
fn terminate_within(server: &mut ServerProcess, limit: Duration) -> Option<i32> {
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            start.elapsed() < limit,
            "the server did not stop in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The checkpointed tx of a store's metadata (ST-10: offset 32).
fn checkpoint_tx(store: &Path) -> u64 {
    let meta = std::fs::read(store.join("neostore.meta")).unwrap();
    u64::from_le_bytes(meta[32..40].try_into().unwrap())
}

/// Hello and welcome; returns the welcome's fields after the version.
fn handshake(w: &mut Wire) -> Vec<u8> {
    w.send(&hello(1));
    let body = w.recv().expect("a welcome");
    assert_eq!(body[0], kind::WELCOME);
    body
}

/// Reads a whole full backup after its full start: the files (checked against their CRCs)
/// and the transactions; returns (files, transactions, end's last tx, end's digest).
fn read_full_backup(w: &mut Wire, files: u32) -> (Vec<(String, u64)>, u64, u64, String) {
    let mut names = Vec::new();
    for _ in 0..files {
        let start = w.recv().unwrap();
        assert_eq!(start[0], kind::FILE_START);
        let mut f = Fields(&start[1..]);
        let (name, len) = (f.string(), f.u64());
        let (mut got, mut crc) = (0u64, 0u32);
        loop {
            let body = w.recv().unwrap();
            match body[0] {
                kind::FILE_CHUNK => {
                    assert!(body.len() - 1 <= 1 << 20, "PR-11: chunks of at most 1 MiB");
                    crc = crc32c::crc32c_append(crc, &body[1..]);
                    got += body.len() as u64 - 1;
                }
                kind::FILE_END => {
                    assert_eq!(Fields(&body[1..]).u32(), crc, "{name}");
                    break;
                }
                other => panic!("kind {other} inside {name}"),
            }
        }
        assert_eq!(got, len, "{name}");
        names.push((name, len));
    }
    let mut txs = 0;
    loop {
        let body = w.recv().unwrap();
        match body[0] {
            kind::TX => txs += 1,
            kind::END => {
                let mut f = Fields(&body[1..]);
                return (names, txs, f.u64(), f.digest());
            }
            other => panic!("kind {other} after the files"),
        }
    }
}

/// Reads transactions up to the end frame; returns (transactions, last tx, digest).
fn read_txs(w: &mut Wire) -> (u64, u64, String) {
    let mut txs = 0;
    loop {
        let body = w.recv().unwrap();
        match body[0] {
            kind::TX => txs += 1,
            kind::END => {
                let mut f = Fields(&body[1..]);
                let r = (txs, f.u64(), f.digest());
                assert!(f.is_empty());
                return r;
            }
            other => panic!("kind {other} where transactions or the end were expected"),
        }
    }
}

// PR-1, PR-2, PR-3, PR-4, PR-5, PR-7, PR-10, PR-11, PR-13, PR-14, PR-15: the handshake, a
// full and incremental requests, and every refusal, spoken frame by frame to the real server;
// damaged first frames end the connection; afterwards the server still serves a backup.
#[test]
fn pr_4_the_protocol_spoken_by_hand() {
    let dir = scratch();
    let store = dir.path().join("db");
    let config = pruning_config();
    let server = ServerProcess::start(&store, Some(&config));
    let addr = server.backup.clone().unwrap();
    let mut digests = BTreeMap::new();
    write_recorded(&server, 3, 16, &mut digests);
    let st = status(&server);
    let id = s(&st["store_id"]);

    // PR-4: the welcome says what GET /db/data/ says, and the record files' size.
    let mut w = Wire::connect(&addr);
    let welcome = handshake(&mut w);
    let mut f = Fields(&welcome[1..]);
    assert_eq!(f.u32(), 1, "protocol version");
    assert_eq!(f.store_id(), id);
    assert_eq!(f.u32().to_string(), s(&st["format_version"]));
    assert_eq!(f.u64(), 3);
    assert_eq!(f.u64(), st["oldest_logged_tx"].as_u64().unwrap());
    assert_eq!(f.u64(), record_file_bytes(&store));
    assert!(f.is_empty());

    // PR-10: a full request checkpoints at C (the last tx) and starts with the state at C.
    assert!(checkpoint_tx(&store) < 3);
    w.send(&[kind::REQUEST_FULL]);
    let start = w.recv().unwrap();
    assert_eq!(start[0], kind::FULL_START);
    let mut f = Fields(&start[1..]);
    assert_eq!(f.u64(), 3, "PR-10: the checkpoint tx C is the last tx");
    assert_eq!(f.digest(), digests[&3], "PR-10: the state at C");
    assert_eq!(f.u64(), 3, "nodes");
    assert_eq!(f.u64(), 0, "relationships");
    let (_next_node, _next_rel, _next_block) = (f.u64(), f.u64(), f.u64());
    let files = f.u32();
    assert_eq!(files, 3);
    assert_eq!(
        checkpoint_tx(&store),
        3,
        "PR-10: the server checkpointed at C"
    );
    // PR-11, PR-13: the record files, then no transaction after C, then the end at U = C.
    let (names, txs, last, digest) = read_full_backup(&mut w, files);
    let mut got: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "neostore.nodestore.db",
            "neostore.propertystore.db",
            "neostore.relationshipstore.db"
        ]
    );
    assert_eq!((txs, last, digest.as_str()), (0, 3, digests[&3].as_str()));

    // PR-5, PR-15: more requests on the same connection; at N = U the end comes at once.
    w.send(&incremental_request(&id, 2, 3, &digests[&3]));
    assert_eq!(
        read_txs(&mut w),
        (0, 3, digests[&3].clone()),
        "PR-5, PR-15: a second request on the connection, nothing new"
    );
    w.send(&incremental_request(&id, 2, 1, &digests[&1]));
    assert_eq!(
        read_txs(&mut w),
        (2, 3, digests[&3].clone()),
        "PR-5: a third request on the connection"
    );

    // PR-14: a digest at N that differs: code 5 with the server's digest at N; PR-7: the
    // connection stays open for the fallback.
    w.send(&incremental_request(&id, 2, 2, &digests[&1]));
    let r = w.recv().unwrap();
    let mut f = Fields(&r[1..]);
    assert_eq!((r[0], f.u8()), (kind::REFUSED, 5));
    assert_eq!((f.u64(), f.u64(), f.u8()), (2, 3, 1));
    assert_eq!(f.digest(), digests[&2]);
    assert!(f.is_empty());
    // N beyond the server's last tx: code 5 without a digest.
    w.send(&incremental_request(&id, 2, 10, &digests[&3]));
    let r = w.recv().unwrap();
    let mut f = Fields(&r[1..]);
    assert_eq!(
        (r[0], f.u8(), f.u64(), f.u64(), f.u8()),
        (kind::REFUSED, 5, 10, 3, 0)
    );
    assert!(f.is_empty());
    w.send(&[kind::REQUEST_FULL]);
    assert_eq!(w.recv().unwrap()[0], kind::FULL_START);
    let (_, _, last, _) = read_full_backup(&mut w, 3);
    assert_eq!(last, 3);
    drop(w);

    // PR-14: another store (code 2, even when the format differs too), another format (3).
    let other = {
        let (a, b) = id.split_once('-').unwrap();
        format!("{a}-{:016x}", u64::from_str_radix(b, 16).unwrap() ^ 1)
    };
    for (store_id, format, code) in [(&other, 2, 2), (&other, 1, 2), (&id, 1, 3)] {
        let mut w = Wire::connect(&addr);
        handshake(&mut w);
        w.send(&incremental_request(store_id, format, 3, &digests[&3]));
        let r = w.recv().unwrap();
        let mut f = Fields(&r[1..]);
        assert_eq!((r[0], f.u8()), (kind::REFUSED, code));
        if code == 2 {
            assert_eq!(f.store_id(), id);
        } else {
            assert_eq!(f.u32(), 2);
        }
        assert!(f.is_empty());
    }

    // PR-14: pruned logs: code 4 with the tx needed and the oldest the server has; PR-7: the
    // connection stays open.
    let mut i = 0;
    while status(&server)["oldest_logged_tx"].as_u64().unwrap() <= 2 {
        write_recorded(&server, 1, 1000, &mut digests);
        i += 1;
        assert!(i < 1000, "the logs were never pruned");
    }
    let st = status(&server);
    let (last, oldest) = (tx(&st), st["oldest_logged_tx"].as_u64().unwrap());
    let mut w = Wire::connect(&addr);
    handshake(&mut w);
    w.send(&incremental_request(&id, 2, 1, &digests[&1]));
    let r = w.recv().unwrap();
    let mut f = Fields(&r[1..]);
    assert_eq!(
        (r[0], f.u8(), f.u64(), f.u64()),
        (kind::REFUSED, 4, 2, oldest)
    );
    assert!(f.is_empty());
    w.send(&incremental_request(&id, 2, last, &digests[&last]));
    assert_eq!(read_txs(&mut w), (0, last, digests[&last].clone()));
    drop(w);

    // PR-3: another protocol version is refused with the server's (code 1), then closed.
    let mut w = Wire::connect(&addr);
    w.send(&hello(99));
    let r = w.recv().unwrap();
    let mut f = Fields(&r[1..]);
    assert_eq!((r[0], f.u8(), f.u32()), (kind::REFUSED, 1, 1));
    assert!(w.closed_without_answer());
    // PR-3, PR-1, PR-2: a first frame that is not a hello, a bad magic, trailing bytes, a
    // length of 0 or over the maximum, a wrong checksum: the server closes without a word.
    let mut bad_magic = hello(1);
    bad_magic[1] = b'X';
    let mut trailing = hello(1);
    trailing.push(0);
    let mut bad_crc = frame(&hello(1));
    bad_crc[4] ^= 1;
    for raw in [
        frame(&[kind::REQUEST_FULL]),
        frame(&bad_magic),
        frame(&trailing),
        vec![0, 0, 0, 0, 0, 0, 0, 0],
        vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        bad_crc,
    ] {
        let mut w = Wire::connect(&addr);
        std::io::Write::write_all(&mut w.s, &raw).unwrap();
        assert!(w.closed_without_answer(), "{raw:?}");
    }
    let b = dir.path().join("backup");
    backup_from(&addr, &b, &[]).expect(0);
    assert_same_as_server(&b, &server);
}

// PR-20, PR-6, PR-10, PR-17, PR-19, BK-34: a client that stops reading in the middle of a
// full backup does not stop the server: commits go on (the store lock is not held while the
// service waits on the network), and the logs from the checkpoint on stay pinned while the
// connection lives; the pin goes with the connection. At shutdown the server closes a backup
// connection in flight and stops cleanly, losing nothing.
#[test]
fn pr_20_a_stalled_backup_does_not_stop_commits_and_its_pin_goes_with_it() {
    let dir = scratch();
    let store = dir.path().join("db");
    generate(&store, 60_000, &[]);
    let config = pruning_config();
    let mut server = ServerProcess::start(&store, Some(&config));
    let addr = server.backup.clone().unwrap();
    let mut w = Wire::connect(&addr);
    handshake(&mut w);
    w.send(&[kind::REQUEST_FULL]);
    let start = w.recv().unwrap();
    assert_eq!(start[0], kind::FULL_START);
    let c = Fields(&start[1..]).u64();
    assert_eq!(w.recv().unwrap()[0], kind::FILE_START);
    assert_eq!(w.recv().unwrap()[0], kind::FILE_CHUNK);
    // The client reads nothing more; the server commits on and rotates its logs.
    for i in 0..60 {
        write_node(&server.http, i, 1000);
    }
    let st = status(&server);
    assert_eq!(tx(&st), c + 60);
    let logs = names(&store)
        .iter()
        .filter(|n| n.starts_with("neostore.transaction.db."))
        .count();
    assert!(logs >= 3, "rotated {logs} files");
    assert!(
        st["oldest_logged_tx"].as_u64().unwrap() <= c + 1,
        "the logs after the checkpoint are pinned: {st}"
    );
    drop(w);
    // A connection that fails other than by a TLS refusal is logged as failed (SEC-6 logs a
    // refusal once, and only a refusal is not logged again).
    let log = server.wait_for_stderr("the backup connection from 127.0.0.1:");
    assert!(
        log.contains(" failed: "),
        "SEC-6: the dropped connection is logged as failed: {log}"
    );
    let mut i = 0;
    while status(&server)["oldest_logged_tx"].as_u64().unwrap() <= c + 1 {
        write_node(&server.http, i, 1000);
        i += 1;
        assert!(i < 1000, "PR-5, PR-17: the pin outlived its connection");
    }
    // PR-19: shutdown with a backup connection in flight.
    let mut w = Wire::connect(&addr);
    handshake(&mut w);
    w.send(&[kind::REQUEST_FULL]);
    assert_eq!(w.recv().unwrap()[0], kind::FULL_START);
    let acknowledged = status(&server);
    assert_eq!(
        terminate_within(&mut server, Duration::from_secs(30)),
        Some(0)
    );
    let mut rest = Vec::new();
    match std::io::Read::read_to_end(&mut w.s, &mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    drop(server);
    let report = check_json(&store);
    assert_eq!(
        (tx(&report), &report["digest"]),
        (tx(&acknowledged), &acknowledged["digest"])
    );
}
