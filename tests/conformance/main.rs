//! Spec conformance: every rule defined in `spec/*.md` is cited by at least one test, every rule
//! id that test code names is defined, and no id is defined twice. `spec/README.md` says how rules
//! are written and cited; run with `-- --nocapture` to see the coverage table and the rules
//! covered by comments only.
//!
//! A test cites a rule where it fails on it: a test function named after it, or a failure
//! message naming it (an assertion's, a `panic!`'s, or in `sim/` an `Err(...)` a simulation
//! checker returns). Any other place that names an id (a comment, another string, the name of a
//! function that is not a test) is a mention: it must name a defined rule, and a rule with
//! mentions only fails the test, because nothing checks it.
//!
//! The extraction is done by the pure functions below (`rules_in_markdown`, `lex`,
//! `places_in_file`, `check`), each with unit tests; only `spec_conformance` reads files.
//! This directory is left out of the scan: its examples would otherwise count. `lexer.rs` holds
//! the Rust tokenizer the scan reads test code with.

mod lexer;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use lexer::{arguments, group_end, is, is_ident_byte, lex, Kind, Token};

/// The spec file that registers prefixes; it defines no rules.
const SPEC_README: &str = "README.md";
/// Directories whose `.rs` files are test code in full.
const TEST_DIRS: &[&str] = &["tests", "sim"];
/// Directory whose `.rs` files are test code from their first `#[cfg(test)]` line on.
const SRC_DIR: &str = "src";
/// The directory of the simulations, where a checker reports a violation by returning
/// `Err(...)`.
const SIM_DIR: &str = "sim/";
/// This file, which is not scanned: its examples would otherwise count.
const SELF_PATH: &str = "tests/conformance/";

/// The macros whose message reports a failure, with the number of arguments before the message
/// (the condition, or the two values compared). `debug_assert!` and its kin are left out: they
/// vanish from builds without debug assertions.
const MESSAGE_MACROS: &[(&str, usize)] = &[
    ("assert", 1),
    ("assert_eq", 2),
    ("assert_ne", 2),
    ("prop_assert", 1),
    ("prop_assert_eq", 2),
    ("prop_assert_ne", 2),
    ("panic", 0),
];

/// A rule defined in a spec file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RuleDef {
    id: String,
    /// Path relative to the crate root, with `/` separators.
    file: String,
    /// 1-based.
    line: usize,
}

/// How a place in test code names a rule id: the two kinds of citation, and the mention; the
/// stronger kinds compare greater.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum How {
    /// A comment, a string that is not a failure message, or the name of a function that is not
    /// a test: it must name a defined rule, but cites nothing.
    Mention,
    /// A citation in a failure message: of `assert!` and the other `MESSAGE_MACROS`, or, under
    /// `sim/`, of an `Err(...)`.
    Message,
    /// A citation in the name of a test function (`#[test]`, `#[tokio::test]`, ...; not
    /// `#[ignore]`d).
    TestName,
}

/// A place in test code that names a rule id: a citation or a mention.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Place {
    id: String,
    file: String,
    line: usize,
    how: How,
}

/// What `check` found.
#[derive(Debug)]
struct Outcome {
    /// One line per problem; empty when the spec and the tests agree.
    problems: Vec<String>,
    /// The coverage table, one row per defined rule.
    table: String,
    /// One line per rule that test code names only in mentions, with where.
    mentioned_only: Vec<String>,
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

/// Ids written in upper case in `text` (`ST-12`), standing as whole words, with their byte
/// offsets.
fn upper_case_ids(text: &str) -> Vec<(usize, String)> {
    let bytes = text.as_bytes();
    let mut ids = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = i == 0 || !is_ident_byte(bytes[i - 1]);
        if at_word_start && bytes[i].is_ascii_uppercase() {
            if let Some((id, len)) = parse_id(&text[i..]) {
                if bytes.get(i + len).is_none_or(|&b| !is_ident_byte(b)) {
                    ids.push((i, id));
                }
                i += len;
                continue;
            }
        }
        i += 1;
    }
    ids
}

/// Ids a function name stands for: in `st_12_recovery_cuts_torn_tail`, each underscore-separated
/// pair of a 2-4 letter word and a number (`st`, `12`) is the id `ST-12`. The caller keeps only
/// registered prefixes, so `test_12` names nothing.
/// With the byte offset of each in the name.
fn name_ids(name: &str) -> Vec<(usize, String)> {
    let mut words = Vec::new();
    let mut at = 0;
    for word in name.split('_') {
        words.push((at, word));
        at += word.len() + 1;
    }
    let mut ids = Vec::new();
    for pair in words.windows(2) {
        let ((at, word), (_, number)) = (pair[0], pair[1]);
        if (2..=4).contains(&word.len())
            && word.bytes().all(|b| b.is_ascii_lowercase())
            && !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
        {
            ids.push((at, format!("{}-{}", word.to_ascii_uppercase(), number)));
        }
    }
    ids
}

/// For each code token, whether it is a string literal in a failure message: a message argument
/// of one of the `MESSAGE_MACROS`, or, when `err_reports` (under `sim/`), any argument of
/// `Err(...)`. Strings nested deeper (`format!(...)` inside the message) are in it too.
fn message_strings(code: &[Token], err_reports: bool) -> Vec<bool> {
    let mut message = vec![false; code.len()];
    for k in 0..code.len() {
        if code[k].kind != Kind::Ident {
            continue;
        }
        let (skip, open) = if is(code.get(k + 1), Kind::Punct, "!")
            && code.get(k + 2).is_some_and(|t| t.kind == Kind::Open)
        {
            match MESSAGE_MACROS
                .iter()
                .find(|(name, _)| *name == code[k].text)
            {
                Some(&(_, skip)) => (skip, k + 2),
                None => continue,
            }
        } else if err_reports && code[k].text == "Err" && is(code.get(k + 1), Kind::Open, "(") {
            (0, k + 1)
        } else {
            continue;
        };
        let close = group_end(code, open);
        for arg in arguments(code, open, close).into_iter().skip(skip) {
            for j in arg {
                message[j] |= code[j].kind == Kind::Str;
            }
        }
    }
    message
}

/// The functions defined in `code`: (index of the name's token, whether it is a test). A test
/// is a `fn` under an attribute whose path ends in `test` (`#[test]`, `#[tokio::test]`) and not
/// under `#[ignore]`, which `cargo test` does not run.
fn functions(code: &[Token]) -> Vec<(usize, bool)> {
    let mut found = Vec::new();
    let (mut test, mut ignored) = (false, false);
    let mut k = 0;
    while k < code.len() {
        let t = &code[k];
        if is(Some(t), Kind::Punct, "#") {
            let inner = is(code.get(k + 1), Kind::Punct, "!");
            let open = k + 1 + usize::from(inner);
            if is(code.get(open), Kind::Open, "[") {
                let close = group_end(code, open);
                if !inner {
                    let path: Vec<&str> = code[open + 1..close]
                        .iter()
                        .take_while(|t| t.kind == Kind::Ident || t.text == ":")
                        .filter(|t| t.kind == Kind::Ident)
                        .map(|t| t.text)
                        .collect();
                    test |= path.last() == Some(&"test");
                    ignored |= path == ["ignore"];
                }
                k = close + 1;
                continue;
            }
        }
        if t.kind == Kind::Ident && matches!(t.text, "pub" | "async" | "unsafe" | "const") {
            k += 1;
            if t.text == "pub" && is(code.get(k), Kind::Open, "(") {
                k = group_end(code, k) + 1;
            }
            continue;
        }
        if t.kind == Kind::Ident && t.text == "extern" {
            k += 1;
            if code.get(k).is_some_and(|t| t.kind == Kind::Str) {
                k += 1;
            }
            continue;
        }
        if t.kind == Kind::Ident
            && t.text == "fn"
            && code.get(k + 1).is_some_and(|t| t.kind == Kind::Ident)
        {
            found.push((k + 1, test && !ignored));
        }
        (test, ignored) = (false, false);
        k += 1;
    }
    found
}

/// The places in one source file that name a rule id, in the order they appear. `path` is
/// relative to the crate root with `/` separators; under `src/` only the text from the first
/// `#[cfg(test)]` line to the end is test code, and under `sim/` an `Err(...)` is a failure
/// message. `prefixes` are the prefixes that count (`ST-`); an id with any other prefix
/// (`SHA-256`) names nothing. An id named twice on one line is one place, of the stronger
/// kind.
fn places_in_file(path: &str, text: &str, prefixes: &BTreeSet<String>) -> Vec<Place> {
    let mut from = 0;
    let mut first_line = 1;
    if path.starts_with("src/") {
        let mut offset = 0;
        let mut found = false;
        for (index, line) in text.split_inclusive('\n').enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                (from, first_line, found) = (offset, index + 1, true);
                break;
            }
            offset += line.len();
        }
        if !found {
            return Vec::new();
        }
    }
    let tokens = lex(&text[from..], first_line);
    let code: Vec<Token> = tokens
        .iter()
        .copied()
        .filter(|t| t.kind != Kind::Comment)
        .collect();
    let message = message_strings(&code, path.starts_with(SIM_DIR));

    // (offset, line, id, how), gathered from texts and function names.
    let mut found: Vec<(usize, usize, String, How)> = Vec::new();
    let mut in_text = |t: &Token, how: How| {
        for (at, id) in upper_case_ids(t.text) {
            let line = t.line + t.text[..at].matches('\n').count();
            found.push((t.offset + at, line, id, how));
        }
    };
    for t in tokens.iter().filter(|t| t.kind == Kind::Comment) {
        in_text(t, How::Mention);
    }
    for (k, t) in code.iter().enumerate().filter(|(_, t)| t.kind == Kind::Str) {
        in_text(
            t,
            if message[k] {
                How::Message
            } else {
                How::Mention
            },
        );
    }
    for (k, test) in functions(&code) {
        let how = if test { How::TestName } else { How::Mention };
        for (at, id) in name_ids(code[k].text) {
            found.push((code[k].offset + at, code[k].line, id, how));
        }
    }
    found.retain(|(_, _, id, _)| prefixes.contains(prefix_of(id)));
    found.sort();

    let mut places: Vec<Place> = Vec::new();
    let mut at: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for (_, line, id, how) in found {
        match at.get(&(line, id.clone())) {
            Some(&i) => places[i].how = places[i].how.max(how),
            None => {
                at.insert((line, id.clone()), places.len());
                places.push(Place {
                    id,
                    file: path.to_string(),
                    line,
                    how,
                });
            }
        }
    }
    places
}

/// Compares the rules with the places in test code that name them. `registered` are the
/// prefixes of `spec/README.md`.
fn check(rules: &[RuleDef], places: &[Place], registered: &BTreeSet<String>) -> Outcome {
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

    // Per rule: the places that cite it, and those that only mention it.
    let mut cited_by: BTreeMap<&str, Vec<&Place>> = BTreeMap::new();
    let mut mentioned_by: BTreeMap<&str, Vec<&Place>> = BTreeMap::new();
    for place in places {
        if !first_definition.contains_key(place.id.as_str()) {
            problems.push(format!(
                "{}:{} names {}, which no spec defines",
                place.file, place.line, place.id
            ));
        } else if place.how == How::Mention {
            mentioned_by.entry(&place.id).or_default().push(place);
        } else {
            cited_by.entry(&place.id).or_default().push(place);
        }
    }

    let unique: Vec<&RuleDef> = rules
        .iter()
        .filter(|r| std::ptr::eq(first_definition[r.id.as_str()], *r))
        .filter(|r| !cited_by.contains_key(r.id.as_str()))
        .collect();
    let (mentioned, unnamed): (Vec<&RuleDef>, Vec<&RuleDef>) = unique
        .into_iter()
        .partition(|r| mentioned_by.contains_key(r.id.as_str()));
    let place = |r: &RuleDef| format!("{} ({}:{})", r.id, r.file, r.line);
    if !unnamed.is_empty() {
        problems.push(format!(
            "{} rule(s) named by no test: {}",
            unnamed.len(),
            unnamed
                .iter()
                .map(|r| place(r))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mentioned_only: Vec<String> = mentioned
        .iter()
        .map(|r| {
            let places: Vec<String> = mentioned_by[r.id.as_str()]
                .iter()
                .map(|c| format!("{}:{}", c.file, c.line))
                .collect();
            format!("{}: named only at {}", place(r), places.join(", "))
        })
        .collect();
    if !mentioned.is_empty() {
        problems.push(format!(
            "{} rule(s) covered by comments only (named in test code, but in no test's name and \
             no failure message; `-- --nocapture` lists where): {}",
            mentioned.len(),
            mentioned
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    let mut rows = vec![[
        "rule".to_string(),
        "spec file".to_string(),
        "citations".to_string(),
        "mentions".to_string(),
        "first citation".to_string(),
    ]];
    for rule in rules {
        let citing = cited_by.get(rule.id.as_str()).map_or(&[][..], |c| &c[..]);
        let mentions = mentioned_by.get(rule.id.as_str()).map_or(0, Vec::len);
        let first = citing
            .first()
            .map_or("-".to_string(), |c| format!("{}:{}", c.file, c.line));
        rows.push([
            rule.id.clone(),
            rule.file.clone(),
            citing.len().to_string(),
            mentions.to_string(),
            first,
        ]);
    }
    let mut widths = [0; 5];
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

    Outcome {
        problems,
        table,
        mentioned_only,
    }
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
    let mut places = Vec::new();
    for dir in TEST_DIRS.iter().chain([&SRC_DIR]) {
        for path in rust_files(root, dir) {
            if !path.starts_with(SELF_PATH) {
                places.extend(places_in_file(&path, &read(&root.join(&path)), &prefixes));
            }
        }
    }

    let outcome = check(&rules, &places, &registered);
    let citations = places.iter().filter(|c| c.how != How::Mention).count();
    println!(
        "spec coverage: {} rules in {} files; {} citations, {} mentions\n\n{}",
        rules.len(),
        spec_files.len(),
        citations,
        places.len() - citations,
        outcome.table
    );
    println!(
        "rules covered by comments only ({}):",
        outcome.mentioned_only.len()
    );
    for line in &outcome.mentioned_only {
        println!("  {line}");
    }
    assert!(
        outcome.problems.is_empty(),
        "the spec and the tests disagree (see spec/README.md):\n  {}",
        outcome.problems.join("\n  ")
    );
}

#[cfg(test)]
mod scanner_tests;
