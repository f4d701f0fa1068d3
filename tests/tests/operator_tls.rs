//! The operator against a broker started with `--tls-required`: its plain HTTP
//! answers every call 403 `TLS_REQUIRED` with the HTTPS port, and the
//! operator, like Go NSQ's HTTP client, follows it there, trusting the CA of
//! `--http-client-tls-root-ca-file`.

mod common;

use common::{wait_listed, wait_topic, READY_WITHIN};
use nsq_tests::certs::Pki;
use nsq_tests::{registered_nsqd, same, wait_for, Kube, Nsqd, Nsqlookupd, Operator};
use std::time::Duration;

/// A lookupd and one broker that refuses plain HTTP; the CA that signed it.
fn tls_broker() -> (Pki, Nsqlookupd, Nsqd) {
    tls_broker_with("--tls-required=true")
}

fn tls_broker_with(flag: &str) -> (Pki, Nsqlookupd, Nsqd) {
    let pki = Pki::new();
    let lookupd = Nsqlookupd::start(&[]);
    let mut args: Vec<String> = pki.nsqd_args();
    args.push(flag.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = registered_nsqd(&[&lookupd], &args);
    wait_listed(&lookupd, &broker);
    let plain = broker.http("GET", "/ping", b"");
    assert_eq!(plain.status, 403, "plain HTTP is refused: {}", plain.text());
    (pki, lookupd, broker)
}

#[test]
fn operator_reaches_a_tls_required_broker_over_https() {
    let (pki, lookupd, broker) = tls_broker();
    let kube = Kube::new();
    let ca = format!("--http-client-tls-root-ca-file={}", pki.ca.display());
    let _operator = Operator::try_start(
        &kube,
        &[lookupd.http_addr().to_string()],
        "operator-0",
        &[&ca],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    kube.apply_file("deploy/examples/topic.yaml");
    let t = wait_topic(&kube, "orders", READY_WITHIN, "True", "Reconciled", |t| {
        same(t.status.as_ref().map(|s| s.broker_count), Some(1))
    });
    let b = &t.status.expect("status").brokers[0];
    assert!(b.present && b.error.is_none(), "{b:?}");
    // The broker logs API calls on both listeners; this one came over HTTPS.
    wait_for(
        Duration::from_secs(5),
        "the create in the broker's log",
        || {
            broker
                .stderr_lines()
                .iter()
                .any(|l| l.contains("POST /topic/create?topic=orders"))
                .then_some(())
        },
    );
}

#[test]
fn operator_without_the_ca_reports_the_tls_required_broker_unreachable() {
    let (_pki, lookupd, _broker) = tls_broker();
    let kube = Kube::new();
    let _operator = Operator::start(&kube, &[lookupd.http_addr().to_string()]);
    kube.apply_file("deploy/examples/topic.yaml");
    let t = wait_topic(
        &kube,
        "orders",
        READY_WITHIN,
        "False",
        "BrokerUnreachable",
        |_| Ok(()),
    );
    let b = &t.status.expect("status").brokers[0];
    assert!(!b.present, "{b:?}");
    let error = b.error.as_deref().unwrap_or_default();
    assert!(error.contains("TLS handshake"), "{error}");
}

#[test]
fn operator_shows_its_client_certificate_to_a_broker_that_requires_one() {
    let (pki, lookupd, _broker) = tls_broker_with("--tls-client-auth-policy=require-verify");
    let me = pki.client("nsq-operator");
    let kube = Kube::new();
    let flags = [
        format!("--http-client-tls-root-ca-file={}", pki.ca.display()),
        format!("--http-client-tls-cert={}", me.cert.display()),
        format!("--http-client-tls-key={}", me.key.display()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _operator = Operator::try_start(
        &kube,
        &[lookupd.http_addr().to_string()],
        "operator-0",
        &flags,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    kube.apply_file("deploy/examples/topic.yaml");
    wait_topic(&kube, "orders", READY_WITHIN, "True", "Reconciled", |t| {
        same(t.status.as_ref().map(|s| s.broker_count), Some(1))
    });
}
