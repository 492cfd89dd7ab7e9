//! The main job on an embedded default, end to end on real files and real TCP: a server on a
//! temporary store with a generated graph and a concurrent writer; a full backup while it
//! writes; more writes; an incremental backup; both verified and equal to the server's digest
//! at their tx; a restore; the restored store checked against the backup; a summary.
//!
//! `cargo run --release --example demo [-- DIR]` (a temporary directory when none is given).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use online_backup::backup::client::{self, BackupOptions, Kind, Lines, Mode, Verify};
use online_backup::backup::restore::restore;
use online_backup::config::Config;
use online_backup::io::Env;
use online_backup::server::{run as run_server, Bound, ServerOptions};
use online_backup::store::check::check;
use online_backup::store::format::FormatVersion;
use online_backup::store::generate::{generate, GenerateSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One transaction over the HTTP API; returns its tx id.
async fn post(http: std::net::SocketAddr, i: u64) -> Result<u64, Error> {
    let body = format!(
        r#"{{"ops":[{{"create_node":{{"labels":["Demo"],"props":{{"i":{i}}}}}}},{{"create_relationship":{{"from":"$0","to":{},"type":"NEXT","props":{{}}}}}}]}}"#,
        i % 1000
    );
    let mut s = TcpStream::connect(http).await?;
    let req = format!(
        "POST /db/data/transaction HTTP/1.1\r\nHost: demo\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let (head, json) = out.split_once("\r\n\r\n").ok_or("a malformed answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("the server refused a write: {out}").into());
    }
    let v: serde_json::Value = serde_json::from_str(json)?;
    v["tx_id"].as_u64().ok_or_else(|| "no tx_id".into())
}

fn options(addr: std::net::SocketAddr, target: &Path) -> BackupOptions {
    BackupOptions {
        host: addr.ip().to_string(),
        port: addr.port(),
        target: target.to_path_buf(),
        mode: Mode::Auto,
        verify: Verify::Default,
        timeout: Duration::from_secs(60),
        max_rate: None,
        tls: None,
        apply_run_txs: online_backup::backup::client::APPLY_RUN_TXS,
        scrub_percent: online_backup::backup::client::SCRUB_PERCENT,
        keep_transactions: online_backup::retention::RetentionPolicy::KeepRecoveryOnly,
        keep_generations: 1,
    }
}

async fn demo() -> Result<(), Error> {
    let started = Instant::now();
    let temp;
    let root: PathBuf = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let env = Env::os();
    let store = root.join("graph.db");
    let backup = root.join("backup");
    let restored = root.join("restored.db");

    // 1. A generated graph, served.
    let generated = generate(
        env.fs.clone(),
        env.clock.clone(),
        &store,
        &GenerateSpec {
            nodes: 200_000,
            relationships_per_node: 2,
            property_bytes: 64,
            seed: 1,
            format: FormatVersion::CURRENT,
        },
        rand::random(),
    )?;
    println!(
        "generated {} nodes and {} relationships ({:.1} MiB) in {}",
        generated.nodes,
        generated.relationships,
        generated.bytes as f64 / (1 << 20) as f64,
        store.display()
    );
    let (config, _) = Config::parse(
        "http_server=127.0.0.1:0\nonline_backup_server=127.0.0.1:0\nlogical_log_rotation_threshold=1M\n",
    )?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Bound>();
    let server_env = env.clone();
    let server_store = store.clone();
    let server = tokio::spawn(async move {
        run_server(
            server_env,
            ServerOptions {
                store_dir: server_store,
                config,
                create_random: 1,
                http: online_backup::server::http::HttpLimits::default(),
            },
            async move {
                let _ = stop_rx.await;
            },
            move |b: &Bound| {
                let _ = ready_tx.send(b.clone());
            },
        )
        .await
    });
    let bound = ready_rx.await?;
    let backup_addr = bound.backup.ok_or("the backup service is off")?;
    println!(
        "server: HTTP API on {}, backup service on {backup_addr}",
        bound.http
    );

    // 2. A concurrent writer.
    let stop_writing = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop_writing.clone(), written.clone());
        let http = bound.http;
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let tx = post(http, i).await?;
                written.store(tx, Ordering::Relaxed);
                i += 1;
            }
            Ok::<u64, Error>(i)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 3. A full backup while the writer runs.
    let before_full = written.load(Ordering::Relaxed);
    let mut lines = Lines::default();
    let full = client::run(&env, &options(backup_addr, &backup), &mut lines).await?;
    if full.kind != Kind::Full || full.to_tx < before_full {
        return Err(format!(
            "the first backup should be full and reach at least tx {before_full}: {}",
            full.describe()
        )
        .into());
    }
    println!("full:        {}", full.describe());

    // 4. More writes, then stop the writer and take an incremental backup.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_writing.store(true, Ordering::Relaxed);
    let txs = writer.await??;
    let incremental = client::run(&env, &options(backup_addr, &backup), &mut lines).await?;
    if incremental.kind != Kind::Incremental {
        return Err(format!(
            "the second backup should be incremental: {}",
            incremental.describe()
        )
        .into());
    }
    println!("incremental: {}", incremental.describe());
    let status = {
        let mut s = TcpStream::connect(bound.http).await?;
        s.write_all(b"GET /db/data/ HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        let json = out.split_once("\r\n\r\n").ok_or("a malformed answer")?.1;
        serde_json::from_str::<serde_json::Value>(json)?
    };
    if status["digest"] != incremental.digest.to_hex()
        || status["last_committed_tx"] != incremental.to_tx
    {
        return Err(format!("the backup differs from the server: {status}").into());
    }
    println!(
        "server:      tx {}, digest {} (equal to the backup's)",
        status["last_committed_tx"],
        status["digest"].as_str().unwrap_or_default()
    );
    let _ = stop_tx.send(());
    server.await??;

    // 5. Restore, and check the restored store against the backup.
    let restored_report = restore(
        env.fs.clone(),
        env.clock.clone(),
        &*env.blocking,
        &backup,
        &restored,
        false,
        None,
        &mut |_, _, _| {},
    )?;
    let check_report = check(env.fs.clone(), env.clock.clone(), &restored)?;
    if !check_report.consistent || check_report.digest != incremental.digest.to_hex() {
        return Err(format!(
            "the restored store differs from the backup: digest {}, {} findings",
            check_report.digest, check_report.finding_count
        )
        .into());
    }
    println!(
        "restored:    {} at tx {}, {} copied, check consistent, same digest",
        restored.display(),
        restored_report.report.last_committed_tx,
        online_backup::units::bytes(restored_report.bytes)
    );
    println!(
        "demo done in {:.1} s: {txs} transactions written during the backups, a full and an incremental backup verified, restored, digests equal",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
