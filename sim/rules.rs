//! Source scans for the determinism rules that a reviewer could miss: every `tokio::select!` is
//! `biased;` (SIM-2), no thread or blocking pool on a simulated path (SIM-11), no hash map or
//! hash set anywhere in the product or the simulation (SIM-12); and that everything is built with
//! `--cfg tokio_unstable`, which the `sim` target also refuses to compile without (SIM-3). The
//! simulation is `sim/` and the test kit it includes, `tests/kit/`.
//!
//! The scans are textual. Whole comment lines (`//`, `///`, `//!`) are ignored, code lines are
//! not (a string counts too). This file is not scanned: it names what it looks for.

use std::fs;
use std::path::{Path, PathBuf};

/// What the scans read: the product, the simulation and the test kit the simulation includes.
const SCANNED: &[&str] = &["src", "sim", "tests/kit"];

/// Files under [`SCANNED`] not scanned for SIM-11: the production seams, the binaries'
/// entry points (never simulated) and the runner, which runs separate simulations on separate
/// threads.
const THREADS_ALLOWED: &[&str] = &[
    "src/io/os.rs",
    "src/bin/",
    "sim/runner.rs",
    "sim/rules.rs",
    "sim/switches.rs",
];
const THREADS: &[&str] = &[
    "spawn_blocking",
    "block_in_place",
    "thread::spawn",
    "thread::scope",
    "std::thread",
];
const HASHED_ALLOWED: &[&str] = &["sim/rules.rs"];
const HASHED: &[&str] = &["HashMap", "HashSet"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, as paths relative to the crate root with `/`, sorted.
fn rust_files(dir: &str) -> Vec<String> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(at) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let root = root();
    let mut out = Vec::new();
    walk(&root, &root.join(dir), &mut out);
    out.sort();
    out
}

/// `text` with every whole comment line blanked, keeping line numbers.
fn without_comment_lines(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            if line.trim_start().starts_with("//") {
                "\n".to_string()
            } else {
                line.to_string()
            }
        })
        .collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Offsets where `word` stands on its own (not inside a longer identifier).
fn word_offsets(code: &str, word: &str) -> Vec<usize> {
    let bytes = code.as_bytes();
    code.match_indices(word)
        .map(|(i, _)| i)
        .filter(|&i| {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + word.len()).copied();
            !before.is_some_and(is_ident_byte) && !after.is_some_and(is_ident_byte)
        })
        .collect()
}

/// `select!` invocations in `code` whose first token is not `biased;`: their line numbers.
fn unbiased_selects(code: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for at in word_offsets(code, "select") {
        let rest = &code[at + "select".len()..];
        let Some(rest) = rest.strip_prefix('!') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(body) = rest.strip_prefix(['{', '(', '[']) else {
            continue;
        };
        if !body.trim_start().starts_with("biased;") {
            out.push(line_of(code, at));
        }
    }
    out
}

/// `file:line: what` for each use of one of `words` in the files under `dirs`, except `allowed`
/// (a file, or a directory ending in `/`).
fn uses(dirs: &[&str], allowed: &[&str], words: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for dir in dirs {
        for file in rust_files(dir) {
            if allowed
                .iter()
                .any(|a| file == *a || (a.ends_with('/') && file.starts_with(a)))
            {
                continue;
            }
            let text = fs::read_to_string(root().join(&file)).unwrap();
            let code = without_comment_lines(&text);
            for word in words {
                for at in word_offsets(&code, word) {
                    out.push(format!("{file}:{}: {word}", line_of(&code, at)));
                }
            }
        }
    }
    out
}

#[test]
fn sim_2_every_select_is_biased() {
    let mut bad = Vec::new();
    for dir in SCANNED {
        for file in rust_files(dir) {
            if file == "sim/rules.rs" {
                continue;
            }
            let text = fs::read_to_string(root().join(&file)).unwrap();
            for line in unbiased_selects(&without_comment_lines(&text)) {
                bad.push(format!("{file}:{line}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "SIM-2: tokio::select! without `biased;` (the branch order must not come from tokio's \
         RNG):\n{}",
        bad.join("\n")
    );
}

#[test]
fn sim_2_scanner_finds_unbiased_selects() {
    let code =
        "tokio::select! {\n biased;\n a = x => {}\n}\nselect!{ b = y => {} }\nmy_select!{}\n";
    assert_eq!(unbiased_selects(code), vec![5]);
    assert_eq!(
        unbiased_selects("tokio::select!(biased; a = x => {})"),
        Vec::<usize>::new()
    );
}

#[test]
fn sim_11_no_threads_on_simulated_paths() {
    let found = uses(SCANNED, THREADS_ALLOWED, THREADS);
    assert!(
        found.is_empty(),
        "SIM-11: threads or blocking pools on a simulated path (turmoil runs a host on one \
         thread; work elsewhere escapes the seed):\n{}",
        found.join("\n")
    );
}

#[test]
fn sim_12_no_hash_maps() {
    let found = uses(SCANNED, HASHED_ALLOWED, HASHED);
    assert!(
        found.is_empty(),
        "SIM-12: HashMap/HashSet iterate in a per-process random order; use BTreeMap/BTreeSet:\n{}",
        found.join("\n")
    );
}

#[test]
fn sim_12_scanner_matches_whole_words() {
    let code = without_comment_lines(
        "// HashMap in a comment\nlet m: MyHashMap = x;\nlet s = HashSet::new();\n",
    );
    assert_eq!(word_offsets(&code, "HashMap"), Vec::<usize>::new());
    assert_eq!(word_offsets(&code, "HashSet").len(), 1);
}

#[test]
fn sim_3_everything_is_built_with_tokio_unstable() {
    let config = fs::read_to_string(root().join(".cargo/config.toml")).unwrap();
    let build: Vec<&str> = config
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "[build]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .collect();
    assert!(
        build.contains(&r#"rustflags = ["--cfg", "tokio_unstable"]"#),
        "SIM-3: .cargo/config.toml's [build] sets rustflags to --cfg tokio_unstable: {build:?}"
    );
    let ci = fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.contains(r#"export RUSTFLAGS="${RUSTFLAGS} --cfg tokio_unstable""#),
        "SIM-3: .ci/run keeps --cfg tokio_unstable when a RUSTFLAGS variable would replace it"
    );
    let main = fs::read_to_string(root().join("sim/main.rs")).unwrap();
    let guard = main
        .find("#[cfg(not(tokio_unstable))]")
        .map(|at| &main[at..]);
    assert!(
        guard.is_some_and(|g| g
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("compile_error!"))),
        "SIM-3: the sim target refuses to compile without tokio_unstable"
    );
}
