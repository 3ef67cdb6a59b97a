use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Rhai, Template};

/// Effects run after the pack's writes: properties to set on the deal and a note.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Effects {
    /// Deal properties to set, each a template (`aws_sync_status: synced`,
    /// `aws_last_sync_date: "{{ now }}"`). After a sync, `not_sent` lists the mapped
    /// fields left out because Partner Central would refuse them (`field`, `label`,
    /// `reason`: a currency other than USD or EUR, a close date in the past).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub set_deal: IndexMap<String, Template>,
    /// A note to add to the deal. After a sync, `changes` lists what changed
    /// (`field`, `old`, `new`); after a failure, `error.message` says why. A note
    /// that renders empty is not added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Template>,
}

/// How the pack creates an opportunity (CreateOpportunity).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOpportunity {
    /// The idempotency token: the same deal must always give the same token, so that
    /// a redelivered webhook never creates a second opportunity.
    #[serde(default = "client_token_default")]
    pub client_token: Template,
    /// Solutions (`S-…`) to associate with the new opportunity (AssociateOpportunity).
    /// Empty values are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associate_solutions: Vec<Template>,
    /// Submit the opportunity to AWS (StartEngagementFromOpportunityTask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_engagement: Option<StartEngagement>,
    /// While the deal lacks a value AWS requires of a new opportunity (its field
    /// matrix: company name, website, country, postal code, industry, close date…),
    /// pcsync makes no call and does this instead: sets these deal properties and adds
    /// this note, with `missing` (what is missing, as a rep reads it: `Postal Code`)
    /// and `missing_fields` (the Partner Central fields). The note is added only when
    /// a `set_deal` value changes, so a rep hears once per new list, not per edit.
    /// The opportunity is created at the first event that finds nothing missing.
    #[serde(default)]
    pub incomplete: Effects,
}

/// How the pack's updates meet what AWS's field matrix asks of an UpdateOpportunity
/// in some situations: the partner's CRM id on every update (row
/// `partnerCrmUniqueIdentifier`), every spend item whole (the service model), and, from
/// a consulting partner, the customer's AWS account id when the opportunity moves to
/// Launched (row `awsAccountId`). While an update lacks one of these, pcsync sends
/// nothing (AWS would refuse it) and does `incomplete` instead; the update is sent at
/// the first event that finds nothing missing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOpportunity {
    /// Your AWS partner account's kind, as the field matrix tells them apart: a
    /// `consulting` partner must give the customer's AWS account id
    /// (`Customer.Account.AwsAccountId`) when an opportunity moves to Launched.
    #[serde(default)]
    pub partner_type: PartnerType,
    /// While an update lacks a value AWS requires of it, pcsync makes no call and does
    /// this instead: sets these deal properties and adds this note, with `missing`
    /// (as a rep reads it: `Customer AWS Account ID`) and `missing_fields` (the
    /// Partner Central fields). The note is added only when a `set_deal` value
    /// changes, so a rep hears once per new list, not per edit.
    #[serde(default)]
    pub incomplete: Effects,
}

/// The kind of AWS partner account, where AWS's field matrix tells them apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnerType {
    /// An independent software vendor.
    #[default]
    Isv,
    /// A consulting partner (services): AWS asks it for the customer's AWS account
    /// id at Launched.
    Consulting,
}

fn client_token_default() -> Template {
    Template("hubspot-deal-{{ deal.id }}".to_string())
}

/// Submission to AWS after creation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartEngagement {
    /// Submit only when this Rhai condition holds (e.g. `settings.submit_to_aws`).
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Rhai>,
    /// `Co-Sell` or `For Visibility Only`.
    pub involvement_type: InvolvementType,
    /// `Full` or `Limited`.
    #[serde(default)]
    pub visibility: Visibility,
}

/// Partner Central's `SalesInvolvementType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InvolvementType {
    /// Ask AWS to co-sell.
    #[serde(rename = "Co-Sell")]
    CoSell,
    /// Share for visibility only.
    #[serde(rename = "For Visibility Only")]
    ForVisibilityOnly,
}

/// Partner Central's `Visibility`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Visibility {
    /// Full visibility.
    #[default]
    Full,
    /// Limited visibility.
    Limited,
}
