//! `plan(event, context, rules, now)`: the pure evaluator. It matches packs by
//! trigger, runs guards, applies mappings, enforces immutability for the
//! opportunity's review status, compares watched values with the last-known state,
//! chooses notifications and renders their text. It performs no I/O and reads no
//! clock: the same inputs always give the same plan.

mod conclude;
mod effect;
mod fetch;
mod immutability;
mod mapping;
mod notify;
mod scope;
mod trace;

use indexmap::IndexMap;
use jiff::Timestamp;
use serde_json::Value;

pub use crate::dates::{to_date, to_timestamp};
pub use conclude::{Conclusion, Ending, Outcome, conclude};
pub use effect::{
    Decision, Effect, FieldChange, NotSent, PackPlan, Plan, PlanEntry, Submission, Verdict,
};
pub use fetch::{Fetch, fetches};
pub use trace::TraceStep;

use crate::compile::CompiledPack;
use crate::compile::RuleSet;
use crate::context::{Context, StateRecord};
use crate::event::{Event, Source};
use crate::model::{HubSpotEvent, ImmutableAction, RulePack};
use crate::partner_central;
use crate::readiness;
use crate::source::pointer_join;
use mapping::Mapped;
use scope::Vars;

/// Plans `event` against every enabled pack of `rules`: what each pack would write
/// and decide, before any write is tried (no follow-ups; see [`simulate`]).
pub fn plan(event: &Event, ctx: &Context, rules: &RuleSet, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    for pack in triggered_packs(rules, event) {
        let mut one = plan_pack(pack, rules, event, ctx, now);
        let record = one.state.take();
        push_pack(&mut plan, one, record);
    }
    plan
}

/// Moves one pack's writes, decision and trace into `plan`, with the state it
/// records.
fn push_pack(plan: &mut Plan, mut one: PackPlan, record: Option<crate::context::StateRecord>) {
    let decision = one.decision();
    plan.effects
        .extend(one.writes.drain(..).map(PlanEntry::Write));
    plan.effects.extend(decision.map(PlanEntry::Decision));
    if let Some(record) = record {
        plan.effects
            .push(PlanEntry::Decision(Decision::RecordState {
                pack: one.pack,
                record,
            }));
    }
    plan.trace.append(&mut one.trace);
}

/// The enabled packs `event` starts, in file order.
pub fn triggered_packs<'a>(
    rules: &'a RuleSet,
    event: &Event,
) -> impl Iterator<Item = &'a CompiledPack> {
    rules
        .packs
        .iter()
        .filter(move |p| p.pack.enabled && triggered(&p.pack, event))
}

/// Plans one pack (which `event` triggers).
pub fn plan_pack(
    pack: &CompiledPack,
    rules: &RuleSet,
    event: &Event,
    ctx: &Context,
    now: Timestamp,
) -> PackPlan {
    plan_pack_traced(pack, rules, event, ctx, now, true)
}

/// [`plan_pack`] with its trace kept or not (empty): a replay compares plans,
/// and building each step's words is a good part of planning.
pub fn plan_pack_traced(
    pack: &CompiledPack,
    rules: &RuleSet,
    event: &Event,
    ctx: &Context,
    now: Timestamp,
    traced: bool,
) -> PackPlan {
    let mut run = PackRun::new(pack, rules, event, ctx, now);
    run.traced = traced;
    run.step("/on", "triggered", None, None);
    run.run();
    let verdict = run.verdict.unwrap_or(Verdict::Proceed);
    // A failed pack writes nothing: half a run is worse than none, and a replay from
    // the dead-letter list starts clean.
    let writes = match verdict {
        Verdict::Fail { .. } => Vec::new(),
        _ => run.effects,
    };
    PackPlan {
        pack: pack.pack.name.clone(),
        verdict,
        writes,
        state: run.state,
        trace: run.trace,
    }
}

/// What the runtime does for `event` when every write ends as `outcome` says: per
/// triggered pack its writes, its verdict, and what [`conclude`] makes of them (the
/// state it records, its `on_success` or `on_error` follow-ups). The worker drives
/// the same [`plan_pack`], [`conclude`] and [`settle`].
pub fn simulate(
    event: &Event,
    ctx: &Context,
    rules: &RuleSet,
    now: Timestamp,
    outcome: &Outcome,
) -> Plan {
    let mut out = Plan::default();
    for pack in triggered_packs(rules, event) {
        let one = plan_pack(pack, rules, event, ctx, now);
        let conclusion = conclude(&one, outcome);
        let record = conclusion.record.cloned();
        let follow_ups = conclusion
            .follow_up
            .map(|follow_up| settle(pack, rules, event, ctx, &one.writes, &follow_up, now));
        push_pack(&mut out, one, record);
        if let Some(settled) = follow_ups {
            out.effects
                .extend(settled.writes.into_iter().map(PlanEntry::Write));
            out.trace.extend(settled.trace);
        }
    }
    out
}

/// A pack's follow-up writes (`on_success` or `on_error`) and how they were decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FollowUps {
    /// The writes, in order.
    pub writes: Vec<Effect>,
    /// Which rule decided what.
    pub trace: Vec<TraceStep>,
}

/// The pack's `on_success` or `on_error` effects, once the runtime knows how its
/// planned effects ended. `planned` are the effects the pack planned (their changes
/// become `changes` in templates).
pub fn settle(
    pack: &CompiledPack,
    rules: &RuleSet,
    event: &Event,
    ctx: &Context,
    planned: &[Effect],
    outcome: &Outcome,
    now: Timestamp,
) -> FollowUps {
    let mut run = PackRun::new(pack, rules, event, ctx, now);
    let changes: Vec<Value> = planned
        .iter()
        .flat_map(|e| match e {
            Effect::UpdateOpportunity { changes, .. } => changes.clone(),
            Effect::CreateOpportunity { fields, .. } => fields.clone(),
            _ => Vec::new(),
        })
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        .collect();
    let changes = Value::Array(changes);
    let not_sent: Vec<Value> = planned
        .iter()
        .flat_map(|e| match e {
            Effect::UpdateOpportunity { not_sent, .. } => not_sent.clone(),
            _ => Vec::new(),
        })
        .map(|n| serde_json::to_value(n).unwrap_or(Value::Null))
        .collect();
    let not_sent = Value::Array(not_sent);
    let (section, effects, extras): (&str, _, Vec<(&str, Value)>) = match outcome {
        Outcome::Success { result } => (
            "on_success",
            &pack.pack.on_success,
            vec![
                ("changes", changes),
                ("not_sent", not_sent),
                ("result", result.clone()),
            ],
        ),
        Outcome::Failure { message } => (
            "on_error",
            &pack.pack.on_error,
            vec![("error", serde_json::json!({ "message": message }))],
        ),
    };
    let extras: Vec<(&str, &Value)> = extras.iter().map(|(k, v)| (*k, v)).collect();
    let Some(deal_id) = run.deal_id() else {
        if !effects.set_deal.is_empty() || effects.note.is_some() {
            run.step(&format!("/{section}"), "no deal to update", None, None);
        }
        return FollowUps {
            writes: run.effects,
            trace: run.trace,
        };
    };
    let mut properties = IndexMap::new();
    for prop in effects.set_deal.keys() {
        let at = pointer_join(&format!("/{section}/set_deal"), prop);
        match run.vars.render(&at, &extras) {
            Ok(v) => {
                properties.insert(prop.clone(), v);
            }
            Err(e) => run.step(&at, &format!("not rendered: {e}"), None, None),
        }
    }
    if !properties.is_empty() {
        run.push(Effect::UpdateDeal {
            pack: run.name(),
            deal_id: deal_id.clone(),
            properties,
        });
    }
    if effects.note.is_some() {
        let at = format!("/{section}/note");
        match run.vars.render(&at, &extras) {
            // A note whose template renders nothing (an `{% if %}` that did not hold)
            // is not added.
            Ok(body) if body.trim().is_empty() => {
                run.step(&at, "rendered empty, no note", None, None)
            }
            Ok(body) => run.push(Effect::CreateNote {
                pack: run.name(),
                deal_id,
                body,
            }),
            Err(e) => run.step(&at, &format!("not rendered: {e}"), None, None),
        }
    }
    FollowUps {
        writes: run.effects,
        trace: run.trace,
    }
}

/// Whether `event` starts `pack`.
pub fn triggered(pack: &RulePack, event: &Event) -> bool {
    pack.on.as_slice().iter().any(|t| match event.source {
        Source::Hubspot => t.hubspot.is_some_and(|h| {
            h.as_str() == event.kind
                && (!matches!(
                    h,
                    HubSpotEvent::DealPropertyChange | HubSpotEvent::CompanyPropertyChange
                ) || t.properties.is_empty()
                    || event
                        .property
                        .as_ref()
                        .is_some_and(|p| t.properties.contains(&p.name)))
        }),
        Source::Partnercentral => t.partnercentral.is_some_and(|p| p.as_str() == event.kind),
        Source::Schedule => {
            t.schedule.is_some() && event.pack.as_deref() == Some(pack.name.as_str())
        }
    })
}

/// The evaluation of one pack for one event.
struct PackRun<'a> {
    pack: &'a CompiledPack,
    event: &'a Event,
    ctx: &'a Context,
    now: Timestamp,
    vars: Vars<'a>,
    effects: Vec<Effect>,
    /// How the run ended when it did not proceed; the first verdict stands.
    verdict: Option<Verdict>,
    state: Option<StateRecord>,
    trace: Vec<TraceStep>,
    /// Whether the steps are kept (a replay compares plans only).
    traced: bool,
}

impl<'a> PackRun<'a> {
    fn new(
        pack: &'a CompiledPack,
        rules: &'a RuleSet,
        event: &'a Event,
        ctx: &'a Context,
        now: Timestamp,
    ) -> Self {
        PackRun {
            pack,
            event,
            ctx,
            now,
            vars: Vars::new(pack, &rules.engine, event, ctx, now),
            effects: Vec::new(),
            verdict: None,
            state: None,
            trace: Vec::new(),
            traced: true,
        }
    }

    fn name(&self) -> String {
        self.pack.pack.name.clone()
    }

    fn p(&self) -> &'a RulePack {
        &self.pack.pack
    }

    fn step(&mut self, at: &str, decision: &str, input: Option<Value>, output: Option<Value>) {
        if !self.traced {
            return;
        }
        self.trace.push(TraceStep {
            pack: self.name(),
            at: at.to_string(),
            decision: decision.to_string(),
            input,
            output,
        });
    }

    fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    fn decide(&mut self, verdict: Verdict) {
        self.verdict.get_or_insert(verdict);
    }

    fn skip(&mut self, at: &str, reason: &str) {
        self.step(at, &format!("skip: {reason}"), None, None);
        self.decide(Verdict::Skip {
            reason: reason.to_string(),
        });
    }

    fn fail(&mut self, at: &str, reason: &str) {
        self.step(at, &format!("fail: {reason}"), None, None);
        self.decide(Verdict::Fail {
            reason: reason.to_string(),
        });
    }

    fn record(&mut self, record: StateRecord) {
        self.state = Some(record);
    }

    fn deal_id(&self) -> Option<String> {
        self.vars.deal_id()
    }

    fn opportunity_id(&self) -> Option<String> {
        self.event
            .opportunity_id
            .clone()
            .or_else(|| {
                self.ctx
                    .opportunity
                    .as_ref()
                    .and_then(|o| o.get("Id"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .or_else(|| {
                self.ctx
                    .deal
                    .as_ref()
                    .and_then(|d| d.property(&self.p().needs.link_property))
            })
            .filter(|id| !id.is_empty())
    }

    fn run(&mut self) {
        let p = self.p();
        for (i, guard) in p.when.iter().enumerate() {
            let at = format!("/when/{i}/if");
            match self.vars.eval_bool(&at, &[]) {
                Ok(true) => return self.skip(&at, &guard.skip),
                Ok(false) => self.step(&at, "guard passed", None, None),
                Err(e) => return self.fail(&at, &e),
            }
        }
        // What a scheduled run leaves unread on purpose (`schedule.reads`) is not
        // missing: watches over it keep their last-known values.
        let unread = |member| self.event.leaves_unread(member);
        let needed_missing = [
            (
                p.needs.opportunity
                    && self.ctx.opportunity.is_none()
                    && p.create.is_none()
                    && !unread("opportunity"),
                "the opportunity",
            ),
            (
                p.needs.aws_summary
                    && self.ctx.aws_summary.is_none()
                    && !unread("aws_summary")
                    && self.pack.summary_outside_watches,
                "the AWS summary",
            ),
        ];
        for (missing, what) in needed_missing {
            if missing {
                return self.skip("/needs", &format!("{what} is not available"));
            }
        }
        if !self.writes() {
            return;
        }
        self.reverse_mappings();
        self.notifications();
    }

    /// `map … to:` and `set`: the opportunity write. Returns false when the pack
    /// stops (deferred, skipped, failed).
    fn writes(&mut self) -> bool {
        let p = self.p();
        let creating = p.create.is_some();
        let has_writes = p.map.values().any(|m| m.to.is_some()) || !p.set.is_empty();
        if !has_writes {
            return true;
        }
        let mut changes: Vec<FieldChange> = Vec::new();
        // Mapped fields that are not sent, and why (`not_sent` in `on_success`).
        let mut not_sent: Vec<NotSent> = Vec::new();
        // Spend items whose currency is not sent: their amount is not sent either.
        let mut unsent_currency: Vec<String> = Vec::new();
        let today = self.now.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
        let conversions = self.conversions();
        for (prop, m) in &p.map {
            let Some(to) = &m.to else { continue };
            let at = pointer_join("/map", prop);
            if m.condition.is_some() {
                match self.vars.eval_bool(&format!("{at}/if"), &[]) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.step(
                            &format!("{at}/if"),
                            "condition false, field skipped",
                            None,
                            None,
                        );
                        continue;
                    }
                    Err(e) => {
                        self.fail(&format!("{at}/if"), &e);
                        return false;
                    }
                }
            }
            let shape = self.pack.targets.get(to.as_str()).copied();
            let input = Some(Value::String(match prop.strip_prefix("company.") {
                Some(name) => self.vars.company_property(name),
                None => self.vars.deal_property(prop),
            }));
            let converted = spend_item(to.as_str(), "CurrencyCode")
                .and_then(|item| conversions.iter().find(|c| c.item == item));
            let mapped = match converted {
                // The deal's currency is converted: the item is sent in the target one.
                Some(c) => Mapped::Value(Value::String(c.to.to_string())),
                None => {
                    match mapping::apply(&self.vars, &at, m, input.clone(), shape, &p.thresholds) {
                        Mapped::Value(v) => match mapping::documented(to.as_str(), &v) {
                            Ok(()) => Mapped::Value(v),
                            Err(reason) => Mapped::Unmapped(reason),
                        },
                        other => other,
                    }
                }
            };
            let mapped = match (mapped, spend_item(to.as_str(), "Amount")) {
                (Mapped::Value(v), Some(item)) => {
                    match conversions.iter().find(|c| c.item == item) {
                        Some(c) => match mapping::convert(&v, c.rate) {
                            Ok(converted) => {
                                self.step(
                                    &at,
                                    &format!("converted from {} at {}", c.from, c.rate),
                                    Some(v),
                                    Some(converted.clone()),
                                );
                                Mapped::Value(converted)
                            }
                            Err(reason) => Mapped::Unmapped(reason),
                        },
                        None => Mapped::Value(v),
                    }
                }
                (mapped, _) => mapped,
            };
            let mapped = match mapped {
                Mapped::Value(v) if !creating => self.not_in_the_past(to.as_str(), v, today),
                other => other,
            };
            match mapped {
                Mapped::Value(v) => self.change(&mut changes, &at, to.as_str(), input, v, creating),
                Mapped::Skip(reason) => {
                    self.step(&at, &format!("field skipped: {reason}"), input, None)
                }
                Mapped::Unmapped(reason) => {
                    self.step(
                        &at,
                        &format!("unmapped, field skipped: {reason}"),
                        input.clone(),
                        None,
                    );
                    if let Some(item) = spend_item(to.as_str(), "CurrencyCode") {
                        unsent_currency.push(item.to_string());
                    }
                    not_sent.push(NotSent {
                        field: to.as_str().to_string(),
                        label: readiness::label(to.as_str()),
                        reason: reason.clone(),
                    });
                    // Note it when this property is what changed (or on creation and
                    // schedules), not on every later sync of other properties.
                    // Any edit of the batch counts (its earlier events are covered
                    // by this run).
                    let about_this = self.event.property.is_none()
                        || self.event.changed_properties().any(|c| {
                            match (
                                self.event.kind.starts_with("company."),
                                prop.strip_prefix("company."),
                            ) {
                                (true, Some(name)) => c.name == name,
                                (false, None) => c.name == *prop,
                                _ => false,
                            }
                        });
                    if m.unmapped_note.is_some() && about_this {
                        let note_at = format!("{at}/unmapped_note");
                        let value = input.clone().unwrap_or_default();
                        match self.vars.render(&note_at, &[("value", &value)]) {
                            Ok(body) => {
                                if let Some(deal_id) = self.deal_id() {
                                    self.push(Effect::CreateNote {
                                        pack: self.name(),
                                        deal_id,
                                        body,
                                    });
                                }
                            }
                            Err(e) => {
                                self.step(&note_at, &format!("not rendered: {e}"), None, None)
                            }
                        }
                    }
                }
                Mapped::Error(reason) => {
                    self.fail(&at, &format!("`{prop}`: {reason}"));
                    return false;
                }
            }
        }
        // An amount is only meaningful in its currency: while an item's currency is
        // not sent, its amount is not changed either (a creation waits for the
        // currency instead, through readiness).
        if !creating {
            for item in &unsent_currency {
                let amount = format!("{item}.Amount");
                if let Some(i) = changes.iter().position(|c| c.field == amount) {
                    changes.remove(i);
                    self.step(
                        "/map",
                        &format!("{amount} not sent: its currency is not sent"),
                        None,
                        None,
                    );
                    not_sent.push(NotSent {
                        label: readiness::label(&amount),
                        field: amount,
                        reason: "its currency is not sent".into(),
                    });
                }
            }
        }
        for (field, value) in &p.set {
            let at = pointer_join("/set", field);
            let rendered = match value {
                Value::String(s) if crate::template::is_template(s) => {
                    match self.vars.render(&at, &[]) {
                        Ok(text) => Value::String(text),
                        Err(e) => {
                            self.fail(&at, &e);
                            return false;
                        }
                    }
                }
                other => other.clone(),
            };
            // A template that renders empty sends nothing (an optional field the deal
            // has no value for, a spend item's members when there is no amount); to a
            // new opportunity, neither does an empty value.
            let templated = value.as_str().is_some_and(crate::template::is_template);
            if (creating || templated) && rendered.as_str().is_some_and(|s| s.trim().is_empty()) {
                self.step(&at, "empty, not sent", None, None);
                continue;
            }
            let conformed = match self.pack.targets.get(field) {
                Some(shape) if !rendered.is_array() => mapping::conform(rendered.clone(), shape),
                _ => Ok(rendered.clone()),
            }
            .and_then(|v| mapping::documented(field, &v).map(|()| v));
            match conformed {
                Ok(v) => self.change(&mut changes, &at, field, None, v, creating),
                Err(reason) => {
                    self.fail(&at, &format!("`{field}`: {reason}"));
                    return false;
                }
            }
        }

        // A spend item whose currency is not sent is not written in part either: its
        // frequency and target company describe an amount that is not sent, and a
        // partial item would hold the whole update back.
        if !creating {
            for item in &unsent_currency {
                let members = format!("{item}.");
                let before = changes.len();
                changes.retain(|c| !c.field.starts_with(&members));
                if changes.len() < before {
                    self.step(
                        "/set",
                        &format!("{item} not written: its currency is not sent"),
                        None,
                        None,
                    );
                }
            }
        }
        self.drop_out_of_place(&mut changes, creating);
        if creating {
            return self.create(changes, &not_sent);
        }
        let Some(id) = self.opportunity_id() else {
            self.skip("/map", "no linked opportunity");
            return false;
        };
        match immutability::apply(self, changes) {
            immutability::Verdict::Proceed(changes) if changes.is_empty() => {
                self.step("/map", "nothing to change", None, None);
                self.decide(Verdict::Skip {
                    reason: "no field changed".into(),
                });
                false
            }
            immutability::Verdict::Proceed(changes) => {
                let missing = self.missing_on_update(&changes);
                if !missing.is_empty() {
                    self.incomplete(Incomplete::Update, &missing);
                    return false;
                }
                self.push(Effect::UpdateOpportunity {
                    pack: self.name(),
                    id,
                    changes,
                    not_sent,
                });
                true
            }
            immutability::Verdict::Stop(action, reason, at) => {
                let status = self.review_status();
                match action {
                    ImmutableAction::Defer => {
                        self.step(&at, &format!("defer: {reason}"), None, None);
                        self.decide(Verdict::Defer {
                            reason,
                            while_status: status.into_iter().collect(),
                        });
                    }
                    ImmutableAction::Fail => self.fail(&at, &reason),
                    _ => self.skip(&at, &reason),
                }
                false
            }
        }
    }

    fn review_status(&self) -> Option<String> {
        self.ctx
            .opportunity
            .as_ref()
            .and_then(|o| o.pointer("/LifeCycle/ReviewStatus"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// Records one field change, unless the opportunity already holds the value.
    fn change(
        &mut self,
        changes: &mut Vec<FieldChange>,
        at: &str,
        field: &str,
        input: Option<Value>,
        new: Value,
        creating: bool,
    ) {
        let old = if creating { None } else { self.current(field) };
        if old.is_some_and(|o| same_value(o, &new)) {
            self.step(at, "unchanged", input, Some(new));
            return;
        }
        if self.traced {
            self.step(at, &format!("mapped to {field}"), input, Some(new.clone()));
        }
        changes.retain(|c| c.field != field);
        changes.push(FieldChange {
            field: field.to_string(),
            old: if creating {
                None
            } else {
                Some(old.cloned().unwrap_or(Value::Null))
            },
            new,
        });
    }

    /// The opportunity's current value at a field path.
    fn current(&self, field: &str) -> Option<&'a Value> {
        at_field(self.ctx.opportunity.as_ref()?, field)
    }

    /// The pack's `convert_currency`, per spend item whose currency mapping reads a
    /// currency it has a rate for.
    fn conversions(&self) -> Vec<Conversion> {
        let Some(conversion) = &self.p().convert_currency else {
            return Vec::new();
        };
        self.p()
            .map
            .iter()
            .filter_map(|(prop, m)| {
                let item = spend_item(m.to.as_ref()?.as_str(), "CurrencyCode")?;
                let code = match prop.strip_prefix("company.") {
                    Some(name) => self.vars.company_property(name),
                    None => self.vars.deal_property(prop),
                };
                let code = code.trim().to_uppercase();
                let rate = conversion.rates.get(&code)?;
                Some(Conversion {
                    item: item.to_string(),
                    to: conversion.to.code(),
                    rate: rate.0,
                    from: code,
                })
            })
            .collect()
    }

    /// Row `targetCloseDate` of the field matrix: "Date cannot be in the past". AWS
    /// refuses a changed date before today, so an update leaves it out (the rest of the
    /// edit goes); an unchanged one travels with the record as it is.
    fn not_in_the_past(&self, field: &str, value: Value, today: jiff::civil::Date) -> Mapped {
        let past_refused = partner_central::matrix::row(field)
            .is_some_and(|r| r.validation == "Date cannot be in the past");
        let date = value
            .as_str()
            .and_then(|d| d.parse::<jiff::civil::Date>().ok());
        let changed = self
            .current(field)
            .is_none_or(|old| !same_value(old, &value));
        match date {
            Some(d) if past_refused && changed && d < today => Mapped::Unmapped(format!(
                "`{d}` is in the past; AWS takes no {} before today",
                readiness::label(field).to_lowercase()
            )),
            _ => Mapped::Value(value),
        }
    }

    fn create(&mut self, changes: Vec<FieldChange>, not_sent: &[NotSent]) -> bool {
        let create = self
            .p()
            .create
            .as_ref()
            .expect("only called for create packs");
        let Some(deal_id) = self.deal_id() else {
            self.skip("/create", "no deal to create an opportunity for");
            return false;
        };
        let today = self.now.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
        let body = readiness::body(changes.iter().map(|c| (c.field.as_str(), &c.new)));
        let mut missing = readiness::missing(&body, today);
        // A value the deal has but the pack could not map: say which and why
        // (`Currency (GBP is not one of USD, EUR)`), not only that it is missing.
        for m in &mut missing {
            let why = not_sent
                .iter()
                .find(|n| partner_central::matrix::without_indexes(&n.field) == m.field);
            if let Some(why) = why
                && m.label == readiness::label(&m.field)
            {
                m.label = format!("{} ({})", m.label, why.reason.replace('`', ""));
            }
        }
        if !missing.is_empty() {
            self.incomplete(Incomplete::Create, &missing);
            return false;
        }
        let client_token = match self.vars.render("/create/client_token", &[]) {
            Ok(t) if !t.trim().is_empty() => t,
            Ok(_) => {
                self.fail("/create/client_token", "the client token rendered empty");
                return false;
            }
            Err(e) => {
                self.fail("/create/client_token", &e);
                return false;
            }
        };
        let mut solutions = Vec::new();
        for i in 0..create.associate_solutions.len() {
            let at = format!("/create/associate_solutions/{i}");
            match self.vars.render(&at, &[]) {
                Ok(s) if s.trim().is_empty() => self.step(&at, "empty, not associated", None, None),
                Ok(s) => solutions.push(s.trim().to_string()),
                Err(e) => {
                    self.fail(&at, &e);
                    return false;
                }
            }
        }
        let start_engagement = match &create.start_engagement {
            None => None,
            Some(start) => {
                let submit = if start.condition.is_some() {
                    match self.vars.eval_bool("/create/start_engagement/if", &[]) {
                        Ok(b) => b,
                        Err(e) => {
                            self.fail("/create/start_engagement/if", &e);
                            return false;
                        }
                    }
                } else {
                    true
                };
                self.step(
                    "/create/start_engagement",
                    if submit {
                        "submit to AWS"
                    } else {
                        "not submitted"
                    },
                    None,
                    None,
                );
                submit.then(|| Submission {
                    involvement_type: serde_json::to_value(start.involvement_type)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    visibility: serde_json::to_value(start.visibility)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                })
            }
        };
        self.push(Effect::CreateOpportunity {
            pack: self.name(),
            client_token,
            deal_id,
            fields: changes,
            associate_solutions: solutions,
            start_engagement,
        });
        true
    }

    /// Fields the matrix asks for only under a condition that the body (a create) or
    /// the record the update sends does not meet: not sent.
    fn drop_out_of_place(&mut self, changes: &mut Vec<FieldChange>, creating: bool) {
        if !changes.iter().any(|c| readiness::conditional(&c.field)) {
            return;
        }
        let written = changes.iter().map(|c| (c.field.as_str(), &c.new));
        let body = match (&self.ctx.opportunity, creating) {
            (Some(record), false) => readiness::applied(record.clone(), written),
            _ => readiness::body(written),
        };
        for (field, why) in readiness::out_of_place(&body) {
            if changes.iter().any(|c| c.field == field) {
                changes.retain(|c| c.field != field);
                self.step("/map", &format!("{field} not sent: {why}"), None, None);
            }
        }
    }

    /// What the update these changes make lacks for AWS to accept it.
    fn missing_on_update(&self, changes: &[FieldChange]) -> Vec<readiness::Missing> {
        let none = Value::Object(Default::default());
        let before = self.ctx.opportunity.as_ref().unwrap_or(&none);
        let after = readiness::applied(
            before.clone(),
            changes.iter().map(|c| (c.field.as_str(), &c.new)),
        );
        let changed: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        let partner = self
            .p()
            .update
            .as_ref()
            .map(|u| u.partner_type)
            .unwrap_or_default();
        readiness::missing_on_update(before, &after, &changed, partner)
    }

    /// `create.incomplete` or `update.incomplete`: the write lacks what AWS requires,
    /// so nothing is sent; the rep is told what is missing when that list changes.
    fn incomplete(&mut self, place: Incomplete, missing: &[readiness::Missing]) {
        let labels: Vec<&str> = missing.iter().map(|m| m.label.as_str()).collect();
        let reason = format!("waiting for {}", labels.join(", "));
        self.step(
            place.at(),
            &format!("{}: {reason}", place.not_done()),
            None,
            Some(Value::from(
                missing.iter().map(|m| m.field.clone()).collect::<Vec<_>>(),
            )),
        );
        let missing_value = Value::from(labels.clone());
        let fields_value = Value::from(missing.iter().map(|m| m.field.clone()).collect::<Vec<_>>());
        let extras = [
            ("missing", &missing_value),
            ("missing_fields", &fields_value),
        ];
        let Some(effects) = place.effects(self.p()) else {
            return self.decide(Verdict::Skip { reason });
        };
        let Some(deal_id) = self.deal_id() else {
            return self.decide(Verdict::Skip { reason });
        };
        let deal_id = deal_id.as_str();
        let section = format!("{}/incomplete", place.at());
        let mut properties = IndexMap::new();
        for prop in effects.set_deal.keys() {
            let at = pointer_join(&format!("{section}/set_deal"), prop);
            match self.vars.render(&at, &extras) {
                Ok(v) => {
                    let current = self.ctx.deal.as_ref().and_then(|d| d.property(prop));
                    if current.as_deref() == Some(v.as_str()) {
                        self.step(&at, "unchanged", None, Some(Value::String(v)));
                    } else {
                        properties.insert(prop.clone(), v);
                    }
                }
                Err(e) => self.step(&at, &format!("not rendered: {e}"), None, None),
            }
        }
        let news = !properties.is_empty() || effects.set_deal.is_empty();
        if !properties.is_empty() {
            self.push(Effect::UpdateDeal {
                pack: self.name(),
                deal_id: deal_id.to_string(),
                properties,
            });
        }
        if effects.note.is_some() && news {
            let at = format!("{section}/note");
            match self.vars.render(&at, &extras) {
                Ok(body) => self.push(Effect::CreateNote {
                    pack: self.name(),
                    deal_id: deal_id.to_string(),
                    body,
                }),
                Err(e) => self.step(&at, &format!("not rendered: {e}"), None, None),
            }
        }
        self.decide(Verdict::Skip { reason });
    }

    /// `map … from:`: Partner Central fields into deal properties.
    fn reverse_mappings(&mut self) {
        let p = self.p();
        let mut properties = IndexMap::new();
        for (prop, m) in &p.map {
            let Some(from) = &m.from else { continue };
            let at = pointer_join("/map", prop);
            let (source, path) = match from.as_str().strip_prefix("aws_summary.") {
                Some(rest) => ("aws_summary", rest),
                None => ("opportunity", from.as_str()),
            };
            let v = at_field(self.vars.get(source), path).unwrap_or(&Value::Null);
            let input = Some(v.clone());
            match mapping::apply(&self.vars, &at, m, input.clone(), None, &p.thresholds) {
                Mapped::Value(v) => {
                    let text = mapping::text_of(&v);
                    let current = self
                        .ctx
                        .deal
                        .as_ref()
                        .and_then(|d| d.property(prop))
                        .unwrap_or_default();
                    if current == text {
                        self.step(&at, "unchanged", input, Some(v));
                    } else {
                        self.step(
                            &at,
                            &format!("mapped to deal property {prop}"),
                            input,
                            Some(v),
                        );
                        properties.insert(prop.clone(), text);
                    }
                }
                Mapped::Skip(reason) | Mapped::Unmapped(reason) => {
                    self.step(&at, &format!("property skipped: {reason}"), input, None)
                }
                Mapped::Error(reason) => return self.fail(&at, &format!("`{prop}`: {reason}")),
            }
        }
        if !properties.is_empty()
            && let Some(deal_id) = self.deal_id()
        {
            self.push(Effect::UpdateDeal {
                pack: self.name(),
                deal_id,
                properties,
            });
        }
    }

    fn notifications(&mut self) {
        notify::run(self);
    }
}

/// A spend item's currency converted by the pack's `convert_currency`.
struct Conversion {
    /// The item (`Project.ExpectedCustomerSpend[0]`).
    item: String,
    /// The deal's currency.
    from: String,
    /// The currency sent.
    to: &'static str,
    /// One unit of `from` in `to`.
    rate: f64,
}

/// The expected-spend item that `field` is the `member` of
/// (`Project.ExpectedCustomerSpend[0].Amount`, `Amount` → `Project.ExpectedCustomerSpend[0]`).
fn spend_item<'f>(field: &'f str, member: &str) -> Option<&'f str> {
    let item = field.strip_suffix(member)?.strip_suffix('.')?;
    item.starts_with("Project.ExpectedCustomerSpend")
        .then_some(item)
}

/// Which write lacks what AWS requires of it, and so which pack section says what to
/// do instead.
#[derive(Clone, Copy)]
enum Incomplete {
    /// `create.incomplete`.
    Create,
    /// `update.incomplete`.
    Update,
}

impl Incomplete {
    fn at(self) -> &'static str {
        match self {
            Incomplete::Create => "/create",
            Incomplete::Update => "/update",
        }
    }

    fn not_done(self) -> &'static str {
        match self {
            Incomplete::Create => "not created",
            Incomplete::Update => "not updated",
        }
    }

    fn effects(self, pack: &RulePack) -> Option<&crate::model::Effects> {
        match self {
            Incomplete::Create => pack.create.as_ref().map(|c| &c.incomplete),
            Incomplete::Update => pack.update.as_ref().map(|u| &u.incomplete),
        }
    }
}

/// Whether two field values are the same for change detection: equal JSON, or the
/// same number written differently (`"2000"` and `"2000.00"`).
/// The value at a Partner Central field path (`Project.ExpectedCustomerSpend[0].Amount`)
/// in `root`, or `None` where a member or item is missing.
fn at_field<'v>(root: &'v Value, field: &str) -> Option<&'v Value> {
    partner_central::path_steps(field).try_fold(root, |v, step| {
        let (name, index) = step.ok()?;
        let v = v.get(name)?;
        match index {
            Some(i) => v.get(i),
            None => Some(v),
        }
    })
}

fn same_value(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    let (x, y) = (mapping::text_of(a), mapping::text_of(b));
    match (
        x.parse::<rust_decimal::Decimal>(),
        y.parse::<rust_decimal::Decimal>(),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => x == y && !a.is_object() && !a.is_array(),
    }
}
