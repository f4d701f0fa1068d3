//! Test harness: drives the real `nsqd`, `nsqlookupd` and `nsq-operator`
//! binaries (and a real kube-apiserver) the way their users do.
//!
//! - [`daemon`]: what all three have in common: finding the binary, starting
//!   it, learning its addresses from its output (which is drained and kept for
//!   assertions), signals, and killing it on drop.
//! - [`nsqd`]: a broker on `127.0.0.1:0` ports and a temporary `--data-path`;
//!   restarts it on the same data path.
//! - [`lookupd`]: an nsqlookupd on `127.0.0.1:0` ports (or a given TCP port, to
//!   come back where brokers expect it), with helpers for `/lookup`, `/nodes`,
//!   `/channels`, `/topics` and `/debug`.
//! - [`v2`]: a blocking TCP protocol V2 client that speaks raw bytes: commands,
//!   frames and decoded messages, for byte-exact assertions.
//! - [`v1`]: the same for nsqlookupd's TCP protocol V1.
//! - [`http`]: a tiny blocking HTTP/1.1 client for both HTTP APIs.
//! - [`certs`]: a CA, server and client certificates made at test time.
//! - [`authd`]: a scripted auth server (HTTP or HTTPS) for `--auth-http-address`
//!   that answers per secret and records every request the broker makes.
//! - [`inspect`]: lookups in `nsqd.dat` and `/stats?format=json` documents.
//! - [`tokio_client`]: helpers for the tests that drive crates.io's `tokio-nsq`.
//! - [`pynsq`]: the cached Python virtualenv with PyPI's `pynsq`, for interop tests.
//! - [`apiserver`]: one etcd + kube-apiserver per test binary (`scripts/kube/`),
//!   with the CRDs of `deploy/crds/` installed and stopped at exit; [`Kube`]
//!   gives each test its own namespace and a blocking face on a `kube::Client`.
//! - [`operator`]: an `nsq-operator` watching one test's namespace, with a
//!   short resync period and Lease, and its `/metrics`.
//!
//! Every test starts its own processes, so tests run in parallel and share
//! nothing (the operator tests share their binary's API server, each in a
//! namespace of its own). The binaries come from `NSQD_BIN`, `NSQLOOKUPD_BIN`
//! and `NSQ_OPERATOR_BIN`, else from the workspace's `target/<profile>/` next
//! to the test executable; `scripts/test` builds them (and the API server)
//! before running tests.

pub mod apiserver;
pub mod authd;
pub mod bench;
pub mod certs;
pub mod daemon;
pub mod http;
pub mod inspect;
pub mod lookupd;
pub mod nsqd;
pub mod operator;
pub mod prom;
pub mod pynsq;
pub mod strace;
pub mod tokio_client;
pub mod v1;
pub mod v2;

pub use apiserver::{api_server, Kube};
pub use lookupd::{registered_nsqd, Nsqlookupd};
pub use nsqd::{nsqd_binary, Nsqd};
pub use operator::Operator;
pub use v1::V1Client;
pub use v2::{Frame, Msg, V2Client};

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what`
/// after `timeout`.
#[track_caller]
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

/// Polls `check` every 20 ms until it returns `Ok`, or panics with `what` and
/// the last `Err` (what was seen instead) after `timeout`.
#[track_caller]
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `Ok` when `got == want`, else an `Err` showing both (for [`wait_until`]).
pub fn same<T: PartialEq + std::fmt::Debug>(got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{got:?}, want {want:?}"))
    }
}
