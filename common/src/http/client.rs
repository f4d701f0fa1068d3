//! A small HTTP/1.1 client for NSQ's own APIs (nsqd, nsqlookupd) and nsqd's
//! auth servers: one request per connection, bounded connect and request
//! times, bounded response size, `https://` through rustls.
//! Used by nsqd's channel pre-creation and AUTH, and by the operator.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::Uri;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
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

/// A request body and its content type.
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Bytes,
}

/// `method` on `http://<addr><path_and_query>` with an empty body, asking for
/// NSQ's V1 responses.
pub async fn request(
    method: &str,
    addr: &str,
    path_and_query: &str,
    timeouts: Timeouts,
) -> Result<Response, String> {
    let url = format!("http://{addr}{path_and_query}");
    fetch(method, &url, None, None, timeouts).await
}

/// [`request`], then, as Go NSQ's `http_api` client does, a 403 that names an
/// `https_port` (nsqd with `--tls-required`) is asked again over https on that
/// port, when `tls` is given.
pub async fn request_or_https(
    method: &str,
    addr: &str,
    path_and_query: &str,
    timeouts: Timeouts,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Response, String> {
    let resp = request(method, addr, path_and_query, timeouts).await?;
    let (Some(tls), 403) = (tls, resp.status) else {
        return Ok(resp);
    };
    let Some(port) = https_port(&resp.body) else {
        return Ok(resp);
    };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let url = format!("https://{host}:{port}{path_and_query}");
    fetch(method, &url, None, Some(tls), timeouts).await
}

/// The `https_port` of nsqd's `TLS_REQUIRED` refusal.
pub fn https_port(body: &[u8]) -> Option<u16> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let port = v.get("https_port")?.as_u64()?;
    u16::try_from(port).ok().filter(|p| *p != 0)
}

/// `method` on a full `http://` or `https://` URL. `tls` is required for
/// `https://`; the server's name is checked against the URL's host.
pub async fn fetch(
    method: &str,
    url: &str,
    body: Option<Body>,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeouts: Timeouts,
) -> Result<Response, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL {url:?} - {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("bad URL {url:?} - http or https only")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("bad URL {url:?} - no host"))?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let dial = format!(
        "{}:{port}",
        host.trim_start_matches('[').trim_end_matches(']')
    );
    let stream = tokio::time::timeout(timeouts.connect, TcpStream::connect(&dial))
        .await
        .map_err(|_| format!("connect to {dial} timed out"))?
        .map_err(|e| format!("connect to {dial} failed - {e}"))?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, authority)
        .header(ACCEPT, "application/vnd.nsq; version=1.0");
    let req = match body {
        Some(b) => req
            .header(CONTENT_TYPE, b.content_type)
            .body(Full::new(b.bytes)),
        None => req.body(Full::new(Bytes::new())),
    }
    .map_err(|e| e.to_string())?;
    let exchange = async {
        if !https {
            return send(stream, req).await;
        }
        let config = tls.ok_or("no TLS configuration for https")?;
        let name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
        .map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake - {e}"))?;
        send(tls, req).await
    };
    tokio::time::timeout(timeouts.request, exchange)
        .await
        .map_err(|_| format!("{method} {url} timed out"))?
        .map_err(|e| format!("{method} {url} failed - {e}"))
}

async fn send<S>(stream: S, req: hyper::Request<Full<Bytes>>) -> Result<Response, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Response { status, body })
}

/// A client certificate and its key, as PEM files.
#[derive(Debug, Clone, Copy)]
pub struct ClientCert<'a> {
    pub cert: &'a str,
    pub key: &'a str,
}

/// A TLS client trusting the CAs in the PEM file `ca_file`, or the system's
/// roots when it is empty, showing `client` when the server asks; `tls13_only`
/// leaves TLS 1.2 out.
pub fn tls_config(
    ca_file: &str,
    tls13_only: bool,
    client: Option<ClientCert<'_>>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    if ca_file.is_empty() {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    } else {
        let certs = CertificateDer::pem_file_iter(ca_file)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{ca_file}: {e}"))?;
        if roots.add_parsable_certificates(certs).0 == 0 {
            return Err(format!("{ca_file}: failed to append certificate to pool"));
        }
    }
    static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
        &TLS13
    } else {
        rustls::ALL_VERSIONS
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("the ring provider speaks TLS 1.2 and 1.3")
    .with_root_certificates(roots);
    let config = match client {
        None => config.with_no_client_auth(),
        Some(c) => {
            let chain = CertificateDer::pem_file_iter(c.cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", c.cert))?;
            let key = PrivateKeyDer::from_pem_file(c.key).map_err(|e| format!("{}: {e}", c.key))?;
            config
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{}: {e}", c.cert))?
        }
    };
    Ok(Arc::new(config))
}

/// Go's `url.QueryEscape` of raw bytes: unreserved bytes kept, a space as
/// `+`, everything else (invalid UTF-8 included) as `%XX`.
pub fn form_escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
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
    fn form_escape_is_gos_query_escape_byte_for_byte() {
        assert_eq!(form_escape(b"a b+c&d"), "a+b%2Bc%26d");
        assert_eq!(form_escape(b"\xffA\xfe"), "%FFA%FE");
    }

    #[test]
    fn escapes_ephemeral_names() {
        assert_eq!(query_escape("c#ephemeral"), "c%23ephemeral");
        assert_eq!(query_escape("a.b_c-d"), "a.b_c-d");
    }

    #[test]
    fn finds_the_https_port_of_a_tls_refusal() {
        assert_eq!(
            https_port(br#"{"message": "TLS_REQUIRED", "https_port": 4152}"#),
            Some(4152)
        );
        assert_eq!(
            https_port(br#"{"message": "TLS_REQUIRED", "https_port": 0}"#),
            None
        );
        assert_eq!(https_port(b"forbidden"), None);
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
