//! Requests Go's `net/http` refuses before any handler sees them, over a raw
//! socket: nsqd and nsqlookupd (one HTTP layer) answer 400 and close, as Go's
//! server does, instead of waiting for a body that never comes.

use nsq_tests::{Nsqd, Nsqlookupd};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A 400, then the close (hyper words its own refusals without a body).
fn refused(got: &str) -> bool {
    got.starts_with("HTTP/1.1 400 Bad Request\r\n") && !got.ends_with("<no close>")
}

/// Sends `raw`, keeps the connection open, and returns every byte until the
/// server closes (or `"<no close>"` appended when it does not within 3 s).
fn exchange(addr: SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s.write_all(raw.as_bytes()).expect("write");
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {
                got.extend_from_slice(b"<no close>");
                break;
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A `/pub` of `hello` declaring `lengths`; the client asks for nothing
/// about the connection, so only the server's refusal closes it.
fn post_pub(lengths: &[&str]) -> String {
    let mut raw = "POST /pub?topic=t HTTP/1.1\r\nHost: x\r\n".to_owned();
    for l in lengths {
        raw.push_str(&format!("Content-Length: {l}\r\n"));
    }
    raw + "\r\nhello"
}

#[test]
fn a_content_length_go_cannot_read_is_answered_400_and_closed() {
    let nsqd = Nsqd::start(&[]);
    let cases: &[&[&str]] = &[
        // 2^63: past Go's ParseUint(v, 10, 63); hyper reads it, nsqd hung.
        &["9223372036854775808"],
        &["18446744073709551616"],
        &["-1"],
        &["abc"],
        &["+5"],
        &["5,5"],
        &["5", "6"],
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|lengths| {
            let got = exchange(nsqd.http_addr(), &post_pub(lengths));
            (!refused(&got)).then(|| format!("Content-Length {lengths:?}: got {got:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Nothing reached /pub.
    assert_eq!(nsqd.stats()["topics"], serde_json::json!([]));
}

#[test]
fn the_largest_content_length_go_reads_reaches_the_handler() {
    let nsqd = Nsqd::start(&[]);
    let close = |raw: String| raw.replacen("Host: x\r\n", "Host: x\r\nConnection: close\r\n", 1);
    let got = exchange(nsqd.http_addr(), &close(post_pub(&["9223372036854775807"])));
    assert!(
        got.starts_with("HTTP/1.1 413 Payload Too Large\r\n")
            && got.ends_with("\r\n\r\n{\"message\":\"MSG_TOO_BIG\"}"),
        "{got:?}"
    );
    // Repeats of one value are one value.
    let got = exchange(nsqd.http_addr(), &close(post_pub(&["5", "5"])));
    assert!(
        got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with("\r\n\r\nOK"),
        "{got:?}"
    );
}

#[test]
fn nsqlookupd_refuses_unreadable_requests_the_same_way() {
    let lookupd = Nsqlookupd::start(&[]);
    let get = |head: &str| format!("GET {head} HTTP/1.1\r\nHost: x\r\n");
    for raw in [
        get("/ping") + "Content-Length: 9223372036854775808\r\n\r\n",
        get("/ping") + "Content-Length: x\r\n\r\n",
        // A bad escape in the path: Go's url.ParseRequestURI fails.
        get("/p%zzing") + "\r\n",
    ] {
        let got = exchange(lookupd.http_addr(), &raw);
        assert!(refused(&got), "{raw:?}: {got:?}");
    }
}
