//! A channel: one consumer group's copy of a topic's stream.
//!
//! It owns a bounded memory queue that overflows to its diskqueue, the in-flight
//! table with its time-out queue, and the deferred queue. Consumers pull batches
//! with [`Channel::take`], which encodes frames straight into their output buffer:
//! one lock per batch, no per-message channel hand-off.

use crate::backend::{Backend, QueueConfig};
use crate::client::ClientShared;
use crate::clock;
use crate::durable::{Durable, Owner};
use crate::e2e;
use crate::mem_queue::MemQueue;
use crate::message::Message;
use bytes::BytesMut;
use nsq_common::wire::{self, MessageId};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

struct InFlight {
    msg: Message,
    client_id: u64,
    delivered: Instant,
    deadline: Instant,
}

struct Deferred {
    msg: Message,
    deadline: Instant,
}

struct State {
    memory: MemQueue,
    backend: Backend,
    in_flight: FxHashMap<MessageId, InFlight>,
    in_flight_pq: BinaryHeap<Reverse<(Instant, MessageId)>>,
    deferred: FxHashMap<MessageId, Deferred>,
    deferred_pq: BinaryHeap<Reverse<(Instant, MessageId)>>,
    /// Deferrals saved at shutdown: these IDs sit in the backend and are deferred
    /// again (until the Unix-nanosecond deadline) when read back.
    restored_deferrals: FxHashMap<MessageId, i64>,
    clients: FxHashMap<u64, Arc<ClientShared>>,
    /// End-to-end latency of every FIN (see [`crate::e2e`]).
    latency: e2e::Histogram,
    /// nsqd's quantile window, made on the first FIN when percentiles are tracked.
    window: Option<Box<e2e::Window>>,
    scratch: BytesMut,
    /// Accepted messages written to disk since the last flush: if the flush
    /// (or a later write) fails, the diskqueue takes them back and memory
    /// keeps them instead.
    unflushed: Vec<Message>,
    /// Alternates which source `take` reads first, so neither starves.
    backend_first: bool,
    closed: bool,
}

/// Why FIN, REQ or TOUCH failed; the text is nsqd's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlightError {
    NotInFlight,
    NotOwner,
    Exiting,
}

impl std::fmt::Display for InFlightError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InFlightError::NotInFlight => "ID not in flight",
            InFlightError::NotOwner => "client does not own message",
            InFlightError::Exiting => "exiting",
        })
    }
}

/// A point-in-time copy of a channel's counters for `/stats` and `/metrics`.
#[derive(Debug, Clone)]
pub struct ChannelSnapshot {
    pub name: String,
    pub depth: i64,
    pub backend_depth: i64,
    pub in_flight_count: i64,
    pub deferred_count: i64,
    pub message_count: u64,
    pub requeue_count: u64,
    pub timeout_count: u64,
    pub paused: bool,
    pub clients: Vec<Arc<ClientShared>>,
    /// End-to-end latency of the FINs so far.
    pub latency: e2e::Histogram,
}

pub struct Channel {
    pub name: String,
    pub topic_name: String,
    pub ephemeral: bool,
    cfg: Arc<QueueConfig>,
    state: Mutex<State>,
    /// Wakes consumers waiting for messages.
    ready: Notify,
    paused: AtomicBool,
    message_count: AtomicU64,
    requeue_count: AtomicU64,
    timeout_count: AtomicU64,
    /// The topic's latency histogram, which each FIN batch also feeds.
    topic_latency: Arc<e2e::AtomicHistogram>,
    /// Earliest in-flight or deferred deadline (clock nanos), so the scanner can
    /// skip idle channels without locking them.
    next_deadline: AtomicI64,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({}:{})", self.topic_name, self.name)
    }
}

impl Channel {
    /// A channel of `topic_name`; its FINs also count in `topic_latency`.
    pub fn new(
        topic_name: &str,
        name: &str,
        cfg: Arc<QueueConfig>,
        topic_latency: Arc<e2e::AtomicHistogram>,
    ) -> Channel {
        let ephemeral = nsq_common::names::is_ephemeral(name);
        let backend = Backend::open(&format!("{topic_name}:{name}"), ephemeral, &cfg);
        let restored = load_deferrals(&cfg, topic_name, name);
        Channel {
            name: name.to_owned(),
            topic_name: topic_name.to_owned(),
            ephemeral,
            state: Mutex::new(State {
                memory: MemQueue::default(),
                backend,
                in_flight: FxHashMap::default(),
                in_flight_pq: BinaryHeap::new(),
                deferred: FxHashMap::default(),
                deferred_pq: BinaryHeap::new(),
                restored_deferrals: restored,
                clients: FxHashMap::default(),
                latency: e2e::Histogram::default(),
                window: None,
                scratch: BytesMut::new(),
                unflushed: Vec::new(),
                backend_first: false,
                closed: false,
            }),
            cfg,
            ready: Notify::new(),
            paused: AtomicBool::new(false),
            message_count: AtomicU64::new(0),
            requeue_count: AtomicU64::new(0),
            timeout_count: AtomicU64::new(0),
            topic_latency,
            next_deadline: AtomicI64::new(i64::MAX),
        }
    }

    /// A publish, straight from the topic: queued whole or not at all (a disk
    /// error takes the batch back, memory part included, and is returned).
    /// DPUB messages go to the deferred queue. What went to disk is added to
    /// `durable`, for the publisher to wait on.
    pub fn publish_batch(
        self: &Arc<Self>,
        msgs: &[Message],
        durable: &mut Durable,
    ) -> Result<(), String> {
        let mut st = self.state.lock();
        if st.closed {
            return Ok(());
        }
        let kept = st.memory.len();
        let first = st.backend.last_put() + 1;
        let now = Instant::now();
        let mut wrote = false;
        let mut res = Ok(());
        for m in msgs {
            if m.defer_ms > 0 {
                let deadline = now + Duration::from_millis(m.defer_ms as u64);
                let mut msg = m.clone();
                msg.defer_ms = 0;
                self.add_deferred(&mut st, msg, deadline);
            } else if st
                .memory
                .has_room(m, self.cfg.mem_queue_size, self.cfg.max_mem_queue_bytes)
            {
                st.memory.push_back(m.clone());
            } else {
                wrote = true;
                let State {
                    backend, scratch, ..
                } = &mut *st;
                res = backend.put(m, scratch).map(|_| ());
                if res.is_err() {
                    break;
                }
            }
        }
        if wrote && res.is_ok() {
            res = st.backend.flush();
        }
        if let Err(e) = &res {
            self.disk_failed(e);
            st.memory.truncate(kept);
            return res;
        }
        if wrote {
            self.cfg.health.succeeded();
            let owner = Owner::Channel(Arc::clone(self));
            durable.owe(owner, &mut st.backend, first, self.cfg.sync_every);
        }
        drop(st);
        self.message_count
            .fetch_add(msgs.len() as u64, Ordering::Relaxed);
        self.ready.notify_waiters();
        Ok(())
    }

    /// Messages the topic already accepted (its backlog): queued, and kept in
    /// memory past its size if the disk fails. DPUB messages are deferred.
    pub fn put_batch<'a>(&self, msgs: impl Iterator<Item = &'a Message>) {
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        let mut n = 0;
        let now = Instant::now();
        for m in msgs {
            n += 1;
            if m.defer_ms > 0 {
                let deadline = now + Duration::from_millis(m.defer_ms as u64);
                let mut msg = m.clone();
                msg.defer_ms = 0;
                self.add_deferred(&mut st, msg, deadline);
            } else {
                self.keep(&mut st, m.clone());
            }
        }
        self.flush_kept(&mut st);
        drop(st);
        self.message_count.fetch_add(n, Ordering::Relaxed);
        self.ready.notify_waiters();
    }

    /// Queues an accepted message (from the backlog, a requeue, a time-out, a
    /// deferral ending): to memory, or to disk past `--mem-queue-size` (or
    /// `--max-mem-queue-bytes`). Call
    /// [`Self::flush_kept`] after a batch of these.
    fn keep(&self, st: &mut State, msg: Message) {
        if st
            .memory
            .has_room(&msg, self.cfg.mem_queue_size, self.cfg.max_mem_queue_bytes)
        {
            st.memory.push_back(msg);
            return;
        }
        let State {
            backend, scratch, ..
        } = &mut *st;
        match backend.put(&msg, scratch) {
            Ok(true) => st.unflushed.push(msg),
            // An ephemeral channel drops its overflow, as nsqd does.
            Ok(false) => {}
            Err(e) => {
                self.disk_failed(&e);
                st.unflushed.push(msg);
                let back = std::mem::take(&mut st.unflushed);
                st.memory.extend(back);
            }
        }
    }

    /// Ends a batch of [`Self::keep`]: what went to disk is handed to the OS,
    /// or, if that fails, kept in memory instead.
    fn flush_kept(&self, st: &mut State) {
        if st.unflushed.is_empty() {
            return;
        }
        match st.backend.flush() {
            Ok(()) => {
                self.cfg.health.succeeded();
                st.unflushed.clear();
            }
            Err(e) => {
                self.disk_failed(&e);
                let back = std::mem::take(&mut st.unflushed);
                st.memory.extend(back);
            }
        }
        if st.unflushed.capacity() > 4096 {
            st.unflushed = Vec::new();
        }
    }

    fn disk_failed(&self, e: &str) {
        tracing::error!(
            "CHANNEL({}:{}) ERROR: failed to write message to backend - {e}",
            self.topic_name,
            self.name
        );
        self.cfg.health.failed(e);
    }

    fn add_deferred(&self, st: &mut State, msg: Message, deadline: Instant) {
        st.deferred_pq.push(Reverse((deadline, msg.id)));
        st.deferred.insert(msg.id, Deferred { msg, deadline });
        self.lower_deadline(deadline);
    }

    fn lower_deadline(&self, deadline: Instant) {
        self.next_deadline
            .fetch_min(clock::nanos(deadline), Ordering::AcqRel);
    }

    /// A future that resolves when messages may have arrived. Create and enable it
    /// before calling [`take`](Self::take) so no wake-up is lost in between.
    pub fn ready(&self) -> &Notify {
        &self.ready
    }

    /// Moves up to `max` messages in flight for `client`, appending their frames to
    /// `out`. Returns how many were written.
    pub fn take(
        &self,
        client: &ClientShared,
        max: usize,
        msg_timeout: Duration,
        sample_rate: i32,
        rng: &mut u64,
        out: &mut BytesMut,
    ) -> usize {
        if max == 0 || self.paused.load(Ordering::Acquire) {
            return 0;
        }
        let mut st = self.state.lock();
        if st.closed {
            return 0;
        }
        // Spread a short queue over the consumers instead of handing it all to one.
        let clients = st.clients.len().max(1);
        let available = st.memory.len() + st.backend.depth().max(0) as usize;
        let max = if clients > 1 {
            max.min(available.div_ceil(clients).max(1))
        } else {
            max
        };
        let now = Instant::now();
        let deadline = now + msg_timeout;
        let mut sent = 0;
        st.backend_first = !st.backend_first;
        while sent < max {
            let Some(mut msg) = self.pop_ready(&mut st, now) else {
                break;
            };
            if sample_rate > 0 && (next_rand(rng) % 100) as i32 > sample_rate {
                continue;
            }
            msg.attempts = msg.attempts.wrapping_add(1);
            wire::put_message_frame(out, msg.timestamp, msg.attempts, &msg.id, &msg.body);
            st.in_flight_pq.push(Reverse((deadline, msg.id)));
            st.in_flight.insert(
                msg.id,
                InFlight {
                    msg,
                    client_id: client.id,
                    delivered: now,
                    deadline,
                },
            );
            sent += 1;
        }
        st.memory.release_if_empty();
        drop(st);
        if sent > 0 {
            self.lower_deadline(deadline);
            client.in_flight.fetch_add(sent as i64, Ordering::AcqRel);
            client
                .message_count
                .fetch_add(sent as u64, Ordering::Relaxed);
        }
        sent
    }

    /// The next deliverable message; restored deferrals read from disk are parked.
    fn pop_ready(&self, st: &mut State, now: Instant) -> Option<Message> {
        loop {
            let msg = if st.backend_first {
                st.backend.read().or_else(|| st.memory.pop_front())
            } else {
                st.memory.pop_front().or_else(|| st.backend.read())
            }?;
            if !st.restored_deferrals.is_empty() {
                if let Some(until) = st.restored_deferrals.remove(&msg.id) {
                    let left = until.saturating_sub(crate::message::unix_nanos());
                    if left > 0 {
                        let deadline = now + Duration::from_nanos(left as u64);
                        self.add_deferred(st, msg, deadline);
                        continue;
                    }
                }
            }
            return Some(msg);
        }
    }

    fn pop_in_flight(
        st: &mut State,
        client_id: u64,
        id: &MessageId,
    ) -> Result<InFlight, InFlightError> {
        match st.in_flight.get(id) {
            None => Err(InFlightError::NotInFlight),
            Some(f) if f.client_id != client_id => Err(InFlightError::NotOwner),
            Some(_) => Ok(st.in_flight.remove(id).expect("checked above")),
        }
    }

    pub fn finish(&self, client_id: u64, id: &MessageId) -> Result<(), InFlightError> {
        let mut err = None;
        self.finish_many(client_id, std::slice::from_ref(id), |_, e| err = Some(e));
        err.map_or(Ok(()), Err)
    }

    /// Several FINs under one lock; `on_err` sees each failure in order.
    /// Returns how many succeeded. Each success records its end-to-end latency
    /// (now − publish time, as nsqd's `FinishMessage` does).
    pub fn finish_many(
        &self,
        client_id: u64,
        ids: &[MessageId],
        mut on_err: impl FnMut(&MessageId, InFlightError),
    ) -> usize {
        let now = crate::message::unix_nanos();
        let window = e2e::window();
        let mut batch = e2e::Histogram::default();
        let mut st = self.state.lock();
        let mut done = 0;
        for id in ids {
            match Self::pop_in_flight(&mut st, client_id, id) {
                Ok(f) => {
                    done += 1;
                    let latency = e2e::latency(now, f.msg.timestamp);
                    batch.observe(latency);
                    if let Some(len) = window {
                        st.window
                            .get_or_insert_with(|| Box::new(e2e::Window::new(len, now)))
                            .insert(now, latency);
                    }
                }
                Err(e) => on_err(id, e),
            }
        }
        if done > 0 {
            st.latency.merge(&batch);
        }
        drop(st);
        if done > 0 {
            self.topic_latency.add(&batch);
        }
        done
    }

    /// Adds this channel's quantile window (what is left of it at `now`) to `into`.
    pub fn merge_latency_window(&self, now: i64, into: &mut e2e::LogHistogram) {
        if let Some(w) = self.state.lock().window.as_mut() {
            w.merge_into(now, into);
        }
    }

    /// REQ: back to the queue now, or deferred for `delay`.
    pub fn requeue(
        &self,
        client_id: u64,
        id: &MessageId,
        delay: Duration,
    ) -> Result<(), InFlightError> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(InFlightError::Exiting);
        }
        let f = Self::pop_in_flight(&mut st, client_id, id)?;
        self.requeue_count.fetch_add(1, Ordering::Relaxed);
        if delay.is_zero() {
            self.keep(&mut st, f.msg);
            self.flush_kept(&mut st);
            drop(st);
            self.ready.notify_waiters();
        } else {
            self.add_deferred(&mut st, f.msg, Instant::now() + delay);
        }
        Ok(())
    }

    /// TOUCH: restart the time-out, never past `max_msg_timeout` from delivery.
    pub fn touch(
        &self,
        client_id: u64,
        id: &MessageId,
        msg_timeout: Duration,
        max_msg_timeout: Duration,
    ) -> Result<(), InFlightError> {
        let mut st = self.state.lock();
        let f = match st.in_flight.get_mut(id) {
            None => return Err(InFlightError::NotInFlight),
            Some(f) if f.client_id != client_id => return Err(InFlightError::NotOwner),
            Some(f) => f,
        };
        let cap = f.delivered + max_msg_timeout;
        let deadline = (Instant::now() + msg_timeout).min(cap);
        f.deadline = deadline;
        st.in_flight_pq.push(Reverse((deadline, *id)));
        Ok(())
    }

    /// Returns the client count after adding, or the limit it would exceed.
    pub fn add_client(&self, client: Arc<ClientShared>, max_consumers: usize) -> Result<(), usize> {
        let mut st = self.state.lock();
        if max_consumers != 0 && st.clients.len() >= max_consumers {
            return Err(max_consumers);
        }
        st.clients.insert(client.id, client);
        Ok(())
    }

    /// Returns true when an ephemeral channel just lost its last consumer.
    pub fn remove_client(&self, client_id: u64) -> bool {
        let mut st = self.state.lock();
        st.clients.remove(&client_id);
        self.ephemeral && st.clients.is_empty()
    }

    pub fn client_count(&self) -> usize {
        self.state.lock().clients.len()
    }

    /// Requeues expired in-flight messages and releases due deferred ones.
    pub fn process_deadlines(&self, now: Instant) {
        if self.next_deadline.load(Ordering::Acquire) > clock::nanos(now) {
            return;
        }
        let mut st = self.state.lock();
        let mut released = 0usize;
        let mut timed_out: FxHashMap<u64, i64> = FxHashMap::default();
        while let Some(Reverse((deadline, id))) = st.in_flight_pq.peek().copied() {
            if deadline > now {
                break;
            }
            st.in_flight_pq.pop();
            // Stale heap entries (FIN'd, REQ'd or TOUCHed since) are skipped.
            if st
                .in_flight
                .get(&id)
                .is_some_and(|f| f.deadline == deadline)
            {
                let f = st.in_flight.remove(&id).expect("checked above");
                *timed_out.entry(f.client_id).or_default() += 1;
                self.keep(&mut st, f.msg);
                released += 1;
            }
        }
        while let Some(Reverse((deadline, id))) = st.deferred_pq.peek().copied() {
            if deadline > now {
                break;
            }
            st.deferred_pq.pop();
            if st.deferred.get(&id).is_some_and(|d| d.deadline == deadline) {
                let d = st.deferred.remove(&id).expect("checked above");
                self.keep(&mut st, d.msg);
                released += 1;
            }
        }
        let next = [st.in_flight_pq.peek(), st.deferred_pq.peek()]
            .into_iter()
            .flatten()
            .map(|Reverse((d, _))| clock::nanos(*d))
            .min()
            .unwrap_or(i64::MAX);
        self.next_deadline.store(next, Ordering::Release);
        if released > 0 {
            self.flush_kept(&mut st);
        }
        let total_timeouts: i64 = timed_out.values().sum();
        for (client_id, n) in timed_out {
            if let Some(c) = st.clients.get(&client_id) {
                c.timed_out(n);
            }
        }
        drop(st);
        if total_timeouts > 0 {
            self.timeout_count
                .fetch_add(total_timeouts as u64, Ordering::Relaxed);
        }
        if released > 0 {
            self.ready.notify_waiters();
        }
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    pub fn unpause(&self) {
        self.paused.store(false, Ordering::Release);
        self.ready.notify_waiters();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Drops every queued, in-flight and deferred message, as nsqd's Empty does.
    pub fn empty(&self) {
        let mut st = self.state.lock();
        st.memory.clear();
        st.in_flight.clear();
        st.in_flight_pq.clear();
        st.deferred.clear();
        st.deferred_pq.clear();
        st.restored_deferrals.clear();
        st.backend.empty();
        for c in st.clients.values() {
            c.emptied();
        }
        self.next_deadline.store(i64::MAX, Ordering::Release);
    }

    pub fn depth(&self) -> i64 {
        let st = self.state.lock();
        st.memory.len() as i64 + st.backend.depth()
    }

    pub fn snapshot(&self) -> ChannelSnapshot {
        let st = self.state.lock();
        let backend_depth = st.backend.depth();
        ChannelSnapshot {
            name: self.name.clone(),
            depth: st.memory.len() as i64 + backend_depth,
            backend_depth,
            in_flight_count: st.in_flight.len() as i64,
            deferred_count: st.deferred.len() as i64,
            message_count: self.message_count.load(Ordering::Relaxed),
            requeue_count: self.requeue_count.load(Ordering::Relaxed),
            timeout_count: self.timeout_count.load(Ordering::Relaxed),
            paused: self.is_paused(),
            clients: st.clients.values().cloned().collect(),
            latency: st.latency,
        }
    }

    /// A waiting publisher needs the next sync (see [`crate::durable`]).
    pub fn request_sync(&self) {
        self.state.lock().backend.request_sync();
    }

    /// A sync a publisher waited for failed.
    pub fn sync_failed(&self, e: &str) {
        tracing::error!(
            "CHANNEL({}:{}) ERROR: failed to sync backend - {e}",
            self.topic_name,
            self.name
        );
        self.cfg.health.failed(e);
    }

    pub fn sync_backend(&self) {
        if let Err(e) = self.state.lock().backend.sync_if_needed() {
            self.disk_failed(&e);
        }
    }

    /// Shutdown: everything still held goes to disk (memory, then in-flight, then
    /// deferred, as nsqd does); deferrals are also remembered with their deadlines.
    pub fn close(&self) {
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        if self.ephemeral {
            return;
        }
        let State {
            memory,
            backend,
            in_flight,
            deferred,
            scratch,
            restored_deferrals,
            ..
        } = &mut *st;
        let mut written = 0usize;
        let mut failed = None;
        let mut put = |m: &Message, failed: &mut Option<String>| match backend.put(m, scratch) {
            Ok(stored) => stored,
            Err(e) => {
                failed.get_or_insert(e);
                false
            }
        };
        for m in memory.drain() {
            written += put(&m, &mut failed) as usize;
        }
        let mut inflight: Vec<InFlight> = in_flight.drain().map(|(_, f)| f).collect();
        inflight.sort_by_key(|f| f.deadline);
        for f in inflight {
            written += put(&f.msg, &mut failed) as usize;
        }
        let now = Instant::now();
        let wall = crate::message::unix_nanos();
        let mut saved: Vec<(MessageId, i64)> = restored_deferrals.drain().collect();
        let mut defs: Vec<Deferred> = deferred.drain().map(|(_, d)| d).collect();
        defs.sort_by_key(|d| d.deadline);
        for d in defs {
            if put(&d.msg, &mut failed) {
                written += 1;
                let left = d.deadline.saturating_duration_since(now).as_nanos() as i64;
                saved.push((d.msg.id, wall + left));
            }
        }
        if let Err(e) = backend.flush() {
            failed.get_or_insert(e);
        }
        if let Some(e) = failed {
            // Nothing else can hold them at shutdown: say so loudly.
            tracing::error!(
                "CHANNEL({}:{}): failed to write messages to disk on close - {e}",
                self.topic_name,
                self.name
            );
            self.cfg.health.failed(e);
        }
        save_deferrals(&self.cfg, &self.topic_name, &self.name, &saved);
        if written > 0 {
            tracing::info!(
                "CHANNEL({}:{}): wrote {written} messages to disk on close",
                self.topic_name,
                self.name
            );
        }
        let backend = std::mem::replace(&mut st.backend, Backend::Discard);
        backend.close();
    }

    /// Deleted by the user: drop everything and remove its files.
    pub fn delete(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.memory.clear();
        st.in_flight.clear();
        st.deferred.clear();
        for c in st.clients.values() {
            c.emptied();
        }
        let backend = std::mem::replace(&mut st.backend, Backend::Discard);
        backend.delete();
        let _ = std::fs::remove_file(deferrals_path(&self.cfg, &self.topic_name, &self.name));
        drop(st);
        self.ready.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
}

fn next_rand(state: &mut u64) -> u64 {
    // xorshift64: sampling needs speed, not quality.
    let mut x = *state | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

fn deferrals_path(cfg: &QueueConfig, topic: &str, channel: &str) -> std::path::PathBuf {
    cfg.data_path
        .join(format!("{topic}:{channel}.deferred.dat"))
}

/// Sidecar of `[16-byte ID][8-byte BE Unix-nanosecond deadline]` entries. The
/// messages themselves are in the diskqueue, so Go nsqd still finds them.
fn save_deferrals(cfg: &QueueConfig, topic: &str, channel: &str, saved: &[(MessageId, i64)]) {
    let path = deferrals_path(cfg, topic, channel);
    if saved.is_empty() {
        let _ = std::fs::remove_file(&path);
        return;
    }
    let mut buf = Vec::with_capacity(saved.len() * 24);
    for (id, until) in saved {
        buf.extend_from_slice(id);
        buf.extend_from_slice(&until.to_be_bytes());
    }
    if let Err(e) = crate::metadata::write_atomically(&path, &buf) {
        tracing::error!("CHANNEL({topic}:{channel}): failed to save deferred timings - {e}");
    }
}

fn load_deferrals(cfg: &QueueConfig, topic: &str, channel: &str) -> FxHashMap<MessageId, i64> {
    let mut out = FxHashMap::default();
    if nsq_common::names::is_ephemeral(channel) {
        return out;
    }
    let path = deferrals_path(cfg, topic, channel);
    let Ok(data) = std::fs::read(&path) else {
        return out;
    };
    for rec in data.chunks_exact(24) {
        let id: MessageId = rec[..16].try_into().expect("chunk is 24 bytes");
        let until = i64::from_be_bytes(rec[16..].try_into().expect("chunk is 24 bytes"));
        out.insert(id, until);
    }
    let _ = std::fs::remove_file(&path);
    out
}
