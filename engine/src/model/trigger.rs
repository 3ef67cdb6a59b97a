use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DurationSpec;

/// One trigger or a list of them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Triggers {
    /// A single trigger.
    One(Trigger),
    /// Several triggers; any of them starts the pack.
    Many(Vec<Trigger>),
}

impl Triggers {
    /// The triggers as a slice.
    pub fn as_slice(&self) -> &[Trigger] {
        match self {
            Triggers::One(t) => std::slice::from_ref(t),
            Triggers::Many(ts) => ts,
        }
    }
}

/// What starts a pack. Name exactly one source: `hubspot`, `partnercentral` or
/// `schedule`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// A HubSpot webhook subscription type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hubspot: Option<HubSpotEvent>,
    /// A Partner Central EventBridge `detail-type` (source `aws.partnercentral-selling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partnercentral: Option<PartnerCentralEvent>,
    /// Run on a timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// With `hubspot: deal.propertyChange` (or `company.propertyChange`): only changes to these properties
    /// start the pack. Empty means any property.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<String>,
}

/// A HubSpot deal webhook subscription type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum HubSpotEvent {
    /// A deal was created.
    #[serde(rename = "deal.creation")]
    DealCreation,
    /// A deal property changed (one event per property).
    #[serde(rename = "deal.propertyChange")]
    DealPropertyChange,
    /// A deal was deleted.
    #[serde(rename = "deal.deletion")]
    DealDeletion,
    /// A deal's associations changed.
    #[serde(rename = "deal.associationChange")]
    DealAssociationChange,
    /// A deleted deal was restored.
    #[serde(rename = "deal.restore")]
    DealRestore,
    /// Deals were merged.
    #[serde(rename = "deal.merge")]
    DealMerge,
    /// A company property changed: the pack runs for each deal of the company (one
    /// event per property; `properties` filters them as for deals).
    #[serde(rename = "company.propertyChange")]
    CompanyPropertyChange,
}

impl HubSpotEvent {
    /// The subscription type as HubSpot spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            HubSpotEvent::DealCreation => "deal.creation",
            HubSpotEvent::DealPropertyChange => "deal.propertyChange",
            HubSpotEvent::DealDeletion => "deal.deletion",
            HubSpotEvent::DealAssociationChange => "deal.associationChange",
            HubSpotEvent::DealRestore => "deal.restore",
            HubSpotEvent::DealMerge => "deal.merge",
            HubSpotEvent::CompanyPropertyChange => "company.propertyChange",
        }
    }
}

/// A Partner Central EventBridge detail-type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PartnerCentralEvent {
    /// A new opportunity.
    #[serde(rename = "Opportunity Created")]
    OpportunityCreated,
    /// The opportunity or its AWS summary changed: review status, AWS team, scores.
    #[serde(rename = "Opportunity Updated")]
    OpportunityUpdated,
    /// AWS sent an engagement invitation (a referral).
    #[serde(rename = "Engagement Invitation Created")]
    EngagementInvitationCreated,
    /// An engagement invitation was accepted.
    #[serde(rename = "Engagement Invitation Accepted")]
    EngagementInvitationAccepted,
    /// An engagement invitation was rejected.
    #[serde(rename = "Engagement Invitation Rejected")]
    EngagementInvitationRejected,
    /// An engagement invitation expired after 15 days.
    #[serde(rename = "Engagement Invitation Expired")]
    EngagementInvitationExpired,
    /// A member joined an engagement.
    #[serde(rename = "Engagement Member Added")]
    EngagementMemberAdded,
    /// A new revision of an engagement resource snapshot.
    #[serde(rename = "Engagement Resource Snapshot Created")]
    EngagementResourceSnapshotCreated,
    /// An engagement was created.
    #[serde(rename = "Engagement Created")]
    EngagementCreated,
    /// An engagement was updated.
    #[serde(rename = "Engagement Updated")]
    EngagementUpdated,
}

impl PartnerCentralEvent {
    /// The detail-type as EventBridge spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerCentralEvent::OpportunityCreated => "Opportunity Created",
            PartnerCentralEvent::OpportunityUpdated => "Opportunity Updated",
            PartnerCentralEvent::EngagementInvitationCreated => "Engagement Invitation Created",
            PartnerCentralEvent::EngagementInvitationAccepted => "Engagement Invitation Accepted",
            PartnerCentralEvent::EngagementInvitationRejected => "Engagement Invitation Rejected",
            PartnerCentralEvent::EngagementInvitationExpired => "Engagement Invitation Expired",
            PartnerCentralEvent::EngagementMemberAdded => "Engagement Member Added",
            PartnerCentralEvent::EngagementResourceSnapshotCreated => {
                "Engagement Resource Snapshot Created"
            }
            PartnerCentralEvent::EngagementCreated => "Engagement Created",
            PartnerCentralEvent::EngagementUpdated => "Engagement Updated",
        }
    }
}

/// A timer. Runs are spread by a random jitter and never overlap.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// How often: `30m`, `4h`.
    pub every: DurationSpec,
    /// What each run goes over.
    #[serde(default)]
    pub for_each: ScheduleScope,
    /// Up to how much to shift each run at random, so that many packs do not fire at
    /// once. Defaults to a tenth of `every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<DurationSpec>,
    /// With `linked_deals`: also run for deals whose opportunity pcsync last saw
    /// `Launched` or `Closed Lost`. They are left out by default: nothing about them
    /// is worth a share of the daily read quota.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_closed: bool,
    /// With `linked_deals`: what each run reads from Partner Central, of what the
    /// pack `needs` (`opportunity`, `aws_summary`), for an opportunity pcsync has
    /// already read in full. Watches over what a run leaves unread keep their
    /// last-known values. This polls what no event announces (the AWS summary's
    /// scores and seller) without re-reading what `Opportunity Updated` events and
    /// `changed_opportunities` runs bring. Such a run goes over each opportunity
    /// before its last read is `every` old (opportunities never submitted have no
    /// summary and are left to events), and a closed one, with `include_closed`,
    /// at a quarter of that pace. Defaults to everything the pack needs, for every
    /// linked deal at each run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<Vec<PartnerCentralRead>>,
}

pub use crate::event::PartnerCentralRead;

/// What a scheduled run goes over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleScope {
    /// Every HubSpot deal linked to an opportunity (its link property is set).
    #[default]
    LinkedDeals,
    /// Every Partner Central opportunity changed since the previous run.
    ChangedOpportunities,
}
