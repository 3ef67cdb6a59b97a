use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, DurationSpec, Rhai, Template};

/// A notification rule: when it fires, how urgent it is, where it goes and what it
/// says. A notification is not repeated for the same change: its `key` (by default
/// the rule's name and the watched values) is remembered once sent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// The rule's name, unique in the pack (`score-up`, `approved`).
    pub name: String,
    /// When it fires. Leave out to fire for every item of `for_each`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// Fire once per item of a list in the context (`snapshots`); the item is `item`
    /// in conditions and templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// What makes two notifications the same, so the second is not sent, e.g.
    /// `{{ item.EngagementId }}/{{ item.Revision }}`. By default: the rule's name,
    /// the watched value's change (`approved:Submitted->Approved`) and, with
    /// `for_each`, the item; a rule with neither a watch nor `for_each` fires once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Template>,
    /// Keep the sent keys in this deal property (comma-separated) as well as in
    /// pcsync's state, so people can see them in HubSpot (`aws_synced_resources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember_in: Option<String>,
    /// How urgent: `high`, `medium` or `low`, or computed from conditions.
    pub priority: PrioritySpec,
    /// Where it goes. Defaults to every channel configured in `channels`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelKind>,
    /// A one-line title (task subject, first line of a note, SNS subject).
    pub title: Template,
    /// The body text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Template>,
}

/// A notification's priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Act today: a task due in 24 hours by default.
    High,
    /// Act soon.
    Medium,
    /// For information.
    Low,
}

impl Priority {
    /// The priority as written in packs and HubSpot (`high`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

/// A fixed priority, or conditions that choose one.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PrioritySpec {
    /// Always this priority.
    Fixed(Priority),
    /// The first of `high`, `medium`, `low` whose Rhai condition holds, else `otherwise`.
    Computed(PriorityRules),
}

/// Rhai conditions choosing a priority, tried in the order high, medium, low.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorityRules {
    /// `high` when this holds, e.g. `score.now >= thresholds.high_score`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<Rhai>,
    /// `medium` when this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<Rhai>,
    /// `low` when this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<Rhai>,
    /// The priority when none holds.
    pub otherwise: Priority,
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A HubSpot task on the deal, assigned to its owner.
    Task,
    /// A HubSpot note on the deal's timeline.
    Note,
    /// A message to the SNS topic in the service config (`notifications.sns_topic_arn`).
    Sns,
}

impl ChannelKind {
    /// The channel's name as written in packs.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Task => "task",
            ChannelKind::Note => "note",
            ChannelKind::Sns => "sns",
        }
    }
}

/// How the pack's notifications are delivered. Only the channels given here are used.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Channels {
    /// HubSpot tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskChannel>,
    /// HubSpot notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<NoteChannel>,
    /// Amazon SNS messages (only sent when the service config names a topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sns: Option<SnsChannel>,
}

/// HubSpot task settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskChannel {
    /// The HubSpot owner id the task is assigned to.
    #[serde(default = "assign_to_default")]
    pub assign_to: Template,
    /// When the task is due, by priority.
    #[serde(default)]
    pub due: DueTimes,
    /// The task body; defaults to the notification's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Template>,
}

fn assign_to_default() -> Template {
    Template("{{ deal.hubspot_owner_id }}".to_string())
}

/// Task due times by priority.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DueTimes {
    /// Due time for high priority. Default 24h.
    #[serde(default = "due_high")]
    pub high: DurationSpec,
    /// Due time for medium priority. Default 3d.
    #[serde(default = "due_later")]
    pub medium: DurationSpec,
    /// Due time for low priority. Default 3d.
    #[serde(default = "due_later")]
    pub low: DurationSpec,
}

impl Default for DueTimes {
    fn default() -> Self {
        DueTimes {
            high: due_high(),
            medium: due_later(),
            low: due_later(),
        }
    }
}

fn due_high() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(24 * 3600))
}

fn due_later() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(3 * 24 * 3600))
}

/// HubSpot note settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteChannel {
    /// The note body; defaults to the title, a blank line and the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Template>,
}

/// SNS message settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnsChannel {
    /// The message subject; defaults to the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Template>,
    /// The message; defaults to the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Template>,
    /// SNS message attributes (string values), e.g. `dealId: "{{ deal.id }}"`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub attributes: IndexMap<String, Template>,
}
