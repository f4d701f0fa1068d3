//! AUTH against the auth servers of `--auth-http-address` (nsqd's auth HTTP
//! protocol): the request (`remote_ip`, `tls`, `secret`, `common_name`, by GET
//! query or POST JSON per `--auth-http-request-method`), the reply's identity,
//! TTL and authorizations, and the topic/channel check made before SUB, PUB,
//! MPUB and DPUB.

use nsq_common::http::client::{self, form_escape, Body, Timeouts};
use regex::Regex;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one auth server granted a client.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub identity: String,
    pub identity_url: String,
    pub authorizations: Vec<Authorization>,
    pub expires: Instant,
}

#[derive(Debug, Clone)]
pub struct Authorization {
    topic: Regex,
    channels: Vec<Regex>,
    publish: bool,
    subscribe: bool,
}

impl AuthState {
    pub fn is_expired(&self) -> bool {
        self.expires <= Instant::now()
    }

    /// Publishing is asked with an empty channel, as in nsqd.
    pub fn is_allowed(&self, topic: &str, channel: &str) -> bool {
        self.authorizations
            .iter()
            .any(|a| a.is_allowed(topic, channel))
    }
}

impl Authorization {
    fn is_allowed(&self, topic: &str, channel: &str) -> bool {
        let permitted = if channel.is_empty() {
            self.publish
        } else {
            self.subscribe
        };
        permitted && self.topic.is_match(topic) && self.channels.iter().any(|c| c.is_match(channel))
    }
}

/// Who is asking: the facts nsqd sends along with the secret.
#[derive(Debug, Clone, Default)]
pub struct Asker<'a> {
    pub remote_ip: &'a str,
    pub tls: bool,
    pub common_name: &'a str,
    pub secret: &'a str,
}

/// How to reach the auth servers.
#[derive(Clone)]
pub struct Servers {
    pub addresses: Vec<String>,
    pub post: bool,
    pub timeouts: Timeouts,
    /// For `https://` servers.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// nsqd's `QueryAnyAuthd`: each server in turn from a random start; the
/// error names every failure.
pub async fn query_any(servers: &Servers, asker: &Asker<'_>) -> Result<AuthState, String> {
    let n = servers.addresses.len();
    if n == 0 {
        return Err("no auth servers".into());
    }
    let start = crate::message::unix_nanos() as usize % n;
    let mut errors = Vec::new();
    for i in 0..n {
        let addr = &servers.addresses[(start + i) % n];
        match query(addr, servers, asker).await {
            Ok(state) => return Ok(state),
            Err(e) => errors.push(format!("failed to auth against {addr} - {e}")),
        }
    }
    Err(errors.join("; "))
}

async fn query(addr: &str, servers: &Servers, asker: &Asker<'_>) -> Result<AuthState, String> {
    let endpoint = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}/auth")
    };
    let tls_flag = if asker.tls { "true" } else { "false" };
    // Go's url.Values: keys sorted.
    let fields = [
        ("common_name", asker.common_name),
        ("remote_ip", asker.remote_ip),
        ("secret", asker.secret),
        ("tls", tls_flag),
    ];
    let tls = servers.tls.as_ref();
    let resp = if servers.post {
        let json: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::json!([v])))
            .collect();
        let body = Body {
            content_type: "application/json",
            bytes: serde_json::to_vec(&json).map_err(|e| e.to_string())?.into(),
        };
        client::fetch("POST", &endpoint, Some(body), tls, servers.timeouts).await?
    } else {
        let query: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", form_escape(v)))
            .collect();
        let url = format!("{endpoint}?{}", query.join("&"));
        client::fetch("GET", &url, None, tls, servers.timeouts).await?
    };
    if resp.status != 200 {
        return Err(format!(
            "got response {} {:?}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        ));
    }
    parse_reply(&resp.body, Instant::now())
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    ttl: i64,
    #[serde(default)]
    authorizations: Option<Vec<RawAuthorization>>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    identity_url: Option<String>,
}

#[derive(Deserialize)]
struct RawAuthorization {
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
}

/// The auth server's JSON, checked as nsqd checks it: known permissions,
/// patterns that compile, and a positive TTL.
pub fn parse_reply(body: &[u8], now: Instant) -> Result<AuthState, String> {
    let reply: Reply = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut authorizations = Vec::new();
    for raw in reply.authorizations.unwrap_or_default() {
        let (mut publish, mut subscribe) = (false, false);
        for p in raw.permissions.unwrap_or_default() {
            match p.as_str() {
                "publish" => publish = true,
                "subscribe" => subscribe = true,
                _ => return Err(format!("unknown permission {p}")),
            }
        }
        let topic_src = raw.topic.unwrap_or_default();
        let topic = Regex::new(&topic_src)
            .map_err(|e| format!("unable to compile topic {topic_src:?} {e}"))?;
        let channels = raw
            .channels
            .unwrap_or_default()
            .into_iter()
            .map(|c| Regex::new(&c).map_err(|e| format!("unable to compile channel {c:?} {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        authorizations.push(Authorization {
            topic,
            channels,
            publish,
            subscribe,
        });
    }
    if reply.ttl <= 0 {
        return Err(format!("invalid TTL {} (must be >0)", reply.ttl));
    }
    Ok(AuthState {
        identity: reply.identity.unwrap_or_default(),
        identity_url: reply.identity_url.unwrap_or_default(),
        authorizations,
        expires: now + Duration::from_secs(reply.ttl as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> Result<AuthState, String> {
        parse_reply(json.as_bytes(), Instant::now())
    }

    #[test]
    fn permissions_match_topic_and_channel_patterns() {
        let s = state(
            r#"{"ttl":60,"identity":"bob","identity_url":"http://x","authorizations":[
                {"topic":"^orders$","channels":[".*"],"permissions":["publish"]},
                {"topic":"logs","channels":["^ro$"],"permissions":["subscribe"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            (s.identity.as_str(), s.identity_url.as_str()),
            ("bob", "http://x")
        );
        assert!(s.is_allowed("orders", ""));
        assert!(!s.is_allowed("orders", "c"), "publish only");
        assert!(!s.is_allowed("orders2", ""), "anchored");
        assert!(
            s.is_allowed("app-logs", "ro"),
            "unanchored topic, anchored channel"
        );
        assert!(!s.is_allowed("app-logs", "rw"));
        assert!(!s.is_allowed("app-logs", ""), "subscribe only");
        assert!(!s.is_expired());
    }

    #[test]
    fn a_publish_grant_needs_a_channel_pattern_matching_empty() {
        let s = state(r#"{"ttl":1,"authorizations":[{"topic":".*","channels":["x"],"permissions":["publish"]}]}"#)
            .unwrap();
        assert!(!s.is_allowed("t", ""));
    }

    #[test]
    fn bad_replies_are_refused_like_nsqd() {
        let cases = [
            (r#"{"ttl":0}"#, "invalid TTL 0 (must be >0)"),
            (r#"{"ttl":-5}"#, "invalid TTL -5 (must be >0)"),
            (
                r#"{"ttl":5,"authorizations":[{"topic":"t","channels":[],"permissions":["admin"]}]}"#,
                "unknown permission admin",
            ),
            (
                r#"{"ttl":5,"authorizations":[{"topic":"(","channels":[],"permissions":[]}]}"#,
                "unable to compile topic \"(\"",
            ),
            (
                r#"{"ttl":5,"authorizations":[{"topic":"t","channels":["["],"permissions":[]}]}"#,
                "unable to compile channel \"[\"",
            ),
        ];
        for (json, want) in cases {
            let err = state(json).unwrap_err();
            assert!(err.starts_with(want), "{json}: {err}");
        }
        assert!(state("not json").is_err());
        assert!(state(r#"{"ttl":"60"}"#).is_err());
        assert!(state("[]").is_err());
    }

    #[test]
    fn nulls_read_as_absent() {
        let s = state(r#"{"ttl":5,"identity":null,"authorizations":null}"#).unwrap();
        assert!(s.identity.is_empty() && s.authorizations.is_empty());
    }
}
