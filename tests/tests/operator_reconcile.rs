//! The operator against a real API server, real brokers and a real lookupd:
//! resources become topics and channels on every broker, status reports what
//! the brokers hold, deletion follows the deletion policy, and every resync
//! repairs what changed on the brokers behind the operator's back.

mod common;

use common::{
    broker_addr, channel_paused, has_channel, has_topic, publish, wait_channel, wait_gone,
    wait_topic, Cluster, READY_WITHIN, SLACK,
};
use nsq_operator::crd::{NsqChannel, NsqTopic, FINALIZER};
use nsq_tests::operator::RESYNC;
use nsq_tests::{same, wait_until};
use std::collections::BTreeMap;
use std::time::Instant;

const TOPIC: &str = "orders";
const CHANNEL: &str = "billing";
/// The NsqTopic and NsqChannel of `deploy/examples/`.
const TOPIC_RESOURCE: &str = "orders";
const CHANNEL_RESOURCE: &str = "orders-billing";

fn apply_examples(c: &Cluster) {
    c.kube.apply_file("deploy/examples/topic.yaml");
    c.kube.apply_file("deploy/examples/channel.yaml");
}

/// Waits until both examples are Ready on all of the cluster's brokers.
fn wait_examples_ready(c: &Cluster) -> (NsqTopic, NsqChannel) {
    let n = c.brokers.len() as i64;
    let t = wait_topic(
        &c.kube,
        TOPIC_RESOURCE,
        READY_WITHIN,
        "True",
        "Reconciled",
        |t| same(t.status.as_ref().map(|s| s.broker_count), Some(n)),
    );
    let ch = wait_channel(
        &c.kube,
        CHANNEL_RESOURCE,
        READY_WITHIN,
        "True",
        "Reconciled",
        |ch| same(ch.status.as_ref().map(|s| s.broker_count), Some(n)),
    );
    (t, ch)
}

/// The addresses in a status's `brokers[]`, sorted.
fn sorted<'a>(addrs: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut v: Vec<String> = addrs.cloned().collect();
    v.sort();
    v
}

#[test]
fn examples_create_topic_and_channel_on_every_broker_and_report_ready() {
    let c = Cluster::start(2);
    apply_examples(&c);
    let (topic, channel) = wait_examples_ready(&c);

    for b in &c.brokers {
        assert!(
            has_topic(b, TOPIC),
            "broker {} lacks topic {TOPIC}",
            broker_addr(b)
        );
        assert!(
            has_channel(b, TOPIC, CHANNEL),
            "broker {} lacks channel {TOPIC}/{CHANNEL}",
            broker_addr(b)
        );
    }

    let s = topic.status.expect("topic status");
    assert_eq!(s.topic_name.as_deref(), Some(TOPIC));
    assert_eq!(s.observed_generation, topic.metadata.generation);
    assert_eq!(
        sorted(s.brokers.iter().map(|b| &b.address)),
        c.broker_addrs()
    );
    assert!(
        s.brokers
            .iter()
            .all(|b| b.present && !b.paused && b.error.is_none()),
        "{:?}",
        s.brokers
    );
    let ready = common::ready(&s.conditions).expect("Ready");
    assert!(!ready.message.is_empty() && !ready.last_transition_time.is_empty());
    assert!(
        topic
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&FINALIZER.to_owned()),
        "the operator's finalizer is on the NsqTopic"
    );

    let s = channel.status.expect("channel status");
    assert_eq!(
        (s.topic_name.as_deref(), s.channel_name.as_deref()),
        (Some(TOPIC), Some(CHANNEL))
    );
    assert_eq!(s.observed_generation, channel.metadata.generation);
    assert_eq!(
        sorted(s.brokers.iter().map(|b| &b.address)),
        c.broker_addrs()
    );
    assert!(
        s.brokers
            .iter()
            .all(|b| b.present && !b.paused && b.error.is_none()),
        "{:?}",
        s.brokers
    );
    assert!(
        channel
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&FINALIZER.to_owned()),
        "the operator's finalizer is on the NsqChannel"
    );

    // A spec change is a new generation: the brokers follow, and status says
    // which generation it describes.
    let yaml = std::fs::read_to_string(
        nsq_tests::apiserver::workspace_root().join("deploy/examples/topic.yaml"),
    )
    .unwrap()
    .replace("paused: false", "paused: true");
    c.kube.apply_yaml(&yaml).expect("apply paused topic");
    let paused = wait_topic(
        &c.kube,
        TOPIC_RESOURCE,
        READY_WITHIN,
        "True",
        "Reconciled",
        |t| {
            let s = t.status.as_ref().unwrap();
            if s.brokers.len() == 2 && s.brokers.iter().all(|b| b.paused) {
                Ok(())
            } else {
                Err(format!("brokers {:?}", s.brokers))
            }
        },
    );
    assert_eq!(paused.metadata.generation, Some(2));
    for b in &c.brokers {
        let stats = b.stats();
        let t = nsq_tests::inspect::stats_topic(&stats, TOPIC).expect("topic");
        assert_eq!(
            t["paused"],
            true,
            "topic paused on broker {}",
            broker_addr(b)
        );
    }
}

#[test]
fn status_reports_depth_after_publishing() {
    let c = Cluster::start(2);
    c.kube.apply_file("deploy/examples/topic.yaml");
    wait_topic(
        &c.kube,
        TOPIC_RESOURCE,
        READY_WITHIN,
        "True",
        "Reconciled",
        |t| same(t.status.as_ref().map(|s| s.broker_count), Some(2)),
    );

    publish(&c.brokers[0], TOPIC, 3);
    publish(&c.brokers[1], TOPIC, 2);
    let want: BTreeMap<String, i64> = [
        (broker_addr(&c.brokers[0]), 3),
        (broker_addr(&c.brokers[1]), 2),
    ]
    .into_iter()
    .collect();
    // No channel yet: the messages wait in the topic.
    let started = Instant::now();
    wait_topic(
        &c.kube,
        TOPIC_RESOURCE,
        RESYNC * 2 + SLACK,
        "True",
        "Reconciled",
        |t| {
            let s = t.status.as_ref().unwrap();
            let per_broker: BTreeMap<String, i64> = s
                .brokers
                .iter()
                .map(|b| (b.address.clone(), b.depth))
                .collect();
            same((s.depth, s.message_count, &per_broker), (5, 5, &want))
        },
    );
    eprintln!(
        "topic depth reported {:?} after publishing",
        started.elapsed()
    );

    // A channel created now receives them: its depth is reported, the topic's drops.
    c.kube.apply_file("deploy/examples/channel.yaml");
    wait_channel(
        &c.kube,
        CHANNEL_RESOURCE,
        READY_WITHIN,
        "True",
        "Reconciled",
        |ch| {
            let s = ch.status.as_ref().unwrap();
            let per_broker: BTreeMap<String, i64> = s
                .brokers
                .iter()
                .map(|b| (b.address.clone(), b.depth))
                .collect();
            same((s.depth, &per_broker), (5, &want))
        },
    );
    wait_topic(
        &c.kube,
        TOPIC_RESOURCE,
        RESYNC * 2 + SLACK,
        "True",
        "Reconciled",
        |t| {
            let s = t.status.as_ref().unwrap();
            same((s.depth, s.message_count), (0, 5))
        },
    );
}

#[test]
fn deleting_under_delete_policy_removes_topic_and_channel_from_brokers_and_lookupd() {
    let c = Cluster::start(2);
    apply_examples(&c);
    wait_examples_ready(&c);
    wait_until(READY_WITHIN, "lookupd to hear of the channel", || {
        same(c.lookupd.channels(TOPIC), vec![CHANNEL.to_owned()])
    });

    c.kube.delete::<NsqChannel>(CHANNEL_RESOURCE);
    wait_gone::<NsqChannel>(&c.kube, CHANNEL_RESOURCE, READY_WITHIN);
    for b in &c.brokers {
        assert!(
            has_topic(b, TOPIC),
            "the topic stays while its NsqTopic does"
        );
        assert!(
            !has_channel(b, TOPIC, CHANNEL),
            "broker {} still has the channel after the NsqChannel is gone",
            broker_addr(b)
        );
    }
    assert_eq!(
        c.lookupd.channels(TOPIC),
        Vec::<String>::new(),
        "lookupd /channels"
    );

    c.kube.delete::<NsqTopic>(TOPIC_RESOURCE);
    wait_gone::<NsqTopic>(&c.kube, TOPIC_RESOURCE, READY_WITHIN);
    for b in &c.brokers {
        assert!(
            !has_topic(b, TOPIC),
            "broker {} still has the topic after the NsqTopic is gone",
            broker_addr(b)
        );
    }
    assert!(
        !c.lookupd.topics().contains(&TOPIC.to_owned()),
        "lookupd /topics still lists {TOPIC}: {:?}",
        c.lookupd.topics()
    );
    // And nothing brings them back.
    std::thread::sleep(RESYNC + SLACK);
    assert!(c.brokers.iter().all(|b| !has_topic(b, TOPIC)));
}

#[test]
fn deleting_under_retain_policy_leaves_topic_and_channel_on_brokers() {
    let c = Cluster::start(2);
    c.kube
        .apply_yaml(
            "apiVersion: nsq.io/v1alpha1\nkind: NsqTopic\nmetadata:\n  name: audit\n\
             spec:\n  deletionPolicy: Retain\n---\n\
             apiVersion: nsq.io/v1alpha1\nkind: NsqChannel\nmetadata:\n  name: audit-archive\n\
             spec:\n  topicName: audit\n  channelName: archive\n  deletionPolicy: Retain\n",
        )
        .expect("apply");
    wait_topic(&c.kube, "audit", READY_WITHIN, "True", "Reconciled", |t| {
        same(t.status.as_ref().map(|s| s.broker_count), Some(2))
    });
    wait_channel(
        &c.kube,
        "audit-archive",
        READY_WITHIN,
        "True",
        "Reconciled",
        |ch| same(ch.status.as_ref().map(|s| s.broker_count), Some(2)),
    );

    c.kube.delete::<NsqChannel>("audit-archive");
    c.kube.delete::<NsqTopic>("audit");
    wait_gone::<NsqChannel>(&c.kube, "audit-archive", READY_WITHIN);
    wait_gone::<NsqTopic>(&c.kube, "audit", READY_WITHIN);
    for b in &c.brokers {
        assert!(
            has_topic(b, "audit"),
            "broker {} lost the retained topic",
            broker_addr(b)
        );
        assert!(
            has_channel(b, "audit", "archive"),
            "broker {} lost the retained channel",
            broker_addr(b)
        );
    }
    wait_until(READY_WITHIN, "lookupd to keep both", || {
        same(
            (
                c.lookupd.topics().contains(&"audit".to_owned()),
                c.lookupd.channels("audit"),
            ),
            (true, vec!["archive".to_owned()]),
        )
    });
}

#[test]
fn broker_started_later_is_filled_within_the_resync_period() {
    let mut c = Cluster::start(1);
    apply_examples(&c);
    wait_examples_ready(&c);

    let late = c.add_broker();
    let listed = Instant::now();
    wait_until(
        RESYNC + SLACK,
        "the late broker to get the topic and channel",
        || {
            same(
                (has_topic(late, TOPIC), has_channel(late, TOPIC, CHANNEL)),
                (true, true),
            )
        },
    );
    eprintln!(
        "late broker filled {:?} after lookupd listed it",
        listed.elapsed()
    );
    wait_examples_ready(&c);
}

#[test]
fn topic_deleted_by_hand_on_a_broker_is_recreated() {
    let c = Cluster::start(2);
    apply_examples(&c);
    wait_examples_ready(&c);

    let b = &c.brokers[0];
    b.http_post_ok(&format!("/topic/delete?topic={TOPIC}"));
    assert!(!has_topic(b, TOPIC));
    let deleted = Instant::now();
    wait_until(
        RESYNC + SLACK,
        "the topic and its channel to be recreated",
        || {
            same(
                (has_topic(b, TOPIC), has_channel(b, TOPIC, CHANNEL)),
                (true, true),
            )
        },
    );
    eprintln!("recreated {:?} after the hand deletion", deleted.elapsed());
    wait_examples_ready(&c);
}

#[test]
fn pause_changed_by_hand_on_a_broker_is_set_back() {
    let c = Cluster::start(1);
    apply_examples(&c);
    wait_examples_ready(&c);
    let b = &c.brokers[0];

    b.http_post_ok(&format!("/channel/pause?topic={TOPIC}&channel={CHANNEL}"));
    assert_eq!(channel_paused(b, TOPIC, CHANNEL), Some(true));
    let changed = Instant::now();
    wait_until(RESYNC + SLACK, "the channel to be unpaused again", || {
        same(channel_paused(b, TOPIC, CHANNEL), Some(false))
    });
    eprintln!("unpaused {:?} after the hand pause", changed.elapsed());

    // The other way round: wanted paused, unpaused by hand.
    let yaml = std::fs::read_to_string(
        nsq_tests::apiserver::workspace_root().join("deploy/examples/channel.yaml"),
    )
    .unwrap()
    .replace("paused: false", "paused: true");
    c.kube.apply_yaml(&yaml).expect("apply paused channel");
    wait_until(READY_WITHIN, "the channel to be paused", || {
        same(channel_paused(b, TOPIC, CHANNEL), Some(true))
    });
    b.http_post_ok(&format!("/channel/unpause?topic={TOPIC}&channel={CHANNEL}"));
    wait_until(RESYNC + SLACK, "the channel to be paused again", || {
        same(channel_paused(b, TOPIC, CHANNEL), Some(true))
    });
}

#[test]
fn creation_is_recorded_as_kubernetes_events() {
    let c = Cluster::start(1);
    apply_examples(&c);
    wait_examples_ready(&c);
    let broker = broker_addr(&c.brokers[0]);
    for (kind, name) in [
        ("NsqTopic", TOPIC_RESOURCE),
        ("NsqChannel", CHANNEL_RESOURCE),
    ] {
        let event = wait_until(
            READY_WITHIN,
            &format!("a Created event for {kind} {name}"),
            || {
                let events = c.kube.events();
                events
                    .iter()
                    .find(|e| {
                        let r = e.regarding.as_ref();
                        e.reason.as_deref() == Some("Created")
                            && r.and_then(|r| r.kind.as_deref()) == Some(kind)
                            && r.and_then(|r| r.name.as_deref()) == Some(name)
                    })
                    .cloned()
                    .ok_or_else(|| {
                        let seen: Vec<_> = events
                            .iter()
                            .map(|e| {
                                (
                                    e.reason.clone(),
                                    e.regarding.as_ref().and_then(|r| r.name.clone()),
                                )
                            })
                            .collect();
                        format!("{seen:?}")
                    })
            },
        );
        assert_eq!(event.type_.as_deref(), Some("Normal"));
        let r = event.regarding.as_ref().unwrap();
        assert_eq!(r.api_version.as_deref(), Some("nsq.io/v1alpha1"));
        assert_eq!(r.namespace.as_deref(), Some(c.kube.namespace()));
        assert!(r.uid.is_some(), "the event references the object's uid");
        let note = event.note.clone().unwrap_or_default();
        assert!(
            note.contains(&broker),
            "event note {note:?} names broker {broker}"
        );
    }
}

#[test]
fn resources_at_rest_are_reconciled_about_once_per_resync_period() {
    let c = Cluster::start(1);
    apply_examples(&c);
    wait_examples_ready(&c);
    // Let the first reconciles and their status writes settle.
    std::thread::sleep(RESYNC);
    let reconciles = || {
        c.operator
            .metric("nsq_operator_reconciles_total")
            .unwrap_or(0.0)
    };
    let before = reconciles();
    let periods = 3;
    std::thread::sleep(RESYNC * periods);
    let n = reconciles() - before;
    eprintln!("{n} reconciles in {periods} resync periods");
    // Two resources, each requeued once per period; a status write that woke
    // its own watch again and again would show up here as a storm.
    let (least, most) = (2.0 * (periods as f64 - 1.0), 2.0 * (periods as f64 + 2.0));
    assert!(
        (least..=most).contains(&n),
        "{n} reconciles of 2 resources in {periods} resync periods of {RESYNC:?}; want {least}..={most}"
    );
}
