//! The context a pack is evaluated in: what the runtime loaded for the event. Shapes
//! are the remote APIs' own: the deal as HubSpot's CRM API returns it, the opportunity
//! as GetOpportunity returns it, the AWS summary as GetAwsOpportunitySummary returns
//! it, and the last-known state pcsync stored.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The variables every script, template and watch may read: the context's
/// members, and what the run adds (the event, the pack's settings and thresholds,
/// the time).
pub const VARIABLES: [&str; 10] = [
    "deal",
    "company",
    "opportunity",
    "aws_summary",
    "snapshots",
    "previous",
    "event",
    "settings",
    "thresholds",
    "now",
];

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
    #[serde(default, deserialize_with = "presized::<_, _, 16>")]
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
    #[serde(default, deserialize_with = "presized::<_, _, 8>")]
    pub watches: IndexMap<String, Value>,
    /// Per watch, the value when a notification about it last fired (or the first
    /// value seen). Thresholds such as `increased_by` measure from here, so a score
    /// that climbs a little at every poll still notifies once it has climbed enough.
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "presized::<_, _, 8>"
    )]
    pub marks: IndexMap<String, Value>,
    /// Keys of notifications already sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<String>,
}

/// What one pack run asks to remember about an opportunity: the watched values now,
/// the marks thresholds measure from, and the notifications it sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    /// The opportunity the state belongs to.
    pub opportunity_id: String,
    /// Watched values now.
    pub watches: IndexMap<String, Value>,
    /// Per watch, the value thresholds measure from next time.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub marks: IndexMap<String, Value>,
    /// Notification keys sent by this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<String>,
}

/// Reads a map with room for `N` members made first. JSON does not say how many
/// members a map has, so a map read member by member grows (a reallocation and a
/// rehash at 3, 7 and 14 members); a deal's properties and a pack's watches are
/// read for every recorded run a replay plans, and a few at a time is most of
/// their cost. Later members win, as with any map.
fn presized<'de, D, V, const N: usize>(d: D) -> Result<IndexMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Members<V, const N: usize>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for Members<V, N> {
        type Value = IndexMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::with_capacity(map.size_hint().unwrap_or(N).min(1024));
            while let Some((k, v)) = map.next_entry()? {
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Members::<V, N>(std::marker::PhantomData))
}

impl PackState {
    /// Takes in a run's record: watches and marks are replaced, sent keys are added
    /// to those already sent (a key once sent stays sent). The store and the
    /// simulation both merge with this.
    pub fn merge(&mut self, record: &StateRecord) {
        self.watches = record.watches.clone();
        self.marks = record.marks.clone();
        for key in &record.sent {
            if !self.sent.contains(key) {
                self.sent.push(key.clone());
            }
        }
    }
}
