//! A connection to one nsqlookupd over its TCP protocol V1, and the HTTP query
//! nsqd makes to learn a new topic's channels.

use bytes::{BufMut, BytesMut};
use nsq_common::wire::MAGIC_V1;
use serde::Deserialize;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What lookupd says about itself in reply to IDENTIFY.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LookupdInfo {
    pub tcp_port: u16,
    pub http_port: u16,
    pub version: String,
    pub broadcast_address: String,
}

impl LookupdInfo {
    pub fn http_address(&self) -> String {
        if self.broadcast_address.contains(':') {
            format!("[{}]:{}", self.broadcast_address, self.http_port)
        } else {
            format!("{}:{}", self.broadcast_address, self.http_port)
        }
    }
}

pub struct Peer {
    stream: TcpStream,
    max_response: usize,
    buf: BytesMut,
}

impl Peer {
    pub async fn connect(addr: &str, max_response: usize) -> Result<Peer, String> {
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect failed - {e}"))?;
        let _ = stream.set_nodelay(true);
        stream
            .write_all(MAGIC_V1)
            .await
            .map_err(|e| format!("write failed - {e}"))?;
        Ok(Peer {
            stream,
            max_response,
            buf: BytesMut::with_capacity(256),
        })
    }

    pub async fn identify(&mut self, body: &[u8]) -> Result<LookupdInfo, String> {
        let resp = self.command(b"IDENTIFY", Some(body)).await?;
        if resp.starts_with(b"E_") {
            return Err(format!(
                "IDENTIFY refused - {}",
                String::from_utf8_lossy(&resp)
            ));
        }
        serde_json::from_slice(&resp).map_err(|e| format!("bad IDENTIFY response - {e}"))
    }

    pub async fn register(
        &mut self,
        register: bool,
        topic: &str,
        channel: &str,
    ) -> Result<(), String> {
        let mut line = String::from(if register { "REGISTER " } else { "UNREGISTER " });
        line.push_str(topic);
        if !channel.is_empty() {
            line.push(' ');
            line.push_str(channel);
        }
        let resp = self.command(line.as_bytes(), None).await?;
        if resp != b"OK" {
            // lookupd refused this one registration; the connection is still fine.
            tracing::error!("LOOKUPD: {line} - {}", String::from_utf8_lossy(&resp));
        }
        Ok(())
    }

    /// Resolves when lookupd closes the connection (it never speaks unasked), so a
    /// restarted lookupd is re-registered at once rather than at the next PING.
    pub async fn closed(&mut self) {
        let mut byte = [0u8; 1];
        loop {
            if self.stream.readable().await.is_err() {
                return;
            }
            match self.stream.try_read(&mut byte) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }

    pub async fn ping(&mut self) -> Result<(), String> {
        self.command(b"PING", None).await.map(|_| ())
    }

    /// Sends `line\n` (and a length-prefixed body) and reads one response:
    /// a 4-byte big-endian size, then that many bytes.
    async fn command(&mut self, line: &[u8], body: Option<&[u8]>) -> Result<Vec<u8>, String> {
        self.buf.clear();
        self.buf.put_slice(line);
        self.buf.put_u8(b'\n');
        if let Some(b) = body {
            self.buf.put_u32(b.len() as u32);
            self.buf.put_slice(b);
        }
        let io = async {
            self.stream.write_all(&self.buf).await?;
            let size = self.stream.read_u32().await? as usize;
            if size > self.max_response {
                return Err(std::io::Error::other(format!(
                    "response size {size} exceeds {}",
                    self.max_response
                )));
            }
            let mut resp = vec![0; size];
            self.stream.read_exact(&mut resp).await?;
            Ok(resp)
        };
        tokio::time::timeout(IO_TIMEOUT, io)
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| format!("{} failed - {e}", String::from_utf8_lossy(line)))
    }
}

/// `GET http://<addr>/channels?topic=<topic>`: the channels lookupd knows.
pub async fn topic_channels(
    addr: &str,
    topic: &str,
    timeouts: nsq_common::http::client::Timeouts,
) -> Result<Vec<String>, String> {
    use nsq_common::http::client;
    let path = format!("/channels?topic={}", client::query_escape(topic));
    let resp = client::request("GET", addr, &path, timeouts).await?;
    if !resp.is_success() {
        return Err(format!("status {}: {}", resp.status, resp.message()));
    }
    parse_channels(&resp.body)
}

/// Accepts lookupd's V1 body (`{"channels":[...]}`) and the older wrapped one
/// (`{"data":{"channels":[...]}}`).
fn parse_channels(body: &[u8]) -> Result<Vec<String>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let list = v
        .get("channels")
        .or_else(|| v.get("data").and_then(|d| d.get("channels")))
        .and_then(|c| c.as_array())
        .ok_or("no channels in response")?;
    Ok(list
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_channel_response_shapes() {
        assert_eq!(
            parse_channels(br#"{"channels":["a","b"]}"#).unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            parse_channels(br#"{"status_code":200,"status_txt":"OK","data":{"channels":["c"]}}"#)
                .unwrap(),
            ["c"]
        );
        assert!(parse_channels(b"nope").is_err());
    }
}
