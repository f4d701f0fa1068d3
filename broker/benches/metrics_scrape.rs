//! How long a `/metrics` scrape takes on a broker with 1,000 topics × 3
//! channels, and whether scraping slows message flow.
//!
//! `cargo bench -p broker --bench metrics_scrape` prints, for each case, the
//! scrape time (min / median / p90 / max over the runs) and the size of the
//! exposition. The target is a median under 50 ms. The last case publishes,
//! delivers and finishes messages in a loop on another thread and compares
//! that loop's per-round latency with and without a scraper running.
//!
//! Options: `TOPICS=1000 CHANNELS=3 RUNS=30` in the environment.

use broker::client::ClientShared;
use broker::e2e;
use broker::metrics::{self, Scrape};
use broker::nsqd::Nsqd;
use broker::options::Options;
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A broker whose `nsqd.dat` already lists the topics and channels (so start-up
/// does not rewrite it once per channel), with a little traffic on every channel.
fn broker(dir: &std::path::Path, topics: usize, channels: usize, extra: &[&str]) -> Arc<Nsqd> {
    let meta = serde_json::json!({
        "version": "1.3.0",
        "topics": (0..topics).map(|t| serde_json::json!({
            "name": format!("topic_{t:04}"),
            "paused": false,
            "channels": (0..channels).map(|c| serde_json::json!({
                "name": format!("channel_{c}"), "paused": false,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("nsqd.dat"), meta.to_string()).expect("write nsqd.dat");
    let mut args = vec![
        "nsqd".to_owned(),
        format!("--data-path={}", dir.display()),
        "--log-level=warn".to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let opts = Options::parse_from(args).expect("options");
    e2e::configure(
        opts.e2e_processing_latency_window_time,
        &opts.e2e_processing_latency_percentiles,
    );
    let nsqd = Nsqd::new(opts).expect("broker starts");
    let client = Arc::new(ClientShared::new(1, "127.0.0.1:1".into(), 0));
    let mut out = BytesMut::new();
    let mut rng = 1u64;
    for topic in nsqd.topics() {
        // Memory only (no diskqueue): nothing to wait for.
        let _ = topic
            .put_messages((0..10).map(|i| Bytes::from(format!("message {i}"))), 0)
            .expect("publish");
        for ch in topic.channels() {
            ch.add_client(Arc::clone(&client), 0).expect("subscribe");
            out.clear();
            let n = ch.take(&client, 8, Duration::from_secs(60), 0, &mut rng, &mut out);
            let ids = message_ids(&out, n);
            ch.finish_many(client.id, &ids, |_, e| panic!("FIN failed: {e}"));
        }
    }
    nsqd
}

/// The IDs of the `n` message frames in `out`.
fn message_ids(out: &[u8], n: usize) -> Vec<[u8; 16]> {
    let mut ids = Vec::with_capacity(n);
    let mut at = 0;
    while ids.len() < n {
        let size = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
        // size, frame type (4), timestamp (8), attempts (2), then the ID.
        let id = &out[at + 18..at + 34];
        ids.push(id.try_into().unwrap());
        at += 4 + size;
    }
    ids
}

fn summary(mut d: Vec<Duration>) -> String {
    d.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "min {:.2} ms, median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        ms(d[0]),
        ms(d[d.len() / 2]),
        ms(d[d.len() * 9 / 10]),
        ms(d[d.len() - 1])
    )
}

fn scrape_case(name: &str, nsqd: &Nsqd, runs: usize) {
    let text = metrics::render(nsqd);
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    for _ in 0..3 {
        metrics::render(nsqd);
    }
    let (mut total, mut collect, mut encode) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t0 = Instant::now();
        let scrape = Scrape::collect(nsqd);
        let t1 = Instant::now();
        let body = scrape.encode();
        let t2 = Instant::now();
        std::hint::black_box(body);
        collect.push(t1 - t0);
        encode.push(t2 - t1);
        total.push(t2 - t0);
    }
    println!(
        "{name}: {series} series, {:.1} MB\n  scrape  {}\n  collect {}\n  encode  {}",
        text.len() as f64 / 1e6,
        summary(total),
        summary(collect),
        summary(encode)
    );
}

/// Publish one message, deliver it and FIN it, over and over, on its own
/// topic; returns each round's latency.
fn flow(nsqd: &Arc<Nsqd>, rounds: usize, scraping: &AtomicBool) -> Vec<Duration> {
    let topic = nsqd.get_topic("flow");
    let ch = nsqd.get_channel(&topic, "c");
    let client = Arc::new(ClientShared::new(2, "127.0.0.1:2".into(), 0));
    ch.add_client(Arc::clone(&client), 0).expect("subscribe");
    let mut out = BytesMut::new();
    let mut rng = 1u64;
    let mut lat = Vec::with_capacity(rounds);
    while lat.len() < rounds {
        let t = Instant::now();
        let _ = topic
            .put_messages([Bytes::from_static(b"x")], 0)
            .expect("publish");
        out.clear();
        let n = ch.take(&client, 1, Duration::from_secs(60), 0, &mut rng, &mut out);
        let ids = message_ids(&out, n);
        ch.finish_many(client.id, &ids, |_, e| panic!("FIN failed: {e}"));
        if scraping.load(Ordering::Relaxed) {
            lat.push(t.elapsed());
        }
    }
    lat
}

fn flow_case(nsqd: &Arc<Nsqd>) {
    let pct = |mut d: Vec<Duration>| {
        d.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        format!(
            "median {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            us(d[d.len() / 2]),
            us(d[d.len() * 99 / 100]),
            us(d[d.len() * 999 / 1000]),
            us(d[d.len() - 1])
        )
    };
    let always = AtomicBool::new(true);
    let quiet = flow(nsqd, 2_000_000, &always);
    let running = AtomicBool::new(true);
    let measuring = AtomicBool::new(false);
    let busy = std::thread::scope(|s| {
        let scraper = s.spawn(|| {
            let mut scrapes = 0;
            while running.load(Ordering::Relaxed) {
                measuring.store(true, Ordering::Relaxed);
                std::hint::black_box(metrics::render(nsqd));
                scrapes += 1;
            }
            scrapes
        });
        let lat = flow(nsqd, 2_000_000, &measuring);
        running.store(false, Ordering::Relaxed);
        let scrapes = scraper.join().expect("scraper");
        (lat, scrapes)
    });
    println!(
        "message flow (PUB+deliver+FIN per round):\n  quiet           {}\n  while scraping  {} ({} scrapes)",
        pct(quiet),
        pct(busy.0),
        busy.1
    );
}

fn main() {
    let topics = env("TOPICS", 1000);
    let channels = env("CHANNELS", 3);
    let runs = env("RUNS", 30);
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let dir = tempfile::tempdir().expect("temp dir");
    let nsqd = broker(dir.path(), topics, channels, &[]);
    scrape_case(
        &format!("{topics} topics x {channels} channels"),
        &nsqd,
        runs,
    );
    flow_case(&nsqd);
    drop(nsqd);

    let dir = tempfile::tempdir().expect("temp dir");
    let nsqd = broker(
        dir.path(),
        topics,
        channels,
        &["--e2e-processing-latency-percentile=1.0,0.99,0.5"],
    );
    scrape_case(
        &format!("{topics} topics x {channels} channels, 3 e2e percentiles"),
        &nsqd,
        runs,
    );
}
