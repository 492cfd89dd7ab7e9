//! The manifest of a backup generation (spec/manifest.md): hashing real files into blocks and
//! naming each kind of damage by file and block.

use online_backup::backup::manifest::{
    hash_file, verify, Finding, Manifest, Verification, MANIFEST_FILE,
};
use online_backup::digest::Digest;
use online_backup::store::format::FormatVersion;
use online_backup::store::meta::StoreId;

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
        assert_eq!(
            verify(&*fs(), dir.path(), &manifest).unwrap(),
            vec![],
            "MF-4: {case}: nothing before the damage (the manifest's own files are not listed)"
        );
        damage(&dir.path().join(nodes));
        assert_eq!(
            verify(&*fs(), dir.path(), &manifest).unwrap(),
            vec![want],
            "MF-4: {case}"
        );
    }
}
