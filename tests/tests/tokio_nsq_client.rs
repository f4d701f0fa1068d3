//! The broker through a real third-party client: `tokio-nsq` 0.14 from crates.io.

use nsq_tests::tokio_client::await_acks;
use nsq_tests::Nsqd;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_nsq::{
    NSQChannel, NSQConsumer, NSQConsumerConfig, NSQConsumerConfigSources, NSQEvent, NSQMessage,
    NSQProducer, NSQProducerConfig, NSQRequeueDelay, NSQTopic,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn topic(name: &str) -> Arc<NSQTopic> {
    NSQTopic::new(name).expect("valid topic name")
}

/// A producer whose connection is up.
async fn producer(nsqd: &Nsqd) -> NSQProducer {
    let mut p = NSQProducerConfig::new(nsqd.tcp_addr().to_string()).build();
    timeout(CONNECT_TIMEOUT, async {
        loop {
            match p.consume().await {
                Some(NSQEvent::Healthy()) => return,
                Some(_) => {}
                None => panic!("producer closed before it became healthy"),
            }
        }
    })
    .await
    .expect("producer became healthy");
    p
}

/// A consumer of `topic`/`channel` on this broker whose subscription is up.
async fn consumer(nsqd: &Nsqd, topic: &str, channel: &str, max_in_flight: u32) -> NSQConsumer {
    let mut c = NSQConsumerConfig::new(
        NSQTopic::new(topic).expect("valid topic name"),
        NSQChannel::new(channel).expect("valid channel name"),
    )
    .set_max_in_flight(max_in_flight)
    .set_sources(NSQConsumerConfigSources::Daemons(vec![nsqd
        .tcp_addr()
        .to_string()]))
    .build();
    timeout(CONNECT_TIMEOUT, async {
        loop {
            match c.consume().await {
                Some(NSQEvent::Healthy()) => return,
                Some(NSQEvent::Message(m)) => panic!("message before subscription: {m:?}"),
                Some(_) => {}
                None => panic!("consumer closed before it became healthy"),
            }
        }
    })
    .await
    .expect("consumer subscribed");
    c
}

async fn next_message(c: &mut NSQConsumer, within: Duration) -> Option<NSQMessage> {
    timeout(within, c.consume_filtered())
        .await
        .ok()
        .map(|m| m.expect("consumer closed"))
}

/// What a consumer got: (body, attempt, id) per delivery.
type Got = Vec<(String, u16, [u8; 16])>;

/// Finishes every message until none arrives for `idle`, pausing `work` per message.
async fn drain(mut c: NSQConsumer, idle: Duration, work: Duration) -> Got {
    let mut got = Vec::new();
    while let Some(m) = next_message(&mut c, idle).await {
        got.push((String::from_utf8(m.body.clone()).unwrap(), m.attempt, m.id));
        if !work.is_zero() {
            tokio::time::sleep(work).await;
        }
        m.finish().await;
    }
    got
}

fn bodies(n: usize, prefix: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i:03}").into_bytes())
        .collect()
}

fn body_set(got: &Got) -> BTreeSet<String> {
    got.iter().map(|(b, _, _)| b.clone()).collect()
}

fn expected_set(n: usize, prefix: &str) -> BTreeSet<String> {
    bodies(n, prefix)
        .into_iter()
        .map(|b| String::from_utf8(b).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_publishes_and_consumes_every_message_once() {
    let nsqd = Nsqd::start(&[]);
    let c = consumer(&nsqd, "t", "c", 25).await;
    let mut p = producer(&nsqd).await;
    let t = topic("t");
    let all = bodies(50, "m");
    for b in &all[..20] {
        p.publish(&t, b.clone()).await.unwrap();
    }
    p.publish_multiple(&t, all[20..].to_vec()).await.unwrap();
    await_acks(&mut p, 21).await;

    let got = drain(c, Duration::from_secs(1), Duration::ZERO).await;
    assert_eq!(got.len(), 50, "deliveries: {got:?}");
    assert_eq!(body_set(&got), expected_set(50, "m"));
    assert!(got.iter().all(|(_, attempt, _)| *attempt == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_requeued_message_is_redelivered_with_attempt_2() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c", 1).await;
    let mut p = producer(&nsqd).await;
    p.publish(&topic("t"), b"retry me".to_vec()).await.unwrap();
    await_acks(&mut p, 1).await;

    let first = next_message(&mut c, Duration::from_secs(5))
        .await
        .expect("delivery");
    assert_eq!(
        (first.body.as_slice(), first.attempt),
        (&b"retry me"[..], 1)
    );
    let id = first.id;
    first.requeue(NSQRequeueDelay::NoDelay).await;

    let again = next_message(&mut c, Duration::from_secs(5))
        .await
        .expect("redelivery");
    assert_eq!((again.id, again.attempt), (id, 2));
    assert_eq!(again.body, b"retry me");
    again.finish().await;
    let rest = drain(c, Duration::from_millis(500), Duration::ZERO).await;
    assert!(rest.is_empty(), "nothing after FIN: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_deferred_publish_arrives_no_earlier_than_the_delay() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c", 1).await;
    let mut p = producer(&nsqd).await;
    let sent = Instant::now();
    p.publish_deferred(&topic("t"), b"later".to_vec(), 1000)
        .await
        .unwrap();
    await_acks(&mut p, 1).await;

    let m = next_message(&mut c, Duration::from_secs(5))
        .await
        .expect("deferred delivery");
    let waited = sent.elapsed();
    assert_eq!((m.body.as_slice(), m.attempt), (&b"later"[..], 1));
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(4),
        "delivered after {waited:?}, expected just after 1 s"
    );
    m.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_on_one_channel_share_the_messages_without_duplicates() {
    let nsqd = Nsqd::start(&[]);
    let a = consumer(&nsqd, "t", "shared", 1).await;
    let b = consumer(&nsqd, "t", "shared", 1).await;
    // Let each consumer's RDY reach the broker before anything is published.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut p = producer(&nsqd).await;
    p.publish_multiple(&topic("t"), bodies(100, "s"))
        .await
        .unwrap();
    await_acks(&mut p, 1).await;

    let work = Duration::from_millis(5);
    let idle = Duration::from_secs(1);
    let (got_a, got_b) = tokio::join!(drain(a, idle, work), drain(b, idle, work));
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "both consumers got some: {} + {}",
        got_a.len(),
        got_b.len()
    );
    assert_eq!(
        got_a.len() + got_b.len(),
        100,
        "exactly 100 deliveries in total"
    );
    let all: Got = got_a.into_iter().chain(got_b).collect();
    let ids: BTreeSet<[u8; 16]> = all.iter().map(|(_, _, id)| *id).collect();
    assert_eq!(ids.len(), 100, "no message delivered twice");
    assert_eq!(body_set(&all), expected_set(100, "s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_receives_every_message() {
    let nsqd = Nsqd::start(&[]);
    let mut consumers = Vec::new();
    for ch in ["ch0", "ch1", "ch2"] {
        consumers.push(consumer(&nsqd, "fan", ch, 10).await);
    }
    let mut p = producer(&nsqd).await;
    p.publish_multiple(&topic("fan"), bodies(30, "f"))
        .await
        .unwrap();
    await_acks(&mut p, 1).await;

    let idle = Duration::from_secs(1);
    let results = futures_join_all(
        consumers
            .into_iter()
            .map(|c| drain(c, idle, Duration::ZERO)),
    )
    .await;
    for (i, got) in results.iter().enumerate() {
        assert_eq!(got.len(), 30, "ch{i} got {} deliveries", got.len());
        assert_eq!(body_set(got), expected_set(30, "f"), "ch{i}");
    }
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task panicked"));
    }
    out
}
