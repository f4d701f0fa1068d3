//! What survives a SIGTERM and a start on the same `--data-path`: queued,
//! in-flight and deferred messages, topics, channels and their paused state,
//! and a diskqueue whose last record was cut short.

use nsq_tests::inspect::{
    metadata_channel, metadata_channels, metadata_topic, stats_channel, stats_topic,
};
use nsq_tests::nsqd::read_metadata;
use nsq_tests::{Msg, Nsqd, V2Client};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Creates `topic`/`channel` by subscribing once, then leaves.
fn create_channel(nsqd: &Nsqd, topic: &str, channel: &str) {
    nsqd.connect().subscribe(topic, channel);
}

fn consumer(nsqd: &Nsqd, topic: &str, channel: &str, rdy: u64) -> V2Client {
    let mut c = nsqd.connect();
    c.subscribe(topic, channel);
    c.rdy(rdy);
    c
}

fn receive(c: &mut V2Client, n: usize) -> Vec<Msg> {
    (0..n).map(|_| c.next_message()).collect()
}

fn bodies(msgs: &[Msg]) -> BTreeSet<String> {
    msgs.iter().map(|m| m.body_str().to_owned()).collect()
}

fn numbered(n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("m{i:03}")).collect()
}

#[test]
fn messages_beyond_the_memory_queue_are_all_delivered_after_restart() {
    let mut nsqd = Nsqd::start(&["--mem-queue-size=10"]);
    create_channel(&nsqd, "t", "c");
    let mut p = nsqd.connect();
    for b in numbered(100) {
        p.publish("t", b.as_bytes());
    }
    drop(p);
    nsqd.restart();

    let mut c = consumer(&nsqd, "t", "c", 100);
    let got = receive(&mut c, 100);
    assert_eq!(bodies(&got), numbered(100));
    assert!(
        got.iter().all(|m| m.attempts == 1),
        "never delivered before"
    );
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn topic_backlog_without_channels_is_delivered_after_restart() {
    let mut nsqd = Nsqd::start(&["--mem-queue-size=10"]);
    let mut p = nsqd.connect();
    for b in numbered(25) {
        p.publish("t", b.as_bytes());
    }
    drop(p);
    nsqd.restart();

    let mut c = consumer(&nsqd, "t", "c", 25);
    assert_eq!(bodies(&receive(&mut c, 25)), numbered(25));
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn in_flight_messages_are_delivered_again_after_restart() {
    let mut nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c", 5);
    let mut p = nsqd.connect();
    for b in numbered(5) {
        p.publish("t", b.as_bytes());
    }
    let in_flight = receive(&mut c, 5); // received, never FINed
    drop(p);
    nsqd.restart();
    drop(c);

    let mut c = consumer(&nsqd, "t", "c", 10);
    let again = receive(&mut c, 5);
    let ids = |ms: &[Msg]| ms.iter().map(|m| m.id).collect::<BTreeSet<_>>();
    assert_eq!(ids(&again), ids(&in_flight), "the same messages, by ID");
    assert_eq!(bodies(&again), numbered(5));
    // nsqd saves the in-flight message with the attempt it was sent with; the
    // redelivery is the next attempt.
    assert!(again.iter().all(|m| m.attempts == 2), "attempts: {again:?}");
    c.expect_silence(Duration::from_millis(300));
}

/// nsqd 1.3 itself forgets deferral deadlines on restart (nsqio/nsq#1107: the
/// diskqueue format has no room for them); this project keeps them.
#[test]
fn deferred_message_survives_restart_and_waits_for_its_deadline() {
    let mut nsqd = Nsqd::start(&[]);
    create_channel(&nsqd, "t", "c");
    let published = Instant::now();
    nsqd.connect().dpublish("t", 3000, b"deferred");
    nsqd.restart();

    let mut c = consumer(&nsqd, "t", "c", 1);
    // Judged by when it arrives, not by a read timeout: timers on a loaded
    // machine overshoot, so "nothing before 2.95 s" would fail spuriously.
    let m = c.next_message();
    let waited = published.elapsed();
    assert_eq!(m.body, b"deferred");
    assert!(
        waited >= Duration::from_millis(3000) && waited < Duration::from_secs(6),
        "delivered {waited:?} after DPUB 3000"
    );
}

#[test]
fn topics_channels_and_paused_state_survive_restart() {
    let mut nsqd = Nsqd::start(&[]);
    create_channel(&nsqd, "t1", "c1");
    create_channel(&nsqd, "t1", "c2");
    nsqd.connect().publish("t2", b"topic without channels");
    create_channel(&nsqd, "t3", "c3");
    nsqd.http_post_ok("/channel/pause?topic=t1&channel=c1");
    nsqd.http_post_ok("/topic/pause?topic=t3");

    let (status, _) = nsqd.terminate();
    assert!(status.success(), "exit status {status}");
    let meta = read_metadata(nsqd.data_path()).expect("nsqd.dat written on exit");
    assert_eq!(meta["version"], "1.3.0", "nsqd.dat: {meta}");
    let topics: BTreeSet<_> = meta["topics"]
        .as_array()
        .expect("topics list")
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        topics,
        ["t1", "t2", "t3"].map(String::from).into(),
        "nsqd.dat: {meta}"
    );
    let paused = |v: Option<&serde_json::Value>| v.map(|v| v["paused"].clone());
    assert_eq!(paused(metadata_topic(&meta, "t1")), Some(false.into()));
    assert_eq!(paused(metadata_topic(&meta, "t3")), Some(true.into()));
    assert_eq!(
        paused(metadata_channel(&meta, "t1", "c1")),
        Some(true.into())
    );
    assert_eq!(
        paused(metadata_channel(&meta, "t1", "c2")),
        Some(false.into())
    );
    assert_eq!(
        paused(metadata_channel(&meta, "t3", "c3")),
        Some(false.into())
    );
    assert!(
        metadata_channels(&meta, "t2").is_empty(),
        "nsqd.dat: {meta}"
    );

    let nsqd = Nsqd::start_in(nsqd.data_dir(), &[]);
    let stats = nsqd.stats();
    let paused = |v: Option<&serde_json::Value>| v.map(|v| v["paused"].clone());
    assert!(stats_topic(&stats, "t2").is_some(), "/stats: {stats}");
    assert_eq!(
        paused(stats_topic(&stats, "t3")),
        Some(true.into()),
        "/stats: {stats}"
    );
    assert_eq!(
        paused(stats_channel(&stats, "t1", "c1")),
        Some(true.into()),
        "/stats: {stats}"
    );
    assert_eq!(
        paused(stats_channel(&stats, "t1", "c2")),
        Some(false.into()),
        "/stats: {stats}"
    );

    // And the restored pause is in force: c1 holds its copy of the message
    // (tests/channel_pause.rs covers waking connected consumers on unpause).
    let mut c1 = consumer(&nsqd, "t1", "c1", 1);
    let mut c2 = consumer(&nsqd, "t1", "c2", 1);
    nsqd.connect().publish("t1", b"x");
    assert_eq!(c2.next_message().body, b"x");
    c1.expect_silence(Duration::from_millis(500));
    drop(c1);
    nsqd.http_post_ok("/channel/unpause?topic=t1&channel=c1");
    assert_eq!(consumer(&nsqd, "t1", "c1", 1).next_message().body, b"x");
}

#[test]
fn truncated_last_diskqueue_record_is_skipped_and_intact_messages_are_delivered() {
    let mut nsqd = Nsqd::start(&[]);
    create_channel(&nsqd, "t", "c");
    let mut p = nsqd.connect();
    for b in numbered(5) {
        p.publish("t", b.as_bytes());
    }
    drop(p);
    let (status, _) = nsqd.terminate();
    assert!(status.success(), "exit status {status}");

    // The channel's newest diskqueue data file: <topic>:<channel>.diskqueue.NNNNNN.dat
    let mut data_files: Vec<_> = std::fs::read_dir(nsqd.data_path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("t:c.diskqueue.")
                && name.ends_with(".dat")
                && !name.ends_with(".meta.dat")
        })
        .collect();
    data_files.sort();
    let last = data_files.last().unwrap_or_else(|| {
        panic!(
            "no t:c diskqueue data file in {:?}",
            std::fs::read_dir(nsqd.data_path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>()
        )
    });
    let len = std::fs::metadata(last).unwrap().len();
    assert!(len > 3, "{} holds the 5 messages", last.display());
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let nsqd = Nsqd::start_in(nsqd.data_dir(), &[]);
    let mut c = consumer(&nsqd, "t", "c", 10);
    let got = receive(&mut c, 4);
    let got: Vec<_> = got.iter().map(|m| m.body_str().to_owned()).collect();
    assert_eq!(got, ["m000", "m001", "m002", "m003"]);
    c.expect_silence(Duration::from_millis(500));
    // Still serving: new messages flow.
    nsqd.connect().publish("t", b"after");
    assert_eq!(c.next_message().body, b"after");
    let panics: Vec<_> = nsqd
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "{panics:?}");
}
