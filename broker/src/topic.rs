//! A topic: assigns IDs to published messages and copies each to every channel.
//!
//! While the topic has no channel, or is paused, messages wait in its own memory
//! queue and diskqueue; a drain task moves that backlog into the channels once it
//! can, and new messages queue behind the backlog so order is kept.

use crate::backend::{Backend, QueueConfig};
use crate::channel::Channel;
use crate::durable::{Durable, Owner};
use crate::e2e;
use crate::guid::GuidFactory;
use crate::mem_queue::MemQueue;
use crate::message::{unix_nanos, Message};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const DRAIN_BATCH: usize = 1024;

struct State {
    channels: BTreeMap<String, Arc<Channel>>,
    memory: MemQueue,
    backend: Backend,
    guid: GuidFactory,
    scratch: BytesMut,
    /// Reused for fan-out so publishing allocates no per-batch vector.
    batch: Vec<Message>,
    draining: bool,
    closed: bool,
}

pub struct Topic {
    pub name: String,
    pub ephemeral: bool,
    cfg: Arc<QueueConfig>,
    state: Mutex<State>,
    paused: AtomicBool,
    /// Set once lookupd's channels for a new topic exist; until then messages wait.
    started: AtomicBool,
    message_count: AtomicU64,
    message_bytes: AtomicU64,
    /// End-to-end latency of every FIN on any of its channels, past and present.
    latency: Arc<e2e::AtomicHistogram>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PutError {
    #[error("exiting")]
    Exiting,
    /// Writing to disk failed; nothing of the batch was kept on the queue
    /// that failed (another channel may already hold it).
    #[error("{0}")]
    Disk(String),
}

/// A point-in-time copy of a topic's counters.
#[derive(Debug, Clone)]
pub struct TopicSnapshot {
    pub name: String,
    pub depth: i64,
    pub backend_depth: i64,
    pub message_count: u64,
    pub message_bytes: u64,
    pub paused: bool,
    pub channels: Vec<Arc<Channel>>,
    pub latency: e2e::Histogram,
}

impl Topic {
    pub fn new(name: &str, cfg: Arc<QueueConfig>) -> Arc<Topic> {
        let ephemeral = nsq_common::names::is_ephemeral(name);
        Arc::new(Topic {
            name: name.to_owned(),
            ephemeral,
            state: Mutex::new(State {
                channels: BTreeMap::new(),
                memory: MemQueue::default(),
                backend: {
                    let mut backend = Backend::open(name, ephemeral, &cfg);
                    backend.set_hand_off();
                    backend
                },
                guid: GuidFactory::new(cfg.node_id),
                scratch: BytesMut::new(),
                batch: Vec::new(),
                draining: false,
                closed: false,
            }),
            cfg,
            paused: AtomicBool::new(false),
            started: AtomicBool::new(false),
            message_count: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
            latency: Arc::default(),
        })
    }

    /// Publishes bodies as new messages (deferred by `defer_ms` when non-zero).
    /// The OK must wait for what is returned (see [`crate::durable`]).
    pub fn put_messages(
        self: &Arc<Self>,
        bodies: impl IntoIterator<Item = Bytes>,
        defer_ms: u32,
    ) -> Result<Durable, PutError> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(PutError::Exiting);
        }
        let now = unix_nanos();
        let mut batch = std::mem::take(&mut st.batch);
        let mut bytes = 0u64;
        for body in bodies {
            bytes += body.len() as u64;
            let mut m = Message::new(st.guid.next_id(), body, now);
            m.defer_ms = defer_ms;
            batch.push(m);
        }
        let n = batch.len() as u64;
        let direct = self.started.load(Ordering::Acquire)
            && !self.paused.load(Ordering::Acquire)
            && !st.channels.is_empty()
            && !st.draining
            && st.memory.is_empty()
            && st.backend.depth() == 0;
        let mut durable = Durable::default();
        let stored = if direct {
            // Every channel is tried; an error fails the publish (a channel
            // that stored it keeps it, as at-least-once allows).
            let mut first_err = None;
            for ch in st.channels.values() {
                if let Err(e) = ch.publish_batch(&batch, &mut durable) {
                    first_err.get_or_insert(e);
                }
            }
            batch.clear();
            first_err.map_or(Ok(()), Err)
        } else {
            let stored = self.store(&mut st, &mut batch, &mut durable);
            if stored.is_ok() {
                self.maybe_start_drain(&mut st);
            }
            stored
        };
        st.batch = batch;
        drop(st);
        stored.map_err(PutError::Disk)?;
        self.message_count.fetch_add(n, Ordering::Relaxed);
        self.message_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(durable)
    }

    /// Queues the batch behind the backlog: memory first, disk past
    /// `--mem-queue-size` or `--max-mem-queue-bytes`. All or nothing: on a disk error the memory part is
    /// taken back too (the diskqueue takes back its own).
    fn store(
        self: &Arc<Self>,
        st: &mut State,
        batch: &mut Vec<Message>,
        durable: &mut Durable,
    ) -> Result<(), String> {
        let kept = st.memory.len();
        let first = st.backend.last_put() + 1;
        let State {
            memory,
            backend,
            scratch,
            ..
        } = st;
        let mut res = Ok(());
        let mut wrote = false;
        for m in batch.drain(..) {
            if res.is_err() {
                continue;
            }
            if memory.has_room(&m, self.cfg.mem_queue_size, self.cfg.max_mem_queue_bytes) {
                memory.push_back(m);
            } else {
                wrote = true;
                res = backend.put(&m, scratch).map(|_| ());
            }
        }
        if wrote && res.is_ok() {
            res = backend.flush();
        }
        match &res {
            Ok(()) if wrote => {
                self.cfg.health.succeeded();
                let owner = Owner::Topic(Arc::clone(self));
                durable.owe(owner, backend, first, self.cfg.sync_every);
            }
            Ok(()) => {}
            Err(e) => {
                tracing::error!(
                    "TOPIC({}) ERROR: failed to write message to backend - {e}",
                    self.name
                );
                self.cfg.health.failed(e.clone());
                memory.truncate(kept);
            }
        }
        res
    }

    /// Starts moving the backlog into channels when that is possible.
    fn maybe_start_drain(self: &Arc<Self>, st: &mut State) {
        if st.draining
            || st.closed
            || !self.started.load(Ordering::Acquire)
            || st.channels.is_empty()
            || self.paused.load(Ordering::Acquire)
            || (st.memory.is_empty() && st.backend.depth() == 0)
        {
            return;
        }
        st.draining = true;
        let topic = Arc::clone(self);
        // Blocking: with a small --sync-every the drain waits for fsyncs.
        tokio::task::spawn_blocking(move || while topic.drain_batch() {});
    }

    /// Moves one batch of backlog to the channels; false when done or blocked.
    fn drain_batch(&self) -> bool {
        let mut st = self.state.lock();
        if st.closed || st.channels.is_empty() || self.paused.load(Ordering::Acquire) {
            st.draining = false;
            return false;
        }
        let mut batch = std::mem::take(&mut st.batch);
        while let Some(m) = st.memory.pop_front() {
            batch.push(m);
            if batch.len() == DRAIN_BATCH {
                break;
            }
        }
        // Disk reads stay within what a crash may deliver twice.
        let room = DRAIN_BATCH - batch.len();
        let room = if room > 0 {
            st.backend.handed_off(room)
        } else {
            0
        };
        for _ in 0..room {
            match st.backend.read() {
                Some(m) => batch.push(m),
                None => break,
            }
        }
        let more = !batch.is_empty() && (!st.memory.is_empty() || st.backend.depth() > 0);
        st.memory.release_if_empty();
        for ch in st.channels.values() {
            ch.put_batch(batch.iter());
        }
        if room > 0 {
            st.backend.handed_off(0);
        }
        batch.clear();
        st.batch = batch;
        if !more {
            st.draining = false;
        }
        more
    }

    /// The named channel, created when missing; `true` when it was created.
    pub fn get_channel(self: &Arc<Self>, name: &str) -> (Arc<Channel>, bool) {
        let mut st = self.state.lock();
        if let Some(ch) = st.channels.get(name) {
            return (Arc::clone(ch), false);
        }
        let ch = Arc::new(Channel::new(
            &self.name,
            name,
            Arc::clone(&self.cfg),
            Arc::clone(&self.latency),
        ));
        st.channels.insert(name.to_owned(), Arc::clone(&ch));
        self.maybe_start_drain(&mut st);
        (ch, true)
    }

    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.state.lock().channels.get(name).cloned()
    }

    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.state.lock().channels.values().cloned().collect()
    }

    /// Removes and deletes the channel's data; false when it did not exist.
    pub fn delete_channel(&self, name: &str) -> bool {
        let ch = self.state.lock().channels.remove(name);
        match ch {
            Some(ch) => {
                ch.delete();
                true
            }
            None => false,
        }
    }

    /// Deletes an ephemeral channel only if nobody re-subscribed meanwhile.
    pub fn delete_channel_if_unused(&self, name: &str) -> bool {
        let mut st = self.state.lock();
        let unused = st.channels.get(name).is_some_and(|c| c.client_count() == 0);
        if !unused {
            return false;
        }
        let ch = st.channels.remove(name).expect("checked above");
        drop(st);
        ch.delete();
        true
    }

    pub fn channel_count(&self) -> usize {
        self.state.lock().channels.len()
    }

    /// Lets messages flow to the channels (see `Nsqd::get_topic`).
    pub fn start(self: &Arc<Self>) {
        self.started.store(true, Ordering::Release);
        let mut st = self.state.lock();
        self.maybe_start_drain(&mut st);
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    pub fn unpause(self: &Arc<Self>) {
        self.paused.store(false, Ordering::Release);
        let mut st = self.state.lock();
        self.maybe_start_drain(&mut st);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Drops the topic's own backlog (not its channels'), as nsqd's topic Empty does.
    pub fn empty(&self) {
        let mut st = self.state.lock();
        st.memory.clear();
        st.backend.empty();
    }

    pub fn snapshot(&self) -> TopicSnapshot {
        let st = self.state.lock();
        let backend_depth = st.backend.depth();
        TopicSnapshot {
            name: self.name.clone(),
            depth: st.memory.len() as i64 + backend_depth,
            backend_depth,
            message_count: self.message_count.load(Ordering::Relaxed),
            message_bytes: self.message_bytes.load(Ordering::Relaxed),
            paused: self.is_paused(),
            channels: st.channels.values().cloned().collect(),
            latency: self.latency.snapshot(),
        }
    }

    /// A waiting publisher needs the next sync (see [`crate::durable`]).
    pub fn request_sync(&self) {
        self.state.lock().backend.request_sync();
    }

    /// A sync a publisher waited for failed.
    pub fn sync_failed(&self, e: &str) {
        tracing::error!("TOPIC({}) ERROR: failed to sync backend - {e}", self.name);
        self.cfg.health.failed(e);
    }

    pub fn sync_backends(&self) {
        let channels = {
            let mut st = self.state.lock();
            if let Err(e) = st.backend.sync_if_needed() {
                self.cfg.health.failed(e);
            }
            st.channels.values().cloned().collect::<Vec<_>>()
        };
        for ch in channels {
            ch.sync_backend();
        }
    }

    pub fn process_deadlines(&self, now: std::time::Instant) {
        for ch in self.channels() {
            ch.process_deadlines(now);
        }
    }

    /// Shutdown: flush the backlog and every channel to disk.
    pub fn close(&self) {
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        let State {
            memory,
            backend,
            scratch,
            channels,
            ..
        } = &mut *st;
        if !self.ephemeral {
            let res = memory
                .drain()
                .try_for_each(|m| backend.put(&m, scratch).map(|_| ()));
            if let Err(e) = res.and_then(|()| backend.flush()) {
                tracing::error!(
                    "TOPIC({}): failed to write backlog to disk on close - {e}",
                    self.name
                );
                self.cfg.health.failed(e);
            }
        }
        for ch in channels.values() {
            ch.close();
        }
        let backend = std::mem::replace(&mut st.backend, Backend::Discard);
        backend.close();
    }

    /// Deleted by the user: remove its data and every channel's.
    pub fn delete(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.memory.clear();
        for (_, ch) in std::mem::take(&mut st.channels) {
            ch.delete();
        }
        let backend = std::mem::replace(&mut st.backend, Backend::Discard);
        backend.delete();
    }
}
