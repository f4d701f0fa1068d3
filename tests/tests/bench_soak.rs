//! `bench produce` and `bench consume`, the two sides of the rolling-restart soak
//! test, against real brokers and an nsqlookupd: every acknowledged message is
//! counted once found through lookupd, brokers restarting under load lose none
//! (duplicates allowed and reported), and a run that cannot finish exits 1 with a
//! `FAIL:` line and what is missing.

use nsq_tests::authd::{allow_all, AuthServer};
use nsq_tests::bench::{bench_command, BenchRun};
use nsq_tests::certs::Pki;
use nsq_tests::daemon::free_local_port;
use nsq_tests::{registered_nsqd, same, wait_until, Nsqd, Nsqlookupd};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(5);
const TOPIC: &str = "soak";
const CHANNEL: &str = "c";

/// A bench subcommand running in the background; killed if dropped unfinished.
struct Bench(Option<Child>);

impl Bench {
    fn start(role: &str, args: &[String]) -> Bench {
        let child = bench_command(role)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running bench {role}: {e}"));
        Bench(Some(child))
    }

    /// Waits for the exit (every run here has a --timeout).
    fn finish(mut self) -> BenchRun {
        let out = self.0.take().unwrap().wait_with_output();
        BenchRun::from_output(out.expect("bench output"))
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn produce(to: &Nsqd, run_id: &str, count: u64, extra: &[&str]) -> Bench {
    let mut args = vec![
        format!("--nsqd-tcp-address={}", to.tcp_addr()),
        format!("--topic={TOPIC}"),
        format!("--count={count}"),
        format!("--run-id={run_id}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Bench::start("produce", &args)
}

fn consume(lookupd: &Nsqlookupd, run_id: &str, expect: u64, extra: &[&str]) -> Bench {
    let mut args = vec![
        format!("--lookupd-http-address={}", lookupd.http_addr()),
        format!("--topic={TOPIC}"),
        format!("--channel={CHANNEL}"),
        format!("--expect={expect}"),
        format!("--run-id={run_id}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Bench::start("consume", &args)
}

/// Creates the topic and channel on every broker and waits until `lookupd` lists
/// them all for the topic.
fn create_channel(lookupd: &Nsqlookupd, brokers: &[&Nsqd]) {
    for b in brokers {
        b.http_post_ok(&format!("/topic/create?topic={TOPIC}"));
        b.http_post_ok(&format!("/channel/create?topic={TOPIC}&channel={CHANNEL}"));
    }
    let mut want: Vec<String> = brokers.iter().map(|b| b.tcp_addr().to_string()).collect();
    want.sort();
    wait_until(WITHIN, "lookupd listing every broker", || {
        same(lookupd.producer_tcp_addrs(TOPIC), want.clone())
    });
}

#[test]
fn every_message_is_counted_once_from_the_brokers_lookupd_lists() {
    let lookupd = Nsqlookupd::start(&[]);
    let a = registered_nsqd(&[&lookupd], &[]);
    let b = registered_nsqd(&[&lookupd], &[]);
    create_channel(&lookupd, &[&a, &b]);
    // Someone else's message on the other broker: counted, not confused with ours.
    let r = b.http(
        "POST",
        &format!("/pub?topic={TOPIC}"),
        b"someone-else-00000001",
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let consumer = consume(&lookupd, "r1", 2000, &["--timeout=60s", "--linger=1s"]);
    let producer = produce(&a, "r1", 2000, &["--timeout=60s"]).finish();
    producer.assert_ok("produce");
    assert_eq!(producer.num::<u64>("acked"), 2000);
    assert_eq!(producer.num::<u64>("reconnects"), 0);
    assert_eq!(producer.num::<u64>("resent"), 0);

    let consumer = consumer.finish();
    consumer.assert_ok("consume");
    for (key, want) in [
        ("unique", 2000),
        ("received", 2000),
        ("duplicates", 0),
        ("missing", 0),
        ("reconnects", 0),
        ("foreign", 1),
    ] {
        assert_eq!(consumer.num::<u64>(key), want, "{key}: {}", consumer.stdout);
    }
    assert!(!consumer.fields.contains_key("first_missing"));
    // Both brokers were read.
    for broker in [&a, &b] {
        let line = format!("subscribed to {TOPIC}/{CHANNEL} on {}", broker.tcp_addr());
        assert!(consumer.stderr.contains(&line), "{}", consumer.stderr);
    }
}

#[test]
fn brokers_restarting_under_load_lose_no_acknowledged_message() {
    let lookupd = Nsqlookupd::start(&[]);
    // A comes back on its own ports (as a pod behind its Service name does), so the
    // producer can follow it; B comes back on new ones (a new address in lookupd).
    let (tcp, http) = (
        format!("127.0.0.1:{}", free_local_port()),
        format!("127.0.0.1:{}", free_local_port()),
    );
    let mut a = registered_nsqd(
        &[&lookupd],
        &["--tcp-address", &tcp, "--http-address", &http],
    );
    let mut b = registered_nsqd(&[&lookupd], &[]);
    assert_eq!(a.tcp_addr().to_string(), tcp);
    create_channel(&lookupd, &[&a, &b]);

    let count = 3000;
    let consumer = consume(&lookupd, "r2", count, &["--timeout=120s"]);
    let producer = produce(
        &a,
        "r2",
        count,
        &["--rate=250", "--window=8", "--timeout=120s"],
    );
    let started = Instant::now();
    for at in [3, 6] {
        std::thread::sleep(Duration::from_secs(at).saturating_sub(started.elapsed()));
        a.restart();
        assert_eq!(a.tcp_addr().to_string(), tcp, "A is back on its port");
        eprintln!("restarted A at {:?}", started.elapsed());
    }
    b.restart();
    eprintln!("restarted B at {:?} on {}", started.elapsed(), b.tcp_addr());

    let producer = producer.finish();
    producer.assert_ok("produce");
    assert_eq!(producer.num::<u64>("acked"), count);
    assert!(
        producer.num::<u64>("reconnects") >= 2,
        "{}",
        producer.stdout
    );
    assert!(
        producer.stderr.contains("reconnecting in"),
        "{}",
        producer.stderr
    );

    let consumer = consumer.finish();
    consumer.assert_ok("consume");
    assert_eq!(consumer.num::<u64>("missing"), 0);
    assert_eq!(consumer.num::<u64>("unique"), count);
    assert_eq!(consumer.num::<u64>("foreign"), 0);
    assert_eq!(
        consumer.num::<u64>("received"),
        count + consumer.num::<u64>("duplicates"),
        "{}",
        consumer.stdout
    );
    assert!(
        consumer.num::<u64>("reconnects") >= 2,
        "{}",
        consumer.stdout
    );
    assert!(
        consumer
            .stderr
            .contains(&format!("subscribed again to {TOPIC}/{CHANNEL} on {tcp}")),
        "{}",
        consumer.stderr
    );
    // B's new address was followed too.
    let line = format!("subscribed to {TOPIC}/{CHANNEL} on {}", b.tcp_addr());
    assert!(consumer.stderr.contains(&line), "{}", consumer.stderr);
    eprintln!(
        "restarts: producer resent {} PUBs, consumer saw {} duplicates",
        producer.num::<u64>("resent"),
        consumer.num::<u64>("duplicates")
    );
}

#[test]
fn runs_that_cannot_finish_time_out_with_what_is_missing() {
    // Nothing listens where the producer publishes.
    let nowhere = format!("127.0.0.1:{}", free_local_port());
    let started = Instant::now();
    let args: Vec<String> = [
        &format!("--nsqd-tcp-address={nowhere}"),
        "--topic=t",
        "--count=10",
        "--timeout=2s",
    ]
    .map(String::from)
    .into();
    let run = Bench::start("produce", &args).finish();
    run.assert_failed("timed out after 2s: 0 of 10 messages acknowledged");
    assert_eq!(run.num::<u64>("acked"), 0);
    assert!(run.num::<u64>("failed_dials") >= 2, "{}", run.stdout);
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");

    // Half of what the consumer expects was published.
    let lookupd = Nsqlookupd::start(&[]);
    let a = registered_nsqd(&[&lookupd], &[]);
    create_channel(&lookupd, &[&a]);
    produce(&a, "r3", 5, &["--timeout=30s"])
        .finish()
        .assert_ok("produce");
    let started = Instant::now();
    let run = consume(&lookupd, "r3", 10, &["--timeout=3s"]).finish();
    run.assert_failed("timed out after 3s: 5 of 10 messages missing");
    for (key, want) in [("unique", 5), ("missing", 5), ("duplicates", 0)] {
        assert_eq!(run.num::<u64>(key), want, "{key}: {}", run.stdout);
    }
    assert_eq!(run.field("first_missing"), "5,6,7,8,9");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn a_frozen_broker_is_given_up_on_and_its_unanswered_pubs_are_sent_again() {
    let lookupd = Nsqlookupd::start(&[]);
    // What was in flight to the consumer's abandoned connection comes back after
    // the message timeout (the broker outlives that connection).
    let a = registered_nsqd(&[&lookupd], &["--msg-timeout=3s"]);
    create_channel(&lookupd, &[&a]);
    let count = 2000;
    let quick = ["--timeout=60s", "--connect-timeout=1s"];
    let consumer = consume(
        &lookupd,
        "r4",
        count,
        &[&quick[..], &["--heartbeat-interval=1s"]].concat(),
    );
    let producer = produce(
        &a,
        "r4",
        count,
        &[
            &quick[..],
            &["--rate=250", "--window=8", "--answer-timeout=1s"],
        ]
        .concat(),
    );
    // Frozen with its connections open: nothing is answered, nothing is closed.
    std::thread::sleep(Duration::from_secs(2));
    a.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(3));
    a.signal(libc::SIGCONT);

    let producer = producer.finish();
    producer.assert_ok("produce");
    assert_eq!(producer.num::<u64>("acked"), count);
    assert!(producer.num::<u64>("resent") >= 1, "{}", producer.stdout);
    assert!(
        producer.num::<u64>("reconnects") >= 1,
        "{}",
        producer.stdout
    );
    assert!(
        producer.stderr.contains("no answer to the PUB of seq"),
        "{}",
        producer.stderr
    );

    let consumer = consumer.finish();
    consumer.assert_ok("consume");
    assert_eq!(consumer.num::<u64>("missing"), 0);
    assert_eq!(consumer.num::<u64>("unique"), count);
    assert!(
        consumer.num::<u64>("reconnects") >= 1,
        "{}",
        consumer.stdout
    );
    assert!(
        consumer.stderr.contains("reading: nothing for 2s"),
        "{}",
        consumer.stderr
    );
    eprintln!(
        "freeze: producer resent {} PUBs, consumer saw {} duplicates",
        producer.num::<u64>("resent"),
        consumer.num::<u64>("duplicates")
    );
}

#[test]
fn tls_client_certificates_and_auth_work_on_both_sides() {
    let pki = Pki::new();
    let authd = AuthServer::start();
    authd.reply("s3cret", allow_all(3600, "soak"));
    let lookupd = Nsqlookupd::start(&[]);
    let mut flags = pki.nsqd_args();
    flags.push(authd.flag());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = registered_nsqd(&[&lookupd], &flags);
    create_channel(&lookupd, &[&a]);
    let client = pki.client("soak-client");
    let tls = [
        "--tls".to_string(),
        format!("--tls-root-ca-file={}", pki.ca.display()),
        format!("--tls-cert={}", client.cert.display()),
        format!("--tls-key={}", client.key.display()),
        "--auth-secret=s3cret".into(),
    ];
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();

    let within = ["--timeout=30s", "--linger=0s"];
    let consumer = consume(&lookupd, "r5", 100, &[&tls[..], &within].concat());
    produce(&a, "r5", 100, &[&tls[..], &within[..1]].concat())
        .finish()
        .assert_ok("produce");
    let consumer = consumer.finish();
    consumer.assert_ok("consume");
    assert_eq!(
        (
            consumer.num::<u64>("unique"),
            consumer.num::<u64>("missing")
        ),
        (100, 0)
    );
    // One connection each, both over TLS (the certificate is offered; this broker
    // asks for none, so it stays out of the way of the plain HTTP set-up above).
    let asked = authd.requests_for("s3cret");
    assert_eq!(asked.len(), 2, "{asked:?}");
    for r in &asked {
        assert_eq!(r.query_param("tls"), Some("true"));
    }

    // Without the secret, neither side gets anywhere, and both say why.
    let plain = &tls[..tls.len() - 1];
    let run = produce(&a, "r6", 1, &[plain, &["--timeout=1s"]].concat()).finish();
    run.assert_failed("0 of 1 messages acknowledged");
    assert!(run.stderr.contains("requires AUTH"), "{}", run.stderr);
    let run = consume(&lookupd, "r6", 1, &[plain, &["--timeout=2s"]].concat()).finish();
    run.assert_failed("1 of 1 messages missing");
    assert!(run.stderr.contains("requires AUTH"), "{}", run.stderr);
}
