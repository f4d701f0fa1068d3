//! Listeners take a reconnect storm: the accept queue is the system's
//! `somaxconn` (as Go's), not 128, so connections made while the daemon is
//! not accepting (busy, or stopped here with SIGSTOP) complete at once
//! instead of waiting out SYN retries.

use nsq_tests::{Nsqd, Nsqlookupd};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connections opened against a daemon that accepts none.
const STORM: usize = 1000;

fn somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(4096)
}

/// How many of `STORM` connects complete while nothing accepts them.
fn storm(addr: SocketAddr) -> usize {
    let mut open = Vec::new();
    for _ in 0..STORM {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => open.push(s),
            Err(_) => break,
        }
    }
    open.len()
}

fn expected() -> usize {
    // The queue holds backlog + 1 completed connections.
    STORM.min(somaxconn() + 1)
}

#[test]
fn nsqd_listeners_queue_a_storm_of_connections() {
    let nsqd = Nsqd::start(&[]);
    nsqd.signal(libc::SIGSTOP);
    let tcp = storm(nsqd.tcp_addr());
    let http = storm(nsqd.http_addr());
    nsqd.signal(libc::SIGCONT);
    assert_eq!(
        (tcp, http),
        (expected(), expected()),
        "connections queued (TCP, HTTP)"
    );
    assert!(
        expected() > 129,
        "somaxconn {} on this machine",
        somaxconn()
    );
    // Once running again it serves them and new ones.
    let r = nsqd.http("GET", "/ping", b"");
    assert_eq!((r.status, r.text()), (200, "OK".to_owned()));
}

#[test]
fn nsqlookupd_listeners_queue_a_storm_of_connections() {
    let lookupd = Nsqlookupd::start(&[]);
    lookupd.signal(libc::SIGSTOP);
    let tcp = storm(lookupd.tcp_addr());
    let http = storm(lookupd.http_addr());
    lookupd.signal(libc::SIGCONT);
    assert_eq!(
        (tcp, http),
        (expected(), expected()),
        "connections queued (TCP, HTTP)"
    );
}
