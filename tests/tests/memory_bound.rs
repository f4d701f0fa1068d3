//! `--max-mem-queue-bytes` (beyond nsqd): a topic or channel whose memory
//! queue holds that many bytes sends the rest to disk, whatever
//! `--mem-queue-size` allows, so large messages cannot fill the RAM; nothing
//! is lost or reordered.

use nsq_tests::Nsqd;
use serde_json::Value;

const BODY: usize = 1_000_000;
const COUNT: usize = 100;

fn rss_bytes(nsqd: &Nsqd) -> u64 {
    let pid = nsqd.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn channel_stats(nsqd: &Nsqd, topic: &str) -> Value {
    nsqd.stats()["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == topic)
        .expect("topic")["channels"][0]
        .clone()
}

/// Publishes COUNT 1 MB messages to a channel nobody reads; returns the
/// broker's resident set and the channel's stats.
fn fill(nsqd: &Nsqd) -> (u64, Value) {
    nsqd.http_post_ok("/topic/create?topic=big");
    nsqd.http_post_ok("/channel/create?topic=big&channel=c");
    for i in 0..COUNT {
        let mut body = vec![b'a' + (i % 26) as u8; BODY];
        body[..8].copy_from_slice(format!("{i:08}").as_bytes());
        let r = nsqd.http("POST", "/pub?topic=big", &body);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    (rss_bytes(nsqd), channel_stats(nsqd, "big"))
}

#[test]
fn large_messages_go_to_disk_past_the_byte_bound_and_come_back_in_order() {
    let bound = 8 * 1024 * 1024;
    let nsqd = Nsqd::start(&[&format!("--max-mem-queue-bytes={bound}")]);
    let (rss, ch) = fill(&nsqd);
    // 8 messages of 1,000,026 bytes fit in 8 MiB; the other 92 are on disk.
    assert_eq!(ch["depth"], COUNT as u64, "{ch}");
    assert_eq!(ch["backend_depth"], (COUNT - 8) as u64, "{ch}");
    // Allocator and HTTP buffers come on top; unbounded, the queue alone is 100 MB.
    assert!(rss < 80 << 20, "RSS {rss} bytes with an 8 MiB bound");

    let mut c = nsqd.connect();
    c.subscribe("big", "c");
    c.rdy(COUNT as u64);
    let mut order = Vec::new();
    for _ in 0..COUNT {
        let m = c.next_message();
        assert_eq!(m.body.len(), BODY);
        order.push(
            String::from_utf8_lossy(&m.body[..8])
                .parse::<usize>()
                .unwrap(),
        );
        c.fin(&m.id);
    }
    // Memory and disk are read alternately (as nsqd's select does), so
    // order holds within each: all arrive, once.
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, (0..COUNT).collect::<Vec<_>>());
    let from_disk: Vec<usize> = order.iter().copied().filter(|&i| i >= 8).collect();
    assert!(from_disk.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}

#[test]
fn without_the_bound_the_same_messages_stay_in_memory() {
    // nsqd's behaviour, and what the bound is for: 100 MB resident.
    let nsqd = Nsqd::start(&[]);
    let (rss, ch) = fill(&nsqd);
    assert_eq!(ch["backend_depth"], 0, "{ch}");
    assert!(rss > (COUNT * BODY) as u64, "RSS {rss}");
}
