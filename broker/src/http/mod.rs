//! nsqd's HTTP API on axum/hyper: the same paths, methods, status codes, error
//! strings, headers and JSON as nsqd 1.3.
//!
//! Routing copies nsqd's router (httprouter) rather than axum's: a wrong method
//! is `405 {"message":"METHOD_NOT_ALLOWED"}` with an `Allow` header, an unknown
//! path `404 {"message":"NOT_FOUND"}`, `OPTIONS` lists the allowed methods, and
//! a path that differs from a route only by a trailing slash or letter case is
//! redirected. Handlers live by concern:
//!
//! - `/ping`, `/info`, `/stats` in [`node`] (shapes in [`crate::stats`]);
//! - `/pub`, `/mpub` in [`publish`];
//! - `/topic/*`, `/channel/*` in [`admin`];
//! - `/config/:opt` in [`config`];
//! - query strings parsed as Go does in [`params`], nsqd's response shapes in
//!   [`response`].

mod admin;
mod config;
mod node;
pub mod params;
pub mod publish;
pub mod response;
#[cfg(test)]
mod tests;

use crate::nsqd::Nsqd;
use crate::stats::go_duration;
use crate::topic::Topic;
use admin::{ChannelOp, TopicOp};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{HeaderValue, ALLOW, CONTENT_TYPE, LOCATION};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::Router;
use nsq_common::names::is_valid_topic_name;
use params::Params;
use response::{plain_text, v1, ApiError, X_NSQ_CONTENT_TYPE};
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// How long in-flight requests may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves the API on `listener` until the broker shuts down, then lets in-flight
/// requests finish (bounded by [`SHUTDOWN_GRACE`]).
pub async fn serve(nsqd: Arc<Nsqd>, listener: TcpListener) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let app = router(Arc::clone(&nsqd)).into_make_service_with_connect_info::<SocketAddr>();
    let mut stop = nsqd.shutdown_signal();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { exiting(&mut stop).await });
    let mut server = std::pin::pin!(server.into_future());
    let mut stop = nsqd.shutdown_signal();
    tokio::select! {
        res = &mut server => {
            if let Err(e) = res {
                tracing::error!("HTTP: serve() - {e}");
            }
        }
        () = exiting(&mut stop) => {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
                tracing::warn!("HTTP: requests still running after {SHUTDOWN_GRACE:?}; closing");
            }
        }
    }
    tracing::info!("HTTP: closing {addr}");
}

async fn exiting(signal: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = signal.wait_for(|&exiting| exiting).await;
}

/// The API as an axum router (also what tests drive).
pub fn router(nsqd: Arc<Nsqd>) -> Router {
    Router::new().fallback(dispatch).with_state(nsqd)
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
}

struct Route {
    method: &'static str,
    /// A trailing `/:opt` matches one non-empty path segment.
    path: &'static str,
    endpoint: Endpoint,
}

const fn route(method: &'static str, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

/// nsqd 1.3's routes (its debug/pprof endpoints are not offered), plus `HEAD /ping`.
const ROUTES: &[Route] = &[
    route("GET", "/ping", Endpoint::Ping),
    route("HEAD", "/ping", Endpoint::Ping),
    route("GET", "/info", Endpoint::Info),
    route("POST", "/pub", Endpoint::Pub),
    route("POST", "/mpub", Endpoint::Mpub),
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
];

impl Route {
    fn matches(&self, path: &str) -> bool {
        match self.path.strip_suffix(":opt") {
            Some(prefix) => path
                .strip_prefix(prefix)
                .is_some_and(|opt| !opt.is_empty() && !opt.contains('/')),
            None => path == self.path,
        }
    }

    /// The route's spelling of `path` when they differ only in letter case.
    fn fix_case(&self, path: &str) -> Option<String> {
        match self.path.strip_suffix(":opt") {
            Some(prefix) => {
                let head = path.get(..prefix.len())?;
                let opt = &path[prefix.len()..];
                (head.eq_ignore_ascii_case(prefix) && !opt.is_empty() && !opt.contains('/'))
                    .then(|| format!("{prefix}{opt}"))
            }
            None => path
                .eq_ignore_ascii_case(self.path)
                .then(|| self.path.to_owned()),
        }
    }

    /// nsqd logs every request except publishes.
    fn logged(&self) -> bool {
        !matches!(self.endpoint, Endpoint::Pub | Endpoint::Mpub)
    }
}

async fn dispatch(State(nsqd): State<Arc<Nsqd>>, req: Request) -> Response {
    CatchPanic(Box::pin(handle(nsqd, req))).await
}

async fn handle(nsqd: Arc<Nsqd>, req: Request) -> Response {
    let opts = nsqd.opts();
    if opts.tls_required && !opts.tls_required_except_http {
        return tls_required(&opts.https_address);
    }
    drop(opts);
    let start = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let log = |resp: &Response| {
        tracing::info!(
            "{} {} {} ({}) {}",
            resp.status().as_u16(),
            method,
            uri.path_and_query().map_or("/", |p| p.as_str()),
            remote,
            go_duration(i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX))
        );
    };
    // Like Go, route on the decoded path.
    let Some(path) = percent_decode(uri.path()) else {
        return bad_request();
    };
    let candidates: Vec<&Route> = ROUTES.iter().filter(|r| r.matches(&path)).collect();
    if let Some(r) = candidates.iter().find(|r| r.method == method.as_str()) {
        let logged = r.logged();
        let resp = call(r.endpoint, nsqd, req, &path).await;
        if logged {
            log(&resp);
        }
        return resp;
    }
    let allow = allow_header(&candidates);
    if method == Method::OPTIONS && !candidates.is_empty() {
        let mut resp = Response::new(Body::empty());
        set_header(&mut resp, ALLOW, &allow);
        return resp;
    }
    if let Some(resp) = redirect(&method, &path, uri.query()) {
        return resp;
    }
    let resp = if candidates.is_empty() {
        v1(Err(ApiError::not_found("NOT_FOUND")))
    } else {
        let mut resp = v1(Err(ApiError::new(405, "METHOD_NOT_ALLOWED")));
        set_header(&mut resp, ALLOW, &allow);
        resp
    };
    log(&resp);
    resp
}

async fn call(endpoint: Endpoint, nsqd: Arc<Nsqd>, req: Request, path: &str) -> Response {
    let params = Params::from_query(req.uri().query());
    match endpoint {
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
        Endpoint::Config => {
            let opt = path.strip_prefix("/config/").unwrap_or_default();
            v1(if req.method() == Method::PUT {
                config::put(Arc::clone(&nsqd), opt, req.into_body()).await
            } else {
                config::get(&nsqd, opt)
            })
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

/// httprouter's `Allow` value: the path's methods, then `OPTIONS`.
fn allow_header(candidates: &[&Route]) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for r in candidates {
        if !methods.contains(&r.method) {
            methods.push(r.method);
        }
    }
    methods.push("OPTIONS");
    methods.join(", ")
}

/// httprouter's fixes for a path no route matches: toggle a trailing slash, or
/// clean the path and ignore letter case. GET redirects permanently (301), other
/// methods temporarily (307) so the body is sent again.
fn redirect(method: &Method, path: &str, query: Option<&str>) -> Option<Response> {
    let m = method.as_str();
    // httprouter only tries this for methods it has routes for (our HEAD is extra).
    if path == "/" || m == "HEAD" || !ROUTES.iter().any(|r| r.method == m) {
        return None;
    }
    let routes = || ROUTES.iter().filter(|r| r.method == m);
    let toggle = |p: &str| match p.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => format!("{p}/"),
    };
    let status = if m == "GET" {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::TEMPORARY_REDIRECT
    };
    let toggled = toggle(path);
    if routes().any(|r| r.matches(&toggled)) {
        return Some(redirect_response(status, m, &toggled, query));
    }
    let cleaned = clean_path(path);
    let toggled = toggle(&cleaned);
    let fixed = [cleaned, toggled]
        .iter()
        .find_map(|p| routes().find_map(|r| r.fix_case(p)))?;
    Some(redirect_response(status, m, &fixed, query))
}

/// Go's `http.Redirect`: a `Location`, and for GET a tiny HTML body.
fn redirect_response(
    status: StatusCode,
    method: &str,
    path: &str,
    query: Option<&str>,
) -> Response {
    let mut url = percent_encode_path(path);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    let body = if method == "GET" {
        let text = status.canonical_reason().unwrap_or_default();
        Body::from(format!("<a href=\"{}\">{text}</a>.\n\n", html_escape(&url)))
    } else {
        Body::empty()
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    set_header(&mut resp, LOCATION, &url);
    if method == "GET" {
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    resp
}

/// httprouter's `CleanPath`: resolve `.`, `..` and repeated slashes, keep a
/// trailing slash.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if out.len() > 1 && (p.ends_with('/') || p.ends_with("/.") || p.ends_with("/..")) {
        out.push('/');
    }
    out
}

/// Go's URL path decoding (`%XX` only; `+` stays); `None` for a bad escape.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn percent_encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for &b in p.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

fn set_header(resp: &mut Response, name: axum::http::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Go's answer to a request URL it cannot parse.
fn bad_request() -> Response {
    let mut resp = Response::new(Body::from("400 Bad Request"));
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// nsqd's refusal of plain HTTP when `--tls-required` is set.
fn tls_required(https_address: &str) -> Response {
    let port = https_address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(0);
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

/// nsqd's panic handler: a handler that panics answers `500 INTERNAL_ERROR`
/// instead of dropping the connection.
struct CatchPanic(Pin<Box<dyn Future<Output = Response> + Send>>);

impl Future for CatchPanic {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(p) => p,
            Err(_) => {
                tracing::error!("panic in HTTP handler");
                Poll::Ready(v1(Err(ApiError::internal())))
            }
        }
    }
}
