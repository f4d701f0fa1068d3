//! What nsqd 1.3 logs over a V2 client's life, line for line (`nsqd/tcp.go`,
//! `nsqd/protocol_v2.go`, `nsqd/client_v2.go`): operators grep for these.

use nsq_tests::{wait_until, Nsqd};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// A raw client: its address is what the broker's lines name.
fn connect(nsqd: &Nsqd) -> (TcpStream, String) {
    let s = TcpStream::connect(nsqd.tcp_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let addr = s.local_addr().expect("local address").to_string();
    (s, addr)
}

/// Closes the writing half and waits for the broker to close.
fn hang_up(mut s: TcpStream) {
    s.shutdown(Shutdown::Write).expect("shutdown");
    let _ = s.read_to_end(&mut Vec::new());
}

/// The lines naming `addr`, without the `[nsqd] <date> <time> ` prefix, once
/// `last` has been logged.
fn lines_about(nsqd: &Nsqd, addr: &str, last: &str) -> Vec<String> {
    wait_until(Duration::from_secs(5), &format!("{last:?}"), || {
        let lines: Vec<String> = nsqd
            .stderr_lines()
            .iter()
            .filter(|l| l.contains(addr))
            .map(|l| strip_prefix(l))
            .collect();
        if lines.iter().any(|l| l == last) {
            Ok(lines)
        } else {
            Err(format!("{lines:#?}"))
        }
    })
}

/// `[nsqd] 2006/01/02 15:04:05.000000 INFO: x` → `INFO: x`, checking the shape.
fn strip_prefix(line: &str) -> String {
    let rest = line
        .strip_prefix("[nsqd] ")
        .unwrap_or_else(|| panic!("no [nsqd] prefix: {line:?}"));
    let (stamp, rest) = rest.split_at(27);
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999/99/99 99:99:99.999999 ", "{line:?}");
    rest.to_owned()
}

#[test]
fn a_v2_clients_connection_identify_and_exit_are_logged_at_info() {
    let nsqd = Nsqd::start(&[]);
    let (mut s, addr) = connect(&nsqd);
    let body = br#"{"client_id":"worker-1","hostname":"h1.local","heartbeat_interval":30000,"feature_negotiation":true,"user_agent":"go-nsq/1.1.0","topology_region":"r1"}"#;
    let mut input = b"  V2IDENTIFY\n".to_vec();
    input.extend_from_slice(&(body.len() as u32).to_be_bytes());
    input.extend_from_slice(body);
    s.write_all(&input).expect("write");
    hang_up(s);
    let got = lines_about(
        &nsqd,
        &addr,
        &format!("INFO: PROTOCOL(V2): [{addr}] exiting messagePump"),
    );
    assert_eq!(
        got,
        [
            format!("INFO: TCP: new client({addr})"),
            format!("INFO: CLIENT({addr}): desired protocol magic '  V2'"),
            format!(
                "INFO: [{addr}] IDENTIFY: {{ClientID:worker-1 Hostname:h1.local \
                 HeartbeatInterval:30000 OutputBufferSize:0 OutputBufferTimeout:0 \
                 FeatureNegotiation:true TLSv1:false Deflate:false DeflateLevel:0 Snappy:false \
                 SampleRate:0 UserAgent:go-nsq/1.1.0 MsgTimeout:0 TopologyRegion:r1 TopologyZone:}}"
            ),
            format!("INFO: PROTOCOL(V2): [{addr}] exiting ioloop"),
            format!("INFO: PROTOCOL(V2): [{addr}] exiting messagePump"),
        ]
    );
}

#[test]
fn a_fatal_error_is_logged_with_its_cause_and_again_as_the_connections_end() {
    let nsqd = Nsqd::start(&[]);
    let (mut s, addr) = connect(&nsqd);
    s.write_all(b"  V2PUB t\n\0\0").expect("write");
    hang_up(s);
    let got = lines_about(
        &nsqd,
        &addr,
        &format!("ERROR: client({addr}) - E_BAD_MESSAGE PUB failed to read message body size"),
    );
    assert_eq!(
        got[2..],
        [
            format!(
                "ERROR: [{addr}] - E_BAD_MESSAGE PUB failed to read message body size - unexpected EOF"
            ),
            format!("INFO: PROTOCOL(V2): [{addr}] exiting ioloop"),
            format!("INFO: PROTOCOL(V2): [{addr}] exiting messagePump"),
            format!("ERROR: client({addr}) - E_BAD_MESSAGE PUB failed to read message body size"),
        ]
    );
}

#[test]
fn a_bad_magic_is_logged_as_desired_then_refused() {
    let nsqd = Nsqd::start(&[]);
    let (mut s, addr) = connect(&nsqd);
    s.write_all(b"  V1").expect("write");
    hang_up(s);
    let got = lines_about(
        &nsqd,
        &addr,
        &format!("ERROR: client({addr}) bad protocol magic '  V1'"),
    );
    assert_eq!(
        got,
        [
            format!("INFO: TCP: new client({addr})"),
            format!("INFO: CLIENT({addr}): desired protocol magic '  V1'"),
            format!("ERROR: client({addr}) bad protocol magic '  V1'"),
        ]
    );
}

#[test]
fn a_magic_cut_off_is_logged_with_gos_read_error() {
    let nsqd = Nsqd::start(&[]);
    for (magic, cause) in [(&b""[..], "EOF"), (b"  V", "unexpected EOF")] {
        let (mut s, addr) = connect(&nsqd);
        s.write_all(magic).expect("write");
        hang_up(s);
        let want = format!("ERROR: failed to read protocol version - {cause}");
        // That line names no client: it is the one right after this client's first.
        let next = wait_until(Duration::from_secs(5), &want, || {
            let lines = nsqd.stderr_lines();
            let at = lines
                .iter()
                .position(|l| l.ends_with(&format!("INFO: TCP: new client({addr})")));
            match at.and_then(|i| lines.get(i + 1)) {
                Some(l) => Ok(strip_prefix(l)),
                None => Err(format!("{lines:#?}")),
            }
        });
        assert_eq!(next, want);
    }
}

#[test]
fn missed_heartbeats_end_the_connection_with_gos_read_timeout() {
    let nsqd = Nsqd::start(&[]);
    let (mut s, addr) = connect(&nsqd);
    let body = br#"{"heartbeat_interval":1000}"#;
    let mut input = b"  V2IDENTIFY\n".to_vec();
    input.extend_from_slice(&(body.len() as u32).to_be_bytes());
    input.extend_from_slice(body);
    s.write_all(&input).expect("write");
    // Two intervals without a command: nsqd's read deadline passes.
    let broker = nsqd.tcp_addr();
    let timeout = format!(
        "ERROR: client({addr}) - failed to read command - read tcp {broker}->{addr}: i/o timeout"
    );
    let got = lines_about(&nsqd, &addr, &timeout);
    assert_eq!(
        got[3..],
        [
            format!("INFO: PROTOCOL(V2): [{addr}] exiting ioloop"),
            format!("INFO: PROTOCOL(V2): [{addr}] exiting messagePump"),
            timeout.clone(),
        ]
    );
    drop(s);
}
