//! A scripted auth server for nsqd's `--auth-http-address`, over HTTP or
//! HTTPS, on `127.0.0.1:0`.
//!
//! It answers every path. What it answers depends on the secret in the
//! request: a grant as JSON, an error status, junk, a reply that comes too
//! late, or a hang-up ([`Reply`]). Every request is recorded (method, path,
//! raw and decoded query, headers, body), so tests can assert exactly what the
//! broker sent.
//!
//! Each connection gets its own thread, so a slow reply never holds up the
//! others. Dropping the server stops it, and replies still waiting are dropped
//! unsent.

use crate::certs::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the server answers one secret.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this JSON body.
    Json(Value),
    /// This status and body, sent as is (a 200 with junk is `Raw(200, ..)`).
    Raw(u16, String),
    /// Waits, then answers.
    Late(Duration, Box<Reply>),
    /// Closes the connection without answering.
    Close,
}

/// The reply nsqd expects: a TTL, who the client is, and what it may do.
pub fn grant(ttl: i64, identity: &str, identity_url: &str, authorizations: &[Value]) -> Reply {
    Reply::Json(json!({
        "ttl": ttl,
        "identity": identity,
        "identity_url": identity_url,
        "authorizations": authorizations,
    }))
}

/// One authorization: topic and channel patterns, and permissions.
pub fn authorization(topic: &str, channels: &[&str], permissions: &[&str]) -> Value {
    json!({"topic": topic, "channels": channels, "permissions": permissions})
}

/// Publish and subscribe on every topic and channel.
pub fn allow_all(ttl: i64, identity: &str) -> Reply {
    grant(
        ttl,
        identity,
        "",
        &[authorization(".*", &[".*"], &["publish", "subscribe"])],
    )
}

/// One HTTP request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The bytes after `?` (empty without one).
    pub raw_query: String,
    /// The query pairs, form-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// It came over HTTPS.
    pub https: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The secret nsqd sent: from the query (GET) or from the JSON body of
    /// arrays (POST).
    pub fn secret(&self) -> Option<String> {
        if let Some(s) = self.query_param("secret") {
            return Some(s.to_owned());
        }
        let body: Value = serde_json::from_slice(&self.body).ok()?;
        Some(body.get("secret")?.get(0)?.as_str()?.to_owned())
    }
}

/// A running auth server; dropping it stops it.
pub struct AuthServer {
    addr: SocketAddr,
    https: bool,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    replies: Mutex<HashMap<String, Reply>>,
    otherwise: Mutex<Reply>,
    requests: Mutex<Vec<Request>>,
    connections: AtomicUsize,
    stopping: Mutex<bool>,
    stopped: Condvar,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl AuthServer {
    /// Plain HTTP.
    pub fn start() -> AuthServer {
        Self::spawn(None)
    }

    /// HTTPS with the PKI's server certificate (`localhost` and `127.0.0.1`).
    pub fn start_https(pki: &Pki) -> AuthServer {
        let certs = CertificateDer::pem_file_iter(&pki.cert)
            .expect("server cert file")
            .collect::<Result<Vec<_>, _>>()
            .expect("server cert PEM");
        let key = PrivateKeyDer::from_pem_file(&pki.key).expect("server key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server cert and key");
        Self::spawn(Some(Arc::new(config)))
    }

    fn spawn(tls: Option<Arc<rustls::ServerConfig>>) -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let https = tls.is_some();
        let shared = Arc::new(Shared {
            replies: Mutex::new(HashMap::new()),
            otherwise: Mutex::new(Reply::Raw(404, "unknown secret".into())),
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            stopping: Mutex::new(false),
            stopped: Condvar::new(),
            tls,
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if *accept_shared.stopping.lock().unwrap() {
                    return;
                }
                let Ok(stream) = conn else { continue };
                accept_shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(&accept_shared);
                std::thread::spawn(move || serve(shared, stream));
            }
        });
        AuthServer {
            addr,
            https,
            shared,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `--auth-http-address=127.0.0.1:P` (nsqd adds `http://` and `/auth`).
    pub fn flag(&self) -> String {
        format!("--auth-http-address={}", self.addr)
    }

    /// The full URL of `path` on this server (`http://` or `https://`).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// How to answer `secret` from now on.
    pub fn reply(&self, secret: &str, reply: Reply) {
        self.shared
            .replies
            .lock()
            .unwrap()
            .insert(secret.to_owned(), reply);
    }

    /// How to answer secrets with no reply of their own (at first: 404).
    pub fn otherwise(&self, reply: Reply) {
        *self.shared.otherwise.lock().unwrap() = reply;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests that carried `secret`.
    pub fn requests_for(&self, secret: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.secret().as_deref() == Some(secret))
            .collect()
    }

    /// TCP connections accepted so far (a failed TLS handshake counts, and
    /// records no request).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived; returns them all.
    #[track_caller]
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        crate::wait_until(timeout, &format!("{n} auth requests"), || {
            let got = self.requests();
            if got.len() >= n {
                Ok(got)
            } else {
                Err(format!("{} requests: {got:?}", got.len()))
            }
        })
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        *self.shared.stopping.lock().unwrap() = true;
        self.shared.stopped.notify_all();
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One connection: one request, one reply (or none), then close.
fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    match &shared.tls {
        None => exchange(&shared, stream, false),
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(Arc::clone(config)) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            exchange(&shared, &mut tls, true);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    }
}

fn exchange(shared: &Shared, mut stream: impl Read + Write, https: bool) {
    let Some(mut request) = read_request(&mut stream) else {
        return;
    };
    request.https = https;
    let mut reply = {
        let replies = shared.replies.lock().unwrap();
        request
            .secret()
            .and_then(|s| replies.get(&s).cloned())
            .unwrap_or_else(|| shared.otherwise.lock().unwrap().clone())
    };
    // Recorded before answering, so a test sees a late request while it waits.
    shared.requests.lock().unwrap().push(request);
    loop {
        match reply {
            Reply::Json(v) => return respond(&mut stream, 200, "application/json", &v.to_string()),
            Reply::Raw(status, body) => return respond(&mut stream, status, "text/plain", &body),
            Reply::Close => return,
            Reply::Late(d, then) => {
                let deadline = Instant::now() + d;
                let mut stopping = shared.stopping.lock().unwrap();
                while !*stopping {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    stopping = shared.stopped.wait_timeout(stopping, left).unwrap().0;
                }
                if *stopping {
                    return;
                }
                reply = *then;
            }
        }
    }
}

fn respond(stream: &mut impl Write, status: u16, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        411 => "Length Required",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// Reads one request: the head, then a `Content-Length` body. `None` when the
/// client leaves first or sends something this server does not speak.
fn read_request(stream: &mut impl Read) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match parse_request(&buf) {
            Ok(Some(r)) => return Some(r),
            Ok(None) => {}
            Err(_) => return None,
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Parses a whole request from `buf`: `Ok(None)` while more bytes are needed.
/// Bodies come only by `Content-Length` (nsqd never chunks its small JSON).
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|e| format!("head not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default();
    let mut parts = start.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad request line {start:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad version {version:?}"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header {line:?}"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    if header("transfer-encoding").is_some() {
        return Err("chunked request bodies are not supported".into());
    }
    let len: usize = match header("content-length") {
        Some(v) => v.parse().map_err(|_| format!("bad content-length {v:?}"))?,
        None => 0,
    };
    let body_start = end + 4;
    if buf.len() < body_start + len {
        return Ok(None);
    }
    let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        raw_query: raw_query.to_owned(),
        query: form_decode(raw_query),
        headers,
        body: buf[body_start..body_start + len].to_vec(),
        https: false,
    }))
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space); bytes that are
/// not UTF-8 become U+FFFD (the raw query keeps them).
pub fn form_decode(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_get_with_a_form_encoded_query() {
        let raw =
            b"GET /auth?common_name=&remote_ip=127.0.0.1&secret=a+b%26c%2B&tls=false HTTP/1.1\r\n\
                    Host: x\r\nAccept: application/vnd.nsq; version=1.0\r\n\r\n";
        let r = parse_request(raw).unwrap().unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/auth"));
        assert_eq!(r.query_param("secret"), Some("a b&c+"));
        assert_eq!(r.query_param("common_name"), Some(""));
        assert_eq!(r.secret().as_deref(), Some("a b&c+"));
        assert_eq!(r.header("Accept"), Some("application/vnd.nsq; version=1.0"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn waits_for_the_whole_post_body() {
        let body = br#"{"secret":["s"]}"#;
        let mut raw = format!(
            "POST /p HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        assert_eq!(parse_request(&raw[..raw.len() - 1]).unwrap(), None);
        let r = parse_request(&raw).unwrap().unwrap();
        assert_eq!((r.raw_query.as_str(), r.body.as_slice()), ("", &body[..]));
        assert_eq!(r.secret().as_deref(), Some("s"));
    }

    #[test]
    fn refuses_what_it_does_not_speak() {
        assert!(parse_request(b"GET\r\n\r\n").is_err());
        assert!(parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n").unwrap(), None);
    }

    #[test]
    fn form_decoding_handles_bad_escapes_and_missing_values() {
        assert_eq!(
            form_decode("a=%zz&b&c=%4"),
            [
                ("a".to_owned(), "%zz".to_owned()),
                ("b".to_owned(), String::new()),
                ("c".to_owned(), "%4".to_owned())
            ]
        );
        assert_eq!(form_decode("s=%FFA")[0].1, "\u{fffd}A");
    }
}
