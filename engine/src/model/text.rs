//! String-valued pieces of the language that pcsync compiles or checks: Rhai,
//! templates, JSONPath, Partner Central field paths and enum values.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $schema_name:literal, $description:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The text as written in the pack.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                $schema_name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "description": $description })
            }
        }
    };
}

text_type!(
    /// A Rhai expression or script, compiled once when the pack loads.
    Rhai,
    "Rhai",
    "A Rhai expression (https://rhai.rs), e.g. `deal.aws_opportunity_id == \"\"`. It sees the pack's context (`deal`, `opportunity`, `aws_summary`, `previous`, `event`, `settings`, `thresholds`, `now`) and runs with operation, depth and size limits and no file or network access."
);
text_type!(
    /// A Jinja-style template (`{{ deal.dealname }}`), compiled once when the pack loads.
    Template,
    "Template",
    "Text with Jinja-style placeholders, e.g. `Synced {{ deal.dealname }} ({{ opportunity.Id }})`. Filters such as `{{ value | truncate(200) }}` and blocks such as `{% for c in changes %}…{% endfor %}` work as in HubSpot's HubL. Referring to a variable the pack does not load is an error."
);
text_type!(
    /// A JSONPath (RFC 9535) over the pack's context.
    JsonPathExpr,
    "JsonPath",
    "A JSONPath (RFC 9535) into the pack's context, starting at `$`: `$.aws_summary.Insights.OpportunityQuality.Score`, or with a filter, `$.aws_summary.OpportunityTeam[?@.BusinessTitle == 'AWSSalesRep']`."
);
text_type!(
    /// A dotted Partner Central field path.
    FieldPath,
    "FieldPath",
    "A Partner Central opportunity field, as AWS names it: `LifeCycle.Stage`, `Project.CustomerBusinessProblem`, `Project.ExpectedCustomerSpend[0].Amount`. Checked against the Opportunity model."
);

macro_rules! pc_enum_type {
    ($(#[$doc:meta])* $name:ident, $description:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The Partner Central model shape whose enum this value belongs to.
            pub const SHAPE: &'static str = stringify!($name);

            /// The value as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let values = crate::partner_central::enum_values(Self::SHAPE);
                json_schema!({ "type": "string", "enum": values, "description": $description })
            }
        }
    };
}

pc_enum_type!(
    /// A value of Partner Central's `LifeCycle.ReviewStatus`.
    ReviewStatus,
    "An opportunity's review status in Partner Central (`LifeCycle.ReviewStatus`). Note the lower-case r in `In review`."
);
pc_enum_type!(
    /// A value of Partner Central's `LifeCycle.Stage`.
    Stage,
    "An opportunity's stage in Partner Central (`LifeCycle.Stage`). There is no `Closed Won`: `Launched` is the won stage."
);
