//! The faults the seams inject, one at a time on a bare host (SIM-30 .. SIM-36): each strikes the
//! operation it was aimed at, does what its rule says, and stops when the run ends.

use std::io;

use online_backup::graph::Op;
use online_backup::io::Clock;
use online_backup::store::{Store, StoreError, StoreOptions};

use super::*;
use crate::runner::HostCtx;
use crate::seams::{BackupPhase, FaultKind, FaultSpec, OpClass};

/// `kind` on the `nth` operation of `class` in the handshake of the next run.
fn spec(kind: FaultKind, class: OpClass, nth: u64, persistent: bool) -> FaultSpec {
    FaultSpec {
        kind,
        phase: BackupPhase::Handshake,
        class,
        nth,
        persistent,
        amount: Duration::ZERO,
        seed: 7,
    }
}

/// Runs `body` as the software of host [`HOST`] (once), and fails the test with what it
/// returned. The driver arms `faults` first.
fn on_host(
    name: &'static str,
    faults: Vec<FaultSpec>,
    body: fn(&HostCtx) -> Result<(), String>,
) -> Trace {
    simulate(name, move |ctx| {
        for f in faults {
            ctx.world.arm_fault(HOST, f);
        }
        let out: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
        let o = out.clone();
        ctx.host(HOST, move |h| {
            let o = o.clone();
            async move {
                *o.lock().unwrap() = Some(body(&h));
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let o = out.clone();
        ctx.run_until(100, "the host's work", move || o.lock().unwrap().is_some())?;
        let r = out.lock().unwrap().take().unwrap();
        r.map_err(|e| e.into())
    })
}

fn os_code(r: io::Result<impl std::fmt::Debug>) -> Result<i32, String> {
    match r {
        Err(e) => e.raw_os_error().ok_or(format!("not an OS error: {e:?}")),
        Ok(v) => Err(format!("succeeded: {v:?}")),
    }
}

fn read_at(env: &Env, path: &str, at: u64, len: usize) -> io::Result<Vec<u8>> {
    let f = env.fs.open(p(path), OpenMode::Read)?;
    let mut buf = vec![0; len];
    let n = f.read_at(&mut buf, at)?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn sim_30_sim_36_an_io_error_strikes_the_nth_operation_once_or_for_good() {
    on_host(
        "eio",
        vec![spec(FaultKind::ReadError, OpClass::Read, 2, true)],
        |h| {
            write_durable(&h.env, "/a", b"hello")?;
            write_durable(&h.env, "/b", b"world")?;
            // Outside a run nothing counts.
            read_at(&h.env, "/a", 0, 5).map_err(e("a read before the run"))?;
            h.world.backup_started(HOST, "nobody", p("/t"));
            read_at(&h.env, "/a", 0, 5).map_err(e("the first read"))?;
            expect(
                "SIM-30: the second read",
                os_code(read_at(&h.env, "/a", 0, 5))?,
                5,
            )?;
            expect("SIM-30: for good", os_code(read_at(&h.env, "/a", 1, 2))?, 5)?;
            read_at(&h.env, "/b", 0, 5).map_err(e("SIM-30: another file"))?;
            h.world.backup_ended();
            expect(
                "SIM-30: after the run",
                read_at(&h.env, "/a", 0, 5).map_err(e("read"))?,
                b"hello".to_vec(),
            )
        },
    );
    on_host(
        "eio once",
        vec![spec(FaultKind::SyncError, OpClass::Sync, 1, false)],
        |h| {
            h.world.backup_started(HOST, "nobody", p("/t"));
            let f = h
                .env
                .fs
                .open(p("/c"), OpenMode::CreateNew)
                .map_err(e("open"))?;
            f.write_all_at(b"x", 0).map_err(e("write"))?;
            expect("SIM-30: the fsync", os_code(f.sync())?, 5)?;
            f.sync().map_err(e("SIM-30: once, the next fsync works"))
        },
    );
}

#[test]
fn sim_32_a_read_returns_a_flipped_bit() {
    on_host(
        "bit flip",
        vec![spec(FaultKind::Corruption, OpClass::Read, 1, false)],
        |h| {
            let data: Vec<u8> = (0..64).collect();
            write_durable(&h.env, "/f", &data)?;
            h.world.backup_started(HOST, "nobody", p("/t"));
            let got = read_at(&h.env, "/f", 0, 64).map_err(e("read"))?;
            let flipped: u32 = got
                .iter()
                .zip(&data)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            expect("SIM-32: bits flipped in what was read", flipped, 1)?;
            expect(
                "SIM-32: once; the disk is intact",
                read_at(&h.env, "/f", 0, 64).map_err(e("read"))?,
                data,
            )
        },
    );
    on_host(
        "bad sector",
        vec![spec(FaultKind::Corruption, OpClass::Read, 1, true)],
        |h| {
            let data: Vec<u8> = (0..64).collect();
            write_durable(&h.env, "/f", &data)?;
            h.world.backup_started(HOST, "nobody", p("/t"));
            let first = read_at(&h.env, "/f", 0, 64).map_err(e("read"))?;
            let at = (0..64)
                .find(|&i| first[i] != data[i])
                .ok_or("SIM-32: no bit flipped")?;
            let again = read_at(&h.env, "/f", at as u64, 1).map_err(e("read"))?;
            expect("SIM-32: the same byte, flipped again", again[0], first[at])?;
            h.world.backup_ended();
            expect(
                "SIM-32: after the run",
                read_at(&h.env, "/f", 0, 64).map_err(e("read"))?,
                data,
            )
        },
    );
}

#[test]
fn sim_33_a_full_disk_fails_what_needs_space() {
    on_host(
        "disk full",
        vec![spec(FaultKind::DiskFull, OpClass::Grow, 2, true)],
        |h| {
            h.world.backup_started(HOST, "nobody", p("/t"));
            let f = h
                .env
                .fs
                .open(p("/g"), OpenMode::CreateNew)
                .map_err(e("open"))?;
            f.write_all_at(b"aaaa", 0).map_err(e("the first write"))?;
            expect(
                "SIM-33: the second growing write",
                os_code(f.write_all_at(b"bbbb", 4))?,
                28,
            )?;
            f.write_all_at(b"cc", 1)
                .map_err(e("SIM-33: an overwrite"))?;
            expect(
                "SIM-33: no space left",
                h.env.fs.available_space(p("/")).map_err(e("space"))?,
                0,
            )?;
            expect("SIM-33: still full", os_code(f.set_len(100))?, 28)?;
            h.world.backup_ended();
            f.write_all_at(b"bbbb", 4)
                .map_err(e("SIM-33: after the run"))
        },
    );
}

#[test]
fn sim_34_a_clock_jumps_on_one_host() {
    let days = Duration::from_secs(2 * 24 * 3600);
    let mut forward = spec(FaultKind::ClockForward, OpClass::Any, 1, false);
    forward.amount = days;
    on_host("clock forward", vec![forward], |h| {
        let other = h.world.host_clock("elsewhere");
        let before = h.env.clock.now();
        h.world.backup_started(HOST, "nobody", p("/t"));
        h.env.fs.metadata(p("/")).map_err(e("metadata"))?;
        let ahead = h
            .env
            .clock
            .now()
            .duration_since(other.now())
            .map_err(e("SIM-34: the host's clock is behind"))?;
        expect(
            "SIM-34: ahead by two days",
            ahead,
            Duration::from_secs(2 * 24 * 3600),
        )?;
        expect(
            "SIM-34: it stays ahead after the run",
            h.env.clock.now().duration_since(before).is_ok(),
            true,
        )
    });
    let mut back = spec(FaultKind::ClockBackward, OpClass::Any, 1, false);
    back.amount = Duration::from_secs(600);
    on_host("clock back", vec![back], |h| {
        let other = h.world.host_clock("elsewhere");
        let mark = h.env.clock.monotonic();
        h.world.backup_started(HOST, "nobody", p("/t"));
        h.env.fs.metadata(p("/")).map_err(e("metadata"))?;
        let behind = other
            .now()
            .duration_since(h.env.clock.now())
            .map_err(e("SIM-34: the host's clock is ahead"))?;
        expect(
            "SIM-34: behind by ten minutes",
            behind,
            Duration::from_secs(600),
        )?;
        // IO-15: the jump moved the wall clock only; what durations are measured with neither
        // went back nor differs between the hosts.
        expect(
            "IO-15: the monotonic reading did not go back",
            h.env.clock.monotonic() >= mark && h.env.clock.since(mark) < Duration::from_secs(1),
            true,
        )?;
        expect(
            "IO-15: both hosts measure the same monotonic time",
            h.env.clock.monotonic(),
            other.monotonic(),
        )
    });
}

/// What the server host of [`connection`] received before its read ended, and how it ended.
type Ending = Option<(Vec<u8>, Option<io::ErrorKind>)>;
type Received = Arc<Mutex<Ending>>;

/// What the client of [`connection`] does with its stream; says how it went.
type Talk = fn(
    Box<dyn online_backup::io::Stream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>>>>;

/// A connection from `client` to `server` with `fault` armed on the client's writes; the client
/// runs `talk`, whose outcome is returned with what the server received.
fn connection(
    name: &'static str,
    fault: FaultSpec,
    talk: Talk,
) -> (Result<String, String>, Ending) {
    let scenario = Scenario::new(name, "a seam test", unscripted)
        .disk(EXACT)
        .configure(|b| {
            b.min_message_latency(Duration::from_millis(1))
                .max_message_latency(Duration::from_millis(2));
        });
    let out: Arc<Mutex<Option<Result<String, String>>>> = Arc::default();
    let received: Received = Arc::default();
    let (o, r) = (out.clone(), received.clone());
    simulate_as(scenario, move |ctx| {
        ctx.world.arm_fault("client", fault);
        let r2 = r.clone();
        ctx.host("server", move |h| {
            let r2 = r2.clone();
            async move {
                let mut listener = h.env.net.bind("server:7000").await?;
                let (mut stream, _) = listener.accept().await?;
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let end = loop {
                    match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await
                    {
                        Ok(Ok(0)) => break None,
                        Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                        Ok(Err(e)) => break Some(e.kind()),
                        Err(_) => break Some(io::ErrorKind::TimedOut),
                    }
                };
                *r2.lock().unwrap() = Some((got, end));
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let o2 = o.clone();
        ctx.host("client", move |h| {
            let o2 = o2.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let stream = h.env.net.connect("server:7000").await?;
                h.world.backup_started("client", "server", p("/t"));
                let r = talk(stream).await;
                h.world.backup_ended();
                *o2.lock().unwrap() = Some(r);
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let (o3, r3) = (o.clone(), r.clone());
        ctx.run_until(20_000, "both ends", move || {
            o3.lock().unwrap().is_some() && r3.lock().unwrap().is_some()
        })?;
        Ok(())
    });
    let talked = out.lock().unwrap().take().unwrap();
    let got = received.lock().unwrap().take();
    (talked, got)
}

#[test]
fn sim_35_a_reset_at_a_byte_of_a_write() {
    let (talked, got) = connection(
        "reset",
        spec(FaultKind::Reset, OpClass::NetWrite, 1, false),
        |mut s| {
            Box::pin(async move {
                let r = s.write_all(&[7u8; 1000]).await;
                Ok(format!("{:?}", r.map_err(|e| e.kind())))
            })
        },
    );
    assert_eq!(
        talked,
        Ok("Err(ConnectionReset)".to_string()),
        "SIM-35: the writer sees the reset"
    );
    let (bytes, _) = got.expect("the server's read ended");
    assert!(
        bytes.len() < 1000 && bytes.iter().all(|&b| b == 7),
        "SIM-35: the peer gets a prefix of the write, then the end: {} bytes",
        bytes.len()
    );
}

#[test]
fn sim_35_a_stalled_peer_takes_a_buffer_and_then_nothing() {
    let (talked, got) = connection(
        "stall",
        spec(FaultKind::Stall, OpClass::NetWrite, 1, false),
        |mut s| {
            Box::pin(async move {
                s.write_all(b"hello").await.map_err(|e| e.to_string())?;
                let mut buf = [0u8; 8];
                let read = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
                let big = vec![1u8; 128 << 10];
                let write = tokio::time::timeout(Duration::from_secs(1), s.write_all(&big)).await;
                // Open until the peer gave up waiting.
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(format!(
                    "read timed out: {}, write timed out: {}",
                    read.is_err(),
                    write.is_err()
                ))
            })
        },
    );
    assert_eq!(
        talked,
        Ok("read timed out: true, write timed out: true".to_string()),
        "SIM-35: a small write goes into the buffer, a read and a write past 64 KiB wait"
    );
    let (bytes, end) = got.expect("the server's read ended");
    assert!(
        bytes.is_empty() && end == Some(io::ErrorKind::TimedOut),
        "SIM-35: the peer receives nothing: {} bytes, {end:?}",
        bytes.len()
    );
}

#[test]
fn sim_35_latency_delays_every_write_by_up_to_its_bound() {
    let mut latency = spec(FaultKind::Latency, OpClass::NetWrite, 1, false);
    latency.amount = Duration::from_millis(400);
    let (talked, got) = connection("latency", latency, |mut s| {
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            for i in 0..10u8 {
                s.write_all(&[i; 10]).await.map_err(|e| e.to_string())?;
            }
            let took = started.elapsed();
            s.shutdown().await.map_err(|e| e.to_string())?;
            Ok(format!(
                "{}",
                took > Duration::from_millis(100) && took <= Duration::from_millis(4000)
            ))
        })
    });
    assert_eq!(
        talked,
        Ok("true".to_string()),
        "SIM-35: ten writes delayed by up to 400 ms each"
    );
    let (bytes, end) = got.expect("the server's read ended");
    let sent: Vec<u8> = (0..10u8).flat_map(|i| [i; 10]).collect();
    assert!(
        bytes == sent && end.is_none(),
        "SIM-35: everything arrives, in order: {bytes:?} {end:?}"
    );
}

fn one_node() -> Vec<Op> {
    vec![Op::CreateNode {
        labels: vec!["A".to_string()],
        props: Default::default(),
    }]
}

#[test]
fn sim_31_a_commit_after_a_failed_fsync_of_the_log_is_caught() {
    // The product's store stops after its log's fsync fails (LOG-9): the check finds nothing.
    // A commit event after the failure is what the check exists to catch.
    for cheat in [false, true] {
        let scenario = Scenario::new("fsync gate", "a seam test", unscripted).disk(EXACT);
        let result: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
        let r = result.clone();
        let (report, _) = crate::runner::run_with(&scenario, 0, false, move |ctx| {
            ctx.world
                .arm_fault(HOST, spec(FaultKind::SyncError, OpClass::Sync, 1, false));
            let done: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
            let d = done.clone();
            ctx.host(HOST, move |h| {
                let d = d.clone();
                async move {
                    let go = || -> Result<(), String> {
                        let mut store = Store::create(
                            h.env.fs.clone(),
                            h.env.clock.clone(),
                            p("/db"),
                            &StoreOptions::default(),
                            online_backup::store::format::FormatVersion::CURRENT,
                            1,
                        )
                        .map_err(e("create"))?;
                        h.world.backup_started(HOST, "nobody", p("/t"));
                        store
                            .commit(&one_node())
                            .err()
                            .ok_or("the fsync did not fail")?;
                        match store.commit(&one_node()) {
                            Err(StoreError::Failed(_)) => {}
                            other => return Err(format!("LOG-9: {other:?}")),
                        }
                        if cheat {
                            tracing::debug!(
                                target: "online_backup::commit",
                                tx_id = 2u64,
                                "committed"
                            );
                        }
                        h.world.backup_ended();
                        Ok(())
                    };
                    *d.lock().unwrap() = Some(go());
                    std::future::pending::<()>().await;
                    Ok(())
                }
            });
            let d2 = done.clone();
            ctx.run_until(100, "the commits", move || d2.lock().unwrap().is_some())?;
            done.lock().unwrap().take().unwrap()?;
            let fired = ctx.world.fired();
            *r.lock().unwrap() = Some(
                crate::scenarios::backup_io_faults::fsync_acknowledged_nothing(ctx, &fired)
                    .map_err(|e| e.to_string()),
            );
            Ok(())
        });
        assert_eq!(report.failure, None);
        let checked = result.lock().unwrap().take().unwrap();
        if cheat {
            assert!(
                checked.as_ref().is_err_and(|e| e.contains("SIM-31")),
                "SIM-31: a commit after the failed fsync must be caught: {checked:?}"
            );
        } else {
            assert_eq!(
                checked,
                Ok(()),
                "SIM-31: the store committed nothing after it"
            );
        }
    }
}

#[test]
fn sim_38_the_phase_follows_the_clients_lines_and_its_files() {
    on_host("phases", vec![], |h| {
        use online_backup::backup::client::Observer;
        let fs = &*h.env.fs;
        let seen = |what: &str, want: BackupPhase| expect(what, h.world.phase(), Some(want));
        make_dir(&h.env, "/t/generation-2")?;
        expect("no run", h.world.phase(), None)?;
        h.world.backup_started(HOST, "server", p("/t"));
        seen(
            "SIM-38: a run starts with its handshake",
            BackupPhase::Handshake,
        )?;
        let mut lines = h.world.phase_lines();
        lines.line("full backup from server:6362 into /t: /t holds no backup yet");
        seen("SIM-38: a full backup's line", BackupPhase::FileCopy)?;
        fs.open(
            p("/t/generation-2/neostore.nodestore.db"),
            OpenMode::CreateNew,
        )
        .map_err(e("open"))?;
        lines.line("copied 1 KiB of store files at checkpoint tx 3; now applying the transactions committed after it");
        seen("SIM-38: the files copied", BackupPhase::TxStream)?;
        let log = fs
            .open(
                p("/t/generation-2/neostore.transaction.db.0"),
                OpenMode::CreateNew,
            )
            .map_err(e("open"))?;
        log.write_all_at(b"entry", 64).map_err(e("write"))?;
        seen("SIM-38: a write to the backup's log", BackupPhase::Apply)?;
        read_at(&h.env, "/t/generation-2/neostore.nodestore.db", 0, 1).map_err(e("read"))?;
        seen("SIM-38: a record read back", BackupPhase::Verify)?;
        fs.open(p("/t/CURRENT.tmp"), OpenMode::CreateTruncate)
            .map_err(e("open"))?;
        seen("SIM-38: the pointer's new contents", BackupPhase::Switch)?;
        h.world.backup_ended();
        expect("SIM-38: the run ended", h.world.phase(), None)?;
        h.world.backup_started(HOST, "server", p("/t"));
        let mut lines = h.world.phase_lines();
        lines.line("incremental backup from server:6362 into /t: the backup is at tx 3, the server at tx 4");
        seen("SIM-38: an incremental request", BackupPhase::TxStream)
    });
}
