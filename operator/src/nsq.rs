//! What the operator asks of NSQ, over the brokers' and lookupds' HTTP APIs.

use nsq_common::http::client::{self, query_escape, Timeouts};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NsqError {
    /// No lookupd answered `/nodes`.
    #[error("no lookupd reachable: {0}")]
    LookupdUnavailable(String),
    #[error("broker {addr}: {message}")]
    Broker { addr: String, message: String },
}

/// The operator's view of the NSQ cluster: its lookupds.
#[derive(Debug, Clone)]
pub struct Nsq {
    pub lookupds: Vec<String>,
    pub timeouts: Timeouts,
    /// For brokers whose plain HTTP answers `TLS_REQUIRED`: their HTTPS port.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A channel on one broker, from its `/stats`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ChannelStats {
    pub channel_name: String,
    pub depth: i64,
    pub in_flight_count: i64,
    pub deferred_count: i64,
    pub message_count: u64,
    pub requeue_count: u64,
    pub timeout_count: u64,
    pub client_count: i64,
    pub paused: bool,
}

/// A topic on one broker, from its `/stats`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TopicStats {
    pub topic_name: String,
    pub depth: i64,
    pub message_count: u64,
    pub paused: bool,
    #[serde(deserialize_with = "null_as_empty")]
    pub channels: Vec<ChannelStats>,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct Stats {
    #[serde(default, deserialize_with = "null_as_empty")]
    topics: Vec<TopicStats>,
}

#[derive(Deserialize)]
struct Nodes {
    #[serde(default, deserialize_with = "null_as_empty")]
    producers: Vec<Producer>,
}

#[derive(Deserialize)]
struct Producer {
    broadcast_address: String,
    http_port: u16,
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Nsq {
    /// Every broker any lookupd knows, as HTTP addresses, sorted. Fails only
    /// when no lookupd answers.
    pub async fn brokers(&self) -> Result<Vec<String>, NsqError> {
        let mut out = BTreeSet::new();
        let mut errors = Vec::new();
        let mut answered = false;
        let replies = futures::future::join_all(
            self.lookupds
                .iter()
                .map(|l| client::request("GET", l, "/nodes", self.timeouts)),
        )
        .await;
        for (lookupd, reply) in self.lookupds.iter().zip(replies) {
            match reply.and_then(|r| {
                if r.is_success() {
                    serde_json::from_slice::<Nodes>(&r.body).map_err(|e| e.to_string())
                } else {
                    Err(format!("status {} {}", r.status, r.message()))
                }
            }) {
                Ok(nodes) => {
                    answered = true;
                    out.extend(
                        nodes
                            .producers
                            .iter()
                            .map(|p| join_host_port(&p.broadcast_address, p.http_port)),
                    );
                }
                Err(e) => errors.push(format!("{lookupd}: {e}")),
            }
        }
        if !answered {
            if errors.is_empty() {
                errors.push("no --lookupd-http-address given".into());
            }
            return Err(NsqError::LookupdUnavailable(errors.join("; ")));
        }
        Ok(out.into_iter().collect())
    }

    /// The topic's stats on `broker`, or `None` when the broker lacks it.
    pub async fn topic_stats(
        &self,
        broker: &str,
        topic: &str,
    ) -> Result<Option<TopicStats>, NsqError> {
        let path = format!(
            "/stats?format=json&include_clients=false&include_mem=false&topic={}",
            query_escape(topic)
        );
        let r = self.call(broker, "GET", &path).await?;
        let stats: Stats = serde_json::from_slice(&r).map_err(|e| NsqError::Broker {
            addr: broker.to_owned(),
            message: format!("bad /stats response - {e}"),
        })?;
        Ok(stats.topics.into_iter().find(|t| t.topic_name == topic))
    }

    pub async fn create_topic(&self, broker: &str, topic: &str) -> Result<(), NsqError> {
        self.post(
            broker,
            &format!("/topic/create?topic={}", query_escape(topic)),
            false,
        )
        .await
    }

    pub async fn delete_topic(&self, broker: &str, topic: &str) -> Result<(), NsqError> {
        self.post(
            broker,
            &format!("/topic/delete?topic={}", query_escape(topic)),
            true,
        )
        .await
    }

    pub async fn pause_topic(
        &self,
        broker: &str,
        topic: &str,
        pause: bool,
    ) -> Result<(), NsqError> {
        let verb = if pause { "pause" } else { "unpause" };
        self.post(
            broker,
            &format!("/topic/{verb}?topic={}", query_escape(topic)),
            false,
        )
        .await
    }

    pub async fn create_channel(
        &self,
        broker: &str,
        topic: &str,
        channel: &str,
    ) -> Result<(), NsqError> {
        self.post(broker, &channel_path("create", topic, channel), false)
            .await
    }

    pub async fn delete_channel(
        &self,
        broker: &str,
        topic: &str,
        channel: &str,
    ) -> Result<(), NsqError> {
        self.post(broker, &channel_path("delete", topic, channel), true)
            .await
    }

    pub async fn pause_channel(
        &self,
        broker: &str,
        topic: &str,
        channel: &str,
        pause: bool,
    ) -> Result<(), NsqError> {
        let verb = if pause { "pause" } else { "unpause" };
        self.post(broker, &channel_path(verb, topic, channel), false)
            .await
    }

    /// Removes the topic's registration from every lookupd (a missing one is fine).
    pub async fn lookupd_delete_topic(&self, topic: &str) -> Result<(), NsqError> {
        self.on_lookupds(&format!("/topic/delete?topic={}", query_escape(topic)))
            .await
    }

    pub async fn lookupd_delete_channel(&self, topic: &str, channel: &str) -> Result<(), NsqError> {
        self.on_lookupds(&channel_path("delete", topic, channel))
            .await
    }

    async fn on_lookupds(&self, path: &str) -> Result<(), NsqError> {
        for l in &self.lookupds {
            let r = client::request("POST", l, path, self.timeouts)
                .await
                .map_err(NsqError::LookupdUnavailable)?;
            if !r.is_success() && r.status != 404 {
                return Err(NsqError::LookupdUnavailable(format!(
                    "{l}: status {} {}",
                    r.status,
                    r.message()
                )));
            }
        }
        Ok(())
    }

    async fn post(&self, broker: &str, path: &str, missing_ok: bool) -> Result<(), NsqError> {
        match self.call(broker, "POST", path).await {
            Ok(_) => Ok(()),
            Err(NsqError::Broker { message, .. })
                if missing_ok && message.ends_with("_NOT_FOUND") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn call(&self, broker: &str, method: &str, path: &str) -> Result<bytes::Bytes, NsqError> {
        let err = |message: String| NsqError::Broker {
            addr: broker.to_owned(),
            message,
        };
        let r = client::request_or_https(method, broker, path, self.timeouts, self.tls.as_ref())
            .await
            .map_err(err)?;
        if !r.is_success() {
            return Err(err(r.message()));
        }
        Ok(r.body)
    }
}

fn channel_path(verb: &str, topic: &str, channel: &str) -> String {
    format!(
        "/channel/{verb}?topic={}&channel={}",
        query_escape(topic),
        query_escape(channel)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nsqd_stats_with_nulls() {
        let body = br#"{"version":"1.3.0","health":"OK","start_time":1,"topics":[{"topic_name":"t","channels":[{"channel_name":"c","depth":2,"backend_depth":0,"in_flight_count":1,"deferred_count":0,"message_count":3,"requeue_count":0,"timeout_count":0,"client_count":1,"clients":null,"paused":true}],"depth":5,"backend_depth":0,"message_count":9,"message_bytes":10,"paused":false}],"producers":null}"#;
        let s: Stats = serde_json::from_slice(body).unwrap();
        assert_eq!(s.topics[0].depth, 5);
        assert_eq!(s.topics[0].channels[0].client_count, 1);
        assert!(s.topics[0].channels[0].paused);
        let none: Stats = serde_json::from_slice(br#"{"topics":null}"#).unwrap();
        assert!(none.topics.is_empty());
    }

    #[test]
    fn broker_addresses_from_nodes() {
        let n: Nodes = serde_json::from_slice(
            br#"{"producers":[{"broadcast_address":"a.b.svc","http_port":4151,"tcp_port":4150},{"broadcast_address":"::1","http_port":1}]}"#,
        )
        .unwrap();
        let addrs: Vec<_> = n
            .producers
            .iter()
            .map(|p| join_host_port(&p.broadcast_address, p.http_port))
            .collect();
        assert_eq!(addrs, ["a.b.svc:4151", "[::1]:1"]);
    }
}
