//! `neo4j console --store DIR [--config FILE]`: runs the database server in the foreground.
//! Parses arguments, reads the configuration, installs logging and signal handling, and maps
//! errors to exit codes: 0 clean shutdown, 1 failed to start or failed, 2 usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use online_backup::cli;
use online_backup::config::Config;
use online_backup::io::{read_small_file, Env};
use online_backup::server::{run, Bound, ServerOptions};

#[derive(Parser)]
#[command(name = "neo4j", version, about = "The graph database server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server in the foreground until SIGINT or SIGTERM.
    Console {
        /// The store directory (created if missing or empty).
        #[arg(long)]
        store: PathBuf,
        /// A neo4j.properties file; defaults apply to every key it does not set.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match cli::parse_or_exit::<Cli>("neo4j", std::env::args_os()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let Command::Console { store, config } = cli.command;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // A line is the time, the level and a sentence; the Rust module is no help to an
        // operator (SRV-7).
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let env = Env::os();
    let config = match config {
        None => Config::default(),
        Some(path) => {
            let text = match read_small_file(&*env.fs, &path, 1 << 20) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => {
                    eprintln!(
                        "neo4j: cannot read the configuration file {}: {e}",
                        path.display()
                    );
                    return ExitCode::from(1);
                }
            };
            match Config::parse(&text) {
                Ok((config, warnings)) => {
                    for w in warnings {
                        tracing::warn!("{}: {w}", path.display());
                    }
                    config
                }
                Err(e) => {
                    eprintln!("neo4j: {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("neo4j: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // The handlers are in place before the server says it is ready: a SIGTERM right after that
    // line is a clean shutdown, not the default action (SRV-2).
    let shutdown = match runtime.block_on(async { shutdown_signal() }) {
        Ok(shutdown) => shutdown,
        Err(e) => {
            eprintln!("neo4j: cannot install the SIGINT and SIGTERM handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let options = ServerOptions {
        store_dir: store.clone(),
        config,
        create_random: rand::random(),
        http: online_backup::server::http::HttpLimits::default(),
    };
    let result = runtime.block_on(run(env, options, shutdown, |bound: &Bound| {
        println!("neo4j: store {} open", store.display());
        println!("neo4j: HTTP API on http://{}/db/data/", bound.http);
        match bound.backup {
            Some(addr) => println!("neo4j: backup service on {addr}"),
            None => println!("neo4j: backup service off (online_backup_enabled=false)"),
        }
    }));
    match result {
        Ok(()) => {
            println!("neo4j: stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("neo4j: {e}");
            ExitCode::from(1)
        }
    }
}

/// Installs the SIGINT and SIGTERM handlers (inside the runtime) and returns a future that
/// completes on either signal.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            biased;
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
