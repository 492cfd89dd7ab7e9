//! The command lines of the three binaries, run for real (spec/cli.md, CLI-): both dash styles,
//! misspelled flags named as typed with the nearest flag, help and version only for their exact
//! spellings, and a property test that no invalid argument vector exits 0 or writes anything.

mod support;

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use serde_json::Value;
use support::backup::*;
use support::scratch;

/// Every long flag of `neo4j-backup`, and whether it takes a value.
const BACKUP_FLAGS: &[(&str, bool)] = &[
    ("host", true),
    ("port", true),
    ("from", true),
    ("to", true),
    ("type", true),
    ("verify", true),
    ("timeout", true),
    ("max-rate", true),
    ("json", false),
    ("plan", false),
    ("help", false),
    ("version", false),
];

fn run(bin: &str, args: &[&str]) -> Out {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("run the binary");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const BACKUP: &str = env!("CARGO_BIN_EXE_neo4j-backup");
const ADMIN: &str = env!("CARGO_BIN_EXE_neo4j-admin");
const SERVER: &str = env!("CARGO_BIN_EXE_neo4j");

// CLI-2, BK-8: the misspellings operators make exit 2 with one sentence naming the whole word as
// typed and the nearest flag in the same dash style, and take no backup; before, `-hots` and
// `-hst` printed the help and `-Verify` the version, each exiting 0.
#[test]
fn cli_2_a_misspelled_flag_exits_2_naming_the_word_and_the_nearest_flag() {
    let dir = scratch();
    let to = dir.path().join("backup");
    let to_s = to.to_str().unwrap();
    for (args, word, nearest) in [
        (
            vec!["-hots", "127.0.0.1", "-port", "1", "-to", to_s],
            "-hots",
            "-host",
        ),
        (vec!["-hst", "127.0.0.1", "-to", to_s], "-hst", "-host"),
        (
            vec!["-hostname", "127.0.0.1", "-to", to_s],
            "-hostname",
            "-host",
        ),
        (
            vec!["-host", "h", "-to", to_s, "-Verify", "full"],
            "-Verify",
            "-verify",
        ),
        (
            vec!["-host", "h", "-prot", "1", "-to", to_s],
            "-prot",
            "-port",
        ),
        (vec!["--hots", "h", "--to", to_s], "--hots", "--host"),
        (vec!["-host", "h", "-to", to_s, "-jsno"], "-jsno", "-json"),
    ] {
        let out = run(BACKUP, &args).expect(2);
        let line = out.one_error_line();
        assert!(
            line.contains(&format!("unknown flag '{word}'"))
                && line.contains(&format!("did you mean '{nearest}'")),
            "CLI-2: {args:?}: {line}"
        );
        assert!(out.stdout.is_empty(), "CLI-2: {args:?}: {out:#?}");
        assert!(!to.exists(), "CLI-4: {args:?} created the target");
    }
    for (bin, args, word) in [
        (ADMIN, vec!["check", "-hots"], "'-hots'"),
        (ADMIN, vec!["chekc", "x"], "'chekc'; did you mean 'check'"),
        (
            ADMIN,
            vec!["check", to_s, "-jsno"],
            "'-jsno'; did you mean '-json'",
        ),
        (
            SERVER,
            vec!["console", "-stroe", to_s],
            "'-stroe'; did you mean '-store'",
        ),
        (SERVER, vec!["-hots"], "'-hots'"),
    ] {
        let out = run(bin, &args).expect(2);
        let line = out.one_error_line();
        assert!(line.contains(word), "CLI-2: {args:?}: {line}");
        assert!(!to.exists(), "CLI-4: {args:?} created {to_s}");
    }
}

// CLI-3: help and version answer only their exact spellings, with exit 0.
#[test]
fn cli_3_help_and_version_only_for_exact_spellings() {
    for bin in [BACKUP, ADMIN, SERVER] {
        for flag in ["-h", "-help", "--help"] {
            let out = run(bin, &[flag]).expect(0);
            assert!(
                out.stdout.contains("Usage:"),
                "CLI-3: {bin} {flag}: {out:#?}"
            );
        }
        for flag in ["-V", "-version", "--version"] {
            let out = run(bin, &[flag]).expect(0);
            assert!(
                out.stdout.contains(env!("CARGO_PKG_VERSION")),
                "CLI-3: {bin} {flag}: {out:#?}"
            );
        }
        for flag in ["-hlep", "-Help", "-hv", "-Version", "--versoin"] {
            run(bin, &[flag]).expect(2).one_error_line();
        }
    }
}

// CLI-1: `neo4j-admin` and `neo4j` take one dash as well as two.
#[test]
fn cli_1_every_binary_takes_one_dash_or_two() {
    let dir = scratch();
    let store = dir.path().join("db");
    let store_s = store.to_str().unwrap();
    run(
        ADMIN,
        &[
            "generate",
            "-store",
            store_s,
            "-nodes",
            "10",
            "-format-version=1",
        ],
    )
    .expect(0);
    let report: Value =
        serde_json::from_str(&run(ADMIN, &["check", "-json", store_s]).expect(0).stdout).unwrap();
    assert_eq!(report["format_version"], "1", "CLI-1");
    assert_eq!(report["nodes"], 10, "CLI-1");
}

// CLI-6: `neo4j-admin restore` and `check` draw a bar for each long phase on a terminal, with
// units from the first frame; off a terminal they print whole lines only.
#[test]
fn cli_6_admin_progress_bars_on_a_terminal() {
    let dir = scratch();
    let store = dir.path().join("db");
    generate(&store, 20_000, &[]);
    let restored = dir.path().join("restored");
    let mut cmd = Command::new(ADMIN);
    cmd.args(["restore", "--from"])
        .arg(&store)
        .arg("--store")
        .arg(&restored);
    let (code, drawn) = on_a_terminal(cmd);
    assert_eq!(code, Some(0), "{drawn}");
    for phase in [
        "checking the backup: ",
        "copying the backup: ",
        "checking the copy: ",
    ] {
        assert!(
            drawn.contains(phase),
            "CLI-6: no `{phase}` bar in {drawn:?}"
        );
    }
    assert!(
        drawn.contains(" records, ETA") && drawn.contains("B of "),
        "CLI-6: {drawn:?}"
    );
    let mut cmd = Command::new(ADMIN);
    cmd.arg("check").arg(&restored);
    let (code, drawn) = on_a_terminal(cmd);
    assert_eq!(code, Some(0), "{drawn}");
    assert!(drawn.contains("checking the store: "), "CLI-6: {drawn:?}");
    let plain = run(ADMIN, &["check", restored.to_str().unwrap()]).expect(0);
    assert!(
        !plain.stdout.contains('\r') && !plain.stdout.contains("checking the store"),
        "CLI-6: a bar off a terminal: {plain:#?}"
    );
}

// BK-43, CLI-4: with --json, a usage error prints the failure document too (exit_code 2).
#[test]
fn bk_43_json_document_for_usage_errors() {
    let dir = scratch();
    let to = dir.path().join("b");
    let to_s = to.to_str().unwrap();
    for args in [
        vec!["--json", "-hots", "h", "-to", to_s],
        vec!["-json", "-host", "h", "-to", to_s, "-type", "sideways"],
        vec!["--json", "-host", "h"],
        vec!["--json", "-to", to_s],
    ] {
        let out = run(BACKUP, &args).expect(2);
        let line = out.one_error_line().to_string();
        let doc: Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("BK-43: {args:?}: not one JSON document ({e}): {out:#?}"));
        assert_eq!(doc["outcome"], "failed", "BK-43: {doc}");
        assert_eq!(doc["exit_code"], 2, "BK-43: {doc}");
        assert!(
            line.ends_with(doc["error"].as_str().unwrap()),
            "BK-43: {line} / {doc}"
        );
    }
}

// BK-49, BK-1: `-host host:port` names the port when -port is absent; with -port as well, it is
// a usage error; a bare IPv6 address is a host.
#[test]
fn bk_49_host_may_carry_the_port() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let server = support::server::ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    write_nodes(&server, 2);
    let out = run(BACKUP, &["-host", &addr, "-to", b.to_str().unwrap()]).expect(0);
    assert!(
        out.summary().contains("full backup of store"),
        "BK-49: {out:#?}"
    );
    assert_same_as_server(&b, &server);
    let line = run(
        BACKUP,
        &["-host", &addr, "-port", "1", "-to", b.to_str().unwrap()],
    )
    .expect(2)
    .one_error_line()
    .to_string();
    assert!(line.contains("give the port once"), "BK-49: {line}");
    // A bare IPv6 address is a host, not host:port (nothing listens on port 1 there).
    let line = run(
        BACKUP,
        &["-host", "::1", "-port", "1", "-to", b.to_str().unwrap()],
    )
    .expect(1)
    .one_error_line()
    .to_string();
    assert!(line.contains("[::1]:1"), "BK-49: {line}");
}

/// A valid `neo4j-backup` invocation against `port` into `to`, as (flag, value) pairs.
fn valid_invocation(port: u16, to: &Path, extras: &[usize]) -> Vec<(String, Option<String>)> {
    let mut args = vec![
        ("-host".to_string(), Some("127.0.0.1".to_string())),
        ("-port".to_string(), Some(port.to_string())),
        ("-to".to_string(), Some(to.to_str().unwrap().to_string())),
        ("-timeout".to_string(), Some("2s".to_string())),
    ];
    let optional: [(&str, Option<&str>); 5] = [
        ("--type", Some("full")),
        ("-verify", Some("false")),
        ("--json", None),
        ("-plan", None),
        ("--max-rate", Some("1M")),
    ];
    for &i in extras {
        let (f, v) = optional[i % optional.len()];
        if !args.iter().any(|(a, _)| a == f) {
            args.push((f.to_string(), v.map(str::to_string)));
        }
    }
    args
}

/// Whether `word` (with its dashes) is a spelling the command accepts as a flag.
fn is_a_flag(word: &str) -> bool {
    let name = word.trim_start_matches('-');
    let name = name.split('=').next().unwrap_or("");
    word.starts_with('-')
        && (BACKUP_FLAGS.iter().any(|(f, _)| *f == name)
            || (word.len() == 2 && (name == "h" || name == "V")))
}

/// One way to break a valid invocation.
#[derive(Clone, Debug)]
enum Breakage {
    /// Edit one flag's name: delete, insert, swap or change the case of one letter.
    Misspell {
        flag: usize,
        at: usize,
        edit: u8,
        letter: char,
    },
    /// A word that is no flag, anywhere.
    Stray { at: usize },
    /// A value that the flag does not accept.
    BadValue { which: usize },
    /// A flag that takes a value, last, without one.
    MissingValue { which: usize },
    /// A flag given twice.
    Twice { flag: usize },
    /// `-from` beside `-host`.
    Conflict,
}

fn breakage() -> impl Strategy<Value = Breakage> {
    prop_oneof![
        (
            0usize..8,
            0usize..10,
            0u8..4,
            proptest::char::range('a', 'z')
        )
            .prop_map(|(flag, at, edit, letter)| Breakage::Misspell {
                flag,
                at,
                edit,
                letter
            }),
        (0usize..12).prop_map(|at| Breakage::Stray { at }),
        (0usize..6).prop_map(|which| Breakage::BadValue { which }),
        (0usize..6).prop_map(|which| Breakage::MissingValue { which }),
        (0usize..4).prop_map(|flag| Breakage::Twice { flag }),
        Just(Breakage::Conflict),
    ]
}

/// Applies `b` to the invocation; `None` when this edit happens to yield a valid spelling.
fn broken(args: &[(String, Option<String>)], b: &Breakage) -> Option<Vec<String>> {
    let flat = |args: &[(String, Option<String>)]| -> Vec<String> {
        args.iter()
            .flat_map(|(f, v)| std::iter::once(f.clone()).chain(v.clone()))
            .collect()
    };
    let mut args = args.to_vec();
    match b {
        Breakage::Misspell {
            flag,
            at,
            edit,
            letter,
        } => {
            let i = flag % args.len();
            let word = &args[i].0;
            let dashes = if word.starts_with("--") { 2 } else { 1 };
            let mut name: Vec<char> = word[dashes..].chars().collect();
            let at = at % name.len();
            match edit {
                0 if name.len() > 1 => {
                    name.remove(at);
                }
                0 | 1 => name.insert(at, *letter),
                2 if name.len() > 1 => {
                    let next = (at + 1) % name.len();
                    name.swap(at, next)
                }
                _ => name[at] = name[at].to_ascii_uppercase(),
            }
            let misspelt = format!(
                "{}{}",
                &word[..dashes],
                name.into_iter().collect::<String>()
            );
            if is_a_flag(&misspelt) {
                return None;
            }
            args[i].0 = misspelt;
            Some(flat(&args))
        }
        Breakage::Stray { at } => {
            let mut v = flat(&args);
            // After a value-taking flag the word would be its value: put it before the flag.
            let mut at = at % (v.len() + 1);
            while at > 0
                && BACKUP_FLAGS
                    .iter()
                    .any(|(f, takes)| *takes && v[at - 1].trim_start_matches('-') == *f)
            {
                at -= 1;
            }
            v.insert(at, "stray".to_string());
            Some(v)
        }
        Breakage::BadValue { which } => {
            let (flag, value) = [
                ("-type", "sideways"),
                ("-verify", "maybe"),
                ("-port", "70000"),
                ("-timeout", "5x"),
                ("-max-rate", "0"),
                ("-timeout", "0"),
            ][which % 6];
            args.retain(|(f, _)| f.trim_start_matches('-') != flag.trim_start_matches('-'));
            args.push((flag.to_string(), Some(value.to_string())));
            Some(flat(&args))
        }
        Breakage::MissingValue { which } => {
            let flag = ["-host", "-port", "-to", "-type", "-verify", "-timeout"][which % 6];
            args.retain(|(f, _)| f.trim_start_matches('-') != flag.trim_start_matches('-'));
            let mut v = flat(&args);
            v.push(flag.to_string());
            Some(v)
        }
        Breakage::Twice { flag } => {
            let pair = args[flag % args.len()].clone();
            args.push(pair);
            Some(flat(&args))
        }
        Breakage::Conflict => {
            args.insert(0, ("-from".to_string(), Some("127.0.0.1:1".to_string())));
            Some(flat(&args))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    // CLI-4: any argument vector that is not a valid invocation exits 2 with one sentence and
    // writes nothing (no target directory appears); a valid one against a port where nothing
    // listens fails with exit 1, and leaves nothing behind either. Neither ever exits 0.
    #[test]
    fn cli_4_no_invalid_invocation_exits_0_or_writes(
        extras in proptest::collection::vec(0usize..5, 0..4),
        b in breakage(),
    ) {
        let dir = scratch();
        let to = dir.path().join("target");
        let port = free_port();
        let valid = valid_invocation(port, &to, &extras);
        let flat: Vec<String> = valid
            .iter()
            .flat_map(|(f, v)| std::iter::once(f.clone()).chain(v.clone()))
            .collect();
        let out = run(BACKUP, &flat.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(out.code, Some(1), "CLI-4: valid {:?}: {:#?}", flat, out);
        prop_assert!(!to.exists(), "CLI-4: {:?} left {}", flat, to.display());
        let Some(args) = broken(&valid, &b) else {
            return Ok(());
        };
        let out = run(BACKUP, &args.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(out.code, Some(2), "CLI-4: {:?} ({:?}): {:#?}", args, b, out);
        prop_assert_eq!(out.stderr.lines().count(), 1, "CLI-4: {:#?}", out);
        prop_assert!(!to.exists(), "CLI-4: {:?} created {}", args, to.display());
        if args.iter().any(|a| a == "--json" || a == "-json") {
            let doc: Value = serde_json::from_str(out.stdout.trim()).expect("BK-43: one document");
            prop_assert_eq!(&doc["exit_code"], 2, "BK-43");
        } else {
            prop_assert!(out.stdout.is_empty(), "CLI-4: {:#?}", out);
        }
    }
}
