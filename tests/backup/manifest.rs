//! The manifest of a backup generation (spec/manifest.md): hashing real files into blocks and
//! naming each kind of damage by file and block.

use online_backup::backup::manifest::{
    hash_file, verify, BlockHasher, FileEntry, Finding, Manifest, Pending, Verification,
    BLOCK_SIZE, MANIFEST_FILE, TO_END,
};
use online_backup::digest::Digest;
use online_backup::store::format::FormatVersion;
use online_backup::store::meta::StoreId;

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::server::ServerProcess;
use crate::support::{fs, scratch};

const BLOCK: u32 = 4096;

/// A directory of two files, the first two and a half blocks long, and its manifest.
fn generation() -> (tempfile::TempDir, Manifest) {
    let dir = scratch();
    let long: Vec<u8> = (0..BLOCK as usize * 5 / 2).map(|i| (i * 7) as u8).collect();
    std::fs::write(dir.path().join("neostore.nodestore.db"), &long).unwrap();
    std::fs::write(dir.path().join("neostore.meta"), b"short").unwrap();
    let files = ["neostore.meta", "neostore.nodestore.db"]
        .iter()
        .map(|name| hash_file(&*fs(), dir.path(), name, BLOCK).unwrap())
        .collect();
    let manifest = Manifest {
        block_size: BLOCK,
        store_id: StoreId {
            created_millis: 1,
            random: 2,
        },
        format: FormatVersion::CURRENT,
        first_tx: 0,
        last_tx: 0,
        digest: Digest([0; 32]),
        created_millis: 1,
        written_millis: 1,
        verification: Verification::Full,
        last_full_verification: None,
        scrub_cursor: 0,
        scrubbed_since_full: 0,
        source: "localhost:6362".to_string(),
        tool_version: "test".to_string(),
        files,
        pending: Pending::default(),
    };
    manifest.write(&*fs(), dir.path()).unwrap();
    (dir, manifest)
}

#[test]
fn mf_3_a_file_is_hashed_block_by_block() {
    let (dir, manifest) = generation();
    let bytes = std::fs::read(dir.path().join("neostore.nodestore.db")).unwrap();
    let f = &manifest.files[1];
    assert_eq!((f.size, f.blocks.len()), (bytes.len() as u64, 3), "MF-3");
    for (i, chunk) in bytes.chunks(BLOCK as usize).enumerate() {
        assert_eq!(
            &f.blocks[i],
            blake3::hash(chunk).as_bytes(),
            "MF-3: block {i}"
        );
    }
    assert_eq!(
        Manifest::read(&*fs(), dir.path()).unwrap(),
        Some(manifest),
        "MF-1: written and read back"
    );
}

#[test]
fn mf_4_each_kind_of_damage_is_named_by_file_and_block() {
    let nodes = "neostore.nodestore.db";
    type Damage = fn(&std::path::Path);
    let cases: [(&str, Damage, Finding); 6] = [
        (
            "a flipped byte in block 1",
            |p| {
                let mut b = std::fs::read(p).unwrap();
                b[BLOCK as usize + 17] ^= 1;
                std::fs::write(p, b).unwrap();
            },
            Finding::Block {
                file: nodes.into(),
                block: 1,
                offset: BLOCK as u64,
            },
        ),
        (
            "a flipped byte in the last, short block",
            |p| {
                let mut b = std::fs::read(p).unwrap();
                let last = b.len() - 1;
                b[last] ^= 0x80;
                std::fs::write(p, b).unwrap();
            },
            Finding::Block {
                file: nodes.into(),
                block: 2,
                offset: 2 * BLOCK as u64,
            },
        ),
        (
            "truncated inside block 1",
            |p| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(BLOCK as u64 + 10).unwrap();
            },
            Finding::Truncated {
                file: nodes.into(),
                size: BLOCK as u64 + 10,
                listed: BLOCK as u64 * 5 / 2,
                block: 1,
            },
        ),
        (
            "extended",
            |p| {
                let f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                std::io::Write::write_all(&mut &f, b"more").unwrap();
            },
            Finding::Extended {
                file: nodes.into(),
                size: BLOCK as u64 * 5 / 2 + 4,
                listed: BLOCK as u64 * 5 / 2,
                block: 2,
            },
        ),
        (
            "removed",
            |p| std::fs::remove_file(p).unwrap(),
            Finding::Missing { file: nodes.into() },
        ),
        (
            "a file the manifest does not list",
            |p| std::fs::write(p.with_file_name("stray"), b"x").unwrap(),
            Finding::Unlisted {
                file: "stray".into(),
            },
        ),
    ];
    for (case, damage, want) in cases {
        let (dir, manifest) = generation();
        std::fs::write(dir.path().join(format!("{MANIFEST_FILE}.tmp")), b"left").unwrap();
        let before = verify(&*fs(), dir.path(), &manifest).unwrap();
        assert_eq!(
            (before.findings, before.blocks_checked),
            (vec![], 4),
            "MF-4: {case}: nothing before the damage (the manifest's own files are not listed)"
        );
        damage(&dir.path().join(nodes));
        assert_eq!(
            verify(&*fs(), dir.path(), &manifest).unwrap().findings,
            vec![want],
            "MF-4: {case}"
        );
    }
}

#[test]
fn mf_3_a_file_hashed_as_it_is_written_equals_one_hashed_from_disk() {
    let (dir, manifest) = generation();
    let bytes = std::fs::read(dir.path().join("neostore.nodestore.db")).unwrap();
    // Pieces that straddle block boundaries, as chunks of a copy do.
    for piece in [1, 7, 1000, BLOCK as usize, BLOCK as usize + 3] {
        let mut h = BlockHasher::new(BLOCK);
        for chunk in bytes.chunks(piece) {
            h.update(chunk);
        }
        assert_eq!(
            h.finish("neostore.nodestore.db"),
            manifest.files[1],
            "MF-3: written in pieces of {piece} bytes"
        );
    }
    assert_eq!(
        BlockHasher::new(BLOCK).finish("empty").blocks.len(),
        0,
        "MF-3: an empty file has no blocks"
    );
}

#[test]
fn mf_5_pending_blocks_are_not_checked_and_a_refresh_rehashes_exactly_them() {
    let nodes = "neostore.nodestore.db";
    let (dir, mut manifest) = generation();
    let path = dir.path().join(nodes);
    let mut b = std::fs::read(&path).unwrap();
    b[17] ^= 1; // block 0: a change the run declared
    b[BLOCK as usize + 1] ^= 1; // block 1: damage it did not declare
    b.extend_from_slice(&[5; BLOCK as usize]); // growth, declared below
    std::fs::write(&path, &b).unwrap();
    std::fs::write(dir.path().join("neostore.transaction.db.3"), b"new log").unwrap();
    assert!(manifest.pending.add(nodes, 0, 0), "MF-5: a new range");
    assert!(!manifest.pending.add(nodes, 0, 0), "MF-5: already pending");
    assert!(manifest.pending.add(nodes, 3, TO_END), "MF-5");
    manifest.pending.new_files = true;
    // The undeclared damage, which every verification must find.
    let damage = vec![Finding::Block {
        file: nodes.into(),
        block: 1,
        offset: BLOCK as u64,
    }];
    let report = verify(&*fs(), dir.path(), &manifest).unwrap();
    assert_eq!(
        report.findings, damage,
        "MF-5: damage outside the pending blocks is still found, the pending ones are not checked"
    );
    assert_eq!(report.unchecked.len(), 2, "MF-5: {:?}", report.unchecked);
    assert!(
        report.unchecked.iter().any(|u| u.starts_with(&format!(
            "{nodes}: 1 block(s) an unfinished run may have changed"
        ))),
        "MF-5: the listed blocks left unchecked are counted: {:?}",
        report.unchecked
    );
    // Written with its pending section and read back.
    manifest.write(&*fs(), dir.path()).unwrap();
    assert_eq!(
        Manifest::read(&*fs(), dir.path()).unwrap().as_ref(),
        Some(&manifest),
        "MF-1: the pending section round-trips"
    );
    manifest.refresh(&*fs(), dir.path()).unwrap();
    assert!(manifest.pending.is_empty(), "MF-5: a refresh clears it");
    let report = verify(&*fs(), dir.path(), &manifest).unwrap();
    assert_eq!(
        report.findings, damage,
        "MF-5: a refresh rehashes the declared blocks, the growth and the new file, never the undeclared damage"
    );
    assert!(
        manifest.file("neostore.transaction.db.3").is_some(),
        "MF-5: a new file is listed after a refresh"
    );
    // A pending block inside the file's size: not read, counted; every other byte is read.
    let mut inside = manifest.clone();
    inside.pending.add(nodes, 1, 1);
    let report = verify(&*fs(), dir.path(), &inside).unwrap();
    assert!(
        report.findings.is_empty()
            && report.unchecked.len() == 1
            && report.unchecked[0].starts_with(&format!(
                "{nodes}: 1 block(s) an unfinished run may have changed"
            )),
        "MF-5: {report:?}"
    );
    let listed: u64 = inside.files.iter().map(|f| f.size).sum();
    assert_eq!(
        report.bytes_read,
        listed - BLOCK as u64,
        "MF-9: every listed byte but the pending block's is read"
    );
    // A size change nobody declared is refused, not blessed.
    manifest.pending.add(nodes, 0, 0);
    std::fs::write(&path, &b[..100]).unwrap();
    assert!(
        manifest.refresh(&*fs(), dir.path()).is_err(),
        "MF-5: a size change outside the pending ranges is damage"
    );
}

/// `neo4j-admin check --quick --json DIR`, which must exit `code`.
fn quick_json(dir: &std::path::Path, code: i32) -> serde_json::Value {
    let out = admin(&["check", "--quick", "--json", path(dir)]).expect(code);
    serde_json::from_str(&out.stdout).expect("check --quick --json prints JSON")
}

/// The live generation of the backup in `dir`.
fn live(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(current(dir))
}

// MF-6, MF-8: a full backup writes its generation's manifest before the pointer names it, and
// each incremental (some of them with nothing new, one verifying in full) leaves it describing
// the files exactly: `check --quick` finds every block as listed, at the backup's tx and digest.
#[test]
fn mf_6_mf_8_every_backup_run_leaves_a_manifest_that_matches_its_generation() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 10);
    let b = dir.path().join("backup");
    backup_from(&addr, &b, &[]).expect(0);
    let mut history = std::collections::BTreeMap::new();
    for round in 0..4 {
        let q = quick_json(&b, 0);
        let now = status(&server);
        assert_eq!(q["intact"], true, "MF-6: round {round}: {q}");
        assert_eq!(
            q["not_checked"],
            serde_json::json!([]),
            "MF-8: round {round}: {q}"
        );
        assert_eq!(
            q["last_tx"], now["last_committed_tx"],
            "MF-6: round {round}: {q}"
        );
        assert_eq!(q["digest"], now["digest"], "MF-6: round {round}: {q}");
        assert_eq!(q["blocks_checked"], q["blocks"], "MF-6: round {round}: {q}");
        let m = Manifest::read(&*fs(), &live(&b)).unwrap().unwrap();
        assert_eq!(m.source, addr, "MF-6: the source");
        assert_eq!(m.tool_version, env!("CARGO_PKG_VERSION"), "MF-6");
        match round {
            0 => assert_eq!(
                (m.verification, m.last_full_verification.map(|v| v.1)),
                (Verification::Full, Some(m.last_tx)),
                "MF-6: a full backup verified in full"
            ),
            3 => assert_eq!(
                (m.verification, m.last_full_verification.map(|v| v.1)),
                (Verification::Full, Some(m.last_tx)),
                "MF-8: -verify full is recorded"
            ),
            _ => assert_eq!(m.verification, Verification::Touched, "MF-8: round {round}"),
        }
        // Records written all over the store: new nodes and a large property each.
        write_recorded(&server, 5, 3000, &mut history);
        let more: &[&str] = if round == 2 {
            &["-verify", "full"]
        } else {
            &[]
        };
        backup_from(&addr, &b, more).expect(0);
        // And once with nothing new, which must leave the manifest as it was, but for what its
        // scrub read (MF-11).
        if round == 1 {
            let before = std::fs::read(live(&b).join(MANIFEST_FILE)).unwrap();
            backup_from(&addr, &b, &["--scrub-budget", "0%"]).expect(0);
            assert_eq!(
                std::fs::read(live(&b).join(MANIFEST_FILE)).unwrap(),
                before,
                "MF-8: an incremental with nothing new rewrites nothing"
            );
            let was = Manifest::decode(&before).unwrap();
            backup_from(&addr, &b, &[]).expect(0);
            let now = Manifest::read(&*fs(), &live(&b)).unwrap().unwrap();
            assert_eq!(
                Manifest {
                    scrub_cursor: was.scrub_cursor,
                    scrubbed_since_full: was.scrubbed_since_full,
                    written_millis: was.written_millis,
                    ..now.clone()
                },
                was,
                "MF-8, MF-11: nothing new: only the scrub's progress changes"
            );
            assert!(
                now.scrubbed_since_full > was.scrubbed_since_full,
                "MF-11: the scrub read some blocks"
            );
        }
    }
}

/// A backup of a small store, and the names of its generation's files.
fn small_backup(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
    let server = ServerProcess::start(&dir.join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 30);
    let b = dir.join("backup");
    backup_from(&addr, &b, &[]).expect(0);
    write_nodes(&server, 5);
    backup_from(&addr, &b, &[]).expect(0);
    let files = names(&live(&b))
        .into_iter()
        .filter(|n| n != MANIFEST_FILE)
        .collect();
    (b, files)
}

// MF-9: `check --quick` names each kind of damage by file and block, in every file of the
// generation, and exits 3; a damaged manifest exits 3 too; an intact backup exits 0.
#[test]
fn mf_9_check_quick_names_every_damaged_file_and_block() {
    let dir = scratch();
    let (b, files) = small_backup(dir.path());
    assert!(files.len() >= 5, "MF-6: {files:?}");
    let gen = current(&b);
    let mut n = 0;
    let mut case = |what: &str, damage: &dyn Fn(&std::path::Path), says: &str| {
        n += 1;
        let copy = dir.path().join(format!("case-{n}"));
        copy_tree(&b, &copy);
        damage(&copy.join(&gen));
        let out = admin(&["check", "--quick", path(&copy)]);
        assert_eq!(out.code, Some(3), "MF-9: {what}: {out:#?}");
        // The finding on stderr, and in the report (there is none when the manifest itself is
        // unreadable).
        let unreadable = what == "the manifest damaged";
        assert!(
            out.one_error_line().contains(says)
                && (out.stdout.contains(says) || unreadable && out.stdout.is_empty()),
            "MF-9: {what}: wants {says:?}: {out:#?}"
        );
    };
    let mut flipped = 0;
    let mut empty = 0;
    for name in &files {
        let len = std::fs::metadata(b.join(&gen).join(name)).unwrap().len();
        if len == 0 {
            // A file of no bytes has no block to flip; its truncation or extension is the
            // manifest's business like any other file's.
            empty += 1;
            continue;
        }
        flipped += 1;
        let at = len / 2;
        let block = at / BLOCK_SIZE as u64;
        case(
            &format!("a flipped byte in {name}"),
            &|g| {
                let p = g.join(name);
                let mut bytes = std::fs::read(&p).unwrap();
                bytes[at as usize] ^= 0x04;
                std::fs::write(&p, bytes).unwrap();
            },
            &format!("{name}: block {block} "),
        );
    }
    let nodes = "neostore.nodestore.db";
    case(
        "truncated",
        &|g| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(g.join(nodes))
                .unwrap();
            f.set_len(10).unwrap();
        },
        &format!("{nodes} is truncated: 10 bytes where the manifest lists"),
    );
    let nodes_len = std::fs::metadata(b.join(&gen).join(nodes)).unwrap().len();
    case(
        "truncated inside a later block",
        &|g| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(g.join(nodes))
                .unwrap();
            f.set_len(nodes_len - 1).unwrap();
        },
        &format!("(from block {})", (nodes_len - 1) / BLOCK_SIZE as u64),
    );
    case(
        "extended",
        &|g| {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(g.join(nodes))
                .unwrap();
            std::io::Write::write_all(&mut &f, b"tail").unwrap();
        },
        &format!(
            "{nodes} is extended: {} bytes where the manifest lists {nodes_len} (from block {})",
            nodes_len + 4,
            nodes_len / BLOCK_SIZE as u64
        ),
    );
    case(
        "removed",
        &|g| std::fs::remove_file(g.join(nodes)).unwrap(),
        &format!("{nodes} is missing"),
    );
    case(
        "a stray file",
        &|g| std::fs::write(g.join("neostore.extra"), b"x").unwrap(),
        "neostore.extra is not in the manifest",
    );
    case(
        "the manifest damaged",
        &|g| {
            let p = g.join(MANIFEST_FILE);
            let mut bytes = std::fs::read(&p).unwrap();
            bytes[40] ^= 1;
            std::fs::write(&p, bytes).unwrap();
        },
        "the manifest is damaged",
    );
    // backup-info of a backup whose manifest is damaged says so, and still exits 0: it could
    // describe the directory.
    let damaged = dir.path().join(format!("case-{n}"));
    let info = admin(&["backup-info", path(&damaged)]).expect(0);
    assert!(
        info.stdout
            .contains("manifest:              its manifest is damaged"),
        "MF-13: {info:#?}"
    );
    assert!(
        flipped >= 4 && flipped + empty == files.len(),
        "MF-9: a byte flipped in every file of the generation that has one ({flipped} of {files:?})"
    );
    assert_eq!(n, flipped + 6, "MF-9: every case ran");
    // Nothing damaged: exit 0, every block read.
    let out = admin(&["check", "--quick", path(&b)]).expect(0);
    assert!(
        out.stdout.contains("intact:            yes"),
        "MF-9: {out:#?}"
    );
    // A store without a manifest cannot be checked quickly: exit 1, saying so.
    let plain = dir.path().join("db");
    let out = admin(&["check", "--quick", path(&plain)]).expect(1);
    assert!(
        out.one_error_line().contains("has no MANIFEST"),
        "MF-9: {out:#?}"
    );
}

// MF-10: restore verifies the manifest first and refuses a damaged backup with exit 3, naming
// the file and block, restoring nothing.
#[test]
fn mf_10_restore_refuses_a_backup_its_manifest_finds_damaged() {
    let dir = scratch();
    let (b, _) = small_backup(dir.path());
    let p = live(&b).join("neostore.propertystore.db");
    let mut bytes = std::fs::read(&p).unwrap();
    let at = bytes.len() - 1;
    bytes[at] ^= 0x01;
    std::fs::write(&p, bytes).unwrap();
    let line = restore_refused(&b, &dir.path().join("restored"), "a damaged record file");
    assert!(
        line.contains("damaged") && line.contains("neostore.propertystore.db: block"),
        "MF-10: {line}"
    );
}

// MF-10, ADM-8: a backup whose manifest itself does not decode is refused the same way: exit 3,
// one sentence naming the manifest, nothing restored.
#[test]
fn mf_10_restore_refuses_a_backup_whose_manifest_is_damaged() {
    let dir = scratch();
    let (b, _) = small_backup(dir.path());
    let m = live(&b).join(MANIFEST_FILE);
    let mut bytes = std::fs::read(&m).unwrap();
    bytes[60] ^= 0x80;
    std::fs::write(&m, bytes).unwrap();
    let line = restore_refused(&b, &dir.path().join("restored"), "a damaged manifest");
    assert!(
        line.contains("manifest"),
        "MF-10: the sentence names the manifest: {line}"
    );
}

// MF-7: an incremental into a backup whose manifest is damaged fails with exit 6 and marks the
// backup unverified; the next run takes a full backup, whose new manifest checks.
#[test]
fn mf_7_a_damaged_manifest_fails_the_incremental_and_the_next_run_is_full() {
    let dir = scratch();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 10);
    let b = dir.path().join("backup");
    backup_from(&addr, &b, &[]).expect(0);
    let m = live(&b).join(MANIFEST_FILE);
    let mut bytes = std::fs::read(&m).unwrap();
    bytes[60] ^= 0x80;
    std::fs::write(&m, bytes).unwrap();
    write_nodes(&server, 3);
    let out = backup_from(&addr, &b, &[]).expect(6);
    assert!(out.one_error_line().contains("manifest"), "MF-7: {out:#?}");
    let out = backup_from(&addr, &b, &[]).expect(0);
    assert!(out.summary().contains("full backup"), "MF-7: {out:#?}");
    assert_eq!(quick_json(&b, 0)["intact"], true, "MF-7");
    assert_same_as_server(&b, &server);
}

// MF-11: a scrub reads its slice from the cursor, going round past the last block, names each
// damaged block it reads, and counts what it read since the last full verification.
#[test]
fn mf_11_a_scrub_reads_a_slice_from_its_cursor_and_goes_round() {
    use online_backup::backup::manifest::scrub_slice;
    assert_eq!(
        (
            scrub_slice(100, 2),
            scrub_slice(101, 2),
            scrub_slice(3, 2),
            scrub_slice(3, 0)
        ),
        (2, 3, 1, 0),
        "MF-11: the slice is rounded up, none at 0%"
    );
    assert_eq!(scrub_slice(7, 100), 7, "MF-11: 100% reads every block");
    let (dir, mut manifest) = generation();
    // Blocks: neostore.meta 0 (global 0), neostore.nodestore.db 0, 1, 2 (global 1, 2, 3).
    let nodes = dir.path().join("neostore.nodestore.db");
    let mut b = std::fs::read(&nodes).unwrap();
    b[2 * BLOCK as usize + 5] ^= 1;
    std::fs::write(&nodes, b).unwrap();
    manifest.scrub_cursor = 2;
    let s = manifest.scrub(&*fs(), dir.path(), 3).unwrap();
    assert_eq!(
        (s.from, s.blocks, s.total, s.since_full),
        (2, 3, 4, 3),
        "MF-11: from the cursor"
    );
    assert_eq!(
        s.findings,
        vec![Finding::Block {
            file: "neostore.nodestore.db".into(),
            block: 2,
            offset: 2 * BLOCK as u64
        }],
        "MF-11: the damaged block is named"
    );
    assert_eq!(
        manifest.scrub_cursor, 1,
        "MF-11: it went round past the last block"
    );
    let s = manifest.scrub(&*fs(), dir.path(), 10).unwrap();
    assert_eq!(
        (s.from, s.blocks, s.since_full),
        (1, 4, 4),
        "MF-11: at most every block, counted at most once"
    );
    std::fs::remove_file(&nodes).unwrap();
    let s = manifest.scrub(&*fs(), dir.path(), 4).unwrap();
    assert!(
        s.findings.contains(&Finding::Missing {
            file: "neostore.nodestore.db".into()
        }),
        "MF-11: a missing file is damage: {:?}",
        s.findings
    );
    assert_eq!(
        manifest
            .check_blocks(&*fs(), dir.path(), "neostore.nodestore.db", 0, 2)
            .unwrap(),
        vec![Finding::Missing {
            file: "neostore.nodestore.db".into()
        }],
        "MF-8: a file missing before a run rewrites it is damage, not an I/O error"
    );
}

// MF-11, MF-8: a scrub and the check before a run rewrites blocks read no size first: a file cut
// short inside a listed block is named truncated at the size it has, from that block.
#[test]
fn mf_11_mf_8_a_file_cut_inside_a_block_is_named_truncated_at_its_size() {
    let (dir, mut manifest) = generation();
    let nodes = dir.path().join("neostore.nodestore.db");
    let cut = 2 * BLOCK as u64 + 100;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&nodes)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let truncated = Finding::Truncated {
        file: "neostore.nodestore.db".into(),
        size: cut,
        listed: 5 * BLOCK as u64 / 2,
        block: 2,
    };
    manifest.scrub_cursor = 3;
    let s = manifest.scrub(&*fs(), dir.path(), 1).unwrap();
    assert_eq!(
        (s.findings, s.bytes),
        (vec![truncated.clone()], 100),
        "MF-11: the short block is named with the size the file has"
    );
    assert_eq!(
        manifest
            .check_blocks(&*fs(), dir.path(), "neostore.nodestore.db", 1, 2)
            .unwrap(),
        vec![truncated],
        "MF-8: a block cut short before a run rewrites it is damage"
    );
}

// MF-1, MF-2: the bounds of a manifest's fields are inclusive: a source of 255 bytes, a tool
// version of 64 and 4,096 files are read back; one more of any is refused as damaged.
#[test]
fn mf_2_the_bounds_of_a_manifest_are_inclusive() {
    let (_dir, manifest) = generation();
    let decodes = |m: &Manifest| Manifest::decode(&m.encode()).map(|_| ());
    let with = |source: usize, version: usize, files: usize| {
        let mut m = manifest.clone();
        m.source = "s".repeat(source);
        m.tool_version = "v".repeat(version);
        m.files = (0..files)
            .map(|i| FileEntry {
                name: format!("f{i:05}"),
                size: 0,
                blocks: Vec::new(),
            })
            .collect();
        m
    };
    assert!(
        decodes(&with(255, 64, 4096)).is_ok(),
        "MF-1: a manifest at every bound is read back"
    );
    for (what, m) in [
        ("a source of 256 bytes", with(256, 64, 1)),
        ("a tool version of 65 bytes", with(255, 65, 1)),
        ("4,097 files", with(1, 1, 4097)),
    ] {
        let err = decodes(&m).expect_err(what);
        assert!(
            err.to_string().contains("too"),
            "MF-2: {what} is refused as damaged, saying why: {err}"
        );
    }
}

// MF-11: with --scrub-budget 10%, a flipped byte is found within ten incremental runs: that run
// fails with exit 6 naming the block, the backup is marked unverified and the next run takes a
// full backup; no run reports the backup verified once its scrub has read the damage. MF-8: a
// block an incremental is about to rewrite is checked first, so damage there is found too, not
// taken into the manifest by the rehash.
#[test]
fn mf_11_mf_8_scrubbing_finds_a_flipped_block_within_its_bound() {
    let dir = scratch();
    let db = dir.path().join("db");
    generate(&db, 20_000, &[]);
    let server = ServerProcess::start(&db, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let b = dir.path().join("backup");
    let flip = |name: &str, at: u64| {
        let p = live(&b).join(name);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[at as usize] ^= 0x10;
        std::fs::write(&p, bytes).unwrap();
    };
    let props = "neostore.propertystore.db";
    for case in ["scrub", "rewrite"] {
        backup_from(&addr, &b, &["--type", "full"]).expect(0);
        let len = std::fs::metadata(live(&b).join(props)).unwrap().len();
        assert!(
            len > 4 * BLOCK_SIZE as u64,
            "a store of several blocks: {len}"
        );
        // Block 1 no incremental rewrites (nodes are appended); the last block each one does.
        let at = match case {
            "scrub" => BLOCK_SIZE as u64 + 100,
            _ => len - 1,
        };
        flip(props, at);
        let block = at / BLOCK_SIZE as u64;
        let mut found = None;
        for run in 1..=10 {
            write_nodes(&server, 2);
            let out = backup_from(&addr, &b, &["--scrub-budget", "10%"]);
            match out.code {
                Some(0) => assert!(
                    out.stdout.contains("scrubbed") && out.stdout.contains("intact"),
                    "MF-11: {case}: run {run}: {out:#?}"
                ),
                Some(6) => {
                    found = Some((run, out));
                    break;
                }
                _ => panic!("MF-11: {case}: run {run}: {out:#?}"),
            }
        }
        let (run, out) = found.expect("MF-11: ten runs at 10% read every block");
        let line = out.one_error_line();
        let says = match case {
            "scrub" => "scrubbing found 1 damaged block",
            _ => "about to rewrite",
        };
        assert!(
            line.contains(&format!("{props}: block {block} "))
                && line.contains(says)
                && line.contains("unverified"),
            "MF-11, MF-8: {case}: run {run} names the block: {line}"
        );
        if case == "rewrite" {
            assert_eq!(run, 1, "MF-8: found by the first run that rewrites it");
        }
        assert!(!out.stdout.contains("done:"), "MF-11: not reported done");
        // backup-info shows what happened: the live generation is marked unverified.
        let info = admin(&["backup-info", path(&b)]).expect(0);
        assert!(
            info.stdout
                .contains("marked unverified:     a run found it damaged")
                && info.stdout.contains("the next run takes a full backup"),
            "MF-13: {case}: backup-info shows the mark: {info:#?}"
        );
        let doc: serde_json::Value =
            serde_json::from_str(&admin(&["backup-info", path(&b), "--json"]).expect(0).stdout)
                .unwrap();
        let live_gen = doc["generations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["live"] == true);
        assert_eq!(
            live_gen.map(|g| &g["marked_unverified"]),
            Some(&serde_json::json!(true)),
            "MF-13: {case}: {doc:#}"
        );
        write_nodes(&server, 1);
        let out = backup_from(&addr, &b, &[]).expect(0);
        assert!(
            out.summary().contains("full backup"),
            "MF-11: {case}: the next run is a full backup: {out:#?}"
        );
        assert_eq!(quick_json(&b, 0)["intact"], true, "MF-11: {case}");
        let info = admin(&["backup-info", path(&b), "--json"]).expect(0);
        assert!(
            info.stdout.contains("\"marked_unverified\": false"),
            "MF-13: {case}: the full backup after clears the mark: {info:#?}"
        );
    }
    assert_same_as_server(&b, &server);
}

// MF-8: the log a run appends to is checked before it does: damage already in the block its
// appends go into (here inside an entry recovery does not read again) fails the incremental with
// exit 6 naming that block, instead of being taken into the manifest by the rehash after.
#[test]
fn mf_8_damage_in_the_log_block_a_run_appends_to_is_found_first() {
    let dir = scratch();
    let db = dir.path().join("db");
    let server = ServerProcess::start(&db, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let b = dir.path().join("backup");
    write_nodes(&server, 2);
    backup_from(&addr, &b, &[]).expect(0);
    for _ in 0..3 {
        write_nodes(&server, 5);
        backup_from(&addr, &b, &["--scrub-budget", "0%"]).expect(0);
    }
    let logs: Vec<_> = std::fs::read_dir(live(&b))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("neostore.transaction.db."))
        .collect();
    let log = logs.iter().max().expect("the backup has a log").clone();
    let path = live(&b).join(&log);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.len() > 256 && (bytes.len() as u64) < BLOCK_SIZE as u64,
        "one block of entries: {}",
        bytes.len()
    );
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    write_nodes(&server, 1);
    let out = backup_from(&addr, &b, &["--scrub-budget", "0%"]);
    assert_eq!(
        out.code,
        Some(6),
        "MF-8: damage in the log block a run appends to fails it: {out:#?}"
    );
    let line = out.one_error_line();
    assert!(
        line.contains(&format!("{log}: block 0 ")) && line.contains("about to rewrite"),
        "MF-8: the damaged log block is named: {line}"
    );
}

// MF-12: `neo4j-admin upgrade` of a backup rewrites its manifest: every file hashed again, in
// the new format, so `check --quick` finds it intact and the next incremental goes on.
#[test]
fn mf_12_upgrading_a_backup_rewrites_its_manifest() {
    let dir = scratch();
    let db = dir.path().join("db");
    generate(&db, 300, &["--format-version", "1"]);
    let server = ServerProcess::start(&db, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 3);
    let b = dir.path().join("backup");
    backup_from(&addr, &b, &[]).expect(0);
    assert_eq!(quick_json(&b, 0)["format_version"], 1, "MF-6");
    let out = admin(&["upgrade", path(&b)]).expect(0);
    assert!(
        out.stdout.contains("rewrote the manifest"),
        "MF-12: {out:#?}"
    );
    let q = quick_json(&b, 0);
    assert_eq!(
        (&q["format_version"], &q["intact"]),
        (&serde_json::json!(2), &serde_json::json!(true)),
        "MF-12: {q}"
    );
    // A plain store has no manifest: upgrading it says nothing about one.
    drop(server);
    let out = admin(&["upgrade", path(&db)]).expect(0);
    assert!(!out.stdout.contains("manifest"), "MF-12: {out:#?}");
}

// MF-4: only a file that is not there is missing; one that cannot be opened for another reason
// fails the verification as an I/O error, never reported as damage it may not be.
#[test]
fn mf_4_a_file_that_cannot_be_opened_is_an_error_not_a_missing_file() {
    let (dir, manifest) = generation();
    let failing = crate::support::faulty::Faulty {
        fail_opens: Some((
            crate::support::faulty::Files::named("neostore.meta"),
            libc::EIO,
        )),
        armed: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        ..Default::default()
    };
    match verify(&failing, dir.path(), &manifest) {
        Err(e) => assert!(e.to_string().contains("neostore.meta"), "MF-4: {e}"),
        Ok(report) => panic!("MF-4: an EIO on open was reported as {:?}", report.findings),
    }
    let mut scrubbed = manifest.clone();
    match scrubbed.scrub(&failing, dir.path(), 1) {
        Err(e) => assert!(e.to_string().contains("neostore.meta"), "MF-11: {e}"),
        Ok(s) => panic!("MF-11: an EIO on open was reported as {:?}", s.findings),
    }
    match manifest.check_blocks(&failing, dir.path(), "neostore.meta", 0, 0) {
        Err(e) => assert!(e.to_string().contains("neostore.meta"), "MF-8: {e}"),
        Ok(findings) => panic!("MF-8: an EIO on open was reported as {findings:?}"),
    }
    std::fs::remove_file(dir.path().join("neostore.meta")).unwrap();
    let report = verify(&*fs(), dir.path(), &manifest).unwrap();
    assert_eq!(
        report.findings,
        vec![Finding::Missing {
            file: "neostore.meta".into()
        }],
        "MF-4"
    );
}
