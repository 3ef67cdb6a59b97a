use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{FieldPath, ReviewStatus, Stage};

/// What may not be written while the opportunity is in a given state. The rule
/// applies when the opportunity's review status is one of `review_status` and its
/// stage one of `stage` (an empty list matches any). Which fields it covers: all of
/// them, every field except those in `only`, or just those in `locked`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImmutabilityRule {
    /// Review statuses this rule applies in (`Submitted`, `In review`, `Action Required`…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub review_status: Vec<ReviewStatus>,
    /// Stages this rule applies in (`Launched`, `Closed Lost`…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage: Vec<Stage>,
    /// A whitelist: only these fields may change; every other field is covered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<FieldPath>,
    /// These fields are covered (frozen); the others may change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<FieldPath>,
    /// What happens to a write this rule covers.
    pub then: ImmutableAction,
    /// Why, in words, for the trace and the deal's sync status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What happens to a covered write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImmutableAction {
    /// Leave the covered fields out; the rest of the update goes ahead.
    SkipField,
    /// Hold the whole update and apply it once the opportunity is editable again.
    Defer,
    /// Drop the whole update, with the reason in the trace.
    Skip,
    /// Fail the update (it goes to the dead-letter list with the reason).
    Fail,
}
