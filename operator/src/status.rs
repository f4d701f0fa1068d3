//! `Ready` conditions and status bookkeeping shared by both reconcilers.

use crate::crd::Condition;

pub const READY: &str = "Ready";

/// Why a resource is or is not Ready (the condition's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Reconciled,
    NoBrokers,
    LookupdUnavailable,
    BrokerUnreachable,
    InvalidName,
    TopicNotFound,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Reconciled => "Reconciled",
            Reason::NoBrokers => "NoBrokers",
            Reason::LookupdUnavailable => "LookupdUnavailable",
            Reason::BrokerUnreachable => "BrokerUnreachable",
            Reason::InvalidName => "InvalidName",
            Reason::TopicNotFound => "TopicNotFound",
        }
    }

    pub fn is_ready(self) -> bool {
        self == Reason::Reconciled
    }
}

/// The new Ready condition; its transition time moves only when the status does.
pub fn ready(
    previous: &[Condition],
    generation: Option<i64>,
    reason: Reason,
    message: String,
) -> Condition {
    let status = if reason.is_ready() { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == READY && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(now_rfc3339);
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.as_str().into(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_kept_while_status_holds() {
        let first = ready(&[], Some(1), Reason::Reconciled, "ok".into());
        assert_eq!(
            (first.status.as_str(), first.reason.as_str()),
            ("True", "Reconciled")
        );
        let mut old = first.clone();
        old.last_transition_time = "2020-01-01T00:00:00Z".into();
        let again = ready(&[old.clone()], Some(2), Reason::Reconciled, "ok".into());
        assert_eq!(again.last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(again.observed_generation, Some(2));
        let down = ready(&[old], Some(2), Reason::BrokerUnreachable, "x".into());
        assert_eq!(down.status, "False");
        assert_ne!(down.last_transition_time, "2020-01-01T00:00:00Z");
    }
}
