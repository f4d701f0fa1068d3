//! The `--statsd-*` push loop, received on a real UDP socket: nsqd's keys and
//! prefix, counters as increases, gauges as values, datagrams within
//! `--statsd-udp-packet-size`, ephemeral queues left out on request.

use nsq_tests::Nsqd;
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// Every datagram received until `until` returns true for what has arrived
/// so far, or `timeout`.
fn receive(sock: &UdpSocket, timeout: Duration, until: impl Fn(&[String]) -> bool) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline && !until(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8(buf[..n].to_vec()).expect("UTF-8 datagram"));
        }
    }
    got
}

/// One push's lines as `key → (value, kind)`; pushes end with `mem.gc_runs`.
fn pushes(datagrams: &[String], prefix: &str) -> Vec<BTreeMap<String, (i64, char)>> {
    let mut out = Vec::new();
    let mut cur = BTreeMap::new();
    for line in datagrams.iter().flat_map(|d| d.lines()) {
        let rest = line
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line:?} lacks the prefix {prefix:?}"));
        let (key, value) = rest.rsplit_once(':').expect("key:value");
        let (n, kind) = value.split_once('|').expect("value|kind");
        let kind = match kind {
            "c" => 'c',
            "g" => 'g',
            other => panic!("kind {other:?} in {line:?}"),
        };
        let end = key == "mem.gc_runs";
        cur.insert(key.to_owned(), (n.parse().expect("integer value"), kind));
        if end {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

#[test]
fn statsd_pushes_nsqd_keys_with_counter_increases_in_bounded_datagrams() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let statsd = sock.local_addr().unwrap().to_string();
    let nsqd = Nsqd::start(&[
        "--broadcast-address=127.0.0.1",
        &format!("--statsd-address={statsd}"),
        "--statsd-interval=300ms",
        "--statsd-udp-packet-size=200",
        "--statsd-exclude-ephemeral",
        "--e2e-processing-latency-percentile=0.99",
    ]);
    let prefix = format!("nsq.127_0_0_1_{}.", nsqd.http_addr().port());

    let mut c = nsqd.connect();
    c.subscribe("t", "c");
    let mut eph = nsqd.connect();
    eph.subscribe("t", "e#ephemeral");
    let mut p = nsqd.connect();
    for body in [b"12345".as_slice(), b"1234567890", b"x"] {
        p.publish("t", body);
    }
    c.rdy(3);
    for _ in 0..3 {
        let m = c.next_message();
        c.fin(&m.id);
    }
    // Wait for the counts to be pushed, then for one more quiet push.
    let total = |pushes: &[BTreeMap<String, (i64, char)>], key: &str| -> i64 {
        pushes.iter().filter_map(|p| p.get(key)).map(|v| v.0).sum()
    };
    let done = |got: &[String]| {
        let ps = pushes(got, &prefix);
        total(&ps, "topic.t.channel.c.message_count") == 3
            && ps
                .last()
                .is_some_and(|p| p.get("topic.t.channel.c.in_flight_count") == Some(&(0, 'g')))
    };
    let datagrams = receive(&sock, Duration::from_secs(10), done);
    assert!(
        done(&datagrams),
        "pushes never showed the traffic: {datagrams:#?}"
    );
    let more = receive(&sock, Duration::from_secs(5), |got| {
        !pushes(got, &prefix).is_empty()
    });
    let all: Vec<String> = datagrams.iter().chain(&more).cloned().collect();

    for d in &all {
        assert!(d.len() <= 200, "datagram of {} bytes: {d:?}", d.len());
        assert!(d.ends_with('\n'), "datagram cut mid-line: {d:?}");
        assert!(!d.contains("ephemeral"), "ephemeral channel pushed: {d:?}");
    }
    assert!(all.len() > 1, "one push needs several 200-byte datagrams");
    let ps = pushes(&all, &prefix);
    assert_eq!(total(&ps, "topic.t.message_count"), 3);
    assert_eq!(total(&ps, "topic.t.message_bytes"), 16);
    assert_eq!(total(&ps, "topic.t.channel.c.message_count"), 3);
    assert_eq!(total(&ps, "topic.t.channel.c.requeue_count"), 0);

    let last = ps.last().unwrap();
    let want: &[(&str, (i64, char))] = &[
        ("topic.t.message_count", (0, 'c')),
        ("topic.t.message_bytes", (0, 'c')),
        ("topic.t.depth", (0, 'g')),
        ("topic.t.backend_depth", (0, 'g')),
        ("topic.t.channel.c.message_count", (0, 'c')),
        ("topic.t.channel.c.depth", (0, 'g')),
        ("topic.t.channel.c.backend_depth", (0, 'g')),
        ("topic.t.channel.c.in_flight_count", (0, 'g')),
        ("topic.t.channel.c.deferred_count", (0, 'g')),
        ("topic.t.channel.c.requeue_count", (0, 'c')),
        ("topic.t.channel.c.timeout_count", (0, 'c')),
        ("topic.t.channel.c.clients", (1, 'g')),
        ("mem.heap_objects", (0, 'g')),
        ("mem.gc_pause_usec_99", (0, 'g')),
        ("mem.gc_runs", (0, 'c')),
    ];
    for (key, v) in want {
        assert_eq!(last.get(*key), Some(v), "{key} in {last:#?}");
    }
    let (latency, kind) = last["topic.t.channel.c.e2e_processing_latency_99"];
    assert!(kind == 'g' && latency > 0, "{latency}|{kind}");
    assert_eq!(last["topic.t.e2e_processing_latency_99"], (latency, 'g'));
    assert!(last["mem.heap_in_use_bytes"].0 > 1_000_000);
    let keys: Vec<&String> = last.keys().collect();
    assert_eq!(
        keys.len(),
        want.len() + 8,
        "unexpected keys in a push: {keys:#?}"
    );
}

#[test]
fn statsd_without_a_listener_keeps_the_broker_running() {
    // Nothing listens on the port: sends fail quietly, as in nsqd.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nsqd = Nsqd::start(&[
        &format!("--statsd-address=127.0.0.1:{port}"),
        "--statsd-interval=100ms",
    ]);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(nsqd.http("GET", "/ping", b"").text(), "OK");
    assert!(nsqd
        .stderr_lines()
        .iter()
        .any(|l| l.contains(&format!("STATSD: pushing stats to 127.0.0.1:{port}"))));
}
