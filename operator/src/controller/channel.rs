//! Reconciles an NsqChannel: the channel (and its topic) exists on every broker
//! with the wanted pause state; on deletion (policy `Delete`) it is removed
//! from every broker and from lookupd.

use super::plan::{self, Step};
use super::{
    after_status, apply_status, broker_outcome, finish, key, lookupd_down, Context, Error,
};
use crate::crd::{
    BrokerChannelStatus, DeletionPolicy, NsqChannel, NsqChannelStatus, NsqTopic, FINALIZER,
};
use crate::nsq::NsqError;
use crate::status::{self, Reason};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use std::sync::Arc;

const KIND: &str = "NsqChannel";

pub async fn reconcile(obj: Arc<NsqChannel>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(KIND);
    let api: Api<NsqChannel> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let result = finalizer(&api, FINALIZER, Arc::clone(&obj), |event| async {
        match event {
            Finalizer::Apply(o) => apply(o, &ctx).await,
            Finalizer::Cleanup(o) => cleanup(o, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    finish(&ctx, KIND, &*obj, result)
}

fn channel_name(obj: &NsqChannel) -> String {
    plan::effective_name(obj.spec.channel_name.as_deref(), &obj.name_any())
}

/// The NSQ topic: `spec.topicName`, or the effective name of `spec.topicRef`.
async fn topic_name(obj: &NsqChannel, ctx: &Context) -> Result<Result<String, String>, Error> {
    if let Some(t) = &obj.spec.topic_name {
        return Ok(Ok(t.clone()));
    }
    let Some(r) = &obj.spec.topic_ref else {
        return Ok(Err(
            "one of spec.topicName and spec.topicRef is required".into()
        ));
    };
    let topics: Api<NsqTopic> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    Ok(match topics.get_opt(&r.name).await? {
        Some(t) => Ok(plan::effective_name(
            t.spec.topic_name.as_deref(),
            &t.name_any(),
        )),
        None => Err(format!("NsqTopic {} not found", r.name)),
    })
}

async fn apply(obj: Arc<NsqChannel>, ctx: &Context) -> Result<Action, Error> {
    let channel = channel_name(&obj);
    let generation = obj.metadata.generation;
    let previous = obj.status.clone().unwrap_or_default();
    ctx.set_managed(KIND, &key(&*obj), true);
    let mut status = NsqChannelStatus {
        observed_generation: generation,
        channel_name: Some(channel.clone()),
        ..Default::default()
    };
    let set_ready = |status: &mut NsqChannelStatus, reason: Reason, message: String| {
        ctx.metrics.set_ready(
            KIND,
            &obj.namespace().unwrap_or_default(),
            &obj.name_any(),
            reason.is_ready(),
        );
        status.conditions = vec![status::ready(
            &previous.conditions,
            generation,
            reason,
            message,
        )];
    };

    let topic = match topic_name(&obj, ctx).await? {
        Ok(t) => t,
        Err(msg) => {
            set_ready(&mut status, Reason::TopicNotFound, msg);
            apply_status(ctx, &*obj, &status).await?;
            return Ok(Action::requeue(ctx.resync));
        }
    };
    status.topic_name = Some(topic.clone());
    for (what, n) in [("topic", &topic), ("channel", &channel)] {
        if !nsq_common::names::is_valid_name(n) {
            set_ready(
                &mut status,
                Reason::InvalidName,
                format!("{n:?} is not a valid NSQ {what} name"),
            );
            apply_status(ctx, &*obj, &status).await?;
            return Ok(Action::await_change());
        }
    }

    let brokers = match ctx.nsq.brokers().await {
        Ok(b) => b,
        Err(e) => {
            status.brokers = previous.brokers.clone();
            set_ready(&mut status, Reason::LookupdUnavailable, e.to_string());
            return Err(lookupd_down(ctx, &*obj, &status, e).await);
        }
    };
    ctx.metrics.set_brokers(brokers.len());

    let results = futures::future::join_all(
        brokers
            .iter()
            .map(|b| sync_broker(ctx, b, &topic, &channel, obj.spec.paused)),
    )
    .await;
    let mut failed = Vec::new();
    for (broker, (entry, created)) in brokers.iter().zip(results) {
        if created {
            ctx.event(
                &*obj,
                EventType::Normal,
                "Created",
                format!("channel {topic}/{channel} created on broker {broker}"),
            )
            .await;
        }
        if let Some(err) = &entry.error {
            failed.push((broker.clone(), err.clone()));
        }
        status.broker_count += entry.present as i64;
        status.depth += entry.depth;
        status.in_flight_count += entry.in_flight_count;
        status.deferred_count += entry.deferred_count;
        status.requeue_count += entry.requeue_count;
        status.timeout_count += entry.timeout_count;
        status.message_count += entry.message_count;
        status.consumers += entry.consumers;
        status.brokers.push(entry);
    }
    let (reason, message) = broker_outcome(&failed, brokers.len(), || {
        format!(
            "channel {topic}/{channel} present on {} brokers",
            brokers.len()
        )
    });
    set_ready(&mut status, reason, message.clone());
    apply_status(ctx, &*obj, &status).await?;
    after_status(ctx, &*obj, failed, message).await
}

async fn sync_broker(
    ctx: &Context,
    broker: &str,
    topic: &str,
    channel: &str,
    paused: bool,
) -> (BrokerChannelStatus, bool) {
    let mut entry = BrokerChannelStatus {
        address: broker.to_owned(),
        ..Default::default()
    };
    let run = async {
        let observed = ctx.nsq.topic_stats(broker, topic).await?;
        let steps = plan::channel_steps(observed.as_ref(), channel, paused);
        for step in &steps {
            match step {
                Step::CreateTopic => ctx.nsq.create_topic(broker, topic).await?,
                Step::CreateChannel => ctx.nsq.create_channel(broker, topic, channel).await?,
                Step::PauseChannel(p) => ctx.nsq.pause_channel(broker, topic, channel, *p).await?,
                Step::PauseTopic(_) => {}
            }
        }
        let now = if steps.is_empty() {
            observed
        } else {
            ctx.nsq.topic_stats(broker, topic).await?
        };
        Ok::<_, NsqError>((now, steps.contains(&Step::CreateChannel)))
    };
    match run.await {
        Ok((now, created)) => {
            if let Some(c) = now
                .as_ref()
                .and_then(|t| t.channels.iter().find(|c| c.channel_name == channel))
            {
                entry.present = true;
                entry.paused = c.paused;
                entry.depth = c.depth;
                entry.in_flight_count = c.in_flight_count;
                entry.deferred_count = c.deferred_count;
                entry.message_count = c.message_count;
                entry.requeue_count = c.requeue_count;
                entry.timeout_count = c.timeout_count;
                entry.consumers = c.client_count;
            }
            (entry, created)
        }
        Err(e) => {
            entry.error = Some(e.to_string());
            (entry, false)
        }
    }
}

async fn cleanup(obj: Arc<NsqChannel>, ctx: &Context) -> Result<Action, Error> {
    let channel = channel_name(&obj);
    ctx.set_managed(KIND, &key(&*obj), false);
    ctx.metrics
        .forget(KIND, &obj.namespace().unwrap_or_default(), &obj.name_any());
    if obj.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            &*obj,
            EventType::Normal,
            "Retained",
            format!("channel {channel} left on the brokers (deletionPolicy Retain)"),
        )
        .await;
        return Ok(Action::await_change());
    }
    // Without a resolvable topic there is nothing on the brokers to remove.
    let topic = match topic_name(&obj, ctx).await? {
        Ok(t) => t,
        Err(_) => match obj.status.as_ref().and_then(|s| s.topic_name.clone()) {
            Some(t) => t,
            None => return Ok(Action::await_change()),
        },
    };
    let brokers = ctx.nsq.brokers().await?;
    for b in &brokers {
        ctx.nsq.delete_channel(b, &topic, &channel).await?;
    }
    ctx.nsq.lookupd_delete_channel(&topic, &channel).await?;
    ctx.event(
        &*obj,
        EventType::Normal,
        "Deleted",
        format!(
            "channel {topic}/{channel} deleted from {} brokers and lookupd",
            brokers.len()
        ),
    )
    .await;
    Ok(Action::await_change())
}
