use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{FieldPath, Rhai, Template};

/// How one HubSpot deal property corresponds to one Partner Central field. Give
/// either `to` (HubSpot → Partner Central) or `from` (Partner Central → HubSpot).
/// A key `company.<property>` reads a property of the deal's primary company instead
/// (with `to`; list the property under `needs.company`).
/// The value then passes, in order, through `table`, `allow`, `transform` and
/// `script`; a value that a table or allow-list does not cover, or that breaks the
/// field's own rules (length, format, enum), is handled as `unmapped` says.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The Partner Central field this deal property is written to
    /// (`LifeCycle.Stage`, `Project.ExpectedCustomerSpend[0].Amount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<FieldPath>,
    /// The Partner Central field this deal property is read from. Prefix with
    /// `aws_summary.` to read the AWS-side view instead of the opportunity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<FieldPath>,
    /// Map only when this Rhai condition holds (`deal.dealstage == "closedlost"`);
    /// otherwise the field is left out.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Rhai>,
    /// A value table (picklist translation): source value → target value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<IndexMap<String, String>>,
    /// The value to use when the input is empty or the `table` does not list it
    /// (a table with a default: `otherwise: Other`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<String>,
    /// Only these values pass; others are `unmapped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Built-in transforms applied in order: `date`, `number`, `{ ratio: 0.0833 }`,
    /// `trim`, `{ truncate: 2000 }`, `{ default: "n/a" }`…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transform: Vec<Transform>,
    /// A Rhai script computing the value from `value` (and the context). Returning
    /// `()` skips the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Rhai>,
    /// A `.rhai` file, relative to the pack, holding the script instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_file: Option<String>,
    /// What to do with a value the table or allow-list does not cover, or that the
    /// target field would reject.
    #[serde(default)]
    pub unmapped: Unmapped,
    /// A note added to the deal when a value is unmapped and skipped, e.g.
    /// `currency {{ value }} is not accepted by Partner Central`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmapped_note: Option<Template>,
}

/// What to do with a value that does not map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// Leave this field out of the update; the rest goes ahead.
    #[default]
    SkipField,
    /// Write the value unchanged.
    Keep,
    /// Fail the whole update (it goes to the dead-letter list with the reason).
    Error,
}

/// A built-in value transform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// A HubSpot date or datetime (ISO 8601 or epoch milliseconds) to `YYYY-MM-DD`.
    Date,
    /// A HubSpot date or datetime to an RFC 3339 UTC timestamp.
    Datetime,
    /// A number written as a plain decimal with at most two decimals (`12500.5`).
    Number,
    /// Multiplies a number, e.g. `0.0833` to turn a yearly amount into a monthly one.
    Ratio(NumberRef),
    /// Removes leading and trailing white space.
    Trim,
    /// Cuts text to at most this many characters.
    Truncate(usize),
    /// Upper-cases text.
    Upper,
    /// Lower-cases text.
    Lower,
    /// Uses this value when the input is empty.
    Default(String),
}

/// A number written in place, or the name of an entry in the pack's `thresholds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum NumberRef {
    /// A number.
    Number(f64),
    /// The name of a threshold.
    Name(String),
}
