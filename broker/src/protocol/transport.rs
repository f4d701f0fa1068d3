//! A V2 connection's byte stream: plain TCP or TLS, optionally compressed
//! (snappy or deflate) above it, in nsqd's order. The connection task reads
//! plaintext into its input buffer and writes plaintext from its output
//! buffer; the compressed bytes live in buffers owned here and reused for the
//! connection's life, so compression costs no allocation per message.

use crate::tls::TlsInfo;
use bytes::{Buf, BytesMut};
use nsq_common::compress::Codec;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Compressed bytes are read in pieces of this size.
const RAW_CHUNK: usize = 16 * 1024;

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<Rewind>>),
    /// Only while the TLS handshake holds the socket.
    Upgrading,
}

pub struct Transport {
    stream: Stream,
    codec: Codec,
    /// Compressed bytes read but not yet decoded (compression only).
    raw: BytesMut,
}

impl Transport {
    pub fn new(tcp: TcpStream) -> Self {
        Transport {
            stream: Stream::Plain(tcp),
            codec: Codec::None,
            raw: BytesMut::new(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    pub fn is_compressed(&self) -> bool {
        !self.codec.is_none()
    }

    /// Reads plaintext into `input`; 0 means the peer closed. Cancel-safe:
    /// everything read is kept in `self` or `input` before any await.
    pub async fn read(&mut self, input: &mut BytesMut) -> io::Result<usize> {
        loop {
            if self.codec.is_none() {
                return self.stream.read_buf(input).await;
            }
            let decoded = self.codec.decode(&mut self.raw, input)?;
            if decoded > 0 {
                return Ok(decoded);
            }
            if self.codec.finished() {
                return Ok(0);
            }
            if self.raw.capacity() - self.raw.len() < RAW_CHUNK / 4 {
                self.raw.reserve(RAW_CHUNK);
            }
            if self.stream.read_buf(&mut self.raw).await? == 0 {
                return Ok(0);
            }
        }
    }

    /// Writes `data` (compressed when negotiated) and pushes it to the socket.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(wire) = self.codec.encode(data)? else {
            return self.stream.write_all(data).await;
        };
        let result = self.stream.write_all(wire).await;
        wire.clear();
        result
    }

    pub async fn shutdown(&mut self) {
        let _ = match &mut self.stream {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Upgrading => Ok(()),
        };
    }

    /// The server side of the TLS handshake, bounded by `timeout` as nsqd's
    /// 5 s deadline. `leftover` is what the client sent past IDENTIFY: the start
    /// of its handshake. On failure, time-out included, the plain socket is
    /// kept for the error frame.
    pub async fn start_tls(
        &mut self,
        acceptor: &TlsAcceptor,
        leftover: BytesMut,
        timeout: Duration,
    ) -> io::Result<TlsInfo> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(io::Error::other("TLS already negotiated"));
        };
        let rewind = Rewind {
            prefix: leftover,
            inner: tcp,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        };
        match acceptor.accept(rewind).into_fallible().await {
            Ok(mut tls) => {
                tls.get_mut().0.deadline = None;
                let info = TlsInfo::of(tls.get_ref().1);
                self.stream = Stream::Tls(Box::new(tls));
                Ok(info)
            }
            Err((e, rewind)) => {
                self.stream = Stream::Plain(rewind.inner);
                Err(e)
            }
        }
    }

    /// Compresses from here on; `leftover` is compressed data the client sent
    /// past IDENTIFY.
    pub fn start_snappy(&mut self, leftover: BytesMut) {
        self.codec = Codec::snappy();
        self.raw = leftover;
    }

    pub fn start_deflate(&mut self, level: u32, leftover: BytesMut) {
        self.codec = Codec::deflate(level);
        self.raw = leftover;
    }
}

impl Stream {
    async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read_buf(buf).await,
            Stream::Tls(s) => s.read_buf(buf).await,
            Stream::Upgrading => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => {
                s.write_all(data).await?;
                // rustls may hold records until flushed.
                s.flush().await
            }
            Stream::Upgrading => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

/// A socket with bytes already read off it put back in front, and an I/O
/// deadline (the handshake's) after which waiting reads and writes fail, so
/// a timed-out handshake hands the socket back instead of taking it along.
struct Rewind {
    prefix: BytesMut,
    inner: TcpStream,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Rewind {
    /// For an operation that would wait: an error once the deadline passed.
    fn past_deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        pending: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if pending.is_pending() {
            if let Some(d) = &mut self.deadline {
                if d.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "i/o timeout",
                    )));
                }
            }
        }
        pending
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let p = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.past_deadline(cx, p)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.past_deadline(cx, p)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let p = Pin::new(&mut self.inner).poll_flush(cx);
        self.past_deadline(cx, p)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.past_deadline(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
