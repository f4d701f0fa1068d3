//! nsqlookupd's TCP protocol V1, byte for byte, over raw sockets.
//!
//! From nsqlookupd 1.3 (nsqlookupd/tcp.go, lookup_protocol_v1.go,
//! internal/protocol): the client sends `"  V1"`, then `\n`-terminated lines
//! (trimmed, split on single spaces); IDENTIFY is followed by a 4-byte
//! big-endian size and a JSON body. Every answer, success or error, is
//! `protocol.SendResponse`: a 4-byte big-endian size and the bytes, with no
//! frame type. Every error is a `FatalClientErr` whose text is `"<code> <desc>"`,
//! so it is sent and then the connection is closed, which removes all of that
//! connection's registrations.

use nsq_tests::lookupd::{os_hostname, strings};
use nsq_tests::v1::sized;
use nsq_tests::{same, wait_until, Nsqlookupd, V1Client};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// What a test producer sends in IDENTIFY.
fn peer(tcp_port: u16, http_port: u16) -> Value {
    json!({
        "broadcast_address": "10.0.0.1",
        "hostname": "producer.example",
        "tcp_port": tcp_port,
        "http_port": http_port,
        "version": "1.3.0",
    })
}

/// A connection that has IDENTIFIed as `peer(tcp_port, http_port)`.
fn identified(l: &Nsqlookupd, tcp_port: u16, http_port: u16) -> V1Client {
    let mut c = l.connect();
    c.command_with_body("IDENTIFY", peer(tcp_port, http_port).to_string().as_bytes());
    let resp = c.next_response();
    assert!(
        resp.starts_with(b"{"),
        "IDENTIFY answered {:?}",
        String::from_utf8_lossy(&resp)
    );
    c
}

/// `tcp_port`s of `/lookup?topic=`'s producers, sorted.
fn producer_ports(l: &Nsqlookupd, topic: &str) -> Vec<u64> {
    let mut v: Vec<u64> = l
        .producers(topic)
        .iter()
        .map(|p| p["tcp_port"].as_u64().expect("tcp_port"))
        .collect();
    v.sort();
    v
}

fn node_ports(l: &Nsqlookupd) -> Vec<u64> {
    let mut v: Vec<u64> = l
        .nodes()
        .iter()
        .map(|p| p["tcp_port"].as_u64().expect("tcp_port"))
        .collect();
    v.sort();
    v
}

#[test]
fn ping_identify_register_and_unregister_are_answered_with_exact_bytes() {
    let l = Nsqlookupd::start(&[]);
    assert_eq!(
        l.lookup("t"),
        None,
        "404 TOPIC_NOT_FOUND before any REGISTER"
    );
    let mut c = l.connect();

    // PING needs no IDENTIFY.
    c.write(b"PING\n");
    c.expect_bytes(b"\x00\x00\x00\x02OK");

    let body = br#"{"broadcast_address":"10.0.0.1","hostname":"producer.example","tcp_port":4150,"http_port":4151,"version":"1.3.0","unknown_field":[1]}"#;
    let mut req = b"IDENTIFY\n".to_vec();
    req.extend_from_slice(&(body.len() as u32).to_be_bytes());
    req.extend_from_slice(body);
    c.write(&req);
    // Go marshals a map: keys sorted; the lookupd's real ports, its
    // --broadcast-address, the OS hostname, version.Binary.
    let want = format!(
        r#"{{"broadcast_address":"127.0.0.1","hostname":"{}","http_port":{},"tcp_port":{},"version":"1.3.0"}}"#,
        os_hostname(),
        l.http_addr().port(),
        l.tcp_addr().port()
    );
    c.expect_bytes(&sized(want.as_bytes()));

    c.write(b"REGISTER t\n");
    c.expect_ok();
    c.write(b"REGISTER t c\n");
    c.expect_ok();
    // Parameters past the channel are ignored.
    c.write(b"REGISTER t d extra\n");
    c.expect_ok();
    // Lines are trimmed, so CRLF and surrounding blanks are fine.
    c.write(b"PING\r\n");
    c.expect_ok();
    c.write(b"  REGISTER u  \n");
    c.expect_ok();

    let lookup = l.lookup("t").expect("t registered");
    let mut channels = strings(&lookup["channels"]);
    channels.sort();
    assert_eq!(channels, ["c", "d"]);
    let p = &lookup["producers"][0];
    assert_eq!(lookup["producers"].as_array().unwrap().len(), 1, "{lookup}");
    assert_eq!(p["remote_address"], c.local_addr().to_string(), "{p}");
    assert_eq!(p["hostname"], "producer.example");
    assert_eq!(p["broadcast_address"], "10.0.0.1");
    assert_eq!(p["tcp_port"], 4150);
    assert_eq!(p["http_port"], 4151);
    assert_eq!(p["version"], "1.3.0");
    assert_eq!(producer_ports(&l, "u"), [4150]);
    let node = &l.nodes()[0];
    let mut topics = strings(&node["topics"]);
    topics.sort();
    assert_eq!(topics, ["t", "u"]);
    assert_eq!(node["tombstones"], json!([false, false]));

    // Pipelined commands are answered in order.
    c.write(b"UNREGISTER t c\nPING\nUNREGISTER u\n");
    c.expect_bytes(b"\x00\x00\x00\x02OK\x00\x00\x00\x02OK\x00\x00\x00\x02OK");
    let keys = l.debug_keys();
    assert!(!keys.contains(&"channel:t:c".into()), "{keys:?}");
    assert!(keys.contains(&"channel:t:d".into()), "{keys:?}");
    assert_eq!(l.channels("t"), ["c", "d"], "an unregistered key stays");
    assert_eq!(producer_ports(&l, "u"), Vec::<u64>::new());

    // A topic UNREGISTER also drops this producer's channels of the topic.
    c.write(b"UNREGISTER t\n");
    c.expect_ok();
    let keys = l.debug_keys();
    assert_eq!(keys, ["client::"], "only the IDENTIFY is left");
    assert_eq!(producer_ports(&l, "t"), Vec::<u64>::new());
    // Unregistering what was never registered is fine too.
    c.write(b"UNREGISTER never c\n");
    c.expect_ok();
    c.expect_silence(Duration::from_millis(100));
}

#[test]
fn bad_protocol_magic_is_answered_with_e_bad_protocol_and_closed() {
    let l = Nsqlookupd::start(&[]);
    for magic in [&b"  V2"[..], b"PING"] {
        let mut c = V1Client::connect_without_magic(l.tcp_addr());
        c.write(magic);
        c.expect_bytes(b"\x00\x00\x00\x0eE_BAD_PROTOCOL");
        c.expect_closed();
    }
}

/// Each case: whether the connection IDENTIFIes first, the bytes sent, whether
/// the write side is then closed, and the error text.
struct Case {
    identify: bool,
    send: Vec<u8>,
    eof: bool,
    error: String,
}

fn case(identify: bool, send: &[u8], error: impl Into<String>) -> Case {
    Case {
        identify,
        send: send.to_vec(),
        eof: false,
        error: error.into(),
    }
}

fn identify_with(body: &[u8]) -> Vec<u8> {
    let mut v = b"IDENTIFY\n".to_vec();
    v.extend_from_slice(&sized(body));
    v
}

#[test]
fn every_error_is_sent_size_prefixed_and_closes_the_connection() {
    let l = Nsqlookupd::start(&[]);
    let long = "t".repeat(65);
    let ok_body = peer(1, 2).to_string();
    let cases = vec![
        case(false, b"FOO\n", "E_INVALID invalid command FOO"),
        case(false, b"ping\n", "E_INVALID invalid command ping"),
        case(false, b"\n", "E_INVALID invalid command "),
        case(false, b"REGISTER t\n", "E_INVALID client must IDENTIFY"),
        case(false, b"REGISTER\n", "E_INVALID client must IDENTIFY"),
        case(false, b"UNREGISTER t c\n", "E_INVALID client must IDENTIFY"),
        case(true, b"FOO t\n", "E_INVALID invalid command FOO"),
        case(
            true,
            b"REGISTER\n",
            "E_INVALID REGISTER insufficient number of params",
        ),
        case(
            true,
            b"UNREGISTER\n",
            "E_INVALID UNREGISTER insufficient number of params",
        ),
        case(
            true,
            b"REGISTER bad!topic\n",
            "E_BAD_TOPIC REGISTER topic name 'bad!topic' is not valid",
        ),
        case(
            true,
            b"UNREGISTER bad!topic c\n",
            "E_BAD_TOPIC UNREGISTER topic name 'bad!topic' is not valid",
        ),
        case(
            true,
            b"REGISTER  t\n",
            "E_BAD_TOPIC REGISTER topic name '' is not valid",
        ),
        case(
            true,
            format!("REGISTER {long}\n").as_bytes(),
            format!("E_BAD_TOPIC REGISTER topic name '{long}' is not valid"),
        ),
        case(
            true,
            b"REGISTER t bad!channel\n",
            "E_BAD_CHANNEL REGISTER channel name 'bad!channel' is not valid",
        ),
        case(
            true,
            b"UNREGISTER t bad!channel\n",
            "E_BAD_CHANNEL UNREGISTER channel name 'bad!channel' is not valid",
        ),
        case(
            true,
            &identify_with(ok_body.as_bytes()),
            "E_INVALID cannot IDENTIFY again",
        ),
        case(
            false,
            &identify_with(b"not json"),
            "E_BAD_BODY IDENTIFY failed to decode JSON body",
        ),
        case(
            false,
            &identify_with(b"[]"),
            "E_BAD_BODY IDENTIFY failed to decode JSON body",
        ),
        case(
            false,
            &identify_with(
                br#"{"broadcast_address":"a","tcp_port":"1","http_port":2,"version":"1"}"#,
            ),
            "E_BAD_BODY IDENTIFY failed to decode JSON body",
        ),
        case(
            false,
            &identify_with(br#"{"broadcast_address":"a","tcp_port":1,"http_port":2}"#),
            "E_BAD_BODY IDENTIFY missing fields",
        ),
        case(
            false,
            &identify_with(
                br#"{"broadcast_address":"a","tcp_port":0,"http_port":2,"version":"1"}"#,
            ),
            "E_BAD_BODY IDENTIFY missing fields",
        ),
        case(
            false,
            &identify_with(b"{}"),
            "E_BAD_BODY IDENTIFY missing fields",
        ),
        // JSON null decodes into nothing, leaving every field empty.
        case(
            false,
            &identify_with(b"null"),
            "E_BAD_BODY IDENTIFY missing fields",
        ),
        Case {
            identify: false,
            send: b"IDENTIFY\n\x00\x00".to_vec(),
            eof: true,
            error: "E_BAD_BODY IDENTIFY failed to read body size".into(),
        },
        Case {
            identify: false,
            send: b"IDENTIFY\n\x00\x00\x00\x10{}".to_vec(),
            eof: true,
            error: "E_BAD_BODY IDENTIFY failed to read body".into(),
        },
    ];
    for case in &cases {
        // Shown with the failure, if there is one.
        eprintln!("case: {:?}", String::from_utf8_lossy(&case.send));
        let error = &case.error;
        let mut c = if case.identify {
            identified(&l, 1, 2)
        } else {
            l.connect()
        };
        c.write(&case.send);
        if case.eof {
            c.shutdown_write();
        }
        c.expect_bytes(&sized(error.as_bytes()));
        c.expect_closed();
        // Nothing of a failed connection stays registered.
        wait_until(
            Duration::from_secs(2),
            "the failed client's registrations gone",
            || same(l.debug_keys(), vec![]),
        );
    }
}

#[test]
fn a_line_cut_off_by_eof_is_never_executed() {
    let l = Nsqlookupd::start(&[]);
    let mut c = l.connect();
    c.write(b"PING");
    c.shutdown_write();
    c.expect_closed();
}

#[test]
fn a_failing_client_never_touches_another_producers_registrations() {
    let l = Nsqlookupd::start(&[]);
    let mut good = identified(&l, 1001, 2001);
    good.write(b"REGISTER t c\nREGISTER u\n");
    good.expect_ok();
    good.expect_ok();
    let mut bad = identified(&l, 1002, 2002);
    bad.write(b"REGISTER t c\n");
    bad.expect_ok();
    assert_eq!(producer_ports(&l, "t"), [1001, 1002]);
    assert_eq!(node_ports(&l), [1001, 1002]);

    // The second producer misbehaves and is cut off; a stranger sends junk.
    bad.write(b"REGISTER bad!topic\n");
    bad.expect_response(b"E_BAD_TOPIC REGISTER topic name 'bad!topic' is not valid");
    bad.expect_closed();
    let mut stranger = l.connect();
    stranger.write(b"\x00\x01\x02garbage\n");
    stranger.expect_response(b"E_INVALID invalid command \x00\x01\x02garbage");
    stranger.expect_closed();

    wait_until(
        Duration::from_secs(2),
        "only the good producer left",
        || {
            same(producer_ports(&l, "t"), vec![1001])?;
            same(node_ports(&l), vec![1001])
        },
    );
    assert_eq!(producer_ports(&l, "u"), [1001]);
    assert_eq!(l.channels("t"), ["c"]);
    assert!(l.debug_keys().contains(&"channel:t:c".into()));
    good.write(b"PING\n");
    good.expect_ok();

    // Closing the good connection removes its registrations too.
    drop(good);
    wait_until(Duration::from_secs(2), "no producers left", || {
        same(node_ports(&l), vec![])?;
        same(producer_ports(&l, "t"), vec![])
    });
    assert_eq!(l.topics(), ["t", "u"], "topic keys outlive their producers");
}

#[test]
fn ephemeral_channel_is_forgotten_with_its_last_producer() {
    let l = Nsqlookupd::start(&[]);
    let mut a = identified(&l, 1001, 2001);
    let mut b = identified(&l, 1002, 2002);
    for c in [&mut a, &mut b] {
        c.write(b"REGISTER t e#ephemeral\nREGISTER t durable\n");
        c.expect_ok();
        c.expect_ok();
    }
    assert_eq!(l.channels("t"), ["durable", "e#ephemeral"]);
    a.write(b"UNREGISTER t e#ephemeral\nUNREGISTER t durable\n");
    a.expect_ok();
    a.expect_ok();
    assert_eq!(
        l.channels("t"),
        ["durable", "e#ephemeral"],
        "b still has both"
    );
    b.write(b"UNREGISTER t e#ephemeral\nUNREGISTER t durable\n");
    b.expect_ok();
    b.expect_ok();
    assert_eq!(l.channels("t"), ["durable"]);
}

#[test]
fn producer_silent_past_the_inactivity_timeout_is_hidden_until_it_pings() {
    let timeout = Duration::from_secs(1);
    let l = Nsqlookupd::start(&["--inactive-producer-timeout=1s"]);
    let mut c = l.connect();
    let identified_at = Instant::now();
    c.identify(&peer(1001, 2001));
    c.write(b"REGISTER t\n");
    c.expect_ok();
    assert_eq!(producer_ports(&l, "t"), [1001]);

    wait_until(Duration::from_secs(3), "the silent producer hidden", || {
        same(producer_ports(&l, "t"), vec![])?;
        same(node_ports(&l), vec![])
    });
    assert!(identified_at.elapsed() >= timeout);
    // REGISTER is no sign of life; only IDENTIFY and PING are.
    c.write(b"REGISTER u\n");
    c.expect_ok();
    assert_eq!(producer_ports(&l, "u"), Vec::<u64>::new());

    c.write(b"PING\n");
    c.expect_ok();
    assert_eq!(producer_ports(&l, "t"), [1001]);
    assert_eq!(producer_ports(&l, "u"), [1001]);
    assert_eq!(node_ports(&l), [1001]);
}
