//! Each V2 command's success path over a raw socket, compared byte for byte with
//! what nsqd 1.3 sends (`nsqd/protocol_v2.go`), plus the timing behaviour that
//! clients depend on: heartbeats, message time-outs, TOUCH, REQ delays, RDY.

use nsq_tests::inspect::{metadata_channels, stats_channels};
use nsq_tests::{wait_for, Frame, Nsqd};
use serde_json::json;
use std::time::{Duration, Instant};

fn ok() -> Frame {
    Frame::Response(b"OK".to_vec())
}

/// A consumer subscribed to `topic`/`channel` with `RDY rdy`.
fn consumer(nsqd: &Nsqd, topic: &str, channel: &str, rdy: u64) -> nsq_tests::V2Client {
    let mut c = nsqd.connect();
    c.subscribe(topic, channel);
    c.rdy(rdy);
    c
}

#[test]
fn pub_is_answered_with_an_ok_response_frame_byte_for_byte() {
    use std::io::{Read, Write};
    let nsqd = Nsqd::start(&[]);
    let mut s = std::net::TcpStream::connect(nsqd.tcp_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"  V2PUB t\n\x00\x00\x00\x05hello").unwrap();
    // [size 6][frame type 0: response]["OK"]
    let mut raw = [0u8; 10];
    s.read_exact(&mut raw).unwrap();
    assert_eq!(&raw, b"\x00\x00\x00\x06\x00\x00\x00\x00OK");
}

#[test]
fn message_frame_carries_timestamp_attempts_id_and_body() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c", 1);
    let before = now_nanos();
    nsqd.connect().publish("t", b"hello");
    let m = c.next_message();
    let after = now_nanos();
    assert_eq!(m.body, b"hello");
    assert_eq!(m.attempts, 1);
    assert!(
        m.id.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)),
        "message ID is 16 lower-case hex digits: {:?}",
        m.id_str()
    );
    assert!(
        (before..=after).contains(&m.timestamp),
        "timestamp {} is the publish time in Unix nanoseconds ({before}..={after})",
        m.timestamp
    );
}

#[test]
fn mpub_is_answered_ok_and_each_message_is_delivered_in_order() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c", 10);
    nsqd.connect().mpublish("t", &[b"one", b"two", b"three"]);
    let got: Vec<_> = (0..3).map(|_| c.next_message()).collect();
    let bodies: Vec<_> = got.iter().map(|m| m.body_str().to_owned()).collect();
    assert_eq!(bodies, ["one", "two", "three"]);
    assert!(got.iter().all(|m| m.attempts == 1));
    let ids: std::collections::BTreeSet<_> = got.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 3, "each message has its own ID");
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn nop_and_rdy_send_no_response() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    c.command("NOP");
    c.publish("probe", b"x"); // the next frame is PUB's OK: NOP answered nothing
    c.subscribe("t", "c");
    c.rdy(0);
    c.command("NOP");
    c.publish("probe", b"x");
}

#[test]
fn identify_without_feature_negotiation_is_answered_ok() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    let f = c.identify(&json!({"client_id": "test", "hostname": "h", "user_agent": "nsq-tests/1"}));
    assert_eq!(f, ok());
    c.subscribe("t", "c");
}

#[test]
fn identify_with_feature_negotiation_returns_nsqds_json_with_the_defaults() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    let f = c.identify(&json!({"feature_negotiation": true}));
    // nsqd marshals an anonymous struct: these keys, in this order. deflate_level
    // is min(6, --max-deflate-level) even when deflate is off. The topology
    // fields are current master's (topology-aware consumption).
    let want = concat!(
        r#"{"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,"#,
        r#""msg_timeout":60000,"tls_v1":false,"deflate":false,"deflate_level":6,"#,
        r#""max_deflate_level":6,"snappy":false,"sample_rate":0,"auth_required":false,"#,
        r#""output_buffer_size":16384,"output_buffer_timeout":250,"#,
        r#""topology_zone":"","topology_region":""}"#
    );
    match f {
        Frame::Response(body) => assert_eq!(String::from_utf8_lossy(&body), want),
        other => panic!("expected the negotiation JSON, got {other:?}"),
    }
    c.subscribe("t", "c");
}

#[test]
fn identify_treats_json_null_fields_as_absent() {
    // Go's encoding/json leaves a field untouched when the JSON value is null,
    // so nsqd accepts `"client_id": null` and the like; tokio-nsq sends exactly
    // that for every option it leaves unset.
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    let f = c.identify(&json!({
        "client_id": null,
        "hostname": "h",
        "sample_rate": null,
        "msg_timeout": null,
        "heartbeat_interval": null,
        "feature_negotiation": true,
    }));
    let Frame::Response(body) = f else {
        panic!(
            "expected the negotiation JSON, got {}",
            nsq_tests::v2::describe(&f)
        )
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["sample_rate"].clone(), v["msg_timeout"].clone()),
        (json!(0), json!(60000))
    );
    c.subscribe("t", "c");
}

#[test]
fn identify_with_feature_negotiation_reports_negotiated_values_and_broker_limits() {
    let nsqd = Nsqd::start(&[
        "--max-rdy-count=200",
        "--max-msg-timeout=10m",
        "--msg-timeout=30s",
        "--max-deflate-level=4",
        "--topology-zone=z1",
        "--topology-region=r1",
    ]);
    // A client that negotiates nothing gets the broker's --msg-timeout.
    let mut d = nsqd.connect();
    let f = d.identify(&json!({"feature_negotiation": true}));
    let Frame::Response(body) = f else {
        panic!("expected the negotiation JSON, got {f:?}")
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["msg_timeout"], 30000);

    let mut c = nsqd.connect();
    let f = c.identify(&json!({
        "feature_negotiation": true,
        "msg_timeout": 1000,
        "output_buffer_size": 1024,
        "output_buffer_timeout": 100,
        "sample_rate": 10,
        "heartbeat_interval": 5000,
        "not_an_nsqd_field": [1, 2, 3],
    }));
    let want = concat!(
        r#"{"max_rdy_count":200,"version":"1.3.0","max_msg_timeout":600000,"#,
        r#""msg_timeout":1000,"tls_v1":false,"deflate":false,"deflate_level":4,"#,
        r#""max_deflate_level":4,"snappy":false,"sample_rate":10,"auth_required":false,"#,
        r#""output_buffer_size":1024,"output_buffer_timeout":100,"#,
        r#""topology_zone":"z1","topology_region":"r1"}"#
    );
    match f {
        Frame::Response(body) => assert_eq!(String::from_utf8_lossy(&body), want),
        other => panic!("expected the negotiation JSON, got {other:?}"),
    }
}

#[test]
fn fin_completes_a_message_so_a_second_fin_fails() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c", 1);
    nsqd.connect().publish("t", b"once");
    let m = c.next_message();
    c.fin(&m.id);
    c.fin(&m.id);
    c.expect_error(&format!(
        "E_FIN_FAILED FIN {} failed ID not in flight",
        m.id_str()
    ));
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn req_redelivers_with_the_next_attempt_after_the_requested_delay() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c", 1);
    nsqd.connect().publish("t", b"again");
    let first = c.next_message();
    assert_eq!(first.attempts, 1);

    c.req(&first.id, 0);
    let second = c.next_message();
    assert_eq!(
        (second.id, second.attempts, second.body.as_slice()),
        (first.id, 2, &b"again"[..])
    );

    let sent = Instant::now();
    c.req(&second.id, 1000);
    assert!(
        c.message_within(Duration::from_millis(950)).is_none(),
        "REQ 1000 must not redeliver before its delay"
    );
    let third = c.next_message();
    let waited = sent.elapsed();
    assert_eq!((third.id, third.attempts), (first.id, 3));
    assert!(
        waited < Duration::from_millis(2500),
        "redelivered after {waited:?}"
    );
    c.fin(&third.id);
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn dpub_is_delivered_only_after_its_delay() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c", 1);
    let sent = Instant::now();
    nsqd.connect().dpublish("t", 1000, b"later");
    assert!(
        c.message_within(Duration::from_millis(950)).is_none(),
        "DPUB 1000 must not be delivered early"
    );
    let m = c.next_message();
    let waited = sent.elapsed();
    assert_eq!((m.body.as_slice(), m.attempts), (&b"later"[..], 1));
    assert!(
        waited < Duration::from_millis(2500),
        "delivered after {waited:?}"
    );
}

#[test]
fn message_not_finished_within_identify_msg_timeout_is_redelivered_with_attempts_2() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    assert_eq!(c.identify(&json!({"msg_timeout": 1000})), ok());
    c.subscribe("t", "c");
    c.rdy(1);
    nsqd.connect().publish("t", b"slow");
    let first = c.next_message();
    let received = Instant::now();
    let again = c.next_message();
    let waited = received.elapsed();
    assert_eq!(
        (again.id, again.attempts, again.body.as_slice()),
        (first.id, 2, &b"slow"[..])
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500),
        "redelivered after {waited:?}, expected about 1 s"
    );
    // The redelivery is in flight again and can be finished.
    c.fin(&again.id);
    c.publish("probe", b"x");
}

#[test]
fn touch_resets_the_message_timeout() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    assert_eq!(c.identify(&json!({"msg_timeout": 1000})), ok());
    c.subscribe("t", "c");
    c.rdy(1);
    nsqd.connect().publish("t", b"long job");
    let m = c.next_message();
    // Hold the message for 1.8 s, touching every 600 ms: without the TOUCHes
    // it would time out at 1 s and be redelivered.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(600));
        c.touch(&m.id);
    }
    std::thread::sleep(Duration::from_millis(600));
    c.fin(&m.id);
    // No E_FIN_FAILED and no redelivery before the probe's OK.
    c.publish("probe", b"x");
    c.expect_silence(Duration::from_millis(1200));
}

#[test]
fn rdy_0_stops_delivery_until_rdy_is_raised() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c", 0);
    nsqd.connect().publish("t", b"waiting");
    c.expect_silence(Duration::from_millis(500));
    c.rdy(1);
    let m = c.next_message();
    assert_eq!(m.body, b"waiting");

    // With nothing in flight, lowering RDY back to 0 stops the next message.
    c.fin(&m.id);
    c.rdy(0);
    c.publish("probe", b"x"); // FIN and RDY 0 are processed once this is answered
    nsqd.connect().publish("t", b"held");
    c.expect_silence(Duration::from_millis(500));
    c.rdy(1);
    assert_eq!(c.next_message().body, b"held");
}

#[test]
fn cls_is_answered_close_wait_and_stops_delivery() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c", 0);
    c.command("CLS");
    c.expect_response(b"CLOSE_WAIT");
    // RDY after CLS is ignored, not an error.
    c.rdy(10);
    c.publish("t", b"not for a closing client");
    c.expect_silence(Duration::from_millis(500));
}

#[test]
fn heartbeats_arrive_at_the_negotiated_interval() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    assert_eq!(c.identify(&json!({"heartbeat_interval": 1000})), ok());
    let start = Instant::now();
    for n in 1..=2u32 {
        let f = c.next_frame();
        let at = start.elapsed();
        assert!(f.is_heartbeat(), "expected _heartbeat_, got {f:?}");
        let expected = Duration::from_millis(1000) * n;
        assert!(
            at + Duration::from_millis(200) >= expected
                && at <= expected + Duration::from_millis(600),
            "heartbeat {n} at {at:?}, expected about {expected:?}"
        );
        c.command("NOP");
    }
}

#[test]
fn client_silent_for_two_heartbeat_intervals_is_disconnected() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    assert_eq!(c.identify(&json!({"heartbeat_interval": 1000})), ok());
    let start = Instant::now();
    let mut heartbeats = 0;
    loop {
        match c.next_frame_within(Duration::from_secs(5)) {
            Ok(f) if f.is_heartbeat() => heartbeats += 1,
            Ok(f) => panic!("unexpected frame {f:?}"),
            Err(nsq_tests::v2::NoFrame::Closed) => break,
            Err(nsq_tests::v2::NoFrame::Timeout) => panic!("still connected after 5 s of silence"),
        }
    }
    let at = start.elapsed();
    assert!(heartbeats >= 1, "heartbeats were sent before giving up");
    assert!(
        at >= Duration::from_millis(1800) && at < Duration::from_millis(3500),
        "disconnected after {at:?}, expected about 2 s"
    );
}

#[test]
fn ephemeral_channel_is_never_persisted_and_disappears_when_its_consumer_leaves() {
    let mut nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "t", "c#ephemeral", 1);
    let mut durable = consumer(&nsqd, "t", "durable", 1);
    nsqd.connect().publish("t", b"x");
    assert_eq!(c.next_message().body, b"x");
    assert_eq!(durable.next_message().body, b"x");

    wait_for(
        Duration::from_secs(3),
        "nsqd.dat to list channel t/durable",
        || {
            nsqd.metadata()
                .filter(|m| metadata_channels(m, "t").contains(&"durable".to_owned()))
        },
    );
    let meta = nsqd.metadata().unwrap();
    assert_eq!(
        metadata_channels(&meta, "t"),
        ["durable"],
        "nsqd.dat: {meta}"
    );

    let stats = nsqd.stats();
    assert_eq!(
        stats_channels(&stats, "t"),
        ["c#ephemeral", "durable"],
        "/stats: {stats}"
    );

    drop(c);
    wait_for(
        Duration::from_secs(3),
        "c#ephemeral to leave /stats",
        || (stats_channels(&nsqd.stats(), "t") == ["durable"]).then_some(()),
    );

    let (status, _) = nsqd.terminate();
    assert!(status.success(), "exit status {status}");
    let meta = nsq_tests::nsqd::read_metadata(nsqd.data_path()).expect("nsqd.dat after exit");
    assert_eq!(
        metadata_channels(&meta, "t"),
        ["durable"],
        "nsqd.dat: {meta}"
    );
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn identify_sample_rate_delivers_about_that_share_and_drains_the_rest() {
    let nsqd = Nsqd::start(&[]);
    let bodies: Vec<Vec<u8>> = (0..2000).map(|i| format!("m{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    nsqd.connect().mpublish("sampled", &refs);
    let mut c = nsqd.connect();
    c.identify(&json!({"feature_negotiation": true, "sample_rate": 10}));
    c.subscribe("sampled", "c");
    c.rdy(2500);
    // nsqd keeps a message when rand[0,100) <= rate: 11% on average.
    let mut delivered = 0;
    while let Some(m) = c.message_within(Duration::from_millis(500)) {
        assert_eq!(m.attempts, 1);
        delivered += 1;
    }
    assert!(
        (150..=300).contains(&delivered),
        "delivered {delivered} of 2000 at sample_rate 10"
    );
    let stats = nsqd.stats();
    let ch = &stats["topics"][0]["channels"][0];
    assert_eq!(ch["depth"], 0, "skipped messages are not kept: {ch}");
    assert_eq!(ch["in_flight_count"], delivered, "{ch}");
    assert_eq!(ch["clients"][0]["sample_rate"], 10);
}
