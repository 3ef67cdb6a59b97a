//! pcsync's engine: the rule-pack language (model), its loader and checker, and the
//! compiled rule set. Pure: no tokio, no HTTP, no AWS types, no clock.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod compile;
pub mod dates;
pub mod diagnostic;
pub mod embed;
pub mod load;
pub mod model;
/// The Partner Central model table (generated from AWS's service model).
pub use pcsync_pc_model as partner_central;
pub mod readiness;
pub mod redact;
pub mod schema;
pub mod script;
pub mod source;
pub mod template;

pub use compile::{CompiledPack, RuleSet};
pub use diagnostic::{Code, Diagnostic, Format, Severity, Sources};
pub use load::{Loaded, MissingEnv, load_rules};
pub use model::RulePack;
pub mod context;
pub mod event;
pub mod plan;

pub use context::{Context, DealSnapshot, PackState, StateRecord};
pub use event::{Event, ScheduledRun, Source};
pub use plan::{
    Conclusion, Decision, Effect, Ending, Outcome, PackPlan, Plan, PlanEntry, Verdict, conclude,
    plan, settle, simulate,
};
pub mod golden;
pub mod replay;
