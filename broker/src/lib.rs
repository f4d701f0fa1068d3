//! An nsqd-compatible NSQ broker.
//!
//! Data flows one way: PUB → [`topic`] → [`channel`]s → a consumer's connection.
//!
//! - [`nsqd`]: shared state: options, the topic map, clients, metadata, shutdown.
//! - [`options`]: nsqd 1.3's flags, defaults and `--config` file.
//! - [`tcp`]: the listener; reads the protocol magic.
//! - [`protocol`]: TCP protocol V2: [`protocol::command`] parses bytes into
//!   commands (pure, fuzzable), [`protocol::identify`] negotiates, and
//!   [`protocol::v2`] runs one connection (commands, message pump, heartbeats)
//!   over a [`protocol::transport`]: TCP or TLS, then snappy or deflate.
//! - [`tls`]: the rustls configurations from `--tls-*` and what a TLS
//!   connection reports; [`auth`]: AUTH against `--auth-http-address`.
//! - [`http`]: nsqd's HTTP API (`/pub`, `/mpub`, `/stats`, `/topic/*`, ...),
//!   on the HTTP and (with TLS) HTTPS listeners.
//! - [`stats`]: `/stats` snapshots in nsqd's JSON and text shapes.
//! - [`metrics`]: `/metrics` in Prometheus' text format, built from the same
//!   snapshots; [`statsd`]: nsqd's statsd push loop over UDP.
//! - [`e2e`]: end-to-end (PUB to FIN) latency: histograms and nsqd's quantile
//!   windows, recorded as channels finish messages.
//! - [`topic`]: assigns IDs, fans messages out, holds a backlog while it has no
//!   channel or is paused.
//! - [`channel`]: memory queue + diskqueue, in-flight table, deferred queue;
//!   consumers pull batches from it.
//! - [`client`]: per-connection counters shared with channels and stats.
//! - [`mem_queue`]: a memory queue bounded by count and bytes.
//! - [`message`], [`guid`]: the message and its ID.
//! - [`backend`]: the diskqueue (go-diskqueue's format, from `nsq-diskqueue`) or
//!   nothing for ephemeral queues.
//! - [`metadata`]: the `nsqd.dat` file.
//! - [`durable`]: publishes wait for the sync covering them (`--sync-every`),
//!   sharing one per queue (group commit).
//! - [`health`]: the last disk error, what `/ping` reports.
//! - [`lookup`], [`lookup_peer`]: registration with each nsqlookupd (protocol V1)
//!   and the channel pre-creation query for new topics.
//! - [`queue_scan`]: in-flight/deferred deadlines and periodic fsync.
//! - [`clock`]: monotonic instants as integers.

pub mod auth;
pub mod backend;
pub mod channel;
pub mod client;
pub mod clock;
pub mod durable;
pub mod e2e;
pub mod guid;
pub mod health;
pub mod http;
pub mod lookup;
pub mod lookup_peer;
pub mod mem_queue;
pub mod message;
pub mod metadata;
pub mod metrics;
pub mod nsqd;
pub mod options;
pub mod protocol;
pub mod queue_scan;
pub mod server;
pub mod stats;
pub mod statsd;
pub mod tcp;
pub mod tls;
pub mod topic;
