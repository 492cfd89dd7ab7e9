//! Unit tests of the scan: rule definitions, prefixes, the lexer, citations and mentions, and
//! `check`'s verdicts, on text written here.

use std::collections::BTreeSet;

use super::*;

fn prefixes(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|p| p.to_string()).collect()
}

fn ids(places: &[Place]) -> Vec<(&str, usize, How)> {
    places
        .iter()
        .map(|c| (c.id.as_str(), c.line, c.how))
        .collect()
}

use How::{Mention, Message, TestName};

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
fn the_lexer_tells_comments_strings_and_code_apart() {
    let text = r####"let a = "x // y"; // a "comment"
/* outer /* nested */ still */ f('"', '\'', b'"', 'a);
let r = r#"raw "quoted" // text"#; let s = b"\"" ; let t = r#type;
fn f<'a>(x: &'a str) { "multi
line" }
"####;
    let tokens = lex(text, 10);
    let of = |kind: Kind| -> Vec<(&str, usize)> {
        tokens
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| (t.text, t.line))
            .collect()
    };
    assert_eq!(
        of(Kind::Comment),
        [
            ("// a \"comment\"", 10),
            ("/* outer /* nested */ still */", 11)
        ]
    );
    assert_eq!(
        of(Kind::Str),
        [
            ("\"x // y\"", 10),
            ("r#\"raw \"quoted\" // text\"#", 12),
            ("b\"\\\"\"", 12),
            ("\"multi\nline\"", 13),
        ]
    );
    assert_eq!(
        of(Kind::Other),
        [
            ("'\"'", 11),
            ("'\\''", 11),
            ("b'\"'", 11),
            ("'a", 11),
            ("'a", 13),
            ("'a", 13)
        ]
    );
    let idents: Vec<&str> = of(Kind::Ident).into_iter().map(|(t, _)| t).collect();
    assert!(
        idents.contains(&"r") && idents.contains(&"type"),
        "{idents:?}"
    );
    let last = tokens.last().unwrap();
    assert_eq!((last.kind, last.text, last.line), (Kind::Close, "}", 14));
    assert_eq!(&text[last.offset..last.offset + 1], "}");
}

#[test]
fn comments_and_other_strings_only_mention() {
    let known = prefixes(&["ST-", "IO-"]);
    let text = "\
// ST-1: a comment mentions.
let x = \"see ST-12 and IO-3\";
// SHA-256 and UTF-8 have other prefixes.
// XST-1, ST-1a and ST_1 are not whole ids; ST-1. is.
// ST-4 twice on one line, ST-4, is one mention.
fn st_5_a_helper() {}
/// ST-6 in a doc comment over a test.
#[test]
fn works() { let _ = \"ST-7\"; }
";
    let found = places_in_file("tests/store.rs", text, &known);
    assert_eq!(
        ids(&found),
        [
            ("ST-1", 1, Mention),
            ("ST-12", 2, Mention),
            ("IO-3", 2, Mention),
            ("ST-1", 4, Mention),
            ("ST-4", 5, Mention),
            ("ST-5", 6, Mention),
            ("ST-6", 7, Mention),
            ("ST-7", 9, Mention),
        ]
    );
    assert!(found.iter().all(|c| c.file == "tests/store.rs"));
}

#[test]
fn test_function_names_cite_with_lower_case_and_underscores() {
    let known = prefixes(&["ST-", "LOG-"]);
    let text = "\
#[test]
fn st_12_recovery_cuts_torn_tail() {}
#[test]
fn test_12() {}
#[tokio::test(flavor = \"multi_thread\")]
async fn torn_tail_log_3_and_st_4() {}
#[test]
fn st12_no_underscore() {}
#[test]
fn st_6x() {}
#[test]
fn ST_7() {}
#[test]
#[should_panic]
/// A doc comment between the attributes and the function.
pub(crate) fn st_8_panics() {}
#[test]
#[ignore]
fn st_9_is_not_run() {}
fn st_10_is_a_helper() {}
#[cfg(test)]
mod st_11 {}
#[test]
const X: u8 = 0; fn st_13_after_another_item() {}
proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
    #[test]
    fn st_14_a_property(x in 0..8u8) {}
}
";
    let found = places_in_file("sim/recovery.rs", text, &known);
    assert_eq!(
        ids(&found),
        [
            ("ST-12", 2, TestName),
            ("LOG-3", 6, TestName),
            ("ST-4", 6, TestName),
            ("ST-8", 16, TestName),
            ("ST-9", 19, Mention),
            ("ST-10", 20, Mention),
            ("ST-13", 24, Mention),
            ("ST-14", 28, TestName),
        ]
    );
}

#[test]
fn failure_messages_cite_and_conditions_only_mention() {
    let known = prefixes(&["ST-"]);
    let text = r##"
assert!(ok, "ST-1: the message");
assert!(out.contains("ST-2"));
assert_eq!(a, "ST-3", "the compared values are not the message");
assert_ne!(
    f(a, "ST-4"),
    b,
    "{} and ST-5 on a later line",
    "ST-6 among the arguments",
);
prop_assert!(x < 3, "ST-7");
prop_assert_eq!(x, y, r#"ST-8 in a raw string"#);
if bad { panic!("ST-9: {bad:?}") }
assert!(x, "{}", format!("ST-10 nested"));
assert!(x /* ST-11 */, "msg"); // ST-1 again on its line
debug_assert!(x, "ST-12");
assert!(x, "ST-13 and ST-13 once");
let e = Err(format!("ST-14: a checker's report"));
"##;
    let found = places_in_file("tests/store.rs", text, &known);
    assert_eq!(
        ids(&found),
        [
            ("ST-1", 2, Message),
            ("ST-2", 3, Mention),
            ("ST-3", 4, Mention),
            ("ST-4", 6, Mention),
            ("ST-5", 8, Message),
            ("ST-6", 9, Message),
            ("ST-7", 11, Message),
            ("ST-8", 12, Message),
            ("ST-9", 13, Message),
            ("ST-10", 14, Message),
            ("ST-11", 15, Mention),
            ("ST-1", 15, Mention),
            ("ST-12", 16, Mention),
            ("ST-13", 17, Message),
            ("ST-14", 18, Mention),
        ]
    );
    // Under sim/, an Err(...) is how a checker reports a violation.
    let sim = places_in_file("sim/scenarios/x.rs", text, &known);
    assert_eq!(
        sim.last().map(|c| (c.id.as_str(), c.how)),
        Some(("ST-14", Message))
    );
    let patterns = "match r { Err(e) => {} }\nreturn Err(\"ST-2: refused\".into());\n";
    assert_eq!(
        ids(&places_in_file("sim/model.rs", patterns, &known)),
        [("ST-2", 2, Message)]
    );
}

#[test]
fn in_src_only_the_test_module_is_test_code() {
    let known = prefixes(&["ST-"]);
    let text = "\
//! The store (rule ST-1).
/// Writes the metadata (ST-2).
pub fn write() { assert!(true, \"ST-3\"); }
// #[cfg(test)] in a comment does not start the test part: ST-3
#[cfg(test)]
mod tests {
    // ST-4
    #[test]
    fn st_5_works() { assert!(true, \"ST-6\"); }
}
";
    assert_eq!(
        ids(&places_in_file("src/store/meta.rs", text, &known)),
        [
            ("ST-4", 7, Mention),
            ("ST-5", 9, TestName),
            ("ST-6", 9, Message)
        ]
    );
    let no_tests = "//! ST-1 only in docs.\npub fn f() { assert!(true, \"ST-1\"); }\n";
    assert!(places_in_file("src/lib.rs", no_tests, &known).is_empty());
    // Outside src/ the whole file is test code.
    assert_eq!(ids(&places_in_file("tests/meta.rs", text, &known)).len(), 7);
}

fn rule(id: &str, file: &str, line: usize) -> RuleDef {
    RuleDef {
        id: id.to_string(),
        file: file.to_string(),
        line,
    }
}

fn place(id: &str, file: &str, line: usize, how: How) -> Place {
    Place {
        id: id.to_string(),
        file: file.to_string(),
        line,
        how,
    }
}

#[test]
fn check_passes_when_every_rule_is_cited_and_defined() {
    let rules = [
        rule("ST-1", "spec/store.md", 3),
        rule("ST-2", "spec/store.md", 5),
    ];
    let places = [
        place("ST-1", "tests/a.rs", 10, Mention),
        place("ST-1", "tests/a.rs", 11, TestName),
        place("ST-2", "tests/a.rs", 12, Message),
        place("ST-1", "tests/b.rs", 1, Message),
    ];
    let outcome = check(&rules, &places, &prefixes(&["ST-"]));
    assert_eq!(outcome.problems, Vec::<String>::new());
    assert_eq!(outcome.mentioned_only, Vec::<String>::new());
    let lines: Vec<&str> = outcome.table.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("rule"));
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["ST-1", "spec/store.md", "2", "1", "tests/a.rs:11"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["ST-2", "spec/store.md", "1", "0", "tests/a.rs:12"]
    );
}

#[test]
fn check_reports_uncited_mentioned_only_undefined_duplicate_and_unregistered() {
    let rules = [
        rule("ST-1", "spec/store.md", 3),
        rule("ST-2", "spec/store.md", 5),
        rule("ST-3", "spec/store.md", 7),
        rule("ST-1", "spec/log.md", 9),
        rule("XY-1", "spec/xy.md", 1),
        rule("ST-4", "spec/store.md", 11),
    ];
    let places = [
        place("ST-1", "tests/a.rs", 10, TestName),
        place("ST-99", "sim/b.rs", 4, Mention),
        place("XY-1", "sim/b.rs", 5, Message),
        place("ST-4", "tests/a.rs", 20, Mention),
        place("ST-4", "sim/c.rs", 2, Mention),
    ];
    let outcome = check(&rules, &places, &prefixes(&["ST-"]));
    assert_eq!(
        outcome.problems,
        [
            "ST-1 is defined twice: spec/store.md:3 and spec/log.md:9",
            "XY-1 (spec/xy.md:1) uses the prefix XY-, which spec/README.md does not register",
            "sim/b.rs:4 names ST-99, which no spec defines",
            "2 rule(s) named by no test: ST-2 (spec/store.md:5), ST-3 (spec/store.md:7)",
            "1 rule(s) covered by comments only (named in test code, but in no test's name and \
             no failure message; `-- --nocapture` lists where): ST-4",
        ]
    );
    assert_eq!(
        outcome.mentioned_only,
        ["ST-4 (spec/store.md:11): named only at tests/a.rs:20, sim/c.rs:2"]
    );
    assert!(outcome.table.contains("ST-3"));
}
