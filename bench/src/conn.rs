//! Socket plumbing shared by both roles: dialing (TCP_NODELAY like Go's `net`, then the
//! `  V2` magic), the optional upgrades IDENTIFY negotiates (TLS, then snappy or
//! deflate, each confirmed by an `OK` over the new stream), and moving bytes between
//! the socket and a [`ReadBuf`]. Compressed bytes go through buffers kept for the
//! connection's life.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use nsq_common::compress::Codec;
use nsq_common::wire::MAGIC_V2;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::protocol::{identify_command, Frame, ReadBuf, NOP};

/// The connection features to ask for.
#[derive(Clone, Default)]
pub struct Features {
    /// TLS with this configuration, checking the broker's certificate for this name.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    pub snappy: bool,
    /// Deflate at this level.
    pub deflate: Option<u32>,
}

impl Features {
    pub fn any(&self) -> bool {
        self.tls.is_some() || self.snappy || self.deflate.is_some()
    }

    /// Adds the IDENTIFY fields asking for these features.
    pub fn ask(&self, identify: &mut serde_json::Map<String, serde_json::Value>) {
        identify.insert("tls_v1".into(), self.tls.is_some().into());
        identify.insert("snappy".into(), self.snappy.into());
        identify.insert("deflate".into(), self.deflate.is_some().into());
        if let Some(level) = self.deflate {
            identify.insert("deflate_level".into(), level.into());
        }
    }

    /// Names what the broker turned on, in the order it upgrades.
    pub fn describe(&self) -> String {
        let mut on = Vec::new();
        if self.tls.is_some() {
            on.push("TLS".to_string());
        }
        if self.snappy {
            on.push("snappy".into());
        }
        if let Some(level) = self.deflate {
            on.push(format!("deflate level {level}"));
        }
        if on.is_empty() {
            "plain".into()
        } else {
            on.join(" + ")
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One connection to the broker.
pub struct Link {
    stream: Stream,
    codec: Codec,
    /// Compressed bytes read but not yet decoded.
    raw: BytesMut,
    /// Decoded bytes that did not fit the caller's buffer yet.
    plain: BytesMut,
}

/// Connects, disables Nagle and writes the magic plus `prologue` (setup commands) in
/// one write.
pub async fn dial(addr: &str, timeout: Duration, prologue: &[u8]) -> Result<Link> {
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {addr}: timed out after {timeout:?}"))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut first = Vec::with_capacity(MAGIC_V2.len() + prologue.len());
    first.extend_from_slice(MAGIC_V2);
    first.extend_from_slice(prologue);
    stream.write_all(&first).await.context("writing magic")?;
    Ok(Link {
        stream: Stream::Plain(stream),
        codec: Codec::None,
        raw: BytesMut::new(),
        plain: BytesMut::new(),
    })
}

/// Dials, sends `IDENTIFY` with `identify` (which must ask for `features`), and makes
/// the upgrades the broker agrees to. Returns the connection and the IDENTIFY answer;
/// a feature asked for and refused is an error.
pub async fn negotiate(
    addr: &str,
    timeout: Duration,
    identify: &[u8],
    features: &Features,
    rb: &mut ReadBuf,
) -> Result<(Link, serde_json::Value)> {
    let mut link = dial(addr, timeout, &identify_command(identify)).await?;
    let answer = link.response(rb, "IDENTIFY").await?;
    let v: serde_json::Value = serde_json::from_slice(&answer)
        .with_context(|| format!("IDENTIFY answered {:?}", String::from_utf8_lossy(&answer)))?;
    let granted = |f: &str| v.get(f).and_then(|b| b.as_bool()) == Some(true);
    if let Some((config, name)) = &features.tls {
        if !granted("tls_v1") {
            bail!("the broker does not offer TLS");
        }
        if !rb.pending().is_empty() {
            bail!("the broker sent bytes before the TLS handshake");
        }
        let Stream::Plain(tcp) = link.stream else {
            unreachable!("TLS comes first");
        };
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        link.stream = Stream::Tls(Box::new(tls));
        link.expect_ok(rb, "TLS").await?;
    }
    if features.snappy {
        if !granted("snappy") {
            bail!("the broker does not offer snappy");
        }
        link.codec = Codec::snappy();
        link.compressed_from_here(rb);
        link.expect_ok(rb, "snappy").await?;
    }
    if let Some(level) = features.deflate {
        if !granted("deflate") {
            bail!("the broker does not offer deflate");
        }
        link.codec = Codec::deflate(level);
        link.compressed_from_here(rb);
        link.expect_ok(rb, "deflate").await?;
    }
    Ok((link, v))
}

impl Link {
    /// Whatever was read past the last plain frame is the start of the compressed stream.
    fn compressed_from_here(&mut self, rb: &mut ReadBuf) {
        self.raw.extend_from_slice(&rb.take_pending());
    }

    /// Reads at least one byte into `rb`; the broker closing the connection is an error.
    pub async fn fill(&mut self, rb: &mut ReadBuf) -> Result<()> {
        loop {
            if !self.plain.is_empty() {
                let spare = rb.spare();
                let n = spare.len().min(self.plain.len());
                spare[..n].copy_from_slice(&self.plain.split_to(n));
                rb.filled(n);
                return Ok(());
            }
            if self.codec.is_none() {
                let n = read(&mut self.stream, rb.spare()).await?;
                rb.filled(n);
                return Ok(());
            }
            self.codec.decode(&mut self.raw, &mut self.plain)?;
            if self.plain.is_empty() {
                self.raw.reserve(64 << 10);
                let n = match &mut self.stream {
                    Stream::Plain(s) => s.read_buf(&mut self.raw).await,
                    Stream::Tls(s) => s.read_buf(&mut self.raw).await,
                }
                .context("reading")?;
                if n == 0 {
                    bail!("broker closed the connection");
                }
            }
        }
    }

    /// Writes `data` (compressed when negotiated).
    pub async fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let Some(wire) = self.codec.encode(data)? else {
            return write(&mut self.stream, data).await;
        };
        let result = write(&mut self.stream, wire).await;
        wire.clear();
        result
    }

    /// The next response frame's data (heartbeats answered); an error frame fails.
    pub async fn response(&mut self, rb: &mut ReadBuf, step: &str) -> Result<Vec<u8>> {
        loop {
            while let Some(frame) = rb.next_frame()? {
                match frame {
                    Frame::Ok => return Ok(b"OK".to_vec()),
                    Frame::Response(r) => return Ok(r.to_vec()),
                    Frame::Heartbeat => self.write_all(NOP).await?,
                    Frame::Error(e) => bail!("{step} failed: {}", String::from_utf8_lossy(e)),
                    Frame::Message(_) => bail!("message during {step}"),
                }
            }
            self.fill(rb).await?;
        }
    }

    /// The next response frame must be `OK`.
    pub async fn expect_ok(&mut self, rb: &mut ReadBuf, step: &str) -> Result<()> {
        let r = self.response(rb, step).await?;
        if r != b"OK" {
            bail!("{step} upgrade answered {:?}", String::from_utf8_lossy(&r));
        }
        Ok(())
    }
}

async fn read(stream: &mut Stream, buf: &mut [u8]) -> Result<usize> {
    let n = match stream {
        Stream::Plain(s) => s.read(buf).await,
        Stream::Tls(s) => s.read(buf).await,
    }
    .context("reading")?;
    if n == 0 {
        bail!("broker closed the connection");
    }
    Ok(n)
}

async fn write(stream: &mut Stream, data: &[u8]) -> Result<()> {
    match stream {
        Stream::Plain(s) => s.write_all(data).await?,
        Stream::Tls(s) => {
            s.write_all(data).await?;
            s.flush().await?;
        }
    }
    Ok(())
}
