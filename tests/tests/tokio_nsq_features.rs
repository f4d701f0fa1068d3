//! tokio-nsq 0.14 (crates.io) over the streams IDENTIFY negotiates: TLS with a
//! verified server certificate, snappy, deflate, and TLS with snappy inside.
//! Each test publishes with a producer and consumes with a consumer, both in
//! the mode under test, and checks exact counts, bodies and `/stats` flags.

use nsq_tests::certs::Pki;
use nsq_tests::inspect::stats_channel;
use nsq_tests::tokio_client::await_acks;
use nsq_tests::Nsqd;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;
use tokio_nsq::{
    NSQChannel, NSQConfigShared, NSQConfigSharedCompression, NSQConfigSharedTLS, NSQConsumerConfig,
    NSQConsumerConfigSources, NSQDeflateLevel, NSQEvent, NSQProducerConfig, NSQTopic,
};

const N: usize = 200;

/// Waits for `Healthy` from a producer or consumer (both have `consume`).
macro_rules! healthy {
    ($client:expr, $what:literal) => {
        timeout(Duration::from_secs(10), async {
            loop {
                match $client.consume().await {
                    Some(NSQEvent::Healthy()) => return,
                    Some(NSQEvent::Message(m)) => panic!("message before subscription: {m:?}"),
                    Some(_) => {}
                    None => panic!(concat!($what, " closed before it became healthy")),
                }
            }
        })
        .await
        .expect(concat!($what, " connected"))
    };
}

/// TLS trusting the test CA (rustls 0.19, tokio-nsq's own) for `localhost`.
fn verified_tls(pki: &Pki) -> NSQConfigSharedTLS {
    let mut config = rustls019::ClientConfig::new();
    let (added, _) = config
        .root_store
        .add_pem_file(&mut pki.ca_pem.as_bytes())
        .expect("CA PEM");
    assert_eq!(added, 1);
    NSQConfigSharedTLS::new("localhost").set_client_config(Arc::new(config))
}

/// Publishes `N` messages (half PUB, half one MPUB) and consumes them in
/// `shared`'s mode; `/stats` is read while both clients are connected and
/// must show `want` (`tls`, `snappy`, `deflate`) for each of them.
async fn round_trip(nsqd: &Nsqd, shared: NSQConfigShared, want: Value) {
    let addr = nsqd.tcp_addr().to_string();
    let mut consumer =
        NSQConsumerConfig::new(NSQTopic::new("t").unwrap(), NSQChannel::new("c").unwrap())
            .set_max_in_flight(100)
            .set_sources(NSQConsumerConfigSources::Daemons(vec![addr.clone()]))
            .set_shared(shared.clone())
            .build();
    healthy!(consumer, "consumer");
    let mut producer = NSQProducerConfig::new(addr).set_shared(shared).build();
    healthy!(producer, "producer");

    let topic = NSQTopic::new("t").unwrap();
    let bodies: Vec<Vec<u8>> = (0..N)
        .map(|i| format!("body-{i:03}-{}", "x".repeat(i * 10)).into_bytes())
        .collect();
    for b in &bodies[..N / 2] {
        producer.publish(&topic, b.clone()).await.unwrap();
    }
    producer
        .publish_multiple(&topic, bodies[N / 2..].to_vec())
        .await
        .unwrap();
    await_acks(&mut producer, N / 2 + 1).await;

    let mut got = Vec::new();
    while let Ok(Some(m)) = timeout(Duration::from_secs(1), consumer.consume_filtered()).await {
        got.push(m.body.clone());
        m.finish().await;
    }
    assert_eq!(got.len(), N, "deliveries");
    let got: BTreeSet<_> = got.into_iter().collect();
    assert_eq!(got, bodies.into_iter().collect::<BTreeSet<_>>());

    let stats = nsqd.stats();
    let flags =
        |c: &Value| json!({"tls": c["tls"], "snappy": c["snappy"], "deflate": c["deflate"]});
    let ch = stats_channel(&stats, "t", "c").expect("channel in /stats");
    let consumers: Vec<_> = ch["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(flags)
        .collect();
    let producers: Vec<_> = stats["producers"]
        .as_array()
        .unwrap()
        .iter()
        .map(flags)
        .collect();
    assert_eq!((consumers, producers), (vec![want.clone()], vec![want]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_round_trips_over_tls_with_a_verified_certificate() {
    let pki = Pki::new();
    let mut args = pki.nsqd_args();
    // TCP must be TLS; plain HTTP stays open for /stats.
    args.push("--tls-required=tcp-https".into());
    let nsqd = Nsqd::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let shared = NSQConfigShared::new().set_tls(verified_tls(&pki));
    round_trip(
        &nsqd,
        shared,
        json!({"tls": true, "snappy": false, "deflate": false}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_round_trips_over_snappy() {
    let nsqd = Nsqd::start(&[]);
    let shared = NSQConfigShared::new().set_compression(NSQConfigSharedCompression::Snappy);
    round_trip(
        &nsqd,
        shared,
        json!({"tls": false, "snappy": true, "deflate": false}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_round_trips_over_deflate() {
    let nsqd = Nsqd::start(&[]);
    let shared = NSQConfigShared::new().set_compression(NSQConfigSharedCompression::Deflate(
        NSQDeflateLevel::new(3).unwrap(),
    ));
    round_trip(
        &nsqd,
        shared,
        json!({"tls": false, "snappy": false, "deflate": true}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_round_trips_over_snappy_inside_tls() {
    let pki = Pki::new();
    let args = pki.nsqd_args();
    let nsqd = Nsqd::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let shared = NSQConfigShared::new()
        .set_tls(verified_tls(&pki))
        .set_compression(NSQConfigSharedCompression::Snappy);
    round_trip(
        &nsqd,
        shared,
        json!({"tls": true, "snappy": true, "deflate": false}),
    )
    .await;
}
