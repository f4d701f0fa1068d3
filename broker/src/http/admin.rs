//! `/topic/*` and `/channel/*`: create, delete, empty, pause and unpause. Each
//! endpoint checks its arguments exactly as nsqd's handler does (nsqd's handlers
//! differ: topic delete and pause, for instance, do not validate the name).
//! The work itself (disk deletes, metadata writes) runs off the async threads.

use super::{blocking, topic_from_query};
use crate::nsqd::Nsqd;
use nsq_common::http::{ApiError, ApiResult, Params, Reply};
use nsq_common::names::is_valid_topic_name;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TopicOp {
    Create,
    Delete,
    Empty,
    Pause,
    Unpause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChannelOp {
    Create,
    Delete,
    Empty,
    Pause,
    Unpause,
}

pub(super) async fn topic(nsqd: Arc<Nsqd>, op: TopicOp, params: Params) -> ApiResult {
    if op == TopicOp::Create {
        topic_from_query(&nsqd, &params).await?;
        return Ok(Reply::Empty);
    }
    let name = params
        .get("topic")
        .ok_or(ApiError::bad_request("MISSING_ARG_TOPIC"))?
        .to_owned();
    if op == TopicOp::Empty && !is_valid_topic_name(&name) {
        return Err(ApiError::bad_request("INVALID_TOPIC"));
    }
    blocking(move || {
        let not_found = || ApiError::not_found("TOPIC_NOT_FOUND");
        match op {
            TopicOp::Create => {}
            TopicOp::Delete => {
                if !nsqd.delete_topic(&name) {
                    return Err(not_found());
                }
            }
            TopicOp::Empty => nsqd.existing_topic(&name).ok_or_else(not_found)?.empty(),
            TopicOp::Pause | TopicOp::Unpause => {
                let topic = nsqd.existing_topic(&name).ok_or_else(not_found)?;
                if op == TopicOp::Pause {
                    topic.pause();
                } else {
                    topic.unpause();
                }
                // Persist now so a crash cannot silently (un)pause the topic.
                nsqd.persist_metadata();
            }
        }
        Ok(Reply::Empty)
    })
    .await
}

pub(super) async fn channel(nsqd: Arc<Nsqd>, op: ChannelOp, params: Params) -> ApiResult {
    let (topic_name, channel_name) = params.topic_channel_args()?;
    let (topic_name, channel_name) = (topic_name.to_owned(), channel_name.to_owned());
    blocking(move || {
        let topic = nsqd
            .existing_topic(&topic_name)
            .ok_or(ApiError::not_found("TOPIC_NOT_FOUND"))?;
        let not_found = || ApiError::not_found("CHANNEL_NOT_FOUND");
        match op {
            ChannelOp::Create => {
                nsqd.get_channel(&topic, &channel_name);
            }
            ChannelOp::Delete => {
                if !nsqd.delete_channel(&topic, &channel_name) {
                    return Err(not_found());
                }
            }
            ChannelOp::Empty => topic.channel(&channel_name).ok_or_else(not_found)?.empty(),
            ChannelOp::Pause | ChannelOp::Unpause => {
                let channel = topic.channel(&channel_name).ok_or_else(not_found)?;
                if op == ChannelOp::Pause {
                    channel.pause();
                } else {
                    channel.unpause();
                }
                nsqd.persist_metadata();
            }
        }
        Ok(Reply::Empty)
    })
    .await
}
