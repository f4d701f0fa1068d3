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
    let addr =
        |a: std::io::Result<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let remote = addr(stream.peer_addr());
    tracing::info!("TCP: new client({remote})");
    // Small: the magic, and often IDENTIFY; the V2 loop sizes reads from here.
    let mut input = BytesMut::with_capacity(1024);
    let magic = tokio::time::timeout(Duration::from_secs(60), async {
        while input.len() < 4 {
            if stream.read_buf(&mut input).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
    if let Err(e) = magic {
        // Go's io.ReadFull: "EOF" when nothing came, "unexpected EOF" for part.
        let e = match e.kind() {
            std::io::ErrorKind::UnexpectedEof if input.is_empty() => "EOF".to_owned(),
            std::io::ErrorKind::UnexpectedEof => "unexpected EOF".to_owned(),
            _ => go_net_error("read", &addr(stream.local_addr()), &remote, &e),
        };
        tracing::error!("failed to read protocol version - {e}");
        return;
    }
    let rest = input.split_off(4);
    let magic = String::from_utf8_lossy(&input).into_owned();
    tracing::info!("CLIENT({remote}): desired protocol magic '{magic}'");
    if &input[..] != MAGIC_V2 {
        let mut out = BytesMut::new();
        put_frame(&mut out, FRAME_TYPE_ERROR, b"E_BAD_PROTOCOL");
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
        tracing::error!("client({remote}) bad protocol magic '{magic}'");
        return;
    }
    v2::serve(nsqd, stream, rest).await;
}

/// A socket error as Go's `net.OpError` words it, e.g.
/// `read tcp 127.0.0.1:4150->127.0.0.1:5555: i/o timeout` or
/// `write tcp ...: write: broken pipe`, for nsqd's log lines.
pub(crate) fn go_net_error(op: &str, local: &str, remote: &str, e: &std::io::Error) -> String {
    let cause = if e.kind() == std::io::ErrorKind::TimedOut {
        "i/o timeout".to_owned()
    } else if let Some(code) = e.raw_os_error() {
        // Go's errno texts are the C library's, lower-cased.
        let text = std::io::Error::from_raw_os_error(code).to_string();
        let text = text.split(" (os error").next().unwrap_or_default();
        let mut chars = text.chars();
        let first = chars.next().map(|c| c.to_ascii_lowercase());
        format!(
            "{op}: {}{}",
            first.map(String::from).unwrap_or_default(),
            chars.as_str()
        )
    } else {
        e.to_string()
    };
    format!("{op} tcp {local}->{remote}: {cause}")
}

#[cfg(test)]
mod tests {
    use super::go_net_error;
    use std::io::{Error, ErrorKind};

    #[test]
    fn socket_errors_read_like_gos() {
        let (l, r) = ("127.0.0.1:4150", "127.0.0.1:5555");
        assert_eq!(
            go_net_error("read", l, r, &Error::from(ErrorKind::TimedOut)),
            "read tcp 127.0.0.1:4150->127.0.0.1:5555: i/o timeout"
        );
        assert_eq!(
            go_net_error("read", l, r, &Error::from_raw_os_error(libc::ECONNRESET)),
            "read tcp 127.0.0.1:4150->127.0.0.1:5555: read: connection reset by peer"
        );
        assert_eq!(
            go_net_error("write", l, r, &Error::from_raw_os_error(libc::EPIPE)),
            "write tcp 127.0.0.1:4150->127.0.0.1:5555: write: broken pipe"
        );
    }
}
