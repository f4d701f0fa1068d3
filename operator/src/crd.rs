//! The custom resources: `NsqTopic` and `NsqChannel` (group `nsq.io`, version
//! `v1alpha1`). The CRD YAML is generated from these types (`crdgen`).
//!
//! Schemas reject bad NSQ names at admission with plain OpenAPI patterns (no
//! CEL: the oldest API servers we support predate it).

use kube::CustomResource;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "nsq.io";
pub const VERSION: &str = "v1alpha1";
/// NSQ's topic and channel rule, as an OpenAPI pattern.
pub const NAME_PATTERN: &str = r"^[.a-zA-Z0-9_-]+(#ephemeral)?$";
pub const FINALIZER: &str = "nsq.io/cleanup";

/// What happens on the brokers when the resource is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the topic or channel (and its messages) on every broker, and its
    /// registration in lookupd.
    #[default]
    Delete,
    /// Leave the brokers alone.
    Retain,
}

fn nsq_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": NAME_PATTERN,
    })
}

/// A topic that every broker in the cluster should have.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "nsq.io",
    version = "v1alpha1",
    kind = "NsqTopic",
    namespaced,
    status = "NsqTopicStatus",
    shortname = "nsqtopic",
    shortname = "nt",
    category = "nsq",
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".status.topicName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Brokers","type":"integer","jsonPath":".status.brokerCount"}"#,
    printcolumn = r#"{"name":"Depth","type":"integer","jsonPath":".status.depth"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NsqTopicSpec {
    /// The NSQ topic name; defaults to `metadata.name` (which cannot hold `_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nsq_name")]
    pub topic_name: Option<String>,
    /// Pause delivery from the topic to its channels.
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A condition in the Kubernetes convention (`Ready`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One broker's view of a topic.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerTopicStatus {
    /// The broker's HTTP address (`broadcast_address:http_port`).
    pub address: String,
    pub present: bool,
    pub paused: bool,
    pub depth: i64,
    pub message_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NsqTopicStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The effective NSQ topic name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub brokers: Vec<BrokerTopicStatus>,
    /// Brokers that have the topic.
    #[serde(default)]
    pub broker_count: i64,
    /// Messages queued in the topic on all brokers.
    #[serde(default)]
    pub depth: i64,
    /// Messages published to the topic on all brokers.
    #[serde(default)]
    pub message_count: u64,
}

/// The topic an NsqChannel belongs to: by NSQ name, or by NsqTopic resource.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicRef {
    /// Name of an NsqTopic in the same namespace.
    pub name: String,
}

/// A channel that every broker in the cluster should have.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "nsq.io",
    version = "v1alpha1",
    kind = "NsqChannel",
    namespaced,
    status = "NsqChannelStatus",
    shortname = "nsqchannel",
    shortname = "nc",
    category = "nsq",
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".status.topicName"}"#,
    printcolumn = r#"{"name":"Channel","type":"string","jsonPath":".status.channelName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Depth","type":"integer","jsonPath":".status.depth"}"#,
    printcolumn = r#"{"name":"Consumers","type":"integer","jsonPath":".status.consumers"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["topicName"]}, {"required": ["topicRef"]}]))]
pub struct NsqChannelSpec {
    /// The NSQ topic name. Exactly one of `topicName` and `topicRef` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nsq_name")]
    pub topic_name: Option<String>,
    /// An NsqTopic in the same namespace whose topic this channel belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_ref: Option<TopicRef>,
    /// The NSQ channel name; defaults to `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nsq_name")]
    pub channel_name: Option<String>,
    /// Pause delivery from the channel to its consumers.
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// One broker's view of a channel.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerChannelStatus {
    pub address: String,
    pub present: bool,
    pub paused: bool,
    pub depth: i64,
    pub in_flight_count: i64,
    pub deferred_count: i64,
    pub message_count: u64,
    pub requeue_count: u64,
    pub timeout_count: u64,
    pub consumers: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NsqChannelStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_name: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub brokers: Vec<BrokerChannelStatus>,
    /// Brokers that have the channel.
    #[serde(default)]
    pub broker_count: i64,
    #[serde(default)]
    pub depth: i64,
    #[serde(default)]
    pub in_flight_count: i64,
    #[serde(default)]
    pub deferred_count: i64,
    #[serde(default)]
    pub requeue_count: u64,
    #[serde(default)]
    pub timeout_count: u64,
    #[serde(default)]
    pub message_count: u64,
    /// Connected consumers on all brokers.
    #[serde(default)]
    pub consumers: i64,
}

/// The CRDs as YAML documents, in a stable order.
pub fn crd_yaml() -> Vec<(&'static str, String)> {
    use kube::CustomResourceExt;
    vec![
        (
            "nsqtopics.nsq.io.yaml",
            serde_yaml::to_string(&NsqTopic::crd()).expect("CRD serialises"),
        ),
        (
            "nsqchannels.nsq.io.yaml",
            serde_yaml::to_string(&NsqChannel::crd()).expect("CRD serialises"),
        ),
    ]
}
