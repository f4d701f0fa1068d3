//! An nsqlookupd-compatible NSQ discovery daemon.
//!
//! nsqd nodes connect over TCP (port 4160) and tell nsqlookupd which topics
//! and channels they have; consumers ask over HTTP (port 4161) which nsqd
//! nodes have a topic. Data flows one way: a V1 connection → the
//! registration DB → HTTP answers.
//!
//! - [`options`]: nsqlookupd 1.3's flags, defaults and `--config` file.
//! - [`nsqlookupd`]: shared state (options, the DB, bound addresses, the
//!   shutdown signal), binding the listeners, start-up and shutdown.
//! - [`tcp`]: the TCP listener; reads the protocol magic, refuses anything
//!   but `"  V1"` with `E_BAD_PROTOCOL`.
//! - [`protocol_v1`]: the lookup protocol: [`protocol_v1::decode`] parses bytes
//!   into requests (pure, fuzzable), [`protocol_v1::Session`] applies `PING`,
//!   `IDENTIFY`, `REGISTER` and `UNREGISTER` to the DB, and
//!   [`protocol_v1::io_loop`] runs one connection (a closed connection drops
//!   all of its registrations).
//! - [`registration_db`]: the registration DB, a pure data structure:
//!   `client`/`topic`/`channel` registrations and their producers, wildcards,
//!   tombstones, the inactivity filter.
//! - [`http`]: the HTTP API (`/lookup`, `/topics`, `/channels`, `/nodes`,
//!   `/topic/*`, `/channel/*`, `/ping`, `/info`, `/debug`) on the routing,
//!   parameters and V1 responses shared with nsqd in [`nsq_common::http`].
//! - [`metrics`]: `/metrics`, the DB's producers, topics, channels and
//!   tombstones in Prometheus' text format.
//!
//! Shared with the broker through `nsq_common`: name validation
//! ([`nsq_common::names`]), V1 response framing ([`nsq_common::wire`]), flags,
//! logging and the version line.

pub mod http;
pub mod metrics;
pub mod nsqlookupd;
pub mod options;
pub mod protocol_v1;
pub mod registration_db;
pub mod tcp;
