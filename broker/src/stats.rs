//! Stats snapshots in nsqd's shapes: the `/stats` JSON document and its text
//! rendering. `/stats` and `/metrics` both start from [`collect`].
//!
//! The snapshot follows nsqd's `GetStats(topic, channel, includeClients)`:
//! topics and channels sorted by name; an unknown topic filter yields no topics at
//! all (`"topics":null`); a channel filter drops the topics lacking that channel;
//! without clients, channel `clients` and `producers` are `null`.

use crate::client::ClientShared;
use crate::e2e;
use crate::nsqd::Nsqd;
use serde::{Serialize, Serializer};
use std::fmt::Write as _;
use std::sync::Arc;

/// Which part of the broker a snapshot covers.
#[derive(Debug, Clone)]
pub struct StatsFilter {
    /// Empty means every topic.
    pub topic: String,
    /// Empty means every channel.
    pub channel: String,
    pub include_clients: bool,
}

impl Default for StatsFilter {
    fn default() -> Self {
        StatsFilter {
            topic: String::new(),
            channel: String::new(),
            include_clients: true,
        }
    }
}

/// A point-in-time copy of the topics, channels and clients.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// `None` when the topic filter named no existing topic (nsqd's nil slice).
    pub topics: Option<Vec<TopicStats>>,
    /// Connections that published (empty when clients were not asked for).
    pub producers: Vec<ClientStats>,
}

/// nsqd's end-to-end latency result (its quantile `Result`): without
/// `--e2e-processing-latency-percentile` it is `{"count":0,"percentiles":null}`;
/// with it, the samples in the window and one `{"quantile":q,"value":ns}` per
/// percentile, in the order given.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencyResult {
    pub count: u64,
    pub percentiles: Option<Vec<Percentile>>,
}

/// One percentile of a [`LatencyResult`]; numbers print as Go prints a float64.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentile {
    #[serde(serialize_with = "go_float")]
    pub quantile: f64,
    /// Nanoseconds.
    #[serde(serialize_with = "go_float")]
    pub value: f64,
}

impl From<e2e::Quantiles> for LatencyResult {
    fn from(q: e2e::Quantiles) -> Self {
        LatencyResult {
            count: q.count,
            percentiles: Some(
                q.values
                    .into_iter()
                    .map(|(quantile, value)| Percentile { quantile, value })
                    .collect(),
            ),
        }
    }
}

impl LatencyResult {
    /// nsqd's `Result.String()`: each value in human units, comma-separated.
    pub fn human(&self) -> String {
        let values: Vec<String> = self
            .percentiles
            .iter()
            .flatten()
            .map(|p| nanos_to_human(p.value))
            .collect();
        values.join(", ")
    }
}

/// nsqd's `NanoSecondToHuman`: `1.5ms`, `20.0us`, `3.0s`.
pub fn nanos_to_human(v: f64) -> String {
    let (v, suffix) = if v > 1e9 {
        (v / 1e9, "s")
    } else if v > 1e6 {
        (v / 1e6, "ms")
    } else if v > 1e3 {
        (v / 1e3, "us")
    } else {
        (v, "ns")
    };
    format!("{v:.1}{suffix}")
}

/// Go's `encoding/json` float64: integral values without a fraction.
fn go_float<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicStats {
    pub topic_name: String,
    pub channels: Vec<ChannelStats>,
    pub depth: i64,
    pub backend_depth: i64,
    pub message_count: u64,
    pub message_bytes: u64,
    pub paused: bool,
    pub e2e_processing_latency: LatencyResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelStats {
    pub channel_name: String,
    pub depth: i64,
    pub backend_depth: i64,
    pub in_flight_count: i64,
    pub deferred_count: i64,
    pub message_count: u64,
    pub requeue_count: u64,
    pub timeout_count: u64,
    pub client_count: usize,
    /// `None` (JSON `null`) when clients were not asked for.
    pub clients: Option<Vec<ClientStats>>,
    pub paused: bool,
    pub e2e_processing_latency: LatencyResult,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PubCount {
    pub topic: String,
    pub count: u64,
}

/// nsqd's `ClientV2Stats`. The auth fields are omitted when empty, as nsqd
/// does; the `tls_client_cert_*` fields (not in nsqd) only appear for a client
/// that showed a certificate.
#[derive(Debug, Clone, Serialize)]
pub struct ClientStats {
    pub client_id: String,
    pub hostname: String,
    pub version: &'static str,
    pub remote_address: String,
    pub state: i32,
    pub ready_count: i64,
    pub in_flight_count: i64,
    pub message_count: u64,
    pub finish_count: u64,
    pub requeue_count: u64,
    pub connect_ts: i64,
    pub sample_rate: i32,
    pub deflate: bool,
    pub snappy: bool,
    pub user_agent: String,
    #[serde(skip_serializing_if = "is_false")]
    pub authed: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity_url: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pub_counts: Vec<PubCount>,
    pub tls: bool,
    pub tls_cipher_suite: String,
    pub tls_version: String,
    pub tls_negotiated_protocol: String,
    pub tls_negotiated_protocol_is_mutual: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_client_cert_subject: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_client_cert_issuer: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_client_cert_serial: String,
    pub topology_zone: String,
    pub topology_region: String,
}

/// nsqd's `memory` block. nsqd reports Go runtime figures; here the resident set
/// size stands in for the heap in use and the garbage-collector fields stay 0.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct MemStats {
    pub heap_objects: u64,
    pub heap_idle_bytes: u64,
    pub heap_in_use_bytes: u64,
    pub heap_released_bytes: u64,
    pub gc_pause_usec_100: u64,
    pub gc_pause_usec_99: u64,
    pub gc_pause_usec_95: u64,
    pub next_gc_bytes: u64,
    pub gc_total_runs: u32,
}

/// The `/stats?format=json` document, fields in nsqd's order.
#[derive(Debug, Serialize)]
pub struct StatsDoc<'a> {
    pub version: &'static str,
    pub health: &'a str,
    pub start_time: i64,
    pub topics: &'a Option<Vec<TopicStats>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemStats>,
    /// nsqd's producer list is a nil slice when empty, so it prints `null`.
    #[serde(serialize_with = "null_if_empty")]
    pub producers: &'a [ClientStats],
}

fn null_if_empty<S: Serializer>(v: &&[ClientStats], s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        v.serialize(s)
    }
}

/// Snapshots what `filter` selects.
pub fn collect(nsqd: &Nsqd, filter: &StatsFilter) -> Stats {
    let percentiles = nsqd.opts().e2e_processing_latency_percentiles.clone();
    let mut latency = LatencyCollector::new(&percentiles);
    let topics = if filter.topic.is_empty() {
        nsqd.topics()
    } else {
        match nsqd.existing_topic(&filter.topic) {
            Some(t) => vec![t],
            None => return Stats::default(),
        }
    };
    let mut out = Vec::with_capacity(topics.len());
    for topic in topics {
        let snap = topic.snapshot();
        latency.start_topic();
        let channel_latency: Vec<LatencyResult> =
            snap.channels.iter().map(|ch| latency.channel(ch)).collect();
        let topic_latency = latency.topic(snap.channels.is_empty());
        let channels: Vec<_> = snap
            .channels
            .into_iter()
            .zip(channel_latency)
            .filter(|(c, _)| filter.channel.is_empty() || c.name == filter.channel)
            .collect();
        if !filter.channel.is_empty() && channels.is_empty() {
            continue;
        }
        let channels = channels
            .into_iter()
            .map(|(ch, e2e_processing_latency)| {
                let c = ch.snapshot();
                let clients = filter.include_clients.then(|| {
                    let mut v: Vec<&Arc<ClientShared>> = c.clients.iter().collect();
                    v.sort_by_key(|cl| cl.id);
                    v.into_iter()
                        .map(|cl| client_stats(cl, &filter.topic))
                        .collect()
                });
                ChannelStats {
                    channel_name: c.name,
                    depth: c.depth,
                    backend_depth: c.backend_depth,
                    in_flight_count: c.in_flight_count,
                    deferred_count: c.deferred_count,
                    message_count: c.message_count,
                    requeue_count: c.requeue_count,
                    timeout_count: c.timeout_count,
                    client_count: c.clients.len(),
                    clients,
                    paused: c.paused,
                    e2e_processing_latency,
                }
            })
            .collect();
        out.push(TopicStats {
            topic_name: snap.name,
            channels,
            depth: snap.depth,
            backend_depth: snap.backend_depth,
            message_count: snap.message_count,
            message_bytes: snap.message_bytes,
            paused: snap.paused,
            e2e_processing_latency: topic_latency,
        });
    }
    let producers = if filter.include_clients {
        nsqd.clients()
            .iter()
            .filter(|c| c.is_producer())
            .map(|c| client_stats(c, &filter.topic))
            .collect()
    } else {
        Vec::new()
    };
    Stats {
        topics: Some(out),
        producers,
    }
}

/// Computes nsqd's latency results while walking the topics: each channel's
/// window, and a topic's as the merge of its channels' (nsqd's
/// `AggregateChannelE2eProcessingLatency`). Without percentiles, every result
/// is nsqd's empty one.
pub struct LatencyCollector<'a> {
    percentiles: &'a [f64],
    now: i64,
    channel: e2e::LogHistogram,
    topic: e2e::LogHistogram,
}

impl<'a> LatencyCollector<'a> {
    pub fn new(percentiles: &'a [f64]) -> Self {
        LatencyCollector {
            percentiles,
            now: crate::message::unix_nanos(),
            channel: e2e::LogHistogram::default(),
            topic: e2e::LogHistogram::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.percentiles.is_empty()
    }

    pub fn start_topic(&mut self) {
        self.topic.clear();
    }

    /// The channel's result; it also joins the current topic's.
    pub fn channel(&mut self, ch: &crate::channel::Channel) -> LatencyResult {
        if !self.enabled() {
            return LatencyResult::default();
        }
        self.channel.clear();
        ch.merge_latency_window(self.now, &mut self.channel);
        self.topic.add(&self.channel);
        self.channel.quantiles(self.percentiles).into()
    }

    /// The current topic's result (nsqd's empty one for a topic without channels).
    pub fn topic(&self, no_channels: bool) -> LatencyResult {
        if !self.enabled() || no_channels {
            return LatencyResult::default();
        }
        self.topic.quantiles(self.percentiles).into()
    }
}

/// One connection's stats; publish counts are limited to `topic` when it is set.
pub fn client_stats(c: &ClientShared, topic: &str) -> ClientStats {
    use std::sync::atomic::Ordering::Relaxed;
    let mut ident = c.identity.lock().clone();
    let tls_info = ident.tls.take();
    let is_tls = tls_info.is_some();
    let tls = tls_info.unwrap_or_default();
    let cert = tls.client_cert.unwrap_or_default();
    let pub_counts = c
        .pub_counts
        .lock()
        .iter()
        .filter(|(t, _)| topic.is_empty() || t.as_str() == topic)
        .map(|(t, &count)| PubCount {
            topic: t.clone(),
            count,
        })
        .collect();
    ClientStats {
        client_id: ident.client_id,
        hostname: ident.hostname,
        version: "V2",
        remote_address: c.remote_address.clone(),
        state: c.state.load(Relaxed),
        ready_count: c.ready_count.load(Relaxed),
        in_flight_count: c.in_flight.load(Relaxed),
        message_count: c.message_count.load(Relaxed),
        finish_count: c.finish_count.load(Relaxed),
        requeue_count: c.requeue_count.load(Relaxed),
        connect_ts: c.connect_ts,
        sample_rate: ident.sample_rate,
        deflate: ident.deflate,
        snappy: ident.snappy,
        user_agent: ident.user_agent,
        authed: ident.authed,
        auth_identity: ident.auth_identity,
        auth_identity_url: ident.auth_identity_url,
        pub_counts,
        tls: is_tls,
        tls_cipher_suite: tls.cipher_suite,
        tls_version: tls.version,
        tls_negotiated_protocol: tls.negotiated_protocol,
        // Go reports true for every TLS connection (the field is deprecated there).
        tls_negotiated_protocol_is_mutual: is_tls,
        tls_client_cert_subject: cert.subject,
        tls_client_cert_issuer: cert.issuer,
        tls_client_cert_serial: cert.serial,
        topology_zone: ident.topology_zone,
        topology_region: ident.topology_region,
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The process's memory in nsqd's keys (see [`MemStats`]).
pub fn mem_stats() -> MemStats {
    MemStats {
        heap_in_use_bytes: resident_bytes().unwrap_or(0),
        ..MemStats::default()
    }
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Go's `net.SplitHostPort`, leniently: `("", "")` when there is no port.
fn split_host_port(addr: &str) -> (&str, &str) {
    match addr.rfind(':') {
        Some(i) => {
            let host = &addr[..i];
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            (host, &addr[i + 1..])
        }
        None => ("", ""),
    }
}

/// Everything the text rendering needs besides the snapshot.
#[derive(Debug, Clone)]
pub struct TextContext<'a> {
    pub health: &'a str,
    /// Unix seconds.
    pub start_time: i64,
    /// Unix nanoseconds, the rendering time.
    pub now: i64,
    pub memory: Option<MemStats>,
}

/// nsqd's plain-text `/stats`.
pub fn render_text(stats: &Stats, cx: &TextContext<'_>) -> String {
    let mut w = String::with_capacity(1024);
    let uptime = cx
        .now
        .saturating_sub(cx.start_time.saturating_mul(1_000_000_000));
    let _ = writeln!(w, "{}", nsq_common::version::version_line("nsqd"));
    let _ = writeln!(w, "start_time {}", rfc3339_local(cx.start_time));
    let _ = writeln!(w, "uptime {}", go_duration(uptime));
    let _ = writeln!(w, "\nHealth: {}", cx.health);
    if let Some(m) = &cx.memory {
        w.push_str("\nMemory:\n");
        for (k, v) in [
            ("heap_objects", m.heap_objects),
            ("heap_idle_bytes", m.heap_idle_bytes),
            ("heap_in_use_bytes", m.heap_in_use_bytes),
            ("heap_released_bytes", m.heap_released_bytes),
            ("gc_pause_usec_100", m.gc_pause_usec_100),
            ("gc_pause_usec_99", m.gc_pause_usec_99),
            ("gc_pause_usec_95", m.gc_pause_usec_95),
            ("next_gc_bytes", m.next_gc_bytes),
            ("gc_total_runs", u64::from(m.gc_total_runs)),
        ] {
            let _ = writeln!(w, "   {k:<25}\t{v}");
        }
    }
    let topics = stats.topics.as_deref().unwrap_or_default();
    if topics.is_empty() {
        w.push_str("\nTopics: None\n");
    } else {
        w.push_str("\nTopics:");
    }
    let now_secs = cx.now.div_euclid(1_000_000_000);
    for t in topics {
        let paused = if t.paused { "*P " } else { "   " };
        let _ = writeln!(
            w,
            "\n{paused}[{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8} e2e%: {}",
            t.topic_name,
            t.depth,
            t.backend_depth,
            t.message_count,
            t.e2e_processing_latency.human()
        );
        for c in &t.channels {
            let paused = if c.paused { "   *P " } else { "      " };
            let _ = writeln!(
                w,
                "{paused}[{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} msgs: {:<8} e2e%: {}",
                c.channel_name,
                c.depth,
                c.backend_depth,
                c.in_flight_count,
                c.deferred_count,
                c.requeue_count,
                c.timeout_count,
                c.message_count,
                c.e2e_processing_latency.human()
            );
            for client in c.clients.as_deref().unwrap_or_default() {
                let _ = writeln!(w, "        {}", client_line(client, now_secs));
            }
        }
    }
    if stats.producers.is_empty() {
        w.push_str("\nProducers: None\n");
    } else {
        w.push_str("\nProducers:\n");
        for p in &stats.producers {
            let _ = writeln!(w, "   {}", client_line(p, now_secs));
        }
    }
    w
}

/// nsqd's one-line client summary: a producer line when it has publish counts.
fn client_line(s: &ClientStats, now_secs: i64) -> String {
    let connected = go_duration(
        now_secs
            .saturating_sub(s.connect_ts)
            .saturating_mul(1_000_000_000),
    );
    let port = split_host_port(&s.remote_address).1;
    let id = format!("{}:{} {}", s.hostname, port, s.user_agent);
    if !s.pub_counts.is_empty() {
        let total: u64 = s.pub_counts.iter().map(|p| p.count).sum();
        let topics: Vec<String> = s
            .pub_counts
            .iter()
            .map(|p| format!("{}={}", p.topic, p.count))
            .collect();
        return format!(
            "[{} {id:<21}] msgs: {total:<8} topics: {} connected: {connected}",
            s.version,
            topics.join(",")
        );
    }
    format!(
        "[{} {id:<21}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} msgs: {:<8} connected: {connected}",
        s.version,
        s.state,
        s.in_flight_count,
        s.ready_count,
        s.finish_count,
        s.requeue_count,
        s.message_count
    )
}

/// Go's `time.Duration.String()` for a count of nanoseconds (`1h2m3.5s`, `1.5ms`, `0s`).
pub fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".to_owned();
    }
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000_000 {
        let (unit, scale) = if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{}{unit}", u / scale, fraction(u % scale, scale));
    }
    let secs = u / 1_000_000_000;
    let frac = fraction(u % 1_000_000_000, 1_000_000_000);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}{frac}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}{frac}s")
    } else {
        format!("{sign}{s}{frac}s")
    }
}

/// `.5` for 500 of 1000: the fractional digits without trailing zeros.
fn fraction(rem: u64, scale: u64) -> String {
    if rem == 0 {
        return String::new();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{rem:0width$}");
    format!(".{}", digits.trim_end_matches('0'))
}

/// Go's `time.RFC3339` in the local zone, e.g. `2026-11-21T10:00:00+01:00`.
pub fn rfc3339_local(unix_secs: i64) -> String {
    let Some(tm) = local_time(unix_secs) else {
        return unix_secs.to_string();
    };
    let offset = tm.tm_gmtoff;
    let zone = if offset == 0 {
        "Z".to_owned()
    } else {
        let abs = offset.unsigned_abs();
        let sign = if offset < 0 { '-' } else { '+' };
        format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

fn local_time(unix_secs: i64) -> Option<libc::tm> {
    let t = libc::time_t::try_from(unix_secs).ok()?;
    // SAFETY: `tm` is plain data that localtime_r fully initialises on success; both
    // pointers are valid for the call and localtime_r keeps neither.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        Some(tm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(999), "999ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(12_345_678), "12.345678ms");
        assert_eq!(go_duration(1_000_000_000), "1s");
        assert_eq!(go_duration(61_500_000_000), "1m1.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(3_723_000_000_001), "1h2m3.000000001s");
        assert_eq!(go_duration(-2_000_000_000), "-2s");
    }

    #[test]
    fn host_and_port_split_like_go() {
        assert_eq!(split_host_port("127.0.0.1:4150"), ("127.0.0.1", "4150"));
        assert_eq!(split_host_port("[::1]:80"), ("::1", "80"));
        assert_eq!(split_host_port("nothing"), ("", ""));
    }

    #[test]
    fn start_time_is_rfc3339() {
        let s = rfc3339_local(0);
        assert!(s.len() >= 20, "{s}");
        assert!(s.ends_with('Z') || s[19..].starts_with(['+', '-']), "{s}");
    }

    #[test]
    fn empty_stats_render_like_nsqd() {
        let text = render_text(
            &Stats {
                topics: Some(Vec::new()),
                producers: Vec::new(),
            },
            &TextContext {
                health: "OK",
                start_time: 100,
                now: 161_000_000_000,
                memory: None,
            },
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("nsqd v1.3.0 (built w/"), "{text}");
        assert!(lines[1].starts_with("start_time "), "{text}");
        assert_eq!(lines[2], "uptime 1m1s");
        assert_eq!(
            &lines[3..],
            ["", "Health: OK", "", "Topics: None", "", "Producers: None"]
        );
    }

    #[test]
    fn topics_channels_and_clients_render_in_nsqd_columns() {
        let client = ClientStats {
            client_id: "c".into(),
            hostname: "h".into(),
            version: "V2",
            remote_address: "127.0.0.1:5000".into(),
            state: 3,
            ready_count: 10,
            in_flight_count: 2,
            message_count: 7,
            finish_count: 5,
            requeue_count: 0,
            connect_ts: 100,
            sample_rate: 0,
            deflate: false,
            snappy: false,
            user_agent: "ua".into(),
            authed: false,
            auth_identity: String::new(),
            auth_identity_url: String::new(),
            pub_counts: Vec::new(),
            tls: false,
            tls_cipher_suite: String::new(),
            tls_version: String::new(),
            tls_negotiated_protocol: String::new(),
            tls_negotiated_protocol_is_mutual: false,
            tls_client_cert_subject: String::new(),
            tls_client_cert_issuer: String::new(),
            tls_client_cert_serial: String::new(),
            topology_zone: String::new(),
            topology_region: String::new(),
        };
        let mut producer = client.clone();
        producer.pub_counts = vec![
            PubCount {
                topic: "a".into(),
                count: 2,
            },
            PubCount {
                topic: "b".into(),
                count: 3,
            },
        ];
        let stats = Stats {
            topics: Some(vec![TopicStats {
                topic_name: "t".into(),
                channels: vec![ChannelStats {
                    channel_name: "ch".into(),
                    depth: 1,
                    backend_depth: 0,
                    in_flight_count: 2,
                    deferred_count: 0,
                    message_count: 9,
                    requeue_count: 0,
                    timeout_count: 0,
                    client_count: 1,
                    clients: Some(vec![client]),
                    paused: true,
                    e2e_processing_latency: LatencyResult::default(),
                }],
                depth: 3,
                backend_depth: 0,
                message_count: 9,
                message_bytes: 90,
                paused: false,
                e2e_processing_latency: LatencyResult::default(),
            }]),
            producers: vec![producer],
        };
        let text = render_text(
            &stats,
            &TextContext {
                health: "OK",
                start_time: 100,
                now: 110_000_000_000,
                memory: Some(MemStats::default()),
            },
        );
        assert!(
            text.contains("\nMemory:\n   heap_objects             \t0\n"),
            "{text}"
        );
        assert!(text.contains(
            "\nTopics:\n   [t              ] depth: 3     be-depth: 0     msgs: 9        e2e%: \n"
        ), "{text}");
        assert!(text.contains(
            "   *P [ch                       ] depth: 1     be-depth: 0     inflt: 2    def: 0    re-q: 0     timeout: 0     msgs: 9        e2e%: \n"
        ), "{text}");
        assert!(text.contains(
            "        [V2 h:5000 ua            ] state: 3 inflt: 2    rdy: 10   fin: 5        re-q: 0        msgs: 7        connected: 10s\n"
        ), "{text}");
        assert!(text.ends_with(
            "\nProducers:\n   [V2 h:5000 ua            ] msgs: 5        topics: a=2,b=3 connected: 10s\n"
        ), "{text}");
    }

    #[test]
    fn latency_percentiles_print_like_nsqd() {
        let r = LatencyResult::from(e2e::Quantiles {
            count: 7,
            values: vec![(1.0, 2_500_000_000.0), (0.99, 1_500_000.0), (0.5, 999.0)],
        });
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"count":7,"percentiles":[{"quantile":1,"value":2500000000},{"quantile":0.99,"value":1500000},{"quantile":0.5,"value":999}]}"#
        );
        assert_eq!(r.human(), "2.5s, 1.5ms, 999.0ns");
        assert_eq!(nanos_to_human(1_000.5), "1.0us");
        assert_eq!(LatencyResult::default().human(), "");
    }

    #[test]
    fn stats_json_uses_nsqd_field_names_and_nulls() {
        let doc = StatsDoc {
            version: "1.3.0",
            health: "OK",
            start_time: 5,
            topics: &None,
            memory: None,
            producers: &[],
        };
        assert_eq!(
            serde_json::to_string(&doc).unwrap(),
            r#"{"version":"1.3.0","health":"OK","start_time":5,"topics":null,"producers":null}"#
        );
        assert_eq!(
            serde_json::to_string(&LatencyResult::default()).unwrap(),
            r#"{"count":0,"percentiles":null}"#
        );
    }
}
