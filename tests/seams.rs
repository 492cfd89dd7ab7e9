//! The I/O-seam invariant: outside `src/io/os.rs`, library code reaches the filesystem, the
//! network and the clock only through the seams of `src/io/mod.rs`, so that the same code runs
//! on turmoil's simulated world. See spec/io.md.
//!
//! The scan is textual and strict: a forbidden path on any code line fails, even in a string or
//! a trailing comment. Only whole comment lines (`//`, `///`, `//!`) may name one, because doc
//! text explains the seams by naming what they replace.

// IO-1

use std::fs;
use std::path::{Path, PathBuf};

/// The one file allowed to use the operating system directly.
const EXEMPT: &str = "src/io/os.rs";

/// Paths that reach the real filesystem, network or clock.
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "tokio::fs",
    "tokio::net",
    "SystemTime::now",
    "Instant::now",
];

/// Modules that may not be imported from a grouped `use std::{...}` / `use tokio::{...}`.
const FORBIDDEN_IN_GROUPS: &[(&str, &[&str])] = &[("std", &["fs"]), ("tokio", &["fs", "net"])];

/// One forbidden use: the 1-based line and what was found there.
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    line: usize,
    what: String,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `text` with every whole comment line blanked, keeping byte offsets and line numbers.
fn without_comment_lines(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            if line.trim_start().starts_with("//") {
                line.replace(|c: char| c != '\n', " ")
            } else {
                line.to_string()
            }
        })
        .collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// Occurrences of `word` in `code` that stand as whole paths (not `mystd::fs`, not `std::fsx`).
fn whole_word_offsets<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let bytes = code.as_bytes();
    code.match_indices(word)
        .map(|(at, _)| at)
        .filter(move |&at| {
            let before_ok = at == 0 || !is_ident_byte(bytes[at - 1]);
            let after_ok = bytes
                .get(at + word.len())
                .is_none_or(|&b| !is_ident_byte(b));
            before_ok && after_ok
        })
}

/// The forbidden uses in one source file.
fn violations(text: &str) -> Vec<Violation> {
    let code = without_comment_lines(text);
    let mut found = Vec::new();
    for word in FORBIDDEN {
        for at in whole_word_offsets(&code, word) {
            found.push(Violation {
                line: line_of(&code, at),
                what: word.to_string(),
            });
        }
    }
    for (root, modules) in FORBIDDEN_IN_GROUPS {
        for at in whole_word_offsets(&code, root) {
            let rest = &code[at + root.len()..];
            let Some(group) = rest.trim_start().strip_prefix("::") else {
                continue;
            };
            let Some(group) = group.trim_start().strip_prefix('{') else {
                continue;
            };
            let group_start = code.len() - group.len();
            for (item_at, module) in top_level_group_items(group) {
                if modules.contains(&module) {
                    found.push(Violation {
                        line: line_of(&code, group_start + item_at),
                        what: format!("{root}::{{{module}}}"),
                    });
                }
            }
        }
    }
    found.sort_by(|a, b| (a.line, &a.what).cmp(&(b.line, &b.what)));
    found
}

/// The first path segment of each top-level item of a `use` group, with its offset in `group`
/// (which starts just after the `{`): `io::{self, Read}, fs::File}` gives `io` and `fs`.
fn top_level_group_items(group: &str) -> Vec<(usize, &str)> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut item_start = 0;
    for (i, c) in group.char_indices() {
        let item_ends = match c {
            '{' => {
                depth += 1;
                false
            }
            '}' if depth == 0 => true,
            '}' => {
                depth -= 1;
                false
            }
            ',' => depth == 0,
            _ => false,
        };
        if item_ends {
            let item = &group[item_start..i];
            let lead = item.len() - item.trim_start().len();
            let name_len = item[lead..]
                .bytes()
                .take_while(|&b| is_ident_byte(b))
                .count();
            if name_len > 0 {
                items.push((item_start + lead, &item[lead..lead + name_len]));
            }
            if c == '}' {
                break;
            }
            item_start = i + 1;
        }
    }
    items
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("read a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn io_1_core_code_does_io_only_through_the_seams() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exempt = root.join(EXEMPT);
    assert!(
        exempt.is_file(),
        "{EXEMPT} is missing: update tests/seams.rs"
    );
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 1, "found no source files under src/");

    let mut report = Vec::new();
    for path in files.iter().filter(|p| **p != exempt) {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
        let lines: Vec<&str> = text.lines().collect();
        let shown = path.strip_prefix(root).unwrap_or(path).display();
        for v in violations(&text) {
            report.push(format!(
                "{shown}:{}: {} in `{}`",
                v.line,
                v.what,
                lines[v.line - 1].trim()
            ));
        }
    }
    assert!(
        report.is_empty(),
        "I/O outside the seams (IO-1): use the Fs, Net and Clock of src/io, or move the code to \
         {EXEMPT}:\n  {}",
        report.join("\n  ")
    );
}

/// The violations in `text` as `line: what`, for short assertions.
fn found(text: &str) -> Vec<String> {
    violations(text)
        .into_iter()
        .map(|v| format!("{}: {}", v.line, v.what))
        .collect()
}

#[test]
fn scanner_catches_direct_paths_and_passes_comment_lines() {
    let text = "\
//! This module replaces std::fs, tokio::net and SystemTime::now.
/// Never call Instant::now here.
    // nor std::fs in an indented comment
use std::fs::File;
fn f() {
    let t = std::time::Instant::now();
    let s = SystemTime::now(); // a trailing comment does not excuse the code
    let l = tokio::net::TcpListener::bind(a);
    let r = tokio::fs::read(p);
}
";
    assert_eq!(
        found(text),
        [
            "4: std::fs",
            "6: Instant::now",
            "7: SystemTime::now",
            "8: tokio::net",
            "9: tokio::fs",
        ]
    );
}

#[test]
fn scanner_catches_grouped_imports() {
    let text = "\
use std::{io, fs};
use std::{
    collections::{BTreeMap, HashMap},
    fs::{self, File},
    path::Path,
};
use tokio :: { io::AsyncRead, net::TcpStream };
use ::std::{fs};
";
    assert_eq!(
        found(text),
        [
            "1: std::{fs}",
            "4: std::{fs}",
            "7: tokio::{net}",
            "8: std::{fs}",
        ]
    );
}

#[test]
fn scanner_passes_lookalikes_and_harmless_paths() {
    let text = "\
use std::os::unix::fs::FileExt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use std::{io::{self, Read}, path::Path};
use mystd::fs;
let x = std::fsx;
let n = clock.now();
let f = tokio::{ fsync };
";
    assert_eq!(found(text), Vec::<String>::new());
}

/// SIM-23: the fault switches cannot reach a production build: the feature is not a default
/// one, only the package's dev-dependency on itself enables it, and only the simulations turn a
/// switch on.
#[test]
fn sim_23_fault_switches_stay_out_of_production_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let enabling: Vec<&str> = manifest
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("\"fault-switches\""))
        .collect();
    assert_eq!(
        enabling,
        ["online-backup = { path = \".\", features = [\"fault-switches\"] }"],
        "SIM-23: only the dev-dependency on the package itself enables the fault switches"
    );
    let dev = manifest.find("[dev-dependencies]").unwrap();
    let line = manifest.find("online-backup = { path").unwrap();
    let next_section = manifest[dev + 1..]
        .find("\n[")
        .map_or(manifest.len(), |i| dev + 1 + i);
    assert!(
        line > dev && line < next_section,
        "SIM-23: the package's dependency on itself is a dev-dependency"
    );
    // Built, so that this file does not name it.
    let needle = ["faults", "::set("].concat();
    let mut turned_on = Vec::new();
    for dir in ["src", "tests", "benches", "examples"] {
        let mut files = Vec::new();
        if root.join(dir).exists() {
            rust_files(&root.join(dir), &mut files);
        }
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            if text.contains(&needle) {
                turned_on.push(file.display().to_string());
            }
        }
    }
    assert!(
        turned_on.is_empty(),
        "SIM-23: a switch is turned on outside the simulations: {turned_on:?}"
    );
}
