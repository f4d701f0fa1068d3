//! Code shared by the broker (`nsqd`), lookupd (`nsqlookupd`), the operator and tools.
//!
//! - [`names`]: NSQ's topic and channel name rule.
//! - [`wire`]: protocol magics, V2 frames, the message layout.
//! - [`compress`]: the snappy and deflate streams V2 clients negotiate.
//! - [`flags`]: Go-style command-line parsing (`-flag value`, `--flag=value`, bare booleans,
//!   Go durations) on top of clap, plus TOML `--config` files keyed like NSQ's.
//! - [`logging`]: NSQ's stderr log format (`[nsqd] 2006/01/02 15:04:05.000000 INFO: ...`).
//! - [`version`]: the NSQ version we speak and the `--version` line.
//! - [`listen`]: TCP listeners with the system's full accept backlog.
//! - [`http`]: the HTTP API machinery of nsqd and nsqlookupd: httprouter-style
//!   routing, query parameters, V1 responses and Go-style JSON, serving.

pub mod compress;
pub mod flags;
pub mod http;
pub mod listen;
pub mod logging;
pub mod names;
pub mod version;
pub mod wire;
