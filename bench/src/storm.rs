//! `bench storm`: thousands of connections at once, the load of every client of a
//! cluster reconnecting together.
//!
//! 1. Raises this process's open-file soft limit to its hard limit (each connection is
//!    a file descriptor) and says so when `--connections` will not fit under it: the
//!    connections past the limit (less a few descriptors kept for the metrics and ping
//!    requests) are not attempted and count as failed, `skipped/open_file_limit`.
//! 2. With `--metrics-url`, reads the broker's `process_resident_memory_bytes` (and
//!    `process_max_fds`, to warn when the broker cannot take that many).
//! 3. Opens `--connections` TCP connections as fast as it can, at most `--concurrency`
//!    of them being set up at once. Each sends the `  V2` magic; with `--identify` also
//!    an IDENTIFY with heartbeats off (`heartbeat_interval: -1`, so idle connections
//!    stay quiet) and waits for its answer, which shows the broker really serves the
//!    connection (without it a connect completes as soon as the kernel queues it).
//!    Everything a connection does must finish within `--connect-timeout`.
//! 4. Holds them `--hold`. Halfway, reads the broker's RSS (and `nsq_clients`) again;
//!    with `--ping-url`, GETs it every 100 ms (up to 20 times) meanwhile, each on a new
//!    connection like a health probe.
//! 5. Counts connections the broker closed during the hold, closes everything and
//!    prints one line:
//!    `storm: connections=N opened=M failed=F open_secs=S ... rss_before=B rss_after=A
//!    rss_per_conn_bytes=P ... ping_p50_ms=X ping_max_ms=Y ...`
//!
//! `open_secs` runs from the first connect to the last connection that finished setting
//! up. Failures are counted by `stage/reason` (`connect/EADDRNOTAVAIL`,
//! `connect/timeout`, `identify/E_...`, `identify/closed`, ...). The exit status is 1
//! when any connection failed or was closed during the hold, or a ping or the second
//! metrics read failed.
//!
//! RSS seldom shrinks when connections close (the allocator keeps what was freed), so
//! the per-connection figure means something against a freshly started broker, not
//! one that held as many connections before.
//!
//! One source address has one ephemeral port range (about 28,000 ports by default), so
//! one address cannot open more connections than that to one broker port. Against a
//! loopback IPv4 broker, more than `--per-source-ip` connections bind to source
//! addresses 127.0.0.1, 127.0.0.2, ... (Linux routes all of 127/8 to `lo`), a new one
//! every `--per-source-ip` connections. They bind with `IP_BIND_ADDRESS_NO_PORT`, so
//! the port is still picked at connect time: unique for the connection, not for the
//! address, and a port left in TIME_WAIT by an earlier run can be reused, as without
//! the bind.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use nsq_common::http::client::{fetch, Timeouts};
use nsq_common::wire::MAGIC_V2;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::gotime::{format_duration, parse_duration};
use crate::protocol::{identify_command, Frame, ReadBuf};
use crate::report::log_line;

const KIND: &str = "bench_storm";
/// Pings made during the hold, at most.
const PINGS: usize = 20;
const PING_EVERY: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// File descriptors kept free for the metrics and ping requests (and anything else
/// the runtime opens) once the connections have used the rest.
const SPARE_FDS: u64 = 16;
/// Enough for an IDENTIFY answer (it grows for a bigger frame).
const ANSWER_BUF: usize = 256;

#[derive(Args)]
pub struct StormArgs {
    /// <addr>:<port> of the broker's TCP listener.
    #[arg(
        long = "tcp-address",
        alias = "nsqd-tcp-address",
        default_value = "127.0.0.1:4150"
    )]
    tcp_address: String,
    /// Connections to open.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,
    /// Connections being set up at once, at most.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Also IDENTIFY on every connection (heartbeats off) and wait for the answer.
    #[arg(long)]
    identify: bool,
    /// The broker's /metrics (http://127.0.0.1:4151/metrics): report its RSS before the
    /// storm and halfway through the hold, per connection.
    #[arg(long, value_name = "URL")]
    metrics_url: Option<String>,
    /// A URL to GET every 100 ms during the hold (http://127.0.0.1:4151/ping): report
    /// its latency.
    #[arg(long, value_name = "URL")]
    ping_url: Option<String>,
    /// How long to keep the connections open once the last one is (Go duration).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    hold: Duration,
    /// Time for each connection's connect, magic and IDENTIFY together (Go duration).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Against a loopback IPv4 broker, more connections than this get source addresses
    /// 127.0.0.1, 127.0.0.2, ..., this many each (one address's ephemeral ports run out
    /// near 28,000).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    per_source_ip: u64,
}

pub fn main(args: StormArgs) -> ExitCode {
    let fds = raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    match runtime.block_on(run(&args, fds)) {
        Ok(report) => {
            println!("{}", report.line());
            match report.trouble() {
                None => ExitCode::SUCCESS,
                Some(why) => {
                    log(&format!("FAIL: {why}"));
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            log(&format!("FAIL: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn log(msg: &str) {
    eprintln!("{}", log_line(KIND, msg));
}

/// The open-file limit after raising the soft limit to the hard one:
/// `(soft before, soft now, hard)`, or why it could not be read or raised.
type FdLimits = std::result::Result<(u64, u64, u64), String>;

fn raise_open_file_limit() -> FdLimits {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", io::Error::last_os_error()));
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(format!(
                "raising the open-file limit from {before} to {}: {}",
                lim.rlim_max,
                io::Error::last_os_error()
            ));
        }
        lim = raised;
    }
    Ok((before, lim.rlim_cur, lim.rlim_max))
}

/// Where connection `i` of `connections` to `target` binds before connecting: `None`
/// leaves it to the kernel (one source address). Against a loopback IPv4 target with
/// more than `per_source` connections, connections `0..per_source` come from 127.0.0.1,
/// the next `per_source` from 127.0.0.2, and so on.
pub fn source_ip(target: IpAddr, connections: u64, per_source: u64, i: u64) -> Option<IpAddr> {
    match target {
        IpAddr::V4(ip) if ip.is_loopback() && connections > per_source => {
            let first = u32::from(Ipv4Addr::new(127, 0, 0, 1));
            let nth = u32::try_from(i / per_source.max(1)).ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(first.checked_add(nth)?)))
        }
        _ => None,
    }
}

/// How many source addresses [`source_ip`] hands out (0: it leaves them to the kernel).
pub fn source_ips(target: IpAddr, connections: u64, per_source: u64) -> u64 {
    match source_ip(target, connections, per_source, 0) {
        Some(_) => connections.div_ceil(per_source.max(1)),
        None => 0,
    }
}

/// Sources beyond 127.255.255.254 would leave 127/8.
const MAX_SOURCE_IPS: u64 = (1 << 24) - 2;

/// The first sample of metric `name` in Prometheus text exposition (labels, if any,
/// ignored): `process_resident_memory_bytes 1.2345e+07` gives `12345000.0`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix(name)?;
        let rest = match rest.strip_prefix('{') {
            Some(labels) => &labels[labels.rfind('}')? + 1..],
            None => rest,
        };
        if !rest.starts_with([' ', '\t']) {
            return None; // a longer name with `name` as its prefix
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The size of the ephemeral port range in `/proc/sys/net/ipv4/ip_local_port_range`'s
/// format, `32768\t60999`.
pub fn port_range_size(text: &str) -> Option<u64> {
    let mut it = text.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (low, high) = (it.next()??, it.next()??);
    (high >= low).then(|| high - low + 1)
}

/// The nearest-rank percentile `p` (0..=100) of `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What the broker's /metrics said.
struct Sample {
    rss: u64,
    clients: Option<u64>,
    max_fds: Option<u64>,
}

/// A broker's `/metrics` text.
pub async fn metrics_text(url: &str) -> Result<String> {
    let resp = fetch("GET", url, None, None, Timeouts::default())
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    if !resp.is_success() {
        bail!("GET {url}: status {}", resp.status);
    }
    Ok(String::from_utf8_lossy(&resp.body).into_owned())
}

async fn sample(url: &str) -> Result<Sample> {
    let text = metrics_text(url).await?;
    let whole = |name| {
        metric(&text, name)
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v as u64)
    };
    Ok(Sample {
        rss: whole("process_resident_memory_bytes")
            .with_context(|| format!("{url} has no process_resident_memory_bytes"))?,
        clients: whole("nsq_clients"),
        max_fds: whole("process_max_fds"),
    })
}

/// Why one connection failed: `stage/reason` counts, the text explains.
struct Failure {
    key: String,
    text: String,
}

impl Failure {
    fn new(stage: &str, reason: &str, text: impl std::fmt::Display) -> Failure {
        Failure {
            key: format!("{stage}/{reason}"),
            text: text.to_string(),
        }
    }

    fn io(stage: &str, e: &io::Error) -> Failure {
        Failure::new(stage, &errno_name(e), e)
    }
}

/// A short name for an I/O error: the errno's (`EMFILE`), else the error kind's.
fn errno_name(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EMFILE) => "EMFILE",
        Some(libc::ENFILE) => "ENFILE",
        Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL",
        Some(libc::EADDRINUSE) => "EADDRINUSE",
        Some(libc::ECONNREFUSED) => "ECONNREFUSED",
        Some(libc::ECONNRESET) => "ECONNRESET",
        Some(libc::ECONNABORTED) => "ECONNABORTED",
        Some(libc::ETIMEDOUT) => "ETIMEDOUT",
        Some(libc::EPIPE) => "EPIPE",
        Some(libc::ENETUNREACH) => "ENETUNREACH",
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH",
        Some(libc::ENOBUFS) => "ENOBUFS",
        Some(libc::ENOMEM) => "ENOMEM",
        Some(libc::EAGAIN) => "EAGAIN",
        Some(n) => return format!("errno{n}"),
        None => return format!("{:?}", e.kind()),
    };
    name.to_string()
}

/// `fut` by `deadline`, its error or its lateness named after `stage`.
async fn within<T>(
    deadline: tokio::time::Instant,
    stage: &str,
    fut: impl Future<Output = io::Result<T>>,
) -> std::result::Result<T, Failure> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::io(stage, &e)),
        Err(_) => Err(Failure::new(stage, "timeout", "--connect-timeout passed")),
    }
}

/// `  V2` and, when `identify`, an IDENTIFY for connection `i`, in one write.
fn hello(i: u64, identify: bool) -> Vec<u8> {
    let mut out = MAGIC_V2.to_vec();
    if identify {
        let body = serde_json::json!({
            "client_id": format!("storm-{i}"),
            "user_agent": format!("nsq-bench/{}", env!("CARGO_PKG_VERSION")),
            "heartbeat_interval": -1,
        });
        out.extend_from_slice(&identify_command(body.to_string().as_bytes()));
    }
    out
}

/// One connection, set up: connected, magic (and IDENTIFY) written, IDENTIFY
/// answered. Returns the stream and when it was ready.
async fn open(
    target: SocketAddr,
    source: Option<IpAddr>,
    hello: Vec<u8>,
    identify: bool,
    deadline: tokio::time::Instant,
) -> std::result::Result<(TcpStream, Instant), Failure> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| Failure::io("socket", &e))?;
    if let Some(ip) = source {
        bind_source(&socket, ip)
            .map_err(|e| Failure::new("bind", &errno_name(&e), format!("{ip}: {e}")))?;
    }
    let mut stream = within(deadline, "connect", socket.connect(target)).await?;
    within(deadline, "write", stream.write_all(&hello)).await?;
    if identify {
        identify_answer(&mut stream, deadline).await?;
    }
    Ok((stream, Instant::now()))
}

/// Binds `socket` to `ip`, leaving the port to connect (`IP_BIND_ADDRESS_NO_PORT`):
/// otherwise bind picks a port no other socket on `ip` holds, TIME_WAIT included.
fn bind_source(socket: &TcpSocket, ip: IpAddr) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads an int from `on`, which outlives the call, on a
        // socket this function borrows.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    socket.bind(SocketAddr::new(ip, 0))
}

/// Reads the IDENTIFY answer: `OK` (or JSON) is success, an error frame a failure
/// named after its code.
async fn identify_answer(
    stream: &mut TcpStream,
    deadline: tokio::time::Instant,
) -> std::result::Result<(), Failure> {
    let mut rb = ReadBuf::new(ANSWER_BUF);
    loop {
        match rb.next_frame() {
            Ok(None) | Ok(Some(Frame::Heartbeat)) => {}
            Ok(Some(Frame::Ok | Frame::Response(_))) => return Ok(()),
            Ok(Some(Frame::Error(e))) => {
                let text = String::from_utf8_lossy(e);
                let code = text.split_whitespace().next().unwrap_or("E_?").to_string();
                return Err(Failure::new("identify", &code, text));
            }
            Ok(Some(Frame::Message(_))) => {
                return Err(Failure::new("identify", "message", "a message frame"))
            }
            Err(e) => return Err(Failure::new("identify", "bad_frame", e)),
        }
        let n = within(deadline, "identify", stream.read(rb.spare())).await?;
        if n == 0 {
            return Err(Failure::new(
                "identify",
                "closed",
                "the broker closed the connection",
            ));
        }
        rb.filled(n);
    }
}

/// The connections opened and the failures, by `stage/reason`.
struct Storm {
    streams: Vec<TcpStream>,
    failures: BTreeMap<String, u64>,
    /// From the first connect to the last connection ready.
    open: Duration,
}

/// Opens the connections; at most `budget` are open or being set up at once (the
/// open-file limit), the rest are skipped.
async fn storm(args: &StormArgs, target: SocketAddr, budget: u64) -> Storm {
    let mut set = JoinSet::new();
    let mut streams = Vec::with_capacity(args.connections.min(1 << 20) as usize);
    let mut failures = BTreeMap::<String, u64>::new();
    let mut last_ready = None;
    let mut next = 0u64;
    let started = Instant::now();
    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    while next < args.connections || !set.is_empty() {
        while next < args.connections
            && (set.len() as u64) < args.concurrency
            && ((streams.len() + set.len()) as u64) < budget
        {
            let source = source_ip(target.ip(), args.connections, args.per_source_ip, next);
            let deadline = tokio::time::Instant::now() + args.connect_timeout;
            let hello = hello(next, args.identify);
            set.spawn(open(target, source, hello, args.identify, deadline));
            next += 1;
        }
        if set.is_empty() && next < args.connections {
            let skipped = args.connections - next;
            log(&format!(
                "the open-file limit leaves room for no more: {skipped} connections skipped"
            ));
            *failures
                .entry("skipped/open_file_limit".into())
                .or_default() += skipped;
            break;
        }
        let done = tokio::select! {
            done = set.join_next() => done,
            _ = progress.tick() => {
                log(&format!(
                    "{:.1}s: {} open, {} failed, {} being set up",
                    started.elapsed().as_secs_f64(),
                    streams.len(),
                    failures.values().sum::<u64>(),
                    set.len()
                ));
                continue;
            }
        };
        match done.expect("the set is not empty") {
            Ok(Ok((stream, ready))) => {
                streams.push(stream);
                last_ready = last_ready.max(Some(ready));
            }
            Ok(Err(f)) => {
                let seen = failures.entry(f.key.clone()).or_default();
                if *seen == 0 {
                    log(&format!("first {} failure: {}", f.key, f.text));
                }
                *seen += 1;
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    Storm {
        streams,
        failures,
        open: last_ready.map_or(Duration::ZERO, |t| t.duration_since(started)),
    }
}

/// How the pings went.
#[derive(Default)]
struct Pings {
    latencies: Vec<Duration>,
    failed: u64,
}

/// GETs `url` every [`PING_EVERY`], [`PINGS`] times or until `until` (at least once).
async fn pings(url: String, until: tokio::time::Instant) -> Pings {
    let mut out = Pings::default();
    let mut next = tokio::time::Instant::now();
    for k in 0..PINGS {
        if k > 0 {
            tokio::time::sleep_until(next).await;
            if tokio::time::Instant::now() >= until {
                break;
            }
        }
        next += PING_EVERY;
        let sent = Instant::now();
        match fetch("GET", &url, None, None, Timeouts::default()).await {
            Ok(r) if r.is_success() => out.latencies.push(sent.elapsed()),
            Ok(r) => {
                out.failed += 1;
                log(&format!("ping: GET {url}: status {}", r.status));
            }
            Err(e) => {
                out.failed += 1;
                log(&format!("ping: {e}"));
            }
        }
    }
    out.latencies.sort();
    out
}

/// Connections that the broker closed (or reset): a read finds the end of the stream.
/// Whatever else it sent is dropped.
fn closed_by_broker(streams: &[TcpStream]) -> u64 {
    let mut buf = [0u8; 512];
    let mut closed = 0;
    for s in streams {
        loop {
            match s.try_read(&mut buf) {
                Ok(0) => closed += 1,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => closed += 1,
            }
            break;
        }
    }
    closed
}

/// What the run found; [`Report::line`] is the stdout line.
#[derive(Default)]
pub struct Report {
    pub connections: u64,
    pub concurrency: u64,
    pub identify: bool,
    pub source_ips: u64,
    pub opened: u64,
    pub failures: BTreeMap<String, u64>,
    pub open: Duration,
    pub closed_during_hold: u64,
    /// Broker RSS before the storm and during the hold.
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    /// The second metrics read failed.
    pub metrics_failed: bool,
    /// `nsq_clients` during the hold.
    pub broker_clients: Option<u64>,
    /// Sorted ping latencies, and how many pings failed; `None` without --ping-url.
    pub pings: Option<(Vec<Duration>, u64)>,
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// RSS growth per opened connection, in bytes.
    pub fn rss_per_conn(&self) -> Option<f64> {
        let (before, after) = (self.rss_before?, self.rss_after?);
        (self.opened > 0).then(|| (after as f64 - before as f64) / self.opened as f64)
    }

    pub fn line(&self) -> String {
        let secs = self.open.as_secs_f64();
        let mut line = format!(
            "storm: connections={} opened={} failed={} open_secs={secs:.3} conns_per_sec={:.1} \
             concurrency={} identify={} source_ips={} closed_during_hold={}",
            self.connections,
            self.opened,
            self.failed(),
            if secs > 0.0 {
                self.opened as f64 / secs
            } else {
                0.0
            },
            self.concurrency,
            self.identify,
            self.source_ips,
            self.closed_during_hold,
        );
        if !self.failures.is_empty() {
            let reasons: Vec<String> = self
                .failures
                .iter()
                .map(|(k, n)| format!("{k}:{n}"))
                .collect();
            line.push_str(&format!(" fail_reasons={}", reasons.join(",")));
        }
        if let Some(before) = self.rss_before {
            line.push_str(&format!(" rss_before={before}"));
        }
        if let (Some(before), Some(after)) = (self.rss_before, self.rss_after) {
            line.push_str(&format!(
                " rss_after={after} rss_delta={}",
                after as i64 - before as i64
            ));
        }
        if let Some(per) = self.rss_per_conn() {
            line.push_str(&format!(
                " rss_per_conn_bytes={per:.0} rss_per_conn_kib={:.2}",
                per / 1024.0
            ));
        }
        if let Some(clients) = self.broker_clients {
            line.push_str(&format!(" broker_clients={clients}"));
        }
        if let Some((latencies, failed)) = &self.pings {
            line.push_str(&format!(" pings={} ping_failed={failed}", latencies.len()));
            let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
            if let (Some(p50), Some(max)) = (percentile(latencies, 50.0), latencies.last()) {
                line.push_str(&format!(
                    " ping_p50_ms={} ping_max_ms={}",
                    ms(p50),
                    ms(*max)
                ));
            }
        }
        line
    }

    /// Why the run counts as failed, if it does.
    pub fn trouble(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.failed() > 0 {
            why.push(format!(
                "{} of {} connections failed",
                self.failed(),
                self.connections
            ));
        }
        if self.closed_during_hold > 0 {
            why.push(format!(
                "the broker closed {} connections during the hold",
                self.closed_during_hold
            ));
        }
        if self.metrics_failed {
            why.push("the metrics could not be read during the hold".into());
        }
        if let Some((_, failed @ 1..)) = &self.pings {
            why.push(format!("{failed} pings failed"));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

async fn run(args: &StormArgs, fds: FdLimits) -> Result<Report> {
    let target = tokio::net::lookup_host(&args.tcp_address)
        .await
        .with_context(|| format!("resolving {}", args.tcp_address))?
        .next()
        .with_context(|| format!("{} resolves to no address", args.tcp_address))?;
    let budget = match fds {
        Ok((before, now, hard)) => {
            if now > before {
                log(&format!("open-file limit raised from {before} to {now}"));
            }
            let in_use = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
            let budget = now.saturating_sub(in_use + SPARE_FDS);
            if args.connections > budget {
                log(&format!(
                    "WARNING: --connections {} is over this process's open-file limit of \
                     {now} (hard limit {hard}): {budget} fit, the rest will be skipped \
                     (raise the hard limit: ulimit -Hn, prlimit)",
                    args.connections
                ));
            }
            budget
        }
        Err(e) => {
            log(&format!("WARNING: {e}"));
            u64::MAX
        }
    };
    let source_ips = source_ips(target.ip(), args.connections, args.per_source_ip);
    if source_ips > MAX_SOURCE_IPS {
        bail!(
            "--per-source-ip {} needs {source_ips} source addresses, more than 127/8 has",
            args.per_source_ip
        );
    }
    if source_ips == 0 {
        let ports = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| port_range_size(&t));
        if let Some(ports) = ports.filter(|p| args.connections > *p) {
            log(&format!(
                "WARNING: --connections {} is more than one source address's {ports} \
                 ephemeral ports: expect connect/EADDRNOTAVAIL failures",
                args.connections
            ));
        }
    }
    let before = match &args.metrics_url {
        Some(url) => Some(sample(url).await?),
        None => None,
    };
    if let Some(max) = before.as_ref().and_then(|b| b.max_fds) {
        if args.connections > max {
            log(&format!(
                "WARNING: the broker's open-file limit is {max}, under --connections {}",
                args.connections
            ));
        }
    }
    log(&format!(
        "opening {} connections to {target}{}, {} at a time, {} each{}",
        args.connections,
        if args.identify {
            " with IDENTIFY"
        } else {
            " (magic only)"
        },
        args.concurrency,
        format_duration(args.connect_timeout),
        match source_ips {
            0 => String::new(),
            n => format!(", from {n} source addresses from 127.0.0.1"),
        }
    ));
    let Storm {
        streams,
        failures,
        open,
    } = storm(args, target, budget).await;
    log(&format!(
        "{} open in {:.3}s, {} failed; holding {}",
        streams.len(),
        open.as_secs_f64(),
        failures.values().sum::<u64>(),
        format_duration(args.hold)
    ));
    let hold_start = tokio::time::Instant::now();
    let hold_end = hold_start + args.hold;
    let pinging = args
        .ping_url
        .clone()
        .map(|url| tokio::spawn(pings(url, hold_end)));
    tokio::time::sleep_until(hold_start + args.hold / 2).await;
    let mut report = Report {
        connections: args.connections,
        concurrency: args.concurrency,
        identify: args.identify,
        source_ips,
        opened: streams.len() as u64,
        failures,
        open,
        rss_before: before.as_ref().map(|b| b.rss),
        ..Report::default()
    };
    if let Some(url) = &args.metrics_url {
        match sample(url).await {
            Ok(after) => {
                report.rss_after = Some(after.rss);
                report.broker_clients = after.clients;
            }
            Err(e) => {
                log(&format!("during the hold: {e:#}"));
                report.metrics_failed = true;
            }
        }
    }
    if let Some(per) = report.rss_per_conn() {
        log(&format!(
            "broker RSS {:.1} MiB before, {:.1} MiB with {} connections: {per:.0} bytes \
             ({:.2} KiB) per connection",
            report.rss_before.unwrap_or(0) as f64 / (1 << 20) as f64,
            report.rss_after.unwrap_or(0) as f64 / (1 << 20) as f64,
            report.opened,
            per / 1024.0
        ));
    }
    tokio::time::sleep_until(hold_end).await;
    if let Some(task) = pinging {
        let p = task.await.context("the ping task")?;
        if let (Some(p50), Some(max)) = (percentile(&p.latencies, 50.0), p.latencies.last()) {
            log(&format!(
                "{} pings: p50 {:.2} ms, max {:.2} ms, {} failed",
                p.latencies.len(),
                p50.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3,
                p.failed
            ));
        }
        report.pings = Some((p.latencies, p.failed));
    }
    report.closed_during_hold = closed_by_broker(&streams);
    let closing = Instant::now();
    drop(streams);
    log(&format!(
        "closed {} connections in {:.3}s",
        report.opened,
        closing.elapsed().as_secs_f64()
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes_total 1
process_resident_memory_bytes 1.2345e+07
nsq_clients 42
nsq_topic_depth{topic=\"a}b\",x=\"y\"} 7 1700000000000
process_max_fds\t1048576
";

    #[test]
    fn metric_values_come_from_the_exposition_text() {
        assert_eq!(
            metric(EXPOSITION, "process_resident_memory_bytes"),
            Some(12_345_000.0),
            "the exact name, not a longer one with it as prefix nor the HELP line"
        );
        assert_eq!(metric(EXPOSITION, "nsq_clients"), Some(42.0));
        assert_eq!(metric(EXPOSITION, "nsq_topic_depth"), Some(7.0));
        assert_eq!(metric(EXPOSITION, "process_max_fds"), Some(1_048_576.0));
        assert_eq!(metric(EXPOSITION, "process_open_fds"), None);
        assert_eq!(metric(EXPOSITION, "nsq_"), None);
        assert_eq!(metric("x NaN\n", "x").map(f64::is_nan), Some(true));
        assert_eq!(metric("x oops\n", "x"), None);
        assert_eq!(metric("", "x"), None);
    }

    #[test]
    fn loopback_sources_rotate_every_per_source_connections() {
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(source_ip(lo, 50_000, 20_000, 0), ip("127.0.0.1"));
        assert_eq!(source_ip(lo, 50_000, 20_000, 19_999), ip("127.0.0.1"));
        assert_eq!(source_ip(lo, 50_000, 20_000, 20_000), ip("127.0.0.2"));
        assert_eq!(source_ip(lo, 50_000, 20_000, 49_999), ip("127.0.0.3"));
        assert_eq!(source_ips(lo, 50_000, 20_000), 3);
        // Across an octet.
        assert_eq!(source_ip(lo, 1_000, 1, 255), ip("127.0.1.0"));
        // Any loopback target rotates the same way.
        let other_lo: IpAddr = "127.0.0.9".parse().unwrap();
        assert_eq!(source_ip(other_lo, 3, 2, 2), ip("127.0.0.2"));
        // Few enough for one address: the kernel picks.
        assert_eq!(source_ip(lo, 20_000, 20_000, 19_999), None);
        assert_eq!(source_ips(lo, 20_000, 20_000), 0);
        // Not loopback IPv4: nothing to rotate through.
        for target in ["10.0.0.1", "::1"] {
            let t: IpAddr = target.parse().unwrap();
            assert_eq!(source_ip(t, 50_000, 20_000, 30_000), None, "{target}");
            assert_eq!(source_ips(t, 50_000, 20_000), 0, "{target}");
        }
    }

    #[test]
    fn port_ranges_and_percentiles() {
        assert_eq!(port_range_size("32768\t60999\n"), Some(28_232));
        assert_eq!(port_range_size("1024 1024"), Some(1));
        assert_eq!(port_range_size("60999 32768"), None);
        assert_eq!(port_range_size("x"), None);
        let ms = Duration::from_millis;
        let sorted: Vec<_> = (1..=20).map(ms).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(ms(10)));
        assert_eq!(percentile(&sorted, 100.0), Some(ms(20)));
        assert_eq!(percentile(&sorted, 0.0), Some(ms(1)));
        assert_eq!(percentile(&[ms(3)], 50.0), Some(ms(3)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn identify_turns_heartbeats_off() {
        assert_eq!(hello(3, false), b"  V2");
        let h = hello(3, true);
        let body = h.strip_prefix(b"  V2IDENTIFY\n".as_slice()).unwrap();
        let (len, json) = body.split_at(4);
        assert_eq!(
            u32::from_be_bytes(len.try_into().unwrap()) as usize,
            json.len()
        );
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(v["client_id"], "storm-3");
        assert_eq!(v["heartbeat_interval"], -1);
    }

    #[test]
    fn the_line_has_what_was_measured() {
        let ms = Duration::from_millis;
        let mut r = Report {
            connections: 10,
            concurrency: 4,
            opened: 8,
            open: ms(500),
            failures: [("connect/EMFILE".to_string(), 2)].into(),
            rss_before: Some(1_000_000),
            rss_after: Some(1_081_920),
            broker_clients: Some(8),
            pings: Some((vec![ms(1), ms(2), ms(9)], 0)),
            ..Report::default()
        };
        assert_eq!(
            r.line(),
            "storm: connections=10 opened=8 failed=2 open_secs=0.500 conns_per_sec=16.0 \
             concurrency=4 identify=false source_ips=0 closed_during_hold=0 \
             fail_reasons=connect/EMFILE:2 rss_before=1000000 rss_after=1081920 \
             rss_delta=81920 rss_per_conn_bytes=10240 rss_per_conn_kib=10.00 \
             broker_clients=8 pings=3 ping_failed=0 ping_p50_ms=2.00 ping_max_ms=9.00"
        );
        assert_eq!(r.trouble().as_deref(), Some("2 of 10 connections failed"));
        r.failures.clear();
        assert_eq!(r.trouble(), None);
        r.pings = Some((vec![], 2));
        assert_eq!(r.trouble().as_deref(), Some("2 pings failed"));
        let bare = Report {
            connections: 1,
            opened: 1,
            ..Report::default()
        };
        assert!(!bare.line().contains("rss") && !bare.line().contains("ping"));
    }
}
