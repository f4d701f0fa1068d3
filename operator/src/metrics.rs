//! The operator's Prometheus metrics, named by Prometheus conventions
//! (`_total` counters, `_seconds` durations, base units).

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::time::Instant;

pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    managed: IntGaugeVec,
    brokers: Gauge,
    leader: Gauge,
    ready: GaugeVec,
}

/// Kinds and failure reasons whose series exist from the start at 0, so a
/// dashboard shows "no failures" rather than "no data".
const KINDS: [&str; 2] = ["NsqTopic", "NsqChannel"];
pub const FAILURE_REASONS: [&str; 4] = [
    "KubernetesAPI",
    "LookupdUnavailable",
    "BrokerUnreachable",
    "Finalizer",
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("nsq_operator_reconciles_total", "Reconciles run, by kind."),
            &["kind"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "nsq_operator_reconcile_failures_total",
                "Reconciles that failed, by kind and reason.",
            ),
            &["kind", "reason"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "nsq_operator_reconcile_duration_seconds",
                "Time spent in one reconcile, by kind.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind"],
        )
        .expect("valid metric");
        let managed = IntGaugeVec::new(
            Opts::new(
                "nsq_operator_managed_resources",
                "NsqTopic and NsqChannel resources being managed, by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let brokers = Gauge::new(
            "nsq_operator_brokers",
            "Brokers known to lookupd at the last reconcile.",
        )
        .expect("valid metric");
        let leader = Gauge::new(
            "nsq_operator_leader",
            "1 while this replica holds the leader lease.",
        )
        .expect("valid metric");
        let ready = GaugeVec::new(
            Opts::new(
                "nsq_operator_resource_ready",
                "1 when the resource's Ready condition is True, by kind, namespace and name.",
            ),
            &["kind", "namespace", "name"],
        )
        .expect("valid metric");
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(managed.clone()),
            Box::new(brokers.clone()),
            Box::new(leader.clone()),
            Box::new(ready.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        for kind in KINDS {
            reconciles.with_label_values(&[kind]);
            for reason in FAILURE_REASONS {
                failures.with_label_values(&[kind, reason]);
            }
        }
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            managed,
            brokers,
            leader,
            ready,
        }
    }

    /// Counts a reconcile; the returned guard records its duration when dropped.
    pub fn reconcile(&self, kind: &str) -> ReconcileTimer<'_> {
        self.reconciles.with_label_values(&[kind]).inc();
        ReconcileTimer {
            metrics: self,
            kind: kind.to_owned(),
            start: Instant::now(),
        }
    }

    pub fn failure(&self, kind: &str, reason: &str) {
        self.failures.with_label_values(&[kind, reason]).inc();
    }

    pub fn set_managed(&self, kind: &str, n: i64) {
        self.managed.with_label_values(&[kind]).set(n);
    }

    pub fn set_brokers(&self, n: usize) {
        self.brokers.set(n as f64);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(if leader { 1.0 } else { 0.0 });
    }

    pub fn set_ready(&self, kind: &str, namespace: &str, name: &str, ready: bool) {
        self.ready
            .with_label_values(&[kind, namespace, name])
            .set(if ready { 1.0 } else { 0.0 });
    }

    /// A deleted resource leaves no series behind.
    pub fn forget(&self, kind: &str, namespace: &str, name: &str) {
        let _ = self.ready.remove_label_values(&[kind, namespace, name]);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!("failed to encode metrics - {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: String,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .with_label_values(&[&self.kind])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_conventional_names() {
        let m = Metrics::new();
        drop(m.reconcile("NsqTopic"));
        m.failure("NsqTopic", "BrokerUnreachable");
        m.set_leader(true);
        let text = m.encode();
        for name in [
            "nsq_operator_reconciles_total{kind=\"NsqTopic\"} 1",
            "nsq_operator_reconcile_failures_total{kind=\"NsqTopic\",reason=\"BrokerUnreachable\"} 1",
            "nsq_operator_reconcile_duration_seconds_count{kind=\"NsqTopic\"} 1",
            "nsq_operator_leader 1",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        // Known series start at 0.
        for line in [
            "nsq_operator_reconciles_total{kind=\"NsqChannel\"} 0",
            "nsq_operator_reconcile_failures_total{kind=\"NsqChannel\",reason=\"Finalizer\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
