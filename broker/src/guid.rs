//! Message IDs: nsqd's snowflake-style 64-bit GUIDs, sent as 16 hex ASCII bytes.
//!
//! Layout (high to low bits): milliseconds-ish timestamp (`unix_nanos >> 20`) since
//! nsqd's epoch, 10 bits of node ID, 12 bits of sequence.

use nsq_common::wire::MessageId;
use std::time::{SystemTime, UNIX_EPOCH};

const NODE_ID_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const TIMESTAMP_SHIFT: u32 = NODE_ID_BITS + SEQUENCE_BITS;
const SEQUENCE_MASK: i64 = (1 << SEQUENCE_BITS) - 1;
/// nsqd's epoch, in its `unix_nanos >> 20` units.
const EPOCH: i64 = 1_288_834_974_288;

/// One generator per topic, like nsqd; the owner serialises calls.
#[derive(Debug)]
pub struct GuidFactory {
    node_id: i64,
    last_ts: i64,
    sequence: i64,
}

impl GuidFactory {
    pub fn new(node_id: i64) -> Self {
        GuidFactory {
            node_id: node_id & ((1 << NODE_ID_BITS) - 1),
            last_ts: -1,
            sequence: 0,
        }
    }

    /// Next unique ID. When the 4096 IDs of a tick run out, or the clock steps back,
    /// it borrows the next tick instead of failing: IDs stay unique and increasing.
    pub fn next_id(&mut self) -> MessageId {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0)
            >> 20;
        if now > self.last_ts {
            self.last_ts = now;
            self.sequence = 0;
        } else {
            self.sequence = (self.sequence + 1) & SEQUENCE_MASK;
            if self.sequence == 0 {
                self.last_ts += 1;
            }
        }
        let guid = ((self.last_ts - EPOCH) << TIMESTAMP_SHIFT)
            | (self.node_id << SEQUENCE_BITS)
            | self.sequence;
        hex_id(guid as u64)
    }
}

fn hex_id(v: u64) -> MessageId {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, b) in v.to_be_bytes().iter().enumerate() {
        out[i * 2] = HEX[(b >> 4) as usize];
        out[i * 2 + 1] = HEX[(b & 0xf) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_increasing_hex() {
        let mut f = GuidFactory::new(7);
        let mut prev = f.next_id();
        for _ in 0..20_000 {
            let id = f.next_id();
            assert!(id > prev, "{:?} <= {:?}", id, prev);
            assert!(id.iter().all(|c| c.is_ascii_hexdigit()));
            prev = id;
        }
    }
}
