//! Placeholder until the HTTP API lands.
use crate::nsqd::Nsqd;
use std::sync::Arc;
pub async fn serve(nsqd: Arc<Nsqd>, _listener: tokio::net::TcpListener) {
    let mut s = nsqd.shutdown_signal();
    let _ = s.changed().await;
}
