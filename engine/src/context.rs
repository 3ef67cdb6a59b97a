//! The context a pack is evaluated in: what the runtime loaded for the event. Shapes
//! are the remote APIs' own: the deal as HubSpot's CRM API returns it, the opportunity
//! as GetOpportunity returns it, the AWS summary as GetAwsOpportunitySummary returns
//! it, and the last-known state pcsync stored.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything loaded for one event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// The HubSpot deal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal: Option<DealSnapshot>,
    /// The deal's primary company, when the pack needs one and the deal has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<DealSnapshot>,
    /// The opportunity (GetOpportunity's response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opportunity: Option<Value>,
    /// The AWS-side view (GetAwsOpportunitySummary's response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_summary: Option<Value>,
    /// Resource snapshots (GetResourceSnapshot responses), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<Value>,
    /// Last-known state per pack, for this opportunity.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub previous: IndexMap<String, PackState>,
}

/// A HubSpot CRM object (a deal, or the deal's company) as the CRM API returns it
/// (`id`, `properties`); other members (`createdAt`, `associations`…) are accepted
/// and ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DealSnapshot {
    /// The deal id.
    pub id: String,
    /// Property values. HubSpot sends text; numbers and booleans are accepted and
    /// read as text.
    #[serde(default)]
    pub properties: IndexMap<String, Value>,
}

impl DealSnapshot {
    /// A property as text, `None` when unset or null.
    pub fn property(&self, name: &str) -> Option<String> {
        match self.properties.get(name)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            other => Some(other.to_string()),
        }
    }
}

/// What pcsync remembers about one opportunity for one pack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackState {
    /// The watched values when last seen.
    #[serde(default)]
    pub watches: IndexMap<String, Value>,
    /// Per watch, the value when a notification about it last fired (or the first
    /// value seen). Thresholds such as `increased_by` measure from here, so a score
    /// that climbs a little at every poll still notifies once it has climbed enough.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub marks: IndexMap<String, Value>,
    /// Keys of notifications already sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<String>,
}

impl Context {
    /// Applies the effects that change what a later event would see: recorded state
    /// and deal property updates. Used to play a timeline of events in tests and
    /// `pcsync eval`, as the runtime's store would between events.
    pub fn apply(&mut self, effects: &[crate::plan::Effect]) {
        use crate::plan::Effect;
        for effect in effects {
            match effect {
                Effect::RecordState {
                    pack,
                    watches,
                    marks,
                    sent,
                    ..
                } => {
                    let state = self.previous.entry(pack.clone()).or_default();
                    state.watches = watches.clone();
                    state.marks = marks.clone();
                    for key in sent {
                        if !state.sent.contains(key) {
                            state.sent.push(key.clone());
                        }
                    }
                }
                Effect::UpdateDeal { properties, .. } => {
                    if let Some(deal) = &mut self.deal {
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
