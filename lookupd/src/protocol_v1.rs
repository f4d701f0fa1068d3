//! nsqlookupd's TCP protocol V1, spoken by nsqd after the magic `"  V1"`.
//!
//! Requests are lines (`PING`, `IDENTIFY`, `REGISTER <topic> [<channel>]`,
//! `UNREGISTER <topic> [<channel>]`); IDENTIFY is followed by a 4-byte
//! big-endian size and a JSON body. Every answer is a V1 response,
//! `[size][data]` with no frame type ([`nsq_common::wire::put_v1_response`]):
//! `OK`, IDENTIFY's JSON, or an error text `E_<CODE> <description>`. Every
//! error closes the connection, and a closed connection takes all of its
//! registrations with it.
//!
//! Three layers, the first two pure:
//!
//! - [`decode`] turns buffered bytes into one [`Request`] (or the error it
//!   earns), validating what depends only on the bytes and on whether the
//!   connection has identified;
//! - [`Session`] applies requests to the [`RegistrationDb`] and produces the
//!   answer bytes;
//! - [`io_loop`] runs one connection: reads, decodes, executes, writes.

use crate::nsqlookupd::{unix_nanos, Nsqlookupd};
use crate::registration_db::{Category, Peer, PeerInfo, Registration, RegistrationDb};
use bytes::{Buf, BytesMut};
use nsq_common::flags::format_duration;
use nsq_common::names::{is_ephemeral, is_valid_channel_name, is_valid_topic_name};
use nsq_common::wire::put_v1_response;
use parking_lot::RwLock;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A command line longer than this without a newline ends the connection
/// (nsqlookupd buffers without bound; real lines are under 200 bytes).
pub const MAX_LINE_LENGTH: usize = 64 * 1024;
/// Largest IDENTIFY body accepted (nsqlookupd has no limit; nsqd sends ~200 bytes).
pub const MAX_IDENTIFY_BODY: usize = 1024 * 1024;

/// An error answered to the client as `<code> <desc>`; V1 errors always close
/// the connection (nsqlookupd's `FatalClientErr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: &'static str,
    /// Raw bytes: names from the wire are echoed as received.
    pub desc: Vec<u8>,
    /// What went wrong underneath, for the log only.
    pub cause: Option<String>,
}

impl ProtocolError {
    fn new(code: &'static str, desc: impl Into<Vec<u8>>) -> ProtocolError {
        ProtocolError {
            code,
            desc: desc.into(),
            cause: None,
        }
    }

    fn caused_by(mut self, cause: impl fmt::Display) -> ProtocolError {
        self.cause = Some(cause.to_string());
        self
    }

    /// The bytes sent to the client.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.code.len() + 1 + self.desc.len());
        out.extend_from_slice(self.code.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.desc);
        out
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.to_bytes()))?;
        if let Some(cause) = &self.cause {
            write!(f, " - {cause}")?;
        }
        Ok(())
    }
}

/// `<command> <what> name '<name>' is not valid` and friends echo raw bytes.
fn desc(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Ping,
    /// IDENTIFY with its (not yet parsed) JSON body.
    Identify(&'a [u8]),
    Register {
        topic: &'a str,
        channel: Option<&'a str>,
    },
    Unregister {
        topic: &'a str,
        channel: Option<&'a str>,
    },
}

/// What [`decode`] found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// More bytes are needed. If the stream ends here instead, `at_eof` is the
    /// error nsqlookupd would still answer (a truncated IDENTIFY body).
    Incomplete { at_eof: Option<ProtocolError> },
    /// A request, or the error it earns, and the bytes it used.
    Complete(Result<Request<'a>, ProtocolError>, usize),
    /// No newline within [`MAX_LINE_LENGTH`] bytes.
    LineTooLong,
}

/// Decodes one request off the front of `buf`. `identified` is whether the
/// connection has already IDENTIFYed (which decides some errors, and whether an
/// IDENTIFY body is read at all). Pure: safe to call with any bytes.
pub fn decode(buf: &[u8], identified: bool) -> Decoded<'_> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE_LENGTH {
            Decoded::LineTooLong
        } else {
            Decoded::Incomplete { at_eof: None }
        };
    };
    let line_end = newline + 1;
    let line = trim_space(&buf[..line_end]);
    let mut params = line.split(|&b| b == b' ');
    let command = params.next().unwrap_or_default();
    let args: Vec<&[u8]> = params.collect();
    let result = match command {
        b"PING" => Ok(Request::Ping),
        b"IDENTIFY" if identified => Err(ProtocolError::new("E_INVALID", "cannot IDENTIFY again")),
        b"IDENTIFY" => return decode_identify_body(buf, line_end),
        b"REGISTER" | b"UNREGISTER" if !identified => {
            Err(ProtocolError::new("E_INVALID", "client must IDENTIFY"))
        }
        b"REGISTER" => topic_channel(command, &args)
            .map(|(topic, channel)| Request::Register { topic, channel }),
        b"UNREGISTER" => topic_channel(command, &args)
            .map(|(topic, channel)| Request::Unregister { topic, channel }),
        other => Err(ProtocolError::new(
            "E_INVALID",
            desc(&[b"invalid command ", other]),
        )),
    };
    Decoded::Complete(result, line_end)
}

fn decode_identify_body(buf: &[u8], line_end: usize) -> Decoded<'_> {
    let rest = &buf[line_end..];
    let Some(size) = rest.get(..4) else {
        return Decoded::Incomplete {
            at_eof: Some(ProtocolError::new(
                "E_BAD_BODY",
                "IDENTIFY failed to read body size",
            )),
        };
    };
    let failed_body = || ProtocolError::new("E_BAD_BODY", "IDENTIFY failed to read body");
    let size = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
    // nsqlookupd would crash on a negative size and wait for any large one.
    let Some(size) = usize::try_from(size)
        .ok()
        .filter(|&n| n <= MAX_IDENTIFY_BODY)
    else {
        let err = failed_body().caused_by(format!("invalid body size {size}"));
        return Decoded::Complete(Err(err), line_end + 4);
    };
    match rest.get(4..4 + size) {
        Some(body) => Decoded::Complete(Ok(Request::Identify(body)), line_end + 4 + size),
        None => Decoded::Incomplete {
            at_eof: Some(failed_body()),
        },
    }
}

/// nsqlookupd's `getTopicChan`: a valid topic and an optional valid channel.
fn topic_channel<'a>(
    command: &[u8],
    args: &[&'a [u8]],
) -> Result<(&'a str, Option<&'a str>), ProtocolError> {
    let Some(&topic) = args.first() else {
        return Err(ProtocolError::new(
            "E_INVALID",
            desc(&[command, b" insufficient number of params"]),
        ));
    };
    let channel = args.get(1).copied().unwrap_or_default();
    let Some(topic_name) = std::str::from_utf8(topic)
        .ok()
        .filter(|t| is_valid_topic_name(t))
    else {
        return Err(ProtocolError::new(
            "E_BAD_TOPIC",
            desc(&[command, b" topic name '", topic, b"' is not valid"]),
        ));
    };
    if channel.is_empty() {
        return Ok((topic_name, None));
    }
    let Some(channel_name) = std::str::from_utf8(channel)
        .ok()
        .filter(|c| is_valid_channel_name(c))
    else {
        return Err(ProtocolError::new(
            "E_BAD_CHANNEL",
            desc(&[command, b" channel name '", channel, b"' is not valid"]),
        ));
    };
    Ok((topic_name, Some(channel_name)))
}

/// Go's `strings.TrimSpace` on bytes: Unicode white space off both ends;
/// bytes that are not UTF-8 are not space.
pub fn trim_space(mut s: &[u8]) -> &[u8] {
    while let Some(n) = leading_space(s) {
        s = &s[n..];
    }
    while let Some(n) = trailing_space(s) {
        s = &s[..s.len() - n];
    }
    s
}

fn leading_space(s: &[u8]) -> Option<usize> {
    let chunk = s.utf8_chunks().next()?;
    let c = chunk.valid().chars().next()?;
    c.is_whitespace().then(|| c.len_utf8())
}

fn trailing_space(s: &[u8]) -> Option<usize> {
    (1..=4.min(s.len())).find_map(|n| {
        let c = std::str::from_utf8(&s[s.len() - n..])
            .ok()?
            .chars()
            .next()?;
        (c.len_utf8() == n && c.is_whitespace()).then_some(n)
    })
}

/// An IDENTIFY body decoded as Go's `json.Unmarshal` into nsqlookupd's
/// `PeerInfo`: keys match field names exactly or case-insensitively, unknown
/// keys are ignored, `null` leaves a field empty, a later duplicate wins, and a
/// value of the wrong type (or a non-integer port) is an error.
pub fn decode_peer_info(body: &[u8]) -> Result<PeerInfo, String> {
    let fields = serde_json::from_slice::<GoObject>(body)
        .map_err(|e| e.to_string())?
        .0
        .unwrap_or_default();
    let mut info = PeerInfo::default();
    let mut type_error = None;
    for (key, value) in fields {
        let Some(field) = PEER_INFO_FIELDS
            .iter()
            .find(|f| **f == key)
            .or_else(|| PEER_INFO_FIELDS.iter().find(|f| fold_eq(f, &key)))
        else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let ok = match *field {
            "tcp_port" | "http_port" => match value.as_i64() {
                Some(n) if *field == "tcp_port" => {
                    info.tcp_port = n;
                    true
                }
                Some(n) => {
                    info.http_port = n;
                    true
                }
                None => false,
            },
            name => match value {
                Value::String(s) => {
                    match name {
                        "remote_address" => info.remote_address = s,
                        "hostname" => info.hostname = s,
                        "broadcast_address" => info.broadcast_address = s,
                        "version" => info.version = s,
                        "topology_zone" => info.topology_zone = s,
                        _ => info.topology_region = s,
                    }
                    true
                }
                _ => false,
            },
        };
        if !ok && type_error.is_none() {
            type_error = Some(format!("cannot unmarshal {key} into PeerInfo.{field}"));
        }
    }
    match type_error {
        Some(e) => Err(e),
        None => Ok(info),
    }
}

const PEER_INFO_FIELDS: [&str; 8] = [
    "remote_address",
    "hostname",
    "broadcast_address",
    "tcp_port",
    "http_port",
    "version",
    "topology_zone",
    "topology_region",
];

/// Go's case-insensitive key match (simple folding, including the Kelvin
/// sign and long s that fold onto ASCII letters).
fn fold_eq(field: &str, key: &str) -> bool {
    let fold = |c: char| match c {
        '\u{212A}' => 'k',
        '\u{17F}' => 's',
        c => c.to_ascii_lowercase(),
    };
    field.chars().map(fold).eq(key.chars().map(fold))
}

/// A JSON object's entries in document order (duplicates kept); `None` for `null`.
struct GoObject(Option<Vec<(String, Value)>>);

impl<'de> Deserialize<'de> for GoObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = GoObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_unit<E>(self) -> Result<GoObject, E> {
                Ok(GoObject(None))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GoObject, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(GoObject(Some(entries)))
            }
        }
        d.deserialize_any(Entries)
    }
}

/// What IDENTIFY is answered with: this nsqlookupd's own details (keys in Go's
/// sorted map order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentifyResponse {
    pub broadcast_address: String,
    pub hostname: String,
    pub http_port: u16,
    pub tcp_port: u16,
    pub version: String,
}

/// One connection's protocol state: who it is once identified.
#[derive(Debug)]
pub struct Session {
    remote: String,
    peer: Option<Arc<Peer>>,
}

impl Session {
    /// A new connection from `remote` (its address is also the peer's ID).
    pub fn new(remote: impl Into<String>) -> Session {
        Session {
            remote: remote.into(),
            peer: None,
        }
    }

    pub fn identified(&self) -> bool {
        self.peer.is_some()
    }

    pub fn peer(&self) -> Option<&Arc<Peer>> {
        self.peer.as_ref()
    }

    /// Applies one request at time `now` (Unix nanoseconds) and returns the
    /// answer's bytes.
    pub fn exec(
        &mut self,
        req: Request<'_>,
        db: &RwLock<RegistrationDb>,
        me: &IdentifyResponse,
        now: i64,
    ) -> Result<Vec<u8>, ProtocolError> {
        match req {
            Request::Ping => {
                if let Some(peer) = &self.peer {
                    let last = peer.touch(now);
                    let since =
                        Duration::from_nanos(u64::try_from(now.saturating_sub(last)).unwrap_or(0));
                    tracing::debug!(
                        "CLIENT({}): pinged (last ping {})",
                        peer.id,
                        format_duration(since)
                    );
                }
                Ok(b"OK".to_vec())
            }
            Request::Identify(body) => self.identify(body, db, me, now),
            Request::Register { topic, channel } => {
                let peer = self.identified_peer()?;
                let mut db = db.write();
                if let Some(channel) = channel {
                    if db.add_producer(Registration::channel(topic, channel), peer) {
                        tracing::info!(
                            "DB: client({}) REGISTER category:channel key:{topic} subkey:{channel}",
                            self.remote
                        );
                    }
                }
                if db.add_producer(Registration::topic(topic), peer) {
                    tracing::info!(
                        "DB: client({}) REGISTER category:topic key:{topic} subkey:",
                        self.remote
                    );
                }
                Ok(b"OK".to_vec())
            }
            Request::Unregister { topic, channel } => {
                let peer = self.identified_peer()?;
                let mut db = db.write();
                match channel {
                    Some(channel) => {
                        let key = Registration::channel(topic, channel);
                        let (removed, left) = db.remove_producer(&key, &peer.id);
                        if removed {
                            tracing::info!(
                                "DB: client({}) UNREGISTER category:channel key:{topic} subkey:{channel}",
                                self.remote
                            );
                        }
                        // An ephemeral channel goes once nobody has it.
                        if left == 0 && is_ephemeral(channel) {
                            db.remove_registration(&key);
                        }
                    }
                    None => {
                        // A topic unregistration also drops the peer from the
                        // topic's channels (nsqd normally unregisters those first).
                        for r in db.find_registrations(Category::Channel, topic, "*") {
                            if db.remove_producer(&r, &peer.id).0 {
                                tracing::warn!(
                                    "client({}) unexpected UNREGISTER category:channel key:{topic} subkey:{}",
                                    self.remote,
                                    r.subkey
                                );
                            }
                        }
                        if db.remove_producer(&Registration::topic(topic), &peer.id).0 {
                            tracing::info!(
                                "DB: client({}) UNREGISTER category:topic key:{topic} subkey:",
                                self.remote
                            );
                        }
                    }
                }
                Ok(b"OK".to_vec())
            }
        }
    }

    fn identified_peer(&self) -> Result<&Arc<Peer>, ProtocolError> {
        self.peer
            .as_ref()
            .ok_or_else(|| ProtocolError::new("E_INVALID", "client must IDENTIFY"))
    }

    fn identify(
        &mut self,
        body: &[u8],
        db: &RwLock<RegistrationDb>,
        me: &IdentifyResponse,
        now: i64,
    ) -> Result<Vec<u8>, ProtocolError> {
        if self.peer.is_some() {
            return Err(ProtocolError::new("E_INVALID", "cannot IDENTIFY again"));
        }
        let mut info = decode_peer_info(body).map_err(|e| {
            ProtocolError::new("E_BAD_BODY", "IDENTIFY failed to decode JSON body").caused_by(e)
        })?;
        info.remote_address = self.remote.clone();
        if info.broadcast_address.is_empty()
            || info.tcp_port == 0
            || info.http_port == 0
            || info.version.is_empty()
        {
            return Err(ProtocolError::new("E_BAD_BODY", "IDENTIFY missing fields"));
        }
        tracing::info!(
            "CLIENT({}): IDENTIFY Address:{} TCP:{} HTTP:{} Version:{}",
            self.remote,
            info.broadcast_address,
            info.tcp_port,
            info.http_port,
            info.version
        );
        let peer = Peer::new(self.remote.clone(), info, now);
        if db.write().add_producer(Registration::client(), &peer) {
            tracing::info!(
                "DB: client({}) REGISTER category:client key: subkey:",
                self.remote
            );
        }
        self.peer = Some(peer);
        Ok(nsq_common::http::go_json(me))
    }

    /// The connection is gone: drop the peer from every registration.
    pub fn close(self, db: &RwLock<RegistrationDb>) {
        let Some(peer) = self.peer else {
            return;
        };
        let mut db = db.write();
        for r in db.lookup_registrations(&peer.id) {
            if db.remove_producer(&r, &peer.id).0 {
                tracing::info!(
                    "DB: client({}) UNREGISTER category:{} key:{} subkey:{}",
                    self.remote,
                    r.category.as_str(),
                    r.key,
                    r.subkey
                );
            }
        }
    }
}

/// Runs one V1 connection until it errs, closes or the daemon shuts down.
/// `input` holds whatever was read after the magic.
pub async fn io_loop(lookupd: Arc<Nsqlookupd>, mut stream: TcpStream, mut input: BytesMut) {
    let remote = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut shutdown = lookupd.shutdown_signal();
    let me = lookupd.identify_response();
    let mut session = Session::new(remote.clone());
    let mut out = BytesMut::new();
    // Why the loop ended, logged as nsqlookupd does (`EOF` for a plain close).
    let reason: Option<String> = loop {
        match decode(&input, session.identified()) {
            Decoded::Complete(request, used) => {
                let answer = request.and_then(|r| session.exec(r, &lookupd.db, &me, unix_nanos()));
                input.advance(used);
                let fatal = match answer {
                    Ok(data) => {
                        put_v1_response(&mut out, &data);
                        None
                    }
                    Err(e) => {
                        tracing::error!("[{remote}] - {e}");
                        put_v1_response(&mut out, &e.to_bytes());
                        Some(e)
                    }
                };
                if let Err(e) = stream.write_all(&out).await {
                    break Some(e.to_string());
                }
                out.clear();
                if let Some(e) = fatal {
                    break Some(String::from_utf8_lossy(&e.to_bytes()).into_owned());
                }
            }
            Decoded::LineTooLong => {
                break Some(format!("no newline in {MAX_LINE_LENGTH} bytes"));
            }
            Decoded::Incomplete { at_eof } => {
                let read = tokio::select! {
                    read = stream.read_buf(&mut input) => read,
                    _ = crate::nsqlookupd::exiting(&mut shutdown) => break None,
                };
                match read {
                    Ok(0) => {
                        if let Some(e) = at_eof {
                            tracing::error!("[{remote}] - {e}");
                            put_v1_response(&mut out, &e.to_bytes());
                            let _ = stream.write_all(&out).await;
                        }
                        break Some("EOF".to_owned());
                    }
                    Ok(_) => {}
                    Err(e) => break Some(e.to_string()),
                }
            }
        }
    };
    let _ = stream.shutdown().await;
    tracing::info!("PROTOCOL(V1): [{remote}] exiting ioloop");
    session.close(&lookupd.db);
    if let Some(reason) = reason {
        tracing::error!("client({remote}) - {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8], identified: bool) -> (Result<Request<'_>, String>, usize) {
        match decode(buf, identified) {
            Decoded::Complete(r, used) => (
                r.map_err(|e| String::from_utf8_lossy(&e.to_bytes()).into_owned()),
                used,
            ),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn error(buf: &[u8], identified: bool) -> String {
        complete(buf, identified).0.unwrap_err()
    }

    #[test]
    fn commands_parse_with_nsqlookupd_spacing_rules() {
        assert_eq!(complete(b"PING\n", false), (Ok(Request::Ping), 5));
        assert_eq!(
            complete(b"  PING extra \r\nNEXT", false),
            (Ok(Request::Ping), 15)
        );
        assert_eq!(
            complete(b"REGISTER t c\n", true).0,
            Ok(Request::Register {
                topic: "t",
                channel: Some("c")
            })
        );
        assert_eq!(
            complete(b"UNREGISTER t#ephemeral\n", true).0,
            Ok(Request::Unregister {
                topic: "t#ephemeral",
                channel: None
            })
        );
        // An empty second parameter means no channel; more parameters are ignored.
        assert_eq!(
            complete(b"REGISTER t  c\n", true).0,
            Ok(Request::Register {
                topic: "t",
                channel: None
            })
        );
        assert_eq!(
            complete(b"REGISTER t c x y\n", true).0,
            Ok(Request::Register {
                topic: "t",
                channel: Some("c")
            })
        );
        assert_eq!(decode(b"PING", false), Decoded::Incomplete { at_eof: None });
    }

    #[test]
    fn malformed_commands_get_nsqlookupd_errors() {
        assert_eq!(error(b"\n", true), "E_INVALID invalid command ");
        assert_eq!(error(b"ping\n", true), "E_INVALID invalid command ping");
        assert_eq!(
            error(b" NOPE a b\n", true),
            "E_INVALID invalid command NOPE"
        );
        assert_eq!(
            error(b"REGISTER t\n", false),
            "E_INVALID client must IDENTIFY"
        );
        assert_eq!(
            error(b"UNREGISTER\n", false),
            "E_INVALID client must IDENTIFY"
        );
        assert_eq!(
            error(b"REGISTER\n", true),
            "E_INVALID REGISTER insufficient number of params"
        );
        assert_eq!(
            error(b"UNREGISTER \n", true),
            "E_INVALID UNREGISTER insufficient number of params"
        );
        assert_eq!(
            error(b"REGISTER  t\n", true),
            "E_BAD_TOPIC REGISTER topic name '' is not valid"
        );
        assert_eq!(
            error(b"REGISTER b@d c\n", true),
            "E_BAD_TOPIC REGISTER topic name 'b@d' is not valid"
        );
        assert_eq!(
            error(b"UNREGISTER t b@d\n", true),
            "E_BAD_CHANNEL UNREGISTER channel name 'b@d' is not valid"
        );
        let long = format!("REGISTER {}\n", "a".repeat(65));
        assert!(error(long.as_bytes(), true).starts_with("E_BAD_TOPIC "));
        // Raw bytes are echoed as received.
        let (r, _) = complete(b"REGISTER \xff\xfe\n", true);
        assert_eq!(
            r.unwrap_err(),
            "E_BAD_TOPIC REGISTER topic name '\u{fffd}\u{fffd}' is not valid"
        );
        match decode(b"REGISTER \xff\n", true) {
            Decoded::Complete(Err(e), 11) => {
                assert_eq!(
                    e.to_bytes(),
                    b"E_BAD_TOPIC REGISTER topic name '\xff' is not valid"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            error(b"IDENTIFY\n", true),
            "E_INVALID cannot IDENTIFY again"
        );
    }

    #[test]
    fn identify_bodies_are_sized_and_truncation_is_reported_at_eof() {
        let mut buf = b"IDENTIFY\n\0\0\0\x02{}PING\n".to_vec();
        assert_eq!(complete(&buf, false), (Ok(Request::Identify(b"{}")), 15));
        buf.truncate(13);
        let failed_body = ProtocolError::new("E_BAD_BODY", "IDENTIFY failed to read body");
        assert_eq!(
            decode(&buf, false),
            Decoded::Incomplete {
                at_eof: Some(failed_body)
            }
        );
        assert_eq!(
            decode(b"IDENTIFY\n\0\0", false),
            Decoded::Incomplete {
                at_eof: Some(ProtocolError::new(
                    "E_BAD_BODY",
                    "IDENTIFY failed to read body size"
                ))
            }
        );
        // Negative and huge sizes are refused at once instead of crashing or waiting.
        for size in [[0xff; 4], [0x7f, 0xff, 0xff, 0xff]] {
            let mut buf = b"IDENTIFY\n".to_vec();
            buf.extend_from_slice(&size);
            let (r, used) = complete(&buf, false);
            assert_eq!(
                (r.unwrap_err().as_str(), used),
                ("E_BAD_BODY IDENTIFY failed to read body", 13)
            );
        }
        assert_eq!(
            complete(b"IDENTIFY\n\0\0\0\0", false),
            (Ok(Request::Identify(b"")), 13)
        );
    }

    #[test]
    fn overlong_lines_are_refused_without_waiting_forever() {
        let buf = vec![b'A'; MAX_LINE_LENGTH + 1];
        assert_eq!(decode(&buf, false), Decoded::LineTooLong);
        assert_eq!(
            decode(&buf[..MAX_LINE_LENGTH], false),
            Decoded::Incomplete { at_eof: None }
        );
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes() {
        // A small deterministic fuzz: every prefix of tricky inputs, both states.
        let inputs: [&[u8]; 8] = [
            b"IDENTIFY\n\xff\xff\xff\xff",
            b"IDENTIFY\n\x00\x00\x00\x05{\"a\":",
            b"REGISTER \xe2\x80\xa8 \xc2\n",
            b"\r\n\t\x0b\x0c \xc2\xa0PING\xe3\x80\x80\n",
            b"UNREGISTER a b c d e f\n",
            b"\xc2",
            b"\n\n\n",
            b"IDENTIFY   \n\0\0\0\x01x",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut random = Vec::new();
        for _ in 0..4096 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let alphabet = b"IDENTIFYREGISTERPING \n\0\xff#@";
            random.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        for input in inputs.iter().copied().chain([random.as_slice()]) {
            for end in 0..=input.len() {
                for identified in [false, true] {
                    let mut rest = &input[..end];
                    while let Decoded::Complete(_, used) = decode(rest, identified) {
                        assert!(used > 0 && used <= rest.len());
                        rest = &rest[used..];
                    }
                }
            }
        }
    }

    #[test]
    fn trim_space_matches_go() {
        assert_eq!(trim_space(b" \t\r\nPING \r\n"), b"PING");
        assert_eq!(trim_space("\u{a0}\u{3000}x\u{2028}\u{85}".as_bytes()), b"x");
        assert_eq!(trim_space(b"\xffx\xff "), b"\xffx\xff");
        assert_eq!(trim_space(b"\xc2"), b"\xc2");
        assert_eq!(trim_space(b"  "), b"");
        // U+001C..U+001F are not white space in Go either.
        assert_eq!(trim_space(b"\x1cx"), b"\x1cx");
    }

    #[test]
    fn identify_json_decodes_like_go() {
        let info = decode_peer_info(
            br#"{"broadcast_address":"n1","tcp_port":4150,"http_port":4151,"version":"1.3.0",
                "hostname":"h","topology_zone":"z","topology_region":"r","unknown":[1],
                "remote_address":"ignored?"}"#,
        )
        .unwrap();
        assert_eq!(
            (
                info.broadcast_address.as_str(),
                info.tcp_port,
                info.http_port
            ),
            ("n1", 4150, 4151)
        );
        assert_eq!(
            (info.topology_zone.as_str(), info.topology_region.as_str()),
            ("z", "r")
        );
        // Keys match case-insensitively, later duplicates win, null is skipped.
        let info = decode_peer_info(br#"{"TCP_PORT":1,"tcp_port":2,"Version":"v","version":null}"#)
            .unwrap();
        assert_eq!((info.tcp_port, info.version.as_str()), (2, "v"));
        assert_eq!(decode_peer_info(b"null").unwrap(), PeerInfo::default());
        assert_eq!(
            decode_peer_info(br#"{"http_port":-1}"#).unwrap().http_port,
            -1
        );
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"\"x\"",
            b"{} x",
            br#"{"tcp_port":"4150"}"#,
            br#"{"tcp_port":4150.0}"#,
            br#"{"tcp_port":1e3}"#,
            br#"{"tcp_port":9223372036854775808}"#,
            br#"{"version":1}"#,
            br#"{"hostname":{}}"#,
        ] {
            assert!(
                decode_peer_info(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn me() -> IdentifyResponse {
        IdentifyResponse {
            broadcast_address: "lookupd".into(),
            hostname: "host".into(),
            http_port: 4161,
            tcp_port: 4160,
            version: "1.3.0".into(),
        }
    }

    const IDENTIFY: &[u8] =
        br#"{"broadcast_address":"n1","hostname":"h1","tcp_port":4150,"http_port":4151,"version":"1.3.0"}"#;

    fn run(
        session: &mut Session,
        db: &RwLock<RegistrationDb>,
        line: &[u8],
    ) -> Result<String, String> {
        let (req, _) = complete(line, session.identified());
        req.and_then(|r| {
            session
                .exec(r, db, &me(), 1)
                .map(|b| String::from_utf8(b).unwrap())
                .map_err(|e| String::from_utf8_lossy(&e.to_bytes()).into_owned())
        })
    }

    fn identify_line(body: &[u8]) -> Vec<u8> {
        let mut line = b"IDENTIFY\n".to_vec();
        line.extend_from_slice(&(body.len() as u32).to_be_bytes());
        line.extend_from_slice(body);
        line
    }

    #[test]
    fn identify_answers_with_lookupd_details_and_registers_the_client() {
        let db = RwLock::new(RegistrationDb::new());
        let mut s = Session::new("10.0.0.1:5000");
        assert_eq!(run(&mut s, &db, b"PING\n"), Ok("OK".into()));
        assert_eq!(
            run(&mut s, &db, &identify_line(IDENTIFY)),
            Ok(r#"{"broadcast_address":"lookupd","hostname":"host","http_port":4161,"tcp_port":4160,"version":"1.3.0"}"#.into())
        );
        let peer = s.peer().unwrap();
        assert_eq!(peer.info.remote_address, "10.0.0.1:5000");
        assert_eq!(peer.id, "10.0.0.1:5000");
        let clients = db.read().find_producers(Category::Client, "", "");
        assert_eq!(clients.len(), 1);
        assert_eq!(
            run(&mut s, &db, &identify_line(IDENTIFY)),
            Err("E_INVALID cannot IDENTIFY again".into())
        );
    }

    #[test]
    fn identify_refuses_bad_or_incomplete_bodies() {
        let db = RwLock::new(RegistrationDb::new());
        for (body, err) in [
            (
                &b"not json"[..],
                "E_BAD_BODY IDENTIFY failed to decode JSON body",
            ),
            (
                br#"{"tcp_port":"x"}"#,
                "E_BAD_BODY IDENTIFY failed to decode JSON body",
            ),
            (b"{}", "E_BAD_BODY IDENTIFY missing fields"),
            (
                br#"{"broadcast_address":"n","tcp_port":1,"http_port":0,"version":"v"}"#,
                "E_BAD_BODY IDENTIFY missing fields",
            ),
        ] {
            let mut s = Session::new("a:1");
            assert_eq!(run(&mut s, &db, &identify_line(body)), Err(err.into()));
            assert!(!s.identified());
        }
        assert!(db.read().iter().next().is_none());
    }

    #[test]
    fn register_and_unregister_follow_nsqlookupd() {
        let db = RwLock::new(RegistrationDb::new());
        let mut s = Session::new("a:1");
        run(&mut s, &db, &identify_line(IDENTIFY)).unwrap();
        for line in [
            &b"REGISTER t\n"[..],
            b"REGISTER t c\n",
            b"REGISTER t e#ephemeral\n",
            b"REGISTER t c\n",
        ] {
            assert_eq!(run(&mut s, &db, line), Ok("OK".into()));
        }
        let channels = |db: &RwLock<RegistrationDb>| {
            crate::registration_db::subkeys(&db.read().find_registrations(
                Category::Channel,
                "t",
                "*",
            ))
        };
        assert_eq!(channels(&db), ["c", "e#ephemeral"]);

        // The last producer of an ephemeral channel takes the channel with it.
        run(&mut s, &db, b"UNREGISTER t e#ephemeral\n").unwrap();
        assert_eq!(channels(&db), ["c"]);
        // A normal channel stays, without producers.
        run(&mut s, &db, b"UNREGISTER t c\n").unwrap();
        assert_eq!(channels(&db), ["c"]);
        assert!(db
            .read()
            .find_producers(Category::Channel, "t", "c")
            .is_empty());
        // Unregistering what was never registered is still OK.
        assert_eq!(run(&mut s, &db, b"UNREGISTER nope x\n"), Ok("OK".into()));

        // A topic unregistration also leaves the topic's channels.
        run(&mut s, &db, b"REGISTER t c\n").unwrap();
        run(&mut s, &db, b"UNREGISTER t\n").unwrap();
        let db_read = db.read();
        assert!(db_read
            .find_producers(Category::Channel, "t", "*")
            .is_empty());
        assert!(db_read.find_producers(Category::Topic, "t", "").is_empty());
        assert_eq!(
            db_read.find_registrations(Category::Topic, "t", "").len(),
            1
        );
    }

    #[test]
    fn closing_a_session_removes_only_its_producers() {
        let db = RwLock::new(RegistrationDb::new());
        let mut a = Session::new("a:1");
        let mut b = Session::new("b:1");
        for s in [&mut a, &mut b] {
            run(s, &db, &identify_line(IDENTIFY)).unwrap();
            run(s, &db, b"REGISTER t c\n").unwrap();
        }
        // A bad command from `a` does not touch `b`'s registrations.
        assert!(run(&mut a, &db, b"REGISTER b@d\n").is_err());
        a.close(&db);
        let db = db.read();
        for (cat, key, sub) in [
            (Category::Client, "", ""),
            (Category::Topic, "t", ""),
            (Category::Channel, "t", "c"),
        ] {
            let ids: Vec<String> = db
                .find_producers(cat, key, sub)
                .iter()
                .map(|p| p.peer.id.clone())
                .collect();
            assert_eq!(ids, ["b:1"]);
        }
    }

    #[test]
    fn ping_refreshes_the_peer() {
        let db = RwLock::new(RegistrationDb::new());
        let mut s = Session::new("a:1");
        run(&mut s, &db, &identify_line(IDENTIFY)).unwrap();
        assert_eq!(s.peer().unwrap().last_update(), 1);
        s.exec(Request::Ping, &db, &me(), 99).unwrap();
        assert_eq!(s.peer().unwrap().last_update(), 99);
    }
}
