//! A small HTTP/1.1 client for NSQ's own APIs (nsqd, nsqlookupd): one request
//! per connection, bounded connect and request times, bounded response size.
//! Used by nsqd's channel pre-creation and by the operator.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{ACCEPT, HOST};
use std::time::Duration;
use tokio::net::TcpStream;

/// Largest response body read (nsqd's /stats for thousands of topics fits).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Default for Timeouts {
    /// nsqd's `--http-client-connect-timeout` and `--http-client-request-timeout`.
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
        }
    }
}

/// A response: status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// NSQ's error text: `{"message":"..."}`, or the raw body.
    pub fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// `method` on `http://<addr><path_and_query>` with an empty body, asking for
/// NSQ's V1 responses.
pub async fn request(
    method: &str,
    addr: &str,
    path_and_query: &str,
    timeouts: Timeouts,
) -> Result<Response, String> {
    let stream = tokio::time::timeout(timeouts.connect, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr} failed - {e}"))?;
    let exchange = async {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, addr)
            .header(ACCEPT, "application/vnd.nsq; version=1.0")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>(Response { status, body })
    };
    tokio::time::timeout(timeouts.request, exchange)
        .await
        .map_err(|_| format!("{method} {addr}{path_and_query} timed out"))?
        .map_err(|e| format!("{method} {addr}{path_and_query} failed - {e}"))
}

/// Percent-encodes a query value (NSQ names only need `#` escaped, but be safe).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_ephemeral_names() {
        assert_eq!(query_escape("c#ephemeral"), "c%23ephemeral");
        assert_eq!(query_escape("a.b_c-d"), "a.b_c-d");
    }

    #[test]
    fn reads_nsq_error_messages() {
        let r = Response {
            status: 404,
            body: Bytes::from_static(br#"{"message":"TOPIC_NOT_FOUND"}"#),
        };
        assert_eq!(r.message(), "TOPIC_NOT_FOUND");
        assert!(!r.is_success());
    }
}
