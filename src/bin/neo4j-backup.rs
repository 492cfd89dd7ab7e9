//! `neo4j-backup`: backs up a running server into a directory, full or incremental as the
//! directory allows (spec/backup.md). Parses arguments (`online_backup::cli`: both dash styles),
//! runs the library's client, prints what it chose and a summary, and maps typed errors to the
//! exit codes of BK-40: 0 done, 1 failed, 2 usage, 3 not a backup directory, 4 another store,
//! 5 another format version, 6 verification failed, 7 incremental impossible or refused.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use online_backup::backup::client::{
    self, BackupError, BackupFacts, BackupOptions, Mode, Observer, Phase, ServerInfo, Summary,
    Verify,
};
use online_backup::backup::objects::ObjectUrl;
use online_backup::backup::tls::ClientTlsFiles;
use online_backup::cli::{self, Parsed};
use online_backup::config::DEFAULT_BACKUP_PORT;
use online_backup::io::Env;
use online_backup::progress::Bar;
use online_backup::retention::RetentionPolicy;
use online_backup::units;

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
    /// The server's host name or address, or host:port when -port is not given.
    #[arg(long, conflicts_with = "from")]
    host: Option<String>,
    /// The server's backup port (online_backup_server).
    #[arg(long, conflicts_with = "from")]
    port: Option<u16>,
    /// The server as host or host:port (the older form of -host and -port).
    #[arg(long)]
    from: Option<String>,
    /// The backup directory, or an object store: s3://bucket/prefix (credentials, region and
    /// endpoint from the AWS_* environment variables).
    #[arg(long)]
    to: PathBuf,
    /// auto: incremental when possible, else full; full: always full; incremental: fail with
    /// exit 7 instead of falling back.
    #[arg(long = "type", value_name = "TYPE", value_enum, default_value = "auto")]
    kind: TypeArg,
    /// true: check what was written (a full scan after a full backup, the records touched after
    /// an incremental); false: skip; full: always a full scan.
    #[arg(long, value_enum, default_value = "true")]
    verify: VerifyArg,
    /// The longest to wait for the server to send anything: 30s, 5m, 1h, 500ms (a bare number
    /// is seconds).
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Receive at most this many bytes per second on average: 50M, 512k (k/M/G are binary), or
    /// plain bytes.
    #[arg(long)]
    max_rate: Option<String>,
    /// How much of the backup each incremental reads back against its manifest: a percentage
    /// of its blocks (2% reads every block within 50 runs; 0% scrubs nothing).
    #[arg(long, value_name = "PERCENT", default_value = "2%", value_parser = parse_percent)]
    scrub_budget: u32,
    /// Keep the backup's own transaction logs, so that `neo4j-admin restore --until-tx` or
    /// `--until-time` can bring back any tx they hold: `true` (all), `false` (only what
    /// recovery needs, the default), or as keep_logical_logs: `7 days`, `100 txs`, `10 files`,
    /// `1G size`.
    #[arg(long, value_name = "RETENTION", default_value = "false", value_parser = parse_keep)]
    keep_transactions: RetentionPolicy,
    /// Keep this many finished generations, the live one counted: a full backup keeps the
    /// previous ones, the oldest removed first (1 keeps only the live one).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    keep_generations: u32,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
    /// Say what would be done and why, changing nothing.
    #[arg(long)]
    plan: bool,
    /// Connect with TLS, trusting the service's certificate only if this CA (a PEM file)
    /// signed it.
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// This tool's certificate (PEM), for a service that admits only client certificates
    /// (needs --tls-key and --tls-ca).
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
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

/// `--keep-transactions`: a retention as `keep_logical_logs` takes it (PIT-3).
fn parse_keep(s: &str) -> Result<RetentionPolicy, String> {
    s.parse::<RetentionPolicy>().map_err(|e| {
        format!("'{s}' is not a retention ({e}): true, false, or a number and one of files, size, txs, hours, days, such as '7 days'")
    })
}

/// `--scrub-budget`: `N%` or `N`, a whole percentage from 0 to 100 (MF-11).
fn parse_percent(s: &str) -> Result<u32, String> {
    let digits = s.strip_suffix('%').unwrap_or(s);
    match digits.parse::<u32>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(format!(
            "'{s}' is not a percentage from 0% to 100% (a whole number, such as 2%)"
        )),
    }
}

/// `-timeout`: a duration as `units::parse_duration` reads it, more than zero (BK-7).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match units::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("the timeout must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Splits `host[:port]` (`[::1]:6362` or a bare `::1` for IPv6) into the host and the port it
/// names, if any (BK-1, BK-49).
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return (!host.is_empty()).then(|| (host.to_string(), port));
    }
    match s.rsplit_once(':') {
        // One colon: host:port. More: a bare IPv6 address.
        Some((host, port)) if !host.contains(':') => {
            (!host.is_empty()).then_some(())?;
            Some((host.to_string(), Some(port.parse().ok()?)))
        }
        _ if !s.is_empty() => Some((s.to_string(), None)),
        _ => None,
    }
}

/// The server's host and port from `-host`/`-port` or `-from` (BK-1, BK-49).
fn server_address(cli: &Cli) -> Result<(String, u16), String> {
    match (&cli.host, &cli.from) {
        (Some(h), None) => match (split_host_port(h), cli.port) {
            (Some((host, None)), port) => Ok((host, port.unwrap_or(DEFAULT_BACKUP_PORT))),
            (Some((host, Some(port))), None) => Ok((host, port)),
            (Some((_, Some(_))), Some(_)) => Err(format!(
                "-host `{h}` names a port and -port names another; give the port once"
            )),
            (None, _) => Err(format!(
                "-host `{h}` is not a host or host:port (an IPv6 address with a port goes in brackets: [::1]:6362)"
            )),
        },
        (None, Some(f)) => match split_host_port(f) {
            Some((host, port)) => Ok((host, port.unwrap_or(DEFAULT_BACKUP_PORT))),
            None => Err(format!("-from `{f}` is not host or host:port")),
        },
        _ => Err("say which server to back up with -host <host> or -from <host[:port]>".into()),
    }
}

/// `--tls-ca`, `--tls-cert`, `--tls-key` (SEC-9): TLS when `--tls-ca` is given; the certificate
/// and key both or neither, and only with `--tls-ca`.
fn tls_files(cli: &Cli) -> Result<Option<ClientTlsFiles>, &'static str> {
    match (&cli.tls_ca, &cli.tls_cert, &cli.tls_key) {
        (None, None, None) => Ok(None),
        (None, _, _) => Err(
            "--tls-cert and --tls-key need --tls-ca, the CA that signed the \
                             server's certificate",
        ),
        (Some(_), Some(_), None) => Err("--tls-cert needs --tls-key, its private key"),
        (Some(_), None, Some(_)) => Err("--tls-key needs --tls-cert, its certificate"),
        (Some(ca), cert, key) => Ok(Some(ClientTlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        })),
    }
}

/// Prints a line on stdout, ignoring a closed pipe.
fn say(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// The human account: one line each on stdout, and on a terminal a progress bar for every long
/// phase (copy, apply, verify) that plain output never carries (BK-44).
struct Human(Bar);

impl Observer for Human {
    fn line(&mut self, text: &str) {
        self.0.println(&format!("neo4j-backup: {text}"));
    }

    fn progress(&mut self, phase: Phase, done: u64, total: u64) {
        self.0.update(phase, done, total);
    }
}

/// What a run learned before it ended, for the `--json` document of a failure (BK-43): the
/// server's welcome and the backup the target held, so a refusal reports both store ids, both
/// format versions and both txs.
#[derive(Default)]
struct Facts {
    server: Option<(String, ServerInfo)>,
    backup: Option<BackupFacts>,
}

impl Observer for Facts {
    fn line(&mut self, _text: &str) {}

    fn server(&mut self, addr: &str, server: &ServerInfo) {
        self.server = Some((addr.to_string(), *server));
    }

    fn existing(&mut self, backup: &BackupFacts) {
        self.backup = Some(*backup);
    }
}

impl Facts {
    fn server_json(&self) -> serde_json::Value {
        match &self.server {
            Some((addr, s)) => serde_json::json!({
                "address": addr,
                "store_id": s.store_id.to_string(),
                "format_version": s.format.to_string(),
                "last_committed_tx": s.last_committed_tx,
                "oldest_logged_tx": s.oldest_logged_tx,
                "store_bytes": s.store_bytes,
            }),
            None => serde_json::Value::Null,
        }
    }

    fn backup_json(&self) -> serde_json::Value {
        match &self.backup {
            Some(b) => serde_json::json!({
                "store_id": b.store_id.to_string(),
                "format_version": b.format.to_string(),
                "last_tx": b.last_tx,
            }),
            None => serde_json::Value::Null,
        }
    }
}

/// Reports a usage error: one sentence on stderr and, when `--json` was among the arguments,
/// the failure document on stdout (BK-43, CLI-4); exit 2.
fn usage(message: &str, json: bool) -> ExitCode {
    let sentence = format!("{message} (see neo4j-backup --help)");
    eprintln!("neo4j-backup: {sentence}");
    if json {
        say(&failure_json(2, &sentence, &Facts::default()).to_string());
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // `--json` asks for a document even when the rest of the line is wrong (BK-43).
    let json = args.iter().skip(1).any(|a| a == "--json" || a == "-json");
    let cli = match cli::parse::<Cli>(args) {
        Parsed::Run(cli) => cli,
        Parsed::Info(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Parsed::Usage(message) => return usage(&message, json),
    };
    let (host, port) = match server_address(&cli) {
        Ok(hp) => hp,
        Err(e) => return usage(&e, cli.json),
    };
    let max_rate = match cli.max_rate.as_deref().map(units::parse_size) {
        None => None,
        Some(Ok(n)) => match std::num::NonZeroU64::new(n) {
            Some(rate) => Some(rate),
            None => return usage("--max-rate must be more than 0 bytes per second", cli.json),
        },
        Some(Err(_)) => {
            return usage(
                &format!(
                    "--max-rate `{}` is not a rate in bytes per second (e.g. 50M, 512k, 1000000)",
                    cli.max_rate.unwrap_or_default()
                ),
                cli.json,
            )
        }
    };
    let tls = match tls_files(&cli) {
        Ok(tls) => tls,
        Err(e) => return usage(e, cli.json),
    };
    // An object store URL that names nothing usable is a usage error (OBJ-1).
    if let Err(e) = ObjectUrl::of_path(&cli.to) {
        return usage(&format!("-to {e}"), cli.json);
    }
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
        tls,
        apply_run_txs: online_backup::backup::client::APPLY_RUN_TXS,
        scrub_percent: cli.scrub_budget,
        keep_transactions: cli.keep_transactions,
        keep_generations: cli.keep_generations,
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
    let mut facts = Facts::default();
    if cli.plan {
        return match runtime.block_on(client::plan(&env, &opts, &mut facts)) {
            Ok(p) if cli.json => {
                say(&plan_json(&p).to_string());
                ExitCode::SUCCESS
            }
            Ok(p) => {
                say(&format!("neo4j-backup: plan: {}", describe_plan(&p, &opts)));
                say(&match p.free {
                    Some(free) => format!(
                        "neo4j-backup: plan: {} free at {}; nothing was changed",
                        units::bytes(free),
                        opts.target.display()
                    ),
                    None => format!(
                        "neo4j-backup: plan: {} is an object store, with no free space to check; nothing was changed",
                        opts.target.display()
                    ),
                });
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e, cli.json, &facts),
        };
    }
    let result = if cli.json {
        // Stdout holds the one JSON document, stderr at most the error sentence (BK-43).
        runtime.block_on(client::run(&env, &opts, &mut facts))
    } else {
        let mut human = Human(Bar::stdout());
        let result = runtime.block_on(client::run(&env, &opts, &mut Both(&mut human, &mut facts)));
        human.0.finish();
        result
    };
    match result {
        Ok(summary) if cli.json => {
            say(&summary_json(&summary).to_string());
            ExitCode::SUCCESS
        }
        Ok(summary) => {
            say(&format!("neo4j-backup: {}", summary.describe()));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, cli.json, &facts),
    }
}

/// Two observers at once.
struct Both<'a>(&'a mut dyn Observer, &'a mut dyn Observer);

impl Observer for Both<'_> {
    fn line(&mut self, text: &str) {
        self.0.line(text);
        self.1.line(text);
    }
    fn progress(&mut self, phase: Phase, done: u64, total: u64) {
        self.0.progress(phase, done, total);
        self.1.progress(phase, done, total);
    }
    fn server(&mut self, addr: &str, server: &ServerInfo) {
        self.0.server(addr, server);
        self.1.server(addr, server);
    }
    fn existing(&mut self, backup: &BackupFacts) {
        self.0.existing(backup);
        self.1.existing(backup);
    }
}

/// Reports a failure: one sentence on stderr, and with `--json` the document on stdout.
fn fail(e: &BackupError, json: bool, facts: &Facts) -> ExitCode {
    eprintln!("neo4j-backup: {e}");
    if json {
        say(&failure_json(e.exit_code(), &e.to_string(), facts).to_string());
    }
    ExitCode::from(e.exit_code())
}

/// The `--json` document of a failure (BK-43): what the run learned before it ended.
fn failure_json(code: u8, error: &str, facts: &Facts) -> serde_json::Value {
    let store_id = facts
        .server
        .as_ref()
        .map(|(_, s)| s.store_id.to_string())
        .or_else(|| facts.backup.map(|b| b.store_id.to_string()));
    serde_json::json!({
        "outcome": "failed",
        "exit_code": code,
        "error": error,
        "mode": null,
        "reason": null,
        "reason_code": null,
        "store_id": store_id,
        "from_tx": facts.backup.map(|b| b.last_tx),
        "to_tx": null,
        "checkpoint_tx": null,
        "transactions": null,
        "bytes": null,
        "duration_secs": null,
        "throughput_bytes_per_sec": null,
        "verified": null,
        "scrub": null,
        "fell_back": null,
        "digest": null,
        "server": facts.server_json(),
        "backup": facts.backup_json(),
    })
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
        "reason_code": s.full_reason.map(|r| r.code()),
        "store_id": s.store_id.to_string(),
        "from_tx": s.from_tx,
        "to_tx": s.to_tx,
        "checkpoint_tx": s.checkpoint_tx,
        "transactions": s.transactions,
        "bytes": s.bytes,
        "duration_secs": secs,
        "throughput_bytes_per_sec": if secs > 0.0 { s.bytes as f64 / secs } else { 0.0 },
        "verified": s.verified.name(),
        "scrub": s.scrubbed.as_ref().map(|c| serde_json::json!({
            "blocks": c.blocks,
            "bytes": c.bytes,
            "total_blocks": c.total,
            "read_since_full_verification": c.since_full,
        })),
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
        "reason_code": p.full_reason.map(|r| r.code()),
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
            client::transactions(p.to_tx.saturating_sub(from)),
            p.reason
        ),
        _ => format!(
            "full backup of store {} into {}: up to at least tx {}, {} of store files to copy, because {}",
            p.store_id,
            opts.target.display(),
            p.to_tx,
            units::bytes(p.bytes),
            p.reason
        ),
    }
}
