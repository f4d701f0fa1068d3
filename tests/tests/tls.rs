//! TLS on protocol V2 and HTTPS, with real processes and rustls clients: the
//! upgrade after IDENTIFY byte for byte, `--tls-required`, client certificate
//! policies, what `/stats` reports, key file forms, start-up refusals, minimum
//! versions, broken handshakes.
//! Real clients over TLS are in `tokio_nsq_features.rs` and `pynsq_features.rs`.

use nsq_tests::certs::{ClientIdentity, KeyForm, Pki};
use nsq_tests::inspect::stats_channel;
use nsq_tests::nsqd::new_data_dir;
use nsq_tests::v2::{describe, NoFrame, FRAME_TIMEOUT};
use nsq_tests::{http, wait_until, Frame, Nsqd, V2Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ClientConnection, StreamOwned, SupportedCipherSuite};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `OK` response frame: size 6, frame type 0, "OK".
const OK_FRAME: &[u8] = b"\x00\x00\x00\x06\x00\x00\x00\x00OK";

fn start(pki: &Pki, extra: &[&str]) -> Nsqd {
    let mut args = pki.nsqd_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    Nsqd::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn identify_tls(c: &mut V2Client, client_id: &str) -> Value {
    c.identify_features(&json!({
        "feature_negotiation": true,
        "tls_v1": true,
        "client_id": client_id,
    }))
}

/// IDENTIFY with `tls_v1`, the handshake, then the broker's `OK`; `Err` says
/// where it failed.
fn try_tls(nsqd: &Nsqd, config: Arc<ClientConfig>, client_id: &str) -> Result<V2Client, String> {
    let mut c = nsqd.connect();
    let resp = identify_tls(&mut c, client_id);
    assert_eq!(resp["tls_v1"], true, "IDENTIFY answer: {resp}");
    c.upgrade_tls(config)
        .map_err(|e| format!("handshake: {e}"))?;
    // In TLS 1.3 a refused client certificate shows only on the first read.
    match c.next_frame_within(FRAME_TIMEOUT) {
        Ok(Frame::Response(b)) if b == b"OK" => Ok(c),
        Ok(f) => Err(format!("after the handshake: {}", describe(&f))),
        Err(e) => Err(format!(
            "after the handshake: {e:?} ({})",
            c.close_reason().unwrap_or("EOF")
        )),
    }
}

fn tls(nsqd: &Nsqd, config: Arc<ClientConfig>) -> V2Client {
    try_tls(nsqd, config, "tls-client").unwrap_or_else(|e| panic!("TLS upgrade failed: {e}"))
}

/// A client trusting the test CA that speaks only `version` and `suite`.
fn pinned_client(
    pki: &Pki,
    identity: Option<&ClientIdentity>,
    version: &'static rustls::SupportedProtocolVersion,
    suite: SupportedCipherSuite,
) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![suite];
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some(id) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

fn tls12_only(pki: &Pki) -> Arc<ClientConfig> {
    pinned_client(
        pki,
        None,
        &rustls::version::TLS12,
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    )
}

/// One HTTPS request to the broker's `--https-address`.
fn https(nsqd: &Nsqd, pki: &Pki, method: &str, path: &str, body: &[u8]) -> http::Response {
    https_as(nsqd, pki, None, method, path, body)
}

/// [`https`] showing the client certificate `identity`.
fn https_as(
    nsqd: &Nsqd,
    pki: &Pki,
    identity: Option<&ClientIdentity>,
    method: &str,
    path: &str,
    body: &[u8],
) -> http::Response {
    let addr = nsqd.https_addr();
    let tcp = http::connect(addr).expect("connect to HTTPS");
    let conn = ClientConnection::new(pki.rustls_client(identity), nsq_tests::certs::server_name())
        .expect("client connection");
    http::request_on(StreamOwned::new(conn, tcp), addr, method, path, body)
        .unwrap_or_else(|e| panic!("HTTPS {method} {path}: {e}"))
}

/// The `/stats` entry of the channel client that identified as `client_id`.
fn channel_client(stats: &Value, topic: &str, channel: &str, client_id: &str) -> Value {
    let ch = stats_channel(stats, topic, channel)
        .unwrap_or_else(|| panic!("no channel {topic}/{channel} in {stats}"));
    ch["clients"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["client_id"] == client_id))
        .unwrap_or_else(|| panic!("no client {client_id} in {ch}"))
        .clone()
}

/// A plain client publishes and consumes on `nsqd`: it is unaffected.
fn others_carry_on(nsqd: &Nsqd, topic: &str) {
    let mut sub = nsqd.connect();
    sub.subscribe(topic, "c");
    sub.rdy(1);
    nsqd.connect().publish(topic, b"still served");
    let m = sub.next_message();
    assert_eq!(m.body, b"still served");
    sub.fin(&m.id);
}

#[test]
fn tls_upgrade_answers_identify_in_plaintext_then_ok_over_tls_byte_for_byte() {
    let pki = Pki::new();
    let nsqd = start(&pki, &[]);
    let mut c = nsqd.connect();
    let resp = identify_tls(&mut c, "raw");
    assert_eq!(
        (
            &resp["tls_v1"],
            &resp["auth_required"],
            &resp["snappy"],
            &resp["deflate"]
        ),
        (&json!(true), &json!(false), &json!(false), &json!(false)),
        "IDENTIFY answer: {resp}"
    );
    c.upgrade_tls(pki.rustls_client(None)).expect("handshake");
    assert_eq!(c.peek_raw(|b| b.len() >= OK_FRAME.len()), OK_FRAME);
    c.expect_ok();

    // The upgraded connection publishes; another consumes, all over TLS.
    let mut sub = tls(&nsqd, pki.rustls_client(None));
    sub.subscribe("t", "c");
    sub.rdy(1);
    // A read that times out inside TLS leaves the stream usable.
    sub.expect_silence(Duration::from_millis(200));
    c.publish("t", b"secret");
    c.mpublish("t", &[b"two", b"three"]);
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = sub.next_message();
        got.push(m.body_str().to_owned());
        sub.fin(&m.id);
        sub.rdy(1);
    }
    assert_eq!(got, ["secret", "two", "three"]);
    wait_until(Duration::from_secs(5), "the FINs applied", || {
        let stats = nsqd.stats();
        let ch = stats_channel(&stats, "t", "c").cloned().unwrap_or_default();
        nsq_tests::same(
            (&ch["message_count"], &ch["in_flight_count"], &ch["depth"]),
            (&json!(3), &json!(0), &json!(0)),
        )
    });
}

#[test]
fn tls_v1_is_answered_false_without_a_certificate_and_the_stream_stays_plain() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    let resp = identify_tls(&mut c, "plain");
    assert_eq!(resp["tls_v1"], false, "IDENTIFY answer: {resp}");
    c.command_with_body("PUB t", b"x");
    assert_eq!(c.peek_raw(|b| b.len() >= OK_FRAME.len()), OK_FRAME);
}

#[test]
fn tls_required_refuses_every_command_but_identify_until_the_upgrade() {
    let pki = Pki::new();
    let nsqd = start(&pki, &["--tls-required"]);
    // PUB and MPUB without their bodies: the refusal comes from the line alone.
    for line in [
        "NOP", "SUB t c", "PUB t", "MPUB t", "RDY 1", "BOGUS x", "nop",
    ] {
        let mut c = nsqd.connect();
        c.command(line);
        let name = line.split(' ').next().unwrap();
        c.expect_error(&format!(
            "E_INVALID cannot {name} in current state (TLS required)"
        ));
        c.expect_closed();
    }
    // IDENTIFY without tls_v1 is answered, and changes nothing.
    let mut c = nsqd.connect();
    let resp = c.identify_features(&json!({"feature_negotiation": true}));
    assert_eq!(resp["tls_v1"], false, "{resp}");
    c.command_with_body("PUB t", b"x");
    c.expect_error("E_INVALID cannot PUB in current state (TLS required)");
    c.expect_closed();

    let mut p = tls(&nsqd, pki.rustls_client(None));
    let mut sub = tls(&nsqd, pki.rustls_client(None));
    sub.subscribe("t", "c");
    sub.rdy(1);
    sub.command("NOP");
    p.publish("t", b"after the upgrade");
    let m = sub.next_message();
    assert_eq!(m.body, b"after the upgrade");
    sub.fin(&m.id);
}

#[test]
fn tls_required_plain_http_gets_403_naming_the_https_port_while_https_serves() {
    let pki = Pki::new();
    let nsqd = start(&pki, &["--tls-required=true"]);
    let port = nsqd.https_addr().port();
    for (method, path) in [
        ("GET", "/ping"),
        ("POST", "/pub?topic=plain"),
        ("GET", "/stats"),
    ] {
        let r = nsqd.http(method, path, b"refused");
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        assert_eq!(
            r.text(),
            format!(r#"{{"message": "TLS_REQUIRED", "https_port": {port}}}"#)
        );
        assert_eq!(r.header("x-nsq-content-type"), Some("nsq; version=1.0"));
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }

    let r = https(&nsqd, &pki, "GET", "/ping", b"");
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    let r = https(&nsqd, &pki, "POST", "/pub?topic=t", b"over https");
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    let r = https(&nsqd, &pki, "GET", "/stats?format=json", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let stats = r.json();
    let topics: Vec<_> = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["topic_name"].clone(), t["message_count"].clone()))
        .collect();
    // The refused plain /pub created nothing.
    assert_eq!(topics, [(json!("t"), json!(1))]);
}

#[test]
fn tls_required_tcp_https_requires_tls_on_tcp_but_serves_plain_http() {
    let pki = Pki::new();
    let nsqd = start(&pki, &["--tls-required=tcp-https"]);
    let mut c = nsqd.connect();
    c.command("NOP");
    c.expect_error("E_INVALID cannot NOP in current state (TLS required)");
    c.expect_closed();
    let r = nsqd.http("GET", "/ping", b"");
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    let r = https(&nsqd, &pki, "GET", "/ping", b"");
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    tls(&nsqd, pki.rustls_client(None)).publish("t", b"x");
}

#[test]
fn require_verify_implies_tls_required_and_accepts_only_certificates_from_the_ca() {
    let pki = Pki::new();
    let nsqd = start(&pki, &["--tls-client-auth-policy=require-verify"]);
    let mut c = nsqd.connect();
    c.command("NOP");
    c.expect_error("E_INVALID cannot NOP in current state (TLS required)");
    c.expect_closed();
    let r = nsqd.http("GET", "/ping", b"");
    assert_eq!(r.status, 403, "{}", r.text());

    let alice = pki.client("alice");
    let mallory = pki.untrusted_client("mallory");
    try_tls(&nsqd, pki.rustls_client(Some(&alice)), "alice")
        .unwrap_or_else(|e| panic!("a certificate from the CA was refused: {e}"))
        .publish("t", b"from alice");
    if let Ok(mut c) = try_tls(&nsqd, pki.rustls_client(Some(&mallory)), "mallory") {
        c.publish("t", b"from mallory");
        panic!("a certificate no CA signed was accepted");
    }
    assert!(
        try_tls(&nsqd, pki.rustls_client(None), "anon").is_err(),
        "a client without a certificate was accepted"
    );
    others_carry_on_tls(&nsqd, &pki, &alice);
}

/// [`others_carry_on`] for a broker that demands verified certificates.
fn others_carry_on_tls(nsqd: &Nsqd, pki: &Pki, id: &ClientIdentity) {
    let mut sub = tls(nsqd, pki.rustls_client(Some(id)));
    sub.subscribe("after", "c");
    sub.rdy(1);
    tls(nsqd, pki.rustls_client(Some(id))).publish("after", b"still served");
    assert_eq!(sub.next_message().body, b"still served");
}

#[test]
fn require_policy_accepts_any_client_certificate_but_not_none() {
    let pki = Pki::new();
    let nsqd = start(&pki, &["--tls-client-auth-policy=require"]);
    let other_ca = Pki::new();
    for id in [
        pki.client("alice"),
        pki.untrusted_client("self-signed"),
        other_ca.client("stranger"),
    ] {
        try_tls(&nsqd, pki.rustls_client(Some(&id)), "with-cert")
            .unwrap_or_else(|e| panic!("a client certificate was refused: {e}"))
            .publish("t", b"x");
    }
    let err = match try_tls(&nsqd, pki.rustls_client(None), "anon") {
        Ok(_) => panic!("a client without a certificate was accepted"),
        Err(e) => e,
    };
    assert!(err.contains("alert"), "refused with a TLS alert: {err}");
}

#[test]
fn stats_report_tls_version_cipher_suite_and_the_client_certificate() {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    };
    let pki = Pki::new();
    let alice = pki.client("alice");
    let verified = start(&pki, &["--tls-client-auth-policy=require-verify"]);
    let config = pinned_client(
        &pki,
        Some(&alice),
        &rustls::version::TLS13,
        TLS13_AES_128_GCM_SHA256,
    );
    let mut c = try_tls(&verified, config, "alice").unwrap();
    c.subscribe("t", "c");
    // Plain HTTP is refused here; HTTPS wants a verified certificate too.
    let r = https_as(
        &verified,
        &pki,
        Some(&alice),
        "GET",
        "/stats?format=json",
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let a = channel_client(&r.json(), "t", "c", "alice");
    assert_eq!(
        (
            &a["tls"],
            &a["tls_version"],
            &a["tls_cipher_suite"],
            &a["tls_negotiated_protocol"],
            &a["tls_negotiated_protocol_is_mutual"],
            &a["snappy"],
            &a["deflate"],
        ),
        (
            &json!(true),
            &json!("TLS1.3"),
            &json!("TLS_AES_128_GCM_SHA256"),
            &json!(""),
            &json!(true),
            &json!(false),
            &json!(false),
        ),
        "{a}"
    );
    let subject = a["tls_client_cert_subject"].as_str().unwrap_or_default();
    let issuer = a["tls_client_cert_issuer"].as_str().unwrap_or_default();
    assert!(subject.contains("CN=alice"), "subject {subject:?}");
    assert!(issuer.contains("CN=nsq test CA"), "issuer {issuer:?}");
    let serial = a["tls_client_cert_serial"].as_str().unwrap_or_default();
    assert_eq!(
        serial.trim_start_matches('0'),
        cert_serial_hex(&alice.cert_pem).trim_start_matches('0'),
        "serial in hex"
    );

    // TLS 1.2 without a certificate, and a plain client, on a broker without a policy.
    let nsqd = start(&pki, &[]);
    let config = pinned_client(
        &pki,
        None,
        &rustls::version::TLS12,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    );
    let mut c12 = try_tls(&nsqd, config, "tls12").unwrap();
    c12.subscribe("t", "c");
    let mut plain = nsqd.connect();
    plain.identify_features(&json!({"feature_negotiation": true, "client_id": "plain"}));
    plain.subscribe("t", "c");
    let stats = nsqd.stats();
    let b = channel_client(&stats, "t", "c", "tls12");
    assert_eq!(
        (&b["tls"], &b["tls_version"], &b["tls_cipher_suite"]),
        (
            &json!(true),
            &json!("TLS1.2"),
            &json!("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")
        ),
        "{b}"
    );
    let p = channel_client(&stats, "t", "c", "plain");
    assert_eq!(
        (&p["tls"], &p["tls_version"], &p["tls_cipher_suite"]),
        (&json!(false), &json!(""), &json!("")),
        "{p}"
    );
    for client in [&b, &p] {
        let keys: BTreeSet<_> = client
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("tls_client_cert"))
            .collect();
        assert!(keys.is_empty(), "no certificate, yet {keys:?} in {client}");
    }
}

/// The serial number of a PEM certificate, in upper-case hex: the INTEGER
/// after the optional version in the TBSCertificate.
fn cert_serial_hex(cert_pem: &str) -> String {
    let der = pem::parse(cert_pem).unwrap().into_contents();
    // (header length, content length) of the element at `at`.
    let element = |at: usize| -> (usize, usize) {
        let first = der[at + 1] as usize;
        if first < 0x80 {
            return (2, first);
        }
        let n = first & 0x7f;
        let len = der[at + 2..at + 2 + n]
            .iter()
            .fold(0, |acc, &b| acc << 8 | b as usize);
        (2 + n, len)
    };
    let at = element(0).0; // into Certificate
    let mut at = at + element(at).0; // into TBSCertificate
    if der[at] == 0xa0 {
        let (h, l) = element(at);
        at += h + l;
    }
    assert_eq!(der[at], 0x02, "serial INTEGER");
    let (h, l) = element(at);
    der[at + h..at + h + l]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn serves_tls_with_key(form: KeyForm) {
    let pki = Pki::with_key(form);
    let nsqd = start(&pki, &[]);
    tls(&nsqd, pki.rustls_client(None)).publish("t", b"x");
    let r = https(&nsqd, &pki, "GET", "/ping", b"");
    assert_eq!((r.status, r.text().as_str()), (200, "OK"), "{form:?}");
}

#[test]
fn serves_tls_with_a_pkcs8_ec_key() {
    serves_tls_with_key(KeyForm::Pkcs8Ec);
}

#[test]
fn serves_tls_with_a_sec1_ec_key() {
    serves_tls_with_key(KeyForm::Sec1Ec);
}

#[test]
fn serves_tls_with_a_pkcs1_rsa_key() {
    serves_tls_with_key(KeyForm::Pkcs1Rsa);
}

/// Starting with `args` fails: a non-zero exit and a FATAL line containing `want`.
fn refuses_to_start(args: &[String], want: &str) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let failure = match Nsqd::try_start_in(Arc::new(new_data_dir()), &args) {
        Ok(n) => panic!("nsqd started with {args:?} (tcp {})", n.tcp_addr()),
        Err(f) => f,
    };
    let status = failure.status.expect("nsqd exited on its own");
    assert!(!status.success(), "exit status {status} for {args:?}");
    assert!(
        failure
            .stderr
            .iter()
            .any(|l| l.contains("FATAL") && l.contains(want)),
        "no FATAL line with {want:?} for {args:?}: {:#?}",
        failure.stderr
    );
}

#[test]
fn missing_or_garbage_key_or_certificate_files_stop_start_up() {
    let pki = Pki::new();
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN NONSENSE-----\nnot base64 at all\n").unwrap();
    let missing = pki.path("missing.pem");
    let flags = |cert: &std::path::Path, key: &std::path::Path| {
        vec![
            format!("--tls-cert={}", cert.display()),
            format!("--tls-key={}", key.display()),
        ]
    };
    for args in [
        flags(&pki.cert, &missing),
        flags(&pki.cert, &garbage),
        flags(&missing, &pki.key),
        flags(&garbage, &pki.key),
        // A certificate where the key should be.
        flags(&pki.cert, &pki.cert),
    ] {
        refuses_to_start(&args, "failed to build TLS config -");
    }
}

#[test]
fn tls_required_without_a_certificate_and_key_stops_start_up() {
    refuses_to_start(
        &["--tls-required".to_owned()],
        "cannot require TLS client connections without TLS key and cert",
    );
}

#[test]
fn tls_min_version_1_3_refuses_a_tls_1_2_client() {
    let pki = Pki::new();
    let nsqd = start(&pki, &["--tls-min-version=tls1.3"]);
    let err = match try_tls(&nsqd, tls12_only(&pki), "old") {
        Ok(_) => panic!("a TLS 1.2 client was accepted with --tls-min-version=tls1.3"),
        Err(e) => e,
    };
    assert!(err.starts_with("handshake:"), "{err}");
    tls(&nsqd, pki.rustls_client(None)).publish("t", b"1.3 still works");
    assert!(
        !nsqd
            .stderr_lines()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("--tls-min-version")),
        "no minimum-version warning with tls1.3: {:#?}",
        nsqd.stderr_lines()
    );
}

#[test]
fn default_min_version_accepts_tls_1_2_and_1_3_and_warns_that_1_0_is_not_spoken() {
    let pki = Pki::new();
    let nsqd = start(&pki, &[]);
    let mut c12 = try_tls(&nsqd, tls12_only(&pki), "v12").unwrap();
    let v13 = pinned_client(
        &pki,
        None,
        &rustls::version::TLS13,
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    );
    let mut c13 = try_tls(&nsqd, v13, "v13").unwrap();
    c12.publish("t", b"1.2");
    c13.publish("t", b"1.3");
    let warnings: Vec<_> = nsqd
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("WARNING") && l.contains("TLS 1.2"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:#?}", nsqd.stderr_lines());
}

#[test]
fn garbage_instead_of_a_handshake_gets_identify_failed_and_closes_only_that_client() {
    let pki = Pki::new();
    let nsqd = start(&pki, &[]);
    let mut c = nsqd.connect();
    identify_tls(&mut c, "garbage");
    c.write_raw(b"this is not a TLS ClientHello\n");
    let mut rest = &c.read_until_closed()[..];
    // rustls may first send an alert record (content type 21).
    if rest.first() == Some(&21) && rest.len() >= 5 {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        rest = &rest[5 + len..];
    }
    let (frame_type, data, used) = nsq_common::wire::split_frame(rest)
        .unwrap_or_else(|e| panic!("not a frame ({e}): {rest:?}"))
        .unwrap_or_else(|| panic!("no whole frame: {rest:?}"));
    let text = String::from_utf8_lossy(data);
    assert_eq!(frame_type, nsq_common::wire::FRAME_TYPE_ERROR, "{text}");
    assert!(
        text.starts_with("E_IDENTIFY_FAILED IDENTIFY failed"),
        "{text}"
    );
    assert_eq!(used, rest.len(), "nothing after the error frame");
    others_carry_on(&nsqd, "t");
    tls(&nsqd, pki.rustls_client(None)).publish("t", b"x");
}

#[test]
fn a_client_that_never_handshakes_is_dropped_after_5s_while_others_carry_on() {
    let pki = Pki::new();
    let nsqd = start(&pki, &[]);
    let mut idle = nsqd.connect();
    identify_tls(&mut idle, "idle");
    let since = Instant::now();
    // Meanwhile the broker serves everyone else.
    others_carry_on(&nsqd, "t");
    let mut sub = tls(&nsqd, pki.rustls_client(None));
    sub.subscribe("t2", "c");
    sub.rdy(1);
    tls(&nsqd, pki.rustls_client(None)).publish("t2", b"during the wait");
    assert_eq!(sub.next_message().body, b"during the wait");

    let dropped = wait_until(Duration::from_secs(10), "the idle client dropped", || {
        match idle.next_frame_within(Duration::from_millis(200)) {
            Err(NoFrame::Closed) => Ok(since.elapsed()),
            // What is said on the way out is another test's concern.
            Ok(f) => Err(describe(&f)),
            Err(NoFrame::Timeout) => Err("still open".into()),
        }
    });
    assert!(
        (Duration::from_millis(4500)..Duration::from_secs(8)).contains(&dropped),
        "dropped after {dropped:?}, want about 5 s"
    );
    others_carry_on(&nsqd, "t3");
}

#[test]
fn a_client_that_never_handshakes_is_told_identify_failed_before_the_close() {
    let pki = Pki::new();
    let nsqd = start(&pki, &[]);
    let mut idle = nsqd.connect();
    identify_tls(&mut idle, "idle");
    // nsqd's handshake deadline passes and its fatal error goes out on the
    // plain socket ("IDENTIFY failed read tcp ...: i/o timeout").
    match idle.next_frame_within(Duration::from_secs(8)) {
        Ok(Frame::Error(e)) if e.starts_with(b"E_IDENTIFY_FAILED IDENTIFY failed") => {}
        Ok(f) => panic!("expected E_IDENTIFY_FAILED, got {}", describe(&f)),
        Err(e) => panic!("expected E_IDENTIFY_FAILED, got {e:?}"),
    }
    idle.expect_closed();
}
