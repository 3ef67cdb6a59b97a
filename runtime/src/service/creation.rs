//! The steps a creation takes after CreateOpportunity answered: the solutions to
//! associate and the submission, each a step of its own, followed in the store.
//!
//! The opportunity's id goes on the deal first (the pack's `on_success`, with the
//! create's answer), so that a step that fails never leaves an opportunity without
//! its deal, and a later edit never looks for it again. The steps then run in order;
//! what is done is written down before the next begins, so a retry, a later batch or
//! a restarted service goes on from there, never making a second opportunity,
//! association or submission. A submission waits while the opportunity's stage does
//! not allow one ([`pcsync_engine::readiness::submission`]), and its task is followed
//! across batches until AWS ends it. When the steps end, the pack settles again with
//! the whole answer (`result.Submission`) or with the step's failure (`on_error`), so
//! that it reaches the deal.
//!
//! The record is kept as a pending settle (versioned JSON) under [`key`], per deal and
//! pack rather than per event: any later event that starts the pack about the deal
//! finds it.

use std::time::Duration;

use pcsync_engine::Effect;
use pcsync_engine::plan::Submission;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What is left of a creation's steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Creation {
    /// The format's version (1).
    pub v: u32,
    /// The pack run's planned writes (the settle reads their fields).
    pub planned: Vec<Effect>,
    /// CreateOpportunity's answer (`Id`…).
    pub created: Value,
    /// The solutions not yet associated, in order.
    pub associate: Vec<String>,
    /// The submission, when the pack submits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<SubmissionStep>,
    /// Whether the deal was told the submission waits for the stage (told once).
    #[serde(default)]
    pub told_waiting: bool,
    /// How the steps ended, once they did: the settle that is still to be done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
}

/// The submission step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionStep {
    /// StartEngagementFromOpportunityTask's token: always sent with the same body.
    pub client_token: String,
    /// How to submit.
    pub submission: Submission,
    /// The task AWS started, as last read; `None` until it is started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Value>,
    /// How many times the running task was looked at (the next look waits longer).
    #[serde(default)]
    pub looks: u32,
}

/// How a creation's steps ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Ended {
    /// Every step succeeded: the create's answer with `Submission`, the task as it
    /// ended.
    Success(Value),
    /// A step failed for good.
    Failure(String),
}

impl Creation {
    /// The steps that follow `create` (a CreateOpportunity) which answered `created`;
    /// `None` when it has none.
    pub fn after(planned: &[Effect], create: &Effect, created: &Value) -> Option<Creation> {
        let Effect::CreateOpportunity {
            client_token,
            associate_solutions,
            start_engagement,
            ..
        } = create
        else {
            return None;
        };
        if associate_solutions.is_empty() && start_engagement.is_none() {
            return None;
        }
        Some(Creation {
            v: 1,
            planned: planned.to_vec(),
            created: created.clone(),
            associate: associate_solutions.clone(),
            submission: start_engagement.clone().map(|submission| SubmissionStep {
                client_token: format!("{client_token}-submit"),
                submission,
                task: None,
                looks: 0,
            }),
            told_waiting: false,
            ended: None,
        })
    }

    /// The new opportunity's id.
    pub fn opportunity_id(&self) -> &str {
        self.created["Id"].as_str().unwrap_or_default()
    }

    /// The record as stored.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a creation serialises")
    }

    /// A stored record; `None` for one of another version or shape.
    pub fn decode(text: &str) -> Option<Creation> {
        serde_json::from_str::<Creation>(text)
            .ok()
            .filter(|c| c.v == 1)
    }
}

/// Where a deal's creation steps by `pack` are kept.
pub fn key(deal_id: &str, pack: &str) -> String {
    format!("creation|{deal_id}|{pack}")
}

/// How long before a running submission task is looked at again, after `looks`
/// looks: 1 s, doubling to a minute. AWS gives no figure for how long a task runs.
pub fn task_recheck(looks: u32) -> Duration {
    Duration::from_secs(1u64 << looks.min(6)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_creation_round_trips_and_names_its_submission_token() {
        let create = Effect::CreateOpportunity {
            pack: "deal-creation".into(),
            client_token: "hubspot-deal-7".into(),
            deal_id: "7".into(),
            fields: vec![],
            associate_solutions: vec!["S-1".into()],
            start_engagement: Some(Submission {
                involvement_type: "Co-Sell".into(),
                visibility: "Full".into(),
            }),
        };
        let c =
            Creation::after(std::slice::from_ref(&create), &create, &json!({"Id": "O1"})).unwrap();
        assert_eq!(c.opportunity_id(), "O1");
        assert_eq!(
            c.submission.as_ref().unwrap().client_token,
            "hubspot-deal-7-submit"
        );
        assert_eq!(Creation::decode(&c.encode()), Some(c));
        assert_eq!(Creation::decode(r#"{"v":2}"#), None);
        assert_eq!(task_recheck(0), Duration::from_secs(1));
        assert_eq!(task_recheck(3), Duration::from_secs(8));
        assert_eq!(task_recheck(40), Duration::from_secs(60));
    }
}
