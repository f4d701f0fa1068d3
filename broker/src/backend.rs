//! A topic's or channel's overflow store: go-diskqueue files, or nothing for
//! ephemeral queues (nsqd discards their overflow).

use crate::message::Message;
use bytes::{Bytes, BytesMut};
use nsq_common::wire::MESSAGE_HEADER_LENGTH;
use nsq_diskqueue::DiskQueue;
use std::path::Path;

/// Sizes and paths every queue needs, fixed at start-up.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub data_path: std::path::PathBuf,
    pub mem_queue_size: usize,
    /// `--max-mem-queue-bytes`; 0: no byte bound.
    pub max_mem_queue_bytes: u64,
    pub max_bytes_per_file: i64,
    pub sync_every: i64,
    pub max_msg_size: i64,
    pub node_id: i64,
    /// Every queue reports its disk errors here.
    pub health: std::sync::Arc<crate::health::Health>,
}

pub enum Backend {
    Disk(Box<DiskQueue>),
    /// Ephemeral: overflow is dropped, as nsqd's dummy backend does.
    Discard,
}

impl Backend {
    /// Opens `name`'s diskqueue (`topic` or `topic:channel`) unless ephemeral.
    pub fn open(name: &str, ephemeral: bool, cfg: &QueueConfig) -> Backend {
        if ephemeral {
            return Backend::Discard;
        }
        match DiskQueue::open(
            name,
            Path::new(&cfg.data_path),
            cfg.max_bytes_per_file,
            MESSAGE_HEADER_LENGTH as i32,
            (cfg.max_msg_size + MESSAGE_HEADER_LENGTH as i64).min(i32::MAX as i64) as i32,
            cfg.sync_every,
        ) {
            Ok(mut dq) => {
                dq.set_background_sync(true);
                Backend::Disk(Box::new(dq))
            }
            Err(e) => {
                // Refusing to run is worse than losing overflow durability for one queue.
                tracing::error!(
                    "DISKQUEUE({name}): failed to open, overflow will be dropped - {e}"
                );
                Backend::Discard
            }
        }
    }

    /// Writes `msg` in nsqd's encoding; `scratch` avoids an allocation per write.
    /// `Ok(false)`: an ephemeral queue dropped it. On an error every write since
    /// the last [`flush`](Self::flush) is taken back.
    pub fn put(&mut self, msg: &Message, scratch: &mut BytesMut) -> Result<bool, String> {
        match self {
            Backend::Disk(dq) => {
                scratch.clear();
                msg.encode(scratch);
                dq.put(scratch).map(|()| true).map_err(|e| e.to_string())
            }
            Backend::Discard => Ok(false),
        }
    }

    /// Hands buffered writes to the OS; owners call it once per batch so an
    /// acknowledged message survives the process dying. On an error the whole
    /// batch is taken back.
    pub fn flush(&mut self) -> Result<(), String> {
        if let Backend::Disk(dq) = self {
            dq.flush().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The sequence number of the last record written (see `crate::durable`).
    pub fn last_put(&self) -> u64 {
        match self {
            Backend::Disk(dq) => dq.last_put(),
            Backend::Discard => 0,
        }
    }

    /// Starts the sync waiting publishers need, unless one is under way.
    pub fn request_sync(&mut self) {
        if let Backend::Disk(dq) = self {
            dq.request_sync();
        }
    }

    /// For a topic: its reads go on to channels, and the persisted read
    /// position moves only at [`Self::handed_off`].
    pub fn set_hand_off(&mut self) {
        if let Backend::Disk(dq) = self {
            dq.set_hand_off(true);
        }
    }

    /// Everything read so far is in the channels: how many more records may
    /// be read now (at most `next`; see `DiskQueue::handed_off`).
    pub fn handed_off(&mut self, next: usize) -> usize {
        match self {
            Backend::Disk(dq) => dq.handed_off(next),
            Backend::Discard => next,
        }
    }

    /// Next message, skipping undecodable records.
    pub fn read(&mut self) -> Option<Message> {
        let Backend::Disk(dq) = self else {
            return None;
        };
        loop {
            let record = dq.read_next()?;
            match Message::decode(Bytes::from(record)) {
                Some(m) => return Some(m),
                None => tracing::error!("failed to decode message from backend"),
            }
        }
    }

    pub fn depth(&self) -> i64 {
        match self {
            Backend::Disk(dq) => dq.depth(),
            Backend::Discard => 0,
        }
    }

    /// The periodic sync (`--sync-timeout`); also reports a failed
    /// background sync.
    pub fn sync_if_needed(&mut self) -> Result<(), String> {
        if let Backend::Disk(dq) = self {
            if let Some(e) = dq.take_sync_failure() {
                return Err(e);
            }
            if dq.needs_sync() {
                dq.sync().map_err(|e| {
                    tracing::error!("diskqueue sync failed - {e}");
                    format!("failed to sync - {e}")
                })?;
            }
        }
        Ok(())
    }

    pub fn empty(&mut self) {
        if let Backend::Disk(dq) = self {
            if let Err(e) = dq.empty() {
                tracing::error!("diskqueue empty failed - {e}");
            }
        }
    }

    /// Persists and releases the files (shutdown).
    pub fn close(self) {
        if let Backend::Disk(dq) = self {
            if let Err(e) = dq.close() {
                tracing::error!("diskqueue close failed - {e}");
            }
        }
    }

    /// Removes the files (topic or channel deleted).
    pub fn delete(self) {
        if let Backend::Disk(dq) = self {
            if let Err(e) = dq.delete() {
                tracing::error!("diskqueue delete failed - {e}");
            }
        }
    }
}
