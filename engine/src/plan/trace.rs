//! The trace: for each pack and rule, what was looked at and what decided.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    /// The pack.
    pub pack: String,
    /// Where in the pack (a JSON pointer such as `/map/dealstage`, or `/on`).
    pub at: String,
    /// What happened, in words (`matched`, `guard passed`, `mapped through table`).
    pub decision: String,
    /// The value that went in, where there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The value that came out, where there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}
