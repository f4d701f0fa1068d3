//! The API driven through the axum router, asserting nsqd's exact status codes,
//! bodies and headers.

use super::router;
use crate::nsqd::Nsqd;
use crate::options::Options;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use axum::Router;
use nsq_common::version::NSQ_VERSION;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tower::ServiceExt;

struct Node {
    nsqd: Arc<Nsqd>,
    app: Router,
    dir: tempfile::TempDir,
}

fn node() -> Node {
    node_with(|_| {})
}

fn node_with(f: impl FnOnce(&mut Options)) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options {
        data_path: dir.path().to_path_buf(),
        ..Options::default()
    };
    f(&mut opts);
    let nsqd = Nsqd::new(opts).unwrap();
    Node {
        app: router(Arc::clone(&nsqd)),
        nsqd,
        dir,
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    #[track_caller]
    fn is(&self, status: u16, body: &str) {
        assert_eq!(
            (self.status, self.body.as_str()),
            (status, body),
            "{self:?}"
        );
    }

    /// nsqd's V1 error: JSON message, both content-type headers.
    #[track_caller]
    fn is_error(&self, status: u16, message: &str) {
        self.is(status, &format!(r#"{{"message":"{message}"}}"#));
        assert_eq!(self.header("x-nsq-content-type"), Some("nsq; version=1.0"));
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }

    /// nsqd's empty V1 success.
    #[track_caller]
    fn is_empty_ok(&self) {
        self.is(200, "");
        assert_eq!(self.header("x-nsq-content-type"), Some("nsq; version=1.0"));
        assert_eq!(self.header("content-type"), None);
    }
}

async fn send_with(
    app: &Router,
    method: &str,
    uri: &str,
    body: impl Into<Body>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn send(app: &Router, method: &str, uri: &str, body: impl Into<Body>) -> Resp {
    send_with(app, method, uri, body, &[]).await
}

async fn get(app: &Router, uri: &str) -> Resp {
    send(app, "GET", uri, Body::empty()).await
}

async fn post(app: &Router, uri: &str, body: impl Into<Body>) -> Resp {
    send(app, "POST", uri, body).await
}

fn topic_counts(nsqd: &Nsqd, name: &str) -> (i64, u64) {
    let s = nsqd.existing_topic(name).expect("topic exists").snapshot();
    (s.depth, s.message_count)
}

#[tokio::test]
async fn ping_says_ok_or_nok_with_the_health_error() {
    let n = node();
    let r = get(&n.app, "/ping").await;
    r.is(200, "OK");
    assert_eq!(r.header("x-nsq-content-type"), None);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // HEAD answers like GET, without the body.
    let r = send(&n.app, "HEAD", "/ping", Body::empty()).await;
    r.is(200, "");
    assert_eq!(r.header("content-length"), Some("2"));

    n.nsqd.set_health(Some("disk full".into()));
    get(&n.app, "/ping").await.is(500, "NOK - disk full");
    n.nsqd.set_health(None);
    get(&n.app, "/ping").await.is(200, "OK");
}

#[tokio::test]
async fn info_has_exactly_nsqds_keys_in_nsqds_order() {
    let n = node_with(|o| {
        o.tcp_address = "127.0.0.1:4150".into();
        o.http_address = "127.0.0.1:4151".into();
        o.broadcast_tcp_port = 5150;
        o.topology_zone = "z1".into();
    });
    let _ = n.nsqd.http_addr.set("127.0.0.1:9151".parse().unwrap());
    let r = get(&n.app, "/info").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-nsq-content-type"), Some("nsq; version=1.0"));
    let keys: Vec<&str> = r
        .body
        .trim_start_matches('{')
        .split(",\"")
        .map(|kv| kv.trim_start_matches('"').split('"').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "version",
            "broadcast_address",
            "hostname",
            "http_port",
            "tcp_port",
            "start_time",
            "max_heartbeat_interval",
            "max_output_buffer_size",
            "max_output_buffer_timeout",
            "max_deflate_level",
            "topology_zone",
            "topology_region",
        ]
    );
    // The same set parsed as JSON: nothing nsqd does not send.
    assert_eq!(r.json().as_object().unwrap().len(), keys.len());
    let v = r.json();
    assert_eq!(v["version"], NSQ_VERSION);
    assert_eq!(
        v["broadcast_address"],
        n.nsqd.opts().broadcast_address.as_str()
    );
    assert_eq!(v["http_port"], 9151);
    assert_eq!(v["tcp_port"], 5150);
    assert_eq!(v["start_time"], n.nsqd.start_time);
    assert_eq!(v["max_heartbeat_interval"], 60_000_000_000i64);
    assert_eq!(v["max_output_buffer_size"], 65536);
    assert_eq!(v["max_output_buffer_timeout"], 30_000_000_000i64);
    assert_eq!(v["max_deflate_level"], 6);
    assert_eq!(v["topology_zone"], "z1");
    assert_eq!(v["topology_region"], "");
}

#[tokio::test]
async fn pub_puts_one_message_and_answers_ok() {
    let n = node();
    let r = post(&n.app, "/pub?topic=t", "hello").await;
    r.is(200, "OK");
    assert_eq!(r.header("x-nsq-content-type"), Some("nsq; version=1.0"));
    assert_eq!(topic_counts(&n.nsqd, "t"), (1, 1));
    assert_eq!(
        n.nsqd.existing_topic("t").unwrap().snapshot().message_bytes,
        5
    );
}

#[tokio::test]
async fn pub_errors_match_nsqd_in_its_order() {
    let n = node_with(|o| o.max_msg_size = 10);
    let app = &n.app;
    // Size and emptiness are checked before the query.
    post(app, "/pub", "").await.is_error(400, "MSG_EMPTY");
    post(app, "/pub", "12345678901")
        .await
        .is_error(413, "MSG_TOO_BIG");
    send_with(
        app,
        "POST",
        "/pub?topic=t",
        "x",
        &[("content-length", "11")],
    )
    .await
    .is_error(413, "MSG_TOO_BIG");
    post(app, "/pub?topic=t", "1234567890").await.is(200, "OK");
    post(app, "/pub", "m")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    post(app, "/pub?topic=", "m")
        .await
        .is_error(400, "INVALID_TOPIC");
    post(app, "/pub?topic=a%20b", "m")
        .await
        .is_error(400, "INVALID_TOPIC");
    post(app, "/pub?topic=t;x", "m")
        .await
        .is_error(400, "INVALID_REQUEST");
    post(app, "/pub?topic=t&defer=%zz", "m")
        .await
        .is_error(400, "INVALID_REQUEST");
    for bad in ["-1", "abc", "3600001", ""] {
        post(app, &format!("/pub?topic=t&defer={bad}"), "m")
            .await
            .is_error(400, "INVALID_DEFER");
    }
    assert_eq!(topic_counts(&n.nsqd, "t"), (1, 1));
    // nsqd creates the topic before it checks `defer`.
    post(app, "/pub?topic=made&defer=-5", "m")
        .await
        .is_error(400, "INVALID_DEFER");
    assert_eq!(topic_counts(&n.nsqd, "made"), (0, 0));
}

#[tokio::test]
async fn pub_with_defer_lands_in_the_deferred_queue() {
    let n = node();
    assert_eq!(post(&n.app, "/topic/create?topic=t", "").await.status, 200);
    post(&n.app, "/channel/create?topic=t&channel=c", "")
        .await
        .is_empty_ok();
    post(&n.app, "/pub?topic=t&defer=1000", "later")
        .await
        .is(200, "OK");
    let ch = n.nsqd.existing_topic("t").unwrap().channel("c").unwrap();
    let s = ch.snapshot();
    assert_eq!((s.deferred_count, s.depth), (1, 0));
}

#[tokio::test]
async fn mpub_splits_lines_and_skips_empty_ones() {
    let n = node();
    post(&n.app, "/mpub?topic=t", "a\nb\n\nc\nd\n")
        .await
        .is(200, "OK");
    assert_eq!(topic_counts(&n.nsqd, "t"), (4, 4));
    post(&n.app, "/mpub?topic=t&binary=false", "e")
        .await
        .is(200, "OK");
    assert_eq!(topic_counts(&n.nsqd, "t"), (5, 5));
    // Nothing to publish is still OK, and still creates the topic.
    post(&n.app, "/mpub?topic=empty", "\n\n")
        .await
        .is(200, "OK");
    assert_eq!(topic_counts(&n.nsqd, "empty"), (0, 0));
}

#[tokio::test]
async fn mpub_errors_never_half_publish() {
    let n = node_with(|o| {
        o.max_msg_size = 4;
        o.max_body_size = 20;
    });
    let app = &n.app;
    post(app, "/mpub?topic=t", "ok\ntoolong\nok")
        .await
        .is_error(413, "MSG_TOO_BIG");
    post(app, "/mpub?topic=t", "1234\n1234\n1234\n1234\n1")
        .await
        .is_error(413, "BODY_TOO_BIG");
    send_with(app, "POST", "/mpub", "x", &[("content-length", "21")])
        .await
        .is_error(413, "BODY_TOO_BIG");
    post(app, "/mpub", "x")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    post(app, "/mpub?topic=bad!", "x")
        .await
        .is_error(400, "INVALID_TOPIC");
    assert_eq!(topic_counts(&n.nsqd, "t"), (0, 0));
    post(app, "/mpub?topic=t", "1234\n1234\n1234\n1234")
        .await
        .is(200, "OK");
    assert_eq!(topic_counts(&n.nsqd, "t"), (4, 4));
}

fn binary_mpub(msgs: &[&[u8]]) -> Vec<u8> {
    let mut b = (msgs.len() as u32).to_be_bytes().to_vec();
    for m in msgs {
        b.extend_from_slice(&(m.len() as u32).to_be_bytes());
        b.extend_from_slice(m);
    }
    b
}

#[tokio::test]
async fn binary_mpub_reads_nsqd_framing_and_its_413_errors() {
    let n = node_with(|o| o.max_msg_size = 100);
    let app = &n.app;
    let body = binary_mpub(&[&[0u8; 100], b"line\nbreak", b"x"]);
    post(app, "/mpub?topic=t&binary=true", body)
        .await
        .is(200, "OK");
    assert_eq!(topic_counts(&n.nsqd, "t"), (3, 3));
    // Any value nsqd does not know also means binary.
    post(app, "/mpub?topic=t&binary=yes", binary_mpub(&[b"y"]))
        .await
        .is(200, "OK");
    post(app, "/mpub?topic=t&binary", binary_mpub(&[b"z"]))
        .await
        .is(200, "OK");
    assert_eq!(topic_counts(&n.nsqd, "t"), (5, 5));

    post(app, "/mpub?topic=t&binary=1", vec![0u8, 0])
        .await
        .is_error(413, "BAD_BODY");
    post(app, "/mpub?topic=t&binary=1", binary_mpub(&[]))
        .await
        .is_error(413, "BAD_BODY");
    post(app, "/mpub?topic=t&binary=1", binary_mpub(&[&[1u8; 101]]))
        .await
        .is_error(413, "BAD_MESSAGE");
    let mut truncated = binary_mpub(&[b"abc", b"def"]);
    truncated.pop();
    post(app, "/mpub?topic=t&binary=1", truncated)
        .await
        .is_error(413, "BAD_MESSAGE");
    assert_eq!(topic_counts(&n.nsqd, "t"), (5, 5));
}

fn metadata(n: &Node) -> Value {
    let raw = std::fs::read(n.dir.path().join("nsqd.dat")).unwrap();
    serde_json::from_slice(&raw).unwrap()
}

#[tokio::test]
async fn topic_endpoints_manage_topics_and_persist_pauses() {
    let n = node();
    let app = &n.app;
    post(app, "/topic/create?topic=t", "").await.is_empty_ok();
    assert!(n.nsqd.existing_topic("t").is_some());
    post(app, "/topic/create", "")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    post(app, "/topic/create?topic=a$", "")
        .await
        .is_error(400, "INVALID_TOPIC");

    post(app, "/topic/pause", "")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    post(app, "/topic/pause?topic=nope", "")
        .await
        .is_error(404, "TOPIC_NOT_FOUND");
    post(app, "/topic/pause?topic=t", "").await.is_empty_ok();
    assert!(n.nsqd.existing_topic("t").unwrap().is_paused());
    assert_eq!(metadata(&n)["topics"][0]["paused"], true);
    post(app, "/topic/unpause?topic=t", "").await.is_empty_ok();
    assert!(!n.nsqd.existing_topic("t").unwrap().is_paused());
    assert_eq!(metadata(&n)["topics"][0]["paused"], false);

    post(app, "/pub?topic=t", "m").await.is(200, "OK");
    post(app, "/topic/empty", "")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    post(app, "/topic/empty?topic=t$", "")
        .await
        .is_error(400, "INVALID_TOPIC");
    post(app, "/topic/empty?topic=nope", "")
        .await
        .is_error(404, "TOPIC_NOT_FOUND");
    post(app, "/topic/empty?topic=t", "").await.is_empty_ok();
    assert_eq!(topic_counts(&n.nsqd, "t"), (0, 1));

    post(app, "/topic/delete", "")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    // nsqd does not validate the name on delete: an invalid one is just not found.
    post(app, "/topic/delete?topic=a$", "")
        .await
        .is_error(404, "TOPIC_NOT_FOUND");
    post(app, "/topic/delete?topic=t", "").await.is_empty_ok();
    assert!(n.nsqd.existing_topic("t").is_none());
    assert_eq!(metadata(&n)["topics"], serde_json::json!([]));
    post(app, "/topic/delete?topic=t", "")
        .await
        .is_error(404, "TOPIC_NOT_FOUND");
}

#[tokio::test]
async fn channel_endpoints_manage_channels_with_nsqd_errors() {
    let n = node();
    let app = &n.app;
    post(app, "/channel/create", "")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    post(app, "/channel/create?topic=b@d&channel=c", "")
        .await
        .is_error(400, "INVALID_ARG_TOPIC");
    post(app, "/channel/create?topic=t", "")
        .await
        .is_error(400, "MISSING_ARG_CHANNEL");
    post(app, "/channel/create?topic=t&channel=b@d", "")
        .await
        .is_error(400, "INVALID_ARG_CHANNEL");
    post(app, "/channel/create?topic=t&channel=c", "")
        .await
        .is_error(404, "TOPIC_NOT_FOUND");

    post(app, "/topic/create?topic=t", "").await.is_empty_ok();
    post(app, "/channel/create?topic=t&channel=c", "")
        .await
        .is_empty_ok();
    let topic = n.nsqd.existing_topic("t").unwrap();
    let ch = topic.channel("c").expect("created");
    assert_eq!(metadata(&n)["topics"][0]["channels"][0]["name"], "c");

    for op in ["empty", "pause", "unpause", "delete"] {
        post(app, &format!("/channel/{op}?topic=t&channel=nope"), "")
            .await
            .is_error(404, "CHANNEL_NOT_FOUND");
    }
    post(app, "/channel/pause?topic=t&channel=c", "")
        .await
        .is_empty_ok();
    assert!(ch.is_paused());
    assert_eq!(metadata(&n)["topics"][0]["channels"][0]["paused"], true);
    post(app, "/channel/unpause?topic=t&channel=c", "")
        .await
        .is_empty_ok();
    assert!(!ch.is_paused());
    assert_eq!(metadata(&n)["topics"][0]["channels"][0]["paused"], false);

    post(app, "/pub?topic=t", "m").await.is(200, "OK");
    assert_eq!(ch.depth(), 1);
    post(app, "/channel/empty?topic=t&channel=c", "")
        .await
        .is_empty_ok();
    assert_eq!(ch.depth(), 0);

    post(app, "/channel/delete?topic=t&channel=c", "")
        .await
        .is_empty_ok();
    assert!(topic.channel("c").is_none());
    assert_eq!(metadata(&n)["topics"][0]["channels"], serde_json::json!([]));
}

#[tokio::test]
async fn deleting_the_last_channel_of_an_ephemeral_topic_deletes_the_topic() {
    let n = node();
    post(&n.app, "/topic/create?topic=e%23ephemeral", "")
        .await
        .is_empty_ok();
    post(&n.app, "/channel/create?topic=e%23ephemeral&channel=c", "")
        .await
        .is_empty_ok();
    post(&n.app, "/channel/delete?topic=e%23ephemeral&channel=c", "")
        .await
        .is_empty_ok();
    assert!(n.nsqd.existing_topic("e#ephemeral").is_none());
}

/// A topic with one channel, one consumer and one producer, as `/stats` sees them.
fn stats_fixture(n: &Node) -> (i64, i64) {
    let topic = n.nsqd.get_topic("t");
    let ch = n.nsqd.get_channel(&topic, "ch");
    let consumer = n.nsqd.add_client("127.0.0.1:5555".into());
    {
        let mut id = consumer.identity.lock();
        id.client_id = "cid".into();
        id.hostname = "host".into();
        id.user_agent = "ua/1.0".into();
    }
    consumer
        .state
        .store(crate::client::STATE_SUBSCRIBED, Ordering::Release);
    consumer.ready_count.store(5, Ordering::Release);
    ch.add_client(Arc::clone(&consumer), 0).unwrap();
    let producer = n.nsqd.add_client("[::1]:6666".into());
    producer.published("t", 2);
    producer.published("other", 1);
    (consumer.connect_ts, producer.connect_ts)
}

const LATENCY: &str = r#""e2e_processing_latency":{"count":0,"percentiles":null}"#;
const NO_TLS: &str = r#""tls":false,"tls_cipher_suite":"","tls_version":"","tls_negotiated_protocol":"","tls_negotiated_protocol_is_mutual":false,"topology_zone":"","topology_region":"""#;

#[tokio::test]
async fn stats_json_has_nsqd_fields_in_nsqd_order() {
    let n = node();
    let (consumer_ts, producer_ts) = stats_fixture(&n);
    post(&n.app, "/pub?topic=t", "hello").await.is(200, "OK");

    let r = get(&n.app, "/stats?format=json&include_mem=false").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("x-nsq-content-type"), Some("nsq; version=1.0"));
    let consumer = format!(
        r#"{{"client_id":"cid","hostname":"host","version":"V2","remote_address":"127.0.0.1:5555","state":3,"ready_count":5,"in_flight_count":0,"message_count":0,"finish_count":0,"requeue_count":0,"connect_ts":{consumer_ts},"sample_rate":0,"deflate":false,"snappy":false,"user_agent":"ua/1.0",{NO_TLS}}}"#
    );
    // A client that never IDENTIFYed is named by its host, as in nsqd.
    let producer = format!(
        r#"{{"client_id":"::1","hostname":"::1","version":"V2","remote_address":"[::1]:6666","state":0,"ready_count":0,"in_flight_count":0,"message_count":0,"finish_count":0,"requeue_count":0,"connect_ts":{producer_ts},"sample_rate":0,"deflate":false,"snappy":false,"user_agent":"","pub_counts":[{{"topic":"other","count":1}},{{"topic":"t","count":2}}],{NO_TLS}}}"#
    );
    let expected = format!(
        r#"{{"version":"{NSQ_VERSION}","health":"OK","start_time":{},"topics":[{{"topic_name":"t","channels":[{{"channel_name":"ch","depth":1,"backend_depth":0,"in_flight_count":0,"deferred_count":0,"message_count":1,"requeue_count":0,"timeout_count":0,"client_count":1,"clients":[{consumer}],"paused":false,{LATENCY}}}],"depth":0,"backend_depth":0,"message_count":1,"message_bytes":5,"paused":false,{LATENCY}}}],"producers":[{producer}]}}"#,
        n.nsqd.start_time
    );
    assert_eq!(r.body, expected);
}

#[tokio::test]
async fn stats_filters_follow_nsqd() {
    let n = node();
    stats_fixture(&n);
    n.nsqd.get_topic("other");

    let v = get(&n.app, "/stats?format=json").await.json();
    let names: Vec<&str> = v["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other", "t"]);
    let mem = v["memory"].as_object().expect("memory by default");
    let keys: Vec<&str> = mem.keys().map(String::as_str).collect();
    for k in [
        "heap_objects",
        "heap_idle_bytes",
        "heap_in_use_bytes",
        "heap_released_bytes",
        "gc_pause_usec_100",
        "gc_pause_usec_99",
        "gc_pause_usec_95",
        "next_gc_bytes",
        "gc_total_runs",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert!(mem["heap_in_use_bytes"].as_u64().unwrap() > 0);

    // The topic filter narrows topics and the producers' publish counts.
    let v = get(&n.app, "/stats?format=json&topic=t").await.json();
    assert_eq!(v["topics"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["producers"][0]["pub_counts"],
        serde_json::json!([{"topic": "t", "count": 2}])
    );

    // An unknown topic gives no topics and no producers at all.
    let r = get(&n.app, "/stats?format=json&topic=nope&include_mem=0").await;
    assert!(
        r.body.ends_with(r#""topics":null,"producers":null}"#),
        "{}",
        r.body
    );

    // A channel filter drops topics without that channel.
    let v = get(&n.app, "/stats?format=json&channel=ch").await.json();
    assert_eq!(v["topics"].as_array().unwrap().len(), 1);
    let v = get(&n.app, "/stats?format=json&channel=nope").await.json();
    assert_eq!(v["topics"], serde_json::json!([]));

    let v = get(
        &n.app,
        "/stats?format=json&include_clients=false&include_mem=false",
    )
    .await
    .json();
    assert_eq!(v["topics"][1]["channels"][0]["clients"], Value::Null);
    assert_eq!(v["topics"][1]["channels"][0]["client_count"], 1);
    assert_eq!(v["producers"], Value::Null);
    assert!(v.get("memory").is_none());
    // Values nsqd does not recognise keep the default.
    let v = get(&n.app, "/stats?format=json&include_clients=no")
        .await
        .json();
    assert_eq!(
        v["topics"][1]["channels"][0]["clients"][0]["client_id"],
        "cid"
    );
}

#[tokio::test]
async fn stats_text_is_the_default_format() {
    let n = node();
    let r = get(&n.app, "/stats").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(
        r.body
            .starts_with(&format!("nsqd v{NSQ_VERSION} (built w/")),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("\nHealth: OK\n\nMemory:\n   heap_objects"),
        "{}",
        r.body
    );
    assert!(
        r.body.ends_with("\nTopics: None\n\nProducers: None\n"),
        "{}",
        r.body
    );

    stats_fixture(&n);
    let r = get(&n.app, "/stats?format=text&include_mem=false").await;
    assert!(!r.body.contains("Memory:"));
    assert!(
        r.body.contains("\nTopics:\n   [t              ] depth: 0"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("      [ch                       ] depth: 0"),
        "{}",
        r.body
    );
    let consumer = format!(
        "        [V2 {:<21}] state: 3 inflt: 0    rdy: 5 ",
        "host:5555 ua/1.0"
    );
    assert!(r.body.contains(&consumer), "{}", r.body);
    let producer = format!(
        "\nProducers:\n   [V2 {:<21}] msgs: 3        topics: other=1,t=2 connected: ",
        "::1:6666 "
    );
    assert!(r.body.contains(&producer), "{}", r.body);
}

#[tokio::test]
async fn config_reads_options_and_changes_the_runtime_ones() {
    let n = node_with(|o| o.max_msg_size = 64);
    let app = &n.app;
    let r = get(app, "/config/nsqlookupd_tcp_addresses").await;
    r.is(200, "[]");
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    get(app, "/config/mem_queue_size").await.is(200, "10000");
    get(app, "/config/msg_timeout").await.is(200, "60000000000");
    // Strings come back raw, as nsqd writes them.
    let r = get(app, "/config/tcp_address").await;
    r.is(200, "0.0.0.0:4150");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    get(app, "/config/topology_zone").await.is_empty_ok();
    get(app, "/config/nope")
        .await
        .is_error(400, "INVALID_OPTION");
    get(app, "/config/lookupd_tcp_address")
        .await
        .is_error(400, "INVALID_OPTION");

    let addrs = r#"["127.0.0.1:4160","127.0.0.1:4161"]"#;
    send(app, "PUT", "/config/nsqlookupd_tcp_addresses", addrs)
        .await
        .is(200, addrs);
    assert_eq!(
        n.nsqd.opts().lookupd_tcp_addresses,
        ["127.0.0.1:4160", "127.0.0.1:4161"]
    );
    for bad in ["[1]", "{", r#""a""#, "[] x"] {
        send(app, "PUT", "/config/nsqlookupd_tcp_addresses", bad)
            .await
            .is_error(400, "INVALID_VALUE");
    }
    send(app, "PUT", "/config/nsqlookupd_tcp_addresses", "")
        .await
        .is_error(413, "INVALID_VALUE");
    send(
        app,
        "PUT",
        "/config/nsqlookupd_tcp_addresses",
        "x".repeat(65),
    )
    .await
    .is_error(413, "INVALID_VALUE");
    send(app, "PUT", "/config/mem_queue_size", "5")
        .await
        .is_error(400, "INVALID_OPTION");
    send(app, "PUT", "/config/mem_queue_size", "")
        .await
        .is_error(413, "INVALID_VALUE");

    send(app, "PUT", "/config/log_level", "bad")
        .await
        .is_error(400, "INVALID_VALUE");
    send(app, "PUT", "/config/log_level", "WARN")
        .await
        .is(200, "3");
    assert_eq!(n.nsqd.opts().log_level, nsq_common::logging::LogLevel::Warn);
    assert_eq!(
        nsq_common::logging::level(),
        nsq_common::logging::LogLevel::Warn
    );
    get(app, "/config/log_level").await.is(200, "3");
    send(app, "PUT", "/config/log_level", "info")
        .await
        .is(200, "2");
    assert_eq!(
        nsq_common::logging::level(),
        nsq_common::logging::LogLevel::Info
    );
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_nsqd_errors() {
    let n = node();
    let app = &n.app;
    get(app, "/not_found").await.is_error(404, "NOT_FOUND");
    get(app, "/").await.is_error(404, "NOT_FOUND");
    get(app, "/config/").await.is_error(404, "NOT_FOUND");
    get(app, "/config/a/b").await.is_error(404, "NOT_FOUND");

    let r = post(app, "/stats", "").await;
    r.is_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("GET, OPTIONS"));
    get(app, "/pub?topic=t")
        .await
        .is_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(send(app, "HEAD", "/stats", Body::empty()).await.status, 405);
    let r = send(app, "DELETE", "/config/x", Body::empty()).await;
    r.is_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("GET, PUT, OPTIONS"));

    let r = send(app, "OPTIONS", "/pub", Body::empty()).await;
    r.is(200, "");
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
}

#[tokio::test]
async fn near_miss_paths_redirect_like_nsqds_router() {
    let n = node();
    let r = get(&n.app, "/stats/?format=json").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/stats?format=json"));
    assert_eq!(
        r.body,
        "<a href=\"/stats?format=json\">Moved Permanently</a>.\n\n"
    );
    let r = get(&n.app, "/STATS").await;
    assert_eq!((r.status, r.header("location")), (301, Some("/stats")));
    let r = get(&n.app, "//ping/").await;
    assert_eq!((r.status, r.header("location")), (301, Some("/ping")));
    let r = post(&n.app, "/Pub/?topic=t", "m").await;
    assert_eq!(
        (r.status, r.header("location"), r.body.as_str()),
        (307, Some("/pub?topic=t"), "")
    );
    let r = send(&n.app, "PUT", "/Config/log_level", "info").await;
    assert_eq!(
        (r.status, r.header("location")),
        (307, Some("/config/log_level"))
    );
    // Routing is on the decoded path, as in Go.
    get(&n.app, "/p%69ng").await.is(200, "OK");
    assert_eq!(get(&n.app, "/p%zzng").await.status, 400);
}

#[tokio::test]
async fn hostile_input_gets_an_answer_not_a_panic() {
    let n = node_with(|o| {
        o.max_msg_size = 16;
        o.max_body_size = 64;
    });
    let paths = [
        "/pub?topic=t&defer=99999999999999999",
        "/pub?topic=%ff%fe",
        "/mpub?topic=t&binary=true",
        "/mpub?topic=t",
        "/stats?format=json&topic=%00",
        "/config/%00",
        "/channel/empty?topic=t&channel=%ff",
        "/topic/pause?topic=%2e%2e",
        "/..%2f..%2fetc",
        "/%",
    ];
    let bodies: [&[u8]; 5] = [
        b"",
        b"\xff\xff\xff\xff",
        b"\x7f\xff\xff\xff\x7f\xff\xff\xff",
        b"\n\n\n",
        &[0u8; 100],
    ];
    for p in paths {
        for m in ["GET", "POST", "PUT", "HEAD", "OPTIONS", "PATCH"] {
            for b in bodies {
                let r = send(&n.app, m, p, b.to_vec()).await;
                assert!((200..600).contains(&r.status), "{m} {p}: {r:?}");
            }
        }
    }
}
