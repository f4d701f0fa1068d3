//! Asking nsqlookupd which brokers have a topic (`GET /lookup?topic=`), as NSQ's
//! consumers do, and reaching those brokers at the addresses they broadcast.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use nsq_common::http::client::{fetch, query_escape, Timeouts};
use tokio::task::JoinSet;

use crate::report::Failures;

/// A broker listed for a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Producer {
    /// `broadcast_address:tcp_port`.
    pub tcp: String,
    /// `broadcast_address:http_port`.
    pub http: String,
}

/// The producers `lookupd` (`host:port` or an `http://` URL) lists for `topic`; none
/// when it does not know the topic yet.
pub async fn producers(lookupd: &str, topic: &str, timeouts: Timeouts) -> Result<Vec<Producer>> {
    let base = if lookupd.contains("://") {
        lookupd.trim_end_matches('/').to_string()
    } else {
        format!("http://{lookupd}")
    };
    let url = format!("{base}/lookup?topic={}", query_escape(topic));
    let resp = fetch("GET", &url, None, None, timeouts)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match resp.status {
        200 => parse_producers(&resp.body).with_context(|| format!("GET {url}")),
        404 => Ok(Vec::new()),
        s => bail!("GET {url}: status {s}: {}", resp.message()),
    }
}

/// What a set of nsqlookupds list for one topic: each lookupd's latest answer (one
/// that fails keeps its previous list), their failures logged once per change.
pub struct Discovery {
    lookupds: Vec<String>,
    lists: BTreeMap<String, Vec<Producer>>,
    pub failures: Failures,
}

impl Discovery {
    pub fn new(lookupds: &[String], kind: &'static str) -> Discovery {
        Discovery {
            lookupds: lookupds.to_vec(),
            lists: BTreeMap::new(),
            failures: Failures::new(kind),
        }
    }

    /// Asks every lookupd (all at once) for `topic`'s producers.
    pub async fn poll(&mut self, topic: &str) {
        let mut asks = JoinSet::new();
        for (i, lookupd) in self.lookupds.iter().enumerate() {
            let (lookupd, topic) = (lookupd.clone(), topic.to_string());
            asks.spawn(async move { (i, producers(&lookupd, &topic, Timeouts::default()).await) });
        }
        while let Some(done) = asks.join_next().await {
            let Ok((i, answer)) = done else { continue };
            let lookupd = &self.lookupds[i];
            match answer {
                Ok(list) => {
                    self.failures.clear(lookupd);
                    self.lists.insert(lookupd.clone(), list);
                }
                Err(e) => self.failures.fail(lookupd, &e),
            }
        }
    }

    /// Every broker some lookupd lists, by `broadcast_address:tcp_port`.
    pub fn listed(&self) -> BTreeMap<String, Producer> {
        self.lists
            .values()
            .flatten()
            .map(|p| (p.tcp.clone(), p.clone()))
            .collect()
    }
}

/// The producers of a `/lookup` answer: nsqlookupd 1.x's document, or the
/// `{"status_code":200,"data":{...}}` envelope older ones send.
pub fn parse_producers(body: &[u8]) -> Result<Vec<Producer>> {
    let v: serde_json::Value = serde_json::from_slice(body).context("not JSON")?;
    let doc = v.get("data").unwrap_or(&v);
    let Some(list) = doc.get("producers").and_then(|p| p.as_array()) else {
        bail!("no producers list in {v}");
    };
    list.iter()
        .map(|p| {
            let host = p["broadcast_address"]
                .as_str()
                .filter(|h| !h.is_empty())
                .with_context(|| format!("producer without broadcast_address: {p}"))?;
            let port = |field: &str| {
                p[field]
                    .as_u64()
                    .with_context(|| format!("producer without {field}: {p}"))
            };
            Ok(Producer {
                tcp: join_host_port(host, port("tcp_port")?),
                http: join_host_port(host, port("http_port")?),
            })
        })
        .collect()
}

/// `host:port`, bracketing IPv6 literals (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: u64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_are_read_from_both_document_shapes() {
        let v1 = br#"{"channels":[],"producers":[
            {"broadcast_address":"nsq-nsqd-0.nsq-nsqd-headless.nsq.svc","tcp_port":4150,"http_port":4151},
            {"broadcast_address":"fd00::1","tcp_port":4150,"http_port":4151}]}"#;
        assert_eq!(
            parse_producers(v1).unwrap(),
            [
                Producer {
                    tcp: "nsq-nsqd-0.nsq-nsqd-headless.nsq.svc:4150".into(),
                    http: "nsq-nsqd-0.nsq-nsqd-headless.nsq.svc:4151".into(),
                },
                Producer {
                    tcp: "[fd00::1]:4150".into(),
                    http: "[fd00::1]:4151".into(),
                },
            ]
        );
        let old = br#"{"status_code":200,"status_txt":"OK","data":{"producers":[
            {"broadcast_address":"h","tcp_port":1,"http_port":2}]}}"#;
        assert_eq!(parse_producers(old).unwrap()[0].tcp, "h:1");
        assert!(parse_producers(br#"{"producers":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn malformed_answers_are_errors() {
        assert!(parse_producers(b"nope").is_err());
        assert!(parse_producers(br#"{"channels":[]}"#).is_err());
        assert!(parse_producers(br#"{"producers":[{"tcp_port":1,"http_port":2}]}"#).is_err());
    }
}
