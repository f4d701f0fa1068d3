//! A route table matched the way NSQ's router (julienschmidt/httprouter) matches,
//! rather than the way axum does:
//!
//! - a request Go's `net/http` would not read (a bad escape in the path, a
//!   `Content-Length` past 2^63-1) is refused before routing, as
//!   [`unreadable_request`], and the connection closes;
//! - routing is on the percent-decoded path;
//! - an unknown path is `404 {"message":"NOT_FOUND"}`;
//! - a known path with the wrong method is `405 {"message":"METHOD_NOT_ALLOWED"}`
//!   with an `Allow` header, and `OPTIONS` answers 200 with that header;
//! - a path that differs from a route only by a trailing slash, by `.`/`..`/`//`
//!   or by letter case is redirected (301 for GET, 307 otherwise);
//! - every answer is logged as NSQ's `http_api.Log` does
//!   (`200 GET /ping (127.0.0.1:5555) 12.3µs`), except routes marked
//!   [`Route::unlogged`];
//! - a handler that panics answers `500 {"message":"INTERNAL_ERROR"}`.
//!
//! A path segment `:name` in a route matches one non-empty segment, read back
//! with [`Matched::param`].

use super::panic::CatchPanic;
use super::response::{v1, ApiError};
use crate::flags::format_duration;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::header::{
    HeaderName, HeaderValue, ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION,
};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

/// One entry of a route table: a method, a path pattern and what the
/// application calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<E> {
    pub method: &'static str,
    /// Segments are literal, or `:name` for one non-empty segment.
    pub path: &'static str,
    pub endpoint: E,
    logged: bool,
    extra: bool,
}

/// A logged route that NSQ's own router also has.
pub const fn route<E: Copy>(method: &'static str, path: &'static str, endpoint: E) -> Route<E> {
    Route {
        method,
        path,
        endpoint,
        logged: true,
        extra: false,
    }
}

impl<E: Copy> Route<E> {
    /// Answers of this route are not logged (nsqd's `/pub` and `/mpub`).
    pub const fn unlogged(self) -> Route<E> {
        Route {
            logged: false,
            ..self
        }
    }

    /// A route the Go router does not have (e.g. `HEAD /ping`): it is served and
    /// listed in `Allow`, but does not change which requests get redirected.
    pub const fn extra(self) -> Route<E> {
        Route {
            extra: true,
            ..self
        }
    }
}

impl<E> Route<E> {
    pub fn is_logged(&self) -> bool {
        self.logged
    }

    /// The `:name` values when `path` matches this route.
    fn captures(&self, path: &str) -> Option<Vec<(&'static str, String)>> {
        let mut params = Vec::new();
        let mut want = self.path.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return Some(params),
                (Some(w), Some(g)) => match w.strip_prefix(':') {
                    Some(name) if !g.is_empty() => params.push((name, g.to_owned())),
                    Some(_) => return None,
                    None if w == g => {}
                    None => return None,
                },
                _ => return None,
            }
        }
    }

    fn matches(&self, path: &str) -> bool {
        self.captures(path).is_some()
    }

    /// The route's spelling of `path` when they differ only in letter case.
    fn fix_case(&self, path: &str) -> Option<String> {
        let want: Vec<&str> = self.path.split('/').collect();
        let got: Vec<&str> = path.split('/').collect();
        if want.len() != got.len() {
            return None;
        }
        let mut fixed = Vec::with_capacity(want.len());
        for (w, g) in want.iter().zip(&got) {
            if w.starts_with(':') {
                if g.is_empty() {
                    return None;
                }
                fixed.push(*g);
            } else if w.eq_ignore_ascii_case(g) {
                fixed.push(*w);
            } else {
                return None;
            }
        }
        Some(fixed.join("/"))
    }
}

/// The route a request matched, with its decoded path and `:name` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<E> {
    pub endpoint: E,
    /// The percent-decoded request path.
    pub path: String,
    params: Vec<(&'static str, String)>,
}

impl<E> Matched<E> {
    /// The value of the route's `:name` segment.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Routes `req` through `routes` and calls `handler` for a match; everything
/// else (404, 405, OPTIONS, redirects, bad paths) is answered here. The
/// handler's panics become `500 INTERNAL_ERROR`.
pub async fn dispatch<E, H, Fut>(routes: &[Route<E>], req: Request, handler: H) -> Response
where
    E: Copy,
    H: FnOnce(Matched<E>, Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let start = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let log = |resp: &Response| {
        let elapsed = format_duration(start.elapsed());
        tracing::info!(
            "{} {} {} ({}) {}",
            resp.status().as_u16(),
            method,
            uri.path_and_query().map_or("/", |p| p.as_str()),
            remote,
            elapsed
        );
    };
    if !readable_length(&req) {
        return unreadable_request();
    }
    // Like Go, route on the decoded path.
    let Some(path) = percent_decode(uri.path()) else {
        return unreadable_request();
    };
    let candidates: Vec<&Route<E>> = routes.iter().filter(|r| r.matches(&path)).collect();
    if let Some(r) = candidates.iter().find(|r| r.method == method.as_str()) {
        let logged = r.logged;
        let matched = Matched {
            endpoint: r.endpoint,
            params: r.captures(&path).unwrap_or_default(),
            path,
        };
        let resp = match CatchPanic::new(handler(matched, req)).await {
            Ok(resp) => {
                if logged {
                    log(&resp);
                }
                resp
            }
            Err(panic) => {
                tracing::error!("panic in HTTP handler - {panic}");
                let resp = v1(Err(ApiError::internal()));
                log(&resp);
                resp
            }
        };
        return resp;
    }
    let allow = allow_header(&candidates);
    if method == Method::OPTIONS && !candidates.is_empty() {
        let mut resp = Response::new(Body::empty());
        set_header(&mut resp, ALLOW, &allow);
        return resp;
    }
    if let Some(resp) = redirect(routes, &method, &path, uri.query()) {
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

/// httprouter's `Allow` value: the path's methods, then `OPTIONS`.
fn allow_header<E>(candidates: &[&Route<E>]) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for r in candidates {
        if !methods.contains(&r.method) {
            methods.push(r.method);
        }
    }
    methods.push("OPTIONS");
    methods.join(", ")
}

/// httprouter's fixes for a path no route of this method matches: toggle a
/// trailing slash, or clean the path and ignore letter case. GET redirects
/// permanently (301), other methods temporarily (307) so the body is sent again.
/// Only methods the Go router has routes for are redirected.
fn redirect<E>(
    routes: &[Route<E>],
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Option<Response> {
    let m = method.as_str();
    let routes = || routes.iter().filter(|r| r.method == m && !r.extra);
    if path == "/" || m == "CONNECT" || routes().next().is_none() {
        return None;
    }
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
pub fn clean_path(p: &str) -> String {
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
pub fn percent_decode(s: &str) -> Option<String> {
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

/// Sets a header, skipping values that are not valid header text.
pub fn set_header(resp: &mut Response, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Whether Go would read this request's `Content-Length`
/// (`strconv.ParseUint(v, 10, 63)`). hyper has refused what is not a number,
/// and conflicting values, but takes up to 2^64-3; a body that long is never
/// coming, and a handler would wait for it.
fn readable_length(req: &Request) -> bool {
    req.headers().get_all(CONTENT_LENGTH).iter().all(|v| {
        let v = v.as_bytes().trim_ascii();
        // Digits only: Rust's integer parsing would take a `+`.
        !v.is_empty()
            && v.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(v).is_ok_and(|v| v.parse::<i64>().is_ok())
    })
}

/// The answer to a request Go's `net/http` cannot read, given before any
/// handler: Go's plain-text 400, closing the connection. (What hyper cannot
/// parse at all, it answers with a bodiless 400 and closes.)
pub fn unreadable_request() -> Response {
    let mut resp = Response::new(Body::from("400 Bad Request"));
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_match_one_non_empty_segment() {
        let r = route("GET", "/config/:opt", ());
        assert_eq!(
            r.captures("/config/log_level"),
            Some(vec![("opt", "log_level".to_owned())])
        );
        for miss in ["/config/", "/config", "/config/a/b", "/Config/x"] {
            assert_eq!(r.captures(miss), None, "{miss}");
        }
        let r = route("GET", "/a/:x/b/:y", ());
        assert_eq!(
            r.captures("/a/1/b/2"),
            Some(vec![("x", "1".to_owned()), ("y", "2".to_owned())])
        );
        assert_eq!(r.fix_case("/A/Q/B/z").as_deref(), Some("/a/Q/b/z"));
        assert_eq!(route("GET", "/ping", ()).fix_case("/PING/"), None);
    }

    #[test]
    fn content_lengths_are_read_as_gos_parse_uint_to_63_bits() {
        let req = |lengths: &[&str]| {
            let mut b = axum::http::Request::builder();
            for l in lengths {
                b = b.header(CONTENT_LENGTH, *l);
            }
            b.body(Body::empty()).unwrap()
        };
        for ok in [&[][..], &["0"], &[" 5 "], &["9223372036854775807"]] {
            assert!(readable_length(&req(ok)), "{ok:?}");
        }
        for bad in [
            &["9223372036854775808"][..],
            &["+5"],
            &["-1"],
            &[""],
            &["5", "x"],
        ] {
            assert!(!readable_length(&req(bad)), "{bad:?}");
        }
    }

    #[test]
    fn paths_clean_and_decode_like_go() {
        assert_eq!(clean_path("//ping/"), "/ping/");
        assert_eq!(clean_path("/a/./b/../c"), "/a/c");
        assert_eq!(clean_path("/.."), "/");
        assert_eq!(clean_path("/a/.."), "/");
        assert_eq!(clean_path("/a/b/.."), "/a/");
        assert_eq!(percent_decode("/p%69ng").as_deref(), Some("/ping"));
        assert_eq!(percent_decode("/a+b").as_deref(), Some("/a+b"));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%4"), None);
        assert_eq!(percent_encode_path("/a b#"), "/a%20b%23");
    }
}
