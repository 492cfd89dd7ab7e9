//! `neo4j-admin`: offline store tools. Parses arguments, calls the library, maps typed errors
//! to exit codes (spec/admin.md): 0 done, 1 failed (I/O, not a store, locked), 2 usage,
//! 3 inconsistent store (or, `check --quick`, damaged backup).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use online_backup::backup::catalogue::{
    catalogue, catalogue_objects, verification_name, Catalogue,
};
use online_backup::backup::client::{self, BackupOptions, Kind, Lines, Mode, Plan, Verify};
use online_backup::backup::history::Span;
use online_backup::backup::manifest::{quick_check, rehash_after_upgrade, QuickCheck};
use online_backup::backup::objects::{quick_check_objects, stage, ObjectUrl};
use online_backup::backup::restore::{remove_staging, restore, stage_objects, Until};
use online_backup::backup::rewrite::{rewrite_objects, Rewrite, RewriteOutcome};
use online_backup::backup::tls::ClientTlsFiles;
use online_backup::cli;
use online_backup::io::Env;
use online_backup::progress::{Bar, Phase};
use online_backup::retention::RetentionPolicy;
use online_backup::store::check::{check_with_progress, CheckReport};
use online_backup::store::format::FormatVersion;
use online_backup::store::generate::{generate, GenerateSpec};
use online_backup::store::layout::generation_name;
use online_backup::store::upgrade::{upgrade, UpgradeOutcome};
use online_backup::store::StoreError;
use online_backup::units;

#[derive(Parser)]
#[command(
    name = "neo4j-admin",
    version,
    about = "Offline tools for graph stores"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a store with a generated graph, at disk speed.
    Generate {
        /// The store directory to create (missing or empty).
        #[arg(long)]
        store: PathBuf,
        /// Number of nodes.
        #[arg(long)]
        nodes: u64,
        /// Outgoing relationships per node.
        #[arg(long, default_value_t = 2)]
        relationships_per_node: u64,
        /// Bytes of the string property each node carries (0 for none).
        #[arg(long, default_value_t = 64)]
        property_bytes: usize,
        /// Seed of the generated content.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// On-disk format version. Supported: 1 (previous, no record checksums),
        /// 2 (current, a CRC32C per record).
        #[arg(long, default_value = "2", value_parser = parse_format)]
        format_version: FormatVersion,
    },
    /// Check every record and reference, and recompute the digest.
    Check {
        /// The store directory.
        store: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Only verify a backup's files against its manifest, block by block, at the speed of
        /// reading them (no consistency check).
        #[arg(long)]
        quick: bool,
    },
    /// Migrate a store of the previous format version to the current one, keeping its store id
    /// and digest.
    Upgrade {
        /// The store directory, a backup directory, or a backup in an object store
        /// (s3://bucket/prefix).
        store: PathBuf,
    },
    /// Fold the transaction segments of a backup in an object store into a new generation
    /// whose record files hold them, so a restore replays none; the previous generation is
    /// kept.
    Aggregate {
        /// The backup in an object store (s3://bucket/prefix).
        backup: PathBuf,
    },
    /// Say what a backup directory holds: its generations, the transactions and times each can
    /// restore, size, verification and scrubbing; with --host, whether the server's logs still
    /// allow an incremental backup.
    BackupInfo {
        /// The backup directory.
        dir: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// The server whose backup service to ask (its host name or address).
        #[arg(long)]
        host: Option<String>,
        /// The server's backup port (online_backup_server).
        #[arg(long, default_value_t = 6362, requires = "host")]
        port: u16,
        /// TLS: the CA that signed the service's certificate (PEM).
        #[arg(long, value_name = "PEM", requires = "host")]
        tls_ca: Option<PathBuf>,
        /// TLS: this tool's certificate (PEM).
        #[arg(long, value_name = "PEM", requires = "tls_ca")]
        tls_cert: Option<PathBuf>,
        /// TLS: the private key of --tls-cert (PEM).
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Restore a backup into a store directory: the backup is checked, copied durably and the
    /// copy checked; `neo4j console --store DIR` then starts on it.
    Restore {
        /// The backup directory (as `neo4j-backup -to` made it) or any store directory.
        #[arg(long)]
        from: PathBuf,
        /// The store directory to restore into (missing or empty, or a store with --force).
        #[arg(long)]
        store: PathBuf,
        /// Replace the store DIR already holds.
        #[arg(long)]
        force: bool,
        /// Restore the state right after this tx committed, from a backup that kept its
        /// transactions (neo4j-backup --keep-transactions).
        #[arg(long, value_name = "TX", conflicts_with = "until_time")]
        until_tx: Option<u64>,
        /// Restore the state before the first transaction committed after this time (UTC,
        /// 2026-12-02T07:01:04.532Z), from a backup that kept its transactions.
        #[arg(long, value_name = "TIME", value_parser = units::parse_time_millis)]
        until_time: Option<u64>,
    },
}

/// Prints a line on stdout, ignoring write errors: a closed pipe (`check --json | head -1`) ends
/// the output quietly instead of panicking as `println!` does.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn parse_format(s: &str) -> Result<FormatVersion, String> {
    FormatVersion::parse(s)
        .ok_or_else(|| format!("unsupported format version '{s}'; supported: 1, 2"))
}

fn main() -> ExitCode {
    let cli = match cli::parse_or_exit::<Cli>("neo4j-admin", std::env::args_os()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let env = Env::os();
    match cli.command {
        Command::Generate {
            store,
            nodes,
            relationships_per_node,
            property_bytes,
            seed,
            format_version,
        } => {
            let spec = GenerateSpec {
                nodes,
                relationships_per_node,
                property_bytes,
                seed,
                format: format_version,
            };
            match generate(env.fs, env.clock, &store, &spec, rand::random()) {
                Ok(g) => {
                    out!(
                        "generated {}: store id {}, format {}, {} nodes, {} relationships, {} bytes of records, digest {}",
                        store.display(),
                        g.store_id,
                        format_version,
                        g.nodes,
                        g.relationships,
                        g.bytes,
                        g.digest
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Upgrade { store } => match ObjectUrl::of_path(&store) {
            Err(e) => usage(&e.to_string()),
            Ok(None) => upgrade_dir(&env, &store),
            Ok(Some(url)) => rewrite_url(&env, &url, Rewrite::Upgrade),
        },
        Command::Aggregate { backup } => match ObjectUrl::of_path(&backup) {
            Err(e) => usage(&e.to_string()),
            Ok(None) => usage(&format!(
                "aggregate takes a backup in an object store (s3://bucket/prefix), not {}: a backup directory holds no segments, each incremental is applied to its files",
                backup.display()
            )),
            Ok(Some(url)) => rewrite_url(&env, &url, Rewrite::Aggregate),
        },
        Command::Check { store, json, quick }
            if ObjectUrl::of_path(&store).is_ok_and(|u| u.is_some()) =>
        {
            let url = ObjectUrl::of_path(&store)
                .ok()
                .flatten()
                .expect("checked above");
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => return fail(&e),
            };
            if quick {
                let checked = rt
                    .block_on(quick_check_objects(&env, &url))
                    .map_err(|e| (e.to_string(), e.exit_code()));
                return report_quick(&store, json, checked);
            }
            // The live generation downloaded (checked against its manifest as it arrives),
            // then checked as a directory is (OBJ-14).
            let staging =
                std::env::temp_dir().join(format!("neo4j-admin-check-{}", std::process::id()));
            if let Err(e) = rt.block_on(stage(&env, &url, &staging)) {
                eprintln!("neo4j-admin: {e}");
                return ExitCode::from(e.exit_code());
            }
            let checked = check_with_progress(
                env.fs.clone(),
                env.clock.clone(),
                &staging,
                &*env.blocking,
                &mut |_, _| {},
            );
            remove_staging(&*env.fs, &staging);
            report_check(&store, json, checked)
        }
        Command::Check {
            store,
            json,
            quick: true,
        } => report_quick(
            &store,
            json,
            quick_check(&*env.fs, &store).map_err(|e| (e.to_string(), e.exit_code())),
        ),
        Command::Check {
            store,
            json,
            quick: false,
        } => {
            // A bar on a terminal, but never among the JSON document's lines.
            let mut bar = Bar::stdout();
            let checked = check_with_progress(
                env.fs,
                env.clock,
                &store,
                &*env.blocking,
                &mut |done, total| {
                    if !json {
                        bar.update(Phase::Check, done, total)
                    }
                },
            );
            bar.finish();
            report_check(&store, json, checked)
        }
        Command::BackupInfo {
            dir,
            json,
            host,
            port,
            tls_ca,
            tls_cert,
            tls_key,
        } => {
            let cat = match ObjectUrl::of_path(&dir) {
                Err(e) => return usage(&e.to_string()),
                Ok(Some(url)) => {
                    let listed = runtime().map(|rt| rt.block_on(catalogue_objects(&env, &url)));
                    match listed {
                        Err(e) => return fail(&e),
                        Ok(Err(e)) => {
                            eprintln!("neo4j-admin: {e}");
                            return ExitCode::from(e.exit_code());
                        }
                        Ok(Ok(c)) => c,
                    }
                }
                Ok(None) => match catalogue(&env.fs, &dir) {
                    Ok(c) => c,
                    Err(e) => return fail(&e),
                },
            };
            let source = host.map(|host| {
                let opts = BackupOptions {
                    host,
                    port,
                    target: dir.clone(),
                    mode: Mode::Auto,
                    verify: Verify::Default,
                    timeout: std::time::Duration::from_secs(30),
                    max_rate: None,
                    tls: tls_ca.map(|ca| ClientTlsFiles {
                        ca,
                        cert: tls_cert,
                        key: tls_key,
                    }),
                    apply_run_txs: online_backup::backup::client::APPLY_RUN_TXS,
                    scrub_percent: 0,
                    keep_transactions: RetentionPolicy::KeepRecoveryOnly,
                    keep_generations: 1,
                };
                ask_server(&env, &opts)
            });
            print_catalogue(&cat, source.as_ref(), json);
            ExitCode::SUCCESS
        }
        Command::Restore {
            from,
            store,
            force,
            until_tx,
            until_time,
        } => {
            let until = until_tx.map(Until::Tx).or(until_time.map(Until::Time));
            // From an object store, the generation is downloaded first (OBJ-8), its logs cut at
            // the tx `until` means (OBJ-18), so the restore from there is to its last tx.
            let staged = match ObjectUrl::of_path(&from) {
                Err(e) => return usage(&format!("--from {e}")),
                Ok(None) => Ok(None),
                Ok(Some(url)) => match runtime() {
                    Ok(rt) => rt
                        .block_on(stage_objects(&env, &url, &store, force, until))
                        .map(Some),
                    Err(e) => return fail(&e),
                },
            };
            let mut bar = Bar::stdout();
            let restored = staged.and_then(|staging| {
                let restored = restore(
                    env.fs.clone(),
                    env.clock.clone(),
                    &*env.blocking,
                    staging.as_deref().unwrap_or(&from),
                    &store,
                    force,
                    until.filter(|_| staging.is_none()),
                    &mut |phase, done, total| bar.update(phase, done, total),
                );
                if let Some(staging) = &staging {
                    remove_staging(&*env.fs, staging);
                }
                restored
            });
            bar.finish();
            match restored {
                Ok(r) => {
                    out!(
                        "restored {} into {} (store {}, tx {}, {} nodes, {} relationships, digest {}): checked, {} copied",
                        from.display(),
                        store.display(),
                        r.report.store_id,
                        r.report.last_committed_tx,
                        r.report.nodes,
                        r.report.relationships,
                        r.report.digest,
                        units::bytes(r.bytes)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("neo4j-admin: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}

/// Prints a check's outcome and gives its exit code (ADM-3, ADM-4).
fn report_check(
    store: &std::path::Path,
    json: bool,
    checked: Result<CheckReport, StoreError>,
) -> ExitCode {
    match checked {
        // A store too damaged to open is inconsistent, not a failure to check (ADM-1).
        Err(e @ StoreError::Corrupt(_)) => {
            eprintln!("neo4j-admin: {} is inconsistent: {e}", store.display());
            ExitCode::from(3)
        }
        Ok(report) => {
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serializes")
                );
            } else {
                print_report(store, &report);
            }
            ExitCode::from(if report.consistent { 0 } else { 3 })
        }
        Err(e) => fail(&e),
    }
}

/// Prints what `check --quick` found and gives its exit code (MF-9): 0 intact, 3 damaged.
fn report_quick(
    dir: &std::path::Path,
    json: bool,
    checked: Result<QuickCheck, (String, u8)>,
) -> ExitCode {
    let q = match checked {
        Ok(q) => q,
        Err((why, code)) => {
            eprintln!("neo4j-admin: {why}");
            return ExitCode::from(code);
        }
    };
    let m = &q.manifest;
    let r = &q.report;
    let intact = r.findings.is_empty();
    if json {
        let doc = serde_json::json!({
            "backup": dir.display().to_string(),
            "generation": q.generation.display().to_string(),
            "store_id": m.store_id.to_string(),
            "format_version": m.format.0,
            "first_tx": m.first_tx,
            "last_tx": m.last_tx,
            "digest": m.digest.to_string(),
            "files": m.files.len(),
            "blocks": m.total_blocks(),
            "blocks_checked": r.blocks_checked,
            "bytes_read": r.bytes_read,
            "intact": intact,
            "findings": r.findings.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
            "not_checked": r.unchecked,
        });
        out!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("a JSON value serializes")
        );
    } else {
        out!("backup:            {}", dir.display());
        out!("generation:        {}", q.generation.display());
        out!("store id:          {}", m.store_id);
        out!("format version:    {}", m.format);
        out!("transactions:      {} ..= {}", m.first_tx, m.last_tx);
        out!("digest:            {}", m.digest);
        out!(
            "manifest:          {} files, {} blocks; {} read",
            m.files.len(),
            m.total_blocks(),
            units::bytes(r.bytes_read)
        );
        for u in &r.unchecked {
            out!("not checked:       {u}");
        }
        if intact {
            out!("intact:            yes, every block read matches the manifest");
        } else {
            out!("intact:            NO, {} finding(s):", r.findings.len());
            for f in &r.findings {
                out!("  - {f}");
            }
        }
    }
    if !intact {
        eprintln!(
            "neo4j-admin: {} is damaged: {}",
            dir.display(),
            r.findings[0]
        );
    }
    ExitCode::from(if intact { 0 } else { 3 })
}

/// What the server says about the backup's next run (MF-13): the plan `neo4j-backup --plan`
/// would print, or why there is none.
fn ask_server(env: &Env, opts: &BackupOptions) -> Result<Plan, String> {
    runtime()?
        .block_on(client::plan(env, opts, &mut Lines::default()))
        .map_err(|e| e.to_string())
}

/// A runtime for what goes over the network: the server's answer, an object store.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Prints what `backup-info` found (MF-13).
fn print_catalogue(cat: &Catalogue, source: Option<&Result<Plan, String>>, json: bool) {
    let next = source.map(|r| match r {
        Ok(p) if p.kind == Kind::Incremental => (
            true,
            format!(
                "yes: the server is at tx {} and still logs every transaction after the backup's tx {}",
                p.to_tx,
                p.from_tx.unwrap_or(0)
            ),
        ),
        Ok(p) => (
            false,
            format!("no, the next run takes a full backup: {}", p.reason),
        ),
        Err(e) => (false, format!("unknown: {e}")),
    });
    if json {
        let gens: Vec<serde_json::Value> = cat
            .generations
            .iter()
            .map(|g| {
                let m = g.manifest.as_ref().ok().and_then(|m| m.as_ref());
                let restorable = g.restorable.as_ref().and_then(|r| r.as_ref().ok());
                serde_json::json!({
                    "number": g.number,
                    "live": g.live,
                    "dir": g.dir.display().to_string(),
                    "manifest_error": g.manifest.as_ref().err(),
                    "store_id": m.map(|m| m.store_id.to_string()),
                    "format_version": m.map(|m| m.format.0),
                    "first_tx": m.map(|m| m.first_tx),
                    "last_tx": m.map(|m| m.last_tx),
                    "kept": g.kept,
                    "marked_unverified": g.unverified,
                    "restores_to_txs": restorable.map(|s| [s.range.from_tx, s.range.to_tx]),
                    "restores_to_times": restorable.and_then(|s| s.times).map(|(a, b)| [units::time_millis(a), units::time_millis(b)]),
                    "restorable_error": g.restorable.as_ref().and_then(|r| r.as_ref().err()),
                    "digest": m.map(|m| m.digest.to_string()),
                    "created_millis": m.map(|m| m.created_millis),
                    "written_millis": m.map(|m| m.written_millis),
                    "bytes": g.bytes(),
                    "files": m.map(|m| m.files.len()),
                    "blocks": m.map(|m| m.total_blocks()),
                    "last_run_verified": m.map(|m| verification_name(m.verification)),
                    "last_full_verification": m.and_then(|m| m.last_full_verification).map(|(at, tx)| serde_json::json!({"millis": at, "tx": tx})),
                    "scrubbed_blocks_since_full_verification": m.map(|m| m.scrubbed_since_full),
                    "source": m.map(|m| m.source.clone()),
                    "tool_version": m.map(|m| m.tool_version.clone()),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "backup": cat.dir.display().to_string(),
            "generations": gens,
            "incremental_possible": next.as_ref().map(|(yes, _)| *yes),
            "next_run": next.as_ref().map(|(_, why)| why.clone()),
        });
        out!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("a JSON value serializes")
        );
        return;
    }
    out!("backup:                  {}", cat.dir.display());
    for g in &cat.generations {
        let state = if g.live {
            "live"
        } else if g.kept {
            "older, kept by --keep-generations"
        } else {
            "left by an interrupted run; the next run removes it"
        };
        out!("generation {}:            {state}", g.number);
        if g.unverified == Some(true) {
            out!("  marked unverified:     a run found it damaged or failed to verify it; the next run takes a full backup");
        }
        let m = match &g.manifest {
            Ok(Some(m)) => m,
            Ok(None) => {
                out!("  manifest:              none (taken before manifests, or unfinished)");
                continue;
            }
            Err(e) => {
                out!("  manifest:              {e}");
                continue;
            }
        };
        out!("  store id:              {}", m.store_id);
        out!("  format version:        {}", m.format);
        out!("  transactions:          {} ..= {}", m.first_tx, m.last_tx);
        match &g.restorable {
            Some(Ok(Span { range: r, times })) if r.from_tx < r.to_tx => {
                out!(
                    "  restores to:           any tx from {} to {} (transactions kept)",
                    r.from_tx,
                    r.to_tx
                );
                if let Some((a, b)) = times {
                    out!(
                        "  restores to times:     {} to {}",
                        units::time_millis(*a),
                        units::time_millis(*b)
                    );
                }
            }
            Some(Err(e)) => out!(
                "  restores to:           tx {} (its history cannot be read: {e})",
                m.last_tx
            ),
            _ => out!(
                "  restores to:           tx {} (its last; no transactions kept to go back)",
                m.last_tx
            ),
        }
        out!(
            "  times:                 made {}, last written {}",
            units::date_millis(m.created_millis),
            units::date_millis(m.written_millis)
        );
        out!(
            "  size:                  {} in {} files, {} blocks",
            units::bytes(g.bytes().unwrap_or(0)),
            m.files.len(),
            m.total_blocks()
        );
        out!(
            "  last run verified:     {}",
            verification_name(m.verification).replace('_', " ")
        );
        match m.last_full_verification {
            Some((at, tx)) => out!(
                "  fully verified:        {} at tx {tx}",
                units::date_millis(at)
            ),
            None => out!("  fully verified:        never"),
        }
        out!(
            "  scrubbed since:        {}% ({} of {} blocks)",
            m.scrubbed_since_full * 100 / m.total_blocks().max(1),
            m.scrubbed_since_full,
            m.total_blocks()
        );
        out!("  source:                {}", m.source);
        out!("  tool version:          {}", m.tool_version);
    }
    if let Some((_, why)) = next {
        out!("incremental possible:    {why}");
    }
}

fn print_report(store: &std::path::Path, r: &CheckReport) {
    out!("store:             {}", store.display());
    out!("store id:          {}", r.store_id);
    out!("format version:    {}", r.format_version);
    out!("last committed tx: {}", r.last_committed_tx);
    out!("nodes:             {}", r.nodes);
    out!("relationships:     {}", r.relationships);
    out!("digest:            {}", r.digest);
    if r.consistent {
        out!("consistent:        yes");
    } else {
        out!("consistent:        NO, {} finding(s):", r.finding_count);
        for f in &r.findings {
            out!("  - {f}");
        }
    }
}

/// A usage error the parser could not see (an object store URL, OBJ-1): exit 2.
fn usage(message: &str) -> ExitCode {
    eprintln!("neo4j-admin: {message}");
    ExitCode::from(2)
}

/// `neo4j-admin upgrade DIR` (ADM-5): the store or backup directory upgraded in place.
fn upgrade_dir(env: &Env, store: &std::path::Path) -> ExitCode {
    match upgrade(env.fs.clone(), env.clock.clone(), store) {
        Ok(UpgradeOutcome::Upgraded { from, to }) => {
            out!(
                "upgraded {} from format {from} to format {to}",
                store.display()
            );
            // A backup's manifest describes the files as they were (MF-12).
            match rehash_after_upgrade(&*env.fs, store, env.clock.now_millis()) {
                Ok(true) => out!("rewrote the manifest of {}", store.display()),
                Ok(false) => {}
                Err(e) => {
                    eprintln!("neo4j-admin: upgraded, but the manifest could not be rewritten ({e}); the next backup run will take a full backup");
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Ok(UpgradeOutcome::AlreadyCurrent(v)) => {
            out!(
                "{} is already at the current format {v}; nothing to do",
                store.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `neo4j-admin upgrade s3://...` (OBJ-19) and `neo4j-admin aggregate s3://...` (OBJ-20): the
/// live generation downloaded, recovered (and upgraded) and checked here, then uploaded as a
/// new generation.
fn rewrite_url(env: &Env, url: &ObjectUrl, rewrite: Rewrite) -> ExitCode {
    let work = std::env::temp_dir().join(format!("neo4j-admin-rewrite-{}", std::process::id()));
    let upgraded = match runtime() {
        Ok(rt) => rt.block_on(rewrite_objects(env, url, &work, rewrite)),
        Err(e) => return fail(&e),
    };
    match upgraded {
        Ok(RewriteOutcome::Upgraded {
            from,
            generation,
            tx,
        }) => {
            out!(
                "upgraded {url} from format {from} to format {}: {} at tx {tx} is live, checked; the previous generation is kept",
                FormatVersion::CURRENT,
                generation_name(generation)
            );
            ExitCode::SUCCESS
        }
        Ok(RewriteOutcome::AlreadyCurrent(v)) => {
            out!("{url} is already at the current format {v}; nothing to do");
            ExitCode::SUCCESS
        }
        Ok(RewriteOutcome::Aggregated {
            replayed,
            generation,
            tx,
        }) => {
            out!(
                "aggregated {url}: {replayed} transaction(s) folded into the record files of {} at tx {tx}, live, checked; the previous generation is kept",
                generation_name(generation)
            );
            ExitCode::SUCCESS
        }
        Ok(RewriteOutcome::NothingToFold { tx }) => {
            out!("{url} holds no transaction to fold (its files are at tx {tx}); nothing to do");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("neo4j-admin: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("neo4j-admin: {e}");
    ExitCode::from(1)
}
