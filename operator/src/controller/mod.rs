//! The reconcilers for NsqTopic ([`topic`]) and NsqChannel ([`channel`]), their
//! shared context, errors and back-off.
//!
//! Each reconcile is idempotent: it reads lookupd's brokers and each broker's
//! `/stats`, applies [`plan`]'s steps, writes status through the status
//! subresource with server-side apply, and requeues after the resync period,
//! which also repairs drift and fills brokers that appear later.

pub mod channel;
pub mod plan;
pub mod topic;

use crate::metrics::Metrics;
use crate::nsq::{Nsq, NsqError};
use crate::status::Reason;
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The field manager of our server-side applies.
pub const MANAGER: &str = "nsq-operator";
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Nsq(#[from] NsqError),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// Short reason for metrics.
    /// One of [`crate::metrics::FAILURE_REASONS`].
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesAPI",
            Error::Nsq(NsqError::LookupdUnavailable(_)) => "LookupdUnavailable",
            Error::Nsq(NsqError::Broker { .. }) => "BrokerUnreachable",
            Error::Finalizer(_) => "Finalizer",
        }
    }
}

pub struct Context {
    pub client: Client,
    pub nsq: Nsq,
    pub metrics: Arc<Metrics>,
    pub resync: Duration,
    pub recorder: Recorder,
    /// Consecutive failures per object, for exponential back-off.
    failures: Mutex<HashMap<String, u32>>,
    /// Objects being managed, by kind, for the managed-resources gauge.
    managed: Mutex<HashMap<&'static str, BTreeSet<String>>>,
}

impl Context {
    pub fn new(client: Client, nsq: Nsq, metrics: Arc<Metrics>, resync: Duration) -> Context {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: hostname::get()
                .ok()
                .map(|h| h.to_string_lossy().into_owned()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            nsq,
            metrics,
            resync,
            failures: Mutex::new(HashMap::new()),
            managed: Mutex::new(HashMap::new()),
        }
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// 1 s, 2 s, 4 s ... capped at five minutes.
    fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        Duration::from_secs(1u64 << (*n - 1).min(9)).min(MAX_BACKOFF)
    }

    fn set_managed(&self, kind: &'static str, key: &str, present: bool) {
        let mut m = self.managed.lock().unwrap_or_else(|e| e.into_inner());
        let set = m.entry(kind).or_default();
        if present {
            set.insert(key.to_owned());
        } else {
            set.remove(key);
        }
        self.metrics.set_managed(kind, set.len() as i64);
    }

    /// Records a Kubernetes Event; failing to record one never fails a reconcile.
    async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!("failed to record event {reason} - {e}");
        }
    }
}

fn key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// Writes `status` through the status subresource with server-side apply.
async fn apply_status<K>(ctx: &Context, obj: &K, status: &impl Serialize) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

fn error_policy<K: Resource>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let k = key(&*obj);
    let wait = ctx.backoff(&k);
    tracing::warn!("reconcile of {k} failed, retrying in {wait:?} - {err}");
    Action::requeue(wait)
}

/// Runs both controllers until shutdown. `namespace` limits what is watched.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    use crate::crd::{NsqChannel, NsqTopic};
    let (topics, channels): (Api<NsqTopic>, Api<NsqChannel>) = match &namespace {
        Some(ns) => (
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
        ),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    let topic_ctl = Controller::new(topics, watcher::Config::default())
        .shutdown_on_signal()
        .run(topic::reconcile, error_policy, Arc::clone(&ctx))
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("topic controller: {e}");
            }
        });
    let channel_ctl = Controller::new(channels, watcher::Config::default())
        .shutdown_on_signal()
        .run(channel::reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("channel controller: {e}");
            }
        });
    futures::join!(topic_ctl, channel_ctl);
}

/// Marks an outcome in metrics and back-off state; passes it through.
fn finish<K: Resource>(
    ctx: &Context,
    kind: &str,
    obj: &K,
    result: Result<Action, Error>,
) -> Result<Action, Error> {
    match &result {
        Ok(_) => ctx.succeeded(&key(obj)),
        Err(e) => ctx.metrics.failure(kind, e.metric_reason()),
    }
    result
}

/// Ends a reconcile that found no lookupd: the status (already marked) is
/// written, an Event recorded, and the error returned for back-off.
async fn lookupd_down<K>(ctx: &Context, obj: &K, status: &impl Serialize, e: NsqError) -> Error
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    if let Err(write) = apply_status(ctx, obj, status).await {
        return write;
    }
    ctx.event(obj, EventType::Warning, "LookupdUnavailable", e.to_string())
        .await;
    e.into()
}

/// The Ready reason and message once every broker has been tried.
fn broker_outcome(
    failed: &[(String, String)],
    total: usize,
    ok: impl FnOnce() -> String,
) -> (Reason, String) {
    if !failed.is_empty() {
        let detail: Vec<String> = failed.iter().map(|(a, e)| format!("{a}: {e}")).collect();
        let msg = format!(
            "{} of {total} brokers failed: {}",
            failed.len(),
            detail.join("; ")
        );
        (Reason::BrokerUnreachable, msg)
    } else if total == 0 {
        (Reason::NoBrokers, "lookupd knows no brokers".to_owned())
    } else {
        (Reason::Reconciled, ok())
    }
}

/// Ends a reconcile whose status is written: any failed broker means an
/// Event and back-off, else the next resync.
async fn after_status<K>(
    ctx: &Context,
    obj: &K,
    failed: Vec<(String, String)>,
    message: String,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
{
    if let Some((addr, err)) = failed.into_iter().next() {
        ctx.event(obj, EventType::Warning, "BrokerUnreachable", message)
            .await;
        return Err(NsqError::Broker { addr, message: err }.into());
    }
    Ok(Action::requeue(ctx.resync))
}
