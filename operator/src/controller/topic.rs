//! Reconciles an NsqTopic: the topic exists on every broker with the wanted
//! pause state; on deletion (policy `Delete`) it is removed from every broker
//! and from lookupd.

use super::plan::{self, Step};
use super::{
    after_status, apply_status, broker_outcome, finish, key, lookupd_down, Context, Error,
};
use crate::crd::{BrokerTopicStatus, DeletionPolicy, NsqTopic, NsqTopicStatus, FINALIZER};
use crate::nsq::NsqError;
use crate::status::{self, Reason};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use std::sync::Arc;

const KIND: &str = "NsqTopic";

pub async fn reconcile(obj: Arc<NsqTopic>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(KIND);
    let api: Api<NsqTopic> =
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

fn topic_name(obj: &NsqTopic) -> String {
    plan::effective_name(obj.spec.topic_name.as_deref(), &obj.name_any())
}

async fn apply(obj: Arc<NsqTopic>, ctx: &Context) -> Result<Action, Error> {
    let name = topic_name(&obj);
    let generation = obj.metadata.generation;
    let previous = obj.status.clone().unwrap_or_default();
    ctx.set_managed(KIND, &key(&*obj), true);
    let mut status = NsqTopicStatus {
        observed_generation: generation,
        topic_name: Some(name.clone()),
        ..Default::default()
    };
    let set_ready = |status: &mut NsqTopicStatus, reason: Reason, message: String| {
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

    if !nsq_common::names::is_valid_topic_name(&name) {
        set_ready(
            &mut status,
            Reason::InvalidName,
            format!("{name:?} is not a valid NSQ topic name (set spec.topicName)"),
        );
        apply_status(ctx, &*obj, &status).await?;
        return Ok(Action::await_change());
    }

    let brokers = match ctx.nsq.brokers().await {
        Ok(b) => b,
        Err(e) => {
            // Keep what we last saw of the brokers; only readiness changes.
            status.brokers = previous.brokers.clone();
            set_ready(&mut status, Reason::LookupdUnavailable, e.to_string());
            return Err(lookupd_down(ctx, &*obj, &status, e).await);
        }
    };
    ctx.metrics.set_brokers(brokers.len());

    let results = futures::future::join_all(
        brokers
            .iter()
            .map(|b| sync_broker(ctx, b, &name, obj.spec.paused)),
    )
    .await;
    let mut failed = Vec::new();
    for (broker, (entry, created)) in brokers.iter().zip(results) {
        if created {
            ctx.event(
                &*obj,
                EventType::Normal,
                "Created",
                format!("topic {name} created on broker {broker}"),
            )
            .await;
        }
        if let Some(err) = &entry.error {
            failed.push((broker.clone(), err.clone()));
        }
        status.broker_count += entry.present as i64;
        status.depth += entry.depth;
        status.message_count += entry.message_count;
        status.brokers.push(entry);
    }
    let (reason, message) = broker_outcome(&failed, brokers.len(), || {
        format!("topic {name} present on {} brokers", brokers.len())
    });
    set_ready(&mut status, reason, message.clone());
    apply_status(ctx, &*obj, &status).await?;
    after_status(ctx, &*obj, failed, message).await
}

/// Brings one broker in line; returns its status entry and whether the topic
/// had to be created there.
async fn sync_broker(
    ctx: &Context,
    broker: &str,
    topic: &str,
    paused: bool,
) -> (BrokerTopicStatus, bool) {
    let mut entry = BrokerTopicStatus {
        address: broker.to_owned(),
        ..Default::default()
    };
    let run = async {
        let observed = ctx.nsq.topic_stats(broker, topic).await?;
        let steps = plan::topic_steps(observed.as_ref(), paused);
        for step in &steps {
            match step {
                Step::CreateTopic => ctx.nsq.create_topic(broker, topic).await?,
                Step::PauseTopic(p) => ctx.nsq.pause_topic(broker, topic, *p).await?,
                Step::CreateChannel | Step::PauseChannel(_) => {}
            }
        }
        let now = if steps.is_empty() {
            observed
        } else {
            ctx.nsq.topic_stats(broker, topic).await?
        };
        Ok::<_, NsqError>((now, steps.contains(&Step::CreateTopic)))
    };
    match run.await {
        Ok((now, created)) => {
            if let Some(t) = now {
                entry.present = true;
                entry.paused = t.paused;
                entry.depth = t.depth;
                entry.message_count = t.message_count;
            }
            (entry, created)
        }
        Err(e) => {
            entry.error = Some(e.to_string());
            (entry, false)
        }
    }
}

async fn cleanup(obj: Arc<NsqTopic>, ctx: &Context) -> Result<Action, Error> {
    let name = topic_name(&obj);
    ctx.set_managed(KIND, &key(&*obj), false);
    ctx.metrics
        .forget(KIND, &obj.namespace().unwrap_or_default(), &obj.name_any());
    if obj.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            &*obj,
            EventType::Normal,
            "Retained",
            format!("topic {name} left on the brokers (deletionPolicy Retain)"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let brokers = ctx.nsq.brokers().await?;
    for b in &brokers {
        ctx.nsq.delete_topic(b, &name).await?;
    }
    ctx.nsq.lookupd_delete_topic(&name).await?;
    ctx.event(
        &*obj,
        EventType::Normal,
        "Deleted",
        format!(
            "topic {name} deleted from {} brokers and lookupd",
            brokers.len()
        ),
    )
    .await;
    Ok(Action::await_change())
}
