//! A scrape of a broker with 1,000 topics × 3 channels: every series is there,
//! the exposition parses, and it answers quickly. (The scrape-time figure
//! that matters is the release-build benchmark, `cargo bench -p broker --bench
//! metrics_scrape`; this test holds a release `nsqd` to the same 50 ms and a
//! debug build to a loose bound.)

use nsq_tests::nsqd::{new_data_dir, nsqd_binary};
use nsq_tests::{prom, Nsqd};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPICS: usize = 1000;
const CHANNELS: usize = 3;

#[test]
fn a_broker_with_1000_topics_of_3_channels_answers_a_scrape_quickly() {
    // nsqd.dat lists them, so start-up creates them without rewriting it 4,000 times.
    let dir = new_data_dir();
    let meta = serde_json::json!({
        "version": "1.3.0",
        "topics": (0..TOPICS).map(|t| serde_json::json!({
            "name": format!("topic_{t:04}"),
            "paused": false,
            "channels": (0..CHANNELS).map(|c| serde_json::json!({
                "name": format!("channel_{c}"), "paused": false,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(dir.path().join("nsqd.dat"), meta.to_string()).unwrap();
    let nsqd = Nsqd::start_in(Arc::new(dir), &[]);
    let mut c = nsqd.connect();
    c.subscribe("topic_0500", "channel_1");
    nsqd.connect().publish("topic_0500", b"hello");
    c.rdy(1);
    let m = c.next_message();
    c.fin(&m.id);

    let text = prom::scrape_text(nsqd.http_addr());
    let mut times = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        let body = prom::scrape_text(nsqd.http_addr());
        times.push(t.elapsed());
        assert!(body.len() > 1_000_000);
    }
    times.sort();
    let median = times[times.len() / 2];

    let m = prom::parse(&text);
    assert_eq!(m.named("nsq_topic_depth").len(), TOPICS);
    for family in [
        "nsq_topic_channel_depth",
        "nsq_topic_channel_message_count",
        "nsq_topic_channel_clients",
        "nsq_topic_channel_e2e_processing_latency_seconds_count",
    ] {
        assert_eq!(m.named(family).len(), TOPICS * CHANNELS, "{family}");
    }
    let ch = [("topic", "topic_0500"), ("channel", "channel_1")];
    assert_eq!(m.value("nsq_topic_channel_clients", &ch), 1.0);
    assert_eq!(m.value("nsq_topic_channel_message_count", &ch), 1.0);
    assert_eq!(
        m.value(
            "nsq_topic_channel_e2e_processing_latency_seconds_count",
            &ch
        ),
        1.0
    );
    assert_eq!(m.value("nsq_channels", &[]), (TOPICS * CHANNELS) as f64);

    let release = nsqd_binary()
        .components()
        .any(|c| c.as_os_str() == "release");
    let limit = if release {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(1000)
    };
    eprintln!(
        "scrape of {} series ({:.1} MB) from {}: median {median:?}, all {times:?}",
        m.series.len(),
        text.len() as f64 / 1e6,
        nsqd_binary().display()
    );
    assert!(median < limit, "median scrape {median:?} (limit {limit:?})");
}
