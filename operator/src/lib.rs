//! nsq-operator: makes NSQ topics and channels declarative.
//!
//! `kubectl apply -f topic.yaml` and every broker in the cluster gets the topic,
//! keeps it, and reports its state back in the resource's status.
//!
//! - [`crd`]: the `NsqTopic` and `NsqChannel` types; the CRD YAML is generated
//!   from them (`crdgen`).
//! - [`nsq`]: what the operator asks of NSQ over HTTP: brokers from lookupd's
//!   `/nodes`, per-broker `/stats`, topic/channel create, delete, pause.
//! - [`controller`]: the reconcilers. [`controller::plan`] decides (pure,
//!   unit-tested) what each broker needs; the topic and channel reconcilers
//!   apply that, write status with server-side apply, record Events, and
//!   clean up through a finalizer.
//! - [`status`]: `Ready` conditions and status totals.
//! - [`metrics`]: Prometheus metrics of reconciles, failures, durations,
//!   managed resources and brokers seen.
//! - [`leader`]: leader election on a `coordination.k8s.io` Lease, so only one
//!   replica acts.
//! - [`http`]: the operator's own port: `/metrics`, `/healthz`, `/readyz`.
//! - [`options`]: the command-line flags.

pub mod controller;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod nsq;
pub mod options;
pub mod status;
