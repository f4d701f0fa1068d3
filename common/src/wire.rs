//! NSQ wire framing: protocol magics, V2 frames, V1 (nsqlookupd) responses and
//! the message layout.
//! Pure functions over bytes, used by the broker, the bench tool and tests.

use bytes::{BufMut, BytesMut};

/// Magic a V2 client sends first.
pub const MAGIC_V2: &[u8; 4] = b"  V2";
/// Magic an nsqd sends to nsqlookupd first.
pub const MAGIC_V1: &[u8; 4] = b"  V1";

pub const FRAME_TYPE_RESPONSE: i32 = 0;
pub const FRAME_TYPE_ERROR: i32 = 1;
pub const FRAME_TYPE_MESSAGE: i32 = 2;

/// Bytes of a message ID: 16 hex ASCII characters.
pub const MSG_ID_LENGTH: usize = 16;
/// Timestamp (8) + attempts (2) + ID (16).
pub const MESSAGE_HEADER_LENGTH: usize = 8 + 2 + MSG_ID_LENGTH;

pub type MessageId = [u8; MSG_ID_LENGTH];

/// Appends `[size][frame type][data]` where size counts the type and data.
pub fn put_frame(buf: &mut BytesMut, frame_type: i32, data: &[u8]) {
    buf.reserve(8 + data.len());
    buf.put_u32(4 + data.len() as u32);
    buf.put_i32(frame_type);
    buf.put_slice(data);
}

/// Appends a whole message frame without building the message body first.
pub fn put_message_frame(
    buf: &mut BytesMut,
    timestamp: i64,
    attempts: u16,
    id: &MessageId,
    body: &[u8],
) {
    buf.reserve(8 + MESSAGE_HEADER_LENGTH + body.len());
    buf.put_u32((4 + MESSAGE_HEADER_LENGTH + body.len()) as u32);
    buf.put_i32(FRAME_TYPE_MESSAGE);
    put_message(buf, timestamp, attempts, id, body);
}

/// nsqd's message encoding: timestamp (ns, BE i64), attempts (BE u16), ID, body.
/// The same bytes go on the wire and into diskqueue records.
pub fn put_message(buf: &mut BytesMut, timestamp: i64, attempts: u16, id: &MessageId, body: &[u8]) {
    buf.reserve(MESSAGE_HEADER_LENGTH + body.len());
    buf.put_i64(timestamp);
    buf.put_u16(attempts);
    buf.put_slice(id);
    buf.put_slice(body);
}

/// A decoded message borrowing its body from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef<'a> {
    pub timestamp: i64,
    pub attempts: u16,
    pub id: MessageId,
    pub body: &'a [u8],
}

/// Decodes nsqd's message encoding; `None` when too short for the header.
pub fn decode_message(data: &[u8]) -> Option<MessageRef<'_>> {
    if data.len() < MESSAGE_HEADER_LENGTH {
        return None;
    }
    let timestamp = i64::from_be_bytes(data[0..8].try_into().ok()?);
    let attempts = u16::from_be_bytes(data[8..10].try_into().ok()?);
    let id: MessageId = data[10..26].try_into().ok()?;
    Some(MessageRef {
        timestamp,
        attempts,
        id,
        body: &data[MESSAGE_HEADER_LENGTH..],
    })
}

/// A frame split off a buffer: (frame type, data, bytes consumed).
pub type SplitFrame<'a> = (i32, &'a [u8], usize);

/// One frame split off the front of `buf`.
/// `Ok(None)` means more bytes are needed; `Err` means the size is nonsense.
pub fn split_frame(buf: &[u8]) -> Result<Option<SplitFrame<'_>>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if size < 4 {
        return Err(FrameError::BadSize(size));
    }
    if buf.len() < 4 + size {
        return Ok(None);
    }
    let frame_type = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Ok(Some((frame_type, &buf[8..4 + size], 4 + size)))
}

/// Appends an nsqlookupd (protocol V1) response: `[size][data]` where size is
/// the data length. Unlike V2 frames there is no frame type; errors are plain
/// text starting with `E_`.
pub fn put_v1_response(buf: &mut BytesMut, data: &[u8]) {
    buf.reserve(4 + data.len());
    buf.put_u32(data.len() as u32);
    buf.put_slice(data);
}

/// One V1 response split off the front of `buf`: (data, bytes consumed), or
/// `None` when more bytes are needed.
pub fn split_v1_response(buf: &[u8]) -> Option<(&[u8], usize)> {
    let size = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let data = buf.get(4..4usize.checked_add(size)?)?;
    Some((data, 4 + size))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid frame size {0}")]
    BadSize(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_frame_round_trips() {
        let mut buf = BytesMut::new();
        let id = *b"0123456789abcdef";
        put_message_frame(&mut buf, 42, 3, &id, b"hello");
        let (ft, data, used) = split_frame(&buf).unwrap().unwrap();
        assert_eq!((ft, used), (FRAME_TYPE_MESSAGE, buf.len()));
        let m = decode_message(data).unwrap();
        assert_eq!(
            (m.timestamp, m.attempts, m.id, m.body),
            (42, 3, id, &b"hello"[..])
        );
    }

    #[test]
    fn v1_responses_are_size_then_data_without_a_frame_type() {
        let mut buf = BytesMut::new();
        put_v1_response(&mut buf, b"OK");
        put_v1_response(&mut buf, b"");
        assert_eq!(&buf[..], b"\0\0\0\x02OK\0\0\0\0");
        assert_eq!(split_v1_response(&buf), Some((&b"OK"[..], 6)));
        assert_eq!(split_v1_response(&buf[6..]), Some((&b""[..], 4)));
        assert_eq!(split_v1_response(&buf[..5]), None);
        assert_eq!(split_v1_response(&buf[..3]), None);
    }

    #[test]
    fn short_input_needs_more_and_bad_size_errors() {
        assert_eq!(split_frame(&[0, 0, 0]), Ok(None));
        assert_eq!(split_frame(&[0, 0, 0, 9, 0, 0, 0, 0]), Ok(None));
        assert_eq!(split_frame(&[0, 0, 0, 1]), Err(FrameError::BadSize(1)));
        assert!(decode_message(&[0; 25]).is_none());
    }
}
