//! The software of the backup scenarios' three hosts (see `backup_world.rs`): the server runs
//! the product's `neo4j`, the writer commits random transactions and keeps the model of what was
//! acknowledged, and the client runs `neo4j-backup` and inspects its target on the driver's
//! command (jobs in, replies out, through the shared state).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use online_backup::backup::client::{self, BackupOptions};
use online_backup::backup::history;
use online_backup::backup::manifest;
use online_backup::backup::restore::{restore, Until};
use online_backup::config::Config;
use online_backup::graph::{Op, Properties, Value};
use online_backup::io::{Fs, OpenMode};
use online_backup::retention::RetentionPolicy;
use online_backup::server::{self, ServerOptions};
use online_backup::store::check;
use online_backup::store::format::{FormatVersion, RecordKind};
use online_backup::store::layout::{self, POINTER_FILE};
use online_backup::store::log::TxState;
use online_backup::store::meta::META_FILE;
use online_backup::store::{initialize, Store, StoreOptions};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kit::http;
use crate::runner::HostCtx;
use crate::scenarios::backup_world::*;

/// Floats that JSON text carries exactly whatever the parser's precision: quarters.
fn exact_floats(ops: &mut [Op]) {
    fn fix(v: &mut Value) {
        match v {
            Value::Float(f) => *f = (*f * 4.0).round() / 4.0,
            Value::List(items) => items.iter_mut().for_each(fix),
            _ => {}
        }
    }
    fn fix_props(p: &mut Properties) {
        p.values_mut().for_each(fix);
    }
    for op in ops {
        match op {
            Op::CreateNode { props, .. } | Op::CreateRelationship { props, .. } => fix_props(props),
            Op::SetProperty { value, .. } => fix(value),
            Op::DeleteNode(_) | Op::DeleteRelationship(_) => {}
        }
    }
}

/// The `server` host: `neo4j` with the scenario's configuration, until the driver asks it to
/// shut down or crashes it.
pub(crate) async fn server_software(
    h: HostCtx,
    shared: Arc<Mutex<Shared>>,
    properties: String,
    store_random: u64,
) -> turmoil::Result {
    {
        let mut s = shared.lock().unwrap();
        s.server = ServerSide::default();
    }
    let tls = shared.lock().unwrap().tls.clone();
    if let Some(tls) = &tls {
        let files = [
            ("ca.pem", &tls.ca),
            ("server.pem", &tls.server.cert),
            ("server.key", &tls.server.key),
        ];
        h.check(write_tls(&*h.env.fs, &files)).await?;
    }
    let (config, warnings) = Config::parse(&properties)?;
    if !warnings.is_empty() {
        return Err(format!("the configuration gave warnings: {warnings:?}").into());
    }
    let watch = shared.clone();
    let shutdown = async move {
        while !watch.lock().unwrap().server.shutdown {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let ready = shared.clone();
    let served = server::run(
        h.env.clone(),
        ServerOptions {
            store_dir: PathBuf::from(STORE_DIR),
            config,
            create_random: store_random,
            http: online_backup::server::http::HttpLimits::default(),
        },
        shutdown,
        move |_| ready.lock().unwrap().server.ready = true,
    )
    .await;
    h.check(served).await?;
    h.record("server stopped");
    shared.lock().unwrap().server.stopped = true;
    std::future::pending::<()>().await;
    Ok(())
}

/// The `writer` host: random transactions over HTTP, one at a time, the model kept in step.
pub(crate) async fn writer_software(h: HostCtx, shared: Arc<Mutex<Shared>>) -> turmoil::Result {
    let net = h.env.net.clone();
    loop {
        let (paused, unresolved) = {
            let s = shared.lock().unwrap();
            (s.writer.paused, s.writer.in_flight.is_some())
        };
        if unresolved {
            resolve_in_flight(&h, &shared).await?;
            continue;
        }
        if paused {
            shared.lock().unwrap().writer.idle = true;
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let (ops, pause) = {
            let mut s = shared.lock().unwrap();
            let w = &mut s.writer;
            w.idle = false;
            let mut ops = w.graph.random_tx(&mut w.rng);
            exact_floats(&mut ops);
            let digest = w.graph.digest_after(&ops)?;
            w.digests.insert(w.acked + 1, digest);
            w.in_flight = Some(ops.clone());
            let pause = w.rng.random_range(0..=w.max_pause.as_micros() as u64);
            (ops, Duration::from_micros(pause))
        };
        let sent_at = h.world.trace().events();
        match http::commit(&*net, HTTP_ADDR, &ops, WRITE_TIMEOUT).await {
            Ok(Ok((tx_id, ids))) => {
                let mut s = shared.lock().unwrap();
                let w = &mut s.writer;
                let expected_ids = w.graph.apply(&ops)?;
                if tx_id != w.acked + 1 || ids != expected_ids {
                    return Err(format!(
                        "the server committed tx {tx_id} with ids {ids:?}; the model expected tx \
                         {} with ids {expected_ids:?}",
                        w.acked + 1
                    )
                    .into());
                }
                w.acked = tx_id;
                w.in_flight = None;
            }
            // Closing or failed: whether it committed is learned from the status.
            Ok(Err(answer)) if answer.status == 503 => {}
            // The I/O failure of a fault on the server whose effects lasted until it was sent
            // (SIM-30, SIM-33): likewise.
            Ok(Err(answer))
                if answer.status == 500 && h.world.fault_effects_since(SERVER, sent_at) => {}
            Ok(Err(answer)) => {
                return Err(format!(
                    "the server refused a valid transaction with {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                )
                .into())
            }
            Err(_) => {}
        }
        tokio::time::sleep(pause).await;
    }
}

/// After a commit whose answer was lost: asks the server where it stands. The transaction in
/// flight committed when the server is one past the acknowledged one; the server must never be
/// behind it (it lost no acknowledged transaction), and its digest must be the model's.
async fn resolve_in_flight(h: &HostCtx, shared: &Arc<Mutex<Shared>>) -> turmoil::Result {
    let status = match http::status(&*h.env.net, HTTP_ADDR, STATUS_TIMEOUT).await {
        Ok(s) => s,
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Ok(());
        }
    };
    let mut s = shared.lock().unwrap();
    let w = &mut s.writer;
    let ops = w.in_flight.take().expect("a transaction in flight");
    if status.last_committed_tx == w.acked + 1 {
        w.graph.apply(&ops)?;
        w.acked += 1;
    } else if status.last_committed_tx != w.acked {
        return Err(format!(
            "SIM-20, BK-34: the server is at tx {} but tx {} was acknowledged (and at most one more \
             sent)",
            status.last_committed_tx, w.acked
        )
        .into());
    }
    let model = w.graph.digest();
    if status.digest != model {
        return Err(format!(
            "SIM-20: at tx {} the server's digest is {} but the model's is {model}",
            status.last_committed_tx, status.digest
        )
        .into());
    }
    h.record(&format!("writer resolved: server at tx {}", w.acked));
    Ok(())
}

/// Writes `files` (name, PEM text) into [`TLS_DIR`], each replaced atomically.
fn write_tls(fs: &dyn Fs, files: &[(&str, &String)]) -> std::io::Result<()> {
    fs.create_dir_all(Path::new(TLS_DIR))?;
    for (name, text) in files {
        online_backup::io::write_atomic(fs, &Path::new(TLS_DIR).join(name), text.as_bytes())?;
    }
    Ok(())
}

/// Writes the client's TLS files, when the scenario uses TLS.
async fn write_client_tls(h: &HostCtx, shared: &Arc<Mutex<Shared>>) -> turmoil::Result {
    let tls = shared.lock().unwrap().tls.clone();
    if let Some(tls) = &tls {
        let files = [
            ("ca.pem", &tls.ca),
            ("client.pem", &tls.client.cert),
            ("client.key", &tls.client.key),
        ];
        h.check(write_tls(&*h.env.fs, &files)).await?;
    }
    Ok(())
}

/// The `client` host: does the driver's jobs, one at a time.
pub(crate) async fn client_software(h: HostCtx, shared: Arc<Mutex<Shared>>) -> turmoil::Result {
    write_client_tls(&h, &shared).await?;
    loop {
        let next = shared.lock().unwrap().client.job.take();
        let Some((id, job)) = next else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let reply = perform(&h, &shared, job).await?;
        shared.lock().unwrap().client.reply = Some((id, reply));
    }
}

async fn perform(h: &HostCtx, shared: &Arc<Mutex<Shared>>, job: Job) -> turmoil::Result<Reply> {
    let env = &h.env;
    let fs = &*env.fs;
    match job {
        Job::Backup(job) => {
            let status = http::status(&*env.net, HTTP_ADDR, STATUS_TIMEOUT)
                .await
                .ok();
            let before = h.check(snapshot(fs, &job.target)).await?;
            let acked = shared.lock().unwrap().writer.acked;
            let began_after = acked.max(status.as_ref().map_or(0, |s| s.last_committed_tx));
            let ops_before = h.world.mutating_ops(&h.name);
            let options = BackupOptions {
                host: SERVER.to_string(),
                port: BACKUP_PORT,
                target: job.target.clone(),
                mode: job.mode,
                verify: job.verify,
                timeout: job.timeout,
                max_rate: job.max_rate,
                tls: shared
                    .lock()
                    .unwrap()
                    .tls
                    .as_ref()
                    .map(|_| SimTls::client_files()),
                apply_run_txs: job.apply_run_txs,
                scrub_percent: job.scrub_percent,
                keep_transactions: if job.keep_transactions {
                    RetentionPolicy::KeepAll
                } else {
                    RetentionPolicy::KeepRecoveryOnly
                },
                keep_generations: job.keep_generations,
            };
            // The run's phases and the faults armed for it (SIM-36, SIM-38).
            h.world.backup_started(&h.name, SERVER, &job.target);
            let mut lines = h.world.phase_lines();
            let outcome = client::run(env, &options, &mut lines).await;
            if h.is_down() {
                // Power lost mid-run: the machine stops here.
                std::future::pending::<()>().await;
            }
            h.world.backup_ended();
            let fs_ops = h.world.mutating_ops(&h.name) - ops_before;
            let after = h.check(snapshot(fs, &job.target)).await?;
            h.record(&match &outcome {
                Ok(s) => format!("backup finished: {} to tx {}", s.kind.name(), s.to_tx),
                Err(e) => format!("backup failed: exit {}", e.exit_code()),
            });
            Ok(Reply::Backup(Box::new(BackupRun {
                job,
                began_after,
                status_before: status,
                before,
                after,
                outcome: outcome.map_err(|e| Failure::of(&e)),
                lines: lines.lines,
                fs_ops,
            })))
        }
        Job::Inspect(target) => Ok(Reply::Inspect(Box::new(
            h.check(inspect(env, &target)).await?,
        ))),
        Job::Diverge { target, txs } => {
            let mut store = h
                .check(Store::open(
                    env.fs.clone(),
                    env.clock.clone(),
                    &target,
                    &StoreOptions::default(),
                ))
                .await?;
            for i in 0..txs {
                let ops = [Op::CreateNode {
                    labels: vec!["Diverged".to_string()],
                    props: [("n".to_string(), Value::Int(i as i64))]
                        .into_iter()
                        .collect(),
                }];
                h.check(store.commit(&ops)).await?;
            }
            h.check(store.close()).await?;
            Ok(Reply::Done)
        }
        Job::Plant { target, what } => {
            h.check(plant(env, &target, &what)).await?;
            Ok(Reply::Done)
        }
        Job::RestoreObjects { url, to, until_tx } => Ok(Reply::Objects(
            restore_objects(env, &url, &to, until_tx).await,
        )),
        Job::Aggregate { url, work } => Ok(Reply::Aggregated(aggregate(env, &url, &work).await)),
        Job::Restore { from, to } => {
            let live = h.check(layout::resolve(fs, &from)).await?;
            h.check(copy_tree(fs, &live, &to)).await?;
            h.check(fs.sync_dir(online_backup::io::parent_of(&to)))
                .await?;
            Ok(Reply::Done)
        }
        Job::Stall(n) => {
            let mut streams = Vec::new();
            for _ in 0..n {
                let mut stream = h
                    .check(env.net.connect(&format!("{SERVER}:{BACKUP_PORT}")).await)
                    .await?;
                // A handshake record's header, announcing 200 bytes that never come.
                h.check(stream.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8]).await)
                    .await?;
                streams.push((stream, env.clock.now()));
            }
            let (clock, shared) = (env.clock.clone(), shared.clone());
            tokio::spawn(async move {
                for (mut stream, since) in streams {
                    let mut buf = [0u8; 256];
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                    let after = clock.now().duration_since(since).unwrap_or_default();
                    shared.lock().unwrap().stalls.push(after);
                }
            });
            Ok(Reply::Done)
        }
        Job::WriteTls => {
            write_client_tls(h, shared).await?;
            Ok(Reply::Done)
        }
        Job::Status => Ok(Reply::Status(
            http::status(&*env.net, HTTP_ADDR, STATUS_TIMEOUT)
                .await
                .ok(),
        )),
    }
}

type BoxError = Box<dyn std::error::Error>;

/// Everything under `path`, name by name, with every file's bytes.
fn snapshot(fs: &dyn Fs, path: &Path) -> std::io::Result<Tree> {
    fn walk(
        fs: &dyn Fs,
        dir: &Path,
        prefix: &str,
        out: &mut BTreeMap<String, Entry>,
    ) -> std::io::Result<()> {
        for e in fs.read_dir(dir)? {
            let name = format!("{prefix}{}", e.name);
            if e.is_dir {
                out.insert(name.clone(), Entry::Dir);
                walk(fs, &dir.join(&e.name), &format!("{name}/"), out)?;
            } else {
                out.insert(name, Entry::File(read_file(fs, &dir.join(&e.name))?));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    match fs.metadata(path)? {
        None => return Ok(None),
        Some(m) if !m.is_dir => {
            out.insert(String::new(), Entry::File(read_file(fs, path)?));
        }
        Some(_) => walk(fs, path, "", &mut out)?,
    }
    Ok(Some(out))
}

fn read_file(fs: &dyn Fs, path: &Path) -> std::io::Result<Vec<u8>> {
    let file = fs.open(path, OpenMode::Read)?;
    let mut buf = vec![0; file.len()? as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

fn write_file(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file = fs.open(path, OpenMode::CreateNew)?;
    file.write_all_at(bytes, 0)?;
    file.sync()
}

fn copy_tree(fs: &dyn Fs, from: &Path, to: &Path) -> std::io::Result<()> {
    fs.create_dir_all(to)?;
    for e in fs.read_dir(from)? {
        let (src, dst) = (from.join(&e.name), to.join(&e.name));
        if e.is_dir {
            copy_tree(fs, &src, &dst)?;
        } else {
            write_file(fs, &dst, &read_file(fs, &src)?)?;
        }
    }
    Ok(())
}

/// Copies `target` aside and checks the copy as `neo4j-admin check` would (following the
/// pointer, recovering first), so that the target itself stays exactly as the run left it.
fn inspect(env: &online_backup::io::Env, target: &Path) -> Result<Inspection, BoxError> {
    let fs = &*env.fs;
    let names: Vec<String> = match fs.metadata(target)? {
        None => Vec::new(),
        Some(m) if !m.is_dir => {
            return Ok(Inspection {
                names: Vec::new(),
                live: None,
                held: Err(format!("{} is a file", target.display())),
                manifest: Ok(ManifestState::None),
                history: None,
            })
        }
        Some(_) => fs.read_dir(target)?.into_iter().map(|e| e.name).collect(),
    };
    let live = layout::read_pointer(fs, target).ok().flatten();
    if !names.iter().any(|n| n == POINTER_FILE || n == META_FILE) {
        return Ok(Inspection {
            names,
            live,
            held: Ok(None),
            manifest: Ok(ManifestState::None),
            history: None,
        });
    }
    // The manifest first, on the directory as the run left it (the check below recovers a copy).
    let manifest = match (live, manifest::quick_check(fs, target)) {
        (None, _) => Ok(ManifestState::None),
        (Some(_), Ok(q)) if !q.report.findings.is_empty() => Err(format!(
            "{:?} (not checked: {:?})",
            q.report
                .findings
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>(),
            q.report.unchecked
        )),
        (Some(_), Ok(q)) if q.report.unchecked.is_empty() => Ok(ManifestState::Exact(Some((
            q.manifest.store_id,
            q.manifest.last_tx,
            q.manifest.digest,
        )))),
        (Some(_), Ok(_)) => Ok(ManifestState::Pending),
        (Some(_), Err(e)) => Err(e.to_string()),
    };
    // Created and removed durably, so a crash of the client never leaves half a copy behind
    // (the simulated disk keeps a synced directory even when its parent's entry was not).
    let copy = Path::new(INSPECT_COPY);
    let scratch = online_backup::io::parent_of(copy);
    fs.create_dir_all(scratch)?;
    fs.sync_dir(Path::new("/"))?;
    if fs.metadata(copy)?.is_some() {
        fs.remove_dir_all(copy)?;
    }
    copy_tree(fs, target, copy)?;
    let held = check::check(env.fs.clone(), env.clock.clone(), copy)
        .map(Some)
        .map_err(|e| e.to_string());
    let history = match &held {
        Ok(Some(r)) => restore_earliest(env, copy, r.last_committed_tx)?,
        _ => None,
    };
    fs.remove_dir_all(copy)?;
    fs.sync_dir(scratch)?;
    Ok(Inspection {
        names,
        live,
        held,
        manifest,
        history,
    })
}

/// When the backup (a checked copy of it) can be restored to an earlier tx than its last
/// (PIT-5), restores the earliest one, the deepest rewind: the tx and the restored digest, or
/// why the restore failed (PIT-7).
fn restore_earliest(
    env: &online_backup::io::Env,
    copy: &Path,
    last_tx: u64,
) -> Result<Option<Box<Restored>>, BoxError> {
    let fs = &*env.fs;
    let live = layout::resolve(fs, copy)?;
    let range = match history::restorable(fs, &live, last_tx) {
        Ok(r) if r.from_tx < r.to_tx => r,
        Ok(_) => return Ok(None),
        Err(e) => {
            return Ok(Some(Box::new(Err(format!(
                "its history does not read: {e}"
            )))))
        }
    };
    let to = Path::new(INSPECT_RESTORE);
    if fs.metadata(to)?.is_some() {
        fs.remove_dir_all(to)?;
    }
    let restored = restore(
        env.fs.clone(),
        env.clock.clone(),
        &*env.blocking,
        copy,
        to,
        false,
        Some(Until::Tx(range.from_tx)),
        &mut |_, _, _| {},
    );
    if fs.metadata(to)?.is_some() {
        fs.remove_dir_all(to)?;
    }
    fs.sync_dir(online_backup::io::parent_of(to))?;
    Ok(Some(Box::new(match restored {
        Ok(r) => online_backup::digest::Digest::from_hex(&r.report.digest)
            .map(|d| (r.report.last_committed_tx, d))
            .ok_or(format!(
                "the restore printed a bad digest {:?}",
                r.report.digest
            )),
        Err(e) => Err(format!("the restore to tx {} failed: {e}", range.from_tx)),
    })))
}

fn plant(env: &online_backup::io::Env, target: &Path, what: &Plant) -> Result<(), BoxError> {
    let fs = &*env.fs;
    let parent = online_backup::io::parent_of(target);
    fs.create_dir_all(parent)?;
    match what {
        Plant::ForeignStore { random } => {
            Store::create(
                env.fs.clone(),
                env.clock.clone(),
                target,
                &StoreOptions::default(),
                FormatVersion::CURRENT,
                *random,
            )?
            .close()?;
        }
        Plant::OtherFormat { store_id, format } => {
            fs.create_dir_all(target)?;
            initialize(fs, target, *store_id, *format, TxState::empty(), 0)?;
        }
        Plant::StrayFile => {
            fs.create_dir_all(target)?;
            write_file(fs, &target.join("notes.txt"), b"not a backup\n")?;
        }
        Plant::File => write_file(fs, target, b"a file, not a directory\n")?,
        Plant::DanglingPointer => {
            fs.create_dir_all(target)?;
            write_file(fs, &target.join(POINTER_FILE), b"generation-9\n")?;
        }
        Plant::DamagedPointer => {
            fs.create_dir_all(target)?;
            write_file(fs, &target.join(POINTER_FILE), b"garbage")?;
        }
        Plant::FilesWithoutMeta => {
            fs.create_dir_all(target)?;
            let name = RecordKind::ALL[0].file_name();
            write_file(fs, &target.join(name), &[0u8; 64])?;
        }
    }
    fs.sync_dir(parent)?;
    Ok(())
}

/// Aggregates the object store backup `url` as `neo4j-admin aggregate` does (OBJ-20), in the
/// working directory `work`: the tx of the new generation, `None` when there was nothing to
/// fold, or the exit code and sentence of a failure.
async fn aggregate(
    env: &online_backup::io::Env,
    url: &str,
    work: &Path,
) -> Result<Option<u64>, (u8, String)> {
    use online_backup::backup::objects::ObjectUrl;
    use online_backup::backup::rewrite::{rewrite_objects, Rewrite, RewriteOutcome};
    let url = ObjectUrl::parse(url).map_err(|e| (2, e))?;
    match rewrite_objects(env, &url, work, Rewrite::Aggregate).await {
        Ok(RewriteOutcome::Aggregated { tx, .. }) => Ok(Some(tx)),
        Ok(RewriteOutcome::NothingToFold { .. }) => Ok(None),
        Ok(other) => Err((0, format!("an aggregate answered {other:?}"))),
        Err(e) => Err((e.exit_code(), e.to_string())),
    }
}

/// Restores the object store backup `url` into `to` as `neo4j-admin restore --from` does
/// (OBJ-8), with `--until-tx` when `until_tx` is given (OBJ-18): `None` when it holds no
/// backup, else the restored store's tx and recomputed digest. The restored directory is
/// removed after, so inspections do not fill the client's disk.
async fn restore_objects(
    env: &online_backup::io::Env,
    url: &str,
    to: &Path,
    until_tx: Option<u64>,
) -> Result<Option<(u64, String)>, String> {
    use online_backup::backup::objects::{ObjectUrl, ObjectsError};
    use online_backup::backup::restore::{remove_staging, stage_objects, RestoreError, Until};
    let url = ObjectUrl::parse(url)?;
    let staging = match stage_objects(env, &url, to, true, until_tx.map(Until::Tx)).await {
        Ok(staging) => staging,
        Err(RestoreError::Objects(ObjectsError::NotABackup { why, .. }))
            if why == "it holds no backup" =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.to_string()),
    };
    let restored = restore(
        env.fs.clone(),
        env.clock.clone(),
        &*env.blocking,
        &staging,
        to,
        true,
        None,
        &mut |_, _, _| {},
    );
    remove_staging(&*env.fs, &staging);
    let restored = restored.map_err(|e| e.to_string())?;
    let _ = env.fs.remove_dir_all(to);
    Ok(Some((
        restored.report.last_committed_tx,
        restored.report.digest,
    )))
}
