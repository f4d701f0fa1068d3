//! `bench produce`: publishes messages `<run-id>-<seq>` for seq 0..N-1 through one
//! address, surviving brokers that restart behind it.
//!
//! PUBs go out one at a time (or `--window` pipelined; the broker answers a
//! connection's commands in order), at most `--rate` per second. A PUB counts as
//! acknowledged only once its `OK` arrives. When the connection fails in any way (a
//! dial or set-up error, an `E_*` answer, the broker closing, no answer within
//! `--answer-timeout`), the unanswered PUBs may or may not have been stored, so they
//! are all sent again on the next connection: duplicates are possible, losses are
//! not. Each new connection dials the address again, so a Service name is resolved
//! afresh; attempts are spaced by a doubling back-off (100 ms up to 2 s).
//!
//! stdout gets one line, `produce: acked=N reconnects=K resent=R elapsed_secs=S ...`
//! (`reconnects`: connections set up after the first; `resent`: PUBs sent again;
//! `failed_dials`: connection attempts that failed before PUBbing). When `--timeout`
//! passes first the same line shows how far it got, stderr gets a `FAIL:` line and
//! the exit status is 1.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use tokio::time::Instant;

use crate::client::{ClientArgs, Opened, Setup};
use crate::gotime::{format_duration, parse_duration};
use crate::protocol::{pub_body_command, Frame, NOP};
use crate::report::log_line;
use crate::soak::{self, Backoff};

const KIND: &str = "bench_produce";
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How far the pacer lets sends catch up with a timer that woke late.
const MAX_CATCH_UP: Duration = Duration::from_millis(50);

#[derive(Args)]
pub struct ProduceArgs {
    /// <addr>:<port> to publish to (a Service name is resolved again on every
    /// connection).
    #[arg(
        long = "nsqd-tcp-address",
        alias = "tcp-address",
        default_value = "127.0.0.1:4150"
    )]
    nsqd_tcp_address: String,
    /// Topic to publish to.
    #[arg(long)]
    topic: String,
    /// Number of messages (seq 0..count-1).
    #[arg(long)]
    count: u64,
    /// At most this many new messages per second [default: as fast as acknowledged].
    #[arg(long)]
    rate: Option<f64>,
    /// Bodies are `<run-id>-<seq>` [default: the topic].
    #[arg(long)]
    run_id: Option<String>,
    /// Give up (exit 1) when not all are acknowledged after this long (Go duration).
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    timeout: Duration,
    /// A PUB unanswered this long fails the connection (Go duration).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    answer_timeout: Duration,
    /// PUBs in flight on the connection (1: wait for each OK).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    window: u16,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn main(args: ProduceArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let mut progress = Progress::default();
        let result = run(&args, &mut progress).await;
        let elapsed = started.elapsed();
        println!("{}", progress.summary(elapsed));
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log(&format!("FAIL: {e:#}"));
                ExitCode::FAILURE
            }
        }
    })
}

fn log(msg: &str) {
    eprintln!("{}", log_line(KIND, msg));
}

/// Where the run stands.
#[derive(Default)]
struct Progress {
    /// The next seq never sent.
    next_new: u64,
    /// Sent on the current connection, not answered yet, oldest first, with when.
    unanswered: VecDeque<(u64, Instant)>,
    /// Sent on a connection that failed before answering; sent again first.
    resend: VecDeque<u64>,
    acked: u64,
    resent: u64,
    reconnects: u64,
    failed_dials: u64,
}

impl Progress {
    fn summary(&self, elapsed: Duration) -> String {
        format!(
            "produce: acked={} reconnects={} resent={} elapsed_secs={} failed_dials={}",
            self.acked,
            self.reconnects,
            self.resent,
            soak::secs(elapsed),
            self.failed_dials
        )
    }

    /// The connection failed: whatever it left unanswered goes out again, first.
    fn connection_lost(&mut self) -> usize {
        let lost = self.unanswered.len();
        for (seq, _) in self.unanswered.drain(..).rev() {
            self.resend.push_front(seq);
        }
        lost
    }
}

/// Spaces new messages `1/rate` apart.
struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Pacer {
        Pacer {
            interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            next: Instant::now(),
        }
    }

    /// When the next new message may go (now when unpaced).
    fn next_slot(&self) -> Instant {
        self.next
    }

    /// Takes a slot if one is due at `now`.
    fn take(&mut self, now: Instant) -> bool {
        let Some(interval) = self.interval else {
            return true;
        };
        if self.next > now {
            return false;
        }
        // A timer that woke late catches up, but by no more than MAX_CATCH_UP.
        let floor = now.checked_sub(MAX_CATCH_UP).unwrap_or(now);
        self.next = self.next.max(floor) + interval;
        true
    }
}

async fn run(args: &ProduceArgs, p: &mut Progress) -> Result<()> {
    if args.timeout.is_zero() || args.answer_timeout.is_zero() {
        bail!("--timeout and --answer-timeout must be positive");
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number, not {rate}");
        }
    }
    let run_id = soak::run_id(args.run_id.as_deref(), &args.topic)?;
    let setup = Setup::new(&args.client)?;
    log(&format!(
        "publishing {} messages {run_id}-<seq> to topic {} through {}{}, window {}",
        args.count,
        args.topic,
        args.nsqd_tcp_address,
        args.rate
            .map_or(String::new(), |r| format!(" at most {r}/s")),
        args.window
    ));
    let deadline = Instant::now() + args.timeout;
    let publish = publish(args, &setup, &run_id, p);
    match tokio::time::timeout_at(deadline, publish).await {
        Ok(()) => Ok(()),
        Err(_) => bail!(
            "timed out after {}: {} of {} messages acknowledged",
            format_duration(args.timeout),
            p.acked,
            args.count
        ),
    }
}

/// Connects, publishes and reconnects until every message is acknowledged.
async fn publish(args: &ProduceArgs, setup: &Setup, run_id: &str, p: &mut Progress) {
    let addr = &args.nsqd_tcp_address;
    let mut pacer = Pacer::new(args.rate);
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut connected_before = false;
    while p.acked < args.count {
        let opened = setup.open(addr, KIND, &serde_json::Map::new()).await;
        let failure = match opened {
            Err(e) => {
                p.failed_dials += 1;
                e
            }
            Ok(Opened { link, rb, .. }) => {
                if connected_before {
                    p.reconnects += 1;
                    log(&format!(
                        "reconnected to {addr} (reconnect {}); re-sending {} unanswered PUBs",
                        p.reconnects,
                        p.resend.len()
                    ));
                }
                connected_before = true;
                let acked_before = p.acked;
                let session = Session {
                    args,
                    run_id,
                    link,
                    rb,
                };
                let result = session.run(p, &mut pacer).await;
                if p.acked > acked_before {
                    backoff.reset();
                }
                match result {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
        };
        p.connection_lost();
        let wait = backoff.next_wait();
        log(&format!(
            "{addr}: {failure:#}; reconnecting in {} ({} acknowledged, {} unanswered \
             to send again)",
            format_duration(wait),
            p.acked,
            p.resend.len()
        ));
        tokio::time::sleep(wait).await;
    }
}

/// One connection's publishing.
struct Session<'a> {
    args: &'a ProduceArgs,
    run_id: &'a str,
    link: crate::conn::Link,
    rb: crate::protocol::ReadBuf,
}

impl Session<'_> {
    /// Publishes until every message is acknowledged (`Ok`) or the connection fails.
    async fn run(mut self, p: &mut Progress, pacer: &mut Pacer) -> Result<()> {
        let (count, window) = (self.args.count, usize::from(self.args.window));
        let answer_timeout = self.args.answer_timeout;
        let mut out = Vec::new();
        loop {
            let now = Instant::now();
            while p.unanswered.len() < window {
                let seq = if let Some(seq) = p.resend.pop_front() {
                    p.resent += 1;
                    seq
                } else if p.next_new < count && pacer.take(now) {
                    p.next_new += 1;
                    p.next_new - 1
                } else {
                    break;
                };
                let body = soak::body(self.run_id, seq);
                out.extend_from_slice(&pub_body_command(&self.args.topic, &body));
                p.unanswered.push_back((seq, now));
            }
            if !out.is_empty() {
                self.write(&out).await?;
                out.clear();
            }
            if p.acked >= count {
                return Ok(());
            }
            let answer_due = p.unanswered.front().map(|(_, at)| *at + answer_timeout);
            let slot = (p.unanswered.len() < window && p.next_new < count && p.resend.is_empty())
                .then(|| pacer.next_slot());
            tokio::select! {
                read = self.link.fill(&mut self.rb) => read?,
                _ = sleep_until(answer_due), if answer_due.is_some() => {
                    let (seq, _) = p.unanswered[0];
                    bail!(
                        "no answer to the PUB of seq {seq} within {}",
                        format_duration(answer_timeout)
                    );
                }
                _ = sleep_until(slot), if slot.is_some() => {}
            }
            while let Some(frame) = self.rb.next_frame()? {
                match frame {
                    Frame::Ok => {
                        if p.unanswered.pop_front().is_none() {
                            bail!("OK without a PUB outstanding");
                        }
                        p.acked += 1;
                    }
                    Frame::Heartbeat => out.extend_from_slice(NOP),
                    Frame::Error(e) => bail!("PUB failed: {}", String::from_utf8_lossy(e)),
                    Frame::Response(r) => {
                        bail!("unexpected answer {:?}", String::from_utf8_lossy(r))
                    }
                    Frame::Message(_) => bail!("a message on a publishing connection"),
                }
            }
        }
    }

    /// Writes, failing the connection when the broker takes none of it for
    /// `--answer-timeout` (a dead peer with a full send buffer).
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        match tokio::time::timeout(self.args.answer_timeout, self.link.write_all(data)).await {
            Ok(written) => written,
            Err(_) => bail!(
                "writing PUBs: not done within {}",
                format_duration(self.args.answer_timeout)
            ),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        produce: ProduceArgs,
    }

    fn parse(args: &[&str]) -> Result<ProduceArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("produce").chain(args.iter().copied()))
            .map(|c| c.produce)
    }

    #[test]
    fn flags_and_defaults() {
        let a = parse(&["--topic", "t", "--count", "10"]).unwrap();
        assert_eq!(a.nsqd_tcp_address, "127.0.0.1:4150");
        assert_eq!(a.timeout, Duration::from_secs(600));
        assert_eq!((a.window, a.rate, a.run_id.as_deref()), (1, None, None));
        assert!(parse(&["--topic", "t"]).is_err(), "--count is required");
        assert!(parse(&["--topic", "t", "--count", "1", "--window", "0"]).is_err());
        let a = parse(&[
            "--topic=t",
            "--count=1",
            "--tls",
            "--tls-insecure-skip-verify",
            "--auth-secret=s",
            "--rate=2.5",
        ])
        .unwrap();
        assert!(a.client.tls && a.client.auth_secret.as_deref() == Some("s"));
        assert_eq!(a.rate, Some(2.5));
    }

    #[test]
    fn lost_pubs_are_sent_again_first_and_in_order() {
        let now = Instant::now();
        let mut p = Progress {
            unanswered: [(5, now), (6, now)].into(),
            resend: [7].into(),
            ..Progress::default()
        };
        assert_eq!(p.connection_lost(), 2);
        assert_eq!(p.resend, [5, 6, 7]);
        assert!(p.unanswered.is_empty());
    }

    #[test]
    fn the_pacer_spaces_messages_and_catches_up_only_a_little() {
        let mut unpaced = Pacer::new(None);
        assert!((0..1000).all(|_| unpaced.take(Instant::now())));

        let mut pacer = Pacer::new(Some(100.0));
        let start = pacer.next_slot();
        assert!(pacer.take(start));
        assert!(!pacer.take(start), "the next one waits 10ms");
        assert_eq!(pacer.next_slot() - start, Duration::from_millis(10));
        // Asleep for a second: the slot due now and MAX_CATCH_UP's worth (5) go at once.
        let now = start + Duration::from_secs(1);
        let burst = (0..100).take_while(|_| pacer.take(now)).count();
        assert_eq!(burst, 6);
        assert_eq!(pacer.next_slot() - now, Duration::from_millis(10));
    }
}
