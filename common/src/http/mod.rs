//! The HTTP machinery nsqd and nsqlookupd share (Go NSQ's `http_api` package
//! plus its router), on axum/hyper. An application supplies only its route
//! table and handlers.
//!
//! - [`route`](mod@route): a route table with httprouter's semantics (404/405/`Allow`,
//!   `OPTIONS`, trailing-slash and case redirects, `:name` segments),
//!   [`dispatch`] of one request through it with NSQ's request log line and
//!   panic recovery, and [`router`] wrapping that as an axum [`Router`].
//! - [`params`]: query strings parsed as Go's `url.ParseQuery`.
//! - [`response`]: NSQ's `V1` and `PlainText` responses ([`ApiError`],
//!   [`Reply`], [`v1`], [`plain_text`]) and Go-style JSON ([`go_json`]).
//! - [`panic`](mod@panic): [`CatchPanic`], a future that turns a panic into an error.
//! - [`serve`](mod@serve): serving until shutdown, then a bounded grace period;
//!   requests the server cannot read are answered as Go's `net/http` does.
//! - [`client`]: a small HTTP/1.1 client for NSQ's APIs (nsqd, nsqlookupd).
//!
//! ```ignore
//! const ROUTES: &[Route<Endpoint>] = &[route("GET", "/ping", Endpoint::Ping)];
//! let app = router(ROUTES, state, |state, matched, req| async move { ... });
//! serve(listener, app, shutdown_rx, "HTTP").await;
//! ```

pub mod client;
pub mod panic;
pub mod params;
pub mod response;
pub mod route;
pub mod serve;
#[cfg(test)]
mod tests;

pub use panic::CatchPanic;
pub use params::Params;
pub use response::{go_json, plain_text, v1, ApiError, ApiResult, Reply, X_NSQ_CONTENT_TYPE};
pub use route::{dispatch, route, Matched, Route};
pub use serve::{serve, SHUTDOWN_GRACE};

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use std::future::Future;

/// An axum router answering every request through [`dispatch`] over `routes`,
/// calling `handler(state, matched, request)` for a match.
pub fn router<S, E, H, Fut>(routes: &'static [Route<E>], state: S, handler: H) -> Router
where
    S: Clone + Send + Sync + 'static,
    E: Copy + Send + Sync + 'static,
    H: Fn(S, Matched<E>, Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    Router::new().fallback(move |req: Request| {
        let (state, handler) = (state.clone(), handler.clone());
        async move { dispatch(routes, req, move |m, req| handler(state, m, req)).await }
    })
}
