//! A blocking TCP protocol V2 client that works in raw bytes.
//!
//! Reads are bounded by timeouts so a broker that stays silent fails the test
//! instead of hanging it. Frames are split and messages decoded with
//! `nsq_common::wire`, the same codec the broker uses; the assertions compare
//! bytes against nsqd's documented wire format, so a shared codec bug would
//! still show up as a mismatch against the literal bytes in the tests.
//!
//! After an IDENTIFY that negotiated them, the client switches to TLS
//! ([`V2Client::upgrade_tls`]) and to snappy or deflate
//! ([`V2Client::start_snappy`], [`V2Client::start_deflate`]), layered as nsqd
//! layers them: compression inside TLS. Until compression starts, the bytes
//! the broker sent can be looked at as they came ([`V2Client::peek_raw`]).

use bytes::BytesMut;
use nsq_common::compress::Codec;
use nsq_common::wire::{
    decode_message, split_frame, FRAME_TYPE_ERROR, FRAME_TYPE_MESSAGE, FRAME_TYPE_RESPONSE,
    MAGIC_V2,
};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default wait for a frame the test expects.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// A decoded message frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub timestamp: i64,
    pub attempts: u16,
    pub id: [u8; 16],
    pub body: Vec<u8>,
}

impl Msg {
    pub fn id_str(&self) -> &str {
        std::str::from_utf8(&self.id).expect("message IDs are ASCII hex")
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("test bodies are UTF-8")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Response(Vec<u8>),
    Error(Vec<u8>),
    Message(Msg),
    /// A frame type nsqd never sends.
    Unknown(i32, Vec<u8>),
}

impl Frame {
    pub fn is_heartbeat(&self) -> bool {
        matches!(self, Frame::Response(b) if b == b"_heartbeat_")
    }
}

/// What came instead of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoFrame {
    Timeout,
    /// EOF or reset: the broker closed the connection.
    Closed,
}

/// A test connection: 5 s to connect and per write, no Nagle delay.
pub(crate) fn open_stream(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    stream
}

/// The socket, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes),
            Stream::Tls(s) => {
                s.write_all(bytes)?;
                s.flush()
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

pub struct V2Client {
    stream: Stream,
    codec: Codec,
    /// Compressed bytes read but not decoded yet.
    raw: BytesMut,
    /// Plaintext read but not taken as frames yet.
    buf: Vec<u8>,
    /// Why the last read found the connection closed (an I/O or TLS error).
    close_reason: Option<String>,
}

impl V2Client {
    /// Connects and sends the `  V2` magic.
    pub fn connect(addr: SocketAddr) -> V2Client {
        let mut c = Self::connect_without_magic(addr);
        c.write(MAGIC_V2);
        c
    }

    pub fn connect_without_magic(addr: SocketAddr) -> V2Client {
        V2Client {
            stream: Stream::Plain(open_stream(addr)),
            codec: Codec::None,
            raw: BytesMut::new(),
            buf: Vec::new(),
            close_reason: None,
        }
    }

    /// Writes `bytes`, compressed when compression is on.
    pub fn write(&mut self, bytes: &[u8]) {
        let wire = match self.codec.encode(bytes).expect("compress") {
            None => return self.write_raw(bytes),
            Some(wire) => std::mem::take(wire),
        };
        self.write_raw(&wire);
    }

    /// Writes `bytes` below compression (inside TLS when it is on).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write {:?}: {e}", String::from_utf8_lossy(bytes)));
    }

    /// Why the connection was found closed: the I/O or TLS error, if any
    /// (`None` for a clean EOF or while open).
    pub fn close_reason(&self) -> Option<&str> {
        self.close_reason.as_deref()
    }

    /// The client side of the TLS handshake, on the socket as it is (after
    /// IDENTIFY's answer). Panics if the broker sent anything past that
    /// answer first. `Err` carries rustls' or the socket's error.
    pub fn upgrade_tls(&mut self, config: Arc<ClientConfig>) -> Result<(), String> {
        assert!(
            self.buf.is_empty(),
            "the broker sent {:?} before the TLS handshake",
            self.buf
        );
        let Stream::Plain(tcp) = &self.stream else {
            panic!("TLS is already on");
        };
        // A second handle on the socket: on failure the plain one stays usable.
        let sock = tcp.try_clone().expect("clone the socket");
        sock.set_read_timeout(Some(FRAME_TIMEOUT))
            .expect("read timeout");
        let conn = ClientConnection::new(config, crate::certs::server_name())
            .map_err(|e| e.to_string())?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| e.to_string())?;
        }
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Reads until `done` holds for the bytes received so far (decrypted, not
    /// decompressed) and returns a copy of them; they stay buffered for the
    /// frame reader or for [`V2Client::start_snappy`]/[`V2Client::start_deflate`].
    pub fn peek_raw(&mut self, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        assert!(
            self.codec.is_none(),
            "peek_raw sees the stream below compression only before it starts"
        );
        let deadline = Instant::now() + FRAME_TIMEOUT;
        while !done(&self.buf) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("timed out peeking; have {:?}", self.buf);
            }
            if let Err(e) = self.read_some(left) {
                panic!("{e:?} while peeking; have {:?}", self.buf);
            }
        }
        self.buf.clone()
    }

    /// Every byte until the broker closes the connection (before compression).
    pub fn read_until_closed(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + FRAME_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_some(left) {
                Ok(()) => {}
                Err(NoFrame::Closed) => return std::mem::take(&mut self.buf),
                Err(NoFrame::Timeout) => {
                    panic!("the connection stayed open; got {:?}", self.buf)
                }
            }
        }
    }

    /// Snappy from here on (after IDENTIFY's answer): what was read past the
    /// last frame taken is the start of the snappy stream.
    pub fn start_snappy(&mut self) {
        self.start_codec(Codec::snappy());
    }

    /// Deflate from here on; the client compresses at `level` (1..=9).
    pub fn start_deflate(&mut self, level: u32) {
        self.start_codec(Codec::deflate(level));
    }

    fn start_codec(&mut self, codec: Codec) {
        assert!(self.codec.is_none(), "compression is already on");
        self.codec = codec;
        self.raw = BytesMut::from(&self.buf[..]);
        self.buf.clear();
        self.decode();
    }

    /// Moves what `raw` holds, decompressed, into `buf`.
    fn decode(&mut self) {
        if self.codec.is_none() {
            return;
        }
        let mut out = BytesMut::new();
        if let Err(e) = self.codec.decode(&mut self.raw, &mut out) {
            panic!("the broker's compressed stream does not decode: {e}");
        }
        self.buf.extend_from_slice(&out);
    }

    /// Writes `line` and a newline.
    pub fn command(&mut self, line: &str) {
        self.write(format!("{line}\n").as_bytes());
    }

    /// Writes `line`, a newline, the 4-byte big-endian length and `body`.
    pub fn command_with_body(&mut self, line: &str, body: &[u8]) {
        let mut out = format!("{line}\n").into_bytes();
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        self.write(&out);
    }

    /// The next frame within `timeout`, or why none came.
    pub fn next_frame_within(&mut self, timeout: Duration) -> Result<Frame, NoFrame> {
        let deadline = Instant::now() + timeout;
        loop {
            match split_frame(&self.buf) {
                Ok(Some((frame_type, data, used))) => {
                    let frame = match frame_type {
                        FRAME_TYPE_RESPONSE => Frame::Response(data.to_vec()),
                        FRAME_TYPE_ERROR => Frame::Error(data.to_vec()),
                        FRAME_TYPE_MESSAGE => {
                            let m = decode_message(data)
                                .unwrap_or_else(|| panic!("message frame too short: {data:?}"));
                            Frame::Message(Msg {
                                timestamp: m.timestamp,
                                attempts: m.attempts,
                                id: m.id,
                                body: m.body.to_vec(),
                            })
                        }
                        other => Frame::Unknown(other, data.to_vec()),
                    };
                    self.buf.drain(..used);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => panic!("broker sent a bad frame ({e}): {:?}", self.buf),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoFrame::Timeout);
            }
            self.read_some(left)?;
        }
    }

    /// Reads whatever arrives within `timeout` into the buffer.
    fn read_some(&mut self, timeout: Duration) -> Result<(), NoFrame> {
        self.stream
            .tcp()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(NoFrame::Closed),
            Ok(n) => {
                if self.codec.is_none() {
                    self.buf.extend_from_slice(&chunk[..n]);
                } else {
                    self.raw.extend_from_slice(&chunk[..n]);
                    self.decode();
                }
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(NoFrame::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(e) => {
                self.close_reason = Some(e.to_string());
                Err(NoFrame::Closed)
            }
        }
    }

    /// The next frame; panics on timeout or close.
    pub fn next_frame(&mut self) -> Frame {
        self.next_frame_within(FRAME_TIMEOUT)
            .unwrap_or_else(|e| panic!("expected a frame, got {e:?}"))
    }

    /// The next frame that is not a heartbeat (heartbeats are answered with NOP).
    pub fn next_non_heartbeat(&mut self) -> Frame {
        loop {
            let f = self.next_frame();
            if !f.is_heartbeat() {
                return f;
            }
            self.command("NOP");
        }
    }

    pub fn expect_response(&mut self, want: &[u8]) {
        match self.next_non_heartbeat() {
            Frame::Response(got) if got == want => {}
            other => panic!(
                "expected response {:?}, got {}",
                String::from_utf8_lossy(want),
                describe(&other)
            ),
        }
    }

    pub fn expect_ok(&mut self) {
        self.expect_response(b"OK");
    }

    /// The next frame is an error frame carrying exactly `want`.
    pub fn expect_error(&mut self, want: &str) {
        match self.next_non_heartbeat() {
            Frame::Error(got) if got == want.as_bytes() => {}
            other => panic!("expected error {want:?}, got {}", describe(&other)),
        }
    }

    /// The broker closes the connection (EOF or reset) without sending anything more.
    pub fn expect_closed(&mut self) {
        match self.next_frame_within(FRAME_TIMEOUT) {
            Err(NoFrame::Closed) => {}
            Err(NoFrame::Timeout) => {
                panic!("expected the broker to close the connection; it stayed open")
            }
            Ok(f) => panic!("expected the connection closed, got {}", describe(&f)),
        }
    }

    /// Nothing but heartbeats arrives for `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_frame_within(left) {
                Err(NoFrame::Timeout) => return,
                Err(NoFrame::Closed) => panic!("connection closed while expecting silence"),
                Ok(f) if f.is_heartbeat() => self.command("NOP"),
                Ok(f) => panic!("expected nothing for {d:?}, got {}", describe(&f)),
            }
        }
    }

    /// The next message (heartbeats are answered and skipped).
    pub fn next_message(&mut self) -> Msg {
        match self.next_non_heartbeat() {
            Frame::Message(m) => m,
            other => panic!("expected a message, got {}", describe(&other)),
        }
    }

    /// The next message within `timeout`, or `None` if nothing comes.
    pub fn message_within(&mut self, timeout: Duration) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame_within(left) {
                Err(NoFrame::Timeout) => return None,
                Err(NoFrame::Closed) => panic!("connection closed while waiting for a message"),
                Ok(f) if f.is_heartbeat() => self.command("NOP"),
                Ok(Frame::Message(m)) => return Some(m),
                Ok(f) => panic!("expected a message, got {}", describe(&f)),
            }
        }
    }

    /// IDENTIFY with `json` as the body; returns the broker's frame.
    pub fn identify(&mut self, json: &serde_json::Value) -> Frame {
        self.command_with_body("IDENTIFY", json.to_string().as_bytes());
        self.next_frame()
    }

    /// IDENTIFY with `json`, which asks for `feature_negotiation`; returns
    /// the broker's JSON answer, panicking on anything else.
    pub fn identify_features(&mut self, json: &serde_json::Value) -> serde_json::Value {
        match self.identify(json) {
            Frame::Response(body) => serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "IDENTIFY answer is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&body)
                )
            }),
            other => panic!("expected IDENTIFY's JSON answer, got {}", describe(&other)),
        }
    }

    /// SUB, expecting OK.
    pub fn subscribe(&mut self, topic: &str, channel: &str) {
        self.command(&format!("SUB {topic} {channel}"));
        self.expect_ok();
    }

    /// PUB, expecting OK.
    pub fn publish(&mut self, topic: &str, body: &[u8]) {
        self.command_with_body(&format!("PUB {topic}"), body);
        self.expect_ok();
    }

    /// MPUB, expecting OK.
    pub fn mpublish(&mut self, topic: &str, bodies: &[&[u8]]) {
        self.command_with_body(&format!("MPUB {topic}"), &mpub_body(bodies));
        self.expect_ok();
    }

    /// DPUB, expecting OK.
    pub fn dpublish(&mut self, topic: &str, defer_ms: u64, body: &[u8]) {
        self.command_with_body(&format!("DPUB {topic} {defer_ms}"), body);
        self.expect_ok();
    }

    pub fn rdy(&mut self, n: u64) {
        self.command(&format!("RDY {n}"));
    }

    pub fn fin(&mut self, id: &[u8; 16]) {
        self.command(&format!("FIN {}", ascii(id)));
    }

    pub fn req(&mut self, id: &[u8; 16], delay_ms: u64) {
        self.command(&format!("REQ {} {delay_ms}", ascii(id)));
    }

    pub fn touch(&mut self, id: &[u8; 16]) {
        self.command(&format!("TOUCH {}", ascii(id)));
    }
}

/// MPUB's body: message count, then `[size][bytes]` per message.
pub fn mpub_body(bodies: &[&[u8]]) -> Vec<u8> {
    let mut out = (bodies.len() as u32).to_be_bytes().to_vec();
    for b in bodies {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

fn ascii(id: &[u8; 16]) -> &str {
    std::str::from_utf8(id).expect("message IDs are ASCII")
}

/// A frame for failure messages, with text bodies shown as text.
pub fn describe(f: &Frame) -> String {
    match f {
        Frame::Response(b) => format!("response {:?}", String::from_utf8_lossy(b)),
        Frame::Error(b) => format!("error {:?}", String::from_utf8_lossy(b)),
        Frame::Message(m) => format!(
            "message id={} attempts={} body={:?}",
            String::from_utf8_lossy(&m.id),
            m.attempts,
            String::from_utf8_lossy(&m.body)
        ),
        Frame::Unknown(t, b) => format!("frame type {t} {b:?}"),
    }
}
