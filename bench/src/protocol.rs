//! The client side of the V2 protocol, as pure functions over bytes: command encoders
//! (MPUB, PUB, SUB, RDY, FIN, NOP, IDENTIFY, AUTH), classification of the broker's frames, and
//! [`ReadBuf`], a reusable receive buffer that frames are parsed out of in place.
//! No sockets here; the workers in `writer`/`reader` own the I/O.

use anyhow::{bail, Result};
use nsq_common::wire::{
    decode_message, split_frame, MessageId, MessageRef, FRAME_TYPE_ERROR, FRAME_TYPE_MESSAGE,
    FRAME_TYPE_RESPONSE,
};

/// The response body nsqd uses for success.
pub const OK: &[u8] = b"OK";
/// The response body of a heartbeat; the client answers with [`NOP`].
pub const HEARTBEAT: &[u8] = b"_heartbeat_";
pub const NOP: &[u8] = b"NOP\n";

/// Frames larger than this are treated as a protocol error rather than buffered.
pub const MAX_FRAME_SIZE: usize = 64 << 20;

/// One frame from the broker, borrowing from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Response `OK`.
    Ok,
    /// Response `_heartbeat_`.
    Heartbeat,
    /// Any other response, e.g. IDENTIFY's JSON or `CLOSE_WAIT`.
    Response(&'a [u8]),
    /// An error frame such as `E_INVALID ...` or `E_FIN_FAILED ...`.
    Error(&'a [u8]),
    Message(MessageRef<'a>),
}

/// Names a frame from its type and data; errors on unknown types or short messages.
pub fn classify(frame_type: i32, data: &[u8]) -> Result<Frame<'_>> {
    Ok(match frame_type {
        FRAME_TYPE_RESPONSE if data == OK => Frame::Ok,
        FRAME_TYPE_RESPONSE if data == HEARTBEAT => Frame::Heartbeat,
        FRAME_TYPE_RESPONSE => Frame::Response(data),
        FRAME_TYPE_ERROR => Frame::Error(data),
        FRAME_TYPE_MESSAGE => match decode_message(data) {
            Some(msg) => Frame::Message(msg),
            None => bail!("message frame too short ({} bytes)", data.len()),
        },
        other => bail!("unknown frame type {other}"),
    })
}

/// `MPUB <topic>\n[body size][count]([size][bytes])*` with `count` bodies of `size`
/// bytes, like `go-nsq`'s `MultiPublish` with the Go tool's batch. Built once and
/// written as-is for every batch. Bodies are zeros like the Go tool's, or
/// pseudo-random bytes when `random`: zeros compress to almost nothing, so they
/// hide what snappy and deflate cost.
pub fn mpub_command(topic: &str, size: usize, count: usize, random: bool) -> Vec<u8> {
    let body_len = 4 + count * (4 + size);
    let mut out = Vec::with_capacity(6 + topic.len() + 4 + body_len);
    out.extend_from_slice(b"MPUB ");
    out.extend_from_slice(topic.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(&(count as u32).to_be_bytes());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..count {
        out.extend_from_slice(&(size as u32).to_be_bytes());
        put_body(&mut out, size, random, &mut state);
    }
    out
}

/// `PUB <topic>\n[size][bytes]`: one message, as go-nsq's `Publish`.
pub fn pub_command(topic: &str, size: usize, random: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + topic.len() + 4 + size);
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(topic.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&(size as u32).to_be_bytes());
    put_body(&mut out, size, random, &mut 0x9E37_79B9_7F4A_7C15u64);
    out
}

/// `PUB <topic>\n[size][body]` with the given body.
pub fn pub_body_command(topic: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + topic.len() + 4 + body.len());
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(topic.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Zeros, or pseudo-random bytes (xorshift64: incompressible enough, and
/// the same every run).
fn put_body(out: &mut Vec<u8>, size: usize, random: bool, state: &mut u64) {
    if random {
        out.extend((0..size).map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state as u8
        }));
    } else {
        out.resize(out.len() + size, 0);
    }
}

/// `IDENTIFY\n[size][json]`.
pub fn identify_command(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + json.len());
    out.extend_from_slice(b"IDENTIFY\n");
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    out
}

/// `AUTH\n[size][secret]`.
pub fn auth_command(secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + secret.len());
    out.extend_from_slice(b"AUTH\n");
    out.extend_from_slice(&(secret.len() as u32).to_be_bytes());
    out.extend_from_slice(secret);
    out
}

pub fn sub_command(topic: &str, channel: &str) -> Vec<u8> {
    format!("SUB {topic} {channel}\n").into_bytes()
}

pub fn rdy_command(count: u64) -> Vec<u8> {
    format!("RDY {count}\n").into_bytes()
}

/// Appends `FIN <id>\n` (21 bytes) without allocating beyond `out`'s growth.
pub fn put_fin(out: &mut Vec<u8>, id: &MessageId) {
    out.extend_from_slice(b"FIN ");
    out.extend_from_slice(id);
    out.push(b'\n');
}

/// A receive buffer that frames are split out of without copying. Bytes are read into
/// [`ReadBuf::spare`], committed with [`ReadBuf::filled`] and consumed by
/// [`ReadBuf::next_frame`]; a trailing partial frame is moved to the front only when the
/// free tail gets short, and the buffer grows only for a frame bigger than itself.
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    pub fn new(capacity: usize) -> Self {
        ReadBuf {
            buf: vec![0; capacity.max(64)],
            start: 0,
            end: 0,
        }
    }

    /// Unparsed bytes.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Free space to read into, at least a quarter of the buffer (or room for the whole
    /// pending frame when that is bigger than the buffer).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let cap = self.buf.len();
        let needed = self.pending_frame_len().unwrap_or(0);
        if needed > cap {
            self.compact();
            self.buf.resize(needed, 0);
        } else if cap - self.end < cap / 4 || self.start + needed > cap {
            self.compact();
        }
        &mut self.buf[self.end..]
    }

    /// Commits `n` bytes read into [`ReadBuf::spare`].
    pub fn filled(&mut self, n: usize) {
        assert!(
            self.end + n <= self.buf.len(),
            "filled past the spare space"
        );
        self.end += n;
    }

    /// Splits the next complete frame off the front, or `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>> {
        if self.pending_frame_len().unwrap_or(0) > MAX_FRAME_SIZE {
            bail!("frame larger than {MAX_FRAME_SIZE} bytes");
        }
        match split_frame(&self.buf[self.start..self.end])? {
            None => Ok(None),
            Some((frame_type, _, used)) => {
                let at = self.start;
                self.start += used;
                // Re-slice so the borrow is of `self.buf` alone.
                let data = &self.buf[at + 8..at + used];
                classify(frame_type, data).map(Some)
            }
        }
    }

    /// Removes and returns the unparsed bytes (what arrived past a stream upgrade).
    pub fn take_pending(&mut self) -> Vec<u8> {
        let rest = self.pending().to_vec();
        self.start = 0;
        self.end = 0;
        rest
    }

    /// Total length (size prefix included) of the frame at the front, once its size is known.
    fn pending_frame_len(&self) -> Option<usize> {
        let p = self.pending();
        let size: [u8; 4] = p.get(..4)?.try_into().ok()?;
        Some(4 + u32::from_be_bytes(size) as usize)
    }

    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use nsq_common::wire::{put_frame, put_message_frame};

    fn feed(rb: &mut ReadBuf, mut bytes: &[u8], chunk: usize) -> Vec<String> {
        let mut seen = Vec::new();
        while !bytes.is_empty() {
            let spare = rb.spare();
            let n = chunk.min(spare.len()).min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            rb.filled(n);
            bytes = &bytes[n..];
            while let Some(f) = rb.next_frame().unwrap() {
                seen.push(match f {
                    Frame::Ok => "ok".to_string(),
                    Frame::Heartbeat => "heartbeat".to_string(),
                    Frame::Response(r) => format!("response {}", String::from_utf8_lossy(r)),
                    Frame::Error(e) => format!("error {}", String::from_utf8_lossy(e)),
                    Frame::Message(m) => format!(
                        "message {} {} {}",
                        String::from_utf8_lossy(&m.id),
                        m.attempts,
                        m.body.len()
                    ),
                });
            }
        }
        seen
    }

    fn canned_stream() -> BytesMut {
        let mut b = BytesMut::new();
        put_frame(&mut b, FRAME_TYPE_RESPONSE, br#"{"max_rdy_count":2500}"#);
        put_frame(&mut b, FRAME_TYPE_RESPONSE, b"OK");
        for i in 0..50u8 {
            let mut id = *b"0000000000000000";
            id[15] = b'a' + (i % 26);
            put_message_frame(&mut b, 1, 1, &id, &[7; 200]);
        }
        put_frame(&mut b, FRAME_TYPE_RESPONSE, b"_heartbeat_");
        put_frame(
            &mut b,
            FRAME_TYPE_ERROR,
            b"E_FIN_FAILED FIN 0000000000000000 failed",
        );
        put_message_frame(&mut b, 2, 3, b"ffffffffffffffff", &[1; 5000]);
        b
    }

    #[test]
    fn frames_split_the_same_at_any_read_size() {
        let stream = canned_stream();
        let whole = feed(&mut ReadBuf::new(1 << 20), &stream, usize::MAX);
        assert_eq!(whole.len(), 2 + 50 + 3);
        assert_eq!(whole[0], r#"response {"max_rdy_count":2500}"#);
        assert_eq!(whole[1], "ok");
        assert_eq!(whole[2], "message 000000000000000a 1 200");
        assert_eq!(whole[52], "heartbeat");
        assert!(whole[53].starts_with("error E_FIN_FAILED"));
        assert_eq!(whole[54], "message ffffffffffffffff 3 5000");
        // A tiny buffer must grow for the 5 KB message; odd chunk sizes split headers.
        for chunk in [1, 3, 7, 100, 4096] {
            assert_eq!(
                feed(&mut ReadBuf::new(64), &stream, chunk),
                whole,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn pub_is_one_message_with_its_size() {
        let cmd = pub_command("t", 3, false);
        assert_eq!(cmd, b"PUB t\n\0\0\0\x03\0\0\0");
        let random = pub_command("t", 64, true);
        assert_eq!(&random[..10], b"PUB t\n\0\0\0\x40");
        assert!(random[10..].iter().any(|&b| b != 0));
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut rb = ReadBuf::new(64);
        let mut b = BytesMut::new();
        put_frame(&mut b, 9, b"??");
        rb.spare()[..b.len()].copy_from_slice(&b);
        rb.filled(b.len());
        assert!(rb.next_frame().is_err());

        let mut rb = ReadBuf::new(64);
        let mut b = BytesMut::new();
        put_frame(&mut b, FRAME_TYPE_MESSAGE, &[0; 10]);
        rb.spare()[..b.len()].copy_from_slice(&b);
        rb.filled(b.len());
        assert!(rb.next_frame().is_err());

        let mut rb = ReadBuf::new(64);
        rb.spare()[..4].copy_from_slice(&[0, 0, 0, 1]);
        rb.filled(4);
        assert!(rb.next_frame().is_err());

        let mut rb = ReadBuf::new(64);
        rb.spare()[..4].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        rb.filled(4);
        assert!(rb.next_frame().is_err());
    }

    #[test]
    fn random_bodies_keep_the_layout_and_do_not_compress() {
        let zeros = mpub_command("t", 200, 50, false);
        let random = mpub_command("t", 200, 50, true);
        assert_eq!(zeros.len(), random.len());
        assert_eq!(zeros[..15], random[..15], "header, count and first size");
        let packed = |b: &[u8]| snap::raw::Encoder::new().compress_vec(b).unwrap().len();
        assert!(packed(&random) > random.len() * 9 / 10);
        assert!(packed(&zeros) < zeros.len() / 10);
    }

    #[test]
    fn mpub_command_matches_the_v2_layout() {
        let cmd = mpub_command("t", 3, 2, false);
        let mut want = b"MPUB t\n".to_vec();
        want.extend_from_slice(&[0, 0, 0, 18, 0, 0, 0, 2]);
        want.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(cmd, want);
    }

    #[test]
    fn small_commands_encode() {
        let mut out = Vec::new();
        put_fin(&mut out, b"0123456789abcdef");
        assert_eq!(out, b"FIN 0123456789abcdef\n");
        assert_eq!(sub_command("t", "c"), b"SUB t c\n");
        assert_eq!(rdy_command(2500), b"RDY 2500\n");
        assert_eq!(identify_command(b"{}"), b"IDENTIFY\n\0\0\0\x02{}");
        assert_eq!(auth_command(b"s3"), b"AUTH\n\0\0\0\x02s3");
        assert_eq!(pub_body_command("t", b"hi"), b"PUB t\n\0\0\0\x02hi");
    }
}
