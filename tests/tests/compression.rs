//! Snappy and deflate on protocol V2, alone and inside TLS (and TLS alone as
//! the baseline for the round trips), with a raw client:
//! the first compressed bytes byte for byte, IDENTIFY's answers and refusals,
//! exact message round trips (many small bodies, ~1 MB bodies, RDY 100) and
//! what `/stats` says about compressed clients, and garbage in a compressed
//! stream. Real clients over these streams are in `tokio_nsq_features.rs`
//! and `pynsq_features.rs`.

use bytes::BytesMut;
use nsq_common::compress::deflate::DeflateDecoder;
use nsq_common::compress::snappy::SnappyDecoder;
use nsq_tests::certs::Pki;
use nsq_tests::inspect::stats_channel;
use nsq_tests::{Nsqd, V2Client};
use serde_json::{json, Value};
use std::time::Duration;

/// The `OK` response frame: size 6, frame type 0, "OK".
const OK_FRAME: &[u8] = b"\x00\x00\x00\x06\x00\x00\x00\x00OK";
/// Snappy's stream identifier chunk.
const SNAPPY_ID: &[u8] = b"\xff\x06\x00\x00sNaPpY";
/// The empty stored block a deflate sync flush ends with.
const SYNC_FLUSH: &[u8] = b"\x00\x00\xff\xff";

#[derive(Debug, Clone, Copy)]
enum Compression {
    Snappy,
    /// The level asked for in IDENTIFY.
    Deflate(u32),
}

/// IDENTIFY asking for `compression` (and TLS when `pki` is given), then each
/// upgrade with its `OK`, as nsqd orders them: TLS first.
fn connect(nsqd: &Nsqd, pki: Option<&Pki>, compression: Option<Compression>, id: &str) -> V2Client {
    let mut c = nsqd.connect();
    let (snappy, level) = match compression {
        None => (false, None),
        Some(Compression::Snappy) => (true, None),
        Some(Compression::Deflate(l)) => (false, Some(l)),
    };
    let resp = c.identify_features(&json!({
        "feature_negotiation": true,
        "client_id": id,
        "tls_v1": pki.is_some(),
        "snappy": snappy,
        "deflate": level.is_some(),
        "deflate_level": level.unwrap_or(0),
    }));
    assert_eq!(
        (&resp["tls_v1"], &resp["snappy"], &resp["deflate"]),
        (
            &json!(pki.is_some()),
            &json!(snappy),
            &json!(level.is_some())
        ),
        "IDENTIFY answer: {resp}"
    );
    if let Some(pki) = pki {
        c.upgrade_tls(pki.rustls_client(None))
            .unwrap_or_else(|e| panic!("TLS handshake: {e}"));
        c.expect_ok();
    }
    if snappy {
        c.start_snappy();
        c.expect_ok();
    }
    if let Some(l) = level {
        c.start_deflate(l);
        c.expect_ok();
    }
    c
}

fn tls_nsqd(pki: &Pki) -> Nsqd {
    let args = pki.nsqd_args();
    Nsqd::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Snappy's masked CRC-32C of `data`.
fn snappy_checksum(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    (!crc).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The length of the snappy stream identifier plus the first chunk, once
/// `b` holds that chunk's header.
fn first_chunk_end(b: &[u8]) -> Option<usize> {
    (b.len() >= SNAPPY_ID.len() + 4)
        .then(|| SNAPPY_ID.len() + 4 + u32::from_le_bytes([b[11], b[12], b[13], 0]) as usize)
}

/// Checks the start of a snappy stream: the identifier, then one chunk whose
/// checksum and data are those of the `OK` frame, and nothing else.
fn assert_snappy_ok(raw: &[u8]) {
    assert_eq!(
        &raw[..SNAPPY_ID.len()],
        SNAPPY_ID,
        "stream identifier: {raw:02x?}"
    );
    assert_eq!(
        first_chunk_end(raw),
        Some(raw.len()),
        "one chunk: {raw:02x?}"
    );
    let (kind, body) = (raw[10], &raw[14..]);
    assert!(kind == 0x00 || kind == 0x01, "chunk type {kind:#04x}");
    if kind == 0x01 {
        assert_eq!(&body[4..], OK_FRAME, "uncompressed chunk data");
    }
    let mut out = BytesMut::new();
    SnappyDecoder::default()
        .decode(&mut BytesMut::from(raw), &mut out)
        .expect("a valid snappy stream");
    assert_eq!(&out[..], OK_FRAME);
    let crc = u32::from_le_bytes(body[..4].try_into().unwrap());
    assert_eq!(crc, snappy_checksum(OK_FRAME), "masked CRC-32C of the data");
}

/// Checks a raw deflate piece (no zlib header) ending in a sync flush that
/// inflates to exactly the `OK` frame.
fn assert_deflate_ok(raw: &[u8]) {
    assert!(
        raw.ends_with(SYNC_FLUSH),
        "sync flush at the end: {raw:02x?}"
    );
    // A zlib stream would start with CMF 0x78 (deflate, 32 KiB window).
    assert_ne!(raw[0], 0x78, "no zlib header: {raw:02x?}");
    let mut out = BytesMut::new();
    DeflateDecoder::default()
        .decode(&mut BytesMut::from(raw), &mut out)
        .expect("raw deflate");
    assert_eq!(&out[..], OK_FRAME);
}

#[test]
fn snappy_checksum_matches_the_crc32c_check_value() {
    // CRC-32C("123456789") is 0xe3069283; snappy masks it.
    let crc = 0xe306_9283u32;
    assert_eq!(
        snappy_checksum(b"123456789"),
        crc.rotate_right(15).wrapping_add(0xa282_ead8)
    );
}

#[test]
fn snappy_upgrade_sends_the_stream_identifier_then_a_checksummed_chunk_carrying_ok() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    let resp = c.identify_features(&json!({"feature_negotiation": true, "snappy": true}));
    assert_eq!(
        (&resp["snappy"], &resp["deflate"], &resp["tls_v1"]),
        (&json!(true), &json!(false), &json!(false)),
        "{resp}"
    );
    let raw = c.peek_raw(|b| first_chunk_end(b).is_some_and(|end| b.len() >= end));
    assert_snappy_ok(&raw);
    c.start_snappy();
    c.expect_ok();
    c.publish("t", b"compressed command");
}

#[test]
fn deflate_upgrade_sends_raw_deflate_ending_in_a_sync_flush_carrying_ok() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    let resp = c.identify_features(&json!({
        "feature_negotiation": true,
        "deflate": true,
        "deflate_level": 1,
    }));
    assert_eq!(
        (
            &resp["deflate"],
            &resp["deflate_level"],
            &resp["max_deflate_level"],
            &resp["snappy"]
        ),
        (&json!(true), &json!(1), &json!(6), &json!(false)),
        "{resp}"
    );
    let raw = c.peek_raw(|b| b.ends_with(SYNC_FLUSH));
    assert_deflate_ok(&raw);
    c.start_deflate(1);
    c.expect_ok();
    c.publish("t", b"compressed command");
}

#[test]
fn identify_reports_the_deflate_level_defaulting_to_6_and_capped_by_max_deflate_level() {
    for (flags, asked, want, max) in [
        (&[][..], 0, 6, 6),
        (&[], 3, 3, 6),
        (&[], 10, 6, 6),
        (&["--max-deflate-level=9"], 10, 9, 9),
        (&["--max-deflate-level=9"], 0, 6, 9),
        (&["--max-deflate-level=2"], 0, 2, 2),
    ] {
        let nsqd = Nsqd::start(flags);
        let mut c = nsqd.connect();
        let resp = c.identify_features(&json!({
            "feature_negotiation": true,
            "deflate": true,
            "deflate_level": asked,
        }));
        assert_eq!(
            (
                &resp["deflate"],
                &resp["deflate_level"],
                &resp["max_deflate_level"]
            ),
            (&json!(true), &json!(want), &json!(max)),
            "{flags:?} asking {asked}: {resp}"
        );
        c.start_deflate(want);
        c.expect_ok();
        c.publish("t", &[b'z'; 5000]);
    }
}

#[test]
fn snappy_and_deflate_together_are_refused_and_the_connection_closed() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    let ask = json!({"feature_negotiation": true, "snappy": true, "deflate": true});
    c.command_with_body("IDENTIFY", ask.to_string().as_bytes());
    c.expect_error("E_IDENTIFY_FAILED cannot enable both deflate and snappy compression");
    c.expect_closed();
    nsqd.connect().publish("t", b"others unaffected");
}

#[test]
fn disabled_snappy_and_deflate_are_answered_false_and_the_stream_stays_plain() {
    let nsqd = Nsqd::start(&["--snappy=false", "--deflate=false"]);
    for ask in [
        json!({"snappy": true}),
        json!({"deflate": true, "deflate_level": 3}),
        json!({"snappy": true, "deflate": true}),
    ] {
        let mut c = nsqd.connect();
        let mut body = ask.clone();
        body["feature_negotiation"] = json!(true);
        let resp = c.identify_features(&body);
        assert_eq!(
            (&resp["snappy"], &resp["deflate"]),
            (&json!(false), &json!(false)),
            "{ask}: {resp}"
        );
        c.command_with_body("PUB t", b"plain");
        assert_eq!(c.peek_raw(|b| b.len() >= OK_FRAME.len()), OK_FRAME, "{ask}");
    }
}

#[test]
fn tls_then_snappy_sends_ok_over_tls_then_the_snappy_stream_inside_tls() {
    let pki = Pki::new();
    let nsqd = tls_nsqd(&pki);
    let mut c = nsqd.connect();
    let resp = c.identify_features(&json!({
        "feature_negotiation": true,
        "tls_v1": true,
        "snappy": true,
    }));
    assert_eq!(
        (&resp["tls_v1"], &resp["snappy"]),
        (&json!(true), &json!(true)),
        "{resp}"
    );
    c.upgrade_tls(pki.rustls_client(None)).expect("handshake");
    let first = c.peek_raw(|b| b.len() >= OK_FRAME.len());
    assert_eq!(&first[..OK_FRAME.len()], OK_FRAME, "OK over TLS first");
    c.expect_ok();
    let raw = c.peek_raw(|b| first_chunk_end(b).is_some_and(|end| b.len() >= end));
    assert_snappy_ok(&raw);
    c.start_snappy();
    c.expect_ok();
    c.publish("t", b"snappy inside TLS");
}

#[test]
fn tls_then_deflate_sends_ok_over_tls_then_the_deflate_stream_inside_tls() {
    let pki = Pki::new();
    let nsqd = tls_nsqd(&pki);
    let mut c = nsqd.connect();
    let resp = c.identify_features(&json!({
        "feature_negotiation": true,
        "tls_v1": true,
        "deflate": true,
        "deflate_level": 5,
    }));
    assert_eq!(
        (&resp["tls_v1"], &resp["deflate"], &resp["deflate_level"]),
        (&json!(true), &json!(true), &json!(5)),
        "{resp}"
    );
    c.upgrade_tls(pki.rustls_client(None)).expect("handshake");
    let first = c.peek_raw(|b| b.len() >= OK_FRAME.len());
    assert_eq!(&first[..OK_FRAME.len()], OK_FRAME, "OK over TLS first");
    c.expect_ok();
    let raw = c.peek_raw(|b| b.ends_with(SYNC_FLUSH));
    assert_deflate_ok(&raw);
    c.start_deflate(5);
    c.expect_ok();
    c.publish("t", b"deflate inside TLS");
}

/// A deterministic byte stream that does not compress (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// 500 bodies from 1 byte to ~3 KB, every fifth one incompressible, plus
/// two bodies of 1,000,000 bytes (one repetitive, one noise).
fn bodies() -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = (0..500u64)
        .map(|i| {
            let len = 1 + (i as usize * 37) % 3000;
            if i % 5 == 0 {
                noise(len, i + 1)
            } else {
                let mut b = format!("message {i:04} ").into_bytes();
                b.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, len));
                b
            }
        })
        .collect();
    all.push(b"0123456789".repeat(100_000));
    all.push(noise(1_000_000, 42));
    all
}

/// Publishes [`bodies`] over one connection (MPUB of the small ones, PUB of
/// the large), consumes them over another with RDY 100, and checks every
/// body arrives once, in order, byte for byte; while both are connected
/// `/stats` shows their stream flags.
fn round_trip(nsqd: &Nsqd, pki: Option<&Pki>, compression: Option<Compression>) {
    let mut sub = connect(nsqd, pki, compression, "consumer");
    sub.subscribe("t", "c");
    sub.rdy(100);
    // A read that times out mid-stream leaves the decoder usable.
    sub.expect_silence(Duration::from_millis(100));
    let mut publisher = connect(nsqd, pki, compression, "producer");
    let all = bodies();
    let small: Vec<&[u8]> = all[..500].iter().map(Vec::as_slice).collect();
    publisher.mpublish("t", &small);
    for big in &all[500..] {
        publisher.publish("t", big);
    }
    for (i, want) in all.iter().enumerate() {
        let m = sub.next_message();
        assert!(
            m.body == *want,
            "message {i}: {} bytes, want {} bytes{}",
            m.body.len(),
            want.len(),
            if m.body.len() == want.len() {
                " (contents differ)"
            } else {
                ""
            }
        );
        assert_eq!(m.attempts, 1);
        sub.fin(&m.id);
    }

    let stats = nsqd.stats();
    let snappy = matches!(compression, Some(Compression::Snappy));
    let deflate = matches!(compression, Some(Compression::Deflate(_)));
    let want = json!({"snappy": snappy, "deflate": deflate, "tls": pki.is_some()});
    let flags =
        |c: &Value| json!({"snappy": c["snappy"], "deflate": c["deflate"], "tls": c["tls"]});
    let ch = stats_channel(&stats, "t", "c").expect("channel in /stats");
    let consumer = &ch["clients"][0];
    assert_eq!(
        (&consumer["client_id"], flags(consumer)),
        (&json!("consumer"), want.clone()),
        "{consumer}"
    );
    let producer = &stats["producers"][0];
    assert_eq!(
        (&producer["client_id"], flags(producer)),
        (&json!("producer"), want),
        "{producer}"
    );
    // Nothing more was delivered, and every FIN was applied.
    sub.command("NOP");
    publisher.publish("t", b"last");
    assert_eq!(sub.next_message().body, b"last");
}

#[test]
fn messages_round_trip_exactly_over_snappy() {
    round_trip(&Nsqd::start(&[]), None, Some(Compression::Snappy));
}

#[test]
fn messages_round_trip_exactly_over_deflate() {
    round_trip(&Nsqd::start(&[]), None, Some(Compression::Deflate(1)));
}

#[test]
fn messages_round_trip_exactly_over_deflate_level_9() {
    round_trip(
        &Nsqd::start(&["--max-deflate-level=9"]),
        None,
        Some(Compression::Deflate(9)),
    );
}

#[test]
fn messages_round_trip_exactly_over_tls_alone() {
    let pki = Pki::new();
    round_trip(&tls_nsqd(&pki), Some(&pki), None);
}

#[test]
fn messages_round_trip_exactly_over_tls_and_snappy() {
    let pki = Pki::new();
    round_trip(&tls_nsqd(&pki), Some(&pki), Some(Compression::Snappy));
}

#[test]
fn messages_round_trip_exactly_over_tls_and_deflate() {
    let pki = Pki::new();
    round_trip(&tls_nsqd(&pki), Some(&pki), Some(Compression::Deflate(6)));
}

/// Garbage below compression closes that connection without a frame; a
/// client of the same kind keeps working.
fn garbage_closes_only_that_connection(compression: Compression, garbage: &[u8]) {
    let nsqd = Nsqd::start(&[]);
    let mut sub = connect(&nsqd, None, Some(compression), "bystander");
    sub.subscribe("t", "c");
    sub.rdy(1);
    let mut bad = connect(&nsqd, None, Some(compression), "bad");
    bad.write_raw(garbage);
    bad.expect_closed();
    connect(&nsqd, None, Some(compression), "next").publish("t", b"still served");
    assert_eq!(sub.next_message().body, b"still served");
}

#[test]
fn garbage_in_a_snappy_stream_closes_only_that_connection() {
    // A reserved unskippable chunk type.
    garbage_closes_only_that_connection(Compression::Snappy, b"\x02\x05\x00\x00hello");
}

#[test]
fn garbage_in_a_deflate_stream_closes_only_that_connection() {
    // Block type 3 is reserved.
    garbage_closes_only_that_connection(Compression::Deflate(6), &[0xff; 64]);
}
