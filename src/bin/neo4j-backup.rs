//! `neo4j-backup`: backs up a running server into a directory, full or incremental as the
//! directory allows (spec/backup.md). Parses arguments (both dash styles), runs the library's
//! client, prints what it chose and a summary, and maps typed errors to the exit codes of
//! BK-40: 0 done, 1 failed, 2 usage, 3 not a backup directory, 4 another store, 5 another
//! format version, 6 verification failed, 7 incremental impossible under `--type incremental`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use online_backup::backup::client::{
    self, BackupOptions, Mode, Observer, Summary, Verified, Verify,
};
use online_backup::backup::protocol::DEFAULT_PORT;
use online_backup::io::Env;

#[derive(Parser)]
#[command(
    name = "neo4j-backup",
    version,
    about = "Back up a running graph database over the network",
    long_about = "Back up a running graph database over the network into a directory. \
                  A missing or empty directory gets a full backup; a directory holding a backup \
                  of the same store gets the transactions committed since (incremental). \
                  Every flag takes one dash or two: -host and --host are the same."
)]
struct Cli {
    /// The server's host name or address.
    #[arg(long, conflicts_with = "from")]
    host: Option<String>,
    /// The server's backup port (online_backup_server).
    #[arg(long, conflicts_with = "from")]
    port: Option<u16>,
    /// The server as host[:port] (the older form of -host and -port).
    #[arg(long)]
    from: Option<String>,
    /// The backup directory.
    #[arg(long)]
    to: PathBuf,
    /// auto: incremental when possible, else full; full: always full; incremental: fail with
    /// exit 7 instead of falling back.
    #[arg(long = "type", value_enum, default_value = "auto")]
    kind: TypeArg,
    /// true: check what was written (a full scan after a full backup, the records touched after
    /// an incremental); false: skip; full: always a full scan.
    #[arg(long, value_enum, default_value = "true")]
    verify: VerifyArg,
    /// The longest to wait for the server to send anything: 30s, 5m, 1h, 500ms (a bare number
    /// is seconds).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Receive at most this many bytes per second on average: 50M, 512k (k/M/G are binary), or
    /// plain bytes.
    #[arg(long)]
    max_rate: Option<String>,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
    /// Say what would be done and why, changing nothing.
    #[arg(long)]
    plan: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum TypeArg {
    Auto,
    Full,
    Incremental,
}

#[derive(Clone, Copy, ValueEnum)]
enum VerifyArg {
    True,
    False,
    Full,
}

/// The long flags, so that `-host` can mean `--host` (the seed's single-dash style).
const LONG_FLAGS: &[&str] = &[
    "host", "port", "from", "to", "type", "verify", "timeout", "max-rate", "json", "plan", "help",
    "version",
];

/// Rewrites `-name` and `-name=value` to their two-dash form for every long flag (BK-5).
fn normalize_dashes(args: impl Iterator<Item = String>) -> Vec<String> {
    args.map(|a| {
        if let Some(rest) = a.strip_prefix('-') {
            if !rest.starts_with('-') {
                let name = rest.split('=').next().unwrap_or("");
                if LONG_FLAGS.contains(&name) {
                    return format!("-{a}");
                }
            }
        }
        a
    })
    .collect()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 5m, 1h, 500ms)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("`{s}` has an unknown unit (use ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err("the timeout must be more than zero".into());
    }
    Ok(d)
}

/// Splits `-from host[:port]` (`[::1]:6362` for IPv6).
fn parse_from(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("-from `{s}` is not host or host:port");
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            if host.is_empty() {
                return Err(bad());
            }
            Ok((host.to_string(), port.parse().map_err(|_| bad())?))
        }
        _ if !s.is_empty() => Ok((s.to_string(), DEFAULT_PORT)),
        _ => Err(bad()),
    }
}

/// Prints a line on stdout, ignoring a closed pipe.
fn say(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// The human account: one line each, on stdout.
/// The human account: one line each on stdout, and on a terminal a progress bar (bytes, rate
/// and ETA of the file copy; transactions applied) that plain output never carries (BK-44).
struct Human {
    bar: Option<indicatif::ProgressBar>,
}

impl Human {
    fn new() -> Human {
        Human { bar: None }
    }

    fn bar(&mut self) -> Option<&indicatif::ProgressBar> {
        if self.bar.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_draw_target(indicatif::ProgressDrawTarget::stdout());
            self.bar = Some(bar);
        }
        self.bar.as_ref()
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Human {
    fn line(&mut self, text: &str) {
        let line = format!("neo4j-backup: {text}");
        match &self.bar {
            Some(bar) => bar.println(line),
            None => say(&line),
        }
    }

    fn copy_progress(&mut self, done: u64, total: u64) {
        if let Some(bar) = self.bar() {
            if bar.length() != Some(total) {
                bar.set_length(total.max(done));
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "copying {bytes}/{total_bytes} at {bytes_per_sec}, ETA {eta} {wide_bar}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
            }
            bar.set_position(done);
        }
    }

    fn tx_progress(&mut self, at_tx: u64) {
        if let Some(bar) = self.bar() {
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(format!("transactions applied up to tx {at_tx}"));
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("neo4j-backup: {message} (see neo4j-backup --help)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args = normalize_dashes(std::env::args());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One sentence: clap's message up to its first blank line, joined into one line
            // (clap puts what is missing, or the accepted values, on the lines after the
            // first), without its "error: " prefix, tips, usage and advice.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.trim())
                .filter(|l| !l.starts_with("tip:"))
                .collect();
            let message = message.join(" ");
            let message = message.trim_start_matches("error: ");
            return usage(if message.is_empty() {
                "bad arguments"
            } else {
                message
            });
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let (host, port) = match (&cli.host, &cli.from) {
        (Some(h), None) if !h.is_empty() => (h.clone(), cli.port.unwrap_or(DEFAULT_PORT)),
        (None, Some(f)) => match parse_from(f) {
            Ok(hp) => hp,
            Err(e) => return usage(&e),
        },
        _ => return usage("say which server to back up with -host <host> or -from <host[:port]>"),
    };
    let max_rate = match cli
        .max_rate
        .as_deref()
        .map(online_backup::config::parse_size)
    {
        None => None,
        Some(Ok(0)) => return usage("--max-rate must be more than 0 bytes per second"),
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return usage(&format!(
                "--max-rate `{}` is not a rate in bytes per second (e.g. 50M, 512k, 1000000)",
                cli.max_rate.unwrap_or_default()
            ))
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let opts = BackupOptions {
        host,
        port,
        target: cli.to,
        mode: match cli.kind {
            TypeArg::Auto => Mode::Auto,
            TypeArg::Full => Mode::Full,
            TypeArg::Incremental => Mode::Incremental,
        },
        verify: match cli.verify {
            VerifyArg::True => Verify::Default,
            VerifyArg::False => Verify::Off,
            VerifyArg::Full => Verify::Full,
        },
        timeout: cli.timeout,
        max_rate,
    };
    // Two workers: receiving the next chunk overlaps writing the last one.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("neo4j-backup: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let env = Env::os();
    if cli.plan {
        return match runtime.block_on(client::plan(&env, &opts)) {
            Ok(p) if cli.json => {
                say(&plan_json(&p).to_string());
                ExitCode::SUCCESS
            }
            Ok(p) => {
                say(&format!("neo4j-backup: plan: {}", describe_plan(&p, &opts)));
                say(&format!(
                    "neo4j-backup: plan: {} free at {}; nothing was changed",
                    bytes(p.free as f64),
                    opts.target.display()
                ));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e, cli.json),
        };
    }
    let result = if cli.json {
        // Stdout holds the one JSON document, stderr at most the error sentence (BK-43).
        runtime.block_on(client::run(&env, &opts, &mut client::Lines::default()))
    } else {
        let mut human = Human::new();
        let result = runtime.block_on(client::run(&env, &opts, &mut human));
        human.finish();
        result
    };
    match result {
        Ok(summary) if cli.json => {
            say(&summary_json(&summary).to_string());
            ExitCode::SUCCESS
        }
        Ok(summary) => {
            say(&format!("neo4j-backup: {}", describe(&summary)));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, cli.json),
    }
}

/// Reports a failure: one sentence on stderr, and with `--json` the document on stdout.
fn fail(e: &client::BackupError, json: bool) -> ExitCode {
    eprintln!("neo4j-backup: {e}");
    if json {
        let doc = serde_json::json!({
            "outcome": "failed",
            "exit_code": e.exit_code(),
            "error": e.to_string(),
            "mode": null,
            "reason": null,
            "store_id": null,
            "from_tx": null,
            "to_tx": null,
            "transactions": null,
            "bytes": null,
            "duration_secs": null,
            "throughput_bytes_per_sec": null,
            "verified": null,
            "fell_back": null,
            "digest": null,
        });
        say(&doc.to_string());
    }
    ExitCode::from(e.exit_code())
}

/// The `--json` document of a finished backup (BK-43).
fn summary_json(s: &Summary) -> serde_json::Value {
    let secs = s.duration.as_secs_f64();
    serde_json::json!({
        "outcome": "done",
        "exit_code": 0,
        "error": null,
        "mode": s.kind.name(),
        "reason": s.reason,
        "store_id": s.store_id.to_string(),
        "from_tx": s.from_tx,
        "to_tx": s.to_tx,
        "transactions": s.transactions,
        "bytes": s.bytes,
        "duration_secs": secs,
        "throughput_bytes_per_sec": if secs > 0.0 { s.bytes as f64 / secs } else { 0.0 },
        "verified": s.verified.name(),
        "fell_back": s.fell_back,
        "digest": s.digest.to_hex(),
    })
}

/// The `--json` document of `--plan` (BK-42, BK-43).
fn plan_json(p: &client::Plan) -> serde_json::Value {
    serde_json::json!({
        "outcome": "plan",
        "exit_code": 0,
        "error": null,
        "mode": p.kind.name(),
        "reason": p.reason,
        "store_id": p.store_id.to_string(),
        "from_tx": p.from_tx,
        "to_tx": p.to_tx,
        "bytes": p.bytes,
        "free_bytes": p.free,
    })
}

/// The plan's line (BK-42): kind, tx range, bytes, why.
fn describe_plan(p: &client::Plan, opts: &BackupOptions) -> String {
    match (p.kind, p.from_tx) {
        (client::Kind::Incremental, Some(from)) if from == p.to_tx => format!(
            "incremental backup of store {} into {}: nothing new since tx {from} ({})",
            p.store_id,
            opts.target.display(),
            p.reason
        ),
        (client::Kind::Incremental, Some(from)) => format!(
            "incremental backup of store {} into {}: tx {} to at least {} ({}), because {}",
            p.store_id,
            opts.target.display(),
            from + 1,
            p.to_tx,
            transactions(p.to_tx.saturating_sub(from)),
            p.reason
        ),
        _ => format!(
            "full backup of store {} into {}: up to at least tx {}, {} of store files to copy, because {}",
            p.store_id,
            opts.target.display(),
            p.to_tx,
            bytes(p.bytes as f64),
            p.reason
        ),
    }
}

/// The final summary line (BK-9): mode, tx range, bytes, duration, throughput, verification.
fn describe(s: &Summary) -> String {
    let secs = s.duration.as_secs_f64();
    let rate = if secs > 0.0 {
        s.bytes as f64 / secs
    } else {
        0.0
    };
    let range = match s.from_tx {
        Some(from) if s.kind == client::Kind::Incremental && from == s.to_tx => {
            format!("nothing new since tx {from}")
        }
        Some(from) if s.kind == client::Kind::Incremental => {
            format!("tx {} to {}", from + 1, s.to_tx)
        }
        _ => format!("up to tx {}", s.to_tx),
    };
    let verified = match s.verified {
        Verified::Skipped => "not verified (-verify false)",
        Verified::Touched => "verified (records written and digest)",
        Verified::FullScan => "verified (full scan and digest)",
    };
    format!(
        "done: {} backup of store {}, {range} ({}), {} in {:.2} s ({}/s), {verified}, digest {}",
        s.kind.name(),
        s.store_id,
        transactions(s.transactions),
        bytes(s.bytes as f64),
        secs,
        bytes(rate),
        s.digest
    )
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `n transactions`, singular for one.
fn transactions(n: u64) -> String {
    if n == 1 {
        "1 transaction".to_string()
    } else {
        format!("{n} transactions")
    }
}
