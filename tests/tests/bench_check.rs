//! `bench check`, the chart's `helm test`, against real brokers and nsqlookupds:
//! the message published through one broker is found through lookupd and read
//! back whichever broker took it, over TLS with a client certificate and AUTH
//! as the chart wires them, and a non-zero exit with a reason when it cannot be.

use nsq_tests::authd::{allow_all, AuthServer};
use nsq_tests::bench::{bench_command, BenchRun};
use nsq_tests::certs::Pki;
use nsq_tests::inspect::stats_topic;
use nsq_tests::{registered_nsqd, same, wait_until, Nsqd, Nsqlookupd};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(5);

/// Runs `bench check` with `args` (and `env`) to its exit.
fn check(args: &[String], env: &[(&str, &str)]) -> BenchRun {
    let out = bench_command("check")
        .args(args)
        .envs(env.iter().copied())
        .output();
    BenchRun::from_output(out.expect("running bench check"))
}

/// The flags naming `publish_to` and the lookupds.
fn addresses(publish_to: &Nsqd, lookupds: &[&Nsqlookupd]) -> Vec<String> {
    let mut args = vec![format!("--nsqd-tcp-address={}", publish_to.tcp_addr())];
    for l in lookupds {
        args.push(format!("--lookupd-http-address={}", l.http_addr()));
    }
    args
}

#[track_caller]
fn assert_ok(run: &BenchRun) {
    run.assert_ok("check");
    assert!(run.stdout.starts_with("check: ok "), "{}", run.stdout);
}

#[track_caller]
fn assert_failed(run: &BenchRun, reason: &str) {
    run.assert_failed(reason);
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
}

#[test]
fn the_message_is_read_back_through_lookupd_whichever_broker_takes_it() {
    let l1 = Nsqlookupd::start(&[]);
    let l2 = Nsqlookupd::start(&[]);
    let brokers = [
        registered_nsqd(&[&l1, &l2], &[]),
        registered_nsqd(&[&l1, &l2], &[]),
    ];
    for (taker, other) in [(&brokers[0], &brokers[1]), (&brokers[1], &brokers[0])] {
        let mut args = addresses(taker, &[&l1, &l2]);
        args.push("--timeout=20s".into());
        let run = check(&args, &[]);
        assert_ok(&run);
        let topic = run.fields["topic"].clone();
        assert!(topic.starts_with("helm-test-"), "{}", run.stdout);
        assert_eq!(run.fields["message"], topic);
        assert_eq!(run.fields["channel"], "helm-test#ephemeral");
        assert_eq!(run.fields["published_to"], taker.tcp_addr().to_string());
        assert_eq!(run.fields["consumed_from"], taker.tcp_addr().to_string());
        assert!(
            stats_topic(&other.stats(), &topic).is_none(),
            "only the broker that took the PUB has the topic"
        );
        // Nothing is left behind: not on the broker, not in either lookupd.
        assert!(stats_topic(&taker.stats(), &topic).is_none());
        for l in [&l1, &l2] {
            wait_until(WITHIN, "the topic gone from lookupd", || {
                same(l.topics().contains(&topic), false)
            });
        }
    }
}

#[test]
fn tls_client_certificates_and_auth_are_used_as_the_chart_wires_them() {
    let pki = Pki::new();
    let authd = AuthServer::start();
    authd.reply("s3cret", allow_all(3600, "helm-test"));
    let lookupd = Nsqlookupd::start(&[]);
    let mut flags = pki.nsqd_args();
    flags.extend([
        authd.flag(),
        "--tls-client-auth-policy=require-verify".into(),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let broker = registered_nsqd(&[&lookupd], &flags);
    let client = pki.client("helm-test-client");

    // The chart's hook: any certificate accepted, the brokers' own (here a
    // client's) shown, the secret from the environment.
    let mut args = addresses(&broker, &[&lookupd]);
    args.extend([
        "--timeout=20s".to_string(),
        "--tls".into(),
        "--tls-insecure-skip-verify".into(),
        format!("--tls-cert={}", client.cert.display()),
        format!("--tls-key={}", client.key.display()),
    ]);
    let run = check(&args, &[("NSQ_AUTH_SECRET", "s3cret")]);
    assert_ok(&run);
    let topic = &run.fields["topic"];
    // Two connections (PUB, SUB) sent the secret with the certificate's name.
    let asked = authd.requests_for("s3cret");
    assert_eq!(asked.len(), 2, "{asked:?}");
    for r in &asked {
        assert_eq!(r.query_param("common_name"), Some("helm-test-client"));
        assert_eq!(r.query_param("tls"), Some("true"));
    }
    // Plain HTTP is refused (TLS required), so the topic was deleted over HTTPS.
    let deleted = format!("deleted topic {topic} on {}", broker.http_addr());
    assert!(run.stderr.contains(&deleted), "{}", run.stderr);

    // The broker's certificate checked against the CA works as well.
    let mut verified = addresses(&broker, &[&lookupd]);
    verified.extend([
        "--timeout=20s".to_string(),
        "--tls".into(),
        format!("--tls-root-ca-file={}", pki.ca.display()),
        format!("--tls-cert={}", client.cert.display()),
        format!("--tls-key={}", client.key.display()),
        "--auth-secret=s3cret".into(),
    ]);
    assert_ok(&check(&verified, &[]));

    // Without a secret, or without a certificate, it fails and says why.
    assert_failed(&check(&args, &[]), "requires AUTH");
    let no_cert = &args[..args.len() - 2];
    let run = check(no_cert, &[("NSQ_AUTH_SECRET", "s3cret")]);
    assert_eq!(run.status.code(), Some(1), "stderr: {}", run.stderr);
    assert!(run.stderr.contains("FAIL: publishing to"), "{}", run.stderr);
}

#[test]
fn a_broker_that_is_down_fails_at_once() {
    let lookupd = Nsqlookupd::start(&[]);
    let mut broker = registered_nsqd(&[&lookupd], &[]);
    let mut args = addresses(&broker, &[&lookupd]);
    args.push("--timeout=30s".into());
    broker.kill();
    let started = Instant::now();
    let run = check(&args, &[]);
    assert_failed(&run, &format!("publishing to {}", broker.tcp_addr()));
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "no waiting");
}

#[test]
fn a_broker_no_lookupd_lists_times_out() {
    let lookupd = Nsqlookupd::start(&[]);
    // Registered nowhere: the PUB succeeds, but no lookupd ever lists it.
    let broker = Nsqd::start(&[]);
    let mut args = addresses(&broker, &[&lookupd]);
    args.push("--timeout=1500ms".into());
    let started = Instant::now();
    let run = check(&args, &[]);
    assert_failed(&run, "listed a broker for topic helm-test-");
    assert!(run.stderr.contains("within 1.5s"), "{}", run.stderr);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}
