//! Spec conformance: every rule defined in `spec/*.md` is cited by at least one test, every rule id
//! that test code cites is defined, and no id is defined twice. `spec/README.md` says how rules
//! are written and cited; run with `-- --nocapture` to see the coverage table.
//!
//! The extraction is done by the pure functions below (`rules_in_markdown`,
//! `citations_in_file`, `check`), each with unit tests; only `spec_conformance` reads files.
//! This file is left out of the citation scan: its examples would otherwise count.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The spec file that registers prefixes; it defines no rules.
const SPEC_README: &str = "README.md";
/// Directories whose `.rs` files are test code in full.
const TEST_DIRS: &[&str] = &["tests", "sim"];
/// Directory whose `.rs` files are test code from their first `#[cfg(test)]` line on.
const SRC_DIR: &str = "src";
/// This file, which is not scanned for citations.
const SELF_PATH: &str = "tests/conformance.rs";

/// A rule defined in a spec file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RuleDef {
    id: String,
    /// Path relative to the crate root, with `/` separators.
    file: String,
    /// 1-based.
    line: usize,
}

/// A place in test code that names a rule id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Citation {
    id: String,
    file: String,
    line: usize,
}

/// What `check` found.
#[derive(Debug)]
struct Outcome {
    /// One line per problem; empty when the spec and the tests agree.
    problems: Vec<String>,
    /// The coverage table, one row per defined rule.
    table: String,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Parses `PREFIX-NUMBER` (2 to 4 capital letters) at the start of `s`; returns the id and its
/// length in bytes. Only the digits are checked at the end: the caller decides what may follow.
fn parse_id(s: &str) -> Option<(String, usize)> {
    let b = s.as_bytes();
    let letters = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    if !(2..=4).contains(&letters) || b.get(letters) != Some(&b'-') {
        return None;
    }
    let digits = b[letters + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    let len = letters + 1 + digits;
    Some((s[..len].to_string(), len))
}

/// The prefix of an id, with its hyphen: `ST-12` -> `ST-`.
fn prefix_of(id: &str) -> &str {
    let dash = id.find('-').map_or(id.len(), |i| i + 1);
    &id[..dash]
}

/// The rules a spec file defines: list items (`-` or `*`) whose text starts with a bold id,
/// `- **ST-1** ...`. Lines inside fenced code blocks are examples and define nothing.
fn rules_in_markdown(file: &str, text: &str) -> Vec<RuleDef> {
    let mut rules = Vec::new();
    let mut fence: Option<&str> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        for marker in ["```", "~~~"] {
            if trimmed.starts_with(marker) {
                fence = match fence {
                    None => Some(marker),
                    Some(open) if open == marker => None,
                    other => other,
                };
            }
        }
        if fence.is_some() || trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            continue;
        }
        let Some(rest) = trimmed
            .strip_prefix('-')
            .or_else(|| trimmed.strip_prefix('*'))
        else {
            continue;
        };
        if !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let Some(rest) = rest.trim_start().strip_prefix("**") else {
            continue;
        };
        if let Some((id, len)) = parse_id(rest) {
            if rest[len..].starts_with("**") {
                rules.push(RuleDef {
                    id,
                    file: file.to_string(),
                    line: index + 1,
                });
            }
        }
    }
    rules
}

/// The prefixes registered in `spec/README.md`: the first cell of each table row, when it is a
/// prefix such as `` `ST-` ``.
fn registered_prefixes(readme: &str) -> BTreeSet<String> {
    let mut prefixes = BTreeSet::new();
    for line in readme.lines() {
        let Some(row) = line.trim().strip_prefix('|') else {
            continue;
        };
        let cell = row.split('|').next().unwrap_or("").trim().trim_matches('`');
        let letters = cell.strip_suffix('-').unwrap_or("");
        if (2..=4).contains(&letters.len()) && letters.bytes().all(|b| b.is_ascii_uppercase()) {
            prefixes.insert(cell.to_string());
        }
    }
    prefixes
}

/// Ids written in upper case in `line` (`ST-12`), standing as whole words.
fn upper_case_ids(line: &str) -> Vec<String> {
    let bytes = line.as_bytes();
    let mut ids = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = i == 0 || !is_ident_byte(bytes[i - 1]);
        if at_word_start && bytes[i].is_ascii_uppercase() {
            if let Some((id, len)) = parse_id(&line[i..]) {
                if bytes.get(i + len).is_none_or(|&b| !is_ident_byte(b)) {
                    ids.push(id);
                }
                i += len;
                continue;
            }
        }
        i += 1;
    }
    ids
}

/// Ids named by functions defined in `line`: in `fn st_12_recovery_cuts_torn_tail`, each
/// underscore-separated pair of a 2-4 letter word and a number (`st`, `12`) is the id `ST-12`.
/// The caller keeps only registered prefixes, so `fn test_12` cites nothing.
fn function_name_ids(line: &str) -> Vec<String> {
    let bytes = line.as_bytes();
    let mut ids = Vec::new();
    for (at, _) in line.match_indices("fn") {
        let before_ok = at == 0 || !is_ident_byte(bytes[at - 1]);
        let after_ok = bytes.get(at + 2).is_some_and(|b| b.is_ascii_whitespace());
        if !before_ok || !after_ok {
            continue;
        }
        let rest = line[at + 2..].trim_start();
        let name_len = rest.bytes().take_while(|&b| is_ident_byte(b)).count();
        let words: Vec<&str> = rest[..name_len].split('_').collect();
        for pair in words.windows(2) {
            let (word, number) = (pair[0], pair[1]);
            if (2..=4).contains(&word.len())
                && word.bytes().all(|b| b.is_ascii_lowercase())
                && !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
            {
                ids.push(format!("{}-{}", word.to_ascii_uppercase(), number));
            }
        }
    }
    ids
}

/// The citations in one source file. `path` is relative to the crate root with `/` separators;
/// under `src/` only the text from the first `#[cfg(test)]` line to the end is test code.
/// `prefixes` are the prefixes that count (`ST-`); an id with any other prefix (`SHA-256`) is
/// not a citation. A line naming the same id twice is one citation.
fn citations_in_file(path: &str, text: &str, prefixes: &BTreeSet<String>) -> Vec<Citation> {
    let lines: Vec<&str> = text.lines().collect();
    let first_test_line = if path.starts_with("src/") {
        lines
            .iter()
            .position(|l| l.trim_start().starts_with("#[cfg(test)]"))
            .unwrap_or(lines.len())
    } else {
        0
    };
    let mut citations = Vec::new();
    for (index, line) in lines.iter().enumerate().skip(first_test_line) {
        let mut ids = upper_case_ids(line);
        ids.extend(function_name_ids(line));
        let mut seen = BTreeSet::new();
        for id in ids {
            if prefixes.contains(prefix_of(&id)) && seen.insert(id.clone()) {
                citations.push(Citation {
                    id,
                    file: path.to_string(),
                    line: index + 1,
                });
            }
        }
    }
    citations
}

/// Compares the rules with the citations. `registered` are the prefixes of `spec/README.md`.
fn check(rules: &[RuleDef], citations: &[Citation], registered: &BTreeSet<String>) -> Outcome {
    let mut problems = Vec::new();

    let mut first_definition: BTreeMap<&str, &RuleDef> = BTreeMap::new();
    for rule in rules {
        if let Some(first) = first_definition.get(rule.id.as_str()) {
            problems.push(format!(
                "{} is defined twice: {}:{} and {}:{}",
                rule.id, first.file, first.line, rule.file, rule.line
            ));
        } else {
            first_definition.insert(&rule.id, rule);
        }
        if !registered.contains(prefix_of(&rule.id)) {
            problems.push(format!(
                "{} ({}:{}) uses the prefix {}, which spec/README.md does not register",
                rule.id,
                rule.file,
                rule.line,
                prefix_of(&rule.id)
            ));
        }
    }

    let mut cited_by: BTreeMap<&str, Vec<&Citation>> = BTreeMap::new();
    for citation in citations {
        if first_definition.contains_key(citation.id.as_str()) {
            cited_by.entry(&citation.id).or_default().push(citation);
        } else {
            problems.push(format!(
                "{}:{} cites {}, which no spec defines",
                citation.file, citation.line, citation.id
            ));
        }
    }

    let uncited: Vec<String> = rules
        .iter()
        .filter(|r| std::ptr::eq(first_definition[r.id.as_str()], *r))
        .filter(|r| !cited_by.contains_key(r.id.as_str()))
        .map(|r| format!("{} ({}:{})", r.id, r.file, r.line))
        .collect();
    if !uncited.is_empty() {
        problems.push(format!(
            "{} rule(s) cited by no test: {}",
            uncited.len(),
            uncited.join(", ")
        ));
    }

    let mut rows = vec![[
        "rule".to_string(),
        "spec file".to_string(),
        "citing places".to_string(),
        "first citation".to_string(),
    ]];
    for rule in rules {
        let citing = cited_by.get(rule.id.as_str()).map_or(&[][..], |c| &c[..]);
        let first = citing
            .first()
            .map_or("-".to_string(), |c| format!("{}:{}", c.file, c.line));
        rows.push([
            rule.id.clone(),
            rule.file.clone(),
            citing.len().to_string(),
            first,
        ]);
    }
    let mut widths = [0; 4];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut table = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        table.push_str(cells.join("  ").trim_end());
        table.push('\n');
    }

    Outcome { problems, table }
}

/// Every `.rs` file under `dir` (recursively), sorted, as paths relative to `root`.
fn rust_files(root: &Path, dir: &str) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("read a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&root.join(dir), &mut found);
    let mut relative: Vec<String> = found.iter().map(|p| relative_path(root, p)).collect();
    relative.sort();
    relative
}

fn relative_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn spec_conformance() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec_dir = root.join("spec");
    let registered = registered_prefixes(&read(&spec_dir.join(SPEC_README)));
    assert!(
        !registered.is_empty(),
        "spec/README.md registers no rule prefixes"
    );

    let mut spec_files: Vec<PathBuf> = fs::read_dir(&spec_dir)
        .expect("read spec/")
        .map(|e| e.expect("read a spec/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .filter(|p| p.file_name().is_some_and(|n| n != SPEC_README))
        .collect();
    spec_files.sort();
    let mut rules = Vec::new();
    for path in &spec_files {
        rules.extend(rules_in_markdown(&relative_path(root, path), &read(path)));
    }

    // Ids with the prefix of a defined rule count too, so an unregistered prefix is reported
    // once (by `check`) rather than silently ignored in the tests.
    let mut prefixes = registered.clone();
    prefixes.extend(rules.iter().map(|r| prefix_of(&r.id).to_string()));
    let mut citations = Vec::new();
    for dir in TEST_DIRS.iter().chain([&SRC_DIR]) {
        for path in rust_files(root, dir) {
            if path != SELF_PATH {
                citations.extend(citations_in_file(
                    &path,
                    &read(&root.join(&path)),
                    &prefixes,
                ));
            }
        }
    }

    let outcome = check(&rules, &citations, &registered);
    println!(
        "spec coverage: {} rules in {} files, {} citations\n\n{}",
        rules.len(),
        spec_files.len(),
        citations.len(),
        outcome.table
    );
    assert!(
        outcome.problems.is_empty(),
        "the spec and the tests disagree (see spec/README.md):\n  {}",
        outcome.problems.join("\n  ")
    );
}

fn prefixes(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|p| p.to_string()).collect()
}

fn ids(citations: &[Citation]) -> Vec<(&str, usize)> {
    citations.iter().map(|c| (c.id.as_str(), c.line)).collect()
}

#[test]
fn rules_are_bold_ids_starting_list_items() {
    let text = "\
# Store
Prose naming **ST-9** defines nothing, nor does ST-8.
- **ST-1** A store directory holds metadata.
  * **ST-2** Nested items count, with `*` too.
-   **ST-3**: extra spaces are fine.
- ST-4 without bold is not a rule.
- **ST-5 is not closed
- **st-6** lower case is not an id.
-**ST-7** needs a space after the dash.
| **ST-10** | a table cell is not a list item |
```markdown
- **ST-11** an example in a fence
```
- **LOG-12** Any registered prefix.
";
    let rules = rules_in_markdown("spec/store.md", text);
    let found: Vec<(&str, usize)> = rules.iter().map(|r| (r.id.as_str(), r.line)).collect();
    assert_eq!(
        found,
        [("ST-1", 3), ("ST-2", 4), ("ST-3", 5), ("LOG-12", 14)]
    );
    assert!(rules.iter().all(|r| r.file == "spec/store.md"));
}

#[test]
fn prefixes_are_registered_in_the_readme_table() {
    let readme = "\
| prefix | file | covers |
| --- | --- | --- |
| `IO-` | `io.md` | seams |
| `HTTP-` | `http.md` | planned |
| `TOOLONG-` | x | no |
A line with `ST-` outside a table registers nothing.
";
    assert_eq!(registered_prefixes(readme), prefixes(&["HTTP-", "IO-"]));
}

#[test]
fn upper_case_ids_count_in_comments_and_strings() {
    let known = prefixes(&["ST-", "IO-"]);
    let text = "\
// ST-1: a comment cites.
let x = \"see ST-12 and IO-3\";
// SHA-256 and UTF-8 have other prefixes.
// XST-1, ST-1a and ST_1 are not whole ids; ST-1. is.
// ST-4 twice on one line, ST-4, is one citation.
";
    let found = citations_in_file("tests/store.rs", text, &known);
    assert_eq!(
        ids(&found),
        [
            ("ST-1", 1),
            ("ST-12", 2),
            ("IO-3", 2),
            ("ST-1", 4),
            ("ST-4", 5)
        ]
    );
    assert!(found.iter().all(|c| c.file == "tests/store.rs"));
}

#[test]
fn function_names_cite_with_lower_case_and_underscores() {
    let known = prefixes(&["ST-", "LOG-"]);
    let text = "\
fn st_12_recovery_cuts_torn_tail() {}
fn test_12() {}
async fn torn_tail_log_3_and_st_4() {}
fn st12_no_underscore() {}
let st_5 = 1;
fn st_6x() {}
fn ST_7() {}
";
    let found = citations_in_file("sim/recovery.rs", text, &known);
    assert_eq!(ids(&found), [("ST-12", 1), ("LOG-3", 3), ("ST-4", 3)]);
}

#[test]
fn in_src_only_the_test_module_is_test_code() {
    let known = prefixes(&["ST-"]);
    let text = "\
//! The store (rule ST-1).
/// Writes the metadata (ST-2).
pub fn write() {}
// #[cfg(test)] in a comment does not start the test part: ST-3
#[cfg(test)]
mod tests {
    // ST-4
    fn st_5_works() {}
}
";
    assert_eq!(
        ids(&citations_in_file("src/store/meta.rs", text, &known)),
        [("ST-4", 7), ("ST-5", 8)]
    );
    let no_tests = "//! ST-1 only in docs.\npub fn f() {}\n";
    assert!(citations_in_file("src/lib.rs", no_tests, &known).is_empty());
    // Outside src/ the whole file is test code.
    assert_eq!(
        ids(&citations_in_file("tests/meta.rs", text, &known)).len(),
        5
    );
}

fn rule(id: &str, file: &str, line: usize) -> RuleDef {
    RuleDef {
        id: id.to_string(),
        file: file.to_string(),
        line,
    }
}

fn citation(id: &str, file: &str, line: usize) -> Citation {
    Citation {
        id: id.to_string(),
        file: file.to_string(),
        line,
    }
}

#[test]
fn check_passes_when_every_rule_is_cited_and_defined() {
    let rules = [
        rule("ST-1", "spec/store.md", 3),
        rule("ST-2", "spec/store.md", 5),
    ];
    let citations = [
        citation("ST-1", "tests/a.rs", 10),
        citation("ST-2", "tests/a.rs", 12),
        citation("ST-1", "tests/b.rs", 1),
    ];
    let outcome = check(&rules, &citations, &prefixes(&["ST-"]));
    assert_eq!(outcome.problems, Vec::<String>::new());
    let lines: Vec<&str> = outcome.table.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("rule"));
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["ST-1", "spec/store.md", "2", "tests/a.rs:10"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["ST-2", "spec/store.md", "1", "tests/a.rs:12"]
    );
}

#[test]
fn check_reports_uncited_undefined_duplicate_and_unregistered() {
    let rules = [
        rule("ST-1", "spec/store.md", 3),
        rule("ST-2", "spec/store.md", 5),
        rule("ST-3", "spec/store.md", 7),
        rule("ST-1", "spec/log.md", 9),
        rule("XY-1", "spec/xy.md", 1),
    ];
    let citations = [
        citation("ST-1", "tests/a.rs", 10),
        citation("ST-99", "sim/b.rs", 4),
        citation("XY-1", "sim/b.rs", 5),
    ];
    let outcome = check(&rules, &citations, &prefixes(&["ST-"]));
    assert_eq!(
        outcome.problems,
        [
            "ST-1 is defined twice: spec/store.md:3 and spec/log.md:9",
            "XY-1 (spec/xy.md:1) uses the prefix XY-, which spec/README.md does not register",
            "sim/b.rs:4 cites ST-99, which no spec defines",
            "2 rule(s) cited by no test: ST-2 (spec/store.md:5), ST-3 (spec/store.md:7)",
        ]
    );
    assert!(outcome.table.contains("ST-3"));
}
