//! What a plan asks the runtime to do (the writes, [`Effect`]), how each pack decided
//! ([`Verdict`]), and the report of both ([`Plan`]).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trace::TraceStep;
use crate::context::{Context, StateRecord};

/// What planning and settling one event came to, as `pcsync test`, `pcsync eval` and
/// golden files show it: per triggered pack in file order, its writes, its verdict
/// when it did not proceed, the state it records, then its follow-ups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Entries, pack by pack in file order.
    pub effects: Vec<PlanEntry>,
    /// Which pack and rule decided what.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<TraceStep>,
}

impl Plan {
    /// Applies what a later event would see changed: recorded state and deal property
    /// updates. Plays a timeline of events in golden files and `pcsync eval`, as the
    /// runtime's store and HubSpot would between events.
    pub fn apply_to(&self, ctx: &mut Context) {
        for entry in &self.effects {
            match entry {
                PlanEntry::Decision(Decision::RecordState { pack, record }) => {
                    ctx.previous.entry(pack.clone()).or_default().merge(record)
                }
                PlanEntry::Write(Effect::UpdateDeal { properties, .. }) => {
                    if let Some(deal) = &mut ctx.deal {
                        for (k, v) in properties {
                            deal.properties.insert(k.clone(), Value::String(v.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// One line of a [`Plan`]: a write, or what a pack decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlanEntry {
    /// A remote write.
    Write(Effect),
    /// A verdict other than proceed, or the state a pack records.
    Decision(Decision),
}

impl PlanEntry {
    /// The pack the entry belongs to.
    pub fn pack(&self) -> &str {
        match self {
            PlanEntry::Write(e) => e.pack(),
            PlanEntry::Decision(
                Decision::Defer { pack, .. }
                | Decision::Skip { pack, .. }
                | Decision::Fail { pack, .. }
                | Decision::RecordState { pack, .. },
            ) => pack,
        }
    }
}

/// How a pack's run ended other than by proceeding, and the state it records, as a
/// [`Plan`] shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Decision {
    /// The pack's writes wait until the opportunity is editable again.
    Defer {
        /// The pack.
        pack: String,
        /// Why.
        reason: String,
        /// The review statuses that block it now.
        while_status: Vec<String>,
    },
    /// The pack did nothing more for this event, and why.
    Skip {
        /// The pack.
        pack: String,
        /// Why.
        reason: String,
    },
    /// The pack failed for a reason retries cannot fix: nothing it planned is
    /// written, the event is dead-lettered, and `on_error` runs.
    Fail {
        /// The pack.
        pack: String,
        /// Why.
        reason: String,
    },
    /// Watched values and sent notifications remembered for the next comparison.
    RecordState {
        /// The pack.
        pack: String,
        /// What is recorded.
        #[serde(flatten)]
        record: StateRecord,
    },
}

/// How one pack decided to end its run.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Its writes are what it does.
    Proceed,
    /// Nothing (more) to do for this event; writes made on the way (a note about an
    /// unmapped value, what a creation still lacks) stand, but nothing settles.
    Skip {
        /// Why.
        reason: String,
    },
    /// The opportunity is not editable now: the event waits and is planned again.
    Defer {
        /// Why.
        reason: String,
        /// The review statuses that block it now.
        while_status: Vec<String>,
    },
    /// Failed for good: no writes, `on_error`, dead letter.
    Fail {
        /// Why.
        reason: String,
    },
}

/// The typed result of planning one pack for one event: everything the runtime needs
/// to carry it out, and everything [`super::conclude`] needs to say how it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct PackPlan {
    /// The pack's name.
    pub pack: String,
    /// How the pack decided.
    pub verdict: Verdict,
    /// The remote writes, in order (none when the verdict is `Fail`).
    pub writes: Vec<Effect>,
    /// The state to record once the writes succeed.
    pub state: Option<StateRecord>,
    /// Which rule decided what.
    pub trace: Vec<TraceStep>,
}

impl PackPlan {
    /// The verdict as a [`Plan`] line (none for proceed).
    pub fn decision(&self) -> Option<Decision> {
        let pack = self.pack.clone();
        match &self.verdict {
            Verdict::Proceed => None,
            Verdict::Skip { reason } => Some(Decision::Skip {
                pack,
                reason: reason.clone(),
            }),
            Verdict::Defer {
                reason,
                while_status,
            } => Some(Decision::Defer {
                pack,
                reason: reason.clone(),
                while_status: while_status.clone(),
            }),
            Verdict::Fail { reason } => Some(Decision::Fail {
                pack,
                reason: reason.clone(),
            }),
        }
    }
}

/// One field change of an opportunity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The Partner Central field path (`LifeCycle.Stage`).
    pub field: String,
    /// The value before (absent on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The value to write.
    pub new: Value,
}

/// A field the pack mapped but does not send, and why (a value Partner Central does
/// not take, such as a currency other than USD or EUR or a close date in the past).
/// `on_success` templates read these as `not_sent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotSent {
    /// The Partner Central field path (`LifeCycle.TargetCloseDate`).
    pub field: String,
    /// What a sales rep calls it (`Target Close Date`).
    pub label: String,
    /// Why it was not sent, in words for the rep.
    pub reason: String,
}

/// Submission after creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// `Co-Sell` or `For Visibility Only`.
    pub involvement_type: String,
    /// `Full` or `Limited`.
    pub visibility: String,
}

/// A remote write. Every effect names the pack that planned it. A new kind of write
/// is added here, planned in [`super`], and performed by the runtime's executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    /// Change fields of an opportunity. UpdateOpportunity replaces the whole record,
    /// so the runtime reads the opportunity, applies these changes and sends it all
    /// back with its `LastModifiedDate`.
    UpdateOpportunity {
        /// The pack.
        pack: String,
        /// The opportunity id.
        id: String,
        /// The changes, in mapping order.
        changes: Vec<FieldChange>,
        /// Mapped fields left out of the update, with why.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_sent: Vec<NotSent>,
    },
    /// Create an opportunity (CreateOpportunity). Its solutions and its submission are
    /// steps of their own ([`Effect::AssociateOpportunity`], [`Effect::StartEngagement`]),
    /// taken by the runtime after the new id is on the deal, so that a step that fails
    /// never leaves an opportunity without its deal.
    CreateOpportunity {
        /// The pack.
        pack: String,
        /// The idempotency token derived from the deal.
        client_token: String,
        /// The deal it is created for.
        deal_id: String,
        /// Field values.
        fields: Vec<FieldChange>,
        /// Solutions to associate.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        associate_solutions: Vec<String>,
        /// Submit to AWS afterwards.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_engagement: Option<Submission>,
    },
    /// Add a note to a deal.
    CreateNote {
        /// The pack.
        pack: String,
        /// The deal.
        deal_id: String,
        /// The note text.
        body: String,
    },
    /// Create a task on a deal.
    CreateTask {
        /// The pack.
        pack: String,
        /// The deal.
        deal_id: String,
        /// The HubSpot owner it is assigned to (empty: unassigned).
        owner: String,
        /// `high`, `medium` or `low`.
        priority: String,
        /// When it is due (RFC 3339).
        due: String,
        /// The task subject.
        subject: String,
        /// The task body.
        body: String,
    },
    /// Set deal properties.
    UpdateDeal {
        /// The pack.
        pack: String,
        /// The deal.
        deal_id: String,
        /// Property values.
        properties: IndexMap<String, String>,
    },
    /// Associate a solution with an opportunity pcsync created (AssociateOpportunity).
    /// Never planned by a pack: the runtime takes it from a [`Effect::CreateOpportunity`]'s
    /// `associate_solutions` once the create answered with the opportunity's id, and
    /// performs it as a step of its own after the id is on the deal.
    AssociateOpportunity {
        /// The pack.
        pack: String,
        /// The opportunity id.
        opportunity_id: String,
        /// The solution (`S-…`).
        solution: String,
    },
    /// Submit an opportunity pcsync created (StartEngagementFromOpportunityTask).
    /// Never planned by a pack: the runtime takes it from a [`Effect::CreateOpportunity`]'s
    /// `start_engagement` once the opportunity's stage allows a submission
    /// ([`crate::readiness::submission`]), and follows the task it starts to its end.
    StartEngagement {
        /// The pack.
        pack: String,
        /// The opportunity id.
        opportunity_id: String,
        /// The idempotency token: the create's, with `-submit`. A retry sends it with
        /// the same body, so AWS answers the task it started before.
        client_token: String,
        /// How to submit.
        submission: Submission,
    },
    /// Publish a message (SNS).
    Publish {
        /// The pack.
        pack: String,
        /// The channel (`sns`).
        channel: String,
        /// The subject.
        subject: String,
        /// The message.
        message: String,
        /// Message attributes.
        attributes: IndexMap<String, String>,
    },
}

impl Effect {
    /// The pack that planned the effect.
    pub fn pack(&self) -> &str {
        match self {
            Effect::UpdateOpportunity { pack, .. }
            | Effect::CreateOpportunity { pack, .. }
            | Effect::CreateNote { pack, .. }
            | Effect::CreateTask { pack, .. }
            | Effect::UpdateDeal { pack, .. }
            | Effect::AssociateOpportunity { pack, .. }
            | Effect::StartEngagement { pack, .. }
            | Effect::Publish { pack, .. } => pack,
        }
    }

    /// The effect's kind as it appears in YAML and metrics (`UpdateOpportunity`).
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::UpdateOpportunity { .. } => "UpdateOpportunity",
            Effect::CreateOpportunity { .. } => "CreateOpportunity",
            Effect::CreateNote { .. } => "CreateNote",
            Effect::CreateTask { .. } => "CreateTask",
            Effect::UpdateDeal { .. } => "UpdateDeal",
            Effect::AssociateOpportunity { .. } => "AssociateOpportunity",
            Effect::StartEngagement { .. } => "StartEngagement",
            Effect::Publish { .. } => "Publish",
        }
    }
}
