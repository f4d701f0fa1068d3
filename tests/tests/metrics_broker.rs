//! The broker's `GET /metrics`, scraped from the real `nsqd` after known
//! traffic and read with a Prometheus text-format parser; and the end-to-end
//! latency percentiles of `--e2e-processing-latency-percentile` in `/stats`.

use nsq_tests::prom::{self, Exposition};
use nsq_tests::{same, wait_until, Nsqd, V2Client};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn get(m: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.value(name, labels)
}

fn unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn scrape_after_known_traffic_reports_exact_topic_channel_and_client_values() {
    let nsqd = Nsqd::start(&["--msg-timeout=1s"]);
    // Channels first, so every message reaches both.
    let mut consumer = nsqd.connect();
    consumer.subscribe("orders", "billing");
    nsqd.http_post_ok("/channel/create?topic=orders&channel=audit");

    let mut producer = nsqd.connect();
    let bodies: [&[u8]; 5] = [b"one", b"two-two", b"three", b"four!", b"fifty-five"];
    for b in &bodies[..3] {
        producer.publish("orders", b);
    }
    producer.mpublish("orders", &bodies[3..]);
    let bytes: usize = bodies.iter().map(|b| b.len()).sum();

    consumer.rdy(5);
    let msgs: Vec<_> = (0..5).map(|_| consumer.next_message()).collect();
    consumer.rdy(0);
    consumer.fin(&msgs[0].id);
    consumer.fin(&msgs[1].id);
    consumer.req(&msgs[2].id, 60_000);
    // msgs[3] and msgs[4] stay in flight until --msg-timeout requeues them.
    let m = wait_until(Duration::from_secs(10), "two time-outs", || {
        let m = prom::scrape(nsqd.http_addr());
        let billing = [("topic", "orders"), ("channel", "billing")];
        same(
            m.get("nsq_topic_channel_timeout_count", &billing),
            Some(2.0),
        )?;
        Ok(m)
    });

    let t = [("topic", "orders")];
    let billing = [("topic", "orders"), ("channel", "billing")];
    let audit = [("topic", "orders"), ("channel", "audit")];
    assert_eq!(get(&m, "nsq_topic_message_count", &t), 5.0);
    assert_eq!(get(&m, "nsq_topic_message_bytes", &t), bytes as f64);
    assert_eq!(get(&m, "nsq_topic_depth", &t), 0.0);
    assert_eq!(get(&m, "nsq_topic_backend_depth", &t), 0.0);
    assert_eq!(get(&m, "nsq_topic_paused", &t), 0.0);

    assert_eq!(get(&m, "nsq_topic_channel_message_count", &billing), 5.0);
    assert_eq!(get(&m, "nsq_topic_channel_requeue_count", &billing), 1.0);
    assert_eq!(get(&m, "nsq_topic_channel_timeout_count", &billing), 2.0);
    assert_eq!(get(&m, "nsq_topic_channel_depth", &billing), 2.0);
    assert_eq!(get(&m, "nsq_topic_channel_backend_depth", &billing), 0.0);
    assert_eq!(get(&m, "nsq_topic_channel_in_flight_count", &billing), 0.0);
    assert_eq!(get(&m, "nsq_topic_channel_deferred_count", &billing), 1.0);
    assert_eq!(get(&m, "nsq_topic_channel_clients", &billing), 1.0);

    assert_eq!(get(&m, "nsq_topic_channel_message_count", &audit), 5.0);
    assert_eq!(get(&m, "nsq_topic_channel_depth", &audit), 5.0);
    assert_eq!(get(&m, "nsq_topic_channel_requeue_count", &audit), 0.0);
    assert_eq!(get(&m, "nsq_topic_channel_timeout_count", &audit), 0.0);
    assert_eq!(get(&m, "nsq_topic_channel_clients", &audit), 0.0);

    // Two FINs: one latency observation each, on the channel and its topic.
    let h = "nsq_topic_channel_e2e_processing_latency_seconds";
    assert_eq!(get(&m, &format!("{h}_count"), &billing), 2.0);
    assert_eq!(
        get(
            &m,
            &format!("{h}_bucket"),
            &[billing[0], billing[1], ("le", "+Inf")]
        ),
        2.0
    );
    assert_eq!(
        get(
            &m,
            &format!("{h}_bucket"),
            &[billing[0], billing[1], ("le", "60")]
        ),
        2.0
    );
    let sum = get(&m, &format!("{h}_sum"), &billing);
    assert!(sum > 0.0 && sum < 60.0, "latency sum {sum}");
    assert_eq!(get(&m, &format!("{h}_count"), &audit), 0.0);
    let th = "nsq_topic_e2e_processing_latency_seconds";
    assert_eq!(get(&m, &format!("{th}_count"), &t), 2.0);
    assert_eq!(get(&m, &format!("{th}_sum"), &t), sum);
    // No percentiles were asked for: no percentile gauges.
    assert!(m.named("nsq_topic_e2e_processing_latency_99").is_empty());

    assert_eq!(get(&m, "nsq_topics", &[]), 1.0);
    assert_eq!(get(&m, "nsq_channels", &[]), 2.0);
    assert_eq!(get(&m, "nsq_clients", &[]), 2.0);
    assert_eq!(get(&m, "nsq_producers", &[]), 1.0);
    assert_eq!(get(&m, "nsq_healthy", &[]), 1.0);
    // Our own version and compiler live here, not in nsqd's /info or /stats.
    let rustc = m.label_values("nsq_build_info", "rustc");
    let rustc = rustc.first().expect("nsq_build_info has a rustc label");
    assert_eq!(
        get(
            &m,
            "nsq_build_info",
            &[
                ("version", "1.3.0"),
                ("broker_version", env!("CARGO_PKG_VERSION")),
                ("rustc", rustc),
            ]
        ),
        1.0
    );

    for (name, kind) in [
        ("nsq_topic_message_count", "counter"),
        ("nsq_topic_message_bytes", "counter"),
        ("nsq_topic_depth", "gauge"),
        ("nsq_topic_backend_depth", "gauge"),
        ("nsq_topic_channel_message_count", "counter"),
        ("nsq_topic_channel_requeue_count", "counter"),
        ("nsq_topic_channel_timeout_count", "counter"),
        ("nsq_topic_channel_depth", "gauge"),
        ("nsq_topic_channel_backend_depth", "gauge"),
        ("nsq_topic_channel_in_flight_count", "gauge"),
        ("nsq_topic_channel_deferred_count", "gauge"),
        ("nsq_topic_channel_clients", "gauge"),
        ("nsq_topic_e2e_processing_latency_seconds", "histogram"),
        (
            "nsq_topic_channel_e2e_processing_latency_seconds",
            "histogram",
        ),
        ("nsq_healthy", "gauge"),
        ("nsq_clients", "gauge"),
        ("nsq_mem_heap_in_use_bytes", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
    ] {
        assert_eq!(m.kind(name), Some(kind), "TYPE of {name}");
    }

    let rss = get(&m, "process_resident_memory_bytes", &[]);
    assert!(rss > 1e6, "rss {rss}");
    assert!(get(&m, "nsq_mem_heap_in_use_bytes", &[]) > 0.0);
    assert!(get(&m, "process_open_fds", &[]) >= 5.0);
    assert!(get(&m, "process_max_fds", &[]) >= get(&m, "process_open_fds", &[]));
    assert!(get(&m, "process_cpu_seconds_total", &[]) >= 0.0);
    let started = get(&m, "process_start_time_seconds", &[]);
    assert!(
        (unix_secs() - 120.0..=unix_secs() + 1.0).contains(&started),
        "start time {started}"
    );

    // Without --e2e-processing-latency-percentile, /stats keeps nsqd's empty result.
    let stats = nsqd.stats();
    let t = nsq_tests::inspect::stats_topic(&stats, "orders").unwrap();
    assert_eq!(
        t["e2e_processing_latency"],
        serde_json::json!({"count": 0, "percentiles": null})
    );
}

#[test]
fn e2e_percentiles_show_in_stats_metrics_and_text_when_asked_for() {
    let nsqd = Nsqd::start(&[
        "--e2e-processing-latency-percentile=0.5",
        "--e2e-processing-latency-percentile=1.0",
        "--e2e-processing-latency-window-time=10m",
    ]);
    let mut c = nsqd.connect();
    c.subscribe("t", "c");
    nsqd.http_post_ok("/channel/create?topic=t&channel=idle");
    let mut p = nsqd.connect();
    for body in [b"a", b"b", b"c"] {
        p.publish("t", body);
    }
    std::thread::sleep(Duration::from_millis(300));
    c.rdy(3);
    let mut latest = 0.0f64;
    for _ in 0..3 {
        let m = c.next_message();
        c.fin(&m.id);
        let fin_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as f64;
        latest = latest.max(fin_at - m.timestamp as f64);
    }
    let stats = wait_until(Duration::from_secs(5), "three FINs counted", || {
        let stats = nsqd.stats();
        let ch = nsq_tests::inspect::stats_channel(&stats, "t", "c").cloned();
        same(
            ch.map(|c| c["e2e_processing_latency"]["count"].clone()),
            Some(serde_json::json!(3)),
        )?;
        Ok(stats)
    });
    // Command-line percentiles are kept high to low, as nsqd does.
    let check = |result: &serde_json::Value, count: u64| -> (f64, f64) {
        assert_eq!(result["count"], count, "{result}");
        let ps = result["percentiles"].as_array().expect("percentiles");
        assert_eq!(ps.len(), 2, "{result}");
        assert_eq!(ps[0]["quantile"].as_f64(), Some(1.0), "{result}");
        assert_eq!(ps[1]["quantile"].as_f64(), Some(0.5), "{result}");
        let (max, median) = (
            ps[0]["value"].as_f64().unwrap(),
            ps[1]["value"].as_f64().unwrap(),
        );
        assert!(
            (3e8..=latest + 5e8).contains(&max) && median <= max && median >= 3e8,
            "{result} (latest FIN latency seen by the consumer: {latest})"
        );
        (max, median)
    };
    let topic = nsq_tests::inspect::stats_topic(&stats, "t").unwrap();
    let channel = nsq_tests::inspect::stats_channel(&stats, "t", "c").unwrap();
    let idle = nsq_tests::inspect::stats_channel(&stats, "t", "idle").unwrap();
    let (max, median) = check(&channel["e2e_processing_latency"], 3);
    assert_eq!(check(&topic["e2e_processing_latency"], 3), (max, median));
    assert_eq!(
        idle["e2e_processing_latency"],
        serde_json::json!({"count": 0, "percentiles": [
            {"quantile": 1, "value": 0}, {"quantile": 0.5, "value": 0}
        ]})
    );

    let m = prom::scrape(nsqd.http_addr());
    let ch = [("topic", "t"), ("channel", "c")];
    assert_eq!(
        m.kind("nsq_topic_channel_e2e_processing_latency_100"),
        Some("gauge")
    );
    assert_eq!(
        m.value("nsq_topic_channel_e2e_processing_latency_100", &ch),
        max
    );
    assert_eq!(
        m.value("nsq_topic_channel_e2e_processing_latency_50", &ch),
        median
    );
    assert_eq!(
        m.value("nsq_topic_e2e_processing_latency_100", &[("topic", "t")]),
        max
    );
    assert_eq!(
        m.value("nsq_topic_e2e_processing_latency_50", &[("topic", "t")]),
        median
    );
    let h = "nsq_topic_channel_e2e_processing_latency_seconds_bucket";
    assert_eq!(m.value(h, &[ch[0], ch[1], ("le", "0.25")]), 0.0);
    assert_eq!(m.value(h, &[ch[0], ch[1], ("le", "600")]), 3.0);

    // The text /stats prints the values in nsqd's human units after "e2e%:".
    let text = nsqd.http("GET", "/stats", b"").text();
    let human = |ns: f64| {
        if ns > 1e9 {
            format!("{:.1}s", ns / 1e9)
        } else {
            format!("{:.1}ms", ns / 1e6)
        }
    };
    let want = format!("e2e%: {}, {}\n", human(max), human(median));
    assert!(
        text.lines().filter(|l| l.contains(want.trim_end())).count() == 2,
        "want two lines with {want:?} (topic and channel c) in:\n{text}"
    );
}

#[test]
fn deleted_topics_and_channels_disappear_from_metrics() {
    let nsqd = Nsqd::start(&[]);
    for t in ["a", "b"] {
        nsqd.http_post_ok(&format!("/topic/create?topic={t}"));
    }
    for (t, c) in [("a", "c1"), ("a", "c2"), ("b", "c1")] {
        nsqd.http_post_ok(&format!("/channel/create?topic={t}&channel={c}"));
    }
    let mut eph = nsqd.connect();
    eph.subscribe("a", "tmp#ephemeral");
    nsqd.connect().publish("a", b"x");

    let channels = |m: &Exposition| {
        let mut v: Vec<(String, String)> = m
            .named("nsq_topic_channel_depth")
            .iter()
            .map(|s| (s.labels["topic"].clone(), s.labels["channel"].clone()))
            .collect();
        v.sort();
        v
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let m = prom::scrape(nsqd.http_addr());
    assert_eq!(
        channels(&m),
        pairs(&[
            ("a", "c1"),
            ("a", "c2"),
            ("a", "tmp#ephemeral"),
            ("b", "c1")
        ])
    );

    nsqd.http_post_ok("/channel/delete?topic=a&channel=c1");
    nsqd.http_post_ok("/topic/delete?topic=b");
    drop(eph);
    let m = wait_until(
        Duration::from_secs(5),
        "the ephemeral channel to go",
        || {
            let m = prom::scrape(nsqd.http_addr());
            same(channels(&m), pairs(&[("a", "c2")]))?;
            Ok(m)
        },
    );
    // No series at all is left for what was deleted, in any family.
    for s in &m.series {
        let t = s.labels.get("topic").map(String::as_str);
        let c = s.labels.get("channel").map(String::as_str);
        assert!(t != Some("b"), "series of deleted topic b: {s:?}");
        assert!(
            !(t == Some("a") && matches!(c, Some("c1" | "tmp#ephemeral"))),
            "series of a deleted channel: {s:?}"
        );
    }
    assert_eq!(
        m.label_values("nsq_topic_message_count", "topic"),
        ["a".to_owned()].into()
    );
    assert_eq!(m.value("nsq_topics", &[]), 1.0);
    assert_eq!(m.value("nsq_channels", &[]), 1.0);
}

#[test]
fn metrics_does_not_disturb_the_nsqd_api() {
    let nsqd = Nsqd::start(&[]);
    let r = nsqd.http("POST", "/metrics", b"");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(nsqd.http("GET", "/ping", b"").text(), "OK");
    let mut c: V2Client = nsqd.connect();
    c.publish("t", b"m");
    let m = prom::scrape(nsqd.http_addr());
    assert_eq!(m.value("nsq_topic_message_count", &[("topic", "t")]), 1.0);
    // nsqd does not log /metrics (Prometheus polls it every few seconds).
    assert!(
        !nsqd
            .stderr_lines()
            .iter()
            .any(|l| l.contains("GET /metrics")),
        "{:#?}",
        nsqd.stderr_lines()
    );
}
