use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{NumberRef, Rhai};

/// When a notification fires. Name a `watch` and say what change counts; every part
/// given must hold. `if` adds a Rhai condition (it may stand alone).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The watched value this condition looks at (a name from `watch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
    /// The value differs from the last-known one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    /// The value changed and is now one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_to: Vec<String>,
    /// The value changed and was one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_from: Vec<String>,
    /// The number went up by at least this much since pcsync last notified about this
    /// watch (or first saw it): a slow climb notifies once it adds up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increased_by: Option<NumberRef>,
    /// The number went down by at least this much since pcsync last notified about
    /// this watch (or first saw it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decreased_by: Option<NumberRef>,
    /// The number moved past this value, in either direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossed: Option<NumberRef>,
    /// The number rose from below this value to at least it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossed_above: Option<NumberRef>,
    /// The number fell from at least this value to below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossed_below: Option<NumberRef>,
    /// The value was absent (or matched nothing) and now is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appeared: Option<bool>,
    /// The value was present and now is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disappeared: Option<bool>,
    /// A Rhai boolean expression. Each watch is a variable with `now`, `before` (last
    /// seen), `since` (last notified), `delta` (`now - since`) and `changed`, e.g.
    /// `score.now >= thresholds.high_score`.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Rhai>,
}
