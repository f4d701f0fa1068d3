//! `POST /pub` and `POST /mpub`, checked in nsqd's order so the first problem a
//! request has is the error nsqd would report. Message bodies are slices of the
//! request body, and an MPUB is validated completely before anything is put.

use crate::nsqd::Nsqd;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use nsq_common::http::params::parse_bool;
use nsq_common::http::{ApiError, ApiResult, Params, Reply};
use std::pin::Pin;
use std::sync::Arc;

pub(super) async fn publish(nsqd: Arc<Nsqd>, req: Request) -> ApiResult {
    let opts = nsqd.opts();
    let max = opts.max_msg_size;
    if content_length(req.headers()).is_some_and(|n| n > max) {
        return Err(ApiError::new(413, "MSG_TOO_BIG"));
    }
    let (parts, body) = req.into_parts();
    let read_max = max.saturating_add(1);
    let body = read_body(body, read_max).await?;
    if body.len() as i64 == read_max {
        return Err(ApiError::new(413, "MSG_TOO_BIG"));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request("MSG_EMPTY"));
    }
    let params = Params::from_query(parts.uri.query())?;
    let topic = super::topic_from_query(&nsqd, &params).await?;
    let defer_ms = match params.get("defer") {
        None => 0,
        Some(s) => parse_defer(s, opts.max_req_timeout.as_nanos())?,
    };
    let mut owed = topic
        .put_messages(std::iter::once(body), defer_ms)
        .map_err(|_| ApiError::new(503, "EXITING"))?;
    synced(&mut owed).await?;
    Ok(Reply::text("OK"))
}

/// `defer` in milliseconds; like nsqd, the product in nanoseconds wraps as Go's
/// `time.Duration` does before the range check.
fn parse_defer(s: &str, max_nanos: u128) -> Result<u32, ApiError> {
    let invalid = || ApiError::bad_request("INVALID_DEFER");
    let ms: i64 = s.parse().map_err(|_| invalid())?;
    let nanos = ms.wrapping_mul(1_000_000);
    if nanos < 0 || nanos as u128 > max_nanos {
        return Err(invalid());
    }
    u32::try_from(nanos / 1_000_000).map_err(|_| invalid())
}

pub(super) async fn multi_publish(nsqd: Arc<Nsqd>, req: Request) -> ApiResult {
    let opts = nsqd.opts();
    let max_body = opts.max_body_size;
    if content_length(req.headers()).is_some_and(|n| n > max_body) {
        return Err(ApiError::new(413, "BODY_TOO_BIG"));
    }
    let (parts, body) = req.into_parts();
    let params = Params::from_query(parts.uri.query())?;
    let topic = super::topic_from_query(&nsqd, &params).await?;
    let binary = match params.get("binary") {
        None => false,
        Some(v) => parse_bool(Some(v)).unwrap_or_else(|| {
            tracing::warn!("deprecated value '{v}' used for /mpub binary param");
            true
        }),
    };
    let read_max = max_body.saturating_add(1);
    let body = read_body(body, read_max).await?;
    let bodies = if binary {
        if body.len() as i64 == read_max {
            return Err(ApiError::new(413, "BODY_TOO_BIG"));
        }
        split_binary_mpub(&body, opts.max_msg_size, max_body)?
    } else {
        split_text_mpub(&body, read_max, opts.max_msg_size)?
    };
    let mut owed = topic
        .put_messages(bodies, 0)
        .map_err(|_| ApiError::new(503, "EXITING"))?;
    synced(&mut owed).await?;
    Ok(Reply::text("OK"))
}

/// Waits for the sync `--sync-every` requires; a failed one is a failed
/// put to nsqd's HTTP API.
async fn synced(owed: &mut crate::durable::Durable) -> Result<(), ApiError> {
    owed.wait().await.map_err(|_| ApiError::new(503, "EXITING"))
}

/// Newline-separated messages; empty lines are skipped, as in nsqd. `read_max` is
/// the body limit plus one: reaching it means the body was too big.
pub fn split_text_mpub(
    body: &Bytes,
    read_max: i64,
    max_msg_size: i64,
) -> Result<Vec<Bytes>, ApiError> {
    let mut out = Vec::new();
    let mut total: i64 = 0;
    let mut start = 0;
    while start < body.len() {
        let end = match memchr(b'\n', &body[start..]) {
            Some(i) => start + i + 1,
            None => body.len(),
        };
        total += (end - start) as i64;
        if total == read_max {
            return Err(ApiError::new(413, "BODY_TOO_BIG"));
        }
        let line_end = if body[end - 1] == b'\n' { end - 1 } else { end };
        let line = body.slice(start..line_end);
        start = end;
        if line.is_empty() {
            continue;
        }
        if line.len() as i64 > max_msg_size {
            return Err(ApiError::new(413, "MSG_TOO_BIG"));
        }
        out.push(line);
    }
    Ok(out)
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// nsqd's binary MPUB body: `[count]` then `[size][bytes]` per message, big-endian
/// 32-bit lengths. Errors are nsqd's codes without `E_`, all with status 413.
pub fn split_binary_mpub(
    body: &Bytes,
    max_msg_size: i64,
    max_body_size: i64,
) -> Result<Vec<Bytes>, ApiError> {
    let bad_body = || ApiError::new(413, "BAD_BODY");
    let bad_message = || ApiError::new(413, "BAD_MESSAGE");
    let count = read_i32(body, 0).ok_or_else(bad_body)?;
    // 4 bytes of count, then at least 5 bytes (length + 1) per message.
    let max_messages = max_body_size.saturating_sub(4) / 5;
    if count <= 0 || i64::from(count) > max_messages {
        return Err(bad_body());
    }
    let mut out = Vec::with_capacity((count as usize).min(body.len() / 5));
    let mut at = 4;
    for _ in 0..count {
        let size = read_i32(body, at).ok_or_else(bad_message)?;
        if size <= 0 || i64::from(size) > max_msg_size {
            return Err(bad_message());
        }
        let start = at + 4;
        let end = start + size as usize;
        if end > body.len() {
            return Err(bad_message());
        }
        out.push(body.slice(start..end));
        at = end;
    }
    Ok(out)
}

fn read_i32(b: &[u8], at: usize) -> Option<i32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

/// The declared `Content-Length` (Go's `req.ContentLength`, absent when chunked).
pub(super) fn content_length(headers: &HeaderMap) -> Option<i64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads at most `limit` bytes of the body (like Go's `io.LimitReader`). A body
/// that arrives in one piece is returned without copying.
pub(super) async fn read_body(mut body: Body, limit: i64) -> Result<Bytes, ApiError> {
    let limit = usize::try_from(limit.max(0)).unwrap_or(usize::MAX);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut len = 0usize;
    while len < limit {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let Some(frame) = frame else {
            break;
        };
        let frame = frame.map_err(|e| {
            tracing::debug!("HTTP: failed to read request body - {e}");
            ApiError::internal()
        })?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        data.truncate(limit - len);
        len += data.len();
        if let Some(buf) = joined.as_mut() {
            buf.extend_from_slice(&data);
        } else if let Some(prev) = first.take() {
            let hint = body.size_hint().lower() as usize;
            let mut buf = BytesMut::with_capacity((len + hint).min(limit));
            buf.extend_from_slice(&prev);
            buf.extend_from_slice(&data);
            joined = Some(buf);
        } else {
            first = Some(data);
        }
    }
    Ok(match joined {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(v: Result<Vec<Bytes>, ApiError>) -> Vec<String> {
        v.unwrap()
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    fn err(v: Result<Vec<Bytes>, ApiError>) -> (u16, String) {
        let e = v.unwrap_err();
        (e.status.as_u16(), e.message.into_owned())
    }

    #[test]
    fn text_mpub_skips_empty_lines_and_checks_sizes_in_order() {
        let b = Bytes::from_static(b"a\n\nbb\nccc\n");
        assert_eq!(msgs(split_text_mpub(&b, 100, 10)), ["a", "bb", "ccc"]);
        assert_eq!(
            msgs(split_text_mpub(&Bytes::from_static(b"x"), 100, 10)),
            ["x"]
        );
        assert!(split_text_mpub(&Bytes::new(), 100, 10).unwrap().is_empty());
        assert_eq!(
            err(split_text_mpub(&b, 100, 2)),
            (413, "MSG_TOO_BIG".into())
        );
        // The body reached the read limit: too big, unless an earlier line failed first.
        assert_eq!(
            err(split_text_mpub(&b, 10, 10)),
            (413, "BODY_TOO_BIG".into())
        );
        assert_eq!(err(split_text_mpub(&b, 10, 1)), (413, "MSG_TOO_BIG".into()));
    }

    #[test]
    fn binary_mpub_follows_nsqd_checks() {
        let ok = Bytes::from_static(b"\0\0\0\x02\0\0\0\x02ab\0\0\0\x01c trailing");
        assert_eq!(msgs(split_binary_mpub(&ok, 10, 100)), ["ab", "c"]);
        let cases: [(&[u8], &str); 7] = [
            (b"\0\0", "BAD_BODY"),
            (b"\0\0\0\0", "BAD_BODY"),
            (b"\xff\xff\xff\xff", "BAD_BODY"),
            (b"\0\0\0\x20", "BAD_BODY"),
            (b"\0\0\0\x01\0\0", "BAD_MESSAGE"),
            (b"\0\0\0\x01\0\0\0\0", "BAD_MESSAGE"),
            (b"\0\0\0\x01\0\0\0\x05ab", "BAD_MESSAGE"),
        ];
        for (body, code) in cases {
            assert_eq!(
                err(split_binary_mpub(&Bytes::copy_from_slice(body), 10, 100)),
                (413, code.into()),
                "{body:?}"
            );
        }
        let big = Bytes::from_static(b"\0\0\0\x01\0\0\0\x0bhello world");
        assert_eq!(
            err(split_binary_mpub(&big, 10, 100)),
            (413, "BAD_MESSAGE".into())
        );
    }

    #[test]
    fn defer_is_milliseconds_within_max_req_timeout() {
        let max = 3_600_000_000_000u128;
        assert_eq!(parse_defer("1000", max), Ok(1000));
        assert_eq!(parse_defer("+5", max), Ok(5));
        assert_eq!(parse_defer("0", max), Ok(0));
        assert_eq!(parse_defer("3600000", max), Ok(3_600_000));
        for bad in [
            "3600001",
            "-1",
            "",
            "1.5",
            "abc",
            " 1",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_defer(bad, max),
                Err(ApiError::bad_request("INVALID_DEFER")),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn body_reads_stop_at_the_limit() {
        let b = read_body(Body::from("hello"), 3).await.unwrap();
        assert_eq!(&b[..], b"hel");
        let b = read_body(Body::from("hello"), 100).await.unwrap();
        assert_eq!(&b[..], b"hello");
        assert!(read_body(Body::empty(), 10).await.unwrap().is_empty());
    }
}
