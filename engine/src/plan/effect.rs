//! What a plan asks the runtime to do.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trace::TraceStep;

/// The outcome of planning one event: the effects to perform, in order, and how each
/// pack decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Effects, pack by pack in file order.
    pub effects: Vec<Effect>,
    /// Which pack and rule decided what.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<TraceStep>,
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

/// Submission after creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// `Co-Sell` or `For Visibility Only`.
    pub involvement_type: String,
    /// `Full` or `Limited`.
    pub visibility: String,
}

/// A typed effect. Every effect names the pack that planned it.
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
    },
    /// Create an opportunity (CreateOpportunity), then associate solutions and
    /// optionally submit it.
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
    /// Hold the pack's writes until the opportunity is editable again.
    Defer {
        /// The pack.
        pack: String,
        /// Why.
        reason: String,
        /// The review statuses that block it now.
        while_status: Vec<String>,
    },
    /// The pack did nothing for this event, and why.
    Skip {
        /// The pack.
        pack: String,
        /// Why.
        reason: String,
    },
    /// The pack's writes failed for a reason retries cannot fix: dead-letter it.
    Fail {
        /// The pack.
        pack: String,
        /// Why.
        reason: String,
    },
    /// Remember watched values and sent notifications for the next comparison.
    RecordState {
        /// The pack.
        pack: String,
        /// The opportunity the state belongs to.
        opportunity_id: String,
        /// Watched values now.
        watches: IndexMap<String, Value>,
        /// Per watch, the value thresholds measure from next time.
        #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
        marks: IndexMap<String, Value>,
        /// Notification keys sent by this plan.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sent: Vec<String>,
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
            | Effect::Publish { pack, .. }
            | Effect::Defer { pack, .. }
            | Effect::Skip { pack, .. }
            | Effect::Fail { pack, .. }
            | Effect::RecordState { pack, .. } => pack,
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
            Effect::Publish { .. } => "Publish",
            Effect::Defer { .. } => "Defer",
            Effect::Skip { .. } => "Skip",
            Effect::Fail { .. } => "Fail",
            Effect::RecordState { .. } => "RecordState",
        }
    }
}
