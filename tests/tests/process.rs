//! The process as an operator sees it: flags, exit statuses, signals and the
//! data-path lock.

use nsq_tests::nsqd::nsqd_command;
use nsq_tests::Nsqd;
use std::time::Duration;

#[test]
fn version_flag_prints_exactly_one_version_line() {
    let out = nsqd_command().arg("--version").output().unwrap();
    assert!(out.status.success(), "exit status {}", out.status);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout:?}");
    // ^nsqd v1\.3\.0 \(built w/rustc-[0-9.]+\)$
    let rustc = lines[0]
        .strip_prefix("nsqd v1.3.0 (built w/rustc-")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected version line {:?}", lines[0]));
    assert!(
        !rustc.is_empty() && rustc.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "unexpected version line {:?}",
        lines[0]
    );
}

#[test]
fn unknown_flag_exits_with_status_2() {
    let out = nsqd_command().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "exit status {}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-flag"),
        "stderr names the flag: {stderr:?}"
    );
}

#[test]
fn sigterm_with_connected_clients_exits_0_within_a_few_seconds() {
    let mut nsqd = Nsqd::start(&[]);
    let mut consumer = nsqd.connect();
    consumer.subscribe("t", "c");
    consumer.rdy(1);
    let mut producer = nsqd.connect();
    producer.publish("t", b"in flight at shutdown");
    let _in_flight = consumer.next_message();

    let (status, took) = nsqd.terminate();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(took < Duration::from_secs(5), "took {took:?} to exit");
    consumer.expect_closed();
    let panics: Vec<_> = nsqd
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "{panics:?}");
}

#[test]
fn idle_broker_exits_right_after_closing_its_queues_on_sigterm() {
    // The fsync timer (--sync-timeout, 2 s) must not hold up the exit.
    for _ in 0..3 {
        let mut nsqd = Nsqd::start(&[]);
        std::thread::sleep(Duration::from_millis(300));
        let (status, took) = nsqd.terminate();
        assert_eq!(status.code(), Some(0), "exit status {status}");
        assert!(took < Duration::from_millis(500), "took {took:?} to exit");
    }
}

#[test]
fn second_nsqd_on_the_same_data_path_exits_non_zero_naming_the_data_path() {
    let first = Nsqd::start(&[]);
    let failure = match Nsqd::try_start_in(first.data_dir(), &[]) {
        Ok(second) => panic!(
            "a second nsqd started on {} (tcp {})",
            first.data_path().display(),
            second.tcp_addr()
        ),
        Err(f) => f,
    };
    let status = failure.status.expect("the second nsqd exited on its own");
    assert!(!status.success(), "exit status {status}");
    let stderr = failure.stderr.join("\n");
    assert!(stderr.contains("data-path"), "stderr: {stderr}");
    // The first one is unaffected.
    first.connect().publish("t", b"still here");
}
