//! nsqlookupd's `GET /metrics`: producers, topics, channels and tombstones,
//! scraped from the real `nsqlookupd` with a broker registered in it.

use nsq_tests::prom::{self, Exposition};
use nsq_tests::{registered_nsqd, same, wait_until, Nsqlookupd};
use std::time::Duration;

fn counts(m: &Exposition) -> [f64; 4] {
    [
        "nsq_lookupd_producers",
        "nsq_lookupd_topics",
        "nsq_lookupd_channels",
        "nsq_lookupd_tombstones",
    ]
    .map(|n| m.value(n, &[]))
}

#[test]
fn lookupd_metrics_count_producers_topics_channels_and_tombstones() {
    let l = Nsqlookupd::start(&["--tombstone-lifetime=60s"]);
    let m = prom::scrape(l.http_addr());
    assert_eq!(counts(&m), [0.0; 4]);
    for name in [
        "nsq_lookupd_producers",
        "nsq_lookupd_topics",
        "nsq_lookupd_channels",
        "nsq_lookupd_tombstones",
    ] {
        assert_eq!(m.kind(name), Some("gauge"), "{name}");
    }

    let nsqd = registered_nsqd(&[&l], &[]);
    nsqd.http_post_ok("/topic/create?topic=t");
    nsqd.http_post_ok("/channel/create?topic=t&channel=c1");
    nsqd.http_post_ok("/channel/create?topic=t&channel=c2");
    l.http_post_ok("/topic/create?topic=u");
    let t = [("topic", "t")];
    let m = wait_until(
        Duration::from_secs(10),
        "the broker's registrations",
        || {
            let m = prom::scrape(l.http_addr());
            same(counts(&m), [1.0, 2.0, 2.0, 0.0])?;
            Ok(m)
        },
    );
    assert_eq!(m.value("nsq_lookupd_topic_producers", &t), 1.0);
    assert_eq!(m.value("nsq_lookupd_topic_channels", &t), 2.0);
    assert_eq!(m.value("nsq_lookupd_topic_tombstones", &t), 0.0);
    assert_eq!(
        m.value("nsq_lookupd_topic_producers", &[("topic", "u")]),
        0.0
    );
    assert_eq!(
        m.value("nsq_lookupd_topic_channels", &[("topic", "u")]),
        0.0
    );

    let node = format!("127.0.0.1:{}", nsqd.http_addr().port());
    l.http_post_ok(&format!("/topic/tombstone?topic=t&node={node}"));
    let m = prom::scrape(l.http_addr());
    assert_eq!(counts(&m), [1.0, 2.0, 2.0, 1.0]);
    assert_eq!(m.value("nsq_lookupd_topic_producers", &t), 0.0);
    assert_eq!(m.value("nsq_lookupd_topic_tombstones", &t), 1.0);

    // A deleted topic takes its series with it.
    l.http_post_ok("/topic/delete?topic=u");
    let m = prom::scrape(l.http_addr());
    assert!(m
        .get("nsq_lookupd_topic_producers", &[("topic", "u")])
        .is_none());
    assert_eq!(m.value("nsq_lookupd_topics", &[]), 1.0);

    // The broker going away leaves no producer behind.
    drop(nsqd);
    wait_until(Duration::from_secs(10), "the producer to go", || {
        same(
            prom::scrape(l.http_addr()).value("nsq_lookupd_producers", &[]),
            0.0,
        )
    });
}
