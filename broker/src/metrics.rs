//! `GET /metrics`: the broker in Prometheus' text exposition format (0.0.4).
//!
//! Per-topic and per-channel series keep the names nsqd's statsd keys get
//! through statsd_exporter (`topic.<t>.channel.<c>.depth` →
//! `nsq_topic_channel_depth{topic,channel}`), which Grafana's NSQ mixin and
//! its alerts query; counters therefore keep NSQ's names, without `_total`.
//! Added to those: the end-to-end latency histograms, nsqd's percentile gauges
//! (with `--e2e-processing-latency-percentile`), client counts, health, nsqd's
//! `mem.*` keys and the standard `process_*` series.
//!
//! A scrape is two steps. [`Scrape::collect`] copies the counters, taking each
//! topic's and channel's lock just long enough to copy them (as `/stats` does),
//! never all at once; [`Scrape::encode`] then formats with no lock held. The
//! encoder is hand-written: a broker with thousands of channels has tens of
//! thousands of series, and this keeps a scrape within a few milliseconds.

use crate::channel::ChannelSnapshot;
use crate::e2e::{self, Histogram, Quantiles};
use crate::nsqd::Nsqd;
use crate::stats::{self, LatencyCollector, MemStats};
use crate::topic::TopicSnapshot;
use nsq_common::version::{version_line, CRATE_VERSION, NSQ_VERSION};
use std::sync::OnceLock;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition for `nsqd` right now.
pub fn render(nsqd: &Nsqd) -> String {
    Scrape::collect(nsqd).encode()
}

/// A point-in-time copy of everything `/metrics` reports.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub topics: Vec<TopicSample>,
    /// `--e2e-processing-latency-percentile`, in the order given.
    pub percentiles: Vec<f64>,
    pub healthy: bool,
    /// Syncs made by every diskqueue since start.
    pub syncs: Option<nsq_diskqueue::stats::SyncCounts>,
    pub clients: usize,
    pub producers: usize,
    pub memory: MemStats,
    pub process: Option<ProcessStats>,
}

#[derive(Debug, Clone)]
pub struct TopicSample {
    pub topic: TopicSnapshot,
    /// nsqd's topic quantiles (the merge of its channels'), with percentiles.
    pub quantiles: Option<Quantiles>,
    pub channels: Vec<ChannelSample>,
}

#[derive(Debug, Clone)]
pub struct ChannelSample {
    pub channel: ChannelSnapshot,
    pub quantiles: Option<Quantiles>,
}

impl Scrape {
    /// Copies the broker's counters; each topic and channel is locked only
    /// while its own counters are copied.
    pub fn collect(nsqd: &Nsqd) -> Scrape {
        let opts = nsqd.opts();
        let mut latency = LatencyCollector::new(&opts.e2e_processing_latency_percentiles);
        let mut topics = Vec::new();
        for topic in nsqd.topics() {
            let snap = topic.snapshot();
            latency.start_topic();
            let channels: Vec<ChannelSample> = snap
                .channels
                .iter()
                .map(|ch| {
                    let quantiles = latency.enabled().then(|| to_quantiles(latency.channel(ch)));
                    ChannelSample {
                        channel: ch.snapshot(),
                        quantiles,
                    }
                })
                .collect();
            let quantiles = (latency.enabled() && !channels.is_empty())
                .then(|| to_quantiles(latency.topic(false)));
            topics.push(TopicSample {
                topic: snap,
                quantiles,
                channels,
            });
        }
        let clients = nsqd.clients();
        Scrape {
            topics,
            percentiles: opts.e2e_processing_latency_percentiles.clone(),
            healthy: nsqd.health().is_none(),
            syncs: Some(nsq_diskqueue::stats::sync_counts()),
            producers: clients.iter().filter(|c| c.is_producer()).count(),
            clients: clients.len(),
            memory: stats::mem_stats(),
            process: ProcessStats::read(),
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let channels: usize = self.topics.iter().map(|t| t.channels.len()).sum();
        let mut w = Writer::with_capacity(4096 + self.topics.len() * 1_500 + channels * 2_500);
        self.encode_topics(&mut w);
        self.encode_channels(&mut w);
        self.encode_broker(&mut w, channels);
        w.finish()
    }

    fn encode_topics(&self, w: &mut Writer) {
        if self.topics.is_empty() {
            return;
        }
        let labels: Vec<String> = self
            .topics
            .iter()
            .map(|t| label_set(&[("topic", &t.topic.name)]))
            .collect();
        let rows = || self.topics.iter().zip(&labels);
        w.family(
            "nsq_topic_message_count",
            "counter",
            "Messages published to the topic.",
        );
        rows().for_each(|(t, l)| w.sample("nsq_topic_message_count", l, t.topic.message_count));
        w.family(
            "nsq_topic_message_bytes",
            "counter",
            "Bytes of message bodies published to the topic.",
        );
        rows().for_each(|(t, l)| w.sample("nsq_topic_message_bytes", l, t.topic.message_bytes));
        w.family(
            "nsq_topic_depth",
            "gauge",
            "Messages held by the topic itself (memory and disk), waiting for a channel.",
        );
        rows().for_each(|(t, l)| w.sample_i("nsq_topic_depth", l, t.topic.depth));
        w.family(
            "nsq_topic_backend_depth",
            "gauge",
            "Messages held by the topic on disk.",
        );
        rows().for_each(|(t, l)| w.sample_i("nsq_topic_backend_depth", l, t.topic.backend_depth));
        w.family("nsq_topic_paused", "gauge", "1 while the topic is paused.");
        rows().for_each(|(t, l)| w.sample("nsq_topic_paused", l, u64::from(t.topic.paused)));
        w.family(
            "nsq_topic_e2e_processing_latency_seconds",
            "histogram",
            "Time from publish to FIN of the messages finished on any of the topic's channels.",
        );
        rows().for_each(|(t, l)| {
            w.histogram(
                "nsq_topic_e2e_processing_latency_seconds",
                l,
                &t.topic.latency,
            )
        });
        self.encode_percentiles(
            w,
            "nsq_topic_e2e_processing_latency_",
            "topic",
            rows().map(|(t, l)| (l.as_str(), t.quantiles.as_ref())),
        );
    }

    fn encode_channels(&self, w: &mut Writer) {
        let rows: Vec<(&ChannelSample, String)> = self
            .topics
            .iter()
            .flat_map(|t| {
                t.channels.iter().map(|c| {
                    let l = label_set(&[("topic", &t.topic.name), ("channel", &c.channel.name)]);
                    (c, l)
                })
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        type Field = fn(&ChannelSnapshot) -> i64;
        let families: [(&str, &str, &str, Field); 9] = [
            (
                "nsq_topic_channel_message_count",
                "counter",
                "Messages the channel received from its topic.",
                |c| c.message_count as i64,
            ),
            (
                "nsq_topic_channel_requeue_count",
                "counter",
                "Messages requeued (REQ) on the channel.",
                |c| c.requeue_count as i64,
            ),
            (
                "nsq_topic_channel_timeout_count",
                "counter",
                "In-flight messages that timed out on the channel.",
                |c| c.timeout_count as i64,
            ),
            (
                "nsq_topic_channel_depth",
                "gauge",
                "Messages queued in the channel (memory and disk), waiting for a consumer.",
                |c| c.depth,
            ),
            (
                "nsq_topic_channel_backend_depth",
                "gauge",
                "Messages queued in the channel on disk.",
                |c| c.backend_depth,
            ),
            (
                "nsq_topic_channel_in_flight_count",
                "gauge",
                "Messages sent to a consumer and not yet finished, requeued or timed out.",
                |c| c.in_flight_count,
            ),
            (
                "nsq_topic_channel_deferred_count",
                "gauge",
                "Messages deferred (DPUB, or REQ with a delay) on the channel.",
                |c| c.deferred_count,
            ),
            (
                "nsq_topic_channel_clients",
                "gauge",
                "Consumers subscribed to the channel.",
                |c| c.clients.len() as i64,
            ),
            (
                "nsq_topic_channel_paused",
                "gauge",
                "1 while the channel is paused.",
                |c| i64::from(c.paused),
            ),
        ];
        for (name, kind, help, field) in families {
            w.family(name, kind, help);
            for (c, l) in &rows {
                let v = field(&c.channel);
                if kind == "counter" {
                    w.sample(name, l, v as u64);
                } else {
                    w.sample_i(name, l, v);
                }
            }
        }
        w.family(
            "nsq_topic_channel_e2e_processing_latency_seconds",
            "histogram",
            "Time from publish to FIN of the messages finished on the channel.",
        );
        for (c, l) in &rows {
            w.histogram(
                "nsq_topic_channel_e2e_processing_latency_seconds",
                l,
                &c.channel.latency,
            );
        }
        self.encode_percentiles(
            w,
            "nsq_topic_channel_e2e_processing_latency_",
            "channel",
            rows.iter().map(|(c, l)| (l.as_str(), c.quantiles.as_ref())),
        );
    }

    /// nsqd's `e2e_processing_latency_<percent>` gauges, one family per
    /// percentile (`%.0f` of q×100, so 0.999 and 1.0 share `100`: the first wins).
    fn encode_percentiles<'a>(
        &self,
        w: &mut Writer,
        prefix: &str,
        what: &str,
        rows: impl Iterator<Item = (&'a str, Option<&'a Quantiles>)> + Clone,
    ) {
        let mut seen = Vec::new();
        for (i, &q) in self.percentiles.iter().enumerate() {
            let suffix = percent_suffix(q);
            if seen.contains(&suffix) {
                continue;
            }
            let name = format!("{prefix}{suffix}");
            w.family(
                &name,
                "gauge",
                &format!(
                    "The {q} quantile of the {what}'s end-to-end processing latency over the window, in nanoseconds."
                ),
            );
            for (l, quantiles) in rows.clone() {
                if let Some(v) = quantiles.and_then(|q| q.values.get(i)) {
                    w.sample(&name, l, v.1 as u64);
                }
            }
            seen.push(suffix);
        }
    }

    fn encode_broker(&self, w: &mut Writer, channels: usize) {
        w.family(
            "nsq_healthy",
            "gauge",
            "1 when the broker is healthy (/ping answers OK), 0 after a persistent error such as a failing disk.",
        );
        w.sample("nsq_healthy", "", u64::from(self.healthy));
        if let Some(s) = self.syncs {
            w.family(
                "nsq_diskqueue_fsyncs_total",
                "counter",
                "fsync/fdatasync calls on diskqueue data files (group commits and periodic syncs).",
            );
            w.sample("nsq_diskqueue_fsyncs_total", "", s.data_syncs);
            w.family(
                "nsq_diskqueue_metadata_writes_total",
                "counter",
                "Diskqueue metadata files written, each fsynced before its rename.",
            );
            w.sample("nsq_diskqueue_metadata_writes_total", "", s.metadata_writes);
        }
        w.family(
            "nsq_build_info",
            "gauge",
            "Always 1: the NSQ version the broker speaks, its own version and its compiler.",
        );
        w.sample("nsq_build_info", build_info_labels(), 1);
        w.family("nsq_topics", "gauge", "Topics on the broker.");
        w.sample("nsq_topics", "", self.topics.len() as u64);
        w.family("nsq_channels", "gauge", "Channels on the broker.");
        w.sample("nsq_channels", "", channels as u64);
        w.family(
            "nsq_clients",
            "gauge",
            "Open TCP client connections (producers and consumers).",
        );
        w.sample("nsq_clients", "", self.clients as u64);
        w.family(
            "nsq_producers",
            "gauge",
            "Open TCP client connections that have published.",
        );
        w.sample("nsq_producers", "", self.producers as u64);

        let m = &self.memory;
        for (name, help, v) in [
            (
                "nsq_mem_heap_objects",
                "nsqd's mem.heap_objects (0: no garbage-collected heap).",
                m.heap_objects,
            ),
            (
                "nsq_mem_heap_idle_bytes",
                "nsqd's mem.heap_idle_bytes (0: no garbage-collected heap).",
                m.heap_idle_bytes,
            ),
            (
                "nsq_mem_heap_in_use_bytes",
                "nsqd's mem.heap_in_use_bytes: the resident set size.",
                m.heap_in_use_bytes,
            ),
            (
                "nsq_mem_heap_released_bytes",
                "nsqd's mem.heap_released_bytes (0: no garbage-collected heap).",
                m.heap_released_bytes,
            ),
            (
                "nsq_mem_gc_pause_usec_100",
                "nsqd's mem.gc_pause_usec_100 (0: no garbage collector).",
                m.gc_pause_usec_100,
            ),
            (
                "nsq_mem_gc_pause_usec_99",
                "nsqd's mem.gc_pause_usec_99 (0: no garbage collector).",
                m.gc_pause_usec_99,
            ),
            (
                "nsq_mem_gc_pause_usec_95",
                "nsqd's mem.gc_pause_usec_95 (0: no garbage collector).",
                m.gc_pause_usec_95,
            ),
            (
                "nsq_mem_next_gc_bytes",
                "nsqd's mem.next_gc_bytes (0: no garbage collector).",
                m.next_gc_bytes,
            ),
        ] {
            w.family(name, "gauge", help);
            w.sample(name, "", v);
        }
        w.family(
            "nsq_mem_gc_runs",
            "counter",
            "nsqd's mem.gc_runs (0: no garbage collector).",
        );
        w.sample("nsq_mem_gc_runs", "", u64::from(m.gc_total_runs));

        if let Some(p) = &self.process {
            w.family(
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
            );
            w.sample_f("process_cpu_seconds_total", "", p.cpu_seconds);
            w.family(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
            );
            w.sample("process_resident_memory_bytes", "", p.resident_bytes);
            w.family(
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
            );
            w.sample("process_virtual_memory_bytes", "", p.virtual_bytes);
            w.family(
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
            );
            w.sample("process_open_fds", "", p.open_fds);
            w.family(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
            );
            w.sample("process_max_fds", "", p.max_fds);
            w.family(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
            );
            w.sample_f("process_start_time_seconds", "", p.start_time_seconds);
        }
    }
}

/// `nsq_build_info`'s labels. Our own version lives here and in nothing
/// nsqd also serves (`/info` and `/stats` keep nsqd's keys).
fn build_info_labels() -> &'static str {
    static LABELS: OnceLock<String> = OnceLock::new();
    LABELS.get_or_init(|| {
        // `nsqd v1.3.0 (built w/rustc-1.95.0)` carries the compiler version.
        let line = version_line("nsqd");
        let rustc = line
            .rsplit_once("(built w/rustc-")
            .and_then(|(_, v)| v.strip_suffix(')'))
            .unwrap_or("unknown");
        label_set(&[
            ("version", NSQ_VERSION),
            ("broker_version", CRATE_VERSION),
            ("rustc", rustc),
        ])
    })
}

fn to_quantiles(r: stats::LatencyResult) -> Quantiles {
    Quantiles {
        count: r.count,
        values: r
            .percentiles
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.quantile, p.value))
            .collect(),
    }
}

/// nsqd's statsd key suffix for a percentile: `%.0f` of q×100 (`0.99` → `99`).
pub fn percent_suffix(q: f64) -> String {
    format!("{:.0}", q * 100.0)
}

/// `{k="v",...}` with values escaped as the text format requires.
fn label_set(pairs: &[(&str, &str)]) -> String {
    let mut s = String::with_capacity(64);
    s.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// `le` label values of [`e2e::BUCKETS`], then `+Inf`.
fn le_values() -> [String; e2e::SLOTS] {
    std::array::from_fn(|i| match e2e::BUCKETS.get(i) {
        Some(b) => format!("{b}"),
        None => "+Inf".to_owned(),
    })
}

/// Appends text-format lines to a buffer.
struct Writer {
    out: String,
    le: [String; e2e::SLOTS],
}

impl Writer {
    fn with_capacity(n: usize) -> Writer {
        Writer {
            out: String::with_capacity(n),
            le: le_values(),
        }
    }

    fn finish(self) -> String {
        self.out
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let o = &mut self.out;
        o.push_str("# HELP ");
        o.push_str(name);
        o.push(' ');
        for ch in help.chars() {
            match ch {
                '\\' => o.push_str("\\\\"),
                '\n' => o.push_str("\\n"),
                c => o.push(c),
            }
        }
        o.push_str("\n# TYPE ");
        o.push_str(name);
        o.push(' ');
        o.push_str(kind);
        o.push('\n');
    }

    fn sample(&mut self, name: &str, labels: &str, v: u64) {
        self.out.push_str(name);
        self.out.push_str(labels);
        self.out.push(' ');
        push_u64(&mut self.out, v);
        self.out.push('\n');
    }

    fn sample_i(&mut self, name: &str, labels: &str, v: i64) {
        if v < 0 {
            self.out.push_str(name);
            self.out.push_str(labels);
            self.out.push_str(" -");
            push_u64(&mut self.out, v.unsigned_abs());
            self.out.push('\n');
        } else {
            self.sample(name, labels, v as u64);
        }
    }

    fn sample_f(&mut self, name: &str, labels: &str, v: f64) {
        use std::fmt::Write as _;
        let _ = writeln!(self.out, "{name}{labels} {v}");
    }

    /// `_bucket` (cumulative, with `le`), `_sum` in seconds and `_count`;
    /// `labels` is a `{...}` set, not empty.
    fn histogram(&mut self, name: &str, labels: &str, h: &Histogram) {
        let inner = &labels[1..labels.len() - 1];
        let mut cumulative = 0u64;
        for (i, &c) in h.counts.iter().enumerate() {
            cumulative += c;
            let o = &mut self.out;
            o.push_str(name);
            o.push_str("_bucket{");
            o.push_str(inner);
            o.push_str(",le=\"");
            o.push_str(&self.le[i]);
            o.push_str("\"} ");
            push_u64(o, cumulative);
            o.push('\n');
        }
        let sum = h.sum_nanos as f64 / 1e9;
        {
            use std::fmt::Write as _;
            let _ = writeln!(self.out, "{name}_sum{labels} {sum}");
        }
        self.out.push_str(name);
        self.out.push_str("_count");
        self.out.push_str(labels);
        self.out.push(' ');
        push_u64(&mut self.out, cumulative);
        self.out.push('\n');
    }
}

/// Decimal digits of `v`, without going through `fmt`.
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// The standard `process_*` figures, from `/proc/self`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// `None` where there is no `/proc` (not Linux).
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        let mut p = parse_proc_stat(&stat, ticks.max(1) as f64, page.max(1) as u64, boot?)?;
        p.open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        // SAFETY: getrlimit writes only into the struct it is given.
        let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            p.max_fds = lim.rlim_cur;
        }
        Some(p)
    }
}

/// The CPU, memory and start-time fields of `/proc/<pid>/stat`.
fn parse_proc_stat(stat: &str, ticks: f64, page: u64, boot_secs: u64) -> Option<ProcessStats> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcessStats {
        cpu_seconds: (num(14)? + num(15)?) as f64 / ticks,
        start_time_seconds: boot_secs as f64 + num(22)? as f64 / ticks,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)? * page,
        open_fds: 0,
        max_fds: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str) -> ChannelSnapshot {
        ChannelSnapshot {
            name: name.into(),
            depth: 3,
            backend_depth: 1,
            in_flight_count: 2,
            deferred_count: 0,
            message_count: 10,
            requeue_count: 4,
            timeout_count: 5,
            paused: false,
            clients: Vec::new(),
            latency: Histogram::default(),
        }
    }

    #[test]
    fn numbers_print_in_decimal() {
        for v in [0, 7, 10, 1234567890, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, v);
            assert_eq!(s, v.to_string());
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            label_set(&[("topic", "a\"b\\c\nd"), ("channel", "x")]),
            r#"{topic="a\"b\\c\nd",channel="x"}"#
        );
    }

    #[test]
    fn percent_suffixes_follow_nsqd() {
        assert_eq!(percent_suffix(0.99), "99");
        assert_eq!(percent_suffix(1.0), "100");
        assert_eq!(percent_suffix(0.5), "50");
        assert_eq!(percent_suffix(0.999), "100");
    }

    #[test]
    fn channel_series_carry_topic_and_channel_labels_and_histograms_are_cumulative() {
        let mut latency = Histogram::default();
        latency.observe(2_000_000);
        latency.observe(20_000_000_000);
        let mut ch = channel("c");
        ch.latency = latency;
        let scrape = Scrape {
            topics: vec![TopicSample {
                topic: TopicSnapshot {
                    name: "t".into(),
                    depth: 0,
                    backend_depth: 0,
                    message_count: 10,
                    message_bytes: 100,
                    paused: true,
                    channels: Vec::new(),
                    latency,
                },
                quantiles: Some(Quantiles {
                    count: 2,
                    values: vec![(0.99, 2.0e10), (0.999, 1.0)],
                }),
                channels: vec![ChannelSample {
                    channel: ch,
                    quantiles: Some(Quantiles {
                        count: 2,
                        values: vec![(0.99, 2.0e10), (0.999, 1.0)],
                    }),
                }],
            }],
            percentiles: vec![0.99, 0.999],
            healthy: true,
            ..Scrape::default()
        };
        let text = scrape.encode();
        for line in [
            "# TYPE nsq_topic_message_count counter\nnsq_topic_message_count{topic=\"t\"} 10\n",
            "nsq_topic_paused{topic=\"t\"} 1\n",
            "nsq_topic_channel_requeue_count{topic=\"t\",channel=\"c\"} 4\n",
            "nsq_topic_channel_e2e_processing_latency_seconds_bucket{topic=\"t\",channel=\"c\",le=\"0.001\"} 0\n",
            "nsq_topic_channel_e2e_processing_latency_seconds_bucket{topic=\"t\",channel=\"c\",le=\"0.005\"} 1\n",
            "nsq_topic_channel_e2e_processing_latency_seconds_bucket{topic=\"t\",channel=\"c\",le=\"10\"} 1\n",
            "nsq_topic_channel_e2e_processing_latency_seconds_bucket{topic=\"t\",channel=\"c\",le=\"60\"} 2\n",
            "nsq_topic_channel_e2e_processing_latency_seconds_bucket{topic=\"t\",channel=\"c\",le=\"+Inf\"} 2\n",
            "nsq_topic_channel_e2e_processing_latency_seconds_sum{topic=\"t\",channel=\"c\"} 20.002\n",
            "nsq_topic_channel_e2e_processing_latency_seconds_count{topic=\"t\",channel=\"c\"} 2\n",
            "nsq_topic_e2e_processing_latency_99{topic=\"t\"} 20000000000\n",
            "nsq_topic_channel_e2e_processing_latency_99{topic=\"t\",channel=\"c\"} 20000000000\n",
            "nsq_topic_channel_e2e_processing_latency_100{topic=\"t\",channel=\"c\"} 1\n",
            "nsq_healthy 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE ").count(),
            text.matches("# HELP ").count()
        );
        for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = family.split(' ').next().unwrap();
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name} declared twice"
            );
        }
    }

    #[test]
    fn build_info_carries_our_version_and_compiler() {
        let text = Scrape::default().encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("nsq_build_info{"))
            .unwrap_or_else(|| panic!("no nsq_build_info in:\n{text}"));
        let prefix = format!(
            "nsq_build_info{{version=\"{NSQ_VERSION}\",broker_version=\"{CRATE_VERSION}\",rustc=\""
        );
        let rustc = line
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix("\"} 1"))
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            rustc.starts_with(|c: char| c.is_ascii_digit()) && !rustc.contains('"'),
            "{line}"
        );
    }

    #[test]
    fn an_empty_broker_has_only_broker_series() {
        let text = Scrape::default().encode();
        assert!(!text.contains("nsq_topic_"), "{text}");
        assert!(text.contains("nsq_topics 0\n"), "{text}");
    }

    #[test]
    fn proc_stat_fields_are_read_after_the_command_name() {
        let stat = "42 (nsq d) S 1 42 42 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 8 0 1000 123456789 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let p = parse_proc_stat(stat, 100.0, 4096, 1_700_000_000).unwrap();
        assert_eq!(p.cpu_seconds, 4.0);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        assert_eq!(p.virtual_bytes, 123456789);
        assert_eq!(p.resident_bytes, 300 * 4096);
        assert!(ProcessStats::read().is_some_and(|p| p.resident_bytes > 0 && p.open_fds > 0));
    }
}
