//! `bench check`: one message end to end, found the way NSQ's clients find a cluster
//! (the Helm chart's `helm test`).
//!
//! 1. PUB one unique message to a new topic through `--nsqd-tcp-address` (the brokers'
//!    client Service).
//! 2. Poll every `--lookupd-http-address` (`GET /lookup?topic=`) until one lists a
//!    broker for the topic, and SUB to the ephemeral channel `helm-test#ephemeral` on
//!    every broker listed.
//! 3. FIN the message when it arrives, delete the topic from the brokers and lookupds
//!    (best effort) and print one line.
//!
//! Why publish first: with N brokers behind a Service the PUB lands on any one of them,
//! and before it the topic exists nowhere, so lookupd has no broker to subscribe to yet.
//! After it, exactly the broker that took the PUB has the topic, and lookupd lists it
//! (once its asynchronous registration arrives, hence the polling). A topic without
//! channels keeps its messages and hands them to its first channel, which is ours (the
//! topic name is new), so nothing is missed whichever broker the Service picked.
//! The topic is not `#ephemeral`: an ephemeral topic has no disk queue, and a broker run
//! with `--mem-queue-size=0` would drop a message published before its first channel.
//! Deleting the topic afterwards keeps repeated checks from piling up topics.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use nsq_common::http::client::{query_escape, request_or_https, Timeouts};
use tokio::task::JoinSet;

use crate::client::{ClientArgs, Opened, Setup};
use crate::gotime::{format_duration, parse_duration};
use crate::lookup::{self, Discovery, Producer};
use crate::protocol::{pub_body_command, put_fin, rdy_command, sub_command, Frame, NOP};
use crate::report::{log_line, Failures};

const KIND: &str = "bench_check";
const CHANNEL: &str = "helm-test#ephemeral";
/// How long a lookupd may take to see a deleted topic's UNREGISTER.
const UNREGISTER_WAIT: Duration = Duration::from_secs(3);

#[derive(Args)]
pub struct CheckArgs {
    /// <addr>:<port> to publish to: the brokers' client Service.
    #[arg(
        long = "nsqd-tcp-address",
        alias = "tcp-address",
        default_value = "127.0.0.1:4150"
    )]
    nsqd_tcp_address: String,
    /// nsqlookupd HTTP address (repeatable): the message is read back from the brokers
    /// they list for the topic, at their broadcast addresses.
    #[arg(long = "lookupd-http-address", required = true)]
    lookupd_http_addresses: Vec<String>,
    /// Give up after this long (Go duration).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// How often to ask the nsqlookupds again (Go duration).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    poll_interval: Duration,
    #[command(flatten)]
    client: ClientArgs,
    /// Leave the check's topic on the brokers and nsqlookupds.
    #[arg(long)]
    keep_topic: bool,
}

pub fn main(args: CheckArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    match runtime.block_on(run(&args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
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

async fn run(args: &CheckArgs) -> Result<String> {
    if args.timeout.is_zero() || args.poll_interval.is_zero() {
        bail!("--timeout and --poll-interval must be positive");
    }
    let started = Instant::now();
    let deadline = started + args.timeout;
    let setup = Arc::new(Setup::new(&args.client)?);
    let topic = unique_name();
    let body: Arc<[u8]> = topic.as_bytes().into();
    log(&format!(
        "publishing message {topic:?} to topic {topic} through {}",
        args.nsqd_tcp_address
    ));
    let publish = publish(&setup, &args.nsqd_tcp_address, &topic, &body);
    tokio::time::timeout_at(deadline.into(), publish)
        .await
        .map_err(|_| timed_out(args.timeout, "publishing"))?
        .with_context(|| format!("publishing to {}", args.nsqd_tcp_address))?;
    let mut watch = Watch::new(args);
    let found = watch.run(args, &setup, &topic, &body, deadline).await;
    let took = started.elapsed();
    if !args.keep_topic {
        let lookupds = &args.lookupd_http_addresses;
        delete_topic(&setup, &topic, watch.producers.values(), lookupds).await;
    }
    let from = found?;
    Ok(format!(
        "check: ok topic={topic} channel={CHANNEL} message={topic} published_to={} \
         consumed_from={from} duration_secs={:.3}",
        args.nsqd_tcp_address,
        took.as_secs_f64()
    ))
}

fn timed_out(after: Duration, what: &str) -> anyhow::Error {
    anyhow::anyhow!("timed out after {} {what}", format_duration(after))
}

/// `helm-test-<unix seconds>-<random hex>`: a topic no one else uses.
fn unique_name() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("helm-test-{secs}-{:08x}", h.finish() as u32)
}

/// The check's connections: IDENTIFY as `bench_check`, nothing else asked for.
async fn open(setup: &Setup, addr: &str) -> Result<Opened> {
    setup.open(addr, KIND, &serde_json::Map::new()).await
}

async fn publish(setup: &Setup, addr: &str, topic: &str, body: &[u8]) -> Result<()> {
    let Opened {
        mut link, mut rb, ..
    } = open(setup, addr).await?;
    link.write_all(&pub_body_command(topic, body)).await?;
    link.expect_ok(&mut rb, "PUB").await
}

/// SUBs to `topic` on `addr` and returns once `body` arrived and was FINed; other
/// messages (none are expected on a new topic) are FINed and reported.
async fn receive(setup: Arc<Setup>, addr: String, topic: String, body: Arc<[u8]>) -> Result<()> {
    let Opened {
        mut link, mut rb, ..
    } = open(&setup, &addr).await?;
    link.write_all(&sub_command(&topic, CHANNEL)).await?;
    link.expect_ok(&mut rb, "SUB").await?;
    link.write_all(&rdy_command(1)).await?;
    let mut out = Vec::new();
    loop {
        let mut found = false;
        while let Some(frame) = rb.next_frame()? {
            match frame {
                Frame::Message(m) => {
                    put_fin(&mut out, &m.id);
                    if m.body == &body[..] {
                        found = true;
                    } else {
                        log(&format!(
                            "{addr}: FINed an unexpected message {:?}",
                            String::from_utf8_lossy(m.body)
                        ));
                    }
                }
                Frame::Heartbeat => out.extend_from_slice(NOP),
                Frame::Error(e) => bail!("{}", String::from_utf8_lossy(e)),
                Frame::Ok | Frame::Response(_) => {}
            }
        }
        if !out.is_empty() {
            link.write_all(&out).await?;
            out.clear();
        }
        if found {
            return Ok(());
        }
        link.fill(&mut rb).await?;
    }
}

/// What the consuming side has seen: the brokers listed for the topic, the ones
/// subscribed to, and the last failure of each lookupd and broker (for the report).
struct Watch {
    discovery: Discovery,
    /// Every broker any lookupd listed for the topic so far.
    producers: BTreeMap<String, Producer>,
    subscribed: HashSet<String>,
    failures: Failures,
}

impl Watch {
    fn new(args: &CheckArgs) -> Watch {
        Watch {
            discovery: Discovery::new(&args.lookupd_http_addresses, KIND),
            producers: BTreeMap::new(),
            subscribed: HashSet::new(),
            failures: Failures::new(KIND),
        }
    }

    /// Subscribes to every broker the lookupds list (asking again every poll
    /// interval, and re-dialing brokers whose connection failed) until the message
    /// arrives; returns the broker it came from.
    async fn run(
        &mut self,
        args: &CheckArgs,
        setup: &Arc<Setup>,
        topic: &str,
        body: &Arc<[u8]>,
        deadline: Instant,
    ) -> Result<String> {
        let mut receivers: JoinSet<(String, Result<()>)> = JoinSet::new();
        let deadline = tokio::time::Instant::from(deadline);
        loop {
            let next_poll = tokio::time::Instant::now() + args.poll_interval;
            let poll = self.discovery.poll(topic);
            if tokio::time::timeout_at(deadline, poll).await.is_err() {
                bail!(self.timeout_report(args, topic));
            }
            self.producers.extend(self.discovery.listed());
            for p in self.producers.values() {
                if self.subscribed.insert(p.tcp.clone()) {
                    log(&format!("subscribing to {topic}/{CHANNEL} on {}", p.tcp));
                    let (setup, addr) = (setup.clone(), p.tcp.clone());
                    let (topic, body) = (topic.to_string(), body.clone());
                    receivers.spawn(async move {
                        let r = receive(setup, addr.clone(), topic, body).await;
                        (addr, r)
                    });
                }
            }
            loop {
                tokio::select! {
                    Some(done) = receivers.join_next(), if !receivers.is_empty() => {
                        let (addr, result) = done.context("a receiving task failed")?;
                        match result {
                            Ok(()) => return Ok(addr),
                            Err(e) => {
                                self.subscribed.remove(&addr);
                                self.failures.fail(&addr, &e);
                            }
                        }
                    }
                    _ = tokio::time::sleep_until(next_poll) => break,
                    _ = tokio::time::sleep_until(deadline) => {
                        bail!(self.timeout_report(args, topic));
                    }
                }
            }
        }
    }

    fn timeout_report(&self, args: &CheckArgs, topic: &str) -> String {
        let mut report = if self.producers.is_empty() {
            format!(
                "no nsqlookupd ({}) listed a broker for topic {topic} within {}",
                args.lookupd_http_addresses.join(", "),
                format_duration(args.timeout)
            )
        } else {
            format!(
                "the message did not arrive within {} from {}",
                format_duration(args.timeout),
                self.producers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        for (source, e) in self.discovery.failures.iter().chain(self.failures.iter()) {
            report.push_str(&format!("; {source}: {e}"));
        }
        report
    }
}

/// Deletes the check's topic: from the brokers that listed it (over HTTP, following a
/// `TLS_REQUIRED` refusal to HTTPS), then from the lookupds, which otherwise keep
/// listing it in `/topics`. A lookupd is cleaned only once it lists no broker for the
/// topic: the brokers' UNREGISTER has then arrived, so no REGISTER still on its way can
/// bring the topic back. Failures are only reported.
async fn delete_topic<'a>(
    setup: &Setup,
    topic: &str,
    brokers: impl Iterator<Item = &'a Producer>,
    lookupds: &[String],
) {
    let path = format!("/topic/delete?topic={}", query_escape(topic));
    let mut all_deleted = true;
    for p in brokers {
        all_deleted &= delete(&p.http, &path, setup.tls.as_ref(), topic).await;
    }
    if !all_deleted {
        return;
    }
    for lookupd in lookupds {
        if unregistered(lookupd, topic).await {
            delete(lookupd, &path, None, topic).await;
        } else {
            log(&format!(
                "{lookupd} still lists a broker for {topic}; left it there"
            ));
        }
    }
}

async fn delete(
    addr: &str,
    path: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    topic: &str,
) -> bool {
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    let failure = match request_or_https("POST", addr, path, Timeouts::default(), tls).await {
        Ok(r) if r.is_success() => {
            log(&format!("deleted topic {topic} on {addr}"));
            return true;
        }
        Ok(r) => format!("status {} {}", r.status, r.message()),
        Err(e) => e,
    };
    log(&format!(
        "could not delete topic {topic} on {addr}: {failure}"
    ));
    false
}

/// Waits (briefly) until `lookupd` lists no broker for `topic`.
async fn unregistered(lookupd: &str, topic: &str) -> bool {
    let until = Instant::now() + UNREGISTER_WAIT;
    loop {
        match lookup::producers(lookupd, topic, Timeouts::default()).await {
            Ok(list) if list.is_empty() => return true,
            _ if Instant::now() >= until => return false,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        check: CheckArgs,
    }

    fn parse(args: &[&str]) -> Result<CheckArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("check").chain(args.iter().copied())).map(|c| c.check)
    }

    #[test]
    fn names_are_valid_unique_topics() {
        let (a, b) = (unique_name(), unique_name());
        assert_ne!(a, b);
        assert!(a.starts_with("helm-test-"), "{a}");
        assert!(nsq_common::names::is_valid_topic_name(&a), "{a}");
        assert!(!nsq_common::names::is_ephemeral(&a));
        assert!(nsq_common::names::is_valid_channel_name(CHANNEL));
        assert!(nsq_common::names::is_ephemeral(CHANNEL));
    }

    #[test]
    fn flags_hang_together() {
        let a = parse(&[
            "--lookupd-http-address",
            "l1:4161",
            "--lookupd-http-address",
            "l2:4161",
        ])
        .unwrap();
        assert_eq!(a.lookupd_http_addresses, ["l1:4161", "l2:4161"]);
        assert_eq!(
            (a.timeout, a.nsqd_tcp_address.as_str()),
            (Duration::from_secs(60), "127.0.0.1:4150")
        );
        assert!(parse(&[]).is_err(), "a lookupd is required");
        let l = ["--lookupd-http-address", "l:4161"];
        for bad in [
            &["--tls-insecure-skip-verify"][..],
            &["--tls", "--tls-cert", "c.pem"],
            &["--tls", "--tls-key", "k.pem"],
            &[
                "--tls",
                "--tls-insecure-skip-verify",
                "--tls-root-ca-file",
                "ca.pem",
            ],
        ] {
            assert!(parse(&[&l[..], bad].concat()).is_err(), "{bad:?}");
        }
        let a = parse(
            &[
                &l[..],
                &[
                    "--tls",
                    "--tls-insecure-skip-verify",
                    "--tls-cert",
                    "c",
                    "--tls-key",
                    "k",
                ],
            ]
            .concat(),
        )
        .unwrap();
        assert!(a.client.tls && a.client.tls_insecure_skip_verify && a.client.tls_key.is_some());
        let a = parse(&[&l[..], &["--tls"]].concat()).unwrap();
        let err = Setup::new(&a.client)
            .err()
            .expect("TLS without a trust choice")
            .to_string();
        assert!(err.contains("--tls-insecure-skip-verify"), "{err}");
    }
}
