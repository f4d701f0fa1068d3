//! Socket plumbing shared by both roles: dialing (TCP_NODELAY like Go's `net`, then the
//! `  V2` magic) and filling a [`ReadBuf`] from the socket.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use nsq_common::wire::MAGIC_V2;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::ReadBuf;

/// Connects, disables Nagle and writes `prologue` (the magic plus any setup commands) in
/// one write.
pub async fn dial(addr: &str, timeout: Duration, prologue: &[u8]) -> Result<TcpStream> {
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {addr}: timed out after {timeout:?}"))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut first = Vec::with_capacity(MAGIC_V2.len() + prologue.len());
    first.extend_from_slice(MAGIC_V2);
    first.extend_from_slice(prologue);
    stream.write_all(&first).await.context("writing magic")?;
    Ok(stream)
}

/// One read into `rb`; the broker closing the connection is an error.
pub async fn fill(stream: &mut TcpStream, rb: &mut ReadBuf) -> Result<()> {
    let n = stream.read(rb.spare()).await.context("reading")?;
    if n == 0 {
        bail!("broker closed the connection");
    }
    rb.filled(n);
    Ok(())
}
