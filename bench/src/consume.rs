//! `bench consume`: reads a topic's channel from every broker nsqlookupd lists and
//! counts which messages `<run-id>-<seq>` (seq 0..N-1) arrived and how often, while
//! brokers restart.
//!
//! Every `--poll-interval` each `--lookupd-http-address` is asked for the topic's
//! producers (a lookupd that fails keeps its last list). There is one subscription
//! per broker, keyed by `broadcast_address:tcp_port`; a broker whose connection fails
//! (it restarted: its name stays, its IP changes, DNS may lag) is dialled again after
//! `--poll-interval`, for as long as a lookupd lists it. Connections IDENTIFY with
//! `--heartbeat-interval` and fail when nothing at all arrives for twice that, so a
//! dead socket is noticed. Every message is FINed. Messages in flight on a
//! connection that failed while its broker kept running come back only after the
//! broker's message timeout (`--msg-timeout`, 60 s by default); a broker shutting
//! down cleanly keeps them for its next start.
//!
//! Once all N seqs arrived it keeps reading (and FINing) for `--linger` to count late
//! duplicates, prints `consume: unique=N received=M duplicates=D missing=0
//! reconnects=K elapsed_secs=S foreign=F failed_dials=Z` on stdout and exits 0.
//! `received` counts deliveries of this run's messages, `duplicates` the ones beyond
//! the first of each seq, `foreign` other bodies (ignored), `reconnects` subscriptions
//! set up again on a broker subscribed before, `failed_dials` connection attempts that
//! failed before subscribing; `elapsed_secs` runs to the last missing seq's arrival.
//! When `--timeout` passes first, the line ends with `first_missing=` (up to 10
//! seqs), stderr gets a `FAIL:` line and the exit status is 1.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{ClientArgs, Opened, Setup};
use crate::gotime::{format_duration, parse_duration};
use crate::lookup::{Discovery, Producer};
use crate::protocol::{put_fin, rdy_command, sub_command, Frame, NOP};
use crate::report::log_line;
use crate::soak;

const KIND: &str = "bench_consume";
/// Missing seqs named on a timeout.
const SHOWN_MISSING: usize = 10;
/// Non-fatal error frames logged per connection before only counting them.
const LOGGED_ERRORS: u32 = 5;

#[derive(Args)]
pub struct ConsumeArgs {
    /// nsqlookupd HTTP address (repeatable); the brokers they list for the topic are
    /// read from at their broadcast addresses.
    #[arg(long = "lookupd-http-address", required = true)]
    lookupd_http_addresses: Vec<String>,
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// Channel to read (create it on the brokers beforehand so nothing published
    /// before the first SUB misses it).
    #[arg(long)]
    channel: String,
    /// Number of messages the run published (seq 0..expect-1).
    #[arg(long)]
    expect: u64,
    /// Bodies are `<run-id>-<seq>` [default: the topic].
    #[arg(long)]
    run_id: Option<String>,
    /// Give up (exit 1) when not all arrived after this long (Go duration).
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    timeout: Duration,
    /// Keep reading this long after the last one arrived, counting late duplicates
    /// (Go duration).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    linger: Duration,
    /// RDY count per connection (capped at the broker's max_rdy_count).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    rdy: u64,
    /// How often to ask the nsqlookupds again, and to re-dial a failed broker (Go
    /// duration).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Heartbeat interval asked for in IDENTIFY; a connection with nothing to read
    /// for twice this long fails (Go duration, 1s or more).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn main(args: ConsumeArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    match runtime.block_on(run(args)) {
        Ok((line, None)) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Ok((line, Some(failure))) => {
            println!("{line}");
            log(&format!("FAIL: {failure}"));
            ExitCode::FAILURE
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

/// What arrived, shared by the connections.
struct Tally {
    run_id: String,
    /// Deliveries of each seq.
    counts: Vec<u32>,
    unique: u64,
    received: u64,
    foreign: u64,
    /// Brokers subscribed to at least once.
    subscribed: HashSet<String>,
    reconnects: u64,
    /// When the last missing seq arrived.
    completed: Option<Instant>,
}

impl Tally {
    fn new(run_id: String, expect: u64) -> Result<Tally> {
        let n = usize::try_from(expect).context("--expect is too large")?;
        Ok(Tally {
            run_id,
            counts: vec![0; n],
            unique: 0,
            received: 0,
            foreign: 0,
            subscribed: HashSet::new(),
            reconnects: 0,
            completed: None,
        })
    }

    /// Counts one delivered body; true when it was the last missing seq.
    fn record(&mut self, body: &[u8]) -> bool {
        let slot = soak::seq_of(&self.run_id, body)
            .and_then(|seq| usize::try_from(seq).ok())
            .and_then(|seq| self.counts.get_mut(seq));
        let Some(count) = slot else {
            self.foreign += 1;
            return false;
        };
        *count = count.saturating_add(1);
        self.received += 1;
        if *count > 1 {
            return false;
        }
        self.unique += 1;
        if self.unique == self.counts.len() as u64 {
            self.completed = Some(Instant::now());
            return true;
        }
        false
    }

    /// A subscription on `addr` is set up; true when it is one again.
    fn subscribed(&mut self, addr: &str) -> bool {
        if self.subscribed.insert(addr.to_string()) {
            return false;
        }
        self.reconnects += 1;
        true
    }

    fn missing(&self) -> u64 {
        self.counts.len() as u64 - self.unique
    }

    fn first_missing(&self, n: usize) -> Vec<usize> {
        let missing = self.counts.iter().enumerate().filter(|(_, c)| **c == 0);
        missing.map(|(seq, _)| seq).take(n).collect()
    }

    fn summary(&self, elapsed: Duration, failed_dials: u64) -> String {
        let mut line = format!(
            "consume: unique={} received={} duplicates={} missing={} reconnects={} \
             elapsed_secs={} foreign={} failed_dials={failed_dials}",
            self.unique,
            self.received,
            self.received - self.unique,
            self.missing(),
            self.reconnects,
            soak::secs(elapsed),
            self.foreign
        );
        if self.missing() > 0 {
            let first: Vec<String> = self
                .first_missing(SHOWN_MISSING)
                .iter()
                .map(|s| s.to_string())
                .collect();
            line.push_str(&format!(" first_missing={}", first.join(",")));
        }
        line
    }
}

/// What every subscription shares.
struct Shared {
    args: ConsumeArgs,
    setup: Setup,
    tally: Mutex<Tally>,
    /// Woken when the last missing seq arrives.
    complete: Notify,
}

impl Shared {
    fn tally(&self) -> MutexGuard<'_, Tally> {
        // Nothing panics while holding it; a poisoned tally is still the tally.
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The summary line, and why the run failed (`None`: all arrived).
async fn run(args: ConsumeArgs) -> Result<(String, Option<String>)> {
    if args.timeout.is_zero() || args.poll_interval.is_zero() {
        bail!("--timeout and --poll-interval must be positive");
    }
    if args.heartbeat_interval < Duration::from_secs(1) {
        bail!("--heartbeat-interval must be at least 1s");
    }
    let run_id = soak::run_id(args.run_id.as_deref(), &args.topic)?;
    let setup = Setup::new(&args.client)?;
    log(&format!(
        "expecting {} messages {run_id}-<seq> on {}/{} from the brokers {} list",
        args.expect,
        args.topic,
        args.channel,
        args.lookupd_http_addresses.join(", ")
    ));
    let shared = Arc::new(Shared {
        tally: Mutex::new(Tally::new(run_id, args.expect)?),
        args,
        setup,
        complete: Notify::new(),
    });
    let started = Instant::now();
    let deadline = started + shared.args.timeout;
    let (listing, discovery) = discover(&shared.args);
    let mut subscriptions = Subscriptions::default();
    let failure = if shared.tally().missing() == 0 {
        None
    } else {
        subscriptions.run(&shared, listing, deadline).await
    };
    discovery.abort();
    let tally = shared.tally();
    let elapsed = tally.completed.map_or(started.elapsed(), |at| at - started);
    Ok((tally.summary(elapsed, subscriptions.failed_dials), failure))
}

/// Polls the lookupds every `--poll-interval` in a task of its own (a slow lookupd
/// delays no subscription); the receiver sees each new listing.
fn discover(
    args: &ConsumeArgs,
) -> (
    watch::Receiver<BTreeMap<String, Producer>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(BTreeMap::new());
    let mut discovery = Discovery::new(&args.lookupd_http_addresses, KIND);
    let (topic, interval) = (args.topic.clone(), args.poll_interval);
    let task = tokio::spawn(async move {
        loop {
            let next = Instant::now() + interval;
            discovery.poll(&topic).await;
            let listed = discovery.listed();
            tx.send_if_modified(|old| {
                if *old == listed {
                    return false;
                }
                let names: Vec<&str> = listed.keys().map(String::as_str).collect();
                log(&format!(
                    "the lookupds list {} broker(s) for {topic}: {}",
                    names.len(),
                    names.join(", ")
                ));
                *old = listed;
                true
            });
            tokio::time::sleep_until(next).await;
        }
    });
    (rx, task)
}

/// How a subscription task ended: its broker, whether it had subscribed, why.
type Ended = (String, bool, Result<()>);

/// The subscription tasks, one per broker.
#[derive(Default)]
struct Subscriptions {
    tasks: JoinSet<Ended>,
    /// The broker each running task subscribes to.
    active: HashMap<tokio::task::Id, String>,
    /// Failed brokers are dialled again from then on.
    retry_at: HashMap<String, Instant>,
    failed_dials: u64,
}

impl Subscriptions {
    /// Keeps one subscription on every listed broker until all seqs arrived (then
    /// lingers) or the deadline; returns why it failed.
    async fn run(
        &mut self,
        shared: &Arc<Shared>,
        mut listing: watch::Receiver<BTreeMap<String, Producer>>,
        deadline: Instant,
    ) -> Option<String> {
        let args = &shared.args;
        let mut linger_until: Option<Instant> = None;
        let mut tick = tokio::time::interval(args.poll_interval.min(Duration::from_millis(250)));
        loop {
            let listed: Vec<String> = listing.borrow_and_update().keys().cloned().collect();
            self.dial(shared, &listed);
            tokio::select! {
                Ok(()) = listing.changed() => {}
                _ = tick.tick() => {}
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.ended(done, args.poll_interval);
                }
                _ = shared.complete.notified(), if linger_until.is_none() => {
                    log(&format!(
                        "all {} arrived; reading on for {} to count late duplicates",
                        args.expect,
                        format_duration(args.linger)
                    ));
                    linger_until = Some(Instant::now() + args.linger);
                }
                _ = tokio::time::sleep_until(linger_until.unwrap_or(deadline)),
                    if linger_until.is_some() => return None,
                _ = tokio::time::sleep_until(deadline), if linger_until.is_none() => {
                    let tally = shared.tally();
                    return Some(format!(
                        "timed out after {}: {} of {} messages missing (first: {:?})",
                        format_duration(args.timeout),
                        tally.missing(),
                        args.expect,
                        tally.first_missing(SHOWN_MISSING)
                    ));
                }
            }
        }
    }

    /// Subscribes to the listed brokers that have no subscription and are not
    /// waiting out a failure.
    fn dial(&mut self, shared: &Arc<Shared>, listed: &[String]) {
        let now = Instant::now();
        for addr in listed {
            let waiting = self.retry_at.get(addr).is_some_and(|at| *at > now);
            if waiting || self.active.values().any(|a| a == addr) {
                continue;
            }
            let (task_shared, task_addr) = (shared.clone(), addr.clone());
            let task = self.tasks.spawn(async move {
                let mut subscribed = false;
                let result = subscribe(&task_shared, &task_addr, &mut subscribed).await;
                (task_addr, subscribed, result)
            });
            self.active.insert(task.id(), addr.clone());
        }
    }

    /// A subscription ended (always in failure): dial again after `retry`.
    fn ended(
        &mut self,
        done: Result<(tokio::task::Id, Ended), tokio::task::JoinError>,
        retry: Duration,
    ) {
        let (addr, subscribed, result) = match done {
            Ok((id, ended)) => {
                self.active.remove(&id);
                ended
            }
            Err(e) => {
                // A task that panicked (none is aborted while running).
                let addr = self.active.remove(&e.id()).unwrap_or_default();
                (
                    addr,
                    false,
                    Err(anyhow::anyhow!("subscription task failed: {e}")),
                )
            }
        };
        self.retry_at.insert(addr.clone(), Instant::now() + retry);
        if !subscribed {
            self.failed_dials += 1;
        }
        let why = match result {
            Ok(()) => "ended".to_string(),
            Err(e) => format!("{e:#}"),
        };
        let state = if subscribed {
            "connection lost"
        } else {
            "could not subscribe"
        };
        log(&format!(
            "{addr}: {state}: {why}; dialling again in {} while a lookupd lists it",
            format_duration(retry)
        ));
    }
}

/// One connection's work: SUB, RDY, FIN everything and count it, answer heartbeats;
/// returns only when the connection fails. Sets `subscribed` once SUB succeeded.
async fn subscribe(shared: &Shared, addr: &str, subscribed: &mut bool) -> Result<()> {
    let args = &shared.args;
    let mut identify = serde_json::Map::new();
    identify.insert(
        "heartbeat_interval".into(),
        (args.heartbeat_interval.as_millis() as u64).into(),
    );
    let Opened {
        mut link,
        mut rb,
        answer,
    } = shared.setup.open(addr, KIND, &identify).await?;
    let quiet = args.heartbeat_interval * 2;
    let io = |what: &'static str| {
        move |_| anyhow::anyhow!("{what}: nothing for {}", format_duration(quiet))
    };
    tokio::time::timeout(quiet, async {
        link.write_all(&sub_command(&args.topic, &args.channel))
            .await?;
        link.expect_ok(&mut rb, "SUB").await
    })
    .await
    .map_err(io("SUB"))??;
    let max_rdy = answer.get("max_rdy_count").and_then(|m| m.as_u64());
    let rdy = max_rdy.map_or(args.rdy, |max| args.rdy.min(max.max(1)));
    link.write_all(&rdy_command(rdy)).await?;
    *subscribed = true;
    let again = shared.tally().subscribed(addr);
    log(&format!(
        "{} {}/{} on {addr} (RDY {rdy})",
        if again {
            "subscribed again to"
        } else {
            "subscribed to"
        },
        args.topic,
        args.channel
    ));
    let mut out = Vec::new();
    let mut soft_errors = 0u32;
    loop {
        tokio::time::timeout(quiet, link.fill(&mut rb))
            .await
            .map_err(io("reading"))??;
        let mut bodies = Vec::new();
        while let Some(frame) = rb.next_frame()? {
            match frame {
                Frame::Message(m) => {
                    put_fin(&mut out, &m.id);
                    bodies.push(m.body.to_vec());
                }
                Frame::Heartbeat => out.extend_from_slice(NOP),
                Frame::Error(e) if is_soft_error(e) => {
                    soft_errors += 1;
                    if soft_errors <= LOGGED_ERRORS {
                        log(&format!("{addr}: {}", String::from_utf8_lossy(e)));
                    }
                }
                Frame::Error(e) => bail!("{}", String::from_utf8_lossy(e)),
                Frame::Ok | Frame::Response(_) => {}
            }
        }
        if !bodies.is_empty() {
            let mut tally = shared.tally();
            let mut last = false;
            for body in &bodies {
                last |= tally.record(body);
            }
            drop(tally);
            if last {
                shared.complete.notify_one();
            }
        }
        if !out.is_empty() {
            tokio::time::timeout(quiet, link.write_all(&out))
                .await
                .map_err(io("writing FINs"))??;
            out.clear();
        }
    }
}

/// Error frames after which nsqd keeps the connection open.
fn is_soft_error(e: &[u8]) -> bool {
    ["E_FIN_FAILED", "E_REQ_FAILED", "E_TOUCH_FAILED"]
        .iter()
        .any(|soft| e.starts_with(soft.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        consume: ConsumeArgs,
    }

    fn parse(args: &[&str]) -> Result<ConsumeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("consume").chain(args.iter().copied()))
            .map(|c| c.consume)
    }

    #[test]
    fn flags_and_defaults() {
        let base = [
            "--lookupd-http-address=l1:4161",
            "--lookupd-http-address=l2:4161",
            "--topic=t",
            "--channel=c",
            "--expect=5",
        ];
        let a = parse(&base).unwrap();
        assert_eq!(a.lookupd_http_addresses, ["l1:4161", "l2:4161"]);
        assert_eq!((a.rdy, a.expect), (100, 5));
        assert_eq!(
            (a.timeout, a.linger, a.heartbeat_interval),
            (
                Duration::from_secs(600),
                Duration::from_secs(3),
                Duration::from_secs(5)
            )
        );
        assert!(parse(&base[2..]).is_err(), "a lookupd is required");
        assert!(parse(&[&base[..], &["--rdy=0"]].concat()).is_err());
        let a = parse(&[&base[..], &["--tls", "--tls-root-ca-file=ca.pem"]].concat()).unwrap();
        assert!(a.client.tls);
    }

    #[test]
    fn the_tally_counts_uniques_duplicates_and_foreigners() {
        let mut t = Tally::new("r".into(), 3).unwrap();
        assert!(!t.record(b"r-00000001"));
        assert!(!t.record(b"r-00000001"));
        assert!(!t.record(b"other-00000000"));
        assert!(!t.record(b"r-00000003"), "out of range is foreign");
        assert_eq!(t.first_missing(10), [0, 2]);
        let line = t.summary(Duration::from_millis(1500), 2);
        assert_eq!(
            line,
            "consume: unique=1 received=2 duplicates=1 missing=2 reconnects=0 \
             elapsed_secs=1.500 foreign=2 failed_dials=2 first_missing=0,2"
        );
        assert!(!t.record(b"r-0"));
        assert!(t.record(b"r-2"), "the last missing one");
        assert!(!t.record(b"r-2"));
        assert!(t.completed.is_some());
        assert!(!t.subscribed("a:1") && !t.subscribed("b:1") && t.subscribed("a:1"));
        assert_eq!(
            t.summary(Duration::from_secs(2), 0),
            "consume: unique=3 received=5 duplicates=2 missing=0 reconnects=1 \
             elapsed_secs=2.000 foreign=2 failed_dials=0"
        );
    }

    #[test]
    fn only_some_errors_keep_the_connection() {
        assert!(is_soft_error(
            b"E_FIN_FAILED FIN 0123 failed ID not in flight"
        ));
        assert!(!is_soft_error(b"E_INVALID cannot SUB in current state"));
    }
}
