//! Brokers keep every nsqlookupd they are given told what they hold: real
//! `nsqd` and `nsqlookupd` processes, checked through lookupd's HTTP API.
//!
//! nsqlookupd semantics pinned here (nsqlookupd/registration_db.go,
//! lookup_protocol_v1.go, http.go): an UNREGISTER removes the producer but leaves
//! the registration key, so `/channels` and `/topics` keep listing names while
//! `/lookup`'s producers, `/nodes`' topics and `/debug`'s keys (only keys with
//! producers) drop them; a closed connection removes all of its producer's
//! registrations.

use nsq_tests::lookupd::{os_hostname, strings, tcp_address};
use nsq_tests::{registered_nsqd, same, wait_until, Nsqd, Nsqlookupd};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How soon a change on a broker must show in every lookupd.
const WITHIN: Duration = Duration::from_secs(2);

fn addr(n: &Nsqd) -> String {
    n.tcp_addr().to_string()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A `/nodes` entry's topics with their tombstone flags, sorted by topic.
fn node_topics(node: &Value) -> Vec<(String, bool)> {
    let topics = strings(&node["topics"]);
    let tombstones: Vec<bool> = node["tombstones"]
        .as_array()
        .map(|a| a.iter().map(|b| b.as_bool().expect("bool")).collect())
        .unwrap_or_default();
    assert_eq!(topics.len(), tombstones.len(), "/nodes entry {node}");
    let mut v: Vec<(String, bool)> = topics.into_iter().zip(tombstones).collect();
    v.sort();
    v
}

/// `broker`'s topics in `l`'s `/nodes` (`None` when it is not listed).
fn node_topic_names(l: &Nsqlookupd, broker: &Nsqd) -> Option<Vec<String>> {
    l.node(broker.tcp_addr())
        .map(|n| node_topics(&n).into_iter().map(|(t, _)| t).collect())
}

/// The fields nsqd sent in IDENTIFY, as `/lookup` and `/nodes` show them.
fn assert_peer_info(p: &Value, broker: &Nsqd) {
    assert_eq!(p["broadcast_address"], "127.0.0.1", "{p}");
    assert_eq!(p["tcp_port"], broker.tcp_addr().port(), "{p}");
    assert_eq!(p["http_port"], broker.http_addr().port(), "{p}");
    assert_eq!(p["version"], "1.3.0", "{p}");
    assert_eq!(p["hostname"], os_hostname(), "{p}");
    let remote = p["remote_address"].as_str().expect("remote_address");
    assert!(
        remote.starts_with("127.0.0.1:"),
        "remote_address {remote:?}"
    );
}

#[test]
fn topics_and_channels_register_with_every_lookupd_and_leave_with_their_broker() {
    let l1 = Nsqlookupd::start(&[]);
    let l2 = Nsqlookupd::start(&[]);
    let a = registered_nsqd(&[&l1, &l2], &[]);
    let mut b = registered_nsqd(&[&l1, &l2], &[]);

    // A gets its topics and channel over HTTP, B by PUB and SUB.
    a.http_post_ok("/topic/create?topic=alpha");
    a.http_post_ok("/channel/create?topic=alpha&channel=a1");
    a.http_post_ok("/topic/create?topic=both");
    let mut producer = b.connect();
    producer.publish("beta", b"x");
    producer.publish("both", b"y");
    let mut consumer = b.connect();
    consumer.subscribe("beta", "b1");

    let both = sorted(vec![addr(&a), addr(&b)]);
    for l in [&l1, &l2] {
        wait_until(WITHIN, "every registration in every lookupd", || {
            same(l.producer_tcp_addrs("alpha"), vec![addr(&a)])?;
            same(l.producer_tcp_addrs("beta"), vec![addr(&b)])?;
            same(l.producer_tcp_addrs("both"), both.clone())?;
            same(l.channels("alpha"), vec!["a1".to_owned()])?;
            same(l.channels("beta"), vec!["b1".to_owned()])?;
            same(l.channels("both"), vec![])?;
            same(
                node_topic_names(l, &a),
                Some(vec!["alpha".into(), "both".into()]),
            )?;
            same(
                node_topic_names(l, &b),
                Some(vec!["beta".into(), "both".into()]),
            )
        });
        let lookup = l.lookup("alpha").expect("alpha is known");
        assert_eq!(lookup["channels"], serde_json::json!(["a1"]), "{lookup}");
        assert_peer_info(&lookup["producers"][0], &a);
        let nodes = l.nodes();
        assert_eq!(nodes.len(), 2, "{nodes:?}");
        for broker in [&a, &b] {
            let node = l.node(broker.tcp_addr()).unwrap();
            assert_peer_info(&node, broker);
            assert!(
                node_topics(&node).iter().all(|(_, tombstoned)| !tombstoned),
                "{node}"
            );
        }
        assert_eq!(
            l.topics(),
            ["alpha", "beta", "both"],
            "/topics on {}",
            l.tcp_addr()
        );
    }

    // A channel deleted on the broker loses its producer; lookupd keeps the name.
    a.http_post_ok("/channel/delete?topic=alpha&channel=a1");
    for l in [&l1, &l2] {
        wait_until(WITHIN, "the channel unregistered", || {
            let keys = l.debug_keys();
            if keys.iter().any(|k| k == "channel:alpha:a1") {
                return Err(format!("/debug keys {keys:?}"));
            }
            Ok(())
        });
        assert!(l.debug_keys().contains(&"topic:alpha:".to_owned()));
        assert_eq!(l.producer_tcp_addrs("alpha"), [addr(&a)]);
        assert_eq!(
            l.channels("alpha"),
            ["a1"],
            "the key outlives its producers"
        );
    }

    // A topic deleted on the broker: no producers left, still a known topic.
    a.http_post_ok("/topic/delete?topic=alpha");
    for l in [&l1, &l2] {
        wait_until(WITHIN, "the topic unregistered", || {
            same(l.producer_tcp_addrs("alpha"), vec![])?;
            same(node_topic_names(l, &a), Some(vec!["both".into()]))
        });
        let lookup = l.lookup("alpha").expect("the topic key stays");
        assert_eq!(lookup["producers"], serde_json::json!([]), "{lookup}");
        assert!(!l.debug_keys().contains(&"topic:alpha:".to_owned()));
        assert!(l.topics().contains(&"alpha".to_owned()));
    }

    // A broker that exits takes all of its registrations with it.
    let (status, _) = b.terminate();
    assert!(status.success(), "nsqd exited with {status}");
    for l in [&l1, &l2] {
        wait_until(WITHIN, "the exited broker gone", || {
            same(l.node(b.tcp_addr()), None)?;
            same(l.producer_tcp_addrs("beta"), vec![])?;
            same(l.producer_tcp_addrs("both"), vec![addr(&a)])
        });
        let keys = l.debug_keys();
        assert!(
            !keys.iter().any(|k| k.contains(":beta:")),
            "beta still has producers: {keys:?}"
        );
        assert_eq!(l.nodes().len(), 1);
    }
    drop((producer, consumer));
}

#[test]
fn tombstone_hides_one_producer_of_one_topic_for_the_tombstone_lifetime() {
    let lifetime = Duration::from_secs(2);
    let l = Nsqlookupd::start(&["--tombstone-lifetime=2s"]);
    let a = registered_nsqd(&[&l], &[]);
    let b = registered_nsqd(&[&l], &[]);
    for broker in [&a, &b] {
        broker.http_post_ok("/topic/create?topic=t");
    }
    a.http_post_ok("/topic/create?topic=other");
    let both = sorted(vec![addr(&a), addr(&b)]);
    wait_until(WITHIN, "both producers of t", || {
        same(l.producer_tcp_addrs("t"), both.clone())?;
        same(l.producer_tcp_addrs("other"), vec![addr(&a)])
    });

    // nsqlookupd names a node <broadcast_address>:<http_port>.
    let node = format!("127.0.0.1:{}", a.http_addr().port());
    let tombstoned = Instant::now();
    l.http_post_ok(&format!("/topic/tombstone?topic=t&node={node}"));

    assert_eq!(
        l.producer_tcp_addrs("t"),
        [addr(&b)],
        "A hidden from /lookup"
    );
    assert_eq!(l.producer_tcp_addrs("other"), [addr(&a)], "only for t");
    let node_a = l
        .node(a.tcp_addr())
        .expect("/nodes keeps a tombstoned node");
    assert_eq!(
        node_topics(&node_a),
        [("other".to_owned(), false), ("t".to_owned(), true)]
    );
    let node_b = l.node(b.tcp_addr()).unwrap();
    assert_eq!(node_topics(&node_b), [("t".to_owned(), false)]);

    // Still hidden halfway through the lifetime...
    std::thread::sleep(Duration::from_millis(1000).saturating_sub(tombstoned.elapsed()));
    if tombstoned.elapsed() < lifetime {
        assert_eq!(l.producer_tcp_addrs("t"), [addr(&b)]);
    }
    // ...and back once it is over, not before.
    wait_until(
        lifetime + Duration::from_secs(2),
        "A back in /lookup",
        || same(l.producer_tcp_addrs("t"), both.clone()),
    );
    let back_after = tombstoned.elapsed();
    assert!(
        back_after >= lifetime,
        "A reappeared {back_after:?} after the tombstone, lifetime {lifetime:?}"
    );
    let node_a = l.node(a.tcp_addr()).unwrap();
    assert_eq!(
        node_topics(&node_a),
        [("other".to_owned(), false), ("t".to_owned(), false)]
    );
}

#[test]
fn put_config_lookupd_addresses_moves_the_broker_to_another_lookupd() {
    let old = Nsqlookupd::start(&[]);
    let new = Nsqlookupd::start(&[]);
    let a = registered_nsqd(&[&old], &[]);
    a.http_post_ok("/topic/create?topic=t");
    a.http_post_ok("/channel/create?topic=t&channel=c");
    wait_until(WITHIN, "A registered with the old lookupd", || {
        same(old.producer_tcp_addrs("t"), vec![addr(&a)])
    });
    assert_eq!(new.nodes(), Vec::<Value>::new());

    let body = serde_json::json!([new.tcp_addr().to_string()]).to_string();
    let r = a.http("PUT", "/config/nsqlookupd_tcp_addresses", body.as_bytes());
    assert_eq!(
        r.status,
        200,
        "PUT /config/nsqlookupd_tcp_addresses: {}",
        r.text()
    );

    wait_until(WITHIN, "A registered with the new lookupd", || {
        same(new.producer_tcp_addrs("t"), vec![addr(&a)])?;
        same(new.channels("t"), vec!["c".to_owned()])?;
        same(node_topic_names(&new, &a), Some(vec!["t".into()]))
    });
    wait_until(WITHIN, "A gone from the old lookupd", || {
        same(old.node(a.tcp_addr()), None)?;
        same(old.producer_tcp_addrs("t"), vec![])
    });
    let r = a.http("GET", "/config/nsqlookupd_tcp_addresses", b"");
    assert_eq!(r.json(), serde_json::json!([new.tcp_addr().to_string()]));
}

#[test]
fn broker_registers_again_with_a_lookupd_restarted_on_the_same_port() {
    let port = nsq_tests::daemon::free_local_port();
    let mut first = Nsqlookupd::start_on_tcp_port(port, &[]);
    let a = registered_nsqd(&[&first], &[]);
    a.http_post_ok("/topic/create?topic=t");
    a.http_post_ok("/channel/create?topic=t&channel=c");
    wait_until(WITHIN, "A registered", || {
        same(first.producer_tcp_addrs("t"), vec![addr(&a)])
    });
    first.stop();

    // Nothing changes on the broker: it notices at its next PING (every 15 s)
    // and reconnects within its backoff.
    let second = Nsqlookupd::start_on_tcp_port(port, &[]);
    let back = Instant::now();
    wait_until(Duration::from_secs(20), "A registered again", || {
        same(second.producer_tcp_addrs("t"), vec![addr(&a)])?;
        same(second.channels("t"), vec!["c".to_owned()])
    });
    eprintln!("registered again {:?} after the restart", back.elapsed());
    let node = second.node(a.tcp_addr()).unwrap();
    assert_peer_info(&node, &a);
}

#[test]
fn broker_keeps_retrying_a_lookupd_that_is_down_and_registers_when_it_is_back() {
    let port = nsq_tests::daemon::free_local_port();
    let mut first = Nsqlookupd::start_on_tcp_port(port, &[]);
    let a = registered_nsqd(&[&first], &[]);
    a.http_post_ok("/topic/create?topic=t");
    wait_until(WITHIN, "A registered", || {
        same(first.producer_tcp_addrs("t"), vec![addr(&a)])
    });
    first.stop();

    // A change while the lookupd is down: the REGISTER fails and the broker
    // starts reconnecting (100 ms backoff, doubling).
    a.http_post_ok("/channel/create?topic=t&channel=c");
    std::thread::sleep(Duration::from_millis(1000));
    let second = Nsqlookupd::start_on_tcp_port(port, &[]);
    let back = Instant::now();
    wait_until(
        Duration::from_secs(5),
        "A registered with the new lookupd",
        || {
            same(second.producer_tcp_addrs("t"), vec![addr(&a)])?;
            same(second.channels("t"), vec!["c".to_owned()])
        },
    );
    assert!(back.elapsed() < Duration::from_secs(5));
    let node = second.node(a.tcp_addr()).expect("A in /nodes");
    assert_eq!(tcp_address(&node), addr(&a));
}

#[test]
fn ephemeral_channel_leaves_lookupd_as_soon_as_its_last_consumer_does() {
    let l = Nsqlookupd::start(&[]);
    let b = registered_nsqd(&[&l], &[]);
    b.http_post_ok("/topic/create?topic=t");
    let mut c = b.connect();
    c.subscribe("t", "c#ephemeral");
    wait_until(WITHIN, "lookupd to list the ephemeral channel", || {
        same(l.channels("t"), vec!["c#ephemeral".to_string()])
    });
    drop(c);
    // Well inside the 15 s ping that used to carry the news.
    let gone = Instant::now();
    wait_until(WITHIN, "lookupd to forget the ephemeral channel", || {
        same(l.channels("t"), Vec::<String>::new())
    });
    assert!(gone.elapsed() < WITHIN, "{:?}", gone.elapsed());
}

#[test]
fn restart_with_topics_and_a_lookupd_logs_no_error() {
    let l = Nsqlookupd::start(&[]);
    let mut b = registered_nsqd(&[&l], &[]);
    b.http_post_ok("/topic/create?topic=t");
    b.restart();
    wait_until(WITHIN, "the broker to register t again", || {
        let producers = l.lookup("t").map(|v| v["producers"].clone());
        match producers.as_ref().and_then(|p| p.as_array()) {
            Some(p) if p.len() == 1 => Ok(()),
            _ => Err(format!("{producers:?}")),
        }
    });
    let errors: Vec<String> = b
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("ERROR"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
