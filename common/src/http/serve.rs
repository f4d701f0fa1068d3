//! Serving an API until shutdown, then letting in-flight requests finish;
//! requests the server cannot read are answered in Go's `net/http` words.

use axum::serve::{Listener, ListenerExt};
use axum::Router;
use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    let listener = GoAnswers(listener).tap_io(|_| {});
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

/// Go's `net/http` answer to a request it cannot read (a malformed
/// `Content-Length`, a bad path escape, ...), after which it closes.
const GO_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request";
/// Its answer to a request head too large to read.
const GO_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large";

/// Go's words for `out` when it is hyper's answer to a request it cannot
/// parse (or [`unreadable_request`](super::route::unreadable_request)):
/// status line, `connection: close`, `content-length: 0`, `date`, no body.
/// hyper offers no hook for these answers, so they are replaced on the wire.
fn go_answer(out: &[u8]) -> Option<&'static [u8]> {
    let head = out.strip_suffix(b"\r\n\r\n")?;
    let (go, rest) = if let Some(rest) = head.strip_prefix(b"HTTP/1.1 400 Bad Request") {
        (GO_400, rest)
    } else {
        // hyper's 431 is also its answer to over 100 headers and to a
        // Content-Length of 2^64-2 or more, which Go reads or calls 400.
        let rest = head.strip_prefix(b"HTTP/1.1 431 Request Header Fields Too Large")?;
        (GO_431, rest)
    };
    let date = rest.strip_prefix(b"\r\nconnection: close\r\ncontent-length: 0\r\ndate: ")?;
    (!date.contains(&b'\n')).then_some(go)
}

/// A listener whose connections go through [`GoWire`].
struct GoAnswers<L>(L);

impl<L: Listener> Listener for GoAnswers<L> {
    type Io = GoWire<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        let wire = GoWire { io, pending: &[] };
        (wire, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that writes Go's answer in place of hyper's to a request
/// neither can read ([`go_answer`]); every other byte passes through.
struct GoWire<IO> {
    io: IO,
    /// What is left to write of Go's answer (hyper was told it is written).
    pending: &'static [u8],
}

impl<IO: AsyncWrite + Unpin> GoWire<IO> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending = &self.pending[n..];
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `out` as written when it is an answer to replace.
    fn replace(&mut self, cx: &mut Context<'_>, out: &[u8]) -> Option<Poll<io::Result<usize>>> {
        self.pending = go_answer(out)?;
        Some(match self.poll_pending(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // The rest goes out on the next write, flush or shutdown.
            _ => Poll::Ready(Ok(out.len())),
        })
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for GoWire<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for GoWire<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(done) = self.replace(cx, buf) {
            return done;
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if let Some(done) = self.replace(cx, first) {
                return done;
            }
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_answers_to_unreadable_requests_become_gos() {
        let hyper = |status: &str| {
            format!(
                "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\n\
                 date: Mon, 07 Dec 2026 23:08:06 GMT\r\n\r\n"
            )
        };
        assert_eq!(go_answer(hyper("400 Bad Request").as_bytes()), Some(GO_400));
        assert_eq!(
            go_answer(hyper("431 Request Header Fields Too Large").as_bytes()),
            Some(GO_431)
        );
        assert_eq!(go_answer(hyper("414 URI Too Long").as_bytes()), None);
        // A handler's own 400 (a body, a content type) passes through.
        let own = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json; charset=utf-8\r\n\
                   content-length: 25\r\ndate: Mon, 07 Dec 2026 23:08:06 GMT\r\n\r\n";
        assert_eq!(go_answer(own.as_bytes()), None);
        let with_body = hyper("400 Bad Request") + "x";
        assert_eq!(go_answer(with_body.as_bytes()), None);
    }

    #[tokio::test]
    async fn go_words_reach_the_socket_even_when_it_takes_them_piecemeal() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A 7-byte pipe forces partial writes of the replacement.
        let (client, server) = tokio::io::duplex(7);
        let mut wire = GoWire {
            io: server,
            pending: &[],
        };
        let reader = tokio::spawn(async move {
            let mut client = client;
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let hyper = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\
                      date: Mon, 07 Dec 2026 23:08:06 GMT\r\n\r\n";
        assert_eq!(wire.write(hyper).await.unwrap(), hyper.len());
        wire.shutdown().await.unwrap();
        drop(wire);
        assert_eq!(reader.await.unwrap(), GO_400);
    }
}
