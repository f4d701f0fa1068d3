//! A topic's or channel's memory queue, bounded by a message count
//! (`--mem-queue-size`, nsqd's) and, beyond nsqd, by bytes
//! (`--max-mem-queue-bytes`), so large messages cannot fill the memory.

use crate::message::Message;
use nsq_common::wire::MESSAGE_HEADER_LENGTH;
use std::collections::VecDeque;

/// Bytes a message counts for: its encoded size, as on disk.
fn weight(m: &Message) -> u64 {
    (MESSAGE_HEADER_LENGTH + m.body.len()) as u64
}

#[derive(Default)]
pub struct MemQueue {
    q: VecDeque<Message>,
    bytes: u64,
}

impl MemQueue {
    /// Whether `m` fits under both bounds (`max_bytes` 0: no byte bound).
    pub fn has_room(&self, m: &Message, max_len: usize, max_bytes: u64) -> bool {
        self.q.len() < max_len && (max_bytes == 0 || self.bytes + weight(m) <= max_bytes)
    }

    pub fn push_back(&mut self, m: Message) {
        self.bytes += weight(&m);
        self.q.push_back(m);
    }

    pub fn pop_front(&mut self) -> Option<Message> {
        let m = self.q.pop_front()?;
        self.bytes -= weight(&m);
        Some(m)
    }

    /// Drops everything past the first `len` messages (a batch taken back).
    pub fn truncate(&mut self, len: usize) {
        for m in self.q.drain(len.min(self.q.len())..) {
            self.bytes -= weight(&m);
        }
    }

    pub fn extend(&mut self, msgs: impl IntoIterator<Item = Message>) {
        for m in msgs {
            self.push_back(m);
        }
    }

    pub fn drain(&mut self) -> impl Iterator<Item = Message> + '_ {
        self.bytes = 0;
        self.q.drain(..)
    }

    pub fn clear(&mut self) {
        self.q.clear();
        self.bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Bytes held (see `weight`).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// A drained queue gives its (possibly very large) buffer back.
    pub fn release_if_empty(&mut self) {
        if self.q.is_empty() && self.q.capacity() > 4096 {
            self.q = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(len: usize) -> Message {
        Message::new([b'0'; 16], Bytes::from(vec![b'x'; len]), 0)
    }

    #[test]
    fn both_bounds_apply_and_bytes_follow_every_change() {
        let mut q = MemQueue::default();
        let (len_max, bytes_max) = (3, 2 * (26 + 100));
        assert!(q.has_room(&msg(100), len_max, bytes_max));
        q.push_back(msg(100));
        q.push_back(msg(100));
        assert_eq!(q.bytes(), 252);
        // Full by bytes with room by count; unbounded bytes ignore it.
        assert!(!q.has_room(&msg(1), len_max, bytes_max));
        assert!(q.has_room(&msg(1), len_max, 0));
        q.push_back(msg(1));
        assert!(!q.has_room(&msg(0), len_max, 0), "full by count");
        q.truncate(1);
        assert_eq!((q.len(), q.bytes()), (1, 126));
        q.extend([msg(10)]);
        assert_eq!(q.pop_front().map(|m| m.body.len()), Some(100));
        assert_eq!(q.bytes(), 36);
        assert_eq!(q.drain().count(), 1);
        assert_eq!((q.len(), q.bytes()), (0, 0));
        // One message bigger than the bound never fits in memory.
        assert!(!q.has_room(&msg(1000), len_max, bytes_max));
    }
}
