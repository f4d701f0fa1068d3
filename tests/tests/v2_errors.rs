//! Every error the V2 protocol can answer with, byte for byte as nsqd 1.3 sends
//! it (`nsqd/protocol_v2.go`, `nsqd/client_v2.go`, `nsqd/tcp.go`), and whether
//! the connection survives it: `protocol.FatalClientErr` closes the connection
//! after the error frame; `protocol.ClientErr` (only E_FIN_FAILED, E_REQ_FAILED
//! and E_TOUCH_FAILED) leaves it open.

use nsq_tests::v2::{describe, NoFrame, FRAME_TIMEOUT};
use nsq_tests::{Frame, Nsqd, V2Client};
use serde_json::json;

/// Small limits so the size errors are cheap to provoke.
const LIMITS: &[&str] = &["--max-msg-size=100", "--max-body-size=1000"];

/// `line\n` followed by a 4-byte big-endian length and `body`.
fn with_body(line: &str, len: u32, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{line}\n").into_bytes();
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn line(l: &str) -> Vec<u8> {
    format!("{l}\n").into_bytes()
}

/// The broker answers `input` with exactly the error `want`, then closes.
fn assert_fatal(c: &mut V2Client, input: &[u8], want: &str) {
    c.write(input);
    c.expect_error(want);
    c.expect_closed();
}

/// Like [`assert_fatal`] but reports instead of panicking, so a table of cases
/// shows every difference at once.
fn check_fatal(c: &mut V2Client, input: &[u8], want: &str) -> Result<(), String> {
    let shown = String::from_utf8_lossy(&input[..input.len().min(40)]).into_owned();
    c.write(input);
    match c.next_frame_within(FRAME_TIMEOUT) {
        Ok(Frame::Error(got)) if got == want.as_bytes() => {}
        Ok(f) => {
            return Err(format!(
                "{shown:?}: want error {want:?}, got {}",
                describe(&f)
            ))
        }
        Err(e) => return Err(format!("{shown:?}: want error {want:?}, got {e:?}")),
    }
    match c.next_frame_within(FRAME_TIMEOUT) {
        Err(NoFrame::Closed) => Ok(()),
        Ok(f) => Err(format!(
            "{shown:?}: want close after {want:?}, got {}",
            describe(&f)
        )),
        Err(e) => Err(format!("{shown:?}: want close after {want:?}, got {e:?}")),
    }
}

/// Runs every case on a fresh connection (prepared by `setup`) and fails
/// listing all cases that differ.
fn check_all<W: AsRef<str>>(nsqd: &Nsqd, setup: impl Fn(&mut V2Client), cases: &[(Vec<u8>, W)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(input, want)| {
            let mut c = nsqd.connect();
            setup(&mut c);
            check_fatal(&mut c, input, want.as_ref()).err()
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from nsqd 1.3:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

/// The connection still executes commands: a PUB to an unrelated topic is
/// answered with OK as the very next frame.
fn assert_still_open(c: &mut V2Client) {
    c.publish("probe", b"still open");
}

const ID: &str = "0123456789abcdef";

#[test]
fn malformed_commands_before_sub_get_nsqds_error_and_close_the_connection() {
    let nsqd = Nsqd::start(LIMITS);
    let long_topic = "a".repeat(65);
    let cases: Vec<(Vec<u8>, String)> = vec![
        (line("BOGUS"), "E_INVALID invalid command BOGUS".into()),
        (line(""), "E_INVALID invalid command ".into()),
        (
            line("PUB"),
            "E_INVALID PUB insufficient number of parameters".into(),
        ),
        (
            line("PUB b@d"),
            r#"E_BAD_TOPIC PUB topic name "b@d" is not valid"#.into(),
        ),
        (
            line(&format!("PUB {long_topic}")),
            format!(r#"E_BAD_TOPIC PUB topic name "{long_topic}" is not valid"#),
        ),
        (
            with_body("PUB t", 0, b""),
            "E_BAD_MESSAGE PUB invalid message body size 0".into(),
        ),
        (
            with_body("PUB t", 101, &[b'x'; 101]),
            "E_BAD_MESSAGE PUB message too big 101 > 100".into(),
        ),
        (
            line("MPUB"),
            "E_INVALID MPUB insufficient number of parameters".into(),
        ),
        // nsqd 1.3 really does repeat the code in this one description.
        (
            line("MPUB b@d"),
            r#"E_BAD_TOPIC E_BAD_TOPIC MPUB topic name "b@d" is not valid"#.into(),
        ),
        (
            with_body("MPUB t", 0, b""),
            "E_BAD_BODY MPUB invalid body size 0".into(),
        ),
        (
            with_body("MPUB t", 1001, &[0; 1001]),
            "E_BAD_BODY MPUB body too big 1001 > 1000".into(),
        ),
        (
            with_body("MPUB t", 4, &0u32.to_be_bytes()),
            "E_BAD_BODY MPUB invalid message count 0".into(),
        ),
        // (max-body-size - 4) / 5 = 199 messages at most.
        (
            with_body("MPUB t", 4, &200u32.to_be_bytes()),
            "E_BAD_BODY MPUB invalid message count 200".into(),
        ),
        (
            with_body("MPUB t", 8, &[0, 0, 0, 1, 0, 0, 0, 0]),
            "E_BAD_MESSAGE MPUB invalid message(0) body size 0".into(),
        ),
        (
            with_body(
                "MPUB t",
                109,
                &[&[0, 0, 0, 1, 0, 0, 0, 101][..], &[b'x'; 101]].concat(),
            ),
            "E_BAD_MESSAGE MPUB message too big 101 > 100".into(),
        ),
        (
            line("DPUB t"),
            "E_INVALID DPUB insufficient number of parameters".into(),
        ),
        (
            line("DPUB b@d 10"),
            r#"E_BAD_TOPIC DPUB topic name "b@d" is not valid"#.into(),
        ),
        (
            line("DPUB t x"),
            "E_INVALID DPUB could not parse timeout x".into(),
        ),
        (
            line("DPUB t 3600001"),
            "E_INVALID DPUB timeout 3600001 out of range 0-3600000".into(),
        ),
        (
            with_body("DPUB t 10", 0, b""),
            "E_BAD_MESSAGE DPUB invalid message body size 0".into(),
        ),
        (
            with_body("DPUB t 10", 101, &[b'x'; 101]),
            "E_BAD_MESSAGE DPUB message too big 101 > 100".into(),
        ),
        (
            line("SUB t"),
            "E_INVALID SUB insufficient number of parameters".into(),
        ),
        (
            line("SUB b@d c"),
            r#"E_BAD_TOPIC SUB topic name "b@d" is not valid"#.into(),
        ),
        (
            line("SUB t c!"),
            r#"E_BAD_CHANNEL SUB channel name "c!" is not valid"#.into(),
        ),
        (
            line("RDY 1"),
            "E_INVALID cannot RDY in current state".into(),
        ),
        (
            line(&format!("FIN {ID}")),
            "E_INVALID cannot FIN in current state".into(),
        ),
        (
            line(&format!("REQ {ID} 0")),
            "E_INVALID cannot REQ in current state".into(),
        ),
        (
            line(&format!("TOUCH {ID}")),
            "E_INVALID cannot TOUCH in current state".into(),
        ),
        (line("CLS"), "E_INVALID cannot CLS in current state".into()),
        (
            with_body("AUTH", 6, b"secret"),
            "E_AUTH_DISABLED AUTH disabled".into(),
        ),
        (
            line("AUTH x"),
            "E_INVALID AUTH invalid number of parameters".into(),
        ),
        (
            with_body("AUTH", 0, b""),
            "E_BAD_BODY AUTH invalid body size 0".into(),
        ),
        (
            with_body("IDENTIFY", 0, b""),
            "E_BAD_BODY IDENTIFY invalid body size 0".into(),
        ),
        (
            with_body("IDENTIFY", 1001, &[b' '; 1001]),
            "E_BAD_BODY IDENTIFY body too big 1001 > 1000".into(),
        ),
        (
            with_body("IDENTIFY", 8, b"not json"),
            "E_BAD_BODY IDENTIFY failed to decode JSON body".into(),
        ),
        (
            with_body("IDENTIFY", 26, br#"{"heartbeat_interval":"x"}"#),
            "E_BAD_BODY IDENTIFY failed to decode JSON body".into(),
        ),
    ];
    check_all(&nsqd, |_| {}, &cases);
}

#[test]
fn malformed_commands_after_sub_get_nsqds_error_and_close_the_connection() {
    let nsqd = Nsqd::start(LIMITS);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (line("SUB t c"), "E_INVALID cannot SUB in current state"),
        (
            with_body("IDENTIFY", 2, b"{}"),
            "E_INVALID cannot IDENTIFY in current state",
        ),
        (
            with_body("AUTH", 6, b"secret"),
            "E_INVALID cannot AUTH in current state",
        ),
        (line("RDY x"), "E_INVALID RDY could not parse count x"),
        (line("RDY -1"), "E_INVALID RDY could not parse count -1"),
        (
            line("RDY 2501"),
            "E_INVALID RDY count 2501 out of range 0-2500",
        ),
        (line("FIN"), "E_INVALID FIN insufficient number of params"),
        (line("FIN abc"), "E_INVALID invalid message ID"),
        (
            line(&format!("REQ {ID}")),
            "E_INVALID REQ insufficient number of params",
        ),
        (
            line(&format!("REQ {ID} x")),
            "E_INVALID REQ could not parse timeout x",
        ),
        (line("REQ abc 0"), "E_INVALID invalid message ID"),
        (
            line("TOUCH"),
            "E_INVALID TOUCH insufficient number of params",
        ),
        (line("TOUCH abc"), "E_INVALID invalid message ID"),
    ];
    check_all(&nsqd, |c| c.subscribe("t", "c"), &cases);
}

#[test]
fn identify_values_out_of_range_are_refused_with_e_bad_body_and_close_the_connection() {
    let nsqd = Nsqd::start(&[]);
    let cases = [
        (
            json!({"heartbeat_interval": 999}),
            "heartbeat interval (999) is invalid",
        ),
        // --max-heartbeat-interval defaults to 60s.
        (
            json!({"heartbeat_interval": 60001}),
            "heartbeat interval (60001) is invalid",
        ),
        (
            json!({"heartbeat_interval": -2}),
            "heartbeat interval (-2) is invalid",
        ),
        // --min-output-buffer-timeout 25ms, --max-output-buffer-timeout 30s.
        (
            json!({"output_buffer_timeout": 24}),
            "output buffer timeout (24) is invalid",
        ),
        (
            json!({"output_buffer_timeout": 30001}),
            "output buffer timeout (30001) is invalid",
        ),
        // 64 bytes to --max-output-buffer-size (64 KiB).
        (
            json!({"output_buffer_size": 63}),
            "output buffer size (63) is invalid",
        ),
        (
            json!({"output_buffer_size": 65537}),
            "output buffer size (65537) is invalid",
        ),
        (json!({"sample_rate": 100}), "sample rate (100) is invalid"),
        (json!({"sample_rate": -1}), "sample rate (-1) is invalid"),
        // 1s to --max-msg-timeout (15m).
        (json!({"msg_timeout": 999}), "msg timeout (999) is invalid"),
        (
            json!({"msg_timeout": 900001}),
            "msg timeout (900001) is invalid",
        ),
    ];
    let cases: Vec<(Vec<u8>, String)> = cases
        .iter()
        .map(|(body, want)| {
            let body = body.to_string();
            let input = with_body("IDENTIFY", body.len() as u32, body.as_bytes());
            (input, format!("E_BAD_BODY IDENTIFY {want}"))
        })
        .collect();
    check_all(&nsqd, |_| {}, &cases);
}

#[test]
fn sub_with_heartbeats_disabled_is_refused_and_closes_the_connection() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    assert_eq!(
        c.identify(&json!({"heartbeat_interval": -1})),
        Frame::Response(b"OK".to_vec())
    );
    assert_fatal(
        &mut c,
        b"SUB t c\n",
        "E_INVALID cannot SUB with heartbeats disabled",
    );
}

#[test]
fn fin_req_touch_of_an_id_not_in_flight_fail_without_closing_the_connection() {
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    c.subscribe("t", "c");
    c.command(&format!("FIN {ID}"));
    c.expect_error(&format!("E_FIN_FAILED FIN {ID} failed ID not in flight"));
    assert_still_open(&mut c);
    c.command(&format!("REQ {ID} 0"));
    c.expect_error(&format!("E_REQ_FAILED REQ {ID} failed ID not in flight"));
    assert_still_open(&mut c);
    c.command(&format!("TOUCH {ID}"));
    c.expect_error(&format!(
        "E_TOUCH_FAILED TOUCH {ID} failed ID not in flight"
    ));
    assert_still_open(&mut c);
}

#[test]
fn fin_req_touch_of_another_clients_message_fail_without_closing_the_connection() {
    let nsqd = Nsqd::start(&[]);
    let mut owner = nsqd.connect();
    owner.subscribe("t", "c");
    let mut other = nsqd.connect();
    other.subscribe("t", "c");
    owner.rdy(1);
    owner.publish("t", b"mine");
    let m = owner.next_message();
    let id = m.id_str().to_owned();

    other.command(&format!("FIN {id}"));
    other.expect_error(&format!(
        "E_FIN_FAILED FIN {id} failed client does not own message"
    ));
    other.command(&format!("REQ {id} 0"));
    other.expect_error(&format!(
        "E_REQ_FAILED REQ {id} failed client does not own message"
    ));
    other.command(&format!("TOUCH {id}"));
    other.expect_error(&format!(
        "E_TOUCH_FAILED TOUCH {id} failed client does not own message"
    ));
    assert_still_open(&mut other);

    // The owner's FIN still works: no error comes before the probe's OK.
    owner.fin(&m.id);
    assert_still_open(&mut owner);
}

#[test]
fn bad_protocol_magic_gets_e_bad_protocol_then_close() {
    let nsqd = Nsqd::start(&[]);
    for magic in [&b"  V1"[..], b"XXXX", b"V2  "] {
        let mut c = V2Client::connect_without_magic(nsqd.tcp_addr());
        c.write(magic);
        c.expect_error("E_BAD_PROTOCOL");
        c.expect_closed();
    }
}

#[test]
fn second_consumer_over_max_channel_consumers_gets_e_too_many_channel_consumers() {
    let nsqd = Nsqd::start(&["--max-channel-consumers=1"]);
    let mut first = nsqd.connect();
    first.subscribe("t", "c");

    let mut second = nsqd.connect();
    assert_fatal(
        &mut second,
        b"SUB t c\n",
        "E_TOO_MANY_CHANNEL_CONSUMERS channel consumers for t:c exceeds limit of 1",
    );
    assert_still_open(&mut first);

    // The limit is per channel.
    let mut elsewhere = nsqd.connect();
    elsewhere.subscribe("t", "c2");

    // Once the first consumer leaves, its place is free again.
    drop(first);
    nsq_tests::wait_for(
        std::time::Duration::from_secs(3),
        "the channel to accept a consumer again",
        || {
            let mut c = nsqd.connect();
            c.command("SUB t c");
            match c.next_frame() {
                Frame::Response(b) if b == b"OK" => Some(()),
                _ => None,
            }
        },
    );
}

#[test]
fn command_line_longer_than_nsqds_read_buffer_closes_without_an_error_frame() {
    // nsqd reads commands with bufio.Reader.ReadSlice over a 16 KiB buffer; a
    // longer line fails with ErrBufferFull, which IOLoop treats as a read error:
    // it closes the connection without sending a frame.
    let nsqd = Nsqd::start(&[]);
    let mut c = nsqd.connect();
    c.write(&vec![b'A'; 20 * 1024]);
    c.expect_closed();
}

/// Sends `input` after the magic, closes the writing half (the client is
/// still reading) and returns everything the broker sends until it closes.
fn answer_to_half_close(nsqd: &Nsqd, input: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(nsqd.tcp_addr()).expect("connect");
    s.set_read_timeout(Some(FRAME_TIMEOUT)).expect("timeout");
    s.write_all(&[b"  V2", input].concat()).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("after {:?}: {e}", String::from_utf8_lossy(input)));
    got
}

fn error_frame(msg: &str) -> Vec<u8> {
    let mut f = (msg.len() as u32 + 4).to_be_bytes().to_vec();
    f.extend_from_slice(&1u32.to_be_bytes());
    f.extend_from_slice(msg.as_bytes());
    f
}

#[test]
fn a_command_cut_off_by_the_client_closing_gets_nsqds_error_frame_before_the_close() {
    // nsqd reads sizes and bodies with io.ReadFull; at EOF that read fails and
    // the command's error for that step is sent before the connection closes.
    let nsqd = Nsqd::start(LIMITS);
    let mpub = |rest: &[u8]| [&with_body("MPUB t", 15, b"")[..], rest].concat();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            line("PUB t"),
            "E_BAD_MESSAGE PUB failed to read message body size",
        ),
        (
            [&line("PUB t")[..], &[0, 0]].concat(),
            "E_BAD_MESSAGE PUB failed to read message body size",
        ),
        (
            with_body("PUB t", 5, b"ab"),
            "E_BAD_MESSAGE PUB failed to read message body",
        ),
        (
            line("DPUB t 10"),
            "E_BAD_MESSAGE DPUB failed to read message body size",
        ),
        (
            with_body("DPUB t 10", 5, b""),
            "E_BAD_MESSAGE DPUB failed to read message body",
        ),
        (
            line("IDENTIFY"),
            "E_BAD_BODY IDENTIFY failed to read body size",
        ),
        (
            with_body("IDENTIFY", 20, b"{\"client_id\""),
            "E_BAD_BODY IDENTIFY failed to read body",
        ),
        (line("AUTH"), "E_BAD_BODY AUTH failed to read body size"),
        (
            with_body("AUTH", 6, b"sec"),
            "E_BAD_BODY AUTH failed to read body",
        ),
        (line("MPUB t"), "E_BAD_BODY MPUB failed to read body size"),
        (
            mpub(&[0, 0]),
            "E_BAD_BODY MPUB failed to read message count",
        ),
        (
            mpub(&[0, 0, 0, 2, 0, 0, 0, 2, b'a', b'b', 0]),
            "E_BAD_MESSAGE MPUB failed to read message(1) body size",
        ),
        (
            mpub(&[0, 0, 0, 2, 0, 0, 0, 2, b'a']),
            "E_BAD_MESSAGE MPUB failed to read message body",
        ),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(input, want)| {
            let got = answer_to_half_close(&nsqd, input);
            (got != error_frame(want)).then(|| {
                format!(
                    "{:?}: want {want:?}, got {:?}",
                    String::from_utf8_lossy(input),
                    String::from_utf8_lossy(&got)
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn eof_inside_a_command_line_or_after_whole_commands_closes_without_a_frame() {
    // nsqd's ReadSlice('\n') returns EOF: IOLoop ends without a word.
    let nsqd = Nsqd::start(&[]);
    for input in [&b""[..], b"PUB t", b"NOP", b"NOP\n"] {
        let got = answer_to_half_close(&nsqd, input);
        assert_eq!(got, b"", "after {:?}", String::from_utf8_lossy(input));
    }
    // A whole PUB is answered OK, and nothing follows.
    let got = answer_to_half_close(&nsqd, &with_body("PUB t", 2, b"hi"));
    assert_eq!(got, b"\0\0\0\x06\0\0\0\0OK");
}
