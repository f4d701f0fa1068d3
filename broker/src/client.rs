//! Per-connection state shared between a client's connection task, the channel
//! it consumes from (in-flight accounting, time-outs) and the stats snapshot.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};
use tokio::sync::Notify;

/// nsqd's client states, as `/stats` reports them.
pub const STATE_INIT: i32 = 0;
pub const STATE_SUBSCRIBED: i32 = 3;
pub const STATE_CLOSING: i32 = 4;

/// What IDENTIFY and AUTH told us, reported by `/stats`.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    pub client_id: String,
    pub hostname: String,
    pub user_agent: String,
    pub sample_rate: i32,
    pub topology_zone: String,
    pub topology_region: String,
    /// Set once the TLS upgrade completes.
    pub tls: Option<crate::tls::TlsInfo>,
    pub snappy: bool,
    pub deflate: bool,
    /// The auth server granted at least one authorization.
    pub authed: bool,
    pub auth_identity: String,
    pub auth_identity_url: String,
}

#[derive(Debug)]
pub struct ClientShared {
    pub id: u64,
    pub remote_address: String,
    /// Unix seconds.
    pub connect_ts: i64,
    pub state: AtomicI32,
    pub ready_count: AtomicI64,
    pub in_flight: AtomicI64,
    pub message_count: AtomicU64,
    pub finish_count: AtomicU64,
    pub requeue_count: AtomicU64,
    pub identity: Mutex<ClientIdentity>,
    /// Per-topic publish counts, updated once per PUB/MPUB/DPUB command.
    pub pub_counts: Mutex<BTreeMap<String, u64>>,
    /// Wakes the connection task when a time-out frees in-flight room.
    pub wake: Notify,
}

impl ClientShared {
    pub fn new(id: u64, remote_address: String, connect_ts: i64) -> Self {
        ClientShared {
            id,
            remote_address,
            connect_ts,
            state: AtomicI32::new(STATE_INIT),
            ready_count: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            message_count: AtomicU64::new(0),
            finish_count: AtomicU64::new(0),
            requeue_count: AtomicU64::new(0),
            identity: Mutex::new(ClientIdentity::default()),
            pub_counts: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        }
    }

    /// A message this client held timed out on its channel.
    pub fn timed_out(&self, n: i64) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// The channel was emptied: nothing is in flight any more.
    pub fn emptied(&self) {
        self.in_flight.store(0, Ordering::Release);
        self.wake.notify_one();
    }

    pub fn published(&self, topic: &str, n: u64) {
        *self.pub_counts.lock().entry(topic.to_owned()).or_default() += n;
    }

    pub fn is_producer(&self) -> bool {
        !self.pub_counts.lock().is_empty()
    }
}
