//! nsqd's HTTP API: the same paths, methods, status codes, error strings,
//! headers and JSON as nsqd 1.3.
//!
//! The router, query parsing, V1 responses, request logging, panic recovery
//! and serving are NSQ's shared `http_api` machinery in [`nsq_common::http`];
//! this module holds nsqd's route table and handlers, by concern:
//!
//! - `/ping`, `/info`, `/stats` in [`node`] (shapes in [`crate::stats`]);
//! - `/pub`, `/mpub` in [`publish`];
//! - `/topic/*`, `/channel/*` in [`admin`];
//! - `/config/:opt` in [`config`];
//! - `/metrics` (not in nsqd) from [`crate::metrics`].
//!
//! The same API is served over HTTPS ([`https`]) when TLS is configured;
//! `--tls-required=true` turns plain HTTP away as nsqd does.

mod admin;
mod config;
pub mod https;
mod node;
pub mod publish;
#[cfg(test)]
mod tests;

use crate::nsqd::Nsqd;
use crate::topic::Topic;
use admin::{ChannelOp, TopicOp};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{HeaderValue, CONTENT_TYPE};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::Router;
use nsq_common::http::{
    dispatch, plain_text, route, v1, ApiError, Matched, Params, Route, X_NSQ_CONTENT_TYPE,
};
use nsq_common::names::is_valid_topic_name;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Serves the API on `listener` until the broker shuts down, then lets in-flight
/// requests finish (bounded by [`nsq_common::http::SHUTDOWN_GRACE`]).
pub async fn serve(nsqd: Arc<Nsqd>, listener: TcpListener) {
    let shutdown = nsqd.shutdown_signal();
    nsq_common::http::serve(listener, router(nsqd), shutdown, "HTTP").await;
}

/// The same API over TLS on `--https-address`.
pub async fn serve_tls(nsqd: Arc<Nsqd>, listener: TcpListener, acceptor: TlsAcceptor) {
    let shutdown = nsqd.shutdown_signal();
    let tls = https::TlsListener::new(listener, acceptor, nsqd.shutdown_signal());
    let app = Router::new().fallback(handle).with_state((nsqd, true));
    nsq_common::http::serve(tls, app, shutdown, "HTTPS").await;
}

/// The API as an axum router for plain HTTP (also what tests drive).
pub fn router(nsqd: Arc<Nsqd>) -> Router {
    Router::new().fallback(handle).with_state((nsqd, false))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Ping,
    Info,
    Pub,
    Mpub,
    Stats,
    Topic(TopicOp),
    Channel(ChannelOp),
    Config,
    Metrics,
}

/// nsqd 1.3's routes (its debug/pprof endpoints are not offered), plus `HEAD /ping`
/// and `GET /metrics` (not logged: Prometheus polls it).
/// nsqd logs every request except publishes.
const ROUTES: &[Route<Endpoint>] = &[
    route("GET", "/ping", Endpoint::Ping),
    route("HEAD", "/ping", Endpoint::Ping).extra(),
    route("GET", "/info", Endpoint::Info),
    route("POST", "/pub", Endpoint::Pub).unlogged(),
    route("POST", "/mpub", Endpoint::Mpub).unlogged(),
    route("GET", "/stats", Endpoint::Stats),
    route("POST", "/topic/create", Endpoint::Topic(TopicOp::Create)),
    route("POST", "/topic/delete", Endpoint::Topic(TopicOp::Delete)),
    route("POST", "/topic/empty", Endpoint::Topic(TopicOp::Empty)),
    route("POST", "/topic/pause", Endpoint::Topic(TopicOp::Pause)),
    route("POST", "/topic/unpause", Endpoint::Topic(TopicOp::Unpause)),
    route(
        "POST",
        "/channel/create",
        Endpoint::Channel(ChannelOp::Create),
    ),
    route(
        "POST",
        "/channel/delete",
        Endpoint::Channel(ChannelOp::Delete),
    ),
    route(
        "POST",
        "/channel/empty",
        Endpoint::Channel(ChannelOp::Empty),
    ),
    route(
        "POST",
        "/channel/pause",
        Endpoint::Channel(ChannelOp::Pause),
    ),
    route(
        "POST",
        "/channel/unpause",
        Endpoint::Channel(ChannelOp::Unpause),
    ),
    route("GET", "/config/:opt", Endpoint::Config),
    route("PUT", "/config/:opt", Endpoint::Config),
    route("GET", "/metrics", Endpoint::Metrics)
        .extra()
        .unlogged(),
];

/// `secure` is true on the HTTPS listener.
async fn handle(State((nsqd, secure)): State<(Arc<Nsqd>, bool)>, req: Request) -> Response {
    let opts = nsqd.opts();
    if !secure && opts.tls_required && !opts.tls_required_except_http {
        return tls_required(nsqd.https_addr.get().map_or(0, SocketAddr::port));
    }
    drop(opts);
    dispatch(ROUTES, req, |m, req| call(m, nsqd, req)).await
}

async fn call(m: Matched<Endpoint>, nsqd: Arc<Nsqd>, req: Request) -> Response {
    let params = Params::from_query(req.uri().query());
    match m.endpoint {
        Endpoint::Ping => plain_text(node::ping(&nsqd)),
        Endpoint::Info => v1(node::info(&nsqd)),
        Endpoint::Pub => v1(publish::publish(nsqd, req).await),
        Endpoint::Mpub => v1(publish::multi_publish(nsqd, req).await),
        Endpoint::Stats => v1(params.and_then(|p| node::stats(&nsqd, &p))),
        Endpoint::Topic(op) => v1(match params {
            Ok(p) => admin::topic(nsqd, op, p).await,
            Err(e) => Err(e),
        }),
        Endpoint::Channel(op) => v1(match params {
            Ok(p) => admin::channel(nsqd, op, p).await,
            Err(e) => Err(e),
        }),
        Endpoint::Metrics => metrics(nsqd).await,
        Endpoint::Config => {
            let opt = m.param("opt").unwrap_or_default();
            v1(if req.method() == Method::PUT {
                config::put(Arc::clone(&nsqd), opt, req.into_body()).await
            } else {
                config::get(&nsqd, opt)
            })
        }
    }
}

/// Prometheus' scrape, built off the async threads so a large broker's
/// formatting never delays message flow.
async fn metrics(nsqd: Arc<Nsqd>) -> Response {
    match tokio::task::spawn_blocking(move || crate::metrics::render(&nsqd)).await {
        Ok(text) => {
            let mut resp = Response::new(Body::from(text));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            resp
        }
        Err(e) => {
            tracing::error!("panic in /metrics - {e}");
            v1(Err(ApiError::internal()))
        }
    }
}

/// nsqd's `getTopicFromQuery`: the named topic, created if missing.
async fn topic_from_query(nsqd: &Arc<Nsqd>, params: &Params) -> Result<Arc<Topic>, ApiError> {
    let name = params
        .get("topic")
        .ok_or(ApiError::bad_request("MISSING_ARG_TOPIC"))?;
    if !is_valid_topic_name(name) {
        return Err(ApiError::bad_request("INVALID_TOPIC"));
    }
    if let Some(t) = nsqd.existing_topic(name) {
        return Ok(t);
    }
    let (nsqd, name) = (Arc::clone(nsqd), name.to_owned());
    blocking(move || Ok(nsqd.get_topic(&name))).await
}

/// Runs work that touches the disk (metadata, queue files) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!("panic in HTTP handler - {e}");
        Err(ApiError::internal())
    })
}

/// nsqd's refusal of plain HTTP when `--tls-required` is set, naming the
/// HTTPS port it listens on (0 when none).
fn tls_required(port: u16) -> Response {
    let mut resp = Response::new(Body::from(format!(
        r#"{{"message": "TLS_REQUIRED", "https_port": {port}}}"#
    )));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    let h = resp.headers_mut();
    h.insert(
        X_NSQ_CONTENT_TYPE,
        HeaderValue::from_static("nsq; version=1.0"),
    );
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}
