//! nsqlookupd's HTTP API (port 4161): the same paths, methods, status codes,
//! error strings and JSON as nsqlookupd 1.3. Routing, query parsing, V1
//! responses and request logging are the shared [`nsq_common::http`].
//!
//! - discovery: `GET /lookup?topic=`, `/topics`, `/channels?topic=`, `/nodes`;
//! - administration: `POST /topic/create`, `/topic/delete`, `/channel/create`,
//!   `/channel/delete`, `/topic/tombstone?topic=&node=`;
//! - the node itself: `GET /ping`, `/info`, `/debug`, and `/metrics` (not in
//!   nsqlookupd; see [`crate::metrics`]).
//!
//! Like nsqlookupd, `topic` is not validated by the read endpoints nor by
//! `/topic/delete` and `/topic/tombstone`, so `*` there matches every topic.

#[cfg(test)]
mod tests;

use crate::nsqlookupd::{unix_nanos, Nsqlookupd};
use crate::registration_db::{filter_by_active, keys, subkeys, Category, PeerInfo, Registration};
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{HeaderValue, CONTENT_TYPE};
use axum::response::Response;
use axum::Router;
use nsq_common::http::{plain_text, route, v1, ApiError, ApiResult, Matched, Params, Reply, Route};
use nsq_common::names::is_valid_topic_name;
use nsq_common::version::NSQ_VERSION;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What Go's zero `time.Time` gives for `UnixNano()` (it overflows): `/debug`'s
/// `tombstoned_at` for a producer never tombstoned.
const GO_ZERO_TIME_UNIX_NANOS: i64 = (-62_135_596_800i64).wrapping_mul(1_000_000_000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Ping,
    Info,
    Debug,
    Lookup,
    Topics,
    Channels,
    Nodes,
    TopicCreate,
    TopicDelete,
    ChannelCreate,
    ChannelDelete,
    TopicTombstone,
    Metrics,
}

/// nsqlookupd 1.3's routes (its debug/pprof endpoints are not offered), plus
/// `GET /metrics` (not logged: Prometheus polls it).
const ROUTES: &[Route<Endpoint>] = &[
    route("GET", "/ping", Endpoint::Ping),
    route("GET", "/info", Endpoint::Info),
    route("GET", "/debug", Endpoint::Debug),
    route("GET", "/lookup", Endpoint::Lookup),
    route("GET", "/topics", Endpoint::Topics),
    route("GET", "/channels", Endpoint::Channels),
    route("GET", "/nodes", Endpoint::Nodes),
    route("POST", "/topic/create", Endpoint::TopicCreate),
    route("POST", "/topic/delete", Endpoint::TopicDelete),
    route("POST", "/channel/create", Endpoint::ChannelCreate),
    route("POST", "/channel/delete", Endpoint::ChannelDelete),
    route("POST", "/topic/tombstone", Endpoint::TopicTombstone),
    route("GET", "/metrics", Endpoint::Metrics)
        .extra()
        .unlogged(),
];

/// The API as an axum router (also what tests drive).
pub fn router(lookupd: Arc<Nsqlookupd>) -> Router {
    nsq_common::http::router(ROUTES, lookupd, call)
}

async fn call(l: Arc<Nsqlookupd>, m: Matched<Endpoint>, req: Request) -> Response {
    let with_params = |f: fn(&Nsqlookupd, &Params) -> ApiResult| {
        v1(Params::from_query(req.uri().query()).and_then(|p| f(&l, &p)))
    };
    match m.endpoint {
        Endpoint::Ping => plain_text(Ok(Reply::text("OK"))),
        Endpoint::Info => v1(info()),
        Endpoint::Debug => v1(debug(&l)),
        Endpoint::Lookup => with_params(lookup),
        Endpoint::Topics => v1(topics(&l)),
        Endpoint::Channels => with_params(channels),
        Endpoint::Nodes => v1(nodes(&l)),
        Endpoint::TopicCreate => with_params(create_topic),
        Endpoint::TopicDelete => with_params(delete_topic),
        Endpoint::ChannelCreate => with_params(create_channel),
        Endpoint::ChannelDelete => with_params(delete_channel),
        Endpoint::TopicTombstone => with_params(tombstone_topic_producer),
        Endpoint::Metrics => {
            let mut resp = Response::new(Body::from(crate::metrics::render(&l)));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            resp
        }
    }
}

fn topic_arg(p: &Params) -> Result<&str, ApiError> {
    p.get("topic")
        .ok_or(ApiError::bad_request("MISSING_ARG_TOPIC"))
}

fn info() -> ApiResult {
    #[derive(Serialize)]
    struct Info {
        version: &'static str,
    }
    Ok(Reply::json(&Info {
        version: NSQ_VERSION,
    }))
}

/// `{"channels":[...],"producers":[...]}`: the topic's channels and its active,
/// untombstoned producers; 404 `TOPIC_NOT_FOUND` for an unknown topic.
fn lookup(l: &Nsqlookupd, p: &Params) -> ApiResult {
    let topic = topic_arg(p)?;
    let db = l.db.read();
    if db.find_registrations(Category::Topic, topic, "").is_empty() {
        return Err(ApiError::not_found("TOPIC_NOT_FOUND"));
    }
    let channels = subkeys(&db.find_registrations(Category::Channel, topic, "*"));
    let producers = filter_by_active(
        db.find_producers(Category::Topic, topic, ""),
        unix_nanos(),
        l.opts.inactive_producer_timeout,
        l.opts.tombstone_lifetime,
    );
    drop(db);
    #[derive(Serialize)]
    struct Lookup<'a> {
        channels: Vec<String>,
        producers: Vec<&'a PeerInfo>,
    }
    Ok(Reply::json(&Lookup {
        channels,
        producers: producers.iter().map(|p| &p.peer.info).collect(),
    }))
}

/// `{"topics":[...]}`: every known topic, produced or not.
fn topics(l: &Nsqlookupd) -> ApiResult {
    #[derive(Serialize)]
    struct Topics {
        topics: Vec<String>,
    }
    let topics = keys(&l.db.read().find_registrations(Category::Topic, "*", ""));
    Ok(Reply::json(&Topics { topics }))
}

/// `{"channels":[...]}`: a topic's known channels (an unknown topic has none).
fn channels(l: &Nsqlookupd, p: &Params) -> ApiResult {
    let topic = topic_arg(p)?;
    #[derive(Serialize)]
    struct Channels {
        channels: Vec<String>,
    }
    let channels = subkeys(
        &l.db
            .read()
            .find_registrations(Category::Channel, topic, "*"),
    );
    Ok(Reply::json(&Channels { channels }))
}

/// One `/nodes` entry: the peer, its topics and whether it is tombstoned in each.
#[derive(Serialize)]
struct Node<'a> {
    remote_address: &'a str,
    hostname: &'a str,
    broadcast_address: &'a str,
    tcp_port: i64,
    http_port: i64,
    version: &'a str,
    topology_zone: &'a str,
    topology_region: &'a str,
    tombstones: Vec<bool>,
    topics: Vec<String>,
}

/// `{"producers":[...]}`: every identified nsqd not past the inactivity
/// timeout, tombstoned or not.
fn nodes(l: &Nsqlookupd) -> ApiResult {
    let now = unix_nanos();
    let lifetime = l.opts.tombstone_lifetime;
    let db = l.db.read();
    let peers = filter_by_active(
        db.find_producers(Category::Client, "", ""),
        now,
        l.opts.inactive_producer_timeout,
        Duration::ZERO,
    );
    let mut nodes = Vec::with_capacity(peers.len());
    for p in &peers {
        let topic_regs: Vec<Registration> = db
            .lookup_registrations(&p.peer.id)
            .into_iter()
            .filter(|r| r.is_match(Category::Topic, "*", ""))
            .collect();
        let topics = keys(&topic_regs);
        let tombstones = topics
            .iter()
            .map(|t| {
                db.find_producers(Category::Topic, t, "")
                    .iter()
                    .find(|tp| Arc::ptr_eq(&tp.peer, &p.peer))
                    .is_some_and(|tp| tp.is_tombstoned(now, lifetime))
            })
            .collect();
        let info = &p.peer.info;
        nodes.push(Node {
            remote_address: &info.remote_address,
            hostname: &info.hostname,
            broadcast_address: &info.broadcast_address,
            tcp_port: info.tcp_port,
            http_port: info.http_port,
            version: &info.version,
            topology_zone: &info.topology_zone,
            topology_region: &info.topology_region,
            tombstones,
            topics,
        });
    }
    #[derive(Serialize)]
    struct Nodes<'a> {
        producers: Vec<Node<'a>>,
    }
    Ok(Reply::json(&Nodes { producers: nodes }))
}

/// One producer entry in `/debug` (keys in Go's sorted map order).
#[derive(Serialize)]
struct DebugProducer<'a> {
    broadcast_address: &'a str,
    hostname: &'a str,
    http_port: i64,
    id: &'a str,
    last_update: i64,
    tcp_port: i64,
    tombstoned: bool,
    tombstoned_at: i64,
    version: &'a str,
}

/// The raw DB: `{"<category>:<key>:<subkey>":[producer, ...]}` for every
/// registration that has producers.
fn debug(l: &Nsqlookupd) -> ApiResult {
    let db = l.db.read();
    let mut doc: BTreeMap<String, Vec<DebugProducer>> = BTreeMap::new();
    for (r, producers) in db.iter() {
        for p in producers {
            let key = format!("{}:{}:{}", r.category.as_str(), r.key, r.subkey);
            let info = &p.peer.info;
            doc.entry(key).or_default().push(DebugProducer {
                broadcast_address: &info.broadcast_address,
                hostname: &info.hostname,
                http_port: info.http_port,
                id: &p.peer.id,
                last_update: p.peer.last_update(),
                tcp_port: info.tcp_port,
                tombstoned: p.tombstoned_at().is_some(),
                tombstoned_at: p.tombstoned_at().unwrap_or(GO_ZERO_TIME_UNIX_NANOS),
                version: &info.version,
            });
        }
    }
    Ok(Reply::json(&doc))
}

fn create_topic(l: &Nsqlookupd, p: &Params) -> ApiResult {
    let topic = topic_arg(p)?;
    if !is_valid_topic_name(topic) {
        return Err(ApiError::bad_request("INVALID_ARG_TOPIC"));
    }
    tracing::info!("DB: adding topic({topic})");
    l.db.write().add_registration(Registration::topic(topic));
    Ok(Reply::Empty)
}

/// Removes the topic and its channels (whoever produces them); always 200.
fn delete_topic(l: &Nsqlookupd, p: &Params) -> ApiResult {
    let topic = topic_arg(p)?;
    let mut db = l.db.write();
    for r in db.find_registrations(Category::Channel, topic, "*") {
        tracing::info!("DB: removing channel({}) from topic({topic})", r.subkey);
        db.remove_registration(&r);
    }
    for r in db.find_registrations(Category::Topic, topic, "") {
        tracing::info!("DB: removing topic({topic})");
        db.remove_registration(&r);
    }
    Ok(Reply::Empty)
}

/// Hides the producer `node` (`<broadcast_address>:<http_port>`) of a topic
/// from `/lookup` for the tombstone lifetime; always 200.
fn tombstone_topic_producer(l: &Nsqlookupd, p: &Params) -> ApiResult {
    let topic = topic_arg(p)?;
    let node = p
        .get("node")
        .ok_or(ApiError::bad_request("MISSING_ARG_NODE"))?;
    tracing::info!("DB: setting tombstone for producer@{node} of topic({topic})");
    l.db.write().tombstone(topic, node, unix_nanos());
    Ok(Reply::Empty)
}

fn create_channel(l: &Nsqlookupd, p: &Params) -> ApiResult {
    let (topic, channel) = p.topic_channel_args()?;
    let mut db = l.db.write();
    tracing::info!("DB: adding channel({channel}) in topic({topic})");
    db.add_registration(Registration::channel(topic, channel));
    tracing::info!("DB: adding topic({topic})");
    db.add_registration(Registration::topic(topic));
    Ok(Reply::Empty)
}

fn delete_channel(l: &Nsqlookupd, p: &Params) -> ApiResult {
    let (topic, channel) = p.topic_channel_args()?;
    let mut db = l.db.write();
    let registrations = db.find_registrations(Category::Channel, topic, channel);
    if registrations.is_empty() {
        return Err(ApiError::not_found("CHANNEL_NOT_FOUND"));
    }
    tracing::info!("DB: removing channel({channel}) from topic({topic})");
    for r in registrations {
        db.remove_registration(&r);
    }
    Ok(Reply::Empty)
}
