//! NSQ's response shapes (its `http_api` package): V1 responses carry
//! `X-NSQ-Content-Type: nsq; version=1.0`; errors are `{"message":"..."}`; text
//! bodies are sent raw; JSON is encoded the way Go's `encoding/json` does.

use axum::body::Body;
use axum::http::header::{HeaderValue, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;
use std::borrow::Cow;

pub const X_NSQ_CONTENT_TYPE: &str = "x-nsq-content-type";
const NSQ_V1: &str = "nsq; version=1.0";
const JSON_UTF8: &str = "application/json; charset=utf-8";
/// What Go's content sniffing calls a plain-text body.
const TEXT_UTF8: &str = "text/plain; charset=utf-8";

/// A successful handler result.
#[derive(Debug)]
pub enum Reply {
    /// An empty 200 (a Go handler's `nil`).
    Empty,
    /// Raw text (a Go handler's `string` and `[]byte` results).
    Text(Bytes),
    /// An encoded JSON document.
    Json(Vec<u8>),
}

impl Reply {
    pub fn text(s: impl Into<Bytes>) -> Reply {
        Reply::Text(s.into())
    }

    pub fn json<T: Serialize + ?Sized>(v: &T) -> Reply {
        Reply::Json(go_json(v))
    }
}

/// NSQ's `http_api.Err`: a status and the message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }

    pub fn bad_request(message: &'static str) -> ApiError {
        ApiError::new(400, message)
    }

    pub fn not_found(message: &'static str) -> ApiError {
        ApiError::new(404, message)
    }

    pub fn internal() -> ApiError {
        ApiError::new(500, "INTERNAL_ERROR")
    }
}

pub type ApiResult = Result<Reply, ApiError>;

/// NSQ's `V1` decorator: the result as a V1 response.
pub fn v1(result: ApiResult) -> Response {
    let (status, reply) = match result {
        Ok(reply) => (StatusCode::OK, reply),
        Err(e) => {
            #[derive(Serialize)]
            struct Message<'a> {
                message: &'a str,
            }
            let body = go_json(&Message {
                message: &e.message,
            });
            (e.status, Reply::Json(body))
        }
    };
    let mut resp = body_response(status, reply);
    resp.headers_mut()
        .insert(X_NSQ_CONTENT_TYPE, HeaderValue::from_static(NSQ_V1));
    resp
}

/// NSQ's `PlainText` decorator (used by `/ping`): text either way, no V1 header.
pub fn plain_text(result: ApiResult) -> Response {
    match result {
        Ok(reply) => body_response(StatusCode::OK, reply),
        Err(e) => body_response(e.status, Reply::Text(Bytes::from(e.message.into_owned()))),
    }
}

fn body_response(status: StatusCode, reply: Reply) -> Response {
    let (content_type, body) = match reply {
        Reply::Empty => (None, Body::empty()),
        // Go sniffs a type only for a non-empty body.
        Reply::Text(b) if b.is_empty() => (None, Body::empty()),
        Reply::Text(b) => (Some(TEXT_UTF8), Body::from(b)),
        Reply::Json(v) => (Some(JSON_UTF8), Body::from(v)),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Some(ct) = content_type {
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    resp
}

/// JSON as Go's `json.Marshal` writes it: compact, with `<`, `>`, `&`, U+2028 and
/// U+2029 escaped.
pub fn go_json<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    // Our documents are plain structs, maps and strings: serialising cannot fail.
    let raw = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    go_html_escape(raw)
}

/// These bytes can only occur inside JSON strings, so a byte-level rewrite is safe.
fn go_html_escape(raw: Vec<u8>) -> Vec<u8> {
    if !raw.iter().any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2)) {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + 16);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            0xE2 if raw.get(i + 1) == Some(&0x80)
                && matches!(raw.get(i + 2), Some(0xA8 | 0xA9)) =>
            {
                out.extend_from_slice(if raw[i + 2] == 0xA8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
                continue;
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_html_and_line_separators_like_go() {
        let v = serde_json::json!({"a": "<b>&\u{2028}\u{2029}é"});
        assert_eq!(
            String::from_utf8(go_json(&v)).unwrap(),
            r#"{"a":"\u003cb\u003e\u0026\u2028\u2029é"}"#
        );
        assert_eq!(go_json(&["x"]), br#"["x"]"#);
    }
}
