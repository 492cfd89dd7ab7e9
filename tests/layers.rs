//! The layers of the library point one way (ARCHITECTURE.md, "Layers"): a module imports only
//! modules of a lower layer, never one of its own layer or above, so there are no cycles and a
//! lower layer can be read, tested and reused without the ones above it.
//!
//! The scan is textual: every path `crate::<module>` in a library file, and
//! `online_backup::<module>` in a binary, names the top-level module it reaches. Whole comment
//! lines are skipped (doc text names higher layers to explain who calls a module).

use std::path::{Path, PathBuf};

/// The layers, lowest first. Every top-level module of `src/` must be in exactly one.
const LAYERS: &[&[&str]] = &[
    // Leaves: the I/O seams, the data model, what people read, and the test-only fault switches.
    &["io", "graph", "units", "progress", "faults"],
    // Pure encodings and arithmetic.
    &["codec", "digest"],
    // The log-retention decision and pins.
    &["retention"],
    // The store.
    &["store"],
    // The store shared by a running server, and the server's configuration.
    &["db", "config"],
    // Online backup: protocol, service, decision, client, target, restore.
    &["backup"],
    // The server: HTTP API, start-up, shutdown.
    &["server"],
    // Command lines: for the binaries only.
    &["cli"],
    // The binaries.
    &["bin"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/backup/client.rs` -> `backup`,
/// `src/db.rs` -> `db`, `src/bin/neo4j.rs` -> `bin`); `None` for `src/lib.rs`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    if first == "lib.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every top-level module `text` reaches through `prefix` (`crate::` or `online_backup::`),
/// with the 1-based line, skipping whole comment lines.
fn imports(text: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices(prefix) {
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = line[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((i + 1, name));
            }
        }
    }
    found
}

/// Each import that points up or sideways: `file:line: a -> b`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let Some(module) = module_of(src, &file) else {
            continue;
        };
        let Some(own) = layer_of(&module) else {
            out.push(format!(
                "{}: module `{module}` is in no layer",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let prefix = if module == "bin" {
            "online_backup::"
        } else {
            "crate::"
        };
        for (line, target) in imports(&text, prefix) {
            if target == module {
                continue;
            }
            match layer_of(&target) {
                None => out.push(format!(
                    "{}:{line}: `{target}` is in no layer",
                    file.display()
                )),
                Some(l) if l >= own => out.push(format!(
                    "{}:{line}: {module} (layer {own}) -> {target} (layer {l})",
                    file.display()
                )),
                Some(_) => {}
            }
        }
    }
    out
}

#[test]
fn arch_layers_point_down_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md Layers: these imports point up or sideways:\n{}",
        found.join("\n")
    );
    // Every top-level module is in a layer (a new module must be placed).
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        if let Some(m) = module_of(&src, &file) {
            assert!(layer_of(&m).is_some(), "{m} is in no layer");
        }
    }
}

#[test]
fn the_scanner_finds_what_points_up() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("store")).unwrap();
    std::fs::write(
        src.join("store/mod.rs"),
        "//! Called by crate::backup, which is fine in a comment.\nuse crate::digest::Digest;\nfn f() { crate::backup::client::run(); }\nuse mycrate::server::x;\n",
    )
    .unwrap();
    std::fs::write(src.join("digest.rs"), "use crate::graph::Node;\n").unwrap();
    std::fs::write(src.join("db.rs"), "use crate::config::X;\n").unwrap();
    let found = violations(src);
    assert_eq!(
        found,
        vec![
            format!(
                "{}:1: db (layer 4) -> config (layer 4)",
                src.join("db.rs").display()
            ),
            format!(
                "{}:3: store (layer 3) -> backup (layer 5)",
                src.join("store/mod.rs").display()
            ),
        ]
    );
}
