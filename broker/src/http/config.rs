//! `GET /config/:opt` reads an option by its config-file name; `PUT` changes the
//! two options nsqd allows at runtime (`nsqlookupd_tcp_addresses`, `log_level`)
//! and answers with the new value.

use super::publish::read_body;
use crate::nsqd::Nsqd;
use axum::body::Body;
use bytes::Bytes;
use nsq_common::http::{ApiError, ApiResult, Reply};
use nsq_common::logging::{self, LogLevel};
use serde_json::Value;
use std::sync::Arc;

pub(super) fn get(nsqd: &Nsqd, opt: &str) -> ApiResult {
    match nsqd.opts().get_by_cfg_name(opt) {
        // nsqd writes a string option raw, without JSON quotes.
        Some(Value::String(s)) => Ok(Reply::Text(Bytes::from(s))),
        Some(v) => Ok(Reply::json(&v)),
        None => Err(ApiError::bad_request("INVALID_OPTION")),
    }
}

pub(super) async fn put(nsqd: Arc<Nsqd>, opt: &str, body: Body) -> ApiResult {
    let read_max = nsqd.opts().max_msg_size.saturating_add(1);
    let body = read_body(body, read_max).await?;
    if body.len() as i64 == read_max || body.is_empty() {
        return Err(ApiError::new(413, "INVALID_VALUE"));
    }
    let invalid = || ApiError::bad_request("INVALID_VALUE");
    let mut opts = (*nsqd.opts()).clone();
    let mut level = None;
    match opt {
        "nsqlookupd_tcp_addresses" => {
            opts.lookupd_tcp_addresses = serde_json::from_slice::<Option<Vec<String>>>(&body)
                .map_err(|_| invalid())?
                .unwrap_or_default();
        }
        "log_level" => {
            let text = std::str::from_utf8(&body).map_err(|_| invalid())?;
            let l: LogLevel = text.parse().map_err(|_| invalid())?;
            opts.log_level = l;
            level = Some(l);
        }
        _ => return Err(ApiError::bad_request("INVALID_OPTION")),
    }
    nsqd.swap_opts(opts);
    if let Some(l) = level {
        logging::set_level(l);
    }
    get(&nsqd, opt)
}
