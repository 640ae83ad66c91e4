//! Building `metav1.Condition`s the way API conventions ask: `observedGeneration` on each, and
//! a `lastTransitionTime` that moves only when the status really flips.

use gatehouse_crd::condition::ConditionStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition as the reconcile core decides it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    pub fn new(
        type_: &'static str,
        ok: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Verdict {
            type_,
            ok,
            reason,
            message: message.into(),
        }
    }
}

/// Turns verdicts into conditions, keeping each previous `lastTransitionTime` whose status did
/// not change.
pub fn to_conditions(
    verdicts: &[Verdict],
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    verdicts
        .iter()
        .map(|v| {
            let status = ConditionStatus::from_bool(v.ok).as_str();
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == v.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: v.type_.to_string(),
                status: status.to_string(),
                reason: v.reason.to_string(),
                message: v.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Sets one condition in place (keeping its transition time unless the status flips).
pub fn set(
    conditions: &mut Vec<Condition>,
    verdict: &Verdict,
    generation: Option<i64>,
    now: &Time,
) {
    let updated = to_conditions(std::slice::from_ref(verdict), conditions, generation, now);
    conditions.retain(|c| c.type_ != verdict.type_);
    conditions.extend(updated);
}

/// The condition of a type, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_a_flip() {
        let v = [Verdict::new("Ready", true, "Reconciled", "ok")];
        let first = to_conditions(&v, &[], Some(1), &at(100));
        assert_eq!(first[0].last_transition_time, at(100));
        let same = to_conditions(
            &[Verdict::new("Ready", true, "Reconciled", "other message")],
            &first,
            Some(2),
            &at(200),
        );
        assert_eq!(
            same[0].last_transition_time,
            at(100),
            "same status keeps the time"
        );
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = to_conditions(
            &[Verdict::new("Ready", false, "X", "no")],
            &same,
            Some(2),
            &at(300),
        );
        assert_eq!(flipped[0].last_transition_time, at(300));
        assert_eq!(flipped[0].status, "False");
    }
}
