//! Command-line conventions shared by the three binaries (spec/cli.md): every long flag takes one
//! dash or two, a word that is not a flag of the command is a usage error that names the word as
//! typed and suggests the nearest flag, and help and version answer only their exact spellings.
//!
//! Owns: turning an argument vector into a parsed `clap` value, a help or version text, or one
//! usage sentence. The flags themselves stay declared where they are used, in the binaries; this
//! module reads them from the `clap` command, so no list of flags is written twice.
//! Must not touch: what the commands do. It reads no file, socket or clock.
//!
//! Why not `clap` alone: `clap` reads `-hots` as the short flags `-h -o -t -s`, so a typo of
//! `-host` printed the help and exited 0, and `-Verify` printed the version. Here a single-dash
//! word of two or more characters is always a long flag (`-host` is `--host`), so it is either a
//! flag of the command or a usage error; only a lone letter (`-h`, `-V`) is a short flag.

use std::collections::BTreeMap;
use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

/// What an argument vector asks for.
#[derive(Debug)]
pub enum Parsed<T> {
    /// A valid invocation.
    Run(T),
    /// `--help` or `--version`, spelled exactly: the text to print on stdout; exit 0.
    Info(String),
    /// Anything else: one sentence for stderr; exit 2.
    Usage(String),
}

/// Parses `args` (the program name first) into `T` under the conventions above.
pub fn parse<T: CommandFactory + FromArgMatches>(
    args: impl IntoIterator<Item = OsString>,
) -> Parsed<T> {
    let mut command = T::command();
    command.build();
    let (args, typed) = long_flags_with_one_dash(&command, args.into_iter().collect());
    match command.try_get_matches_from_mut(args) {
        Ok(mut matches) => match T::from_arg_matches_mut(&mut matches) {
            Ok(value) => Parsed::Run(value),
            Err(e) => Parsed::Usage(sentence(&e, &typed)),
        },
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let names: Vec<&str> = command
                .get_subcommands()
                .map(|c| c.get_name())
                .filter(|&n| n != "help")
                .collect();
            Parsed::Usage(format!("say which command to run: {}", names.join(", ")))
        }
        Err(e) if !e.use_stderr() => Parsed::Info(e.render().to_string()),
        Err(e) => Parsed::Usage(sentence(&e, &typed)),
    }
}

/// [`parse`] for a binary that prints as every binary does: help or version on stdout (exit 0),
/// a usage error as one sentence on stderr naming `bin` (exit 2). `Err` carries the exit code.
pub fn parse_or_exit<T: CommandFactory + FromArgMatches>(
    bin: &str,
    args: impl IntoIterator<Item = OsString>,
) -> Result<T, std::process::ExitCode> {
    match parse(args) {
        Parsed::Run(value) => Ok(value),
        Parsed::Info(text) => {
            print!("{text}");
            Err(std::process::ExitCode::SUCCESS)
        }
        Parsed::Usage(message) => {
            eprintln!("{bin}: {message} (see {bin} --help)");
            Err(std::process::ExitCode::from(2))
        }
    }
}

/// Rewrites every single-dash word of two or more characters in flag position to its two-dash
/// form (`-host` to `--host`, `-to=x` to `--to=x`, `-hots` to `--hots`), leaving values (the word
/// after a flag that takes one), lone letters and everything after `--` as they are. Returns the
/// rewritten vector and, for each rewritten word, the word as the user typed it.
fn long_flags_with_one_dash(
    root: &clap::Command,
    args: Vec<OsString>,
) -> (Vec<OsString>, BTreeMap<String, String>) {
    let mut out = Vec::with_capacity(args.len());
    let mut typed = BTreeMap::new();
    let mut command = root;
    let mut value_next = false;
    let mut rest_verbatim = false;
    for (i, arg) in args.into_iter().enumerate() {
        let word = match arg.to_str() {
            Some(w) if i > 0 && !value_next && !rest_verbatim => w.to_string(),
            _ => {
                value_next = false;
                out.push(arg);
                continue;
            }
        };
        if word == "--" {
            rest_verbatim = true;
            out.push(arg);
            continue;
        }
        let long = if let Some(long) = word.strip_prefix("--") {
            Some(long.to_string())
        } else if let Some(one) = word.strip_prefix('-').filter(|w| w.chars().count() >= 2) {
            let flag = word.split('=').next().unwrap_or_default();
            typed.insert(format!("-{flag}"), flag.to_string());
            out.push(OsString::from(format!("-{word}")));
            value_next = takes_value(command, one);
            continue;
        } else {
            None
        };
        match long {
            Some(long) => value_next = takes_value(command, &long),
            None if !word.starts_with('-') => {
                if let Some(sub) = command.find_subcommand(&word) {
                    command = sub;
                }
            }
            None => {}
        }
        out.push(arg);
    }
    (out, typed)
}

/// Whether `--name` (without `=value`) is a flag of `command` whose value is the next word.
fn takes_value(command: &clap::Command, name: &str) -> bool {
    if name.contains('=') {
        return false;
    }
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(name))
        .is_some_and(|a| a.get_action().takes_values())
}

/// One sentence for a usage error: the word as the user typed it, and the nearest flag in the
/// same dash style; otherwise `clap`'s message up to its first blank line, joined into one line,
/// without its `error: ` prefix, tips and usage.
fn sentence(e: &clap::Error, typed: &BTreeMap<String, String>) -> String {
    let as_typed = |s: &str| typed.get(s).cloned().unwrap_or_else(|| s.to_string());
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    match e.kind() {
        ErrorKind::UnknownArgument => {
            let invalid = context(ContextKind::InvalidArg).unwrap_or_default();
            let flag = invalid.split('=').next().unwrap_or("").to_string();
            let shown = as_typed(&flag);
            if !shown.starts_with('-') {
                return format!("unexpected argument '{shown}'");
            }
            let one_dash = !shown.starts_with("--");
            match context(ContextKind::SuggestedArg) {
                Some(s) if s.starts_with("--") => {
                    let nearest = if one_dash { &s[1..] } else { &s[..] };
                    let nearest = nearest.split(' ').next().unwrap_or(nearest);
                    format!("unknown flag '{shown}'; did you mean '{nearest}'?")
                }
                _ => format!("unknown flag '{shown}'"),
            }
        }
        ErrorKind::InvalidSubcommand => {
            let invalid = context(ContextKind::InvalidSubcommand).unwrap_or_default();
            match context(ContextKind::SuggestedSubcommand) {
                Some(s) => format!("unknown command '{invalid}'; did you mean '{s}'?"),
                None => format!("unknown command '{invalid}'"),
            }
        }
        _ => {
            let text = e.render().to_string();
            let lines: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .filter(|l| !l.starts_with("tip:") && !l.starts_with("Usage:"))
                .collect();
            let joined = lines.join(" ");
            let message = joined.trim_start_matches("error: ").trim();
            if message.is_empty() {
                "bad arguments".to_string()
            } else {
                message.to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, Subcommand};

    #[derive(Parser, Debug)]
    #[command(name = "tool", version)]
    struct Flat {
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        verify: Option<String>,
        #[arg(long)]
        json: bool,
    }

    #[derive(Parser, Debug)]
    #[command(name = "admin", version)]
    struct Nested {
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Subcommand, Debug)]
    enum Cmd {
        Check {
            store: String,
            #[arg(long)]
            json: bool,
        },
    }

    fn args(v: &[&str]) -> Vec<OsString> {
        std::iter::once("tool")
            .chain(v.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn usage<T: CommandFactory + FromArgMatches + std::fmt::Debug>(v: &[&str]) -> String {
        match parse::<T>(args(v)) {
            Parsed::Usage(s) => s,
            other => panic!("CLI-2: {v:?} must be a usage error, got {other:?}"),
        }
    }

    #[test]
    fn cli_1_one_dash_and_two_dashes_are_the_same_flag() {
        for v in [
            &["-host", "h", "-port", "1", "-to", "d"][..],
            &["--host", "h", "--port", "1", "--to", "d"],
            &["-host=h", "--port=1", "-to=d"],
        ] {
            match parse::<Flat>(args(v)) {
                Parsed::Run(f) => {
                    assert_eq!(f.host.as_deref(), Some("h"), "CLI-1: {v:?}");
                    assert_eq!(f.port, Some(1), "CLI-1: {v:?}");
                    assert_eq!(f.to.as_deref(), Some("d"), "CLI-1: {v:?}");
                }
                other => panic!("CLI-1: {v:?}: {other:?}"),
            }
        }
        // A value that starts with a dash after a flag that takes one is left alone.
        match parse::<Nested>(args(&["check", "-json", "-store-dir"])) {
            Parsed::Usage(_) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cli_2_a_misspelled_flag_is_named_as_typed_with_the_nearest_flag() {
        for (v, expect) in [
            (
                &["-hots", "h"][..],
                "unknown flag '-hots'; did you mean '-host'?",
            ),
            (&["-hst", "h"], "unknown flag '-hst'; did you mean '-host'?"),
            (
                &["-prot", "1"],
                "unknown flag '-prot'; did you mean '-port'?",
            ),
            (
                &["-Verify", "full"],
                "unknown flag '-Verify'; did you mean '-verify'?",
            ),
            (
                &["--hots", "h"],
                "unknown flag '--hots'; did you mean '--host'?",
            ),
            (
                &["-hostname", "h"],
                "unknown flag '-hostname'; did you mean '-host'?",
            ),
            (&["stray"], "unexpected argument 'stray'"),
        ] {
            assert_eq!(usage::<Flat>(v), expect, "CLI-2: {v:?}");
        }
        assert_eq!(
            usage::<Nested>(&["chekc", "x"]),
            "unknown command 'chekc'; did you mean 'check'?",
            "CLI-2"
        );
        assert_eq!(
            usage::<Nested>(&[]),
            "say which command to run: check",
            "CLI-2: no command at all"
        );
        assert_eq!(
            usage::<Nested>(&["check", "x", "-jsno"]),
            "unknown flag '-jsno'; did you mean '-json'?",
            "CLI-2"
        );
    }

    #[test]
    fn cli_3_help_and_version_only_for_their_exact_spellings() {
        for v in [
            &["-h"][..],
            &["--help"],
            &["-help"],
            &["-V"],
            &["--version"],
            &["-version"],
        ] {
            assert!(
                matches!(parse::<Flat>(args(v)), Parsed::Info(_)),
                "CLI-3: {v:?} is help or version"
            );
        }
        for v in [
            &["-hel"][..],
            &["-hepl"],
            &["-Version"],
            &["-versoin"],
            &["-hv"],
        ] {
            usage::<Flat>(v);
        }
    }
}
