use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a pack needs loaded before it runs. pcsync fetches exactly this, so a pack
/// that does not name the opportunity never costs a Partner Central read.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Needs {
    /// HubSpot deal properties to load (`dealname`, `hubspot_owner_id`…). The deal's
    /// `id` is always there. For events from Partner Central, the deal is found by the
    /// opportunity's `PartnerOpportunityIdentifier`, else by the `link_property`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deal: Vec<String>,
    /// HubSpot company properties to load from the deal's primary company (through
    /// the deal's company associations), as `company` (`company.name`,
    /// `company.domain`…), and for mappings keyed `company.<property>`. The company's
    /// `id` is always there when the deal has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub company: Vec<String>,
    /// Load the linked opportunity with GetOpportunity (`opportunity.LifeCycle.Stage`…).
    #[serde(default)]
    pub opportunity: bool,
    /// Load the AWS-side view with GetAwsOpportunitySummary
    /// (`aws_summary.Insights.EngagementScore`, `aws_summary.OpportunityTeam`…).
    /// AWS keeps none before submission: a run without one is skipped only when
    /// something other than a watch reads it (a mapping, a script, a template);
    /// watches over it keep their last-known values and the others run.
    #[serde(default)]
    pub aws_summary: bool,
    /// Load the last-known state pcsync stored for this opportunity (`previous`), for
    /// change detection.
    #[serde(default)]
    pub previous: bool,
    /// Load the opportunity's engagement resource snapshots with these template names
    /// (`OpportunitySummaryView`, `AwsOpportunitySummaryFullView`), as `snapshots`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    /// The deal property that holds the Partner Central opportunity id.
    #[serde(default = "link_property_default")]
    pub link_property: String,
}

impl Default for Needs {
    fn default() -> Self {
        Needs {
            deal: Vec::new(),
            company: Vec::new(),
            opportunity: false,
            aws_summary: false,
            previous: false,
            snapshots: Vec::new(),
            link_property: link_property_default(),
        }
    }
}

fn link_property_default() -> String {
    "aws_opportunity_id".to_string()
}
