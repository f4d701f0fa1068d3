//! The operator when parts of the world fail: a broker that stops answering,
//! lookupd going away, and the leader replica dying.

mod common;

use common::{broker_addr, has_topic, wait_listed, wait_topic, Cluster, READY_WITHIN, SLACK};
use k8s_openapi::api::coordination::v1::Lease;
use nsq_tests::daemon::free_local_port;
use nsq_tests::operator::{LEASE_DURATION, LEASE_NAME, RESYNC};
use nsq_tests::{registered_nsqd, same, wait_until, Kube, Nsqlookupd, Operator};
use std::time::{Duration, Instant};

/// Requests to a frozen broker give up after this (the default is 5s).
const REQUEST_TIMEOUT: &str = "2s";

#[test]
fn broker_that_stops_answering_turns_ready_false_until_it_answers_again() {
    let c = Cluster::start_with(2, &["--http-client-request-timeout", REQUEST_TIMEOUT]);
    c.kube.apply_file("deploy/examples/topic.yaml");
    wait_topic(&c.kube, "orders", READY_WITHIN, "True", "Reconciled", |t| {
        same(t.status.as_ref().map(|s| s.broker_count), Some(2))
    });

    // Frozen, the broker keeps its lookupd connection (so lookupd still lists
    // it) and its HTTP port accepts connections that are never answered.
    let frozen = &c.brokers[1];
    let frozen_addr = broker_addr(frozen);
    frozen.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let down = wait_topic(
        &c.kube,
        "orders",
        READY_WITHIN,
        "False",
        "BrokerUnreachable",
        |_| Ok(()),
    );
    eprintln!("Ready=False {:?} after SIGSTOP", stopped.elapsed());
    let s = down.status.expect("status");
    let message = &common::ready(&s.conditions).unwrap().message;
    assert!(
        message.contains(&frozen_addr),
        "the Ready message {message:?} names the frozen broker {frozen_addr}"
    );
    let entry = s
        .brokers
        .iter()
        .find(|b| b.address == frozen_addr)
        .expect("frozen broker's entry");
    assert!(
        entry.error.is_some(),
        "brokers[] reports the error: {entry:?}"
    );
    let healthy = broker_addr(&c.brokers[0]);
    let entry = s
        .brokers
        .iter()
        .find(|b| b.address == healthy)
        .expect("healthy broker's entry");
    assert!(entry.present && entry.error.is_none(), "{entry:?}");
    assert_eq!(s.broker_count, 1, "only the answering broker counts");
    // Counted once the failed reconcile returns, just after it wrote status.
    let series =
        "nsq_operator_reconcile_failures_total{kind=\"NsqTopic\",reason=\"BrokerUnreachable\"}";
    wait_until(SLACK, "the failure to be counted in /metrics", || {
        match c.operator.metric(series) {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("{series} = {other:?}")),
        }
    });

    frozen.signal(libc::SIGCONT);
    let resumed = Instant::now();
    wait_topic(&c.kube, "orders", READY_WITHIN, "True", "Reconciled", |t| {
        same(t.status.as_ref().map(|s| s.broker_count), Some(2))
    });
    eprintln!("Ready=True {:?} after SIGCONT", resumed.elapsed());
}

#[test]
fn lookupd_unreachable_turns_ready_false_and_recovers_when_it_returns() {
    let kube = Kube::new();
    let tcp = format!("127.0.0.1:{}", free_local_port());
    let http = format!("127.0.0.1:{}", free_local_port());
    let lookupd_args = [
        "--tcp-address",
        tcp.as_str(),
        "--http-address",
        http.as_str(),
    ];
    let mut lookupd = Nsqlookupd::start(&lookupd_args);
    let broker = registered_nsqd(&[&lookupd], &[]);
    wait_listed(&lookupd, &broker);
    // A second lookupd that never answers: one of several is enough.
    let nowhere = format!("127.0.0.1:{}", free_local_port());
    let _operator = Operator::try_start(
        &kube,
        &[http.clone(), nowhere.clone()],
        "operator-0",
        &["--http-client-request-timeout", REQUEST_TIMEOUT],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    kube.apply_file("deploy/examples/topic.yaml");
    wait_topic(&kube, "orders", READY_WITHIN, "True", "Reconciled", |t| {
        same(t.status.as_ref().map(|s| s.broker_count), Some(1))
    });

    lookupd.stop();
    let stopped = Instant::now();
    let down = wait_topic(
        &kube,
        "orders",
        RESYNC + READY_WITHIN,
        "False",
        "LookupdUnavailable",
        |_| Ok(()),
    );
    eprintln!("Ready=False {:?} after lookupd stopped", stopped.elapsed());
    let s = down.status.expect("status");
    let message = &common::ready(&s.conditions).unwrap().message;
    assert!(
        message.contains(&http) && message.contains(&nowhere),
        "the Ready message {message:?} names the lookupds {http} and {nowhere}"
    );
    assert!(
        has_topic(&broker, "orders"),
        "the broker keeps the topic meanwhile"
    );

    let _lookupd = Nsqlookupd::start(&lookupd_args);
    let back = Instant::now();
    wait_topic(&kube, "orders", READY_WITHIN, "True", "Reconciled", |t| {
        same(t.status.as_ref().map(|s| s.broker_count), Some(1))
    });
    eprintln!("Ready=True {:?} after lookupd came back", back.elapsed());
}

fn leader_gauge(op: &Operator) -> f64 {
    op.metric("nsq_operator_leader").unwrap_or(0.0)
}

fn reconciles(op: &Operator) -> f64 {
    op.metric("nsq_operator_reconciles_total").unwrap_or(0.0)
}

fn lease_holder(kube: &Kube) -> Option<String> {
    kube.get::<Lease>(LEASE_NAME)
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[test]
fn two_replicas_never_both_act_and_the_standby_takes_over_when_the_leader_dies() {
    let kube = Kube::new();
    let lookupd = Nsqlookupd::start(&[]);
    let broker = registered_nsqd(&[&lookupd], &[]);
    wait_listed(&lookupd, &broker);
    let lookupds = [lookupd.http_addr().to_string()];
    let mut replicas = [
        Operator::start_as(&kube, &lookupds, "replica-a"),
        Operator::start_as(&kube, &lookupds, "replica-b"),
    ];
    kube.apply_file("deploy/examples/topic.yaml");
    wait_topic(&kube, "orders", READY_WITHIN, "True", "Reconciled", |_| {
        Ok(())
    });

    let leader = wait_until(READY_WITHIN, "exactly one leader", || {
        match replicas.each_ref().map(leader_gauge) {
            [1.0, 0.0] => Ok(0),
            [0.0, 1.0] => Ok(1),
            both => Err(format!("nsq_operator_leader of a, b: {both:?}")),
        }
    });
    let standby = 1 - leader;
    assert_eq!(
        lease_holder(&kube).as_deref(),
        Some(replicas[leader].identity())
    );
    assert_eq!(
        reconciles(&replicas[standby]),
        0.0,
        "the standby has not reconciled"
    );

    // Over a few resync periods: never two leaders, only the leader reconciles.
    let before = reconciles(&replicas[leader]);
    let until = Instant::now() + RESYNC * 2 + Duration::from_millis(500);
    while Instant::now() < until {
        let gauges = replicas.each_ref().map(leader_gauge);
        assert_ne!(
            gauges,
            [1.0, 1.0],
            "both replicas report nsq_operator_leader 1"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = reconciles(&replicas[leader]);
    assert!(
        after > before,
        "the leader keeps reconciling ({before} -> {after})"
    );
    assert_eq!(
        reconciles(&replicas[standby]),
        0.0,
        "the standby never reconciles"
    );

    // The leader dies without releasing the Lease; the standby takes over once
    // it expires, and acts.
    replicas[leader].kill();
    let killed = Instant::now();
    wait_until(
        LEASE_DURATION * 2 + SLACK,
        "the standby to take over",
        || same(leader_gauge(&replicas[standby]), 1.0),
    );
    eprintln!(
        "standby leads {:?} after the leader was killed",
        killed.elapsed()
    );
    assert_eq!(
        lease_holder(&kube).as_deref(),
        Some(replicas[standby].identity())
    );
    wait_until(RESYNC + SLACK, "the new leader to reconcile", || {
        let n = reconciles(&replicas[standby]);
        if n > 0.0 {
            Ok(())
        } else {
            Err(format!("{n} reconciles"))
        }
    });
    broker.http_post_ok("/topic/delete?topic=orders");
    wait_until(
        RESYNC + SLACK,
        "the new leader to recreate the topic",
        || same(has_topic(&broker, "orders"), true),
    );
}
