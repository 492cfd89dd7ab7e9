//! The README and the other documents as a reader of a fresh clone uses them.
//!
//! - The README, `ARCHITECTURE.md` and `spec/*.md` point only at files in the repository.
//! - What the README says about simulation seeds is what `sim/` and `.ci/run` do.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap()
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
