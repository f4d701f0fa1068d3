//! nsqd's AUTH against auth servers (`--auth-http-address`): what the broker
//! asks the server (GET query or POST JSON, over HTTP or HTTPS), what it
//! answers the client, the checks before SUB and the publishes, TTL renewal,
//! several servers, `/stats`, and real clients (tokio-nsq, pynsq) with
//! secrets. The auth server is the scripted one of `nsq_tests::authd`.

use nsq_tests::authd::{allow_all, authorization, grant, AuthServer, Reply, Request};
use nsq_tests::certs::{server_name, Pki};
use nsq_tests::v2::{describe, NoFrame};
use nsq_tests::{pynsq, wait_until, Frame, Nsqd, V2Client};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_nsq::{
    NSQChannel, NSQConfigShared, NSQConfigSharedTLS, NSQConsumer, NSQConsumerConfig,
    NSQConsumerConfigSources, NSQEvent, NSQProducer, NSQProducerConfig, NSQTopic,
};

/// Keeps failing auth servers quick to give up on.
const FAST_TIMEOUT: &str = "--http-client-request-timeout=500ms";

/// A broker asking `authd`, with `extra` flags.
fn broker(authd: &AuthServer, extra: &[&str]) -> Nsqd {
    let flag = authd.flag();
    let mut args = vec![flag.as_str()];
    args.extend_from_slice(extra);
    Nsqd::start(&args)
}

/// Sends AUTH with `secret`; returns the broker's next frame.
fn auth(c: &mut V2Client, secret: &[u8]) -> Frame {
    c.command_with_body("AUTH", secret);
    c.next_frame()
}

/// AUTH, expecting exactly `want` as the response frame.
#[track_caller]
fn auth_expecting(c: &mut V2Client, secret: &str, want: &str) {
    match auth(c, secret.as_bytes()) {
        Frame::Response(got) if got == want.as_bytes() => {}
        other => panic!(
            "AUTH {secret:?}: expected {want:?}, got {}",
            describe(&other)
        ),
    }
}

/// A new connection that AUTHed with `secret` and was granted something.
#[track_caller]
fn authed(nsqd: &Nsqd, secret: &str) -> V2Client {
    let mut c = nsqd.connect();
    match auth(&mut c, secret.as_bytes()) {
        Frame::Response(b) if b.starts_with(b"{\"identity\":") => c,
        other => panic!(
            "AUTH {secret:?}: expected a grant, got {}",
            describe(&other)
        ),
    }
}

/// A fatal error: exactly this error frame, then the connection closes.
#[track_caller]
fn expect_fatal(c: &mut V2Client, want: &str) {
    c.expect_error(want);
    c.expect_closed();
}

/// As [`expect_fatal`], but the error must come within `within`.
#[track_caller]
fn expect_fatal_within(c: &mut V2Client, want: &str, within: Duration) {
    match c.next_frame_within(within) {
        Ok(Frame::Error(got)) if got == want.as_bytes() => {}
        Ok(other) => panic!("expected error {want:?}, got {}", describe(&other)),
        Err(e) => panic!("expected error {want:?} within {within:?}, got {e:?}"),
    }
    c.expect_closed();
}

/// The broker's `AUTH failed` warnings.
fn auth_warnings(nsqd: &Nsqd) -> Vec<String> {
    nsqd.stderr_lines()
        .into_iter()
        .filter(|l| l.contains(" WARNING: ") && l.contains("AUTH failed"))
        .collect()
}

/// The query the broker sends for a plain client (keys sorted, as Go's
/// `url.Values.Encode`).
fn plain_query(escaped_secret: &str) -> String {
    format!("common_name=&remote_ip=127.0.0.1&secret={escaped_secret}&tls=false")
}

/// Every client entry in `/stats`: channel clients, then producers.
fn stats_clients(nsqd: &Nsqd) -> Vec<Value> {
    let stats = nsqd.stats();
    let mut out = Vec::new();
    for t in stats["topics"].as_array().into_iter().flatten() {
        for ch in t["channels"].as_array().into_iter().flatten() {
            out.extend(ch["clients"].as_array().into_iter().flatten().cloned());
        }
    }
    out.extend(stats["producers"].as_array().into_iter().flatten().cloned());
    out
}

fn topic_message_count(nsqd: &Nsqd, topic: &str) -> Option<u64> {
    nsqd.stats()["topics"]
        .as_array()?
        .iter()
        .find(|t| t["topic_name"] == topic)
        .map(|t| t["message_count"].as_u64().expect("message_count"))
}

// ---- IDENTIFY and a broker without auth ----

#[test]
fn identify_says_auth_required_only_when_an_auth_server_is_configured() {
    let authd = AuthServer::start();
    let with = broker(&authd, &[]);
    let without = Nsqd::start(&[]);
    for (nsqd, want) in [(&with, true), (&without, false)] {
        let mut c = nsqd.connect();
        match c.identify(&json!({"feature_negotiation": true})) {
            Frame::Response(b) => {
                let v: Value = serde_json::from_slice(&b).expect("IDENTIFY JSON");
                assert_eq!(v["auth_required"], json!(want), "IDENTIFY answered {v}");
            }
            other => panic!("IDENTIFY: {}", describe(&other)),
        }
    }
    assert!(
        authd.requests().is_empty(),
        "IDENTIFY never asks the auth server"
    );
}

#[test]
fn auth_on_a_broker_without_auth_servers_is_fatal_auth_disabled() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    c.command_with_body("AUTH", b"secret");
    expect_fatal(&mut c, "E_AUTH_DISABLED AUTH disabled");
    // The body is checked before auth is: an empty one is a bad body even here.
    let mut c = nsqd.connect();
    c.command_with_body("AUTH", b"");
    expect_fatal(&mut c, "E_BAD_BODY AUTH invalid body size 0");
}

// ---- what the broker asks the auth server ----

#[test]
fn get_request_carries_the_sorted_form_escaped_query_and_nsq_accept_header() {
    let authd = AuthServer::start();
    let secret = "a b&c=d/é+";
    authd.reply(
        secret,
        grant(
            60,
            "alice",
            "https://id.example/alice",
            &[
                authorization("^t$", &[".*"], &["publish"]),
                authorization("^t$", &["^c$"], &["subscribe"]),
            ],
        ),
    );
    let nsqd = broker(&authd, &[]);
    let mut c = nsqd.connect();
    auth_expecting(
        &mut c,
        secret,
        r#"{"identity":"alice","identity_url":"https://id.example/alice","permission_count":2}"#,
    );
    let reqs = authd.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/auth"));
    // Go's url.QueryEscape: space is '+', everything but [A-Za-z0-9-_.~] is %XX.
    assert_eq!(r.raw_query, plain_query("a+b%26c%3Dd%2F%C3%A9%2B"));
    assert_eq!(r.query_param("secret"), Some(secret));
    assert_eq!(r.header("accept"), Some("application/vnd.nsq; version=1.0"));
    assert_eq!(r.header("content-type"), None, "a GET has no body");
    assert!(r.body.is_empty() && !r.https);
    c.publish("t", b"granted");
}

#[test]
fn post_request_sends_the_fields_as_json_arrays() {
    let authd = AuthServer::start();
    authd.reply("s3cret", allow_all(60, "bob"));
    let odd = "q\"uo\\te <&> \u{263a}";
    authd.reply(odd, allow_all(60, "odd"));
    let nsqd = broker(&authd, &["--auth-http-request-method=post"]);
    auth_expecting(
        &mut nsqd.connect(),
        "s3cret",
        r#"{"identity":"bob","identity_url":"","permission_count":1}"#,
    );
    let r = &authd.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/auth"));
    assert_eq!(r.raw_query, "", "POST sends nothing in the query");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("accept"), Some("application/vnd.nsq; version=1.0"));
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        r#"{"common_name":[""],"remote_ip":["127.0.0.1"],"secret":["s3cret"],"tls":["false"]}"#
    );
    // Quotes, backslashes and non-ASCII survive JSON encoding.
    authed(&nsqd, odd);
    let r = &authd.requests()[1];
    let body: Value = serde_json::from_slice(&r.body).expect("POST body is JSON");
    assert_eq!(
        body,
        json!({"common_name": [""], "remote_ip": ["127.0.0.1"], "secret": [odd], "tls": ["false"]})
    );
}

#[test]
fn auth_address_with_a_scheme_is_used_as_the_full_url() {
    let authd = AuthServer::start();
    authd.reply("s", allow_all(60, "u"));
    let flag = format!("--auth-http-address={}", authd.url("/custom/path"));
    let nsqd = Nsqd::start(&[&flag]);
    authed(&nsqd, "s");
    let r = &authd.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("GET", "/custom/path")
    );
    assert_eq!(r.raw_query, plain_query("s"));
}

#[test]
fn secret_bytes_that_are_not_utf8_are_escaped_byte_for_byte() {
    // nsqd keeps the secret as raw bytes (a Go string) and QueryEscapes each.
    let authd = AuthServer::start();
    authd.otherwise(allow_all(60, "raw"));
    let nsqd = broker(&authd, &[]);
    let mut c = nsqd.connect();
    match auth(&mut c, b"\xffA\xfe") {
        Frame::Response(_) => {}
        other => panic!("AUTH: {}", describe(&other)),
    }
    assert_eq!(authd.requests()[0].raw_query, plain_query("%FFA%FE"));
}

// ---- grants, and the checks before SUB and the publishes ----

#[test]
fn grants_are_unanchored_regexes_checked_per_command_and_permission() {
    let authd = AuthServer::start();
    authd.reply(
        "ops",
        grant(
            60,
            "ops",
            "",
            &[
                authorization("^orders", &[".*"], &["publish"]),
                authorization("logs", &["^ro$"], &["subscribe"]),
            ],
        ),
    );
    // A publish grant whose channel patterns cannot match "" allows nothing.
    authd.reply(
        "narrow",
        grant(60, "n", "", &[authorization(".*", &["x"], &["publish"])]),
    );
    let nsqd = broker(&authd, &[]);

    let mut c = nsqd.connect();
    auth_expecting(
        &mut c,
        "ops",
        r#"{"identity":"ops","identity_url":"","permission_count":2}"#,
    );
    c.publish("orders.eu", b"1");
    c.mpublish("orders", &[b"2", b"3"]);
    c.dpublish("orders", 10, b"4");
    c.subscribe("app.logs", "ro");

    let refusals: [(&str, &[u8], &str); 6] = [
        (
            "PUB xorders",
            b"x",
            r#"E_UNAUTHORIZED AUTH failed for PUB on "xorders" """#,
        ),
        (
            "PUB app.logs",
            b"x",
            r#"E_UNAUTHORIZED AUTH failed for PUB on "app.logs" """#,
        ),
        (
            "DPUB xorders 10",
            b"x",
            r#"E_UNAUTHORIZED AUTH failed for DPUB on "xorders" """#,
        ),
        (
            "MPUB xorders",
            &[0, 0, 0, 1, 0, 0, 0, 1, b'x'],
            r#"E_UNAUTHORIZED AUTH failed for MPUB on "xorders" """#,
        ),
        (
            "SUB app.logs rw",
            b"",
            r#"E_UNAUTHORIZED AUTH failed for SUB on "app.logs" "rw""#,
        ),
        (
            "SUB orders c",
            b"",
            r#"E_UNAUTHORIZED AUTH failed for SUB on "orders" "c""#,
        ),
    ];
    for (line, body, want) in refusals {
        let mut c = authed(&nsqd, "ops");
        if line.starts_with("SUB") {
            c.command(line);
        } else {
            c.command_with_body(line, body);
        }
        expect_fatal(&mut c, want);
    }
    let mut c = authed(&nsqd, "narrow");
    c.command_with_body("PUB t", b"x");
    expect_fatal(&mut c, r#"E_UNAUTHORIZED AUTH failed for PUB on "t" """#);

    assert_eq!(topic_message_count(&nsqd, "orders.eu"), Some(1));
    assert_eq!(topic_message_count(&nsqd, "orders"), Some(3));
    assert_eq!(topic_message_count(&nsqd, "xorders"), None);
    assert_eq!(topic_message_count(&nsqd, "t"), None);
    // One question per AUTH: a 60 s grant is not asked again per command.
    assert_eq!(authd.requests_for("ops").len(), 1 + refusals.len());
}

#[test]
fn mpub_to_an_unauthorized_topic_is_refused_before_its_body() {
    // nsqd's MPUB runs CheckAuth before it reads the body.
    let authd = AuthServer::start();
    authd.reply(
        "p",
        grant(
            60,
            "p",
            "",
            &[authorization("^mine$", &[".*"], &["publish"])],
        ),
    );
    let nsqd = broker(&authd, &[]);
    let mut c = authed(&nsqd, "p");
    c.command("MPUB theirs");
    expect_fatal_within(
        &mut c,
        r#"E_UNAUTHORIZED AUTH failed for MPUB on "theirs" """#,
        Duration::from_secs(2),
    );
}

#[test]
fn sub_and_publishes_before_auth_are_fatal_auth_first() {
    let authd = AuthServer::start();
    authd.reply("s", allow_all(60, "s"));
    let nsqd = broker(&authd, &[]);
    let mut c = nsqd.connect();
    c.command("SUB t c");
    expect_fatal(&mut c, "E_AUTH_FIRST AUTH required before SUB");
    let mut c = nsqd.connect();
    c.command_with_body("PUB t", b"x");
    expect_fatal(&mut c, "E_AUTH_FIRST AUTH required before PUB");
    let mut c = nsqd.connect();
    c.command_with_body("DPUB t 100", b"x");
    expect_fatal(&mut c, "E_AUTH_FIRST AUTH required before DPUB");
    // MPUB is refused on its command line alone: the body is never sent.
    let mut c = nsqd.connect();
    c.command("MPUB t");
    expect_fatal_within(
        &mut c,
        "E_AUTH_FIRST AUTH required before MPUB",
        Duration::from_secs(2),
    );
    assert!(authd.requests().is_empty(), "{:?}", authd.requests());

    // NOP and IDENTIFY are not checked; AUTH after them works.
    let mut c = nsqd.connect();
    c.command("NOP");
    match c.identify(&json!({"feature_negotiation": true})) {
        Frame::Response(b) => assert!(b.starts_with(b"{"), "{b:?}"),
        other => panic!("IDENTIFY: {}", describe(&other)),
    }
    auth_expecting(
        &mut c,
        "s",
        r#"{"identity":"s","identity_url":"","permission_count":1}"#,
    );
    c.publish("t", b"after auth");
    assert_eq!(topic_message_count(&nsqd, "t"), Some(1));
    assert_eq!(authd.requests().len(), 1);
}

#[test]
fn auth_command_errors_are_fatal_with_nsqd_strings() {
    let authd = AuthServer::start();
    let long = "k".repeat(100);
    authd.reply("s", allow_all(60, "s"));
    authd.reply(&long, allow_all(60, "long"));
    let nsqd = broker(&authd, &["--max-body-size=100", "--max-msg-size=50"]);

    let mut c = nsqd.connect();
    c.command("AUTH x");
    expect_fatal(&mut c, "E_INVALID AUTH invalid number of parameters");

    let mut c = nsqd.connect();
    c.command_with_body("AUTH", b"");
    expect_fatal(&mut c, "E_BAD_BODY AUTH invalid body size 0");

    // Refused on the size alone, before the body arrives.
    let mut c = nsqd.connect();
    c.write(b"AUTH\n\x00\x00\x00\x65");
    expect_fatal_within(
        &mut c,
        "E_BAD_BODY AUTH body too big 101 > 100",
        Duration::from_secs(2),
    );

    // --max-body-size itself is allowed.
    let mut c = nsqd.connect();
    auth_expecting(
        &mut c,
        &long,
        r#"{"identity":"long","identity_url":"","permission_count":1}"#,
    );

    let mut c = authed(&nsqd, "s");
    c.command_with_body("AUTH", b"s");
    expect_fatal(&mut c, "E_INVALID AUTH already set");

    let mut c = authed(&nsqd, "s");
    c.subscribe("t", "c");
    c.command_with_body("AUTH", b"s");
    expect_fatal(&mut c, "E_INVALID cannot AUTH in current state");

    // Only the three AUTHs that reached a body asked the server.
    assert_eq!(authd.requests().len(), 3, "{:?}", authd.requests());
}

#[test]
fn a_grant_of_zero_authorizations_is_fatal_unauthorized() {
    let authd = AuthServer::start();
    authd.reply("empty", grant(60, "nobody", "", &[]));
    authd.reply(
        "null",
        Reply::Json(json!({"ttl": 60, "authorizations": null})),
    );
    let nsqd = broker(&authd, &[]);
    for secret in ["empty", "null"] {
        let mut c = nsqd.connect();
        c.command_with_body("AUTH", secret.as_bytes());
        expect_fatal(&mut c, "E_UNAUTHORIZED AUTH no authorizations found");
    }
    assert_eq!(authd.requests().len(), 2);
}

// ---- auth servers that fail ----

#[test]
fn failing_auth_server_answers_are_auth_failed_and_only_logged() {
    let authd = AuthServer::start();
    let bad = |auths: Value| Reply::Json(json!({"ttl": 60, "authorizations": [auths]}));
    // (secret, reply, what the log must say about it)
    let cases: Vec<(&str, Reply, Option<&str>)> = vec![
        (
            "status500",
            Reply::Raw(500, "db down: hunter2".into()),
            Some("500"),
        ),
        ("junk", Reply::Raw(200, "<html>hello</html>".into()), None),
        ("array", Reply::Raw(200, "[]".into()), None),
        ("ttl-string", Reply::Json(json!({"ttl": "60"})), None),
        (
            "ttl0",
            allow_all(0, "zero"),
            Some("invalid TTL 0 (must be >0)"),
        ),
        (
            "ttl-negative",
            allow_all(-5, "neg"),
            Some("invalid TTL -5 (must be >0)"),
        ),
        (
            "admin",
            bad(authorization(".*", &[".*"], &["admin"])),
            Some("unknown permission admin"),
        ),
        (
            "bad-topic",
            bad(authorization("(", &[".*"], &["publish"])),
            Some(r#"unable to compile topic "(""#),
        ),
        (
            "bad-channel",
            bad(authorization(".*", &["["], &["publish"])),
            Some(r#"unable to compile channel "[""#),
        ),
        ("hang-up", Reply::Close, None),
        (
            "too-slow",
            Reply::Late(Duration::from_secs(3), Box::new(allow_all(60, "late"))),
            None,
        ),
    ];
    for (secret, reply, _) in &cases {
        authd.reply(secret, reply.clone());
    }
    let nsqd = broker(&authd, &[FAST_TIMEOUT]);
    for (secret, _, _) in &cases {
        let mut c = nsqd.connect();
        let started = Instant::now();
        c.command_with_body("AUTH", secret.as_bytes());
        expect_fatal(&mut c, "E_AUTH_FAILED AUTH failed");
        if *secret == "too-slow" {
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(400) && took < Duration::from_millis(2500),
                "--http-client-request-timeout=500ms, but AUTH failed after {took:?}"
            );
        }
    }
    // The log reaches the test through a pipe, maybe after the error frame.
    let warnings = wait_until(Duration::from_secs(5), "one warning per failure", || {
        let w = auth_warnings(&nsqd);
        if w.len() >= cases.len() {
            Ok(w)
        } else {
            Err(format!("{w:#?}"))
        }
    });
    for (secret, _, reason) in &cases {
        if let Some(reason) = reason {
            assert!(
                warnings.iter().any(|w| w.contains(reason)),
                "{secret}: no warning says {reason:?}: {warnings:#?}"
            );
        }
    }
    assert_eq!(authd.requests().len(), cases.len());

    // None of that hurt the broker.
    assert_eq!(nsqd.http("GET", "/ping", b"").text(), "OK");
    authd.reply("good", allow_all(60, "good"));
    authed(&nsqd, "good").publish("t", b"still fine");
}

#[test]
fn a_grant_must_be_a_json_object_not_an_array_of_its_fields() {
    // Go's json.Unmarshal refuses an array for a struct; a positional array
    // of (ttl, authorizations, identity, identity_url) is no grant.
    let authd = AuthServer::start();
    authd.reply(
        "positional",
        Reply::Raw(
            200,
            r#"[60,[{"topic":".*","channels":[".*"],"permissions":["publish"]}],"pos",""]"#.into(),
        ),
    );
    let nsqd = broker(&authd, &[]);
    let mut c = nsqd.connect();
    c.command_with_body("AUTH", b"positional");
    expect_fatal(&mut c, "E_AUTH_FAILED AUTH failed");
}

#[test]
fn unreachable_auth_servers_are_auth_failed_after_trying_each_once() {
    let dead = nsq_tests::daemon::free_local_port();
    let erroring = AuthServer::start();
    erroring.otherwise(Reply::Raw(500, "no".into()));
    let dead_flag = format!("--auth-http-address=127.0.0.1:{dead}");
    let nsqd = Nsqd::start(&[&dead_flag, &erroring.flag(), FAST_TIMEOUT]);
    let mut c = nsqd.connect();
    c.command_with_body("AUTH", b"s");
    expect_fatal(&mut c, "E_AUTH_FAILED AUTH failed");
    assert_eq!(erroring.requests().len(), 1, "each server is tried once");
    wait_until(
        Duration::from_secs(5),
        "a warning naming both servers",
        || {
            let w = auth_warnings(&nsqd);
            let both = w.iter().any(|l| {
                l.contains(&format!("127.0.0.1:{dead}")) && l.contains(&erroring.addr().to_string())
            });
            if both {
                Ok(())
            } else {
                Err(format!("{w:#?}"))
            }
        },
    );
}

#[test]
fn one_auth_server_down_another_erroring_and_one_up_still_authenticates() {
    let dead = nsq_tests::daemon::free_local_port();
    let erroring = AuthServer::start();
    erroring.otherwise(Reply::Raw(500, "no".into()));
    let up = AuthServer::start();
    up.reply("s", allow_all(60, "up"));
    let dead_flag = format!("--auth-http-address=127.0.0.1:{dead}");
    let nsqd = Nsqd::start(&[&dead_flag, &erroring.flag(), &up.flag(), FAST_TIMEOUT]);
    let n = 8;
    for _ in 0..n {
        auth_expecting(
            &mut nsqd.connect(),
            "s",
            r#"{"identity":"up","identity_url":"","permission_count":1}"#,
        );
    }
    assert_eq!(up.requests_for("s").len(), n);
}

#[test]
fn a_slow_auth_server_holds_up_only_the_client_waiting_on_it() {
    let authd = AuthServer::start();
    authd.reply(
        "slow",
        Reply::Late(Duration::from_secs(3), Box::new(allow_all(60, "slow"))),
    );
    authd.reply("fast", allow_all(60, "fast"));
    let nsqd = broker(&authd, &[]);
    let mut waiting = nsqd.connect();
    waiting.command_with_body("AUTH", b"slow");
    authd.wait_requests(1, Duration::from_secs(5));

    let mut sub = authed(&nsqd, "fast");
    sub.subscribe("t", "c");
    sub.rdy(1);
    authed(&nsqd, "fast").publish("t", b"meanwhile");
    assert_eq!(sub.next_message().body_str(), "meanwhile");
    assert_eq!(nsqd.http("GET", "/ping", b"").text(), "OK");
    assert_eq!(
        waiting.next_frame_within(Duration::ZERO),
        Err(NoFrame::Timeout),
        "the slow auth server has not answered yet"
    );

    match waiting.next_frame() {
        Frame::Response(b) => assert_eq!(
            String::from_utf8_lossy(&b),
            r#"{"identity":"slow","identity_url":"","permission_count":1}"#
        ),
        other => panic!("slow AUTH: {}", describe(&other)),
    }
    waiting.publish("t", b"late but fine");
}

// ---- TTL ----

#[test]
fn an_expired_grant_is_asked_again_with_the_same_secret() {
    let authd = AuthServer::start();
    for s in ["renew", "revoke", "fail", "quiet"] {
        authd.reply(s, allow_all(1, s));
    }
    let nsqd = broker(&authd, &[FAST_TIMEOUT]);
    let mut quiet = authed(&nsqd, "quiet");
    quiet.subscribe("t", "quiet");
    let mut renew = authed(&nsqd, "renew");
    let mut revoke = authed(&nsqd, "revoke");
    let mut fail = authed(&nsqd, "fail");
    let granted = Instant::now();
    renew.publish("t", b"within ttl");
    assert_eq!(authd.requests().len(), 4, "no new question within the TTL");

    authd.reply("renew", allow_all(60, "renewed"));
    authd.reply(
        "revoke",
        grant(
            60,
            "r",
            "",
            &[authorization("^other$", &[".*"], &["subscribe"])],
        ),
    );
    authd.reply("fail", Reply::Raw(500, "gone".into()));
    std::thread::sleep(Duration::from_millis(1100).saturating_sub(granted.elapsed()));

    renew.publish("t", b"after renewal");
    revoke.command("SUB t c");
    expect_fatal(
        &mut revoke,
        r#"E_UNAUTHORIZED AUTH failed for SUB on "t" "c""#,
    );
    fail.command_with_body("PUB t", b"x");
    expect_fatal(&mut fail, "E_AUTH_FAILED AUTH failed");
    // Only SUB and the publishes are checked: RDY, NOP, FIN and deliveries
    // go on under an expired grant without asking.
    quiet.rdy(2);
    quiet.command("NOP");
    for want in ["within ttl", "after renewal"] {
        let m = quiet.next_message();
        assert_eq!(m.body_str(), want);
        quiet.fin(&m.id);
    }
    quiet.expect_silence(Duration::from_millis(100));
    assert_eq!(authd.requests_for("quiet").len(), 1);

    for s in ["renew", "revoke", "fail"] {
        let asked = authd.requests_for(s);
        assert_eq!(asked.len(), 2, "{s}: {asked:?}");
        assert_eq!(asked[0].raw_query, asked[1].raw_query, "{s}: same question");
    }
    let producer = stats_clients(&nsqd)
        .into_iter()
        .find(|c| c["auth_identity"] == "renewed")
        .expect("the renewed grant's identity in /stats");
    assert_eq!(producer["authed"], json!(true));
    assert_eq!(topic_message_count(&nsqd, "t"), Some(2));
}

// ---- /stats ----

#[test]
fn stats_show_auth_identity_only_for_clients_that_authed() {
    let authd = AuthServer::start();
    authd.reply("anon", allow_all(60, ""));
    authd.reply(
        "alice",
        grant(
            60,
            "alice",
            "https://id.example/alice",
            &[authorization(".*", &[".*"], &["publish", "subscribe"])],
        ),
    );
    let nsqd = broker(&authd, &[]);
    let mut alice = nsqd.connect();
    alice.identify(&json!({"client_id": "alice-client"}));
    auth(&mut alice, b"alice");
    alice.subscribe("t", "c");
    alice.publish("t", b"x");
    let mut anon = nsqd.connect();
    anon.identify(&json!({"client_id": "anon-client"}));
    auth(&mut anon, b"anon");
    anon.subscribe("t", "c2");

    let plain = Nsqd::start(&[]);
    let mut never = plain.connect();
    never.identify(&json!({"client_id": "never-client"}));
    never.subscribe("t", "c");

    let auth_keys = |entry: &Value| {
        let o = entry.as_object().expect("client object");
        ["authed", "auth_identity", "auth_identity_url"]
            .iter()
            .filter_map(|k| o.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect::<Vec<_>>()
    };
    let clients = stats_clients(&nsqd);
    let by_id = |id: &str| -> Vec<Value> {
        clients
            .iter()
            .filter(|c| c["client_id"] == id)
            .cloned()
            .collect()
    };
    let alice_entries = by_id("alice-client");
    assert_eq!(alice_entries.len(), 2, "as subscriber and as producer");
    for e in &alice_entries {
        assert_eq!(
            auth_keys(e),
            vec![
                ("authed".to_owned(), json!(true)),
                ("auth_identity".to_owned(), json!("alice")),
                (
                    "auth_identity_url".to_owned(),
                    json!("https://id.example/alice")
                ),
            ]
        );
    }
    let anon_entries = by_id("anon-client");
    assert_eq!(anon_entries.len(), 1);
    assert_eq!(
        auth_keys(&anon_entries[0]),
        vec![("authed".to_owned(), json!(true))],
        "empty identity and URL are left out"
    );
    let never_entries: Vec<Value> = stats_clients(&plain)
        .into_iter()
        .filter(|c| c["client_id"] == "never-client")
        .collect();
    assert_eq!(never_entries.len(), 1);
    assert_eq!(auth_keys(&never_entries[0]), vec![]);
}

// ---- TLS ----

/// A raw V2 connection upgraded to TLS (`tls_v1` in IDENTIFY).
struct TlsV2 {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsV2 {
    fn connect(nsqd: &Nsqd, config: Arc<rustls::ClientConfig>) -> TlsV2 {
        let mut tcp = TcpStream::connect(nsqd.tcp_addr()).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let identify = json!({"tls_v1": true, "feature_negotiation": true}).to_string();
        let mut out = b"  V2IDENTIFY\n".to_vec();
        out.extend_from_slice(&(identify.len() as u32).to_be_bytes());
        out.extend_from_slice(identify.as_bytes());
        tcp.write_all(&out).expect("IDENTIFY");
        let (kind, data) = read_frame(&mut tcp);
        let v: Value = serde_json::from_slice(&data).expect("IDENTIFY JSON");
        assert_eq!((kind, &v["tls_v1"]), (0, &json!(true)), "IDENTIFY: {v}");
        let conn = rustls::ClientConnection::new(config, server_name()).expect("TLS client");
        let mut c = TlsV2 {
            stream: rustls::StreamOwned::new(conn, tcp),
        };
        assert_eq!(c.frame(), (0, b"OK".to_vec()), "OK over TLS");
        c
    }

    fn command_with_body(&mut self, line: &str, body: &[u8]) {
        let mut out = format!("{line}\n").into_bytes();
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        self.stream.write_all(&out).expect("write over TLS");
    }

    fn frame(&mut self) -> (i32, Vec<u8>) {
        read_frame(&mut self.stream)
    }
}

/// One frame: (type, data).
fn read_frame(r: &mut impl Read) -> (i32, Vec<u8>) {
    let mut size = [0u8; 4];
    r.read_exact(&mut size).expect("frame size");
    let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
    r.read_exact(&mut frame).expect("frame");
    let kind = i32::from_be_bytes(frame[..4].try_into().unwrap());
    (kind, frame[4..].to_vec())
}

#[test]
fn auth_over_tls_sends_tls_true_and_the_client_certificate_common_name() {
    let pki = Pki::new();
    let alice = pki.client("alice");
    let authd = AuthServer::start();
    authd.otherwise(allow_all(60, "tls"));
    let mut args: Vec<String> = pki.nsqd_args();
    args.push(authd.flag());
    let with_policy: Vec<String> = args
        .iter()
        .cloned()
        .chain(["--tls-client-auth-policy=require-verify".to_owned()])
        .collect();
    let verifying = Nsqd::start(&with_policy.iter().map(String::as_str).collect::<Vec<_>>());
    // Without a policy nsqd asks for no certificate, so none is shown.
    let not_asking = Nsqd::start(&args.iter().map(String::as_str).collect::<Vec<_>>());

    for (nsqd, common_name) in [(&verifying, "alice"), (&not_asking, "")] {
        let mut c = TlsV2::connect(nsqd, pki.rustls_client(Some(&alice)));
        let before = authd.requests().len();
        c.command_with_body("AUTH", b"tls-secret");
        assert_eq!(
            c.frame(),
            (
                0,
                br#"{"identity":"tls","identity_url":"","permission_count":1}"#.to_vec()
            )
        );
        let r = &authd.requests()[before];
        assert_eq!(
            r.raw_query,
            format!("common_name={common_name}&remote_ip=127.0.0.1&secret=tls-secret&tls=true")
        );
        c.command_with_body("PUB t", b"over tls");
        assert_eq!(c.frame(), (0, b"OK".to_vec()));
    }
    // A plain client says tls=false (a client auth policy makes TLS required,
    // so this asks the other broker).
    authed(&not_asking, "plain");
    assert_eq!(
        authd.requests().last().unwrap().raw_query,
        plain_query("plain")
    );
}

#[test]
fn https_auth_server_is_trusted_through_the_tls_root_ca_file() {
    let pki = Pki::new();
    let authd = AuthServer::start_https(&pki);
    authd.reply("s", allow_all(60, "https"));
    let address = format!("--auth-http-address={}", authd.url("/auth"));
    let ca = format!("--tls-root-ca-file={}", pki.ca.display());
    let trusting = Nsqd::start(&[&address, &ca, FAST_TIMEOUT]);
    auth_expecting(
        &mut trusting.connect(),
        "s",
        r#"{"identity":"https","identity_url":"","permission_count":1}"#,
    );
    let r = &authd.requests()[0];
    assert!(r.https, "{r:?}");
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/auth"));
    assert_eq!(r.raw_query, plain_query("s"));

    // Without the CA the test server's certificate is not trusted.
    let untrusting = Nsqd::start(&[&address, FAST_TIMEOUT]);
    let connections = authd.connections();
    let mut c = untrusting.connect();
    c.command_with_body("AUTH", b"s");
    expect_fatal(&mut c, "E_AUTH_FAILED AUTH failed");
    assert!(authd.connections() > connections, "it did try the server");
    assert_eq!(authd.requests().len(), 1, "no request past the handshake");
}

#[test]
fn auth_server_403_with_an_https_port_is_asked_again_over_https() {
    // Go's http_api client: a 403 on http:// carrying {"https_port": P} means
    // "ask https://<same host>:P<same path and query>".
    let pki = Pki::new();
    let https = AuthServer::start_https(&pki);
    https.reply("s", allow_all(60, "upgraded"));
    let http = AuthServer::start();
    http.otherwise(Reply::Raw(
        403,
        json!({"https_port": https.addr().port()}).to_string(),
    ));
    let ca = format!("--tls-root-ca-file={}", pki.ca.display());
    let nsqd = broker(&http, &[&ca, FAST_TIMEOUT]);
    let mut c = nsqd.connect();
    c.command_with_body("AUTH", b"s");
    let frame = c.next_frame();
    assert_eq!(http.requests().len(), 1);
    let asked: Vec<Request> = https.requests();
    assert_eq!(asked.len(), 1, "asked again over https: {asked:?}");
    assert_eq!(
        (asked[0].path.as_str(), asked[0].raw_query.as_str()),
        ("/auth", plain_query("s").as_str())
    );
    assert_eq!(
        frame,
        Frame::Response(
            br#"{"identity":"upgraded","identity_url":"","permission_count":1}"#.to_vec()
        )
    );
}

// ---- real clients ----

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn shared_config(secret: &str) -> NSQConfigShared {
    NSQConfigShared::new()
        .set_credentials(secret.as_bytes().to_vec())
        // Quick retries, for the tests that expect a refusal.
        .set_backoff_max_wait(Duration::from_millis(500))
}

fn tokio_producer(nsqd: &Nsqd, shared: NSQConfigShared) -> NSQProducer {
    NSQProducerConfig::new(nsqd.tcp_addr().to_string())
        .set_shared(shared)
        .build()
}

fn tokio_consumer(nsqd: &Nsqd, topic: &str, channel: &str, shared: NSQConfigShared) -> NSQConsumer {
    NSQConsumerConfig::new(
        NSQTopic::new(topic).expect("topic name"),
        NSQChannel::new(channel).expect("channel name"),
    )
    .set_max_in_flight(100)
    .set_sources(NSQConsumerConfigSources::Daemons(vec![nsqd
        .tcp_addr()
        .to_string()]))
    .set_shared(shared)
    .build()
}

/// Waits for `Healthy`, skipping other events.
async fn healthy(events: &mut impl EventSource) {
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            match events.next_event().await {
                Some(NSQEvent::Healthy()) => return,
                Some(NSQEvent::Message(m)) => panic!("message before healthy: {:?}", m.body),
                Some(_) => {}
                None => panic!("closed before healthy"),
            }
        }
    })
    .await
    .expect("connection became healthy");
}

/// Producers and consumers both report connection events.
trait EventSource {
    async fn next_event(&mut self) -> Option<NSQEvent>;
}

impl EventSource for NSQProducer {
    async fn next_event(&mut self) -> Option<NSQEvent> {
        self.consume().await
    }
}

impl EventSource for NSQConsumer {
    async fn next_event(&mut self) -> Option<NSQEvent> {
        self.consume().await
    }
}

/// The events until the client's event stream ends, named.
async fn events_until_closed(events: &mut impl EventSource) -> Vec<String> {
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(CONNECT_TIMEOUT, async {
        while let Some(e) = events.next_event().await {
            seen.push(match e {
                NSQEvent::Healthy() => "healthy".to_owned(),
                NSQEvent::Unhealthy() => "unhealthy".to_owned(),
                NSQEvent::Message(m) => format!("message {:?}", m.body),
                other => format!("{other:?}"),
            });
        }
    })
    .await;
    assert!(closed.is_ok(), "events did not end: {seen:?}");
    seen
}

/// Publishes `bodies` one by one and waits for every acknowledgement.
async fn publish_all(p: &mut NSQProducer, topic: &str, bodies: &[String]) {
    let t = NSQTopic::new(topic).expect("topic name");
    for b in bodies {
        p.publish(&t, b.clone().into_bytes())
            .await
            .expect("queue PUB");
    }
    nsq_tests::tokio_client::await_acks(p, bodies.len()).await;
}

/// Finishes messages until none comes for `idle`; returns their bodies.
async fn drain(c: &mut NSQConsumer, idle: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(idle, c.consume_filtered()).await {
        got.push(String::from_utf8(m.body.clone()).expect("UTF-8 body"));
        m.finish().await;
    }
    got
}

fn bodies(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_with_a_valid_secret_publishes_and_consumes_every_message() {
    let authd = AuthServer::start();
    authd.reply(
        "tok",
        grant(
            60,
            "tokio",
            "",
            &[
                authorization("^auth_t$", &[".*"], &["publish"]),
                authorization("^auth_t$", &["^c$"], &["subscribe"]),
            ],
        ),
    );
    let nsqd = broker(&authd, &[]);
    let mut c = tokio_consumer(&nsqd, "auth_t", "c", shared_config("tok"));
    healthy(&mut c).await;
    let mut p = tokio_producer(&nsqd, shared_config("tok"));
    healthy(&mut p).await;
    let sent = bodies(50, "m");
    publish_all(&mut p, "auth_t", &sent).await;

    let got = drain(&mut c, Duration::from_secs(1)).await;
    assert_eq!(got.len(), 50, "deliveries: {got:?}");
    assert_eq!(
        got.into_iter().collect::<BTreeSet<_>>(),
        sent.into_iter().collect::<BTreeSet<_>>()
    );
    let asked = authd.requests_for("tok");
    assert_eq!(asked.len(), 2, "one AUTH per connection: {asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_with_a_wrong_secret_never_gets_to_publish_or_consume() {
    let authd = AuthServer::start();
    authd.reply("right", allow_all(60, "right"));
    let nsqd = broker(&authd, &[]);

    // tokio-nsq gives up on a fatal error frame: its events end, never Healthy.
    let mut p = tokio_producer(&nsqd, shared_config("wrong"));
    let events = events_until_closed(&mut p).await;
    assert!(
        !events.iter().any(|e| e == "healthy"),
        "producer events: {events:?}"
    );
    let refused = p
        .publish(&NSQTopic::new("auth_t").unwrap(), b"nope".to_vec())
        .await;
    assert!(refused.is_err(), "an unhealthy producer queues nothing");

    authed(&nsqd, "right").publish("auth_t", b"for the right secret only");
    let mut c = tokio_consumer(&nsqd, "auth_t", "c", shared_config("wrong"));
    let events = events_until_closed(&mut c).await;
    assert!(
        !events
            .iter()
            .any(|e| e == "healthy" || e.starts_with("message")),
        "consumer events: {events:?}"
    );

    assert_eq!(
        authd.requests_for("wrong").len(),
        2,
        "each client asked once"
    );
    let stats = nsqd.stats();
    let topic = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == "auth_t")
        .expect("the right secret's topic");
    assert_eq!(
        topic["message_count"],
        json!(1),
        "only the right secret's PUB"
    );
    assert_eq!(topic["channels"], json!([]), "no subscription was made");
}

/// tokio-nsq's rustls 0.19 config trusting the PKI's CA, showing `cn`'s certificate.
fn rustls019_client(pki: &Pki, cn: &str) -> Arc<rustls019::ClientConfig> {
    use rustls019::internal::pemfile;
    let id = pki.client(cn);
    let mut cfg = rustls019::ClientConfig::new();
    cfg.root_store
        .add_pem_file(&mut pki.ca_pem.as_bytes())
        .expect("CA PEM");
    let certs = pemfile::certs(&mut id.cert_pem.as_bytes()).expect("client cert PEM");
    let key = pemfile::pkcs8_private_keys(&mut id.key_pem.as_bytes())
        .expect("client key PEM")
        .remove(0);
    cfg.set_single_client_cert(certs, key)
        .expect("client cert and key");
    Arc::new(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_over_tls_with_a_client_certificate_and_a_secret_round_trips() {
    let pki = Pki::new();
    let authd = AuthServer::start();
    authd.reply("tls-tok", allow_all(60, "carol"));
    let mut args = pki.nsqd_args();
    args.push("--tls-client-auth-policy=require-verify".to_owned());
    args.push(authd.flag());
    let nsqd = Nsqd::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let shared = || {
        shared_config("tls-tok").set_tls(
            NSQConfigSharedTLS::new("localhost").set_client_config(rustls019_client(&pki, "carol")),
        )
    };
    let mut c = tokio_consumer(&nsqd, "tls_t", "c", shared());
    healthy(&mut c).await;
    let mut p = tokio_producer(&nsqd, shared());
    healthy(&mut p).await;
    let sent = bodies(20, "tls");
    publish_all(&mut p, "tls_t", &sent).await;
    let got = drain(&mut c, Duration::from_secs(1)).await;
    assert_eq!(got.len(), 20, "deliveries: {got:?}");
    assert_eq!(
        got.into_iter().collect::<BTreeSet<_>>(),
        sent.into_iter().collect::<BTreeSet<_>>()
    );
    let asked = authd.requests_for("tls-tok");
    assert_eq!(asked.len(), 2, "{asked:?}");
    for r in &asked {
        assert_eq!(
            r.raw_query,
            "common_name=carol&remote_ip=127.0.0.1&secret=tls-tok&tls=true"
        );
    }
}

#[test]
fn pynsq_reader_and_writer_with_auth_secret_round_trip_every_message() {
    let authd = AuthServer::start();
    authd.reply("py-secret", allow_all(60, "python"));
    let nsqd = broker(&authd, &[]);
    let n = 30;
    let (report, stderr) = pynsq::run_script(
        "pynsq_roundtrip.py",
        &[
            nsqd.tcp_addr().to_string(),
            "py_auth_t".into(),
            n.to_string(),
            "py-secret".into(),
        ],
    );
    assert_eq!(
        report,
        json!({
            "auth": [{"identity": "python", "identity_url": "", "permission_count": 1},
                     {"identity": "python", "identity_url": "", "permission_count": 1}],
            "published": n, "received": n, "unique": n, "errors": []
        }),
        "stderr: {stderr}"
    );
    assert_eq!(authd.requests_for("py-secret").len(), 2);
}
