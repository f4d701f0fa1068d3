//! The V2 command parser: pure functions over the connection's input buffer.
//!
//! Validation follows nsqd's order for each command, so the first error a
//! malformed command hits is the one nsqd would report. Every parse error is
//! fatal, as in nsqd, so the parser never needs to resynchronise.

use super::error::{go_quote, lossy, ClientError};
use crate::client::{STATE_CLOSING, STATE_INIT, STATE_SUBSCRIBED};
use bytes::{Buf, Bytes, BytesMut};
use nsq_common::names::{is_valid_channel_name, is_valid_topic_name};
use nsq_common::wire::MessageId;

/// Longest command line accepted, like nsqd's 16 KiB read buffer.
pub const MAX_LINE_LENGTH: usize = 16 * 1024;

/// What the parser needs to know about the connection and the limits.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    pub state: i32,
    pub heartbeats_enabled: bool,
    pub max_body_size: i64,
    pub max_msg_size: i64,
    pub max_req_timeout_ms: i64,
    pub max_rdy_count: i64,
    /// `--tls-required` is set and this connection has not upgraded yet:
    /// everything but IDENTIFY is refused.
    pub tls_missing: bool,
    /// Auth is on and the client holds no authorizations: MPUB is refused
    /// before its body is read, as nsqd does.
    pub auth_first: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Identify(Bytes),
    Auth(Bytes),
    Sub {
        topic: String,
        channel: String,
    },
    Pub {
        topic: String,
        body: Bytes,
    },
    Mpub {
        topic: String,
        bodies: Vec<Bytes>,
    },
    Dpub {
        topic: String,
        defer_ms: u32,
        body: Bytes,
    },
    /// `None` when RDY comes after CLS and is ignored.
    Rdy(Option<i64>),
    Fin(MessageId),
    Req {
        id: MessageId,
        delay_ms: i64,
    },
    Touch(MessageId),
    Nop,
    Cls,
}

/// Parses one command off the front of `buf`. `Ok(None)` means more input is
/// needed; on success the command's bytes are consumed.
pub fn parse(buf: &mut BytesMut, ctx: &ParseContext) -> Result<Option<Command>, ClientError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE_LENGTH {
            return Err(ClientError::silent_close());
        }
        return Ok(None);
    };
    let mut line_end = nl;
    if line_end > 0 && buf[line_end - 1] == b'\r' {
        line_end -= 1;
    }
    let line = &buf[..line_end];
    let params: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let body_start = nl + 1;
    if ctx.tls_missing && params[0] != b"IDENTIFY" {
        return Err(ClientError::invalid(format!(
            "cannot {} in current state (TLS required)",
            lossy(params[0])
        )));
    }
    let parsed = match params[0] {
        b"IDENTIFY" => {
            if ctx.state != STATE_INIT {
                return Err(ClientError::invalid("cannot IDENTIFY in current state"));
            }
            body(buf, body_start, "IDENTIFY", ctx.max_body_size, "E_BAD_BODY")?
                .map(|(b, used)| (Command::Identify(b), used))
        }
        b"AUTH" => {
            if ctx.state != STATE_INIT {
                return Err(ClientError::invalid("cannot AUTH in current state"));
            }
            if params.len() != 1 {
                return Err(ClientError::invalid("AUTH invalid number of parameters"));
            }
            body(buf, body_start, "AUTH", ctx.max_body_size, "E_BAD_BODY")?
                .map(|(b, used)| (Command::Auth(b), used))
        }
        b"PUB" => {
            let topic = topic_param(&params, 2, "PUB")?;
            pub_body(buf, body_start, "PUB", ctx.max_msg_size)?
                .map(|(body, used)| (Command::Pub { topic, body }, used))
        }
        b"MPUB" => {
            if params.len() < 2 {
                return Err(ClientError::invalid(
                    "MPUB insufficient number of parameters",
                ));
            }
            if !is_valid_topic_name(&lossy(params[1])) {
                return Err(ClientError::fatal(
                    "E_BAD_TOPIC",
                    format!(
                        "E_BAD_TOPIC MPUB topic name {} is not valid",
                        go_quote(params[1])
                    ),
                ));
            }
            if ctx.auth_first {
                return Err(ClientError::fatal(
                    "E_AUTH_FIRST",
                    "AUTH required before MPUB",
                ));
            }
            let topic = lossy(params[1]);
            match body(buf, body_start, "MPUB", ctx.max_body_size, "E_BAD_BODY")? {
                None => None,
                Some((b, used)) => Some((
                    Command::Mpub {
                        topic,
                        bodies: split_mpub(b, ctx.max_msg_size)?,
                    },
                    used,
                )),
            }
        }
        b"DPUB" => {
            let topic = topic_param(&params, 3, "DPUB")?;
            let ms = base10(params[2]).ok_or_else(|| {
                ClientError::invalid(format!("DPUB could not parse timeout {}", lossy(params[2])))
            })?;
            if ms < 0 || ms > ctx.max_req_timeout_ms {
                return Err(ClientError::invalid(format!(
                    "DPUB timeout {ms} out of range 0-{}",
                    ctx.max_req_timeout_ms
                )));
            }
            pub_body(buf, body_start, "DPUB", ctx.max_msg_size)?.map(|(body, used)| {
                (
                    Command::Dpub {
                        topic,
                        defer_ms: ms.min(u32::MAX as i64) as u32,
                        body,
                    },
                    used,
                )
            })
        }
        b"SUB" => {
            if ctx.state != STATE_INIT {
                return Err(ClientError::invalid("cannot SUB in current state"));
            }
            if !ctx.heartbeats_enabled {
                return Err(ClientError::invalid("cannot SUB with heartbeats disabled"));
            }
            if params.len() < 3 {
                return Err(ClientError::invalid(
                    "SUB insufficient number of parameters",
                ));
            }
            if !is_valid_topic_name(&lossy(params[1])) {
                return Err(ClientError::fatal(
                    "E_BAD_TOPIC",
                    format!("SUB topic name {} is not valid", go_quote(params[1])),
                ));
            }
            if !is_valid_channel_name(&lossy(params[2])) {
                return Err(ClientError::fatal(
                    "E_BAD_CHANNEL",
                    format!("SUB channel name {} is not valid", go_quote(params[2])),
                ));
            }
            Some((
                Command::Sub {
                    topic: lossy(params[1]),
                    channel: lossy(params[2]),
                },
                body_start,
            ))
        }
        b"RDY" => {
            if ctx.state == STATE_CLOSING {
                Some((Command::Rdy(None), body_start))
            } else {
                if ctx.state != STATE_SUBSCRIBED {
                    return Err(ClientError::invalid("cannot RDY in current state"));
                }
                let count = match params.get(1) {
                    None => 1,
                    Some(p) => base10(p).ok_or_else(|| {
                        ClientError::invalid(format!("RDY could not parse count {}", lossy(p)))
                    })?,
                };
                if count < 0 || count > ctx.max_rdy_count {
                    return Err(ClientError::invalid(format!(
                        "RDY count {count} out of range 0-{}",
                        ctx.max_rdy_count
                    )));
                }
                Some((Command::Rdy(Some(count)), body_start))
            }
        }
        b"FIN" => {
            let id = in_flight_params(ctx, &params, "FIN", 2)?;
            Some((Command::Fin(id), body_start))
        }
        b"REQ" => {
            let id = in_flight_params(ctx, &params, "REQ", 3)?;
            let ms = base10(params[2]).ok_or_else(|| {
                ClientError::invalid(format!("REQ could not parse timeout {}", lossy(params[2])))
            })?;
            // nsqd clamps an out-of-range REQ timeout instead of refusing it.
            let delay_ms = ms.clamp(0, ctx.max_req_timeout_ms);
            Some((Command::Req { id, delay_ms }, body_start))
        }
        b"TOUCH" => {
            let id = in_flight_params(ctx, &params, "TOUCH", 2)?;
            Some((Command::Touch(id), body_start))
        }
        b"NOP" => Some((Command::Nop, body_start)),
        b"CLS" => {
            if ctx.state != STATE_SUBSCRIBED {
                return Err(ClientError::invalid("cannot CLS in current state"));
            }
            Some((Command::Cls, body_start))
        }
        other => {
            return Err(ClientError::invalid(format!(
                "invalid command {}",
                lossy(other)
            )))
        }
    };
    Ok(parsed.map(|(cmd, used)| {
        buf.advance(used);
        cmd
    }))
}

/// What nsqd answers when the client's stream ends inside a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutOff {
    pub error: ClientError,
    /// The failed read's error as Go's `io.ReadFull` words it (`EOF` when it
    /// got nothing, `unexpected EOF` when it got part), which nsqd appends to
    /// its log line; `None` when the error is about a value that did arrive.
    pub cause: Option<&'static str>,
}

/// The error frame nsqd sends when the stream ends (EOF) with `buf` still
/// unparsed: its handler's read of a size or body comes up short and fails
/// with that step's error. `None` when nsqd closes without a frame: no whole
/// command line (its `ReadSlice` just sees EOF), or nothing left to read.
pub fn at_eof(buf: &[u8], ctx: &ParseContext) -> Option<CutOff> {
    // Whatever `parse` decides (a command, an error) is not about the end.
    if !matches!(parse(&mut BytesMut::from(buf), ctx), Ok(None)) {
        return None;
    }
    let nl = buf.iter().position(|&b| b == b'\n')?;
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let cmd = line.split(|&b| b == b' ').next().unwrap_or_default();
    let rest = &buf[nl + 1..];
    let sized = |code, size: &str, body: &str| match rest.len().checked_sub(4) {
        None => short(code, size, rest.len()),
        Some(have) => short(code, body, have),
    };
    match cmd {
        b"IDENTIFY" => sized(
            "E_BAD_BODY",
            "IDENTIFY failed to read body size",
            "IDENTIFY failed to read body",
        ),
        b"AUTH" => sized(
            "E_BAD_BODY",
            "AUTH failed to read body size",
            "AUTH failed to read body",
        ),
        b"PUB" => sized(
            "E_BAD_MESSAGE",
            "PUB failed to read message body size",
            "PUB failed to read message body",
        ),
        b"DPUB" => sized(
            "E_BAD_MESSAGE",
            "DPUB failed to read message body size",
            "DPUB failed to read message body",
        ),
        b"MPUB" => match rest.get(4..) {
            None => short("E_BAD_BODY", "MPUB failed to read body size", rest.len()),
            Some(body) => mpub_at_eof(body, ctx),
        },
        _ => None,
    }
}

/// A read that got `have` bytes before the end.
fn short(code: &'static str, desc: &str, have: usize) -> Option<CutOff> {
    Some(CutOff {
        error: ClientError::fatal(code, desc),
        cause: Some(if have == 0 { "EOF" } else { "unexpected EOF" }),
    })
}

/// nsqd's `readMPUB` over what arrived of an MPUB body: count, then size and
/// bytes per message, each checked as soon as it is read.
fn mpub_at_eof(body: &[u8], ctx: &ParseContext) -> Option<CutOff> {
    let checked = |desc: String, code| {
        Some(CutOff {
            error: ClientError::fatal(code, desc),
            cause: None,
        })
    };
    let Some(count) = read_len(body, 0) else {
        return short(
            "E_BAD_BODY",
            "MPUB failed to read message count",
            body.len(),
        );
    };
    // 4 bytes of count, then at least 5 per message.
    if count <= 0 || count as i64 > (ctx.max_body_size - 4) / 5 {
        return checked(format!("MPUB invalid message count {count}"), "E_BAD_BODY");
    }
    let mut at = 4;
    for i in 0..count {
        let Some(size) = read_len(body, at) else {
            let desc = format!("MPUB failed to read message({i}) body size");
            return short("E_BAD_MESSAGE", &desc, body.len() - at);
        };
        if size <= 0 {
            let desc = format!("MPUB invalid message({i}) body size {size}");
            return checked(desc, "E_BAD_MESSAGE");
        }
        if size as i64 > ctx.max_msg_size {
            let desc = format!("MPUB message too big {size} > {}", ctx.max_msg_size);
            return checked(desc, "E_BAD_MESSAGE");
        }
        at += 4;
        if body.len() - at < size as usize {
            return short(
                "E_BAD_MESSAGE",
                "MPUB failed to read message body",
                body.len() - at,
            );
        }
        at += size as usize;
    }
    // Every message arrived before the declared body size did.
    None
}

/// The topic of an `MPUB` line at the front of `buf` whose body has not fully
/// arrived (what nsqd authorizes before reading the body).
pub fn pending_mpub_topic(buf: &[u8]) -> Option<String> {
    let rest = buf.strip_prefix(b"MPUB ")?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
    let topic = line.split(|&b| b == b' ').next()?;
    std::str::from_utf8(topic)
        .ok()
        .filter(|t| is_valid_topic_name(t))
        .map(str::to_owned)
}

fn topic_param(params: &[&[u8]], need: usize, cmd: &str) -> Result<String, ClientError> {
    if params.len() < need {
        return Err(ClientError::invalid(format!(
            "{cmd} insufficient number of parameters"
        )));
    }
    let name = lossy(params[1]);
    if !is_valid_topic_name(&name) || name.as_bytes() != params[1] {
        return Err(ClientError::fatal(
            "E_BAD_TOPIC",
            format!("{cmd} topic name {} is not valid", go_quote(params[1])),
        ));
    }
    Ok(name)
}

fn in_flight_params(
    ctx: &ParseContext,
    params: &[&[u8]],
    cmd: &str,
    need: usize,
) -> Result<MessageId, ClientError> {
    if ctx.state != STATE_SUBSCRIBED && ctx.state != STATE_CLOSING {
        return Err(ClientError::invalid(format!(
            "cannot {cmd} in current state"
        )));
    }
    if params.len() < need {
        return Err(ClientError::invalid(format!(
            "{cmd} insufficient number of params"
        )));
    }
    params[1]
        .try_into()
        .map_err(|_| ClientError::invalid("invalid message ID"))
}

/// The 4-byte length after the line, if it has arrived.
fn read_len(buf: &[u8], at: usize) -> Option<i32> {
    buf.get(at..at + 4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A length-prefixed body checked against `max`; returns it and the bytes used.
fn body(
    buf: &mut BytesMut,
    at: usize,
    cmd: &str,
    max: i64,
    code: &'static str,
) -> Result<Option<(Bytes, usize)>, ClientError> {
    let Some(len) = read_len(buf, at) else {
        return Ok(None);
    };
    if len as i64 > max {
        return Err(ClientError::fatal(
            code,
            format!("{cmd} body too big {len} > {max}"),
        ));
    }
    if len <= 0 {
        return Err(ClientError::fatal(
            code,
            format!("{cmd} invalid body size {len}"),
        ));
    }
    take_body(buf, at + 4, len as usize)
}

/// PUB and DPUB bodies: size errors are E_BAD_MESSAGE and checked in nsqd's order.
fn pub_body(
    buf: &mut BytesMut,
    at: usize,
    cmd: &str,
    max: i64,
) -> Result<Option<(Bytes, usize)>, ClientError> {
    let Some(len) = read_len(buf, at) else {
        return Ok(None);
    };
    if len <= 0 {
        return Err(ClientError::fatal(
            "E_BAD_MESSAGE",
            format!("{cmd} invalid message body size {len}"),
        ));
    }
    if len as i64 > max {
        return Err(ClientError::fatal(
            "E_BAD_MESSAGE",
            format!("{cmd} message too big {len} > {max}"),
        ));
    }
    take_body(buf, at + 4, len as usize)
}

/// Splits off the command (line, length and body) once the whole body is here;
/// the body shares the input buffer's memory instead of being copied.
fn take_body(
    buf: &mut BytesMut,
    start: usize,
    len: usize,
) -> Result<Option<(Bytes, usize)>, ClientError> {
    if buf.len() < start + len {
        buf.reserve(start + len - buf.len());
        return Ok(None);
    }
    let mut head = buf.split_to(start + len);
    let body = head.split_off(start).freeze();
    Ok(Some((body, 0)))
}

/// MPUB's body: a message count then `[size][bytes]` per message.
fn split_mpub(body: Bytes, max_msg_size: i64) -> Result<Vec<Bytes>, ClientError> {
    let Some(count) = read_len(&body, 0) else {
        return Err(ClientError::fatal(
            "E_BAD_BODY",
            "MPUB failed to read message count",
        ));
    };
    // A count can never exceed the bytes it would need; this also caps the allocation.
    if count <= 0 || count as usize > body.len() / 4 {
        return Err(ClientError::fatal(
            "E_BAD_BODY",
            format!("MPUB invalid message count {count}"),
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut at = 4;
    for i in 0..count {
        let Some(size) = read_len(&body, at) else {
            return Err(ClientError::fatal(
                "E_BAD_MESSAGE",
                format!("MPUB failed to read message({i}) body size"),
            ));
        };
        if size <= 0 {
            return Err(ClientError::fatal(
                "E_BAD_MESSAGE",
                format!("MPUB invalid message({i}) body size {size}"),
            ));
        }
        if size as i64 > max_msg_size {
            return Err(ClientError::fatal(
                "E_BAD_MESSAGE",
                format!("MPUB message too big {size} > {max_msg_size}"),
            ));
        }
        let start = at + 4;
        let end = start + size as usize;
        if end > body.len() {
            return Err(ClientError::fatal(
                "E_BAD_MESSAGE",
                "MPUB failed to read message body",
            ));
        }
        out.push(body.slice(start..end));
        at = end;
    }
    Ok(out)
}

/// nsqd's ByteToBase10: digits only (empty is 0), wrapping like Go's uint64.
fn base10(b: &[u8]) -> Option<i64> {
    let mut n: u64 = 0;
    for &d in b {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.wrapping_mul(10).wrapping_add((d - b'0') as u64);
    }
    Some(n as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(state: i32) -> ParseContext {
        ParseContext {
            state,
            heartbeats_enabled: true,
            max_body_size: 1000,
            max_msg_size: 100,
            max_req_timeout_ms: 3_600_000,
            max_rdy_count: 2500,
            tls_missing: false,
            auth_first: false,
        }
    }

    #[test]
    fn tls_required_refuses_everything_but_identify_before_reading_a_body() {
        let c = ParseContext {
            tls_missing: true,
            ..ctx(STATE_INIT)
        };
        for (input, want) in [
            (
                &b"PUB t\n"[..],
                "E_INVALID cannot PUB in current state (TLS required)",
            ),
            (
                b"NOP\n",
                "E_INVALID cannot NOP in current state (TLS required)",
            ),
            (
                b"BOGUS x\n",
                "E_INVALID cannot BOGUS in current state (TLS required)",
            ),
        ] {
            let e = parse(&mut BytesMut::from(input), &c).unwrap_err();
            assert_eq!((e.to_string().as_str(), e.fatal), (want, true));
        }
        let ok = parse(&mut BytesMut::from(&b"IDENTIFY\n\0\0\0\x02{}"[..]), &c).unwrap();
        assert!(matches!(ok, Some(Command::Identify(_))));
    }

    #[test]
    fn an_mpub_line_waiting_for_its_body_names_its_topic() {
        assert_eq!(pending_mpub_topic(b"MPUB t\n\0\0").as_deref(), Some("t"));
        assert_eq!(pending_mpub_topic(b"MPUB t\r\n").as_deref(), Some("t"));
        assert_eq!(pending_mpub_topic(b"MPUB t"), None, "line incomplete");
        assert_eq!(pending_mpub_topic(b"MPUB b@d\n"), None);
        assert_eq!(pending_mpub_topic(b"PUB t\n"), None);
    }

    #[test]
    fn mpub_before_auth_fails_before_its_body() {
        let c = ParseContext {
            auth_first: true,
            ..ctx(STATE_INIT)
        };
        let e = parse(&mut BytesMut::from(&b"MPUB t\n"[..]), &c).unwrap_err();
        assert_eq!(e.to_string(), "E_AUTH_FIRST AUTH required before MPUB");
        let e = parse(&mut BytesMut::from(&b"MPUB b@d\n"[..]), &c).unwrap_err();
        assert_eq!(e.code, "E_BAD_TOPIC", "the topic is checked first");
        // PUB reads its body first, then auth decides (in the connection).
        assert!(parse(&mut BytesMut::from(&b"PUB t\n"[..]), &c)
            .unwrap()
            .is_none());
    }

    fn parse_all(input: &[u8], state: i32) -> Result<Option<Command>, ClientError> {
        parse(&mut BytesMut::from(input), &ctx(state))
    }

    fn err(input: &[u8], state: i32) -> String {
        parse_all(input, state).unwrap_err().to_string()
    }

    #[test]
    fn parses_pub_and_leaves_the_rest() {
        let mut buf = BytesMut::from(&b"PUB t\n\0\0\0\x02hiNOP\n"[..]);
        let cmd = parse(&mut buf, &ctx(STATE_INIT)).unwrap().unwrap();
        assert_eq!(
            cmd,
            Command::Pub {
                topic: "t".into(),
                body: Bytes::from_static(b"hi")
            }
        );
        assert_eq!(&buf[..], b"NOP\n");
    }

    #[test]
    fn incomplete_input_waits() {
        for partial in [
            &b"PUB t"[..],
            b"PUB t\n",
            b"PUB t\n\0\0",
            b"PUB t\n\0\0\0\x05ab",
        ] {
            let mut buf = BytesMut::from(partial);
            assert_eq!(parse(&mut buf, &ctx(STATE_INIT)), Ok(None));
            assert_eq!(&buf[..], partial, "nothing consumed");
        }
    }

    #[test]
    fn mpub_splits_messages() {
        let input = b"MPUB t\n\0\0\0\x0f\0\0\0\x02\0\0\0\x02ab\0\0\0\x01c";
        match parse_all(input, STATE_INIT).unwrap().unwrap() {
            Command::Mpub { topic, bodies } => {
                assert_eq!(topic, "t");
                assert_eq!(
                    bodies,
                    vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_commands_get_nsqds_errors() {
        let cases: &[(&[u8], i32, &str)] = &[
            (b"BOGUS\n", STATE_INIT, "E_INVALID invalid command BOGUS"),
            (
                b"PUB\n",
                STATE_INIT,
                "E_INVALID PUB insufficient number of parameters",
            ),
            (
                b"PUB b@d\n",
                STATE_INIT,
                "E_BAD_TOPIC PUB topic name \"b@d\" is not valid",
            ),
            (
                b"PUB t\n\0\0\0\0",
                STATE_INIT,
                "E_BAD_MESSAGE PUB invalid message body size 0",
            ),
            (
                b"PUB t\n\xff\xff\xff\xff",
                STATE_INIT,
                "E_BAD_MESSAGE PUB invalid message body size -1",
            ),
            (
                b"PUB t\n\0\0\0\x65",
                STATE_INIT,
                "E_BAD_MESSAGE PUB message too big 101 > 100",
            ),
            (
                b"MPUB t\n\0\0\x03\xe9",
                STATE_INIT,
                "E_BAD_BODY MPUB body too big 1001 > 1000",
            ),
            (
                b"MPUB t\n\0\0\0\x04\0\0\0\0",
                STATE_INIT,
                "E_BAD_BODY MPUB invalid message count 0",
            ),
            (
                b"MPUB t\n\0\0\0\x08\0\0\0\x01\0\0\0\x09",
                STATE_INIT,
                "E_BAD_MESSAGE MPUB failed to read message body",
            ),
            (
                b"MPUB t\n\0\0\0\x08\0\0\0\x01\0\0\0\x00",
                STATE_INIT,
                "E_BAD_MESSAGE MPUB invalid message(0) body size 0",
            ),
            (
                b"MPUB t\n\0\0\0\x06\0\0\0\x01\0\0",
                STATE_INIT,
                "E_BAD_MESSAGE MPUB failed to read message(0) body size",
            ),
            (
                b"DPUB t x\n",
                STATE_INIT,
                "E_INVALID DPUB could not parse timeout x",
            ),
            (
                b"DPUB t 3600001\n",
                STATE_INIT,
                "E_INVALID DPUB timeout 3600001 out of range 0-3600000",
            ),
            (
                b"SUB t\n",
                STATE_INIT,
                "E_INVALID SUB insufficient number of parameters",
            ),
            (
                b"SUB t c\n",
                STATE_SUBSCRIBED,
                "E_INVALID cannot SUB in current state",
            ),
            (
                b"SUB t c!\n",
                STATE_INIT,
                "E_BAD_CHANNEL SUB channel name \"c!\" is not valid",
            ),
            (
                b"RDY 1\n",
                STATE_INIT,
                "E_INVALID cannot RDY in current state",
            ),
            (
                b"RDY x\n",
                STATE_SUBSCRIBED,
                "E_INVALID RDY could not parse count x",
            ),
            (
                b"RDY 2501\n",
                STATE_SUBSCRIBED,
                "E_INVALID RDY count 2501 out of range 0-2500",
            ),
            (
                b"FIN 0123456789abcdef\n",
                STATE_INIT,
                "E_INVALID cannot FIN in current state",
            ),
            (
                b"FIN\n",
                STATE_SUBSCRIBED,
                "E_INVALID FIN insufficient number of params",
            ),
            (
                b"FIN abc\n",
                STATE_SUBSCRIBED,
                "E_INVALID invalid message ID",
            ),
            (
                b"REQ 0123456789abcdef\n",
                STATE_SUBSCRIBED,
                "E_INVALID REQ insufficient number of params",
            ),
            (
                b"REQ 0123456789abcdef -1\n",
                STATE_SUBSCRIBED,
                "E_INVALID REQ could not parse timeout -1",
            ),
            (
                b"TOUCH\n",
                STATE_SUBSCRIBED,
                "E_INVALID TOUCH insufficient number of params",
            ),
            (
                b"CLS\n",
                STATE_INIT,
                "E_INVALID cannot CLS in current state",
            ),
            (
                b"IDENTIFY\n",
                STATE_SUBSCRIBED,
                "E_INVALID cannot IDENTIFY in current state",
            ),
            (
                b"IDENTIFY\n\0\0\0\0",
                STATE_INIT,
                "E_BAD_BODY IDENTIFY invalid body size 0",
            ),
            (
                b"AUTH x\n",
                STATE_INIT,
                "E_INVALID AUTH invalid number of parameters",
            ),
        ];
        for (input, state, want) in cases {
            assert_eq!(err(input, *state), *want, "input {:?}", lossy(input));
        }
    }

    #[test]
    fn rdy_req_and_line_endings() {
        assert_eq!(
            parse_all(b"RDY\r\n", STATE_SUBSCRIBED),
            Ok(Some(Command::Rdy(Some(1))))
        );
        assert_eq!(
            parse_all(b"RDY 5\n", STATE_CLOSING),
            Ok(Some(Command::Rdy(None)))
        );
        assert_eq!(
            parse_all(b"REQ 0123456789abcdef 99999999999\n", STATE_SUBSCRIBED),
            Ok(Some(Command::Req {
                id: *b"0123456789abcdef",
                delay_ms: 3_600_000
            }))
        );
        let long = vec![b'A'; MAX_LINE_LENGTH + 1];
        assert!(parse_all(&long, STATE_INIT).unwrap_err().is_silent());
    }

    fn eof(input: &[u8], state: i32) -> Option<(String, Option<&'static str>)> {
        at_eof(input, &ctx(state)).map(|c| (c.error.to_string(), c.cause))
    }

    #[test]
    fn a_command_cut_off_by_eof_gets_the_error_of_the_read_that_came_up_short() {
        const EOF: Option<&str> = Some("EOF");
        const PART: Option<&str> = Some("unexpected EOF");
        let cases: &[(&[u8], &str, Option<&str>)] = &[
            (
                b"PUB t\n",
                "E_BAD_MESSAGE PUB failed to read message body size",
                EOF,
            ),
            (
                b"PUB t\r\n\0\0",
                "E_BAD_MESSAGE PUB failed to read message body size",
                PART,
            ),
            (
                b"PUB t\n\0\0\0\x05",
                "E_BAD_MESSAGE PUB failed to read message body",
                EOF,
            ),
            (
                b"PUB t\n\0\0\0\x05ab",
                "E_BAD_MESSAGE PUB failed to read message body",
                PART,
            ),
            (
                b"DPUB t 10\n\0",
                "E_BAD_MESSAGE DPUB failed to read message body size",
                PART,
            ),
            (
                b"DPUB t 10\n\0\0\0\x02a",
                "E_BAD_MESSAGE DPUB failed to read message body",
                PART,
            ),
            (
                b"IDENTIFY\n",
                "E_BAD_BODY IDENTIFY failed to read body size",
                EOF,
            ),
            (
                b"IDENTIFY\r\n\0\0\0\x02{",
                "E_BAD_BODY IDENTIFY failed to read body",
                PART,
            ),
            (
                b"AUTH\n\0\0\0",
                "E_BAD_BODY AUTH failed to read body size",
                PART,
            ),
            (
                b"AUTH\n\0\0\0\x03",
                "E_BAD_BODY AUTH failed to read body",
                EOF,
            ),
            (b"MPUB t\n", "E_BAD_BODY MPUB failed to read body size", EOF),
            (
                b"MPUB t\n\0\0\0\x0f",
                "E_BAD_BODY MPUB failed to read message count",
                EOF,
            ),
            (
                b"MPUB t\n\0\0\0\x0f\0\0",
                "E_BAD_BODY MPUB failed to read message count",
                PART,
            ),
            (
                b"MPUB t\n\0\0\0\x0f\0\0\0\x02",
                "E_BAD_MESSAGE MPUB failed to read message(0) body size",
                EOF,
            ),
            (
                b"MPUB t\n\0\0\0\x0f\0\0\0\x02\0\0\0\x02ab\0",
                "E_BAD_MESSAGE MPUB failed to read message(1) body size",
                PART,
            ),
            (
                b"MPUB t\n\0\0\0\x0f\0\0\0\x02\0\0\0\x02",
                "E_BAD_MESSAGE MPUB failed to read message body",
                EOF,
            ),
            (
                b"MPUB t\n\0\0\0\x0f\0\0\0\x02\0\0\0\x02ab\0\0\0\x01",
                "E_BAD_MESSAGE MPUB failed to read message body",
                EOF,
            ),
            // nsqd checks each value as it reads it, before the body is whole.
            (
                b"MPUB t\n\0\0\0\x0f\0\0\0\0",
                "E_BAD_BODY MPUB invalid message count 0",
                None,
            ),
            // (--max-body-size 1000 - 4) / 5 = 199 messages at most.
            (
                b"MPUB t\n\0\0\0\x0f\0\0\0\xc8",
                "E_BAD_BODY MPUB invalid message count 200",
                None,
            ),
            (
                b"MPUB t\n\0\0\0\x0f\0\0\0\x01\xff\xff\xff\xff",
                "E_BAD_MESSAGE MPUB invalid message(0) body size -1",
                None,
            ),
            (
                b"MPUB t\n\0\0\0\x6f\0\0\0\x01\0\0\0\x65",
                "E_BAD_MESSAGE MPUB message too big 101 > 100",
                None,
            ),
        ];
        for (input, want, cause) in cases {
            assert_eq!(
                eof(input, STATE_INIT),
                Some((want.to_string(), *cause)),
                "input {:?}",
                lossy(input)
            );
        }
    }

    #[test]
    fn eof_without_a_cut_off_read_closes_without_a_frame() {
        for input in [
            &b""[..],
            b"PUB t",              // no newline: nsqd's ReadSlice just sees EOF
            b"NOP",                // likewise
            b"PUB t\n\0\0\0\x01x", // whole: parse takes it
            b"BOGUS\n",            // an error parse already reports
            b"MPUB t\n\0\0\0\x0f\0\0\0\x01\0\0\0\x01x", // all messages, short of the size
        ] {
            assert_eq!(eof(input, STATE_INIT), None, "input {:?}", lossy(input));
        }
        // IDENTIFY after SUB fails on its line, before any body is read.
        assert_eq!(eof(b"IDENTIFY\n", STATE_SUBSCRIBED), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_consume_on_error() {
        // A small deterministic fuzz: command-shaped prefixes followed by junk.
        let prefixes: &[&[u8]] = &[
            b"",
            b"PUB t\n",
            b"MPUB t\n",
            b"DPUB t 10\n",
            b"IDENTIFY\n",
            b"AUTH\n",
            b"SUB t c\n",
            b"RDY ",
            b"FIN ",
            b"REQ ",
            b"TOUCH ",
            b"CLS\n",
            b"NOP\n",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20_000 {
            let mut input = prefixes[round % prefixes.len()].to_vec();
            let len = (next() % 64) as usize;
            for _ in 0..len {
                let r = next();
                // Bias towards bytes that matter to the parser.
                input.push(match r % 8 {
                    0 => b'\n',
                    1 => b' ',
                    2 => 0,
                    3 => 0xff,
                    _ => (r >> 8) as u8,
                });
            }
            for state in [STATE_INIT, STATE_SUBSCRIBED, STATE_CLOSING] {
                let mut buf = BytesMut::from(&input[..]);
                let before = buf.len();
                let parsed = parse(&mut buf, &ctx(state));
                match parsed {
                    Ok(Some(_)) => assert!(buf.len() < before),
                    Ok(None) | Err(_) => assert_eq!(buf.len(), before),
                }
                // Only input still waiting for bytes can be cut off, fatally.
                if let Some(cut) = at_eof(&input, &ctx(state)) {
                    assert_eq!(parsed, Ok(None));
                    assert!(cut.error.fatal && !cut.error.is_silent());
                }
            }
        }
    }
}
