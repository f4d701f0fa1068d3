//! The operator's own HTTP port:
//!
//! - `GET /metrics`: the Prometheus text exposition of [`Metrics`].
//! - `GET /healthz`: `200 ok` while the process serves at all (liveness).
//! - `GET /readyz`: `200 ok` when this replica is the leader (its controllers
//!   run), or a standby that reached the API server within the last lease
//!   duration and so can take over; `503` with the reason otherwise (starting,
//!   cut off from the API server, shutting down). See [`leader::readiness`].
//!   Standbys count as ready so a rolling update of several replicas is not
//!   stuck waiting for a pod that is, by design, idle.

use crate::leader;
use crate::metrics::Metrics;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Prometheus' text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The routes, over this process's metrics and leader state.
pub fn router(metrics: Arc<Metrics>, state: Arc<leader::State>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
                    metrics.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(move || async move { ready(&state) }))
}

fn ready(state: &leader::State) -> Response {
    match state.readiness() {
        Ok(()) => "ok\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// Serves [`router`] on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    state: Arc<leader::State>,
    shutdown: watch::Receiver<bool>,
) {
    nsq_common::http::serve(listener, router(metrics, state), shutdown, "HTTP").await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use nsq_common::http::client::{self, Timeouts};
    use std::time::Duration;

    #[tokio::test]
    async fn metrics_health_and_readiness_over_a_real_socket() {
        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(leader::State::new(Duration::from_secs(15)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), state, rx));
        let t = Timeouts::default();

        metrics.set_leader(false);
        let r = client::request("GET", &addr, "/metrics", t).await.unwrap();
        assert_eq!(r.status, 200);
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(body.contains("nsq_operator_leader 0"), "{body}");

        let r = client::request("GET", &addr, "/healthz", t).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"ok\n"[..]));

        // Starting: the lease has not been looked at yet.
        let r = client::request("GET", &addr, "/readyz", t).await.unwrap();
        assert_eq!(r.status, 503);

        let r = client::request("GET", &addr, "/nope", t).await.unwrap();
        assert_eq!(r.status, 404);

        let head = raw_get(&addr, "/metrics").await;
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\ncontent-type: text/plain; version=0.0.4\r\n"),
            "{head}"
        );

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }

    /// The raw response of a `GET`, headers included.
    async fn raw_get(addr: &str, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }
}
