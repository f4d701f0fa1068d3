//! `bench storm` against a real broker: it opens every connection it was asked for,
//! reads the broker's RSS before and during the hold and pings its HTTP API
//! meanwhile, rotates loopback source addresses past `--per-source-ip`, closes
//! everything at the end, and exits 1 naming the reason when connections fail.

use nsq_tests::bench::{bench_command, BenchRun};
use nsq_tests::daemon::{self, free_local_port};
use nsq_tests::prom::scrape;
use nsq_tests::{same, wait_until, Nsqd};
use std::process::Command;
use std::time::Duration;

/// What one `bench storm` run did.
fn storm(args: &[String]) -> BenchRun {
    let out = bench_command("storm").args(args).output();
    BenchRun::from_output(out.expect("running bench storm"))
}

/// The broker's connections close when the storm's do.
fn assert_all_closed(nsqd: &Nsqd) {
    wait_until(Duration::from_secs(10), "nsq_clients back to 0", || {
        same(scrape(nsqd.http_addr()).value("nsq_clients", &[]), 0.0)
    });
}

#[test]
fn five_hundred_connections_are_opened_held_measured_and_closed() {
    let nsqd = Nsqd::start(&[]);
    let http = nsqd.http_addr();
    let run = storm(&[
        format!("--tcp-address={}", nsqd.tcp_addr()),
        "--connections=500".into(),
        format!("--metrics-url=http://{http}/metrics"),
        format!("--ping-url=http://{http}/ping"),
        "--hold=1s".into(),
    ]);
    run.assert_ok("storm");
    assert_eq!(run.num::<f64>("connections"), 500.0);
    assert_eq!(run.num::<f64>("opened"), 500.0);
    assert_eq!(run.num::<f64>("failed"), 0.0);
    assert_eq!(run.num::<f64>("closed_during_hold"), 0.0);
    assert_eq!(run.field("identify"), "false");
    assert_eq!(
        run.num::<f64>("source_ips"),
        0.0,
        "500 fit one source address"
    );
    assert!(run.num::<f64>("open_secs") > 0.0);
    // The broker served all of them while they were held.
    assert_eq!(run.num::<f64>("broker_clients"), 500.0);
    let (before, after) = (run.num::<f64>("rss_before"), run.num::<f64>("rss_after"));
    assert!(before > 1e6 && after > 1e6, "{}", run.stdout);
    assert_eq!(run.num::<f64>("rss_delta"), after - before);
    let per = run.num::<f64>("rss_per_conn_bytes");
    assert!(
        (per - (after - before) / 500.0).abs() <= 1.0,
        "{}",
        run.stdout
    );
    run.num::<f64>("rss_per_conn_kib");
    // Pings every 100 ms through the 1 s hold, all answered.
    let pings = run.num::<f64>("pings");
    assert!((5.0..=20.0).contains(&pings), "{}", run.stdout);
    assert_eq!(run.num::<f64>("ping_failed"), 0.0);
    let (p50, max) = (run.num::<f64>("ping_p50_ms"), run.num::<f64>("ping_max_ms"));
    assert!(p50 > 0.0 && p50 <= max, "{}", run.stdout);
    assert_all_closed(&nsqd);
}

#[test]
fn identified_connections_come_from_rotating_loopback_addresses() {
    let nsqd = Nsqd::start(&[]);
    let run = storm(&[
        format!("--tcp-address={}", nsqd.tcp_addr()),
        "--connections=300".into(),
        "--per-source-ip=100".into(),
        "--identify".into(),
        format!("--metrics-url=http://{}/metrics", nsqd.http_addr()),
        "--hold=200ms".into(),
    ]);
    run.assert_ok("storm");
    assert_eq!(run.num::<f64>("opened"), 300.0);
    assert_eq!(run.field("identify"), "true");
    assert_eq!(run.num::<f64>("source_ips"), 3.0);
    assert_eq!(run.num::<f64>("broker_clients"), 300.0);
    assert!(
        !run.stdout.contains("ping"),
        "no --ping-url: {}",
        run.stdout
    );
    // The broker logs each client's address: 100 from each of the three.
    let lines = nsqd.stderr_lines();
    for source in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let from = lines
            .iter()
            .filter(|l| l.contains(&format!("TCP: new client({source}:")))
            .count();
        assert_eq!(from, 100, "connections from {source}");
    }
    // IDENTIFY turned heartbeats off; the broker took every one.
    assert!(
        !lines.iter().any(|l| l.contains("E_BAD_BODY")),
        "{lines:#?}"
    );
    assert_all_closed(&nsqd);
}

#[test]
fn connections_past_the_open_file_limit_are_skipped_and_the_pings_still_go_out() {
    let nsqd = Nsqd::start(&[]);
    let http = nsqd.http_addr();
    // `ulimit -n` in sh sets the soft and hard limits: bench cannot raise it.
    let out = Command::new("sh")
        .args(["-c", "ulimit -n 200 && exec \"$0\" storm \"$@\""])
        .arg(daemon::binary("bench", "BENCH_BIN"))
        .args([
            format!("--tcp-address={}", nsqd.tcp_addr()),
            "--connections=300".into(),
            format!("--metrics-url=http://{http}/metrics"),
            format!("--ping-url=http://{http}/ping"),
            "--hold=500ms".into(),
        ])
        .output()
        .expect("running bench storm under ulimit");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stdout}{stderr}");
    let field = |key: &str| -> u64 {
        stdout
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {stdout:?}"))
            .parse()
            .unwrap()
    };
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("over this process's open-file limit of 200"));
    let (opened, failed) = (field("opened"), field("failed"));
    assert!((150..200).contains(&opened), "{stdout}");
    assert!(
        stdout.contains(&format!("fail_reasons=skipped/open_file_limit:{failed} ")),
        "{stdout}"
    );
    assert_eq!(opened + failed, 300);
    // Descriptors were kept for the metrics and the pings.
    assert_eq!(field("broker_clients"), opened);
    assert_eq!(field("ping_failed"), 0);
    assert!(field("pings") > 0);
}

#[test]
fn failed_connections_are_counted_by_reason_and_fail_the_run() {
    let port = free_local_port();
    let run = storm(&[
        format!("--tcp-address=127.0.0.1:{port}"),
        "--connections=20".into(),
        "--hold=0s".into(),
    ]);
    assert_eq!(run.status.code(), Some(1), "stderr: {}", run.stderr);
    assert_eq!(run.num::<f64>("opened"), 0.0);
    assert_eq!(run.num::<f64>("failed"), 20.0);
    assert_eq!(run.field("fail_reasons"), "connect/ECONNREFUSED:20");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("FAIL: 20 of 20 connections failed")),
        "{}",
        run.stderr
    );
}
