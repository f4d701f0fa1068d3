//! Consumers and brokers finding each other through nsqlookupd: a third-party
//! client (`tokio-nsq` 0.14) that is given only lookupd addresses, and nsqd's
//! channel pre-creation for a new topic (nsqd 1.3 `NSQD.GetTopic`: before a new
//! topic starts its message pump, nsqd asks every lookupd for the topic's
//! channels and creates them, skipping `#ephemeral` ones, so no message
//! published before the consumers arrive is lost to them).

use nsq_tests::inspect::{stats_channel, stats_channels, stats_topic};
use nsq_tests::{registered_nsqd, same, wait_until, Nsqd, Nsqlookupd};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio::time::timeout;
use tokio_nsq::{
    NSQChannel, NSQConsumerConfig, NSQConsumerConfigSources, NSQConsumerLookupConfig, NSQEvent,
    NSQTopic,
};

const WITHIN: Duration = Duration::from_secs(2);

fn addr(n: &Nsqd) -> String {
    n.tcp_addr().to_string()
}

/// `POST /mpub?topic=` with newline-separated `bodies`, asserting `OK`.
fn mpub(n: &Nsqd, topic: &str, bodies: &[String]) {
    let r = n.http(
        "POST",
        &format!("/mpub?topic={topic}"),
        bodies.join("\n").as_bytes(),
    );
    assert_eq!((r.status, r.text().as_str()), (200, "OK"), "POST /mpub");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_consumer_given_only_lookupds_receives_from_every_broker() {
    let l1 = Nsqlookupd::start(&[]);
    let l2 = Nsqlookupd::start(&[]);
    // A is known to l1 only, B to both: the consumer needs both answers.
    let a = registered_nsqd(&[&l1], &[]);
    let b = registered_nsqd(&[&l1, &l2], &[]);
    for broker in [&a, &b] {
        broker.http_post_ok("/topic/create?topic=t");
    }
    let mut both = vec![addr(&a), addr(&b)];
    both.sort();
    wait_until(WITHIN, "both brokers registered", || {
        same(l1.producer_tcp_addrs("t"), both.clone())?;
        same(l2.producer_tcp_addrs("t"), vec![addr(&b)])
    });

    let lookupds: HashSet<String> = [l1.http_url(), l2.http_url()].into();
    let mut consumer = NSQConsumerConfig::new(
        NSQTopic::new("t").expect("valid topic"),
        NSQChannel::new("c").expect("valid channel"),
    )
    .set_max_in_flight(10)
    .set_rebalance_interval(Duration::from_millis(200))
    .set_sources(NSQConsumerConfigSources::Lookup(
        NSQConsumerLookupConfig::new()
            .set_poll_interval(Duration::from_millis(500))
            .set_addresses(lookupds),
    ))
    .build();
    timeout(Duration::from_secs(10), async {
        let mut healthy = 0;
        while healthy < 2 {
            match consumer.consume().await {
                Some(NSQEvent::Healthy()) => healthy += 1,
                Some(NSQEvent::Message(m)) => panic!("message before publishing: {m:?}"),
                Some(_) => {}
                None => panic!("consumer closed"),
            }
        }
    })
    .await
    .expect("a healthy connection to each broker");
    // Both subscriptions exist once each broker shows channel c.
    for broker in [&a, &b] {
        wait_until(WITHIN, "the consumer subscribed", || {
            same(stats_channels(&broker.stats(), "t"), vec!["c".to_owned()])
        });
    }

    let from_a: Vec<String> = (0..10).map(|i| format!("a-{i}")).collect();
    let from_b: Vec<String> = (0..10).map(|i| format!("b-{i}")).collect();
    mpub(&a, "t", &from_a);
    mpub(&b, "t", &from_b);

    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    loop {
        let within = if total < 20 {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(500)
        };
        match timeout(within, consumer.consume_filtered()).await {
            Ok(Some(m)) => {
                assert_eq!(m.attempt, 1, "no redeliveries expected");
                *got.entry(String::from_utf8(m.body.clone()).unwrap())
                    .or_default() += 1;
                total += 1;
                m.finish().await;
            }
            Ok(None) => panic!("consumer closed"),
            Err(_) if total < 20 => panic!("only {total} of 20 messages arrived: {got:?}"),
            Err(_) => break,
        }
    }
    let want: BTreeMap<String, usize> = from_a
        .iter()
        .chain(&from_b)
        .map(|b| (b.clone(), 1))
        .collect();
    assert_eq!(got, want, "each message exactly once");
    for broker in [&a, &b] {
        wait_until(WITHIN, "every message finished", || {
            let stats = broker.stats();
            let c = stats_channel(&stats, "t", "c").cloned().unwrap_or_default();
            same(
                (
                    c["depth"].as_u64(),
                    c["in_flight_count"].as_u64(),
                    c["message_count"].as_u64(),
                ),
                (Some(0), Some(0), Some(10)),
            )
        });
    }
}

#[test]
fn new_topic_on_another_broker_precreates_the_channels_lookupd_knows() {
    let l = Nsqlookupd::start(&[]);
    let a = registered_nsqd(&[&l], &[]);
    let b = registered_nsqd(&[&l], &[]);
    // B has identified with the lookupd (and so knows its HTTP address) once
    // something of B's is registered there.
    b.http_post_ok("/topic/create?topic=warmup");
    wait_until(WITHIN, "B registered", || {
        same(l.producer_tcp_addrs("warmup"), vec![addr(&b)])
    });

    // Consumers of t exist on A only.
    let mut on_a = a.connect();
    on_a.subscribe("t", "c");
    let mut ephemeral_on_a = a.connect();
    ephemeral_on_a.subscribe("t", "e#ephemeral");
    wait_until(WITHIN, "A's channels registered", || {
        same(
            l.channels("t"),
            vec!["c".to_owned(), "e#ephemeral".to_owned()],
        )
    });
    assert!(stats_topic(&b.stats(), "t").is_none(), "B never had t");

    // The first message to t on B creates the topic there.
    let r = b.http("POST", "/pub?topic=t", b"to whoever listens");
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));

    // Channel c came from lookupd before the message was routed, so c holds it;
    // an ephemeral channel without a consumer is not pre-created.
    wait_until(WITHIN, "the message in B's channel c", || {
        let stats = b.stats();
        same(stats_channels(&stats, "t"), vec!["c".to_owned()])?;
        let topic = stats_topic(&stats, "t").unwrap();
        let c = stats_channel(&stats, "t", "c").unwrap();
        same(
            (
                topic["depth"].as_u64(),
                c["depth"].as_u64(),
                c["message_count"].as_u64(),
            ),
            (Some(0), Some(1), Some(1)),
        )
    });
    // B now produces t and registers the channel it pre-created.
    let mut both = vec![addr(&a), addr(&b)];
    both.sort();
    wait_until(WITHIN, "B registered t and c", || {
        same(l.producer_tcp_addrs("t"), both.clone())?;
        let keys = l.debug_keys();
        if keys.contains(&"channel:t:c".to_owned()) {
            Ok(())
        } else {
            Err(format!("/debug keys {keys:?}"))
        }
    });

    let mut on_b = b.connect();
    on_b.subscribe("t", "c");
    on_b.rdy(1);
    let m = on_b.next_message();
    assert_eq!((m.body_str(), m.attempts), ("to whoever listens", 1));
    on_b.fin(&m.id);
    // A's consumers never see B's message.
    on_a.rdy(1);
    on_a.expect_silence(Duration::from_millis(200));
}
