//! `GET /metrics`: the registration DB in Prometheus' text format.
//!
//! Counted from one pass over the DB under its read lock, then encoded with
//! the `prometheus` crate (as the operator does) after the lock is released:
//!
//! - `nsq_lookupd_producers`: identified nsqd connections;
//! - `nsq_lookupd_topics`, `nsq_lookupd_channels`: registrations;
//! - `nsq_lookupd_tombstones`: topic producers tombstoned within
//!   `--tombstone-lifetime`;
//! - per topic: `nsq_lookupd_topic_producers` (what `/lookup` returns: active,
//!   untombstoned), `nsq_lookupd_topic_channels`, `nsq_lookupd_topic_tombstones`.

use crate::nsqlookupd::{unix_nanos, Nsqlookupd};
use crate::registration_db::{filter_by_active, Category};
use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::collections::BTreeMap;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one topic has, as `/metrics` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicCounts {
    pub producers: i64,
    pub channels: i64,
    pub tombstones: i64,
}

/// The counts behind `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub producers: i64,
    pub topics: i64,
    pub channels: i64,
    pub tombstones: i64,
    pub by_topic: BTreeMap<String, TopicCounts>,
}

impl Counts {
    /// Counts the DB at `now` (Unix nanoseconds).
    pub fn collect(l: &Nsqlookupd, now: i64) -> Counts {
        let db = l.db.read();
        let mut c = Counts::default();
        for (r, producers) in db.iter() {
            match r.category {
                Category::Client => c.producers += producers.len() as i64,
                Category::Topic => {
                    c.topics += 1;
                    let t = c.by_topic.entry(r.key.clone()).or_default();
                    let tombstoned = producers
                        .iter()
                        .filter(|p| p.is_tombstoned(now, l.opts.tombstone_lifetime))
                        .count() as i64;
                    t.tombstones += tombstoned;
                    c.tombstones += tombstoned;
                    t.producers += filter_by_active(
                        producers.to_vec(),
                        now,
                        l.opts.inactive_producer_timeout,
                        l.opts.tombstone_lifetime,
                    )
                    .len() as i64;
                }
                Category::Channel => {
                    c.channels += 1;
                    c.by_topic.entry(r.key.clone()).or_default().channels += 1;
                }
            }
        }
        c
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str, v: i64| {
            let g = IntGauge::new(name, help).expect("valid metric");
            g.set(v);
            registry.register(Box::new(g)).expect("unique metric names");
        };
        gauge(
            "nsq_lookupd_producers",
            "nsqd nodes connected and identified.",
            self.producers,
        );
        gauge("nsq_lookupd_topics", "Topics registered.", self.topics);
        gauge(
            "nsq_lookupd_channels",
            "Channels registered.",
            self.channels,
        );
        gauge(
            "nsq_lookupd_tombstones",
            "Topic producers tombstoned within the tombstone lifetime.",
            self.tombstones,
        );
        let per_topic = |name: &str, help: &str, field: fn(&TopicCounts) -> i64| {
            let v = IntGaugeVec::new(Opts::new(name, help), &["topic"]).expect("valid metric");
            for (topic, counts) in &self.by_topic {
                v.with_label_values(&[topic.as_str()]).set(field(counts));
            }
            registry.register(Box::new(v)).expect("unique metric names");
        };
        per_topic(
            "nsq_lookupd_topic_producers",
            "Active, untombstoned producers of the topic (what /lookup returns).",
            |t| t.producers,
        );
        per_topic(
            "nsq_lookupd_topic_channels",
            "Channels registered for the topic.",
            |t| t.channels,
        );
        per_topic(
            "nsq_lookupd_topic_tombstones",
            "Producers of the topic tombstoned within the tombstone lifetime.",
            |t| t.tombstones,
        );
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
            tracing::error!("failed to encode metrics - {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The whole exposition for `l` right now.
pub fn render(l: &Nsqlookupd) -> String {
    Counts::collect(l, unix_nanos()).encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;
    use crate::registration_db::{Peer, PeerInfo, Registration};

    #[test]
    fn counts_producers_registrations_and_tombstones() {
        let l = Nsqlookupd::new(Options::default());
        let now = unix_nanos();
        let peer = |id: &str, port| {
            Peer::new(
                id,
                PeerInfo {
                    broadcast_address: "b".into(),
                    http_port: port,
                    ..PeerInfo::default()
                },
                now,
            )
        };
        let (a, b) = (peer("a", 1), peer("b", 2));
        {
            let mut db = l.db.write();
            for p in [&a, &b] {
                db.add_producer(Registration::client(), p);
                db.add_producer(Registration::topic("t"), p);
            }
            db.add_producer(Registration::channel("t", "c1"), &a);
            db.add_producer(Registration::channel("t", "c2"), &b);
            db.add_registration(Registration::topic("empty"));
            db.tombstone("t", "b:2", now);
        }
        let c = Counts::collect(&l, now);
        assert_eq!(
            (c.producers, c.topics, c.channels, c.tombstones),
            (2, 2, 2, 1)
        );
        assert_eq!(
            c.by_topic["t"],
            TopicCounts {
                producers: 1,
                channels: 2,
                tombstones: 1
            }
        );
        assert_eq!(c.by_topic["empty"], TopicCounts::default());
        let text = c.encode();
        for line in [
            "nsq_lookupd_producers 2\n",
            "nsq_lookupd_tombstones 1\n",
            "nsq_lookupd_topic_producers{topic=\"t\"} 1\n",
            "nsq_lookupd_topic_channels{topic=\"t\"} 2\n",
            "nsq_lookupd_topic_producers{topic=\"empty\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
