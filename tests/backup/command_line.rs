//! The command line: usage errors, both dash styles and `-from`, `--max-rate`.

use std::net::TcpListener;
use std::path::Path;
use std::time::Instant;

use crate::helpers::*;
use crate::support::backup::*;
use crate::support::scratch;
use crate::support::server::ServerProcess;

// BK-8, BK-5: usage errors exit 2 with one sentence on stderr that says what is wrong, and
// touch nothing.
#[test]
fn bk_8_usage_errors_exit_2_with_one_line() {
    let dir = scratch();
    let to = dir.path().join("never");
    let to_s = to.to_str().unwrap();
    for (args, says) in [
        (vec!["-host", "h", "-to", to_s, "-timeout", "5x"], "5x"),
        (vec!["-host", "h", "-to", to_s, "-timeout", "0"], "timeout"),
        (
            vec!["-host", "h", "-to", to_s, "--type", "sideways"],
            "incremental",
        ),
        (vec!["-host", "h", "-to", to_s, "-verify", "maybe"], "full"),
        (vec!["-host", "h"], "--to"),
        (vec!["-to", to_s], "-host"),
        (vec!["-host", "", "-to", to_s], "-host"),
        (
            vec!["-host", "h", "-to", to_s, "--frobnicate"],
            "frobnicate",
        ),
        (vec!["-host", "h", "-port", "70000", "-to", to_s], "70000"),
        (vec!["-from", "h:port", "-to", to_s], "h:port"),
        (vec!["-from", "h:1", "-host", "h", "-to", to_s], "--from"),
        (vec!["-from", "h:1", "-port", "1", "-to", to_s], "--from"),
        (vec!["-host", "h", "-to", to_s, "stray"], "stray"),
    ] {
        let out = backup(&args).expect(2);
        let line = out.one_error_line();
        assert!(line.contains(says), "{args:?}: {line}");
        assert!(!to.exists(), "{args:?} created the target");
    }
}

// BK-1, BK-5, BK-10, BK-25: -host/-port, --host/--port, -from host:port, and values after `=`,
// in both dash styles, all reach the same server; an IPv6 host works in brackets with -from.
#[test]
fn bk_1_both_dash_styles_and_from_work() {
    let dir = scratch();
    let b = dir.path().join("backup");
    let b_s = b.to_str().unwrap();
    let server = ServerProcess::start(&dir.path().join("db"), Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let from_localhost = format!("localhost:{port}");
    let from_eq = format!("--from={addr}");
    let to_eq = format!("--to={b_s}");
    let host_eq = format!("-host={host}");
    let port_eq = format!("-port={port}");
    let to_eq1 = format!("-to={b_s}");
    let runs: Vec<Vec<&str>> = vec![
        vec!["-host", host, "-port", port, "-to", b_s],
        vec!["--host", host, "--port", port, "--to", b_s],
        vec!["-from", &addr, "-to", b_s],
        vec!["--from", &addr, "--to", b_s, "--type", "incremental"],
        vec![
            &from_eq,
            &to_eq,
            "--type=incremental",
            "--verify=full",
            "--timeout=30s",
        ],
        vec![
            &host_eq,
            &port_eq,
            &to_eq1,
            "-type=auto",
            "-verify=true",
            "-timeout=5000ms",
        ],
        vec![
            "-from",
            &from_localhost,
            "-to",
            b_s,
            "-type",
            "incremental",
            "-timeout",
            "1m",
        ],
    ];
    for (i, args) in runs.iter().enumerate() {
        write_nodes(&server, 1);
        let out = backup(args).expect(0);
        let kind = if i == 0 { "full" } else { "incremental" };
        assert!(
            out.summary().contains(&format!("{kind} backup of store")),
            "BK-5: {args:?}: {out:#?}"
        );
        assert_same_as_server(&b, &server);
    }
    // An IPv6 host: in brackets with -from, bare with -host.
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED the IPv6 part: no IPv6 loopback here");
        return;
    }
    let config = "http_server=127.0.0.1:0\nonline_backup_server=[::1]:0\n";
    let v6 = ServerProcess::start(&dir.path().join("db6"), Some(config));
    let addr6 = v6.backup.clone().unwrap();
    let (_, port6) = addr6.rsplit_once(':').unwrap();
    assert_eq!(addr6, format!("[::1]:{port6}"));
    let b6 = dir.path().join("backup6");
    for args in [
        vec!["-from", &addr6, "-to", path(&b6)],
        vec!["-host", "::1", "-port", port6, "-to", path(&b6)],
    ] {
        write_nodes(&v6, 1);
        backup(&args).expect(0);
        assert_same_as_server(&b6, &v6);
    }
}

// BK-41, BK-8, BK-43: with --max-rate the average rate of a full backup never exceeds the limit by
// more than 10% (an upper bound only: a slow machine cannot fail it); bad values are usage
// errors.
#[test]
fn bk_41_max_rate_bounds_the_average_rate() {
    let dir = scratch();
    let store = dir.path().join("db");
    generate(&store, 40_000, &[]);
    let server = ServerProcess::start(&store, Some(EPHEMERAL));
    let addr = server.backup.clone().unwrap();
    let limit: u64 = 8 << 20;
    let b = dir.path().join("backup");
    let started = Instant::now();
    let out = json_run(&addr, &b, &["--max-rate", "8M", "-verify", "false"], 0);
    let took = started.elapsed().as_secs_f64();
    let bytes = dir_bytes(&b.join(current(&b)));
    // BK-43: the summary's duration is the run's: no longer than the run took from outside,
    // no shorter than the pace allows (less a frame), and the throughput is bytes over it.
    let duration = out["duration_secs"].as_f64().unwrap();
    let received = out["bytes"].as_u64().unwrap() as f64;
    assert!(
        duration <= took && duration >= (received - (4 << 20) as f64) / limit as f64,
        "BK-43: a run paced to 8M that took {took:.2} s reports {duration:.2} s for {received} bytes"
    );
    let throughput = out["throughput_bytes_per_sec"].as_f64().unwrap();
    assert!(
        (throughput * duration - received).abs() <= received * 0.01,
        "BK-43: throughput {throughput:.0} B/s is not {received} bytes over {duration:.2} s"
    );
    assert!(
        bytes > 3 * limit / 2,
        "the store is too small to measure: {bytes}"
    );
    let rate = bytes as f64 / took;
    assert!(
        rate <= limit as f64 * 1.1,
        "{rate:.0} B/s over {took:.2} s exceeds --max-rate 8M by more than 10%: {out:#?}"
    );
    // BK-9: the human summary gives the same rate, in its units.
    write_nodes(&server, 20);
    let out = backup_from(&addr, &b, &["--max-rate", "8M"]).expect(0);
    let summary = out.summary();
    assert!(
        summary.contains("/s)") && !summary.contains("(0 B/s)"),
        "BK-9: the summary line gives the run's rate: {summary}"
    );
    for bad in ["0", "fast", "-5", "10X"] {
        let out = backup_from(&addr, &dir.path().join("x"), &["--max-rate", bad]).expect(2);
        out.one_error_line();
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}
