//! The rule-pack language as Rust types. `serde` reads packs; `schemars` turns the
//! same types and their doc comments into `schemas/rule-pack.schema.json`, so the
//! descriptions here are what RevOps editors see in their editor: write them for them.

mod currency;
mod duration;
mod effects;
mod immutability;
mod mapping;
mod needs;
mod notify;
mod pack;
mod text;
mod trigger;
mod watch;

pub use currency::{AcceptedCurrency, CurrencyConversion, Rate};
pub use duration::{DURATION_PATTERN, DurationSpec};
pub use effects::{
    CreateOpportunity, Effects, InvolvementType, PartnerType, StartEngagement, UpdateOpportunity,
    Visibility,
};
pub use immutability::{ImmutabilityRule, ImmutableAction};
pub use mapping::{Mapping, NumberRef, Transform, Unmapped};
pub use needs::Needs;
pub use notify::{
    ChannelKind, Channels, DueTimes, NoteChannel, Notification, Priority, PriorityRules,
    PrioritySpec, SnsChannel, TaskChannel,
};
pub use pack::{Guard, RulePack};
pub use text::{FieldPath, JsonPathExpr, ReviewStatus, Rhai, Stage, Template};
pub use trigger::{
    HubSpotEvent, PartnerCentralEvent, PartnerCentralRead, Schedule, ScheduleScope, Trigger,
    Triggers,
};
pub use watch::Condition;
