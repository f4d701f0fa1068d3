//! Test harness: drives the real `nsqd` binary the way its users do.
//!
//! - [`nsqd`]: starts the binary on `127.0.0.1:0` ports and a temporary
//!   `--data-path`, learns its addresses from its stderr (which is drained and
//!   kept for assertions), sends SIGTERM, restarts it on the same data path, and
//!   kills it on drop.
//! - [`v2`]: a blocking TCP protocol V2 client that speaks raw bytes: commands,
//!   frames and decoded messages, for byte-exact assertions.
//! - [`http`]: a tiny blocking HTTP/1.1 client for nsqd's HTTP API.
//! - [`inspect`]: lookups in `nsqd.dat` and `/stats?format=json` documents.
//! - [`pynsq`]: the cached Python virtualenv with PyPI's `pynsq`, for interop tests.
//!
//! Every test starts its own broker, so tests run in parallel and share nothing.
//! The binary comes from `NSQD_BIN`, else from the workspace's `target/<profile>/`
//! next to the test executable; `scripts/test` builds it before running tests.

pub mod http;
pub mod inspect;
pub mod nsqd;
pub mod pynsq;
pub mod v2;

pub use nsqd::{nsqd_binary, Nsqd};
pub use v2::{Frame, Msg, V2Client};

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what`
/// after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
