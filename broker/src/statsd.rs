//! The statsd push loop (`--statsd-address`), as nsqd's `statsdLoop` does it.
//!
//! Every `--statsd-interval` the loop takes a `/stats` snapshot (without
//! clients) and sends one line per key over UDP:
//!
//! - keys are nsqd's: `topic.<t>.message_count`, `topic.<t>.channel.<c>.depth`,
//!   `topic.<t>...e2e_processing_latency_<pct>`, `mem.heap_in_use_bytes`, ...,
//!   each after the prefix (`--statsd-prefix`, `%s` replaced by the
//!   broadcast address and HTTP port with `.` and `:` turned into `_`, and a
//!   `.` added when missing);
//! - counters (`|c`) carry the increase since the previous push, gauges
//!   (`|g`) the current value;
//! - whole lines are packed into datagrams of at most
//!   `--statsd-udp-packet-size` bytes (a longer line goes alone), and the
//!   datagrams are spread over the interval less one second; at shutdown the
//!   rest go at once;
//! - `--statsd-exclude-ephemeral` leaves out `#ephemeral` topics and channels;
//!   `--statsd-mem-stats` adds the `mem.*` keys.
//!
//! [`lines`], [`packets`] and [`prefix`] are pure; [`run`] does the I/O.

use crate::nsqd::Nsqd;
use crate::stats::{self, ChannelStats, MemStats, Stats, StatsFilter, TopicStats};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::watch;

const EPHEMERAL: &str = "#ephemeral";

/// Runs until shutdown; [`crate::server::run`] starts it when `--statsd-address` is set.
pub async fn run(nsqd: Arc<Nsqd>) {
    let opts = nsqd.opts();
    let interval = opts.statsd_interval;
    if interval.is_zero() {
        tracing::error!("STATSD: --statsd-interval must be positive; not pushing stats");
        return;
    }
    let http_port = match opts.broadcast_http_port {
        0 => nsqd.http_addr.get().map_or(0, SocketAddr::port),
        p => p,
    };
    let prefix = prefix(&opts.statsd_prefix, &opts.broadcast_address, http_port);
    drop(opts);
    let mut shutdown = nsqd.shutdown_signal();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = Stats::default();
    let mut last_mem = MemStats::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|&exiting| exiting) => break,
        }
        let opts = nsqd.opts();
        let addr = opts.statsd_address.clone();
        let socket = match connect(&addr).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("failed to create UDP socket to statsd({addr}) - {e}");
                continue;
            }
        };
        tracing::info!("STATSD: pushing stats to {addr}");
        let filter = StatsFilter {
            include_clients: false,
            ..StatsFilter::default()
        };
        let snapshot = stats::collect(&nsqd, &filter);
        let mem = opts.statsd_mem_stats.then(stats::mem_stats);
        let lines = lines(
            &prefix,
            &snapshot,
            &last,
            mem.map(|m| (m, last_mem)),
            opts.statsd_exclude_ephemeral,
        );
        last = snapshot;
        if let Some(m) = mem {
            last_mem = m;
        }
        let packets = packets(&lines, opts.statsd_udp_packet_size);
        drop(opts);
        spread(
            &socket,
            &packets,
            interval.saturating_sub(Duration::from_secs(1)),
            &mut shutdown,
        )
        .await;
    }
    tracing::info!("STATSD: closing");
}

/// A UDP socket connected to `addr` (`host:port`), resolved within a second.
async fn connect(addr: &str) -> std::io::Result<UdpSocket> {
    let resolve = tokio::net::lookup_host(addr);
    let target = tokio::time::timeout(Duration::from_secs(1), resolve)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "i/o timeout"))??
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let local: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    Ok(socket)
}

/// Sends the datagrams one per `over / n`, the first at once; after shutdown
/// begins the rest go without waiting. Send errors are ignored, as in nsqd.
async fn spread(
    socket: &UdpSocket,
    packets: &[Vec<u8>],
    over: Duration,
    shutdown: &mut watch::Receiver<bool>,
) {
    if packets.is_empty() {
        return;
    }
    let gap = over / packets.len() as u32;
    for p in packets {
        let _ = socket.send(p).await;
        if gap.is_zero() || *shutdown.borrow() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(gap) => {}
            _ = shutdown.wait_for(|&exiting| exiting) => {}
        }
    }
}

/// nsqd's statsd prefix: `%s` becomes the host key of
/// `<broadcast_address>:<http_port>` (`.` and `:` → `_`); a non-empty prefix
/// ends with `.`.
pub fn prefix(template: &str, broadcast_address: &str, http_port: u16) -> String {
    if template.is_empty() {
        return String::new();
    }
    let host = if broadcast_address.contains(':') {
        format!("[{broadcast_address}]:{http_port}")
    } else {
        format!("{broadcast_address}:{http_port}")
    };
    let key = host.replace(['.', ':'], "_");
    let mut p = template.replace("%s", &key);
    if !p.ends_with('.') {
        p.push('.');
    }
    p
}

/// One push's lines (each ending in `\n`), in nsqd's order. Counters are the
/// increase since `last` (a topic or channel not in `last` counts from 0);
/// `mem` is `(now, at the previous push)`.
pub fn lines(
    prefix: &str,
    stats: &Stats,
    last: &Stats,
    mem: Option<(MemStats, MemStats)>,
    exclude_ephemeral: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut put = |stat: String, value: i64, kind: &str| {
        out.push(format!("{prefix}{stat}:{value}|{kind}\n"));
    };
    let last_topics: HashMap<&str, &TopicStats> = last
        .topics
        .iter()
        .flatten()
        .map(|t| (t.topic_name.as_str(), t))
        .collect();
    let no_channels = Vec::new();
    for topic in stats.topics.iter().flatten() {
        if exclude_ephemeral && topic.topic_name.ends_with(EPHEMERAL) {
            continue;
        }
        let name = &topic.topic_name;
        let last_topic = last_topics.get(name.as_str());
        let (last_count, last_bytes) =
            last_topic.map_or((0, 0), |t| (t.message_count, t.message_bytes));
        put(
            format!("topic.{name}.message_count"),
            diff(topic.message_count, last_count),
            "c",
        );
        put(
            format!("topic.{name}.message_bytes"),
            diff(topic.message_bytes, last_bytes),
            "c",
        );
        put(format!("topic.{name}.depth"), topic.depth, "g");
        put(
            format!("topic.{name}.backend_depth"),
            topic.backend_depth,
            "g",
        );
        for p in topic.e2e_processing_latency.percentiles.iter().flatten() {
            put(
                format!(
                    "topic.{name}.e2e_processing_latency_{}",
                    crate::metrics::percent_suffix(p.quantile)
                ),
                p.value as i64,
                "g",
            );
        }
        let last_channels: HashMap<&str, &ChannelStats> = last_topic
            .map_or(&no_channels, |t| &t.channels)
            .iter()
            .map(|c| (c.channel_name.as_str(), c))
            .collect();
        for ch in &topic.channels {
            if exclude_ephemeral && ch.channel_name.ends_with(EPHEMERAL) {
                continue;
            }
            let key = format!("topic.{name}.channel.{}", ch.channel_name);
            let last_ch = last_channels.get(ch.channel_name.as_str());
            let (m, r, t) = last_ch.map_or((0, 0, 0), |c| {
                (c.message_count, c.requeue_count, c.timeout_count)
            });
            put(
                format!("{key}.message_count"),
                diff(ch.message_count, m),
                "c",
            );
            put(format!("{key}.depth"), ch.depth, "g");
            put(format!("{key}.backend_depth"), ch.backend_depth, "g");
            put(format!("{key}.in_flight_count"), ch.in_flight_count, "g");
            put(format!("{key}.deferred_count"), ch.deferred_count, "g");
            put(
                format!("{key}.requeue_count"),
                diff(ch.requeue_count, r),
                "c",
            );
            put(
                format!("{key}.timeout_count"),
                diff(ch.timeout_count, t),
                "c",
            );
            put(format!("{key}.clients"), ch.client_count as i64, "g");
            for p in ch.e2e_processing_latency.percentiles.iter().flatten() {
                put(
                    format!(
                        "{key}.e2e_processing_latency_{}",
                        crate::metrics::percent_suffix(p.quantile)
                    ),
                    p.value as i64,
                    "g",
                );
            }
        }
    }
    if let Some((m, last_m)) = mem {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        put("mem.heap_objects".into(), g(m.heap_objects), "g");
        put("mem.heap_idle_bytes".into(), g(m.heap_idle_bytes), "g");
        put("mem.heap_in_use_bytes".into(), g(m.heap_in_use_bytes), "g");
        put(
            "mem.heap_released_bytes".into(),
            g(m.heap_released_bytes),
            "g",
        );
        put("mem.gc_pause_usec_100".into(), g(m.gc_pause_usec_100), "g");
        put("mem.gc_pause_usec_99".into(), g(m.gc_pause_usec_99), "g");
        put("mem.gc_pause_usec_95".into(), g(m.gc_pause_usec_95), "g");
        put("mem.next_gc_bytes".into(), g(m.next_gc_bytes), "g");
        put(
            "mem.gc_runs".into(),
            i64::from(m.gc_total_runs.wrapping_sub(last_m.gc_total_runs)),
            "c",
        );
    }
    out
}

/// Go's `int64(now - last)` on uint64 counters (a reset wraps negative).
fn diff(now: u64, last: u64) -> i64 {
    now.wrapping_sub(last) as i64
}

/// Packs whole lines into datagrams of at most `size` bytes, as nsqd's
/// boundary-buffered writer does: a line that does not fit in what is left
/// starts a new datagram, and a line longer than `size` is a datagram of its
/// own. A non-positive size means Go's default buffer, 4096.
pub fn packets(lines: &[String], size: i64) -> Vec<Vec<u8>> {
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096);
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::with_capacity(size);
    for line in lines {
        let line = line.as_bytes();
        if line.len() > size - cur.len() && !cur.is_empty() {
            out.push(std::mem::replace(&mut cur, Vec::with_capacity(size)));
        }
        if line.len() > size {
            out.push(line.to_vec());
        } else {
            cur.extend_from_slice(line);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{LatencyResult, Percentile};

    fn channel(name: &str, messages: u64) -> ChannelStats {
        ChannelStats {
            channel_name: name.into(),
            depth: 2,
            backend_depth: 1,
            in_flight_count: 3,
            deferred_count: 4,
            message_count: messages,
            requeue_count: 5,
            timeout_count: 6,
            client_count: 7,
            clients: None,
            paused: false,
            e2e_processing_latency: LatencyResult::default(),
        }
    }

    fn topic(name: &str, messages: u64, channels: Vec<ChannelStats>) -> TopicStats {
        TopicStats {
            topic_name: name.into(),
            channels,
            depth: 8,
            backend_depth: 9,
            message_count: messages,
            message_bytes: messages * 10,
            paused: false,
            e2e_processing_latency: LatencyResult::default(),
        }
    }

    #[test]
    fn prefix_takes_the_host_key_and_a_trailing_dot() {
        assert_eq!(prefix("nsq.%s", "10.0.0.1", 4151), "nsq.10_0_0_1_4151.");
        assert_eq!(prefix("nsq.%s.", "h.example", 80), "nsq.h_example_80.");
        assert_eq!(prefix("x", "h", 1), "x.");
        assert_eq!(prefix("", "h", 1), "");
        assert_eq!(prefix("%s", "::1", 4151), "[__1]_4151.");
    }

    #[test]
    fn first_push_sends_counts_then_only_increases() {
        let now = Stats {
            topics: Some(vec![topic("t", 10, vec![channel("c", 10)])]),
            producers: Vec::new(),
        };
        let first = lines("p.", &now, &Stats::default(), None, false);
        assert_eq!(
            first.concat(),
            "p.topic.t.message_count:10|c\n\
             p.topic.t.message_bytes:100|c\n\
             p.topic.t.depth:8|g\n\
             p.topic.t.backend_depth:9|g\n\
             p.topic.t.channel.c.message_count:10|c\n\
             p.topic.t.channel.c.depth:2|g\n\
             p.topic.t.channel.c.backend_depth:1|g\n\
             p.topic.t.channel.c.in_flight_count:3|g\n\
             p.topic.t.channel.c.deferred_count:4|g\n\
             p.topic.t.channel.c.requeue_count:5|c\n\
             p.topic.t.channel.c.timeout_count:6|c\n\
             p.topic.t.channel.c.clients:7|g\n"
        );
        let later = Stats {
            topics: Some(vec![topic("t", 15, vec![channel("c", 12)])]),
            producers: Vec::new(),
        };
        let second = lines("p.", &later, &now, None, false).concat();
        assert!(second.contains("p.topic.t.message_count:5|c\n"), "{second}");
        assert!(
            second.contains("p.topic.t.message_bytes:50|c\n"),
            "{second}"
        );
        assert!(
            second.contains("p.topic.t.channel.c.message_count:2|c\n"),
            "{second}"
        );
        assert!(
            second.contains("p.topic.t.channel.c.requeue_count:0|c\n"),
            "{second}"
        );
        assert!(second.contains("p.topic.t.depth:8|g\n"), "{second}");
    }

    #[test]
    fn percentiles_and_memory_use_nsqd_keys() {
        let mut t = topic("t", 1, vec![channel("c", 1)]);
        let e2e = LatencyResult {
            count: 3,
            percentiles: Some(vec![
                Percentile {
                    quantile: 0.99,
                    value: 1234.9,
                },
                Percentile {
                    quantile: 1.0,
                    value: 2000.0,
                },
            ]),
        };
        t.e2e_processing_latency = e2e.clone();
        t.channels[0].e2e_processing_latency = e2e;
        let stats = Stats {
            topics: Some(vec![t]),
            producers: Vec::new(),
        };
        let mem = MemStats {
            heap_in_use_bytes: 4096,
            gc_total_runs: 3,
            ..MemStats::default()
        };
        let text = lines(
            "",
            &stats,
            &Stats::default(),
            Some((mem, MemStats::default())),
            false,
        )
        .concat();
        for want in [
            "topic.t.e2e_processing_latency_99:1234|g\n",
            "topic.t.e2e_processing_latency_100:2000|g\n",
            "topic.t.channel.c.e2e_processing_latency_99:1234|g\n",
            "mem.heap_in_use_bytes:4096|g\n",
            "mem.gc_pause_usec_95:0|g\n",
            "mem.gc_runs:3|c\n",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
    }

    #[test]
    fn ephemeral_topics_and_channels_can_be_left_out() {
        let stats = Stats {
            topics: Some(vec![
                topic("a#ephemeral", 1, vec![]),
                topic("b", 1, vec![channel("c#ephemeral", 1), channel("d", 1)]),
            ]),
            producers: Vec::new(),
        };
        let all = lines("", &stats, &Stats::default(), None, false).concat();
        assert!(all.contains("topic.a#ephemeral.depth") && all.contains("channel.c#ephemeral."));
        let some = lines("", &stats, &Stats::default(), None, true).concat();
        assert!(!some.contains("ephemeral"), "{some}");
        assert!(some.contains("topic.b.channel.d.clients:7|g"), "{some}");
    }

    #[test]
    fn packets_hold_whole_lines_up_to_the_size() {
        let lines: Vec<String> = ["aaaa\n", "bbb\n", "cc\n", "dddddddddddd\n", "e\n"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = packets(&lines, 10);
        let p: Vec<&str> = p.iter().map(|b| std::str::from_utf8(b).unwrap()).collect();
        assert_eq!(p, ["aaaa\nbbb\n", "cc\n", "dddddddddddd\n", "e\n"]);
        assert_eq!(packets(&lines, 0).len(), 1);
        assert!(packets(&[], 10).is_empty());
    }
}
