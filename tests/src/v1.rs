//! A blocking client for nsqlookupd's TCP protocol V1 that works in raw bytes.
//!
//! Requests are a line (`PING\n`, `REGISTER <topic> [<channel>]\n`, ...);
//! `IDENTIFY\n` is followed by a 4-byte big-endian size and a JSON body. Every
//! answer, success or error, is a 4-byte big-endian size and that many bytes,
//! with no frame type (nsqlookupd's `protocol.SendResponse`). Reads are bounded
//! by timeouts so a silent lookupd fails the test instead of hanging it.

use crate::v2::NoFrame;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default wait for a response the test expects.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The protocol magic, spelled out rather than taken from the shared codec.
pub const MAGIC: &[u8; 4] = b"  V1";

/// `data` as nsqlookupd frames it: 4-byte big-endian size, then the bytes.
pub fn sized(data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

pub struct V1Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl V1Client {
    /// Connects and sends the `  V1` magic.
    pub fn connect(addr: SocketAddr) -> V1Client {
        let mut c = Self::connect_without_magic(addr);
        c.write(MAGIC);
        c
    }

    pub fn connect_without_magic(addr: SocketAddr) -> V1Client {
        V1Client {
            stream: crate::v2::open_stream(addr),
            buf: Vec::new(),
        }
    }

    /// The local address (nsqlookupd's ID for this connection's producer).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write {:?}: {e}", String::from_utf8_lossy(bytes)));
    }

    /// Writes `line` and a newline.
    pub fn command(&mut self, line: &str) {
        self.write(format!("{line}\n").as_bytes());
    }

    /// Writes `line`, a newline, the 4-byte big-endian size and `body`.
    pub fn command_with_body(&mut self, line: &str, body: &[u8]) {
        let mut out = format!("{line}\n").into_bytes();
        out.extend_from_slice(&sized(body));
        self.write(&out);
    }

    /// Closes the sending side (the lookupd then reads EOF).
    pub fn shutdown_write(&mut self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown(Write)");
    }

    /// Exactly `n` more bytes within `timeout`, or why they did not come.
    pub fn read_exact_within(&mut self, n: usize, timeout: Duration) -> Result<Vec<u8>, NoFrame> {
        let deadline = Instant::now() + timeout;
        while self.buf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoFrame::Timeout);
            }
            self.read_some(left)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_some(&mut self, timeout: Duration) -> Result<(), NoFrame> {
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(NoFrame::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(NoFrame::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(_) => Err(NoFrame::Closed),
        }
    }

    /// The next response's bytes (size prefix removed).
    pub fn next_response_within(&mut self, timeout: Duration) -> Result<Vec<u8>, NoFrame> {
        let deadline = Instant::now() + timeout;
        let size = self.read_exact_within(4, timeout)?;
        let size = u32::from_be_bytes(size.try_into().unwrap()) as usize;
        assert!(size < 1 << 20, "implausible response size {size}");
        let left = deadline.saturating_duration_since(Instant::now());
        self.read_exact_within(size, left.max(Duration::from_millis(100)))
    }

    /// The next response; panics on timeout or close.
    pub fn next_response(&mut self) -> Vec<u8> {
        self.next_response_within(RESPONSE_TIMEOUT)
            .unwrap_or_else(|e| panic!("expected a response, got {e:?}"))
    }

    /// The next bytes on the wire are exactly `want` (size prefix included).
    pub fn expect_bytes(&mut self, want: &[u8]) {
        match self.read_exact_within(want.len(), RESPONSE_TIMEOUT) {
            Ok(got) => assert_eq!(
                got,
                want,
                "expected {:?}, got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            ),
            Err(e) => panic!(
                "expected {:?}, got {e:?} after {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// The next response is `sized(want)`.
    pub fn expect_response(&mut self, want: &[u8]) {
        self.expect_bytes(&sized(want));
    }

    pub fn expect_ok(&mut self) {
        self.expect_bytes(b"\x00\x00\x00\x02OK");
    }

    /// The lookupd closes the connection (EOF or reset) without sending more.
    pub fn expect_closed(&mut self) {
        match self.read_exact_within(1, RESPONSE_TIMEOUT) {
            Err(NoFrame::Closed) if self.buf.is_empty() => {}
            Err(NoFrame::Closed) => panic!(
                "connection closed after unexpected bytes {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(NoFrame::Timeout) => {
                panic!("expected nsqlookupd to close the connection; it stayed open")
            }
            Ok(b) => {
                let mut rest = b;
                rest.append(&mut self.buf);
                panic!(
                    "expected the connection closed, got {:?}",
                    String::from_utf8_lossy(&rest)
                )
            }
        }
    }

    /// Nothing arrives for `d` and the connection stays open.
    pub fn expect_silence(&mut self, d: Duration) {
        match self.read_exact_within(1, d) {
            Err(NoFrame::Timeout) => {}
            Err(NoFrame::Closed) => panic!("connection closed while expecting silence"),
            Ok(b) => panic!("expected nothing for {d:?}, got {b:?}"),
        }
    }

    /// IDENTIFY with `json` as the body; returns the response bytes.
    pub fn identify(&mut self, json: &serde_json::Value) -> Vec<u8> {
        self.command_with_body("IDENTIFY", json.to_string().as_bytes());
        self.next_response()
    }
}
