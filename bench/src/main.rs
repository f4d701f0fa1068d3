//! `bench`: NSQ's `bench_writer` and `bench_reader` for any V2-speaking broker.
//!
//! ```text
//! bench writer [--runfor 10s] [--tcp-address 127.0.0.1:4150] [--topic sub_bench]
//!              [--size 200] [--batch-size 200] [--outstanding 1] [--deadline ...]
//! bench reader [--runfor 10s] [--tcp-address 127.0.0.1:4150] [--topic sub_bench]
//!              [--channel ch] [--rdy 2500] [--size 200] [--deadline ...]
//! ```
//!
//! Both open `--connections` connections (default: `$GOMAXPROCS`, else one per CPU, like
//! the Go tools' one goroutine per GOMAXPROCS), set them up untimed, then run for
//! `--runfor`. The writer repeats one prebuilt MPUB of `--batch-size` zeroed
//! `--size`-byte messages, with `--outstanding` MPUBs in flight (1 = the Go tool's
//! wait-for-OK loop). The reader IDENTIFYs (feature negotiation), SUBs, sends `RDY --rdy`
//! at the start and FINs everything, one write per socket read. Go-style flags
//! (`-runfor=5s`, `-nsqd-tcp-address`) are accepted, and invoked as `bench_writer` or
//! `bench_reader` (e.g. through a symlink) the subcommand is implied.
//!
//! `--tls` (with `--tls-root-ca-file`), `--snappy` and `--deflate [--deflate-level N]`
//! negotiate those features in IDENTIFY on every connection (the writer then sends an
//! IDENTIFY too), so their cost can be measured against a plain run.
//!
//! Output: Go-style log lines on stderr, ending in the Go tools' summary
//! `[bench_writer] 2006/01/02 15:04:05 duration: 10.0003s - 38.147mb/s - 200000.000ops/s -
//! 5.000us/op`, then one parseable line on stdout:
//! `writer: msgs=N msgs/sec=X MiB/s=Y duration_secs=D conns=C ...` (`reader: ...`).
//! The exit status is 1 when any connection failed.
//!
//! `bench check --nsqd-tcp-address svc:4150 --lookupd-http-address l:4161 [--tls ...]
//! [--auth-secret S]` publishes one message and reads it back through nsqlookupd, as the
//! chart's `helm test` does; exit 0 once it arrived (see [`check`]).
//!
//! `bench produce --nsqd-tcp-address svc:4150 --topic T --count N [--rate R]` and
//! `bench consume --lookupd-http-address l:4161 --topic T --channel C --expect N` are
//! the two sides of a rolling-restart soak test: every acknowledged message must
//! arrive while brokers restart, duplicates are counted (see [`soak`], [`produce`],
//! [`consume`]).
//!
//! `bench storm --tcp-address h:4150 --connections 50000 [--identify] [--metrics-url
//! http://h:4151/metrics] [--ping-url http://h:4151/ping]` opens that many connections
//! at once, holds them, and reports how long opening took, the failures by reason, the
//! broker's RSS per connection and its HTTP latency meanwhile (see [`storm`]).
//!
//! Crate map:
//! - [`protocol`]: commands, frame classification and the in-place receive buffer (pure).
//! - [`check`]: the end-to-end check; [`lookup`]: nsqlookupd's `/lookup`.
//! - [`produce`] / [`consume`]: the soak test's sides; [`soak`]: what they share.
//! - [`storm`]: many connections at once.
//! - [`client`]: TLS/AUTH flags and ready connections for check, produce and consume.
//! - [`tls`]: TLS client configurations (CA file or unchecked, client certificates).
//! - [`conn`]: dialing, the TLS/snappy/deflate upgrades, and socket reads and writes.
//! - [`writer`] / [`reader`]: one connection's work in each role.
//! - [`harness`]: the run's lifecycle (setup, deadline, start, Ctrl-C, collect).
//! - [`recorder`]: counters, `--progress` and the `--flight-recorder` file.
//! - [`report`]: the Go-style summary and the parseable line.
//! - [`gotime`]: Go durations, the deadline layout and log timestamps.

mod baseline;
mod check;
mod client;
mod conn;
mod consume;
mod gotime;
mod harness;
mod lookup;
#[cfg(test)]
mod mock;
mod produce;
mod protocol;
mod reader;
mod recorder;
mod report;
mod soak;
mod storm;
mod tls;
mod writer;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::conn::Features;
use crate::gotime::{format_duration, parse_duration};
use crate::harness::{drive, Outcome, Settings};
use crate::recorder::{render_flight_recording, Run};
use crate::report::{go_summary, log_line, parseable};

const EXAMPLES: &str = "\
Examples:
  bench writer --runfor 10s --tcp-address 127.0.0.1:4150 --topic sub_bench
  bench writer --size 100 --batch-size 500 --outstanding 4 --connections 4
  bench reader --runfor 10s --topic sub_bench --channel ch --rdy 2500
  bench reader --progress --flight-recorder /tmp/reader.csv
  bench writer --tls --tls-root-ca-file ca.pem --snappy      (TLS, then snappy)
  bench reader --deflate --deflate-level 1
  bench_writer -runfor=5s -nsqd-tcp-address=10.0.0.1:4150     (Go spelling)

stderr ends with the Go tools' summary:
  [bench_writer] 2024/05/01 10:00:10 duration: 10.000512s - 95.362mb/s - 499974.402ops/s - 2.000us/op
stdout gets one parseable line:
  writer: msgs=5000000 msgs/sec=499974.4 MiB/s=95.362 duration_secs=10.000512 conns=2 ...";

#[derive(Parser)]
#[command(
    name = "bench",
    version,
    about = "NSQ bench_writer / bench_reader equivalents for any nsqd-compatible broker",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Publish MPUB batches as fast as the broker acknowledges them (bench_writer).
    #[command(after_help = EXAMPLES)]
    Writer(WriterArgs),
    /// Subscribe and FIN every message as fast as the broker delivers (bench_reader).
    #[command(after_help = EXAMPLES)]
    Reader(ReaderArgs),
    /// Go nsqd's per-message cost at --sync-every=1 on this disk: write,
    /// fsync and the metadata rewrite, one message at a time.
    SyncBaseline(BaselineArgs),
    /// One message end to end: PUB through --nsqd-tcp-address, read back from the
    /// brokers nsqlookupd lists (the chart's `helm test`). Exit 0 once it arrived.
    Check(check::CheckArgs),
    /// Rolling-restart soak, publishing side: --count messages `<run-id>-<seq>`
    /// through --nsqd-tcp-address, re-sending unacknowledged ones after any
    /// connection failure. Exit 0 once all are acknowledged.
    Produce(produce::ProduceArgs),
    /// Rolling-restart soak, consuming side: reads the topic's channel from every
    /// broker nsqlookupd lists (re-dialling restarted ones), FINs everything and
    /// reports which of --expect seqs arrived and how often. Exit 0 once all did.
    Consume(consume::ConsumeArgs),
    /// Opens --connections connections at once (magic, optionally IDENTIFY), holds
    /// them --hold, and reports the time to open them, failures by reason, the
    /// broker's RSS per connection (--metrics-url) and its HTTP latency meanwhile
    /// (--ping-url).
    Storm(storm::StormArgs),
}

#[derive(Args)]
struct BaselineArgs {
    /// Directory on the disk to measure (a broker's --data-path).
    #[arg(long)]
    data_path: PathBuf,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Duration of time to run (Go duration).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    runfor: Duration,
}

#[derive(Args)]
struct CommonArgs {
    /// Duration of time to run (Go duration: 10s, 1m30s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    runfor: Duration,
    /// <addr>:<port> of the broker's TCP listener.
    #[arg(
        long = "tcp-address",
        alias = "nsqd-tcp-address",
        default_value = "127.0.0.1:4150"
    )]
    tcp_address: String,
    /// Topic to publish to / receive messages on.
    #[arg(long, default_value = "sub_bench")]
    topic: String,
    /// Size of messages in bytes (the reader uses it only for the Go summary's mb/s).
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Start the timed run at this UTC time, "2006-01-02 15:04:05" (after connecting).
    #[arg(long)]
    deadline: Option<String>,
    /// Number of connections [default: $GOMAXPROCS, else the number of CPUs].
    #[arg(long)]
    connections: Option<usize>,
    /// Tokio worker threads [default: min(connections, CPUs)].
    #[arg(long)]
    threads: Option<usize>,
    /// Timeout for each TCP connect (Go duration).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Write the last samples of per-connection throughput and the run's events
    /// (connects, error frames, failures) to FILE when the run ends, however it ends.
    #[arg(long, value_name = "FILE")]
    flight_recorder: Option<PathBuf>,
    /// Samples the flight recorder keeps (the most recent win).
    #[arg(long, default_value_t = 3600)]
    flight_recorder_samples: usize,
    /// Sampling period for --progress and --flight-recorder (Go duration).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    sample_interval: Duration,
    /// Print the message rate to stderr every --sample-interval.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false,
          default_missing_value = "true")]
    progress: bool,
    /// Upgrade every connection to TLS (IDENTIFY tls_v1), trusting --tls-root-ca-file.
    #[arg(long)]
    tls: bool,
    /// PEM file of the CA that signed the broker's certificate (needed with --tls).
    #[arg(long, value_name = "FILE")]
    tls_root_ca_file: Option<PathBuf>,
    /// Name to check the broker's certificate against [default: --tcp-address's host].
    #[arg(long)]
    tls_server_name: Option<String>,
    /// Negotiate snappy compression.
    #[arg(long, conflicts_with = "deflate")]
    snappy: bool,
    /// Negotiate deflate compression.
    #[arg(long)]
    deflate: bool,
    /// Deflate level to ask for (the broker caps it at its --max-deflate-level).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=9))]
    deflate_level: u32,
}

/// The connection features the flags ask for.
fn features(c: &CommonArgs) -> Result<Features> {
    let tls = if c.tls {
        let Some(ca) = &c.tls_root_ca_file else {
            bail!("--tls needs --tls-root-ca-file (the CA that signed the broker's certificate)");
        };
        let name = tls::server_name(&c.tcp_address, c.tls_server_name.as_deref())?;
        Some((tls::client_config(tls::Trust::CaFile(ca), None)?, name))
    } else {
        None
    };
    Ok(Features {
        tls,
        snappy: c.snappy,
        deflate: c.deflate.then_some(c.deflate_level),
    })
}

#[derive(Args)]
struct WriterArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Messages per MPUB.
    #[arg(long, default_value_t = 200)]
    batch_size: usize,
    /// MPUBs in flight per connection; 1 waits for each OK like the Go bench_writer,
    /// more pipelines (reported in the output).
    #[arg(long, alias = "pipeline", default_value_t = 1)]
    outstanding: usize,
    /// Pseudo-random message bodies instead of the Go tool's zeros, which
    /// compress to almost nothing.
    #[arg(long)]
    random_bodies: bool,
    /// Single-message PUBs instead of MPUB batches (the durable-mode load:
    /// with --outstanding N, N PUBs in flight per connection).
    #[arg(long = "pub", conflicts_with = "batch_size")]
    single: bool,
    /// nsqd's /metrics URL (http://127.0.0.1:4151/metrics): also report the
    /// diskqueue fsyncs the broker made during the run, per second.
    #[arg(long, value_name = "URL")]
    metrics_url: Option<String>,
}

#[derive(Args)]
struct ReaderArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Channel to receive messages on.
    #[arg(long, default_value = "ch")]
    channel: String,
    /// RDY count to use, per connection.
    #[arg(long, default_value_t = 2500)]
    rdy: u64,
    /// IDENTIFY output_buffer_size in bytes (broker default when unset).
    #[arg(long)]
    output_buffer_size: Option<i64>,
    /// IDENTIFY output_buffer_timeout (Go duration; broker default when unset).
    #[arg(long, value_parser = parse_duration)]
    output_buffer_timeout: Option<Duration>,
}

fn main() -> ExitCode {
    let role = match Cli::parse_from(go_style_args(std::env::args_os().collect())).role {
        Role::SyncBaseline(a) => return sync_baseline(&a),
        Role::Check(a) => return check::main(a),
        Role::Produce(a) => return produce::main(a),
        Role::Consume(a) => return consume::main(a),
        Role::Storm(a) => return storm::main(a),
        role => role,
    };
    let (common, kind) = match &role {
        Role::Writer(a) => (&a.common, "bench_writer"),
        Role::Reader(a) => (&a.common, "bench_reader"),
        Role::SyncBaseline(_)
        | Role::Check(_)
        | Role::Produce(_)
        | Role::Consume(_)
        | Role::Storm(_) => {
            unreachable!("handled above")
        }
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let connections = common.connections.unwrap_or_else(|| {
        std::env::var("GOMAXPROCS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n: &usize| *n > 0)
            .unwrap_or(cpus)
    });
    let threads = common.threads.unwrap_or(connections.min(cpus)).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let result = runtime.block_on(async {
        match role {
            Role::Writer(args) => run_writer(args, connections).await,
            Role::Reader(args) => run_reader(args, connections).await,
            Role::SyncBaseline(_)
            | Role::Check(_)
            | Role::Produce(_)
            | Role::Consume(_)
            | Role::Storm(_) => {
                unreachable!("handled above")
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", log_line(kind, &format!("fatal: {e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn sync_baseline(a: &BaselineArgs) -> ExitCode {
    match baseline::run(&a.data_path, a.size, a.runfor) {
        Ok((n, elapsed)) => {
            let secs = elapsed.as_secs_f64();
            println!(
                "sync-baseline: msgs={n} msgs/sec={:.1} fsyncs_per_sec={:.1} duration_secs={secs:.6}",
                n as f64 / secs,
                2.0 * n as f64 / secs
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sync-baseline: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Accepts the Go tools' spellings: `-flag` becomes `--flag`, and a program named
/// `bench_writer`/`bench_reader` implies the subcommand.
fn go_style_args(mut args: Vec<OsString>) -> Vec<OsString> {
    let program = args.first().map(|p| {
        PathBuf::from(p)
            .file_name()
            .map(|f| f.to_owned())
            .unwrap_or_default()
    });
    let implied = match program.as_ref().and_then(|p| p.to_str()) {
        Some("bench_writer") => Some("writer"),
        Some("bench_reader") => Some("reader"),
        _ => None,
    };
    if let Some(role) = implied {
        args.insert(1.min(args.len()), role.into());
    }
    let mut out = Vec::with_capacity(args.len());
    let mut flags_done = false;
    for arg in args {
        match arg.to_str() {
            Some("--") => {
                flags_done = true;
                out.push(arg);
            }
            Some(s)
                if !flags_done
                    && s.len() > 2
                    && s.starts_with('-')
                    && s.as_bytes()[1].is_ascii_alphabetic() =>
            {
                out.push(format!("-{s}").into());
            }
            _ => out.push(arg),
        }
    }
    out
}

fn settings(common: &CommonArgs, connections: usize) -> Result<Settings> {
    if connections == 0 {
        bail!("--connections must be at least 1");
    }
    if common.sample_interval.is_zero() {
        bail!("--sample-interval must be positive");
    }
    Ok(Settings {
        connections,
        runfor: common.runfor,
        deadline: common.deadline.clone(),
        sample_interval: common.sample_interval,
        window: if common.flight_recorder.is_some() {
            common.flight_recorder_samples
        } else {
            0
        },
        progress: common.progress,
    })
}

async fn run_writer(args: WriterArgs, connections: usize) -> Result<ExitCode> {
    let c = &args.common;
    if args.batch_size == 0 || args.outstanding == 0 {
        bail!("--batch-size and --outstanding must be at least 1");
    }
    let settings = settings(c, connections)?;
    let run = Run::new("bench_writer", connections);
    let (command, batch_size) = if args.single {
        (
            protocol::pub_command(&c.topic, c.size, args.random_bodies),
            1,
        )
    } else {
        let cmd = protocol::mpub_command(&c.topic, c.size, args.batch_size, args.random_bodies);
        (cmd, args.batch_size)
    };
    let plan = Arc::new(writer::Plan {
        command,
        batch_size: batch_size as u64,
        size: c.size as u64,
        outstanding: args.outstanding,
    });
    let features = features(c)?;
    let command = if args.single {
        "PUB of 1".to_string()
    } else {
        format!("MPUB of {}", args.batch_size)
    };
    let describe = format!(
        "{connections} {} connections to {}, topic {}, {command} x {}-byte messages, \
         {} outstanding per connection, runfor {}",
        features.describe(),
        c.tcp_address,
        c.topic,
        c.size,
        args.outstanding,
        format_duration(c.runfor)
    );
    eprintln!("{}", log_line(run.kind, &describe));
    if args.outstanding > 1 {
        eprintln!(
            "{}",
            log_line(
                run.kind,
                &format!(
                    "pipelining: up to {} {} in flight per connection \
                     (the Go bench_writer waits for each OK: --outstanding 1)",
                    args.outstanding,
                    if args.single { "PUBs" } else { "MPUBs" }
                )
            )
        );
    }
    let (addr, timeout) = (c.tcp_address.clone(), c.connect_timeout);
    let fsyncs_before = match &args.metrics_url {
        Some(url) => Some(fsyncs(url).await?),
        None => None,
    };
    let outcome = drive(
        &run,
        &settings,
        |i| {
            let (addr, features) = (addr.clone(), features.clone());
            async move { writer::connect(&addr, timeout, i, &features).await }
        },
        |i, link, end, stop| {
            writer::publish(link, plan.clone(), end, run.counters[i].clone(), stop)
        },
    )
    .await?;
    let mut extra = vec![
        ("conns", connections.to_string()),
        ("features", features_label(&features)),
        ("size", c.size.to_string()),
        ("batch_size", batch_size.to_string()),
        (
            "command",
            if args.single { "PUB" } else { "MPUB" }.to_string(),
        ),
        ("outstanding", args.outstanding.to_string()),
        ("random_bodies", args.random_bodies.to_string()),
    ];
    if let (Some(url), Some(before)) = (&args.metrics_url, fsyncs_before) {
        let made = fsyncs(url).await?.saturating_sub(before);
        let per_sec = made as f64 / outcome.duration.as_secs_f64().max(1e-9);
        let msgs = run.total_msgs();
        eprintln!(
            "{}",
            log_line(
                run.kind,
                &format!(
                    "broker fsyncs: {made} ({per_sec:.1}/s, {:.1} messages each)",
                    msgs as f64 / made.max(1) as f64
                )
            )
        );
        extra.push(("fsyncs", made.to_string()));
        extra.push(("fsyncs_per_sec", format!("{per_sec:.1}")));
    }
    finish(
        &run,
        c,
        "writer",
        &describe,
        outcome,
        extra,
        run.total_bytes(),
    )
}

/// `nsq_diskqueue_fsyncs_total` from a broker's `/metrics`.
async fn fsyncs(url: &str) -> Result<u64> {
    let text = storm::metrics_text(url).await?;
    storm::metric(&text, "nsq_diskqueue_fsyncs_total")
        .map(|v| v as u64)
        .with_context(|| format!("{url} has no nsq_diskqueue_fsyncs_total"))
}

async fn run_reader(args: ReaderArgs, connections: usize) -> Result<ExitCode> {
    let c = &args.common;
    let settings = settings(c, connections)?;
    let run = Run::new("bench_reader", connections);
    let mut identify_extra = serde_json::Map::new();
    if let Some(size) = args.output_buffer_size {
        identify_extra.insert("output_buffer_size".into(), size.into());
    }
    if let Some(timeout) = args.output_buffer_timeout {
        identify_extra.insert(
            "output_buffer_timeout".into(),
            (timeout.as_millis() as u64).into(),
        );
    }
    let features = features(c)?;
    let plan = Arc::new(reader::Plan {
        topic: c.topic.clone(),
        channel: args.channel.clone(),
        rdy: args.rdy,
        identify_extra,
        features: features.clone(),
    });
    let describe = format!(
        "{connections} {} connections to {}, topic {} channel {}, RDY {} per connection, runfor {}",
        features.describe(),
        c.tcp_address,
        c.topic,
        args.channel,
        args.rdy,
        format_duration(c.runfor)
    );
    eprintln!("{}", log_line(run.kind, &describe));
    let (addr, timeout) = (c.tcp_address.clone(), c.connect_timeout);
    let outcome = drive(
        &run,
        &settings,
        |i| {
            let (addr, plan, run) = (addr.clone(), plan.clone(), run.clone());
            async move {
                let sub = reader::subscribe(&addr, timeout, i, &plan).await?;
                if let Some(max) = sub.max_rdy_count.filter(|max| plan.rdy > *max) {
                    run.warn(format!(
                        "conn {i}: --rdy {} exceeds the broker's max_rdy_count {max}",
                        plan.rdy
                    ));
                }
                Ok(sub)
            }
        },
        |i, sub, end, stop| {
            reader::consume(
                sub,
                i,
                plan.clone(),
                end,
                run.counters[i].clone(),
                run.clone(),
                stop,
            )
        },
    )
    .await?;
    let extra = vec![
        ("conns", connections.to_string()),
        ("features", features_label(&features)),
        ("rdy", args.rdy.to_string()),
        ("error_frames", run.total_error_frames().to_string()),
    ];
    finish(
        &run,
        c,
        "reader",
        &describe,
        outcome,
        extra,
        run.total_bytes(),
    )
}

/// The features as one token for the parseable line: `plain`, `tls+snappy`, ...
fn features_label(f: &Features) -> String {
    let mut on = Vec::new();
    if f.tls.is_some() {
        on.push("tls");
    }
    if f.snappy {
        on.push("snappy");
    }
    if f.deflate.is_some() {
        on.push("deflate");
    }
    if on.is_empty() {
        "plain".into()
    } else {
        on.join("+")
    }
}

/// Prints the summary lines, writes the flight recording and picks the exit status.
fn finish(
    run: &Run,
    c: &CommonArgs,
    role: &str,
    describe: &str,
    outcome: Outcome,
    mut extra: Vec<(&str, String)>,
    bytes: u64,
) -> Result<ExitCode> {
    let msgs = run.total_msgs();
    if outcome.interrupted {
        eprintln!(
            "{}",
            log_line(run.kind, "interrupted; reporting the partial run")
        );
    }
    eprintln!(
        "{}",
        log_line(run.kind, &go_summary(outcome.duration, msgs, c.size))
    );
    let (min, max) = run.conn_spread();
    extra.push(("conn_min", min.to_string()));
    extra.push(("conn_max", max.to_string()));
    extra.push(("failed_conns", outcome.failures.len().to_string()));
    if outcome.interrupted {
        extra.push(("interrupted", "true".to_string()));
    }
    println!("{}", parseable(role, outcome.duration, msgs, bytes, &extra));
    if let Some(path) = &c.flight_recorder {
        let text = render_flight_recording(run, describe, &outcome.samples);
        std::fs::write(path, text)
            .with_context(|| format!("writing the flight recording to {}", path.display()))?;
    }
    Ok(if outcome.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        go_style_args(list.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn go_spellings_are_accepted() {
        assert_eq!(
            args(&[
                "/usr/bin/bench_writer",
                "-runfor=5s",
                "-nsqd-tcp-address",
                "h:1",
                "-h"
            ]),
            [
                "/usr/bin/bench_writer",
                "writer",
                "--runfor=5s",
                "--nsqd-tcp-address",
                "h:1",
                "-h"
            ]
        );
        assert_eq!(
            args(&["bench", "reader", "--rdy", "10", "--", "-x"]),
            ["bench", "reader", "--rdy", "10", "--", "-x"]
        );
        let cli = Cli::try_parse_from(args(&["bench_reader", "-runfor=5s", "-rdy=7"])).unwrap();
        match cli.role {
            Role::Reader(r) => {
                assert_eq!((r.common.runfor, r.rdy), (Duration::from_secs(5), 7));
                assert_eq!(r.common.tcp_address, "127.0.0.1:4150");
                assert_eq!(r.channel, "ch");
            }
            _ => panic!("expected the reader"),
        }
    }

    #[test]
    fn writer_defaults_match_the_go_tool() {
        let cli = Cli::try_parse_from(["bench", "writer"]).unwrap();
        match cli.role {
            Role::Writer(w) => {
                assert_eq!(w.common.runfor, Duration::from_secs(10));
                assert_eq!((w.common.size, w.batch_size, w.outstanding), (200, 200, 1));
                assert_eq!(w.common.topic, "sub_bench");
                assert!(!w.common.progress);
                assert!(!w.single && w.metrics_url.is_none());
            }
            _ => panic!("expected the writer"),
        }
    }

    #[test]
    fn pub_mode_refuses_a_batch_size() {
        let cli = Cli::try_parse_from(["bench", "writer", "--pub", "--outstanding", "64"]).unwrap();
        assert!(matches!(cli.role, Role::Writer(w) if w.single && w.outstanding == 64));
        assert!(Cli::try_parse_from(["bench", "writer", "--pub", "--batch-size", "5"]).is_err());
        let cli = Cli::try_parse_from(["bench", "sync-baseline", "--data-path", "/d"]).unwrap();
        assert!(matches!(cli.role, Role::SyncBaseline(b) if b.size == 200));
    }
}
