//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go's
//! `leaderelection` package does it, so that of several replicas only one
//! reconciles.
//!
//! - A replica takes the lease when nobody holds it (no `holderIdentity`) or
//!   the holder's `renewTime + leaseDurationSeconds` has passed ([`decide`] —
//!   pure, unit-tested). Every write is a `replace` carrying the
//!   `resourceVersion` it read (or a `create` when the Lease is missing), so of
//!   two replicas racing for it the API server lets exactly one win; the other
//!   gets 409 Conflict and stays standby.
//! - The leader renews every renew interval (failures are retried twice as
//!   often). When no renewal has succeeded for one lease duration, counted
//!   from the moment it sent the last successful one (so never later than a
//!   standby may take over), leadership is lost: the work is dropped at once
//!   and [`run_as_leader`] returns an error; the process exits non-zero and
//!   Kubernetes restarts it as a standby.
//! - On graceful shutdown the leader lets the work finish (at most
//!   [`WORK_GRACE`]), then releases the lease (no holder, `renewTime` now,
//!   `leaseDurationSeconds: 1`) so a standby takes over at its next look
//!   instead of after a lease duration.
//!
//! [`State`] is this replica's role and last API contact, read by `/readyz`.

use crate::metrics::Metrics;
use crate::options::Options;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};

/// How long the work may take to finish after shutdown begins before it is
/// dropped and the lease released anyway.
pub const WORK_GRACE: Duration = Duration::from_secs(10);

/// Where the lease is and how this replica holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `false`: no lease, the work runs at once.
    pub enabled: bool,
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

impl Config {
    pub fn from_options(o: &Options) -> Config {
        Config {
            enabled: o.leader_election,
            name: o.lease_name.clone(),
            namespace: o.lease_namespace.clone(),
            identity: o.identity.clone(),
            lease_duration: o.lease_duration,
            renew_interval: o.lease_renew_interval,
        }
    }

    /// `leaseDurationSeconds`: whole seconds, rounded up, at least 1.
    pub fn lease_seconds(&self) -> i32 {
        let d = self.lease_duration;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }

    /// The longest one API call may take.
    fn call_timeout(&self) -> Duration {
        self.renew_interval.max(Duration::from_secs(1))
    }
}

/// What this replica is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Has not yet learnt who holds the lease.
    Starting,
    /// Another replica holds the lease; this one watches it.
    Standby,
    /// This replica holds the lease (or leader election is off): the work runs.
    Leader,
    /// Shutting down or leadership lost.
    Stopping,
}

/// This replica's role and when it last reached the API server, shared with
/// the HTTP port's `/readyz`.
#[derive(Debug)]
pub struct State {
    inner: Mutex<(Role, Option<Instant>)>,
    /// How recent a standby's last API contact must be for it to be ready.
    freshness: Duration,
}

impl State {
    pub fn new(freshness: Duration) -> State {
        State {
            inner: Mutex::new((Role::Starting, None)),
            freshness,
        }
    }

    pub fn role(&self) -> Role {
        self.lock().0
    }

    /// `Ok` when this replica is ready (see [`readiness`]), else why not.
    pub fn readiness(&self) -> Result<(), String> {
        let (role, contact) = *self.lock();
        readiness(role, contact, Instant::now(), self.freshness)
    }

    fn set_role(&self, role: Role) {
        self.lock().0 = role;
    }

    fn api_reached(&self) {
        self.lock().1 = Some(Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Role, Option<Instant>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Readiness: the leader is ready (its controllers run); a standby is ready
/// while it keeps reaching the API server (its last look at the lease is at
/// most `freshness` old), as it is then able to take over. Starting and
/// stopping replicas are not ready.
pub fn readiness(
    role: Role,
    last_contact: Option<Instant>,
    now: Instant,
    freshness: Duration,
) -> Result<(), String> {
    match role {
        Role::Leader => Ok(()),
        Role::Starting => Err("waiting for the first look at the leader lease".into()),
        Role::Stopping => Err("shutting down".into()),
        Role::Standby => match last_contact {
            Some(t) if now.saturating_duration_since(t) <= freshness => Ok(()),
            Some(t) => Err(format!(
                "standby has not reached the API server for {:?}",
                now.saturating_duration_since(t)
            )),
            None => Err("standby has not reached the API server".into()),
        },
    }
}

/// What a replica does with the lease it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds a live lease: take it.
    Acquire,
    /// It is ours: renew it.
    Renew,
    /// `holder` holds it until `expires`: stand by.
    Wait { holder: String, expires: Timestamp },
}

/// Decides from the Lease's spec (`None`: no Lease or no spec), the time and
/// our identity. A lease naming us is renewed even when it has expired (a
/// restart with the same identity), as client-go does.
pub fn decide(spec: Option<&LeaseSpec>, now: Timestamp, identity: &str) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    match expiry(spec) {
        Some(expires) if expires > now => Decision::Wait {
            holder: holder.to_owned(),
            expires,
        },
        _ => Decision::Acquire,
    }
}

/// `renewTime + leaseDurationSeconds`; `None` (expired) when either is missing.
fn expiry(spec: &LeaseSpec) -> Option<Timestamp> {
    let renewed = spec.renew_time.as_ref()?.0;
    let secs = spec.lease_duration_seconds?.max(0);
    renewed
        .checked_add(SignedDuration::from_secs(i64::from(secs)))
        .ok()
}

/// A time as the API server stores a MicroTime (microseconds).
fn micro(t: Timestamp) -> MicroTime {
    MicroTime(Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t))
}

/// The spec to write for `decision` (`None` for [`Decision::Wait`]). Taking a
/// lease sets `acquireTime` and counts a transition (0 for a new Lease);
/// renewing keeps both and moves `renewTime`.
pub fn claim(
    old: Option<&LeaseSpec>,
    decision: &Decision,
    now: Timestamp,
    identity: &str,
    lease_seconds: i32,
) -> Option<LeaseSpec> {
    let now = micro(now);
    let base = old.cloned().unwrap_or_default();
    let (acquire_time, lease_transitions) = match decision {
        Decision::Wait { .. } => return None,
        Decision::Renew => (
            base.acquire_time.clone().or_else(|| Some(now.clone())),
            Some(base.lease_transitions.unwrap_or(0)),
        ),
        Decision::Acquire => (
            Some(now.clone()),
            Some(old.map_or(0, |o| o.lease_transitions.unwrap_or(0).saturating_add(1))),
        ),
    };
    Some(LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        acquire_time,
        renew_time: Some(now),
        lease_duration_seconds: Some(lease_seconds),
        lease_transitions,
        ..base
    })
}

/// The spec a leader writes when it steps down: no holder, renewed now, valid
/// for one second, transitions kept (as client-go's `ReleaseOnCancel`).
pub fn released(old: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        acquire_time: Some(micro(now)),
        renew_time: Some(micro(now)),
        lease_duration_seconds: Some(1),
        lease_transitions: old.lease_transitions,
        ..old.clone()
    }
}

/// Runs `work` while this replica is the leader.
///
/// Waits (as a standby) until the lease is ours, sets `nsq_operator_leader`
/// and runs `work()`, renewing the lease meanwhile. Returns:
/// - `Ok(())` after `shutdown` turns true (or `work` ends): the work is given
///   [`WORK_GRACE`] to finish, then the lease is released;
/// - `Err` when leadership is lost: the work has been dropped; exit non-zero.
///
/// With leader election disabled the work runs at once until shutdown.
pub async fn run_as_leader<F, Fut>(
    client: Client,
    cfg: Config,
    metrics: Arc<Metrics>,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    if !cfg.enabled {
        tracing::info!("LEADER: leader election disabled; acting alone");
        state.set_role(Role::Leader);
        metrics.set_leader(true);
        let mut work = pin!(work());
        tokio::select! {
            () = &mut work => {}
            () = stopped(&mut shutdown) => {
                if timeout(WORK_GRACE, &mut work).await.is_err() {
                    tracing::warn!("LEADER: work still running after {WORK_GRACE:?}; stopping it");
                }
            }
        }
        metrics.set_leader(false);
        state.set_role(Role::Stopping);
        return Ok(());
    }

    let lease = Elector {
        api: Api::namespaced(client, &cfg.namespace),
        cfg,
    };
    let Some((mut held, renewed_at)) = lease.wait_until_leader(&state, &mut shutdown).await else {
        state.set_role(Role::Stopping);
        return Ok(());
    };
    if *shutdown.borrow() {
        state.set_role(Role::Stopping);
        lease.release(&held).await;
        return Ok(());
    }
    let transitions = held
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0);
    tracing::info!(
        "LEADER: {} is the leader (lease {}, transitions {transitions})",
        lease.cfg.identity,
        lease.cfg
    );
    state.set_role(Role::Leader);
    metrics.set_leader(true);

    let outcome = {
        let mut work = pin!(work());
        let mut renewing = pin!(lease.keep_renewed(&mut held, renewed_at));
        let first = tokio::select! {
            () = &mut work => Outcome::Done,
            reason = &mut renewing => Outcome::Lost(reason),
            () = stopped(&mut shutdown) => Outcome::Stopping,
        };
        match first {
            Outcome::Stopping => {
                // The controllers saw the signal too; let them finish, still renewing.
                tokio::select! {
                    () = &mut work => Outcome::Done,
                    reason = &mut renewing => Outcome::Lost(reason),
                    () = sleep(WORK_GRACE) => {
                        tracing::warn!("LEADER: work still running after {WORK_GRACE:?}; stopping it");
                        Outcome::Done
                    }
                }
            }
            other => other,
        }
        // The work is dropped here: nothing acts for us any more.
    };
    metrics.set_leader(false);
    state.set_role(Role::Stopping);
    match outcome {
        Outcome::Lost(reason) => Err(anyhow::anyhow!(
            "LEADER: lost the lease {} - {reason}",
            lease.cfg
        )),
        Outcome::Done | Outcome::Stopping => {
            lease.release(&held).await;
            Ok(())
        }
    }
}

enum Outcome {
    Done,
    Stopping,
    Lost(String),
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&s| s).await;
}

/// One try at the lease.
enum Attempt {
    /// Ours now; the Lease as written.
    Held(Box<Lease>),
    /// Someone else's.
    HeldBy(String),
}

#[derive(Debug)]
enum CallError {
    Kube(kube::Error),
    Timeout(Duration),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Kube(e) => write!(f, "{e}"),
            CallError::Timeout(d) => write!(f, "no answer from the API server within {d:?}"),
        }
    }
}

impl CallError {
    /// 409: the Lease changed since we read it, or was created meanwhile.
    fn is_conflict(&self) -> bool {
        matches!(self, CallError::Kube(kube::Error::Api(s)) if s.code == 409)
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Writes show up in `managedFields` as ours.
fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(crate::controller::MANAGER.into()),
        ..PostParams::default()
    }
}

struct Elector {
    api: Api<Lease>,
    cfg: Config,
}

impl Elector {
    async fn call<T>(
        &self,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, CallError> {
        let limit = self.cfg.call_timeout();
        match timeout(limit, request).await {
            Ok(r) => r.map_err(CallError::Kube),
            Err(_) => Err(CallError::Timeout(limit)),
        }
    }

    /// client-go's `tryAcquireOrRenew`. With `cached` (our last write) a
    /// renewal is tried straight away; a conflict falls back to reading the
    /// Lease and deciding again.
    async fn try_acquire_or_renew(&self, cached: Option<&Lease>) -> Result<Attempt, CallError> {
        let pp = post_params();
        let id = &self.cfg.identity;
        let secs = self.cfg.lease_seconds();
        if let Some(cached) = cached {
            let mut lease = cached.clone();
            lease.spec = claim(
                cached.spec.as_ref(),
                &Decision::Renew,
                Timestamp::now(),
                id,
                secs,
            );
            match self
                .call(self.api.replace(&self.cfg.name, &pp, &lease))
                .await
            {
                Ok(l) => return Ok(Attempt::Held(Box::new(l))),
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        let Some(current) = self.call(self.api.get_opt(&self.cfg.name)).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: claim(None, &Decision::Acquire, Timestamp::now(), id, secs),
            };
            return match self.call(self.api.create(&pp, &lease)).await {
                Ok(l) => Ok(Attempt::Held(Box::new(l))),
                Err(e) if e.is_conflict() => Ok(Attempt::HeldBy("another replica".into())),
                Err(e) => Err(e),
            };
        };
        let now = Timestamp::now();
        let decision = decide(current.spec.as_ref(), now, id);
        let Some(spec) = claim(current.spec.as_ref(), &decision, now, id, secs) else {
            let Decision::Wait { holder, .. } = decision else {
                unreachable!("claim refuses only Wait")
            };
            return Ok(Attempt::HeldBy(holder));
        };
        let mut lease = current;
        lease.spec = Some(spec);
        match self
            .call(self.api.replace(&self.cfg.name, &pp, &lease))
            .await
        {
            Ok(l) => Ok(Attempt::Held(Box::new(l))),
            Err(e) if e.is_conflict() => Ok(Attempt::HeldBy("another replica".into())),
            Err(e) => Err(e),
        }
    }

    /// Looks at the lease every renew interval until it is ours (`Some`, with
    /// the Lease and when that write was sent) or shutdown (`None`).
    async fn wait_until_leader(
        &self,
        state: &State,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<(Lease, Instant)> {
        let mut shown_holder = None;
        let mut failing = false;
        tracing::info!(
            "LEADER: {} is trying to acquire lease {}",
            self.cfg.identity,
            self.cfg
        );
        loop {
            // Not cancelled by shutdown: a write that lands must be known, to be released.
            let sent = Instant::now();
            match self.try_acquire_or_renew(None).await {
                Ok(Attempt::Held(lease)) => {
                    state.api_reached();
                    return Some((*lease, sent));
                }
                Ok(Attempt::HeldBy(holder)) => {
                    state.api_reached();
                    state.set_role(Role::Standby);
                    if failing {
                        tracing::info!("LEADER: reached the API server again");
                        failing = false;
                    }
                    if shown_holder.as_ref() != Some(&holder) {
                        tracing::info!(
                            "LEADER: lease {} is held by {holder}; standing by",
                            self.cfg
                        );
                        shown_holder = Some(holder);
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("LEADER: failed to read lease {} - {e}", self.cfg);
                        failing = true;
                    } else {
                        tracing::debug!("LEADER: failed to read lease {} - {e}", self.cfg);
                    }
                }
            }
            if *shutdown.borrow() {
                return None;
            }
            tokio::select! {
                () = sleep(self.cfg.renew_interval) => {}
                () = stopped(shutdown) => return None,
            }
        }
    }

    /// Renews `held` until leadership is lost, then returns why. `renewed_at`
    /// is when the write that made `held` was sent.
    async fn keep_renewed(&self, held: &mut Lease, mut renewed_at: Instant) -> String {
        let retry = (self.cfg.renew_interval / 2).max(Duration::from_millis(100));
        let mut failing = false;
        loop {
            let lost_at = renewed_at + self.cfg.lease_duration;
            let next = if failing {
                Instant::now() + retry
            } else {
                renewed_at + self.cfg.renew_interval
            };
            sleep_until(next.min(lost_at)).await;
            let sent = Instant::now();
            if sent >= lost_at {
                return format!("no renewal succeeded for {:?}", self.cfg.lease_duration);
            }
            match timeout_at(lost_at, self.try_acquire_or_renew(Some(held))).await {
                Err(_) => return format!("no renewal succeeded for {:?}", self.cfg.lease_duration),
                Ok(Ok(Attempt::Held(lease))) => {
                    *held = *lease;
                    renewed_at = sent;
                    if failing {
                        tracing::info!("LEADER: renewed lease {} again", self.cfg);
                        failing = false;
                    }
                }
                Ok(Ok(Attempt::HeldBy(holder))) => return format!("it is held by {holder}"),
                Ok(Err(e)) => {
                    tracing::warn!("LEADER: failed to renew lease {} - {e}", self.cfg);
                    failing = true;
                }
            }
        }
    }

    /// Steps down so a standby takes over at once. Best effort: if it fails,
    /// the lease simply expires.
    async fn release(&self, held: &Lease) {
        let pp = post_params();
        let mut lease = held.clone();
        let step_down = |lease: &mut Lease| {
            lease.spec = Some(released(
                &lease.spec.clone().unwrap_or_default(),
                Timestamp::now(),
            ));
        };
        step_down(&mut lease);
        let mut result = self
            .call(self.api.replace(&self.cfg.name, &pp, &lease))
            .await;
        let conflict = match &result {
            Err(e) if e.is_conflict() => Some(e.to_string()),
            _ => None,
        };
        if let Some(e) = conflict {
            // Our last renewal may have landed unseen: release only if still ours.
            tracing::debug!(
                "LEADER: releasing lease {} - {e}; reading it again",
                self.cfg
            );
            result = match self.call(self.api.get_opt(&self.cfg.name)).await {
                Ok(Some(mut current)) => {
                    let holder = current
                        .spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.clone())
                        .unwrap_or_default();
                    if holder != self.cfg.identity {
                        tracing::info!(
                            "LEADER: lease {} is held by {holder:?}, no longer ours; nothing to release",
                            self.cfg
                        );
                        return;
                    }
                    step_down(&mut current);
                    self.call(self.api.replace(&self.cfg.name, &pp, &current))
                        .await
                }
                Ok(None) => return,
                Err(e) => Err(e),
            };
        }
        match result {
            Ok(_) => tracing::info!("LEADER: {} released lease {}", self.cfg.identity, self.cfg),
            Err(e) => tracing::warn!(
                "LEADER: failed to release lease {} - {e}; it expires in {:?}",
                self.cfg,
                self.cfg.lease_duration
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn held(holder: &str, renewed: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            acquire_time: Some(MicroTime(t("2026-11-21T20:00:00Z"))),
            renew_time: Some(MicroTime(t(renewed))),
            lease_duration_seconds: Some(secs),
            lease_transitions: Some(4),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_or_unheld_lease_is_acquired() {
        let now = t("2026-11-21T21:00:00Z");
        assert_eq!(decide(None, now, "a"), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), now, "a"),
            Decision::Acquire
        );
        let mut released = held("b", "2026-11-21T20:59:59.5Z", 15);
        released.holder_identity = Some(String::new());
        assert_eq!(decide(Some(&released), now, "a"), Decision::Acquire);
    }

    #[test]
    fn a_live_lease_of_another_holder_is_waited_for_until_it_expires() {
        let spec = held("b", "2026-11-21T20:59:50Z", 15);
        assert_eq!(
            decide(Some(&spec), t("2026-11-21T21:00:00Z"), "a"),
            Decision::Wait {
                holder: "b".into(),
                expires: t("2026-11-21T21:00:05Z"),
            }
        );
        // Exactly at renewTime + leaseDurationSeconds it has expired.
        assert_eq!(
            decide(Some(&spec), t("2026-11-21T21:00:05Z"), "a"),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&spec), t("2026-11-21T21:00:06Z"), "a"),
            Decision::Acquire
        );
    }

    #[test]
    fn a_lease_without_renew_time_or_duration_counts_as_expired() {
        let now = t("2026-11-21T21:00:00Z");
        let mut spec = held("b", "2026-11-21T20:59:59Z", 15);
        spec.renew_time = None;
        assert_eq!(decide(Some(&spec), now, "a"), Decision::Acquire);
        let mut spec = held("b", "2026-11-21T20:59:59Z", 15);
        spec.lease_duration_seconds = None;
        assert_eq!(decide(Some(&spec), now, "a"), Decision::Acquire);
    }

    #[test]
    fn our_own_lease_is_renewed_even_after_it_expired() {
        let spec = held("a", "2026-11-21T20:59:59Z", 15);
        assert_eq!(
            decide(Some(&spec), t("2026-11-21T21:00:00Z"), "a"),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&spec), t("2026-11-21T22:00:00Z"), "a"),
            Decision::Renew
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_acquire_time() {
        let now = t("2026-11-21T21:00:00.123456789Z");
        let old = held("b", "2026-11-21T20:00:00Z", 15);
        let taken = claim(Some(&old), &Decision::Acquire, now, "a", 3).unwrap();
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(5));
        assert_eq!(taken.lease_duration_seconds, Some(3));
        let micros = MicroTime(t("2026-11-21T21:00:00.123456Z"));
        assert_eq!(taken.acquire_time.as_ref(), Some(&micros));
        assert_eq!(taken.renew_time.as_ref(), Some(&micros));

        let later = t("2026-11-21T21:00:01Z");
        let renewed = claim(Some(&taken), &Decision::Renew, later, "a", 3).unwrap();
        assert_eq!(renewed.acquire_time.as_ref(), Some(&micros));
        assert_eq!(renewed.renew_time, Some(MicroTime(later)));
        assert_eq!(renewed.lease_transitions, Some(5));

        let fresh = claim(None, &Decision::Acquire, now, "a", 15).unwrap();
        assert_eq!(fresh.lease_transitions, Some(0));
        let wait = Decision::Wait {
            holder: "b".into(),
            expires: later,
        };
        assert_eq!(claim(Some(&old), &wait, now, "a", 15), None);
    }

    #[test]
    fn a_released_lease_has_no_holder_and_is_taken_at_once() {
        let now = t("2026-11-21T21:00:00Z");
        let spec = released(&held("b", "2026-11-21T20:59:59Z", 15), now);
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.lease_duration_seconds, Some(1));
        assert_eq!(decide(Some(&spec), now, "a"), Decision::Acquire);
    }

    #[test]
    fn micro_times_serialize_as_the_api_server_1_20_expects() {
        let spec = claim(None, &Decision::Acquire, t("2026-11-21T21:00:00Z"), "a", 15).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["renewTime"], "2026-11-21T21:00:00.000000Z");
        assert_eq!(json["acquireTime"], "2026-11-21T21:00:00.000000Z");
        assert_eq!(json["holderIdentity"], "a");
        assert_eq!(json["leaseDurationSeconds"], 15);
        assert_eq!(json["leaseTransitions"], 0);
        let json =
            serde_json::to_value(released(&spec, t("2026-11-21T21:00:00.123456789Z"))).unwrap();
        assert_eq!(json["renewTime"], "2026-11-21T21:00:00.123456Z");
        assert!(json.get("holderIdentity").is_none(), "{json}");
    }

    #[test]
    fn lease_seconds_round_up() {
        let cfg = |ms| Config {
            enabled: true,
            name: "n".into(),
            namespace: "ns".into(),
            identity: "a".into(),
            lease_duration: Duration::from_millis(ms),
            renew_interval: Duration::from_millis(100),
        };
        assert_eq!(cfg(15_000).lease_seconds(), 15);
        assert_eq!(cfg(2_500).lease_seconds(), 3);
        assert_eq!(cfg(10).lease_seconds(), 1);
    }

    #[test]
    fn leader_is_ready_and_standby_only_while_it_reaches_the_api_server() {
        let now = Instant::now();
        let fresh = Duration::from_secs(15);
        assert_eq!(readiness(Role::Leader, None, now, fresh), Ok(()));
        assert!(readiness(Role::Starting, Some(now), now, fresh).is_err());
        assert!(readiness(Role::Stopping, Some(now), now, fresh).is_err());
        assert!(readiness(Role::Standby, None, now, fresh).is_err());
        let later = now + Duration::from_secs(10);
        assert_eq!(readiness(Role::Standby, Some(now), later, fresh), Ok(()));
        let much_later = now + Duration::from_secs(16);
        let err = readiness(Role::Standby, Some(now), much_later, fresh).unwrap_err();
        assert!(err.contains("not reached the API server"), "{err}");
    }
}
