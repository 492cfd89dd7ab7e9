//! Verification: what `-verify` did, a record damaged in transit, and a digest that does not
//! match the server's end frame.

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::ServerProcess;

// BK-26, BK-27, BK-9: what -verify did is in the summary: a full scan after a full backup by
// default, none with false, the records written after an incremental, a full scan with full.
#[test]
fn bk_26_verify_modes_are_reported_in_the_summary() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let (b1, b2) = (dir.path().join("b1"), dir.path().join("b2"));
    write_nodes(&server, 3);
    let scan = "verifying: scanning every record";
    let out = backup_from(&addr, &b1, &["-verify", "false"]).expect(0);
    assert!(
        out.summary().contains("not verified (-verify false)"),
        "{out:#?}"
    );
    assert!(!out.stdout.contains(scan), "{out:#?}");
    let out = backup_from(&addr, &b2, &[]).expect(0);
    assert!(
        out.summary().contains("verified (full scan and digest)"),
        "{out:#?}"
    );
    assert!(out.stdout.contains(scan), "{out:#?}");
    for (more, says, scans) in [
        (&[][..], "verified (records written and digest)", false),
        (
            &["-verify", "full"][..],
            "verified (full scan and digest)",
            true,
        ),
        (
            &["--verify", "false"][..],
            "not verified (-verify false)",
            false,
        ),
        (
            &["-verify", "true"][..],
            "verified (records written and digest)",
            false,
        ),
    ] {
        write_nodes(&server, 2);
        let out = backup_from(&addr, &b1, more).expect(0);
        assert!(out.summary().contains("incremental backup"), "{out:#?}");
        assert!(out.summary().contains(says), "{more:?}: {out:#?}");
        assert_eq!(out.stdout.contains(scan), scans, "{more:?}: {out:#?}");
        assert_same_as_server(&b1, &server);
    }
}

/// A proxy for one connection that flips one byte of node 0's record in the node store as it
/// is copied, and fixes the file's CRC to match, so that only a scan of the records can tell.
fn corrupting_proxy(upstream: &str) -> Proxy {
    let (mut in_nodes, mut flipped, mut crc) = (false, false, 0u32);
    Proxy::start(upstream, move |body| {
        match body[0] {
            kind::FILE_START => {
                in_nodes = Fields(&body[1..]).string() == "neostore.nodestore.db";
                crc = 0;
            }
            kind::FILE_CHUNK if in_nodes => {
                if !flipped {
                    body[1 + 1] ^= 0x40;
                    flipped = true;
                }
                crc = crc32c::crc32c_append(crc, &body[1..]);
            }
            kind::FILE_END if in_nodes => body[1..5].copy_from_slice(&crc.to_le_bytes()),
            _ => {}
        }
        Action::Pass
    })
}

// BK-26, BK-28, BK-17, BK-40: a record damaged in transit (with every CRC of the stream made to
// match) is caught by the full scan of `-verify true` (exit 6, the previous backup stays live
// and as it was); `-verify false` skips that scan and trusts the stream, so only `neo4j-admin
// check` finds the damage; a later `--type full` replaces it.
#[test]
fn bk_26_the_full_scan_catches_a_record_damaged_in_transit() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let upstream = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(&upstream, &b, &[]).expect(0);
    let proxy = corrupting_proxy(&upstream);
    let line = refused(&proxy.addr, &b, &["--type", "full"], 6);
    assert!(line.contains("verification failed"), "{line}");
    assert_eq!(current(&b), "generation-1");
    let fresh = dir.path().join("unverified");
    let proxy = corrupting_proxy(&upstream);
    backup_from(&proxy.addr, &fresh, &["-verify", "false"]).expect(0);
    let out = admin(&["check", path(&fresh)]);
    assert_eq!(out.code, Some(3), "{out:#?}");
    backup_from(&upstream, &fresh, &["--type", "full"]).expect(0);
    assert_same_as_server(&fresh, &server);
}

/// A proxy that changes the digest of every end frame (PR-2: kind, last tx, digest).
fn lying_proxy(upstream: &str) -> Proxy {
    Proxy::start(upstream, |body| {
        if body[0] == kind::END {
            body[9] ^= 0x80;
        }
        Action::Pass
    })
}

// BK-28, BK-20, BK-25, BK-12, BK-40: when the backup's digest does not match the server's end
// frame (whatever -verify says), a full backup exits 6 and leaves the previous backup live and
// as it was; an incremental one exits 6 and marks the backup unverified, so that `--type
// incremental` then exits 7 and `auto` takes a full backup.
#[test]
fn bk_28_verification_failure_exits_6() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let upstream = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(&upstream, &b, &[]).expect(0);
    write_nodes(&server, 3);
    let liar = lying_proxy(&upstream);
    for more in [
        &["--type", "full"][..],
        &["--type", "full", "-verify", "false"][..],
    ] {
        let line = refused(&liar.addr, &b, more, 6);
        assert!(line.contains("verification failed"), "{line}");
    }
    assert_eq!(current(&b), "generation-1");
    let out = backup_from(&liar.addr, &b, &["-verify", "false"]).expect(6);
    assert!(
        out.one_error_line().contains("verification failed"),
        "{out:#?}"
    );
    let line = refused(&upstream, &b, &["--type", "incremental"], 7);
    assert!(line.contains("unverified"), "{line}");
    let out = backup_from(&upstream, &b, &[]).expect(0);
    assert!(out.stdout.contains("marked unverified"), "{out:#?}");
    assert!(out.summary().contains("full backup"), "{out:#?}");
    assert_same_as_server(&b, &server);
    write_nodes(&server, 1);
    let out = backup_from(&upstream, &b, &[]).expect(0);
    assert!(out.summary().contains("incremental backup"), "{out:#?}");
}
