//! The API driven through the axum router, asserting nsqlookupd's exact status
//! codes, bodies and headers. Producers are registered through the V1 protocol
//! session, as an nsqd would.

use super::router;
use crate::nsqlookupd::{unix_nanos, Nsqlookupd};
use crate::options::Options;
use crate::protocol_v1::{decode, Decoded, Session};
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

struct Lookupd {
    lookupd: Arc<Nsqlookupd>,
    app: Router,
}

fn lookupd() -> Lookupd {
    lookupd_with(|_| {})
}

fn lookupd_with(f: impl FnOnce(&mut Options)) -> Lookupd {
    let mut opts = Options {
        broadcast_address: "lookupd-0".into(),
        ..Options::default()
    };
    f(&mut opts);
    let lookupd = Nsqlookupd::new(opts);
    Lookupd {
        app: router(Arc::clone(&lookupd)),
        lookupd,
    }
}

impl Lookupd {
    /// An nsqd connection from `remote` that has IDENTIFYed as
    /// `<broadcast>:<http_port>`.
    fn nsqd(&self, remote: &str, broadcast: &str, http_port: u16) -> Session {
        let body = json!({
            "broadcast_address": broadcast,
            "hostname": format!("{broadcast}.host"),
            "tcp_port": http_port - 1,
            "http_port": http_port,
            "version": "1.3.0",
            "topology_zone": "z1",
            "topology_region": "r1",
        })
        .to_string();
        let mut session = Session::new(remote);
        let mut bytes = b"IDENTIFY\n".to_vec();
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(body.as_bytes());
        self.line(&mut session, &bytes);
        session
    }

    /// Sends one command on `session`; it must succeed.
    fn line(&self, session: &mut Session, bytes: &[u8]) {
        let Decoded::Complete(Ok(req), _) = decode(bytes, session.identified()) else {
            panic!("bad test command {:?}", String::from_utf8_lossy(bytes));
        };
        let me = self.lookupd.identify_response();
        session
            .exec(req, &self.lookupd.db, &me, unix_nanos())
            .unwrap();
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

    /// A V1 JSON success with exactly this body.
    #[track_caller]
    fn is_json(&self, body: &str) {
        assert_eq!((self.status, self.body.as_str()), (200, body), "{self:?}");
        assert_eq!(self.header("x-nsq-content-type"), Some("nsq; version=1.0"));
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }

    /// nsqlookupd's V1 error: JSON message, both content-type headers.
    #[track_caller]
    fn is_error(&self, status: u16, message: &str) {
        let body = format!(r#"{{"message":"{message}"}}"#);
        assert_eq!(
            (self.status, self.body.as_str()),
            (status, body.as_str()),
            "{self:?}"
        );
        assert_eq!(self.header("x-nsq-content-type"), Some("nsq; version=1.0"));
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }

    /// nsqlookupd's empty V1 success.
    #[track_caller]
    fn is_empty_ok(&self) {
        assert_eq!((self.status, self.body.as_str()), (200, ""), "{self:?}");
        assert_eq!(self.header("x-nsq-content-type"), Some("nsq; version=1.0"));
        assert_eq!(self.header("content-type"), None);
    }
}

async fn send(app: &Router, method: &str, uri: &str) -> Resp {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
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

async fn get(app: &Router, uri: &str) -> Resp {
    send(app, "GET", uri).await
}

async fn post(app: &Router, uri: &str) -> Resp {
    send(app, "POST", uri).await
}

#[tokio::test]
async fn ping_is_plain_ok_and_info_has_the_version() {
    let l = lookupd();
    let r = get(&l.app, "/ping").await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    assert_eq!(r.header("x-nsq-content-type"), None);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    get(&l.app, "/info").await.is_json(r#"{"version":"1.3.0"}"#);
}

#[tokio::test]
async fn lookup_lists_channels_and_producers_with_peer_info() {
    let l = lookupd();
    let mut a = l.nsqd("10.0.0.1:5000", "n1", 4151);
    l.line(&mut a, b"REGISTER t c\n");
    l.line(&mut a, b"REGISTER t d\n");
    let mut b = l.nsqd("10.0.0.2:5000", "n2", 4251);
    l.line(&mut b, b"REGISTER t\n");
    get(&l.app, "/lookup?topic=t").await.is_json(concat!(
        r#"{"channels":["c","d"],"producers":["#,
        r#"{"remote_address":"10.0.0.1:5000","hostname":"n1.host","broadcast_address":"n1","tcp_port":4150,"http_port":4151,"version":"1.3.0","topology_zone":"z1","topology_region":"r1"},"#,
        r#"{"remote_address":"10.0.0.2:5000","hostname":"n2.host","broadcast_address":"n2","tcp_port":4250,"http_port":4251,"version":"1.3.0","topology_zone":"z1","topology_region":"r1"}]}"#
    ));

    // A topic known without producers (created over HTTP, or whose nsqd left).
    post(&l.app, "/topic/create?topic=empty")
        .await
        .is_empty_ok();
    get(&l.app, "/lookup?topic=empty")
        .await
        .is_json(r#"{"channels":[],"producers":[]}"#);
    b.close(&l.lookupd.db);
    let v = get(&l.app, "/lookup?topic=t").await.json();
    assert_eq!(v["producers"].as_array().unwrap().len(), 1);
    a.close(&l.lookupd.db);
    get(&l.app, "/lookup?topic=t")
        .await
        .is_json(r#"{"channels":["c","d"],"producers":[]}"#);
}

#[tokio::test]
async fn lookup_errors_match_nsqlookupd() {
    let l = lookupd();
    get(&l.app, "/lookup")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    get(&l.app, "/lookup?topic=nope")
        .await
        .is_error(404, "TOPIC_NOT_FOUND");
    // Not validated: an invalid name is just not found.
    get(&l.app, "/lookup?topic=b@d")
        .await
        .is_error(404, "TOPIC_NOT_FOUND");
    get(&l.app, "/lookup?topic=t;x")
        .await
        .is_error(400, "INVALID_REQUEST");
    get(&l.app, "/lookup?topic=%zz")
        .await
        .is_error(400, "INVALID_REQUEST");
    get(&l.app, "/channels")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
}

#[tokio::test]
async fn topics_and_channels_list_what_is_registered() {
    let l = lookupd();
    get(&l.app, "/topics").await.is_json(r#"{"topics":[]}"#);
    let mut a = l.nsqd("10.0.0.1:5000", "n1", 4151);
    l.line(&mut a, b"REGISTER b c2\n");
    l.line(&mut a, b"REGISTER a\n");
    l.line(&mut a, b"REGISTER b c1\n");
    get(&l.app, "/topics")
        .await
        .is_json(r#"{"topics":["a","b"]}"#);
    get(&l.app, "/channels?topic=b")
        .await
        .is_json(r#"{"channels":["c1","c2"]}"#);
    get(&l.app, "/channels?topic=a")
        .await
        .is_json(r#"{"channels":[]}"#);
    get(&l.app, "/channels?topic=nope")
        .await
        .is_json(r#"{"channels":[]}"#);
    // Unvalidated topics are query patterns in nsqlookupd: `*` is every topic.
    get(&l.app, "/channels?topic=*")
        .await
        .is_json(r#"{"channels":["c1","c2"]}"#);
    let v = get(&l.app, "/lookup?topic=*").await.json();
    assert_eq!(v["producers"][0]["broadcast_address"], "n1");
}

#[tokio::test]
async fn nodes_list_identified_producers_with_topics_and_tombstones() {
    let l = lookupd();
    get(&l.app, "/nodes").await.is_json(r#"{"producers":[]}"#);
    let mut a = l.nsqd("10.0.0.1:5000", "n1", 4151);
    l.line(&mut a, b"REGISTER t2 c\n");
    l.line(&mut a, b"REGISTER t1\n");
    let _idle = l.nsqd("10.0.0.2:5000", "n2", 4251);
    post(&l.app, "/topic/tombstone?topic=t2&node=n1:4151")
        .await
        .is_empty_ok();
    get(&l.app, "/nodes").await.is_json(concat!(
        r#"{"producers":["#,
        r#"{"remote_address":"10.0.0.1:5000","hostname":"n1.host","broadcast_address":"n1","tcp_port":4150,"http_port":4151,"version":"1.3.0","topology_zone":"z1","topology_region":"r1","tombstones":[false,true],"topics":["t1","t2"]},"#,
        r#"{"remote_address":"10.0.0.2:5000","hostname":"n2.host","broadcast_address":"n2","tcp_port":4250,"http_port":4251,"version":"1.3.0","topology_zone":"z1","topology_region":"r1","tombstones":[],"topics":[]}]}"#
    ));
}

#[tokio::test]
async fn a_tombstoned_producer_is_hidden_from_lookup_until_the_lifetime_ends() {
    let l = lookupd_with(|o| o.tombstone_lifetime = Duration::from_millis(300));
    let mut a = l.nsqd("10.0.0.1:5000", "n1", 4151);
    let mut b = l.nsqd("10.0.0.2:5000", "n2", 4251);
    for s in [&mut a, &mut b] {
        l.line(s, b"REGISTER t\n");
        l.line(s, b"REGISTER u\n");
    }
    let producers = |v: Value| -> Vec<String> {
        v["producers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["broadcast_address"].as_str().unwrap().to_owned())
            .collect()
    };
    post(&l.app, "/topic/tombstone")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    post(&l.app, "/topic/tombstone?topic=t")
        .await
        .is_error(400, "MISSING_ARG_NODE");
    // An unknown node or topic is not an error.
    post(&l.app, "/topic/tombstone?topic=nope&node=x:1")
        .await
        .is_empty_ok();
    post(&l.app, "/topic/tombstone?topic=t&node=n1:4151")
        .await
        .is_empty_ok();
    assert_eq!(
        producers(get(&l.app, "/lookup?topic=t").await.json()),
        ["n2"]
    );
    assert_eq!(
        producers(get(&l.app, "/lookup?topic=u").await.json()),
        ["n1", "n2"]
    );
    // Registering the topic again does not lift the tombstone.
    l.line(&mut a, b"REGISTER t\n");
    assert_eq!(
        producers(get(&l.app, "/lookup?topic=t").await.json()),
        ["n2"]
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        producers(get(&l.app, "/lookup?topic=t").await.json()),
        ["n1", "n2"]
    );
}

#[tokio::test]
async fn producers_past_the_inactivity_timeout_are_left_out_until_they_ping() {
    let l = lookupd_with(|o| o.inactive_producer_timeout = Duration::from_millis(200));
    let mut a = l.nsqd("10.0.0.1:5000", "n1", 4151);
    l.line(&mut a, b"REGISTER t\n");
    assert_eq!(
        get(&l.app, "/nodes").await.json()["producers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    get(&l.app, "/lookup?topic=t")
        .await
        .is_json(r#"{"channels":[],"producers":[]}"#);
    get(&l.app, "/nodes").await.is_json(r#"{"producers":[]}"#);
    // REGISTER does not count as a sign of life; PING does.
    l.line(&mut a, b"REGISTER u\n");
    get(&l.app, "/nodes").await.is_json(r#"{"producers":[]}"#);
    l.line(&mut a, b"PING\n");
    let v = get(&l.app, "/lookup?topic=t").await.json();
    assert_eq!(v["producers"][0]["broadcast_address"], "n1");
}

#[tokio::test]
async fn topic_and_channel_admin_follow_nsqlookupd() {
    let l = lookupd();
    let app = &l.app;
    post(app, "/topic/create")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    post(app, "/topic/create?topic=b@d")
        .await
        .is_error(400, "INVALID_ARG_TOPIC");
    post(app, "/topic/create?topic=t").await.is_empty_ok();
    post(app, "/topic/create?topic=t").await.is_empty_ok();

    post(app, "/channel/create")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    post(app, "/channel/create?topic=b@d&channel=c")
        .await
        .is_error(400, "INVALID_ARG_TOPIC");
    post(app, "/channel/create?topic=t2")
        .await
        .is_error(400, "MISSING_ARG_CHANNEL");
    post(app, "/channel/create?topic=t2&channel=b@d")
        .await
        .is_error(400, "INVALID_ARG_CHANNEL");
    // Creating a channel creates its topic.
    post(app, "/channel/create?topic=t2&channel=c")
        .await
        .is_empty_ok();
    get(app, "/topics")
        .await
        .is_json(r#"{"topics":["t","t2"]}"#);
    get(app, "/lookup?topic=t2")
        .await
        .is_json(r#"{"channels":["c"],"producers":[]}"#);

    post(app, "/channel/delete?topic=t2&channel=nope")
        .await
        .is_error(404, "CHANNEL_NOT_FOUND");
    post(app, "/channel/delete?topic=t2")
        .await
        .is_error(400, "MISSING_ARG_CHANNEL");
    post(app, "/channel/delete?topic=t2&channel=c")
        .await
        .is_empty_ok();
    get(app, "/channels?topic=t2")
        .await
        .is_json(r#"{"channels":[]}"#);

    // Deleting a topic deletes its channels, produced or not, and is never 404.
    let mut a = l.nsqd("10.0.0.1:5000", "n1", 4151);
    l.line(&mut a, b"REGISTER t2 c\n");
    post(app, "/topic/delete")
        .await
        .is_error(400, "MISSING_ARG_TOPIC");
    post(app, "/topic/delete?topic=nope").await.is_empty_ok();
    post(app, "/topic/delete?topic=t2").await.is_empty_ok();
    get(app, "/topics").await.is_json(r#"{"topics":["t"]}"#);
    get(app, "/channels?topic=t2")
        .await
        .is_json(r#"{"channels":[]}"#);
    get(app, "/lookup?topic=t2")
        .await
        .is_error(404, "TOPIC_NOT_FOUND");
    // The nsqd is still known.
    assert_eq!(
        get(app, "/nodes").await.json()["producers"][0]["topics"],
        json!([])
    );
}

#[tokio::test]
async fn debug_dumps_every_registration_with_producers() {
    let l = lookupd();
    get(&l.app, "/debug").await.is_json("{}");
    let mut a = l.nsqd("10.0.0.1:5000", "n1", 4151);
    l.line(&mut a, b"REGISTER t c\n");
    post(&l.app, "/topic/create?topic=unproduced")
        .await
        .is_empty_ok();
    post(&l.app, "/topic/tombstone?topic=t&node=n1:4151")
        .await
        .is_empty_ok();
    let r = get(&l.app, "/debug").await;
    let v = r.json();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["channel:t:c", "client::", "topic:t:"]);
    let last_update = a.peer().unwrap().last_update();
    let plain = format!(
        r#"{{"broadcast_address":"n1","hostname":"n1.host","http_port":4151,"id":"10.0.0.1:5000","last_update":{last_update},"tcp_port":4150,"tombstoned":false,"tombstoned_at":-6795364578871345152,"version":"1.3.0"}}"#
    );
    assert!(
        r.body.contains(&format!(r#""client::":[{plain}]"#)),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(&format!(r#""channel:t:c":[{plain}]"#)),
        "{}",
        r.body
    );
    let topic = &v["topic:t:"][0];
    assert_eq!(topic["tombstoned"], true);
    assert!(topic["tombstoned_at"].as_i64().unwrap() >= last_update);
}

#[tokio::test]
async fn wrong_methods_unknown_paths_and_near_misses_get_router_answers() {
    let l = lookupd();
    let app = &l.app;
    get(app, "/nope").await.is_error(404, "NOT_FOUND");
    get(app, "/debug/pprof").await.is_error(404, "NOT_FOUND");
    let r = get(app, "/topic/create?topic=t").await;
    r.is_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    let r = send(app, "HEAD", "/ping").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, OPTIONS")));
    let r = post(app, "/lookup?topic=t").await;
    r.is_error(405, "METHOD_NOT_ALLOWED");
    let r = send(app, "OPTIONS", "/nodes").await;
    assert_eq!((r.status, r.header("allow")), (200, Some("GET, OPTIONS")));
    let r = get(app, "/Lookup/?topic=t").await;
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/lookup?topic=t"))
    );
    let r = post(app, "/TOPIC/create?topic=t").await;
    assert_eq!(
        (r.status, r.header("location")),
        (307, Some("/topic/create?topic=t"))
    );
}

#[tokio::test]
async fn hostile_input_gets_an_answer_and_leaves_registrations_alone() {
    let l = lookupd();
    let mut a = l.nsqd("10.0.0.1:5000", "n1", 4151);
    l.line(&mut a, b"REGISTER t c\n");
    let paths = [
        "/lookup?topic=%ff%fe",
        "/lookup?topic=",
        "/channels?topic=%00",
        "/topic/create?topic=%2e%2e",
        "/topic/tombstone?topic=t&node=%ff",
        "/channel/delete?topic=t&channel=%zz",
        "/channel/create?topic=t;&channel=c",
        "/nodes?x=%",
        "/..%2f..%2fetc",
        "/%",
        "/debug?topic=*",
    ];
    for p in paths {
        for m in ["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"] {
            let r = send(&l.app, m, p).await;
            assert!((200..600).contains(&r.status), "{m} {p}: {r:?}");
        }
    }
    let v = get(&l.app, "/lookup?topic=t").await.json();
    assert_eq!(v["channels"], json!(["c"]));
    assert_eq!(v["producers"][0]["broadcast_address"], "n1");
}
