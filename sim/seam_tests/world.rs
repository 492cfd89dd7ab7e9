//! The rest of the world: the clock, the trace of messages, file operations and commits, and
//! the harness (seeds, replay commands, determinism) (SIM-4 .. SIM-6, SIM-10).

use super::*;

#[test]
fn sim_10_clock_is_epoch_plus_elapsed_plus_offset() {
    // IO-4, SIM-10: turmoil's epoch, simulated time, and a jump of days in one step.
    simulate("clock", |ctx| {
        let seen: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let s = seen.clone();
        ctx.host(HOST, move |h| {
            let s = s.clone();
            async move {
                let since =
                    |h: &crate::runner::HostCtx| h.env.clock.now().duration_since(epoch()).unwrap();
                s.lock().unwrap().push(since(&h));
                tokio::time::sleep(Duration::from_secs(5)).await;
                s.lock().unwrap().push(since(&h));
                h.world.advance_clock(Duration::from_secs(3 * 24 * 3600));
                s.lock().unwrap().push(since(&h));
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let s = seen.clone();
        ctx.run_until(10_000, "the clock readings", move || {
            s.lock().unwrap().len() == 3
        })?;
        let v = seen.lock().unwrap().clone();
        let day3 = Duration::from_secs(3 * 24 * 3600);
        let ok = v[0] < Duration::from_millis(10)
            && v[1] >= Duration::from_secs(5)
            && v[1] < Duration::from_secs(6)
            && v[2] >= v[1] + day3
            && v[2] < v[1] + day3 + Duration::from_millis(2);
        if !ok {
            return Err(format!("clock readings {v:?}").into());
        }
        Ok(())
    });
}

#[test]
fn network_messages_are_traced() {
    // SIM-6: connects, accepts and every read and write are trace records; binding the host's
    // own name works (turmoil binds only the unspecified address).
    let scenario = Scenario::new("network", "a seam test", unscripted).configure(|b| {
        b.min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(5));
    });
    let trace = simulate_as(scenario, |ctx| {
        let got: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        ctx.host("server", |h| async move {
            let mut listener = h.env.net.bind("server:7000").await?;
            loop {
                let (mut stream, _) = listener.accept().await?;
                let mut buf = [0u8; 4];
                stream.read_exact(&mut buf).await?;
                stream.write_all(b"pong").await?;
                stream.shutdown().await?;
            }
        });
        let g = got.clone();
        ctx.host("client", move |h| {
            let g = g.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let mut stream = h.env.net.connect("server:7000").await?;
                stream.write_all(b"ping").await?;
                let mut buf = Vec::new();
                stream.read_to_end(&mut buf).await?;
                *g.lock().unwrap() = Some(buf);
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let g = got.clone();
        ctx.run_until(10_000, "the reply", move || g.lock().unwrap().is_some())?;
        let reply = got.lock().unwrap().clone().unwrap();
        if reply != b"pong" {
            return Err(format!("reply {reply:?}").into());
        }
        Ok(())
    });
    let all = trace.all().unwrap();
    let has = |host: &str, prefix: &str| {
        all.iter().any(|l| {
            let mut words = l.split_whitespace().skip(1);
            words.next() == Some(host) && words.collect::<Vec<_>>().join(" ").starts_with(prefix)
        })
    };
    assert!(
        has("server", "net bind server:7000 -> ok 0.0.0.0:7000"),
        "{all:#?}"
    );
    assert!(has("client", "net connect server:7000 -> ok"), "{all:#?}");
    assert!(has("server", "net accept -> ok"), "{all:#?}");
    let ping = format!("len=4 h={:016x}", fnv64(b"ping"));
    assert!(
        all.iter()
            .any(|l| l.contains("client") && l.contains("net write") && l.contains(&ping)),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|l| l.contains("server") && l.contains("net read") && l.contains(&ping)),
        "{all:#?}"
    );
}

#[test]
fn commits_and_file_operations_are_traced() {
    // SIM-6: a commit event (target online_backup::commit) is recorded on the host that made
    // it, as are the file operations around it.
    let scenario = select(SCENARIOS, Some("log_crash"))[0];
    let (report, trace) = crate::runner::run_seed(scenario, 3, true);
    assert_eq!(report.failure, None);
    let all = trace.all().unwrap();
    assert!(
        all.iter()
            .any(|l| l.contains(" logger ") && l.contains("commit tx_id=1 digest=")),
        "{:#?}",
        &all[..all.len().min(80)]
    );
    assert!(all
        .iter()
        .any(|l| l.contains(" logger ") && l.contains("fs sync /data/records.log -> ok")));
    assert!(all
        .iter()
        .any(|l| l.contains(" driver ") && l.contains("crash logger")));
}

#[test]
fn sim_6_trace_hash_test_vector() {
    // SIM-6: FNV-1a 64 over (time ns u64 LE, host len u32 LE, host, event len u32 LE, event).
    let t = Trace::new();
    assert_eq!(
        t.hash(),
        0xcbf2_9ce4_8422_2325,
        "the empty trace is FNV's offset basis"
    );
    assert_eq!(fnv64(b"a"), 0xaf63_dc4c_8601_ec8c);
    t.record_at(Duration::from_millis(1), "h", "e");
    let mut bytes = 1_000_000u64.to_le_bytes().to_vec();
    bytes.extend(1u32.to_le_bytes());
    bytes.extend(b"h");
    bytes.extend(1u32.to_le_bytes());
    bytes.extend(b"e");
    assert_eq!(t.hash(), fnv64(&bytes));
    assert_eq!(t.events(), 1);
}

#[test]
fn sim_5_seed_choice_and_replay_command() {
    let none = SeedChoice::default();
    assert_eq!(none.seeds(3), vec![0, 1, 2]);
    let count = SeedChoice {
        count: Some(2),
        start: Some(10),
        ..SeedChoice::default()
    };
    assert_eq!(count.seeds(200), vec![10, 11]);
    let only = SeedChoice {
        only: Some(1234),
        count: Some(5),
        ..SeedChoice::default()
    };
    assert_eq!(only.seeds(200), vec![1234]);
    assert_eq!(
        replay_command("store_crash", 1234),
        "SIM_SEED=1234 SIM_SCENARIO=store_crash cargo test --test sim every_scenario_over_seeds -- --nocapture"
    );
    let names = |f| {
        select(SCENARIOS, f)
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(Some("store_crash")), vec!["store_crash"]);
    assert_eq!(
        names(Some("crash")),
        vec!["log_crash", "store_crash", "server_crash"]
    );
    assert_eq!(names(None).len(), SCENARIOS.len());
}

#[test]
fn sim_5_failure_prints_one_replay_command() {
    fn failing(ctx: &mut ScenarioCtx) -> turmoil::Result {
        ctx.record("about to fail");
        Err("an invariant did not hold".into())
    }
    let scenario = Scenario::new("always_fails", "fails", failing);
    let (report, trace): (RunReport, Trace) = crate::runner::run_seed(&scenario, 42, false);
    assert_eq!(report.failure.as_deref(), Some("an invariant did not hold"));
    let text = failure_report(&scenario, &report, &trace);
    assert_eq!(text.matches("cargo test").count(), 1, "{text}");
    assert!(
        text.contains("SIM_SEED=42 SIM_SCENARIO=always_fails"),
        "{text}"
    );
    assert!(text.contains("about to fail"), "{text}");
}

#[test]
fn sim_4_fixed_epoch_and_seeded_randomness() {
    use rand::Rng;
    // Two runs of one seed draw the same numbers; the clock starts at the fixed epoch.
    let draw = |seed| {
        let scenario = Scenario::new("draw", "draws", unscripted);
        let out = Arc::new(Mutex::new(0u64));
        let o = out.clone();
        let (report, _) = run_with(&scenario, seed, false, move |ctx| {
            *o.lock().unwrap() = ctx.rng.random();
            let clock = ctx.world.clock();
            use online_backup::io::Clock;
            if clock.now() != epoch() {
                return Err(format!("clock outside a host: {:?}", clock.now()).into());
            }
            Ok(())
        });
        assert_eq!(report.failure, None);
        let v = *out.lock().unwrap();
        v
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
}
