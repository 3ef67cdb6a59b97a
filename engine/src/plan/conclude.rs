//! The one settle policy: how a pack's run ends once its writes have been tried.
//! `simulate` (for `pcsync test`, golden files and `eval`) and the runtime's worker
//! both ask [`conclude`], so they cannot disagree about what follows a plan.

use serde_json::Value;

use super::effect::{PackPlan, Verdict};
use crate::context::StateRecord;

/// How a pack's writes ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every write succeeded; `result` is what the writes returned (CreateOpportunity's
    /// `Id`, say).
    Success {
        /// The response of the write.
        result: Value,
    },
    /// A write failed for good.
    Failure {
        /// Why.
        message: String,
    },
}

/// How a pack's run ends, for the runtime to carry out.
#[derive(Debug, Clone, PartialEq)]
pub struct Conclusion<'a> {
    /// Which follow-ups run: `on_success` for a success, `on_error` for a failure,
    /// none at all.
    pub follow_up: Option<Outcome>,
    /// What becomes of the event.
    pub ending: Ending,
    /// The state to record, if any.
    pub record: Option<&'a StateRecord>,
}

/// What becomes of the event a pack ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Applied.
    Done,
    /// Held until the opportunity is editable again, then planned afresh.
    Deferred(String),
    /// Parked in the dead-letter list with the reason.
    Failed(String),
}

/// Decides how `plan` ends when its writes ended as `writes` says (ignored when the
/// plan has no writes; retryable failures never get here: the runtime retries).
///
/// - A `Fail` verdict, or a write that failed for good: `on_error`, dead letter, no
///   state recorded.
/// - `Skip` and `Defer`: writes made on the way stand, nothing settles; the event is
///   done or deferred.
/// - `Proceed`: `on_success` (with the writes' result, or `{}` when the pack had
///   nothing to write: a poll that found nothing new still polled), and the state is
///   recorded.
pub fn conclude<'a>(plan: &'a PackPlan, writes: &Outcome) -> Conclusion<'a> {
    let failed = |message: &str| Conclusion {
        follow_up: Some(Outcome::Failure {
            message: message.to_string(),
        }),
        ending: Ending::Failed(message.to_string()),
        record: None,
    };
    // A pack with nothing to write succeeded at it.
    let nothing_to_write = Outcome::Success {
        result: Value::Object(Default::default()),
    };
    let written = if plan.writes.is_empty() {
        &nothing_to_write
    } else {
        writes
    };
    let record = plan.state.as_ref();
    match (&plan.verdict, written) {
        (Verdict::Fail { reason }, _) => failed(reason),
        (_, Outcome::Failure { message }) => failed(message),
        (Verdict::Skip { .. }, _) => Conclusion {
            follow_up: None,
            ending: Ending::Done,
            record,
        },
        (Verdict::Defer { reason, .. }, _) => Conclusion {
            follow_up: None,
            ending: Ending::Deferred(reason.clone()),
            record,
        },
        (Verdict::Proceed, success) => Conclusion {
            follow_up: Some(success.clone()),
            ending: Ending::Done,
            record,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Effect;

    fn note() -> Effect {
        Effect::CreateNote {
            pack: "p".into(),
            deal_id: "1".into(),
            body: "`Galactic` is not a stage AWS knows".into(),
        }
    }

    fn plan(verdict: Verdict, writes: Vec<Effect>) -> PackPlan {
        PackPlan {
            pack: "p".into(),
            verdict,
            writes,
            state: Some(StateRecord {
                opportunity_id: "O1".into(),
                ..StateRecord::default()
            }),
            trace: Vec::new(),
        }
    }

    fn ok() -> Outcome {
        Outcome::Success {
            result: Value::Null,
        }
    }

    fn failed(message: &str) -> Outcome {
        Outcome::Failure {
            message: message.into(),
        }
    }

    #[test]
    fn a_note_on_the_way_to_a_skip_settles_nothing() {
        // An unmapped value's note, then "no field changed": the note is not a sync,
        // so no on_success in `pcsync test` nor in the service.
        let p = plan(
            Verdict::Skip {
                reason: "no field changed".into(),
            },
            vec![note()],
        );
        let c = conclude(&p, &ok());
        assert_eq!(c.follow_up, None);
        assert_eq!(c.ending, Ending::Done);
    }

    #[test]
    fn a_deferred_pack_whose_note_failed_for_good_fails() {
        // The service used to defer such a batch and the simulation to settle
        // nothing: both now dead-letter it with on_error.
        let p = plan(
            Verdict::Defer {
                reason: "AWS is reviewing".into(),
                while_status: vec!["Submitted".into()],
            },
            vec![note()],
        );
        let c = conclude(&p, &failed("HubSpot refused the note"));
        assert_eq!(c.follow_up, Some(failed("HubSpot refused the note")));
        assert_eq!(c.ending, Ending::Failed("HubSpot refused the note".into()));
        assert_eq!(c.record, None, "a failed run records no state");
        let c = conclude(&p, &ok());
        assert_eq!(c.follow_up, None);
        assert_eq!(c.ending, Ending::Deferred("AWS is reviewing".into()));
    }

    #[test]
    fn a_failed_verdict_runs_on_error_whatever_the_writes_did() {
        let p = plan(
            Verdict::Fail {
                reason: "`amount`: `lots` is not a number".into(),
            },
            Vec::new(),
        );
        let c = conclude(&p, &ok());
        assert_eq!(
            c.follow_up,
            Some(failed("`amount`: `lots` is not a number"))
        );
        assert!(matches!(c.ending, Ending::Failed(_)));
        assert_eq!(c.record, None);
    }

    #[test]
    fn proceeding_settles_with_the_writes_outcome_and_records_state() {
        let p = plan(Verdict::Proceed, vec![note()]);
        let c = conclude(&p, &ok());
        assert_eq!(c.follow_up, Some(ok()));
        assert_eq!(c.ending, Ending::Done);
        assert_eq!(c.record, p.state.as_ref());
        let c = conclude(&p, &failed("403"));
        assert_eq!(c.ending, Ending::Failed("403".into()));
        assert_eq!(c.record, None);
        // Nothing to write is still a run that did its job (a poll that found
        // nothing new): on_success, with an empty result, whatever was simulated.
        let quiet = plan(Verdict::Proceed, Vec::new());
        let c = conclude(&quiet, &failed("not used"));
        assert_eq!(
            c.follow_up,
            Some(Outcome::Success {
                result: Value::Object(Default::default())
            })
        );
        assert_eq!(c.ending, Ending::Done);
    }
}
