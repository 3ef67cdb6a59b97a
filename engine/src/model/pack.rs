use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Channels, CreateOpportunity, CurrencyConversion, Effects, FieldPath, ImmutabilityRule,
    JsonPathExpr, Mapping, Needs, Notification, Rhai, Triggers, UpdateOpportunity,
};

/// A rule pack: one flow of pcsync (deal creation, deal update sync, snapshot sync,
/// notifications…) in one YAML file. pcsync runs every enabled pack whose trigger
/// matches an event: it loads what the pack `needs`, checks the guards in `when`,
/// applies `map` and `set` (within the `immutable` rules), compares `watch`ed values
/// with the last-known state to decide which `notify` rules fire, and finally runs
/// `on_success` or `on_error`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePack {
    /// The pack's unique name, in kebab-case (`deal-update-sync`). It appears in logs,
    /// traces, metrics and test reports.
    #[schemars(regex(pattern = r"^[a-z0-9]+(-[a-z0-9]+)*$"), length(max = 64))]
    #[serde(rename = "pack")]
    pub name: String,

    /// What the pack does, for the people who maintain it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    /// Set to `false` to switch the pack off without deleting it.
    #[serde(default = "enabled_default")]
    pub enabled: bool,

    /// What starts the pack: a HubSpot webhook, a Partner Central EventBridge event or
    /// a schedule. One trigger, or a list of them.
    pub on: Triggers,

    /// What the pack needs loaded before it runs.
    #[serde(default)]
    pub needs: Needs,

    /// Named numbers RevOps tune (score thresholds, ratios). Refer to them by name in
    /// conditions (`increased_by: score_change`), in Rhai (`thresholds.score_change`)
    /// and in templates (`{{ thresholds.high_score }}`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub thresholds: IndexMap<String, f64>,

    /// Named values of any kind (switches, lists, tables such as an icon per
    /// template). Available as `settings.NAME` in Rhai and templates.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "IndexMap<String, serde_json::Value>")]
    pub settings: IndexMap<String, serde_json::Value>,

    /// Guards, checked in order before anything else: the first whose `if` is true
    /// stops the pack for this event, with its `skip` reason in the trace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Guard>,

    /// Property mappings, keyed by HubSpot deal property. `to:` sends the property to
    /// a Partner Central field; `from:` brings a Partner Central field into the
    /// property.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub map: IndexMap<String, Mapping>,

    /// Convert amounts in currencies Partner Central does not take, at rates RevOps
    /// maintain, instead of leaving them unsent. Applies to the mappings to
    /// `Project.ExpectedCustomerSpend[N].CurrencyCode` and `…[N].Amount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert_currency: Option<CurrencyConversion>,

    /// Fixed or templated values for Partner Central fields, keyed by field path
    /// (`Origin: Partner Referral`, `Project.Title: "{{ deal.dealname }}"`). A
    /// template that renders empty sends nothing.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "IndexMap<FieldPath, serde_json::Value>")]
    pub set: IndexMap<String, serde_json::Value>,

    /// Present when the pack creates the opportunity (CreateOpportunity) rather than
    /// updating the linked one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<CreateOpportunity>,

    /// For a pack that updates the linked opportunity: your partner type and what to
    /// do while an update lacks a value AWS requires of it. Without it, such an
    /// update is skipped (the trace and logs say what is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateOpportunity>,

    /// What may not be written while the opportunity is in a given review status or
    /// stage, and what to do instead. Checked in order; every matching rule applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub immutable: Vec<ImmutabilityRule>,

    /// Values compared with the last-known state, by name, each a JSONPath into the
    /// context. Notification conditions refer to these names.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub watch: IndexMap<String, JsonPathExpr>,

    /// Notification rules: when each fires, how urgent it is, and what it says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Notification>,

    /// How notifications are delivered: HubSpot tasks, HubSpot notes, SNS.
    #[serde(default)]
    pub channels: Channels,

    /// Effects after the pack's writes succeeded.
    #[serde(default)]
    pub on_success: Effects,

    /// Effects after the pack's writes failed for good (after retries).
    #[serde(default)]
    pub on_error: Effects,
}

fn enabled_default() -> bool {
    true
}

/// A guard: when `if` is true, the pack stops for this event.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// A Rhai boolean expression, e.g. `deal.aws_opportunity_id == ""`.
    #[serde(rename = "if")]
    pub condition: Rhai,
    /// Why the pack stops, as the trace and logs will say it.
    pub skip: String,
}
