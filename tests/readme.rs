//! The README as a reader of a fresh clone uses it.
//!
//! - Its examples run as written: the ```` ```sh ```` blocks of the `neo4j-admin` section, the
//!   HTTP API section, the `neo4j-backup` section (which continues the HTTP example's server)
//!   and the section on securing the backup port (its own server, with TLS)
//!   are parsed into commands and run, with only the paths (`/tmp/...`, into a scratch
//!   directory) and the addresses (`127.0.0.1:7474` and the backup service's default port 6362,
//!   the test server's) substituted; what each command prints must be what the `# →` lines
//!   under it say (several lines: the output's lines, in order).
//! - The README, `ARCHITECTURE.md` and `spec/*.md` point only at files in the repository.
//! - What the README says about simulation seeds is what `sim/` and `.ci/run` do.
//!
//! How a command runs: `cargo build --release` is skipped (the test uses the binaries cargo built
//! for it); `.../neo4j-admin ARGS` runs the built `neo4j-admin` and must exit 0;
//! `.../neo4j console --store DIR` starts the built server on DIR with ephemeral ports (the
//! test's substitute for 127.0.0.1:7474; with `--config FILE`, FILE's keys with those ports);
//! `.../neo4j-backup ARGS` runs the built tool against that server's backup service (`-port`
//! added to a bare `-host 127.0.0.1`) and must exit 0, or, when its `# →` line reads
//! `exit N: ...`, exit N with what follows on stderr; `cargo run --example tls-certs -- ARGS`
//! runs the built example (the section on TLS);
//! `curl` is not run (it may not be installed): its
//! method (`-X`), body (`-d`) and URL are sent with the test's HTTP client. Anything else fails
//! the test, so a new kind of example needs a line here.
//!
//! How a `# →` comment is compared: with the output trimmed and, when it is JSON, with the
//! whitespace between its tokens removed (keys keep their order), character for character,
//! except that `…` stands for any run of characters other than `"`, `,` and whitespace (a store
//! id, the rest of a digest).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::scratch;
use support::server::{request_raw, ServerProcess};

/// The test servers' configuration: ephemeral ports, so tests run in parallel.
const EPHEMERAL: &str = "http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:0\n";
/// The address the README's examples talk to.
const README_HTTP: &str = "127.0.0.1:7474";
/// The backup service's address in the README's examples (the default port).
const README_BACKUP: &str = "127.0.0.1:6362";
/// The directory the README's examples put stores in.
const README_TMP: &str = "/tmp/";

/// The built example program `name` (`cargo test` builds the examples beside the tests; a
/// lone `cargo test --test readme` does not, so it builds the one it needs first).
fn example(name: &str) -> PathBuf {
    let debug = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let path = debug.join("examples").join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example {name} failed");
    }
    path
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap()
}

/// The fenced ```` ```sh ```` blocks under the first heading that starts with `heading`, up to
/// the next heading of the same or a higher level, with the line number of each block's first
/// line.
fn sh_blocks(markdown: &str, heading: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = markdown.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(heading))
        .unwrap_or_else(|| panic!("README.md has no heading {heading:?}"));
    let level = heading.chars().take_while(|&c| c == '#').count();
    let mut blocks = Vec::new();
    let mut i = start + 1;
    while i < lines.len() {
        let line = lines[i];
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            break;
        }
        if line.starts_with("```") {
            let sh = line.trim() == "```sh";
            let first = i + 2;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && !lines[i].starts_with("```") {
                body.push_str(lines[i]);
                body.push('\n');
                i += 1;
            }
            if sh {
                blocks.push((first, body));
            }
        }
        i += 1;
    }
    blocks
}

/// One command of a shell block: its words (quotes removed, continuations joined), the `# →`
/// comment under it, and its line in the README.
#[derive(Clone, Debug, PartialEq)]
struct Step {
    words: Vec<String>,
    expect: Option<String>,
    line: usize,
}

/// Splits a shell block into commands the way `sh` would for the forms the README uses: words
/// separated by blanks, `'...'` and `"..."` quoting (across lines too), `\` + newline joining
/// lines, and `#` comments; a comment starting `# →` is the result of the command before it.
fn parse_sh(block: &str, first_line: usize) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut line = first_line;
    let mut start_line = line;
    let mut chars = block.chars().peekable();
    let finish = |steps: &mut Vec<Step>, words: &mut Vec<String>, at: usize| {
        if !words.is_empty() {
            steps.push(Step {
                words: std::mem::take(words),
                expect: None,
                line: at,
            });
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    if q == '\n' {
                        line += 1;
                    }
                    w.push(q);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            w.push(chars.next().unwrap())
                        }
                        '\n' => {
                            line += 1;
                            w.push(q)
                        }
                        _ => w.push(q),
                    }
                }
            }
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
                line += 1;
            }
            '#' if word.is_none() => {
                let comment: String = chars.by_ref().take_while(|&c| c != '\n').collect();
                if let Some(result) = comment.strip_prefix(" →") {
                    finish(&mut steps, &mut words, start_line);
                    let step = steps
                        .last_mut()
                        .unwrap_or_else(|| panic!("README.md:{line}: a `# →` under no command"));
                    // Several `# →` lines are the lines of one output, in order.
                    let text = match step.expect.take() {
                        Some(before) => format!("{before}\n{}", result.trim()),
                        None => result.trim().to_string(),
                    };
                    step.expect = Some(text);
                }
                if let Some(w) = word.take() {
                    words.push(w);
                }
                finish(&mut steps, &mut words, start_line);
                line += 1;
                start_line = line;
            }
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
                finish(&mut steps, &mut words, start_line);
                line += 1;
                start_line = line;
            }
            _ => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word.take() {
        words.push(w);
    }
    finish(&mut steps, &mut words, start_line);
    steps
}

/// `text` without the whitespace between JSON tokens (strings keep theirs), when it is JSON.
fn compact(text: &str) -> String {
    let text = text.trim();
    if !(text.starts_with('{') || text.starts_with('[')) {
        return text.to_string();
    }
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Whether `actual` is what the `# →` comment `expected` says (see the module comment); an
/// output of several lines is compared line by line.
fn matches(expected: &str, actual: &str) -> bool {
    if expected.contains('\n') {
        let (want, got): (Vec<&str>, Vec<&str>) = (
            expected.lines().collect(),
            actual.trim_end().lines().collect(),
        );
        return want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| matches(w, g));
    }
    fn glob(p: &[char], a: &[char]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some(('…', rest)) => {
                let run = a
                    .iter()
                    .take_while(|c| !matches!(c, '"' | ',') && !c.is_whitespace())
                    .count();
                (0..=run).any(|n| glob(rest, &a[n..]))
            }
            Some((c, rest)) => a.first() == Some(c) && glob(rest, &a[1..]),
        }
    }
    let p: Vec<char> = expected.trim().chars().collect();
    let a: Vec<char> = compact(actual).chars().collect();
    glob(&p, &a)
}

/// Runs the steps of the README's examples: a scratch directory for `/tmp/`, and the server a
/// `neo4j console` step started.
struct Runner {
    tmp: PathBuf,
    server: Option<ServerProcess>,
}

impl Runner {
    fn new(tmp: &Path) -> Runner {
        Runner {
            tmp: tmp.to_path_buf(),
            server: None,
        }
    }

    /// `text` with the README's paths and address replaced by the test's.
    fn substitute(&self, text: &str) -> String {
        let mut text = text.replace(README_TMP, &format!("{}/", self.tmp.display()));
        if let Some(server) = &self.server {
            text = text.replace(README_HTTP, &server.http);
            if let Some(backup) = &server.backup {
                text = text.replace(README_BACKUP, backup);
            }
        }
        text
    }

    /// Runs `step`; returns what it printed, `None` for a step that prints no result.
    fn run(&mut self, step: &Step) -> Option<String> {
        let words: Vec<String> = step.words.iter().map(|w| self.substitute(w)).collect();
        let at = format!("README.md:{}: {}", step.line, step.words.join(" "));
        let program = words[0].rsplit('/').next().unwrap();
        match program {
            "cargo" if words[1..] == ["build", "--release"] => None,
            "cargo" => {
                assert!(
                    words[1..4] == ["run", "--example", "tls-certs"] && words[4] == "--",
                    "{at}: which cargo command?"
                );
                let out = Command::new(example("tls-certs"))
                    .args(&words[5..])
                    .output()
                    .unwrap();
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{at}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Some(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            "neo4j-admin" => {
                let out = Command::new(env!("CARGO_BIN_EXE_neo4j-admin"))
                    .args(&words[1..])
                    .output()
                    .unwrap();
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{at}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Some(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            "neo4j-backup" => {
                let server = self
                    .server
                    .as_ref()
                    .unwrap_or_else(|| panic!("{at}: no `neo4j console` step before"));
                let backup = server.backup.as_ref().expect("the backup service is on");
                let port = backup.rsplit_once(':').unwrap().1;
                let mut args = words[1..].to_vec();
                // `-host 127.0.0.1` means the default port, where the README's server listens;
                // the test's server listens elsewhere.
                if args.iter().any(|a| a == "-host") && !args.iter().any(|a| a == "-port") {
                    args.extend(["-port".to_string(), port.to_string()]);
                }
                let out = Command::new(env!("CARGO_BIN_EXE_neo4j-backup"))
                    .args(&args)
                    .output()
                    .unwrap();
                // `# → exit N: ...` says the run fails with N and what it says on stderr.
                let failing = step.expect.as_deref().and_then(|e| {
                    let (code, _) = e.strip_prefix("exit ")?.split_once(": ")?;
                    code.parse::<i32>().ok()
                });
                match failing {
                    Some(code) => {
                        assert_eq!(out.status.code(), Some(code), "{at}: {out:?}");
                        Some(format!(
                            "exit {code}: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ))
                    }
                    None => {
                        assert_eq!(
                            out.status.code(),
                            Some(0),
                            "{at}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                        Some(String::from_utf8_lossy(&out.stdout).into_owned())
                    }
                }
            }
            "neo4j" => {
                assert!(
                    (words.len() == 4 || words.len() == 6 && words[4] == "--config")
                        && words[1] == "console"
                        && words[2] == "--store",
                    "{at}: the test runs only `neo4j console --store DIR [--config FILE]`"
                );
                assert!(self.server.is_none(), "{at}: a second server");
                // The README's configuration, on the test's ephemeral ports.
                let config = match words.get(5) {
                    Some(file) => std::fs::read_to_string(file).unwrap() + EPHEMERAL,
                    None => EPHEMERAL.to_string(),
                };
                self.server = Some(ServerProcess::start(Path::new(&words[3]), Some(&config)));
                None
            }
            "curl" => {
                let server = self
                    .server
                    .as_ref()
                    .unwrap_or_else(|| panic!("{at}: no `neo4j console` step before"));
                let (mut method, mut body, mut url) = (None, None, None);
                let mut args = words[1..].iter();
                while let Some(arg) = args.next() {
                    match arg.as_str() {
                        "-s" | "--silent" => {}
                        "-X" | "--request" => method = args.next().cloned(),
                        "-d" | "--data" | "--data-raw" => body = args.next().cloned(),
                        u if u.starts_with("http://") => url = Some(u.to_string()),
                        other => panic!("{at}: the test does not know curl's {other}"),
                    }
                }
                let url = url.unwrap_or_else(|| panic!("{at}: no URL"));
                let path = url
                    .strip_prefix(&format!("http://{}", server.http))
                    .unwrap_or_else(|| panic!("{at}: not the server's address: {url}"));
                // curl's default: POST with -d, else GET.
                let method = method.unwrap_or(if body.is_some() { "POST" } else { "GET" }.into());
                let body = body.unwrap_or_default();
                let answer = request_raw(&server.http, &method, path, body.as_bytes());
                Some(answer.text())
            }
            other => panic!("{at}: the test does not know how to run {other}"),
        }
    }

    /// Runs every step of `blocks` and checks each `# →` result; returns the programs run.
    fn run_blocks(&mut self, blocks: &[(usize, String)]) -> Vec<String> {
        let mut ran = Vec::new();
        for (line, block) in blocks {
            for step in parse_sh(block, *line) {
                let at = format!("README.md:{}: {}", step.line, step.words.join(" "));
                let printed = self.run(&step);
                ran.push(step.words[0].rsplit('/').next().unwrap().to_string());
                match (&step.expect, printed) {
                    (Some(expected), Some(printed)) => {
                        let expected = self.substitute(expected);
                        assert!(
                            matches(&expected, &printed),
                            "{at}\nthe README says: {expected}\nit prints:       {}",
                            compact(&printed)
                        );
                    }
                    (None, Some(printed)) => {
                        panic!("{at}: no `# →` line says what it prints ({printed})")
                    }
                    (Some(_), None) => panic!("{at}: a `# →` line under a command without output"),
                    (None, None) => {}
                }
            }
        }
        ran
    }
}

/// The `neo4j-admin` example runs as written and prints what its `# →` lines say.
#[test]
fn readme_neo4j_admin_example_runs_as_written() {
    let readme = read("README.md");
    let blocks = sh_blocks(&readme, "## `neo4j-admin`");
    let dir = scratch();
    let mut runner = Runner::new(dir.path());
    let ran = runner.run_blocks(&blocks);
    assert!(
        ran.iter().filter(|p| *p == "neo4j-admin").count() >= 3,
        "the neo4j-admin example lost its commands: {ran:?}"
    );
}

/// The HTTP API example runs as written, on the new store its first step starts a server on, and
/// every answer is what its `# →` line says.
#[test]
fn readme_http_example_runs_as_written() {
    let readme = read("README.md");
    let blocks = sh_blocks(&readme, "### HTTP API");
    let dir = scratch();
    let mut runner = Runner::new(dir.path());
    let ran = runner.run_blocks(&blocks);
    assert_eq!(
        ran.first().map(String::as_str),
        Some("neo4j"),
        "the HTTP example starts with a server on a new store: {ran:?}"
    );
    assert!(
        ran.iter().filter(|p| *p == "curl").count() >= 5,
        "the HTTP example lost its requests: {ran:?}"
    );
    assert_eq!(runner.server.take().unwrap().terminate(), Some(0));
}

/// The `neo4j-backup` example runs as written against the server of the HTTP example, after it:
/// a full backup, an incremental one, a plan, and a check of the backup, each printing what its
/// `# →` lines say.
#[test]
fn readme_backup_example_runs_as_written() {
    let readme = read("README.md");
    let dir = scratch();
    let mut runner = Runner::new(dir.path());
    runner.run_blocks(&sh_blocks(&readme, "### HTTP API"));
    let ran = runner.run_blocks(&sh_blocks(&readme, "## `neo4j-backup`"));
    assert!(
        ran.iter().filter(|p| *p == "neo4j-backup").count() >= 3,
        "the neo4j-backup example lost its runs: {ran:?}"
    );
    assert_eq!(runner.server.take().unwrap().terminate(), Some(0));
}

/// The TLS recipe runs as written: certificates and configuration from the example program, a
/// server with TLS, a backup with the client's certificate, and the two refusals; the
/// configuration the example wrote is the one the README shows.
#[test]
fn readme_tls_example_runs_as_written() {
    let readme = read("README.md");
    let dir = scratch();
    let mut runner = Runner::new(dir.path());
    let blocks = sh_blocks(&readme, "## Securing the backup port");
    let ran = runner.run_blocks(&blocks);
    assert_eq!(
        ran,
        [
            "cargo",
            "neo4j",
            "neo4j-backup",
            "neo4j-backup",
            "neo4j-backup"
        ],
        "the TLS example lost its steps"
    );
    let shown = properties_block(&readme, "## Securing the backup port");
    let written = std::fs::read_to_string(dir.path().join("tls/neo4j.properties")).unwrap();
    assert_eq!(
        runner.substitute(&shown),
        written,
        "the README shows the configuration tls-certs writes"
    );
    let log = runner.server.take().unwrap().stderr_when_stopped();
    for said in [
        "presented a certificate accepted for CN backup, DNS backup",
        "the client presented no certificate",
        "the client did not begin a TLS handshake",
    ] {
        assert!(
            log.contains(said),
            "the server's log, as the README says: {said}\n{log}"
        );
    }
}

/// The first ```` ```properties ```` block under `heading`.
fn properties_block(markdown: &str, heading: &str) -> String {
    let after = markdown.split(heading).nth(1).expect("the heading");
    let block = after
        .split("```properties\n")
        .nth(1)
        .expect("a properties block");
    block.split("```").next().unwrap().to_string()
}

#[test]
fn parse_sh_and_matches() {
    let block = "cmd a 'b c' \\\n  -d '{\"x\": [\n 1]}'\n# → {\"ok\":true}\n\n# a remark\nnext \"q\\\"q\" # trailing\n";
    let steps = parse_sh(block, 10);
    assert_eq!(
        steps,
        [
            Step {
                words: vec![
                    "cmd".into(),
                    "a".into(),
                    "b c".into(),
                    "-d".into(),
                    "{\"x\": [\n 1]}".into()
                ],
                expect: Some("{\"ok\":true}".into()),
                line: 10,
            },
            Step {
                words: vec!["next".into(), "q\"q".into()],
                expect: None,
                line: 16,
            },
        ]
    );
    assert!(matches(
        "{\"ids\":[0,1,0],\"tx_id\":1}",
        "{\"ids\":[0,1,0],\"tx_id\":1}\n"
    ));
    assert!(!matches(
        "{\"ids\":[0,1,0],\"tx_id\":1}",
        "{\"ids\":[0,1,1],\"tx_id\":1}"
    ));
    assert!(!matches(
        "{\"tx_id\":1,\"ids\":[0,1,0]}",
        "{\"ids\":[0,1,0],\"tx_id\":1}"
    ));
    assert!(matches(
        "{\"id\":\"…\",\"digest\":\"ab…\",\"n\":…}",
        "{\n  \"id\": \"01a2-ff\",\n  \"digest\": \"abcdef\",\n  \"n\": 12\n}"
    ));
    assert!(!matches("{\"digest\":\"ab…\"}", "{\"digest\":\"ba12\"}"));
    assert!(matches(
        "store id …, format 1",
        "store id 01a2-ff, format 1"
    ));
}

/// The README, `ARCHITECTURE.md` and `spec/*.md` stand alone in a clone: no path outside the
/// repository (`../shared/BRIEF.md` was one), every relative Markdown link resolves, and every
/// repository path they name in backticks exists.
#[test]
fn docs_point_only_at_files_in_the_repository() {
    let mut docs = vec!["README.md".to_string(), "ARCHITECTURE.md".to_string()];
    let mut specs: Vec<String> = std::fs::read_dir(root().join("spec"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("spec/{n}"))
        .collect();
    specs.sort();
    docs.extend(specs);
    let mut problems = Vec::new();
    for doc in &docs {
        let text = read(doc);
        let dir = root().join(doc).parent().unwrap().to_path_buf();
        for (n, line) in text.lines().enumerate() {
            let at = format!("{doc}:{}", n + 1);
            if line.contains("../") {
                problems.push(format!("{at}: a path outside the repository: {line}"));
            }
            if line.to_ascii_lowercase().contains("brief.md") {
                problems.push(format!("{at}: BRIEF.md is not in the repository: {line}"));
            }
            // Markdown links: [text](target)
            for part in line.split("](").skip(1) {
                let target = part.split(')').next().unwrap_or("");
                let target = target.split('#').next().unwrap_or("");
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                if !dir.join(target).exists() {
                    problems.push(format!("{at}: the link {target} names no file"));
                }
            }
            // Repository paths in backticks.
            for (i, part) in line.split('`').enumerate() {
                let repo_path = [
                    "src/",
                    "tests/",
                    "spec/",
                    "sim/",
                    "benches/",
                    "examples/",
                    ".ci/",
                ]
                .iter()
                .any(|p| part.starts_with(p));
                let plain = part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
                if i % 2 == 1 && repo_path && plain && !root().join(part).exists() {
                    problems.push(format!("{at}: `{part}` is not in the repository"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The README says how many seeds `cargo test` and CI run, as `sim/` and `.ci/run` do it.
#[test]
fn readme_states_the_simulation_seed_counts() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    let ci_seeds = ci
        .split("SIM_SEEDS:-")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect(".ci/run exports SIM_SEEDS with a default");
    let stated = format!("`SIM_SEEDS={ci_seeds}`");
    assert!(
        readme.contains(&stated) && readme.contains("`.ci/run`"),
        "README.md must say that CI (`.ci/run`) exports {stated}"
    );
    // `cargo test` runs each scenario's own `default_seeds`: the runner's default unless the
    // scenario sets one with `.seeds(N)`.
    let runner = read("sim/runner.rs");
    let number_after = |text: &str, marker: &str| -> Option<u64> {
        text.split(marker).skip(1).find_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
    };
    let default = number_after(&runner, "default_seeds: ")
        .expect("sim/runner.rs: Scenario::new sets default_seeds");
    let determinism = number_after(&read("sim/main.rs"), "DETERMINISM_SEEDS: u64 = ")
        .expect("sim/main.rs: DETERMINISM_SEEDS");
    let mut counts = Vec::new();
    for entry in std::fs::read_dir(root().join("sim/scenarios")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if !text.contains("Scenario::new(") {
            continue;
        }
        let set = text
            .split(".seeds(")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .map(|n| n.trim().parse::<u64>().unwrap());
        counts.push(set.unwrap_or(default));
    }
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    for said in [
        "`default_seeds`".to_string(),
        format!("{default} for a\nscenario that sets none"),
        format!("from {min} "),
        format!("to {max} "),
        format!("{determinism} seeds of each twice"),
    ] {
        let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat(&readme).contains(&flat(&said)),
            "README.md must say how many seeds cargo test runs: {said:?} (scenarios: {counts:?})"
        );
    }
}
