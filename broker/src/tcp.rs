//! The TCP listener: reads the protocol magic and hands V2 connections over.

use crate::nsqd::Nsqd;
use crate::protocol::v2;
use bytes::BytesMut;
use nsq_common::wire::{put_frame, FRAME_TYPE_ERROR, MAGIC_V2};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Accepts until shutdown, then waits (bounded) for connections to close.
pub async fn serve(nsqd: Arc<Nsqd>, listener: TcpListener) {
    let mut shutdown = nsqd.shutdown_signal();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(handle(Arc::clone(&nsqd), stream));
                }
                Err(e) => {
                    tracing::error!("TCP: accept error - {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(
        "TCP: closing {}",
        nsqd.tcp_addr
            .get()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
    }
}

async fn handle(nsqd: Arc<Nsqd>, mut stream: TcpStream) {
    let mut input = BytesMut::with_capacity(64 * 1024);
    let magic = tokio::time::timeout(Duration::from_secs(60), async {
        while input.len() < 4 {
            if stream.read_buf(&mut input).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(magic, Ok(Ok(()))) {
        tracing::debug!("failed to read protocol version");
        return;
    }
    let rest = input.split_off(4);
    if &input[..] != MAGIC_V2 {
        let mut out = BytesMut::new();
        put_frame(&mut out, FRAME_TYPE_ERROR, b"E_BAD_PROTOCOL");
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
        tracing::error!(
            "client({}) bad protocol magic '{}'",
            stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            String::from_utf8_lossy(&input)
        );
        return;
    }
    v2::serve(nsqd, stream, rest).await;
}
