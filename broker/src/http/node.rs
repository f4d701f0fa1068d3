//! What the node reports about itself: `/ping`, `/info` and `/stats`.

use crate::nsqd::Nsqd;
use crate::stats::{self, StatsDoc, StatsFilter, TextContext};
use nsq_common::http::{ApiError, ApiResult, Params, Reply};
use nsq_common::version::NSQ_VERSION;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// nsqd's health string: `OK`, or `NOK - <error>`.
fn health(nsqd: &Nsqd) -> String {
    match nsqd.health() {
        None => "OK".to_owned(),
        Some(e) => format!("NOK - {e}"),
    }
}

pub(super) fn ping(nsqd: &Nsqd) -> ApiResult {
    let h = health(nsqd);
    if nsqd.health().is_some() {
        return Err(ApiError::new(500, h));
    }
    Ok(Reply::text(h))
}

/// nsqd's `/info`, key for key and in its order; nothing of our own (our
/// version is in `--version` and `nsq_build_info`), so a client that checks
/// the shape sees nsqd.
#[derive(Serialize)]
struct Info<'a> {
    version: &'static str,
    broadcast_address: &'a str,
    hostname: String,
    http_port: i64,
    tcp_port: i64,
    start_time: i64,
    /// Nanoseconds, as Go encodes a `time.Duration`.
    max_heartbeat_interval: i64,
    max_output_buffer_size: i64,
    max_output_buffer_timeout: i64,
    max_deflate_level: i64,
    topology_zone: &'a str,
    topology_region: &'a str,
}

pub(super) fn info(nsqd: &Nsqd) -> ApiResult {
    let opts = nsqd.opts();
    let hostname = hostname::get()
        .map_err(|e| ApiError::new(500, e.to_string()))?
        .to_string_lossy()
        .into_owned();
    let nanos = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    Ok(Reply::json(&Info {
        version: NSQ_VERSION,
        broadcast_address: &opts.broadcast_address,
        hostname,
        http_port: port(
            opts.broadcast_http_port,
            &nsqd.http_addr,
            &opts.http_address,
        ),
        tcp_port: port(opts.broadcast_tcp_port, &nsqd.tcp_addr, &opts.tcp_address),
        start_time: nsqd.start_time,
        max_heartbeat_interval: nanos(opts.max_heartbeat_interval),
        max_output_buffer_size: opts.max_output_buffer_size,
        max_output_buffer_timeout: nanos(opts.max_output_buffer_timeout),
        max_deflate_level: opts.max_deflate_level,
        topology_zone: &opts.topology_zone,
        topology_region: &opts.topology_region,
    }))
}

/// The broadcast port when set, else the bound port, else the configured one
/// (-1 when none is known, nsqd's value for a non-TCP listener).
fn port(broadcast: u16, bound: &OnceLock<SocketAddr>, configured: &str) -> i64 {
    if broadcast != 0 {
        return i64::from(broadcast);
    }
    if let Some(addr) = bound.get() {
        return i64::from(addr.port());
    }
    configured
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .map_or(-1, i64::from)
}

pub(super) fn stats(nsqd: &Nsqd, params: &Params) -> ApiResult {
    let filter = StatsFilter {
        topic: params.get_or_empty("topic").to_owned(),
        channel: params.get_or_empty("channel").to_owned(),
        include_clients: params.get_bool("include_clients", true),
    };
    let include_mem = params.get_bool("include_mem", true);
    let snapshot = stats::collect(nsqd, &filter);
    let health = health(nsqd);
    let memory = include_mem.then(stats::mem_stats);
    if params.get("format") != Some("json") {
        let text = stats::render_text(
            &snapshot,
            &TextContext {
                health: &health,
                start_time: nsqd.start_time,
                now: crate::message::unix_nanos(),
                memory,
            },
        );
        return Ok(Reply::text(text));
    }
    Ok(Reply::json(&StatsDoc {
        version: NSQ_VERSION,
        health: &health,
        start_time: nsqd.start_time,
        topics: &snapshot.topics,
        memory,
        producers: &snapshot.producers,
    }))
}
