//! Serving an API until shutdown, then letting in-flight requests finish.

use axum::serve::{Listener, ListenerExt};
use axum::Router;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// How long in-flight requests may take to finish once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` (a `TcpListener`, or any listener of streams
/// from socket addresses, such as a TLS one) until `shutdown` turns `true`,
/// then stops accepting and waits (at most [`SHUTDOWN_GRACE`]) for requests
/// in flight. Handlers see the peer as `ConnectInfo<SocketAddr>`. Logs
/// `<proto>: closing <addr>` at the end, as NSQ's `http_api.Serve` does.
pub async fn serve<L>(listener: L, app: Router, shutdown: watch::Receiver<bool>, proto: &str)
where
    L: Listener<Addr = SocketAddr>,
{
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // A tapped listener is what carries the peer address for any listener type.
    let listener = listener.tap_io(|_| {});
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    let mut graceful = shutdown.clone();
    let server = axum::serve(listener, make)
        .with_graceful_shutdown(async move { exiting(&mut graceful).await });
    let mut server = std::pin::pin!(server.into_future());
    let mut stop = shutdown;
    tokio::select! {
        res = &mut server => {
            if let Err(e) = res {
                tracing::error!("{proto}: serve() - {e}");
            }
        }
        () = exiting(&mut stop) => {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
                tracing::warn!("{proto}: requests still running after {SHUTDOWN_GRACE:?}; closing");
            }
        }
    }
    tracing::info!("{proto}: closing {addr}");
}

/// Resolves once the flag is `true` (or its sender is gone).
async fn exiting(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|&exiting| exiting).await;
}
