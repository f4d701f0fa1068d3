//! Lookups in nsqd's two JSON documents: `nsqd.dat` (`{"topics":[{"name",
//! "paused","channels":[{"name","paused"}]}],"version"}`) and
//! `GET /stats?format=json` (`{"topics":[{"topic_name","paused","channels":
//! [{"channel_name","paused",...}]}],...}`).

use serde_json::Value;

fn array(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// The `nsqd.dat` entry of `topic`.
pub fn metadata_topic<'a>(meta: &'a Value, topic: &str) -> Option<&'a Value> {
    array(&meta["topics"]).find(|t| t["name"] == topic)
}

/// The `nsqd.dat` entry of `topic`/`channel`.
pub fn metadata_channel<'a>(meta: &'a Value, topic: &str, channel: &str) -> Option<&'a Value> {
    array(&metadata_topic(meta, topic)?["channels"]).find(|c| c["name"] == channel)
}

/// Channel names of `topic` in `nsqd.dat`, in file order.
pub fn metadata_channels(meta: &Value, topic: &str) -> Vec<String> {
    metadata_topic(meta, topic)
        .map(|t| names(&t["channels"], "name"))
        .unwrap_or_default()
}

/// The `/stats` entry of `topic`.
pub fn stats_topic<'a>(stats: &'a Value, topic: &str) -> Option<&'a Value> {
    array(&stats["topics"]).find(|t| t["topic_name"] == topic)
}

/// The `/stats` entry of `topic`/`channel`.
pub fn stats_channel<'a>(stats: &'a Value, topic: &str, channel: &str) -> Option<&'a Value> {
    array(&stats_topic(stats, topic)?["channels"]).find(|c| c["channel_name"] == channel)
}

/// Channel names of `topic` in `/stats`, sorted.
pub fn stats_channels(stats: &Value, topic: &str) -> Vec<String> {
    let mut v = stats_topic(stats, topic)
        .map(|t| names(&t["channels"], "channel_name"))
        .unwrap_or_default();
    v.sort();
    v
}

fn names(list: &Value, key: &str) -> Vec<String> {
    array(list)
        .map(|c| c[key].as_str().unwrap_or_default().to_owned())
        .collect()
}
