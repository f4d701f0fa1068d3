//! The broker's message: an ID, a shared body, and delivery bookkeeping.

use bytes::{Bytes, BytesMut};
use nsq_common::wire::{self, MessageId};
use std::time::{SystemTime, UNIX_EPOCH};

/// A message as topics and channels hold it. Cloning is cheap: the body is shared.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: MessageId,
    pub body: Bytes,
    /// Publish time in Unix nanoseconds.
    pub timestamp: i64,
    pub attempts: u16,
    /// DPUB deferral in milliseconds; 0 for an ordinary message.
    pub defer_ms: u32,
}

impl Message {
    pub fn new(id: MessageId, body: Bytes, timestamp: i64) -> Self {
        Message {
            id,
            body,
            timestamp,
            attempts: 0,
            defer_ms: 0,
        }
    }

    /// nsqd's encoding, as written into diskqueue records.
    pub fn encode(&self, buf: &mut BytesMut) {
        wire::put_message(buf, self.timestamp, self.attempts, &self.id, &self.body);
    }

    /// Decodes a diskqueue record; the body shares `record`'s memory.
    pub fn decode(record: Bytes) -> Option<Message> {
        let m = wire::decode_message(&record)?;
        let (id, timestamp, attempts) = (m.id, m.timestamp, m.attempts);
        Some(Message {
            id,
            body: record.slice(wire::MESSAGE_HEADER_LENGTH..),
            timestamp,
            attempts,
            defer_ms: 0,
        })
    }
}

/// Wall-clock Unix nanoseconds, as message timestamps use.
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
