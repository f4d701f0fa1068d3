//! AUTH against the auth servers of `--auth-http-address` (nsqd's auth HTTP
//! protocol): the request (`remote_ip`, `tls`, `secret`, `common_name`, by GET
//! query or POST JSON per `--auth-http-request-method`), the reply's identity,
//! TTL and authorizations, and the topic/channel check made before SUB, PUB,
//! MPUB and DPUB.

use nsq_common::http::client::{self, form_escape, Body, Timeouts};
use regex::Regex;
use serde_json::Value;
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
    /// AUTH's body, byte for byte.
    pub secret: &'a [u8],
}

/// How to reach the auth servers.
#[derive(Clone)]
pub struct Servers {
    pub addresses: Vec<String>,
    pub post: bool,
    pub timeouts: Timeouts,
    /// For `https://` servers, and for an http server that answers 403 with
    /// an `https_port`.
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
    let mut endpoint = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}/auth")
    };
    let tls_flag = if asker.tls { "true" } else { "false" };
    let secret = String::from_utf8_lossy(asker.secret);
    // Go's url.Values: keys sorted.
    let fields = [
        ("common_name", asker.common_name),
        ("remote_ip", asker.remote_ip),
        ("secret", secret.as_ref()),
        ("tls", tls_flag),
    ];
    let tls = servers.tls.as_ref();
    loop {
        let resp = if servers.post {
            // Go marshals the values as JSON arrays; invalid UTF-8 becomes U+FFFD.
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
            // The secret's bytes are escaped as they are, like Go's url.QueryEscape.
            let query = format!(
                "common_name={}&remote_ip={}&secret={}&tls={tls_flag}",
                form_escape(asker.common_name.as_bytes()),
                form_escape(asker.remote_ip.as_bytes()),
                form_escape(asker.secret),
            );
            let url = format!("{endpoint}?{query}");
            client::fetch("GET", &url, None, tls, servers.timeouts).await?
        };
        if resp.status == 403 && !endpoint.starts_with("https") {
            // As Go's http_api client: a server demanding TLS names its port.
            if let Some(https) = https_endpoint(&endpoint, &resp.body) {
                endpoint = https;
                continue;
            }
        }
        if resp.status != 200 {
            return Err(format!(
                "got response {} {:?}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
        }
        return parse_reply(&resp.body, Instant::now());
    }
}

/// `endpoint` over https on the `https_port` a 403 answer names.
fn https_endpoint(endpoint: &str, body: &[u8]) -> Option<String> {
    let port = client::https_port(body)?;
    let rest = endpoint.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    Some(format!("https://{host}:{port}{path}"))
}

/// The auth server's JSON, read as Go's `encoding/json` reads nsqd's struct
/// (an object; keys matched ignoring case; `null` is absent) and checked as
/// nsqd checks it: known permissions, patterns that compile, a positive TTL.
pub fn parse_reply(body: &[u8], now: Instant) -> Result<AuthState, String> {
    let reply: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let reply = Fields::of(&reply, "the reply")?;
    let ttl = match reply.get("ttl") {
        None => 0,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("ttl {v} is not an integer"))?,
    };
    let mut authorizations = Vec::new();
    for raw in reply.list("authorizations")? {
        let raw = Fields::of(raw, "an authorization")?;
        let (mut publish, mut subscribe) = (false, false);
        for p in raw.list("permissions")? {
            match p.as_str() {
                Some("publish") => publish = true,
                Some("subscribe") => subscribe = true,
                Some(other) => return Err(format!("unknown permission {other}")),
                None => return Err(format!("unknown permission {p}")),
            }
        }
        let topic_src = raw.string("topic")?;
        let topic = Regex::new(&topic_src)
            .map_err(|e| format!("unable to compile topic {topic_src:?} {e}"))?;
        let channels = raw
            .list("channels")?
            .iter()
            .map(|c| {
                let c = c
                    .as_str()
                    .ok_or_else(|| format!("channel {c} is not a string"))?;
                Regex::new(c).map_err(|e| format!("unable to compile channel {c:?} {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        authorizations.push(Authorization {
            topic,
            channels,
            publish,
            subscribe,
        });
    }
    if ttl <= 0 {
        return Err(format!("invalid TTL {ttl} (must be >0)"));
    }
    Ok(AuthState {
        identity: reply.string("identity")?,
        identity_url: reply.string("identity_url")?,
        authorizations,
        expires: now + Duration::from_secs(ttl as u64),
    })
}

/// A JSON object's members by case-insensitive name, nulls left out.
struct Fields<'a>(&'a serde_json::Map<String, Value>);

impl<'a> Fields<'a> {
    fn of(v: &'a Value, what: &str) -> Result<Self, String> {
        v.as_object()
            .map(Fields)
            .ok_or_else(|| format!("{what} is not a JSON object: {v}"))
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        // Go prefers an exact match, then any other spelling.
        self.0
            .get(name)
            .or_else(|| {
                self.0
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
            .filter(|v| !v.is_null())
    }

    fn string(&self, name: &str) -> Result<String, String> {
        match self.get(name) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(format!("{name} {v} is not a string")),
        }
    }

    fn list(&self, name: &str) -> Result<&'a [Value], String> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(v) => Err(format!("{name} {v} is not a list")),
        }
    }
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
    fn only_an_object_is_a_reply_and_its_keys_ignore_case() {
        assert!(state(r#"[60,[],"id",""]"#)
            .unwrap_err()
            .contains("not a JSON object"));
        let s = state(r#"{"TTL":5,"Identity":"x","Authorizations":[{"Topic":"t","Channels":[".*"],"Permissions":["publish"]}]}"#)
            .unwrap();
        assert_eq!(s.identity, "x");
        assert!(s.is_allowed("t", ""));
        assert!(state(r#"{"ttl":5,"authorizations":[["t",[".*"],["publish"]]]}"#).is_err());
        assert!(state(r#"{"ttl":5.5}"#).is_err());
    }

    #[test]
    fn a_403_naming_an_https_port_moves_to_https() {
        assert_eq!(
            https_endpoint("http://auth:80/auth", br#"{"https_port":4443}"#).as_deref(),
            Some("https://auth:4443/auth")
        );
        assert_eq!(
            https_endpoint("http://auth", br#"{"https_port":4443}"#).as_deref(),
            Some("https://auth:4443")
        );
        assert_eq!(https_endpoint("http://auth:80/auth", b"no"), None);
    }

    #[test]
    fn nulls_read_as_absent() {
        let s = state(r#"{"ttl":5,"identity":null,"authorizations":null}"#).unwrap();
        assert!(s.identity.is_empty() && s.authorizations.is_empty());
    }
}
