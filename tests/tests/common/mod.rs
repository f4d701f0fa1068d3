//! What the operator tests share: a test's NSQ cluster under an operator, and
//! typed looks at NsqTopic/NsqChannel status and at the brokers.
#![allow(dead_code)]

use nsq_operator::crd::{Condition, NsqChannel, NsqTopic};
use nsq_tests::inspect::{stats_channel, stats_topic};
use nsq_tests::{registered_nsqd, wait_until, Kube, Nsqd, Nsqlookupd, Operator};
use std::time::Duration;

/// How long the first reconcile may take to bring a new resource to Ready
/// (operator start-up, Lease, watch, one reconcile).
pub const READY_WITHIN: Duration = Duration::from_secs(20);
/// Slack on top of the resync period for a repair to be seen (one reconcile,
/// a status write, and polling, on a loaded machine).
pub const SLACK: Duration = Duration::from_secs(3);

/// One test's NSQ cluster under an operator. Fields drop in order: the
/// operator stops acting before the brokers go away.
pub struct Cluster {
    pub operator: Operator,
    pub brokers: Vec<Nsqd>,
    pub lookupd: Nsqlookupd,
    pub kube: Kube,
}

impl Cluster {
    /// A namespace, a lookupd, `brokers` brokers registered with it (and
    /// listed in its `/nodes`), and an operator for the namespace.
    pub fn start(brokers: usize) -> Cluster {
        Self::start_with(brokers, &[])
    }

    /// [`Cluster::start`] with `extra` operator flags.
    pub fn start_with(brokers: usize, extra: &[&str]) -> Cluster {
        let kube = Kube::new();
        let lookupd = Nsqlookupd::start(&[]);
        let brokers: Vec<Nsqd> = (0..brokers)
            .map(|_| registered_nsqd(&[&lookupd], &[]))
            .collect();
        for b in &brokers {
            wait_listed(&lookupd, b);
        }
        let lookupds = [lookupd.http_addr().to_string()];
        let operator = Operator::try_start(&kube, &lookupds, "operator-0", extra)
            .unwrap_or_else(|e| panic!("{e}"));
        Cluster {
            operator,
            brokers,
            lookupd,
            kube,
        }
    }

    /// Starts one more broker registered with the lookupd and waits until
    /// lookupd lists it.
    pub fn add_broker(&mut self) -> &Nsqd {
        let b = registered_nsqd(&[&self.lookupd], &[]);
        wait_listed(&self.lookupd, &b);
        self.brokers.push(b);
        self.brokers.last().unwrap()
    }

    /// The brokers' HTTP addresses, sorted, as the operator reports them.
    pub fn broker_addrs(&self) -> Vec<String> {
        let mut v: Vec<String> = self.brokers.iter().map(broker_addr).collect();
        v.sort();
        v
    }
}

/// A broker's HTTP address as the operator names it (`broadcast:http_port`).
pub fn broker_addr(b: &Nsqd) -> String {
    b.http_addr().to_string()
}

/// Waits until `lookupd`'s `/nodes` lists `broker`.
#[track_caller]
pub fn wait_listed(lookupd: &Nsqlookupd, broker: &Nsqd) {
    wait_until(
        Duration::from_secs(10),
        "lookupd to list the broker",
        || match lookupd.node(broker.tcp_addr()) {
            Some(_) => Ok(()),
            None => Err(format!("{:?}", lookupd.nodes())),
        },
    )
}

pub fn ready(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

/// `Ok` when the Ready condition has `status` and `reason` and speaks of the
/// object's current generation.
fn check_ready(
    conditions: &[Condition],
    generation: Option<i64>,
    observed: Option<i64>,
    status: &str,
    reason: &str,
) -> Result<(), String> {
    let Some(c) = ready(conditions) else {
        return Err(format!("no Ready condition in {conditions:?}"));
    };
    if c.status != status || c.reason != reason {
        return Err(format!(
            "Ready={} reason {}: {}",
            c.status, c.reason, c.message
        ));
    }
    if observed != generation || c.observed_generation != generation {
        return Err(format!(
            "observedGeneration {observed:?} (condition {:?}), generation {generation:?}",
            c.observed_generation
        ));
    }
    Ok(())
}

/// Waits until the NsqTopic's Ready condition has `status` and `reason` for
/// its current generation and `also` holds; returns it.
#[track_caller]
pub fn wait_topic(
    kube: &Kube,
    name: &str,
    timeout: Duration,
    status: &str,
    reason: &str,
    mut also: impl FnMut(&NsqTopic) -> Result<(), String>,
) -> NsqTopic {
    kube.wait_for(
        timeout,
        name,
        &format!("Ready={status} ({reason})"),
        |t: Option<&NsqTopic>| {
            let t = t.ok_or("no such NsqTopic")?;
            let s = t.status.clone().unwrap_or_default();
            check_ready(
                &s.conditions,
                t.metadata.generation,
                s.observed_generation,
                status,
                reason,
            )?;
            also(t)?;
            Ok(t.clone())
        },
    )
}

/// [`wait_topic`] for an NsqChannel.
#[track_caller]
pub fn wait_channel(
    kube: &Kube,
    name: &str,
    timeout: Duration,
    status: &str,
    reason: &str,
    mut also: impl FnMut(&NsqChannel) -> Result<(), String>,
) -> NsqChannel {
    kube.wait_for(
        timeout,
        name,
        &format!("Ready={status} ({reason})"),
        |c: Option<&NsqChannel>| {
            let c = c.ok_or("no such NsqChannel")?;
            let s = c.status.clone().unwrap_or_default();
            check_ready(
                &s.conditions,
                c.metadata.generation,
                s.observed_generation,
                status,
                reason,
            )?;
            also(c)?;
            Ok(c.clone())
        },
    )
}

/// Waits until the object is gone from the API (its finalizer let it go).
#[track_caller]
pub fn wait_gone<K>(kube: &Kube, name: &str, timeout: Duration)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    kube.wait_for(
        timeout,
        name,
        "deletion to finish",
        |o: Option<&K>| match o {
            None => Ok(()),
            Some(o) => Err(format!("still there, finalizers {:?}", o.meta().finalizers)),
        },
    )
}

pub fn has_topic(b: &Nsqd, topic: &str) -> bool {
    stats_topic(&b.stats(), topic).is_some()
}

pub fn has_channel(b: &Nsqd, topic: &str, channel: &str) -> bool {
    stats_channel(&b.stats(), topic, channel).is_some()
}

/// The channel's `paused` in the broker's `/stats`, `None` when it is missing.
pub fn channel_paused(b: &Nsqd, topic: &str, channel: &str) -> Option<bool> {
    stats_channel(&b.stats(), topic, channel).map(|c| c["paused"].as_bool().unwrap_or(false))
}

/// Publishes `n` messages to `topic` on the broker over HTTP (`/mpub`).
pub fn publish(b: &Nsqd, topic: &str, n: usize) {
    let body: Vec<String> = (0..n).map(|i| format!("message {i}")).collect();
    let r = b.http(
        "POST",
        &format!("/mpub?topic={topic}"),
        body.join("\n").as_bytes(),
    );
    assert_eq!(r.status, 200, "POST /mpub?topic={topic}: {}", r.text());
}
