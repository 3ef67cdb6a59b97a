//! Semantic checks of a pack that passed the schema: Partner Central field paths and
//! enum values against the generated model, references between parts of the pack
//! (watches, thresholds, channels), trigger and mapping shapes, and, across the rule
//! set, duplicate names and write conflicts.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, FileId, Sources, Span, did_you_mean};
use crate::model::{ChannelKind, Condition, HubSpotEvent, NumberRef, RulePack, Transform, Trigger};
use crate::partner_central::{self, PathError, Shape, ShapeKind};
use crate::source::{Document, pointer_join};
use crate::template;

/// Lists in the context that `for_each` can go over, and how to load each.
const LISTS: &[(&str, &str)] = &[(
    "snapshots",
    "list snapshot templates under `needs.snapshots`, e.g. `[OpportunitySummaryView]`",
)];

/// Checks one pack. `doc` gives positions for the pack's parts.
pub fn check_pack(file: FileId, doc: &Document, pack: &RulePack) -> Vec<Diagnostic> {
    let mut c = Checker {
        file,
        doc,
        pack,
        out: Vec::new(),
    };
    c.triggers();
    c.mappings();
    c.set_values();
    c.required_fields();
    c.currency_conversion();
    c.immutability();
    let watch_shapes = c.watches();
    c.notifications(&watch_shapes);
    c.out
}

struct Checker<'a> {
    file: FileId,
    doc: &'a Document,
    pack: &'a RulePack,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at_value(&self, pointer: &str) -> Span {
        self.doc.value_span(pointer)
    }

    fn at_key(&self, pointer: &str) -> Span {
        self.doc.key_span(pointer)
    }

    fn push(&mut self, d: Diagnostic, span: Span) {
        self.out.push(d.at(self.file, span));
    }

    /// The shape the pack writes: a create request or an update request.
    fn write_root(&self) -> &'static str {
        if self.pack.create.is_some() {
            partner_central::CREATE_OPPORTUNITY
        } else {
            partner_central::UPDATE_OPPORTUNITY
        }
    }

    fn triggers(&mut self) {
        let many = matches!(self.pack.on, crate::model::Triggers::Many(_));
        for (i, t) in self.pack.on.as_slice().iter().enumerate() {
            let at = if many {
                format!("/on/{i}")
            } else {
                "/on".to_string()
            };
            let sources = [
                t.hubspot.is_some(),
                t.partnercentral.is_some(),
                t.schedule.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if sources != 1 {
                let message = if sources == 0 {
                    "trigger names no source"
                } else {
                    "trigger names more than one source"
                };
                self.push(
                    Diagnostic::error(Code::TriggerShape, message)
                        .with_help("give exactly one of `hubspot:`, `partnercentral:` or `schedule:`; list several triggers as a YAML list"),
                    self.at_key(&at),
                );
            }
            if !t.properties.is_empty()
                && !matches!(
                    t.hubspot,
                    Some(HubSpotEvent::DealPropertyChange | HubSpotEvent::CompanyPropertyChange)
                )
            {
                self.push(
                    Diagnostic::error(
                        Code::TriggerShape,
                        "`properties` only filters `deal.propertyChange` and `company.propertyChange` events",
                    )
                    .with_help("remove `properties`, or use `hubspot: deal.propertyChange`"),
                    self.at_key(&format!("{at}/properties")),
                );
            }
            if let Some(schedule) = &t.schedule
                && let Some(reads) = &schedule.reads
            {
                self.schedule_reads(&at, schedule.for_each, reads);
            }
        }
    }

    /// `schedule.reads`: a part of what the pack needs, for linked-deal runs.
    fn schedule_reads(
        &mut self,
        at: &str,
        scope: crate::model::ScheduleScope,
        reads: &[crate::model::PartnerCentralRead],
    ) {
        use crate::model::PartnerCentralRead;
        if scope != crate::model::ScheduleScope::LinkedDeals {
            self.push(
                Diagnostic::error(
                    Code::TriggerShape,
                    "`reads` only narrows `for_each: linked_deals` runs",
                )
                .with_help("a `changed_opportunities` run reads what the pack needs, since the opportunity changed; remove `reads`"),
                self.at_key(&format!("{at}/schedule/reads")),
            );
        }
        for (i, read) in reads.iter().enumerate() {
            let needed = match read {
                PartnerCentralRead::Opportunity => self.pack.needs.opportunity,
                PartnerCentralRead::AwsSummary => self.pack.needs.aws_summary,
            };
            if !needed {
                let name = read.as_str();
                self.push(
                    Diagnostic::error(
                        Code::MissingContext,
                        format!(
                            "the schedule reads `{name}`, which the pack does not load in `needs`"
                        ),
                    )
                    .with_help(format!(
                        "add `{name}: true` to `needs`, or remove it from `reads`"
                    )),
                    self.at_value(&format!("{at}/schedule/reads/{i}")),
                );
            }
        }
    }

    fn mappings(&mut self) {
        let root = self.write_root();
        for (prop, m) in &self.pack.map {
            let at = pointer_join("/map", prop);
            match (&m.to, &m.from) {
                (Some(_), Some(_)) | (None, None) => {
                    self.push(
                        Diagnostic::error(Code::MappingShape, format!("mapping `{prop}` needs exactly one of `to` or `from`"))
                            .with_help("`to: Field.Path` sends the deal property to Partner Central; `from: Field.Path` brings the field into the deal property"),
                        self.at_key(&at),
                    );
                    continue;
                }
                _ => {}
            }
            if let Some(name) = prop.strip_prefix("company.") {
                if m.from.is_some() {
                    self.push(
                        Diagnostic::error(Code::MappingShape, format!("mapping `{prop}` reads the company, so it can only send to Partner Central"))
                            .with_help("use `to:`; pcsync writes deal properties, not company properties"),
                        self.at_key(&at),
                    );
                } else if !self.pack.needs.company.iter().any(|p| p == name) {
                    self.push(
                        Diagnostic::error(
                            Code::MissingContext,
                            format!("company property `{name}` is not loaded"),
                        )
                        .with_help(format!("add `{name}` to `needs.company`")),
                        self.at_key(&at),
                    );
                }
            }
            if m.script.is_some() && m.script_file.is_some() {
                self.push(
                    Diagnostic::error(
                        Code::MappingShape,
                        format!("mapping `{prop}` has both `script` and `script_file`"),
                    )
                    .with_help("keep one of them"),
                    self.at_key(&format!("{at}/script_file")),
                );
            }
            if let Some(to) = &m.to
                && let Some(shape) = self.field_path(root, to.as_str(), &format!("{at}/to"))
            {
                let values = enum_values_of(shape);
                if let Some(table) = &m.table {
                    for (k, v) in table {
                        self.enum_value(
                            values,
                            shape,
                            v,
                            &pointer_join(&format!("{at}/table"), k),
                            to.as_str(),
                        );
                    }
                }
                if let Some(allow) = &m.allow {
                    for (i, v) in allow.iter().enumerate() {
                        self.enum_value(values, shape, v, &format!("{at}/allow/{i}"), to.as_str());
                    }
                }
                if let Some(otherwise) = &m.otherwise {
                    self.enum_value(
                        values,
                        shape,
                        otherwise,
                        &format!("{at}/otherwise"),
                        to.as_str(),
                    );
                }
                let translated = m.table.is_some()
                    || m.allow.is_some()
                    || m.script.is_some()
                    || m.script_file.is_some();
                if !values.is_empty() && !translated {
                    self.push(
                            Diagnostic::warning(
                                Code::MappingShape,
                                format!("`{prop}` is sent unchanged to `{to}`, which accepts only fixed values", to = to.as_str()),
                            )
                            .with_help("add a `table` translating HubSpot values, or an `allow` list"),
                            self.at_value(&format!("{at}/to")),
                        );
                }
            }
            if let Some(from) = &m.from {
                let (shape_root, path) = match from.as_str().strip_prefix("aws_summary.") {
                    Some(rest) => (partner_central::AWS_SUMMARY, rest),
                    None => (partner_central::OPPORTUNITY, from.as_str()),
                };
                if let Some(shape) = self.field_path(shape_root, path, &format!("{at}/from")) {
                    let values = enum_values_of(shape);
                    if let Some(table) = &m.table {
                        for k in table.keys() {
                            let pointer = pointer_join(&format!("{at}/table"), k);
                            if !values.is_empty() && !values.contains(&k.as_str()) {
                                let mut d = invalid_enum(k, shape, from.as_str());
                                d.help = did_you_mean(k, values.iter().copied()).or(d.help);
                                self.push(d, self.at_key(&pointer));
                            }
                        }
                    }
                }
            }
            for (i, t) in m.transform.iter().enumerate() {
                if let Transform::Ratio(r) = t {
                    self.number_ref(r, &format!("{at}/transform/{i}/ratio"));
                }
            }
        }
    }

    fn set_values(&mut self) {
        let root = self.write_root();
        for (field, value) in &self.pack.set {
            let at = pointer_join("/set", field);
            let Some(shape) = self.field_path_at_key(root, field, &at) else {
                continue;
            };
            let values = enum_values_of(shape);
            let documented = crate::partner_central::matrix::documented_values(field);
            let literals: Vec<(String, &str)> = match value {
                Value::String(s) if !template::is_template(s) => vec![(at.clone(), s.as_str())],
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.as_str().map(|s| (format!("{at}/{i}"), s)))
                    .filter(|(_, s)| !template::is_template(s))
                    .collect(),
                _ => Vec::new(),
            };
            for (pointer, literal) in literals.iter().filter(|_| !documented.is_empty()) {
                if !documented.contains(literal) {
                    let mut d = Diagnostic::error(
                        Code::InvalidEnumValue,
                        format!("`{literal}` is not a value Partner Central accepts for `{field}`"),
                    );
                    d.help = did_you_mean(literal, documented.iter().copied())
                        .or_else(|| Some("the service model documents the accepted values".into()));
                    self.push(d, self.at_value(pointer));
                }
            }
            match value {
                Value::String(s) if !template::is_template(s) => {
                    self.enum_value(values, shape, s, &at, field)
                }
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(s) = item.as_str().filter(|s| !template::is_template(s)) {
                            self.enum_value(values, shape, s, &format!("{at}/{i}"), field);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// A create pack must write every field AWS's field matrix makes mandatory for a
    /// partner-originated opportunity without condition; otherwise no deal could ever
    /// become an opportunity (the fields with exceptions, such as the postal code, are
    /// waited for at run time).
    fn required_fields(&mut self) {
        if self.pack.create.is_none() {
            return;
        }
        let written: Vec<String> = self
            .pack
            .map
            .values()
            .filter_map(|m| m.to.as_ref().map(|t| t.as_str().to_string()))
            .chain(self.pack.set.keys().cloned())
            .map(|f| crate::partner_central::matrix::without_indexes(&f))
            .collect();
        for row in crate::readiness::always_required() {
            let path = row.api_path.expect("always_required rows have a path");
            if !written.iter().any(|w| w == path) {
                self.push(
                    Diagnostic::error(
                        Code::RequiredField,
                        format!("this pack creates opportunities but writes no `{path}`, which AWS requires"),
                    )
                    .with_help(format!(
                        "map a deal or company property `to: {path}`, or give it under `set` (AWS's field matrix, row `{}`: {})",
                        row.crm_name, row.label
                    )),
                    self.at_key("/create"),
                );
            }
        }
    }

    /// `convert_currency` names currencies of the model's `CurrencyCode` list, and
    /// has a spend currency mapping to read the deal's currency from.
    fn currency_conversion(&mut self) {
        let Some(conversion) = &self.pack.convert_currency else {
            return;
        };
        let maps_currency = self.pack.map.values().any(|m| {
            m.to.as_ref().is_some_and(|t| {
                crate::partner_central::matrix::without_indexes(t.as_str())
                    == "Project.ExpectedCustomerSpend.CurrencyCode"
            })
        });
        if !maps_currency {
            self.push(
                Diagnostic::error(
                    Code::MissingField,
                    "`convert_currency` needs a mapping to `Project.ExpectedCustomerSpend[0].CurrencyCode` to read the deal's currency from",
                )
                .with_help("map the deal's currency property, e.g. `deal_currency_code: { to: \"Project.ExpectedCustomerSpend[0].CurrencyCode\", allow: [USD, EUR] }`"),
                self.at_key("/convert_currency"),
            );
        }
        let Ok(shape) = partner_central::resolve(
            self.write_root(),
            "Project.ExpectedCustomerSpend[0].CurrencyCode",
        ) else {
            return;
        };
        let codes = enum_values_of(shape);
        for currency in conversion.rates.keys() {
            let pointer = pointer_join("/convert_currency/rates", currency);
            if !codes.contains(&currency.as_str()) {
                let mut d = Diagnostic::error(
                    Code::InvalidValue,
                    format!("`{currency}` is not an ISO 4217 currency code Partner Central knows"),
                );
                d.help = did_you_mean(currency, codes.iter().copied()).or(Some(
                    "write the three capital letters of the currency, e.g. `GBP`".into(),
                ));
                self.push(d, self.at_key(&pointer));
            }
        }
    }

    fn immutability(&mut self) {
        for (i, rule) in self.pack.immutable.iter().enumerate() {
            let at = format!("/immutable/{i}");
            for (list, name) in [(&rule.only, "only"), (&rule.locked, "locked")] {
                for (j, f) in list.iter().enumerate() {
                    self.field_path(
                        partner_central::UPDATE_OPPORTUNITY,
                        f.as_str(),
                        &format!("{at}/{name}/{j}"),
                    );
                }
            }
            if !rule.only.is_empty() && !rule.locked.is_empty() {
                self.push(
                    Diagnostic::error(Code::InvalidValue, "an immutability rule takes `only` or `locked`, not both")
                        .with_help("`only` lists what may change (all else is covered); `locked` lists what is covered"),
                    self.at_key(&format!("{at}/locked")),
                );
            }
            if rule.review_status.is_empty() && rule.stage.is_empty() {
                self.push(
                    Diagnostic::warning(Code::InvalidValue, "this immutability rule names no review status or stage, so it always applies")
                        .with_help("add `review_status: [...]` or `stage: [...]`"),
                    self.at_key(&at),
                );
            }
        }
        if self.pack.update.is_some() && self.pack.create.is_some() {
            self.push(
                Diagnostic::error(Code::InvalidValue, "`update` applies to packs that update the linked opportunity, and this pack creates one")
                    .with_help("say what a create waits for under `create.incomplete`, and remove `update`"),
                self.at_key("/update"),
            );
        }
        if !self.pack.immutable.is_empty()
            && !self.pack.needs.opportunity
            && self.pack.create.is_none()
        {
            self.push(
                Diagnostic::error(Code::MissingContext, "immutability rules need the opportunity's review status, but the pack does not load the opportunity")
                    .with_help("add `opportunity: true` under `needs`"),
                self.at_key("/immutable"),
            );
        }
    }

    /// Checks each watch's root variable and field path; returns the model shape
    /// each watch resolves to, where it does.
    fn watches(&mut self) -> Vec<(String, Option<&'static Shape>)> {
        let mut shapes = Vec::new();
        for (name, path) in &self.pack.watch {
            let at = pointer_join("/watch", name);
            let (root, members) = jsonpath_members(path.as_str());
            let mut resolved = None;
            let loaded = match root.as_deref() {
                Some("opportunity") => {
                    Some((self.pack.needs.opportunity, partner_central::OPPORTUNITY))
                }
                Some("aws_summary") => {
                    Some((self.pack.needs.aws_summary, partner_central::AWS_SUMMARY))
                }
                _ => None,
            };
            if let (Some(root), Some((is_loaded, shape_root))) = (root.as_deref(), loaded) {
                if !is_loaded {
                    self.push(
                        Diagnostic::error(
                            Code::MissingContext,
                            format!("watch `{name}` reads `{root}`, which this pack does not load"),
                        )
                        .with_help(format!("add `{root}: true` under `needs`")),
                        self.at_value(&at),
                    );
                } else if !members.is_empty() {
                    match partner_central::resolve(shape_root, &members.join(".")) {
                        Ok(shape) => resolved = Some(shape),
                        Err(PathError::UnknownMember {
                            member,
                            shape,
                            candidates,
                        }) => {
                            let d = unknown_member(None, &member, &shape, &candidates);
                            self.push(d, self.at_value(&at));
                        }
                        Err(_) => {}
                    }
                }
            }
            shapes.push((name.clone(), resolved));
        }
        shapes
    }

    fn notifications(&mut self, watch_shapes: &[(String, Option<&'static Shape>)]) {
        let mut names = BTreeSet::new();
        let configured: Vec<ChannelKind> = [
            self.pack.channels.task.as_ref().map(|_| ChannelKind::Task),
            self.pack.channels.note.as_ref().map(|_| ChannelKind::Note),
            self.pack.channels.sns.as_ref().map(|_| ChannelKind::Sns),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (i, rule) in self.pack.notify.iter().enumerate() {
            let at = format!("/notify/{i}");
            if !names.insert(rule.name.as_str()) {
                self.push(
                    Diagnostic::error(Code::DuplicateKey, format!("two notification rules are named `{}`", rule.name))
                        .with_help("names identify rules in traces and in the sent-notification log; make them unique"),
                    self.at_value(&format!("{at}/name")),
                );
            }
            if let Some(when) = &rule.when {
                self.condition(when, &format!("{at}/when"), watch_shapes);
            }
            for (j, ch) in rule.channels.iter().enumerate() {
                if !configured.contains(ch) {
                    self.push(
                        Diagnostic::error(
                            Code::UnknownReference,
                            format!("channel `{}` is not configured in this pack", ch.as_str()),
                        )
                        .with_help(format!(
                            "add `{}: {{}}` under `channels`, or remove it here",
                            ch.as_str()
                        )),
                        self.at_value(&format!("{at}/channels/{j}")),
                    );
                }
            }
            if rule.channels.is_empty() && configured.is_empty() {
                self.push(
                    Diagnostic::error(
                        Code::UnknownReference,
                        format!("notification `{}` has nowhere to go", rule.name),
                    )
                    .with_help("configure at least one of `task`, `note`, `sns` under `channels`"),
                    self.at_key(&at),
                );
            }
            if let Some(list) = &rule.for_each {
                match LISTS.iter().find(|(n, _)| n == list) {
                    None => {
                        let mut d = Diagnostic::error(
                            Code::UnknownReference,
                            format!(
                                "`for_each` names `{list}`, which is not a list pcsync provides"
                            ),
                        );
                        d.help = did_you_mean(list, LISTS.iter().map(|(n, _)| *n)).or_else(|| {
                            Some(format!(
                                "lists: {}",
                                LISTS
                                    .iter()
                                    .map(|(n, _)| format!("`{n}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        });
                        self.push(d, self.at_value(&format!("{at}/for_each")));
                    }
                    Some((name, how))
                        if *name == "snapshots" && self.pack.needs.snapshots.is_empty() =>
                    {
                        self.push(
                            Diagnostic::error(
                                Code::MissingContext,
                                "`snapshots` is not loaded by this pack",
                            )
                            .with_help(*how),
                            self.at_value(&format!("{at}/for_each")),
                        );
                    }
                    Some(_) => {}
                }
            }
            if let Some(prop) = &rule.remember_in
                && !self.pack.needs.deal.contains(prop)
            {
                self.push(
                    Diagnostic::error(
                        Code::MissingContext,
                        format!("deal property `{prop}` is not loaded"),
                    )
                    .with_help(format!(
                        "add `{prop}` to `needs.deal`: pcsync reads the keys already sent from it"
                    )),
                    self.at_value(&format!("{at}/remember_in")),
                );
            }
        }
    }

    fn condition(
        &mut self,
        c: &Condition,
        at: &str,
        watch_shapes: &[(String, Option<&'static Shape>)],
    ) {
        let change_parts = c.changed.is_some()
            || !c.changed_to.is_empty()
            || !c.changed_from.is_empty()
            || c.increased_by.is_some()
            || c.decreased_by.is_some()
            || c.crossed.is_some()
            || c.crossed_above.is_some()
            || c.crossed_below.is_some()
            || c.appeared.is_some()
            || c.disappeared.is_some();
        if !change_parts && c.condition.is_none() {
            self.push(
                Diagnostic::error(Code::MissingField, "this condition says nothing")
                    .with_help("name a `watch` and a change (`changed`, `changed_to`, `increased_by`…), or give an `if`"),
                self.at_key(at),
            );
            return;
        }
        if change_parts && !self.pack.needs.previous {
            self.push(
                Diagnostic::error(Code::MissingContext, "change detection compares with the last-known state, which this pack does not load")
                    .with_help("add `previous: true` under `needs`"),
                self.at_key(at),
            );
        }
        let shape = match &c.watch {
            None if change_parts => {
                self.push(
                    Diagnostic::error(Code::MissingField, "a change condition needs `watch`")
                        .with_help(
                            "name the watched value the change is about, e.g. `watch: score`",
                        ),
                    self.at_key(at),
                );
                return;
            }
            None => None,
            Some(name) => match watch_shapes.iter().find(|(n, _)| n == name) {
                Some((_, shape)) => *shape,
                None => {
                    let mut d = Diagnostic::error(
                        Code::UnknownReference,
                        format!("no watch named `{name}`"),
                    );
                    d.help = did_you_mean(name, watch_shapes.iter().map(|(n, _)| n.as_str()))
                        .or_else(|| Some("declare it under `watch`".into()));
                    self.push(d, self.at_value(&format!("{at}/watch")));
                    return;
                }
            },
        };
        if let Some(shape) = shape {
            let values = enum_values_of(shape);
            let field = c.watch.clone().unwrap_or_default();
            for (list, key) in [
                (&c.changed_to, "changed_to"),
                (&c.changed_from, "changed_from"),
            ] {
                for (i, v) in list.iter().enumerate() {
                    self.enum_value(values, shape, v, &format!("{at}/{key}/{i}"), &field);
                }
            }
        }
        for (r, key) in [
            (&c.increased_by, "increased_by"),
            (&c.decreased_by, "decreased_by"),
            (&c.crossed, "crossed"),
            (&c.crossed_above, "crossed_above"),
            (&c.crossed_below, "crossed_below"),
        ] {
            if let Some(r) = r {
                self.number_ref(r, &format!("{at}/{key}"));
            }
        }
    }

    fn number_ref(&mut self, r: &NumberRef, at: &str) {
        if let NumberRef::Name(name) = r
            && !self.pack.thresholds.contains_key(name)
        {
            let mut d = Diagnostic::error(
                Code::UnknownReference,
                format!("no threshold named `{name}`"),
            );
            d.help = did_you_mean(name, self.pack.thresholds.keys().map(String::as_str))
                .or_else(|| Some("declare it under `thresholds`, or write a number".into()));
            self.push(d, self.at_value(at));
        }
    }

    /// Resolves a field path written as a value at `pointer`.
    fn field_path(&mut self, root: &str, path: &str, pointer: &str) -> Option<&'static Shape> {
        let span = self.at_value(pointer);
        self.resolve_reporting(root, path, span)
    }

    /// Resolves a field path written as a key at `pointer`.
    fn field_path_at_key(
        &mut self,
        root: &str,
        path: &str,
        pointer: &str,
    ) -> Option<&'static Shape> {
        let span = self.at_key(pointer);
        self.resolve_reporting(root, path, span)
    }

    fn resolve_reporting(&mut self, root: &str, path: &str, span: Span) -> Option<&'static Shape> {
        match partner_central::resolve(root, path) {
            Ok(shape) => Some(shape),
            Err(e) => {
                let mut d = Diagnostic::error(
                    Code::UnknownFieldPath,
                    format!("`{path}` is not a Partner Central opportunity field"),
                );
                d.help = match &e {
                    PathError::UnknownMember {
                        member,
                        shape,
                        candidates,
                    } => Some(match did_you_mean(member, candidates.iter().copied()) {
                        Some(s) => format!("`{member}` is not a field of `{shape}`; {s}"),
                        None => format!(
                            "`{shape}` has: {}",
                            candidates
                                .iter()
                                .map(|c| format!("`{c}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }),
                    other => Some(other.to_string()),
                };
                self.push(d, span);
                None
            }
        }
    }

    fn enum_value(
        &mut self,
        values: &[&str],
        shape: &Shape,
        value: &str,
        pointer: &str,
        field: &str,
    ) {
        if values.is_empty() || values.contains(&value) {
            return;
        }
        let mut d = invalid_enum(value, shape, field);
        d.help = did_you_mean(value, values.iter().copied()).or(d.help);
        self.push(d, self.at_value(pointer));
    }
}

/// "`member` is not a field of `Shape`", with a suggestion; `path` names the whole
/// path written, when it helps.
pub(crate) fn unknown_member(
    path: Option<&str>,
    member: &str,
    shape: &str,
    candidates: &[&'static str],
) -> Diagnostic {
    let message = match path {
        Some(path) => format!("`{path}`: `{member}` is not a field of `{shape}`"),
        None => format!("`{member}` is not a field of `{shape}`"),
    };
    let mut d = Diagnostic::error(Code::UnknownFieldPath, message);
    d.help = did_you_mean(member, candidates.iter().copied());
    d
}

fn invalid_enum(value: &str, shape: &Shape, field: &str) -> Diagnostic {
    let values = enum_values_of(shape);
    let shown: Vec<String> = values.iter().take(12).map(|v| format!("`{v}`")).collect();
    let more = if values.len() > 12 { ", …" } else { "" };
    Diagnostic::error(
        Code::InvalidEnumValue,
        format!("`{value}` is not a valid `{}` for `{field}`", shape.name),
    )
    .with_help(format!(
        "Partner Central accepts {}{more}",
        shown.join(", ")
    ))
}

fn enum_values_of(shape: &Shape) -> &'static [&'static str] {
    match &shape.kind {
        ShapeKind::String(rules) => rules.enum_values,
        _ => &[],
    }
}

/// The root variable and the plain member names after it, for a JSONPath like
/// `$.aws_summary.Insights.OpportunityQuality.Score`. Stops at the first filter,
/// wildcard or index.
pub(crate) fn jsonpath_members(path: &str) -> (Option<String>, Vec<String>) {
    let Some(rest) = path.strip_prefix("$.") else {
        return (None, Vec::new());
    };
    let mut names = Vec::new();
    for part in rest.split('.') {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        let whole = name.len() == part.len();
        names.push(name);
        if !whole {
            break;
        }
    }
    let root = if names.is_empty() {
        None
    } else {
        Some(names.remove(0))
    };
    (root, names)
}

/// What one pack writes when one trigger fires, for conflict detection.
struct Writes<'a> {
    pack: &'a RulePack,
    file: FileId,
    doc: &'a Document,
}

/// Checks the whole rule set: duplicate pack names and two packs writing the same
/// field from the same trigger.
pub fn check_set(sources: &Sources, packs: &[(FileId, &Document, &RulePack)]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, (file, doc, pack)) in packs.iter().enumerate() {
        if let Some((other_file, other_doc, _)) =
            packs[..i].iter().find(|(_, _, p)| p.name == pack.name)
        {
            let line = sources
                .position(*other_file, other_doc.value_span("/pack").start)
                .line;
            out.push(
                Diagnostic::error(
                    Code::DuplicatePack,
                    format!("a pack named `{}` is already loaded", pack.name),
                )
                .at(*file, doc.value_span("/pack"))
                .with_help(format!(
                    "{}:{line} has the same name; pack names must be unique",
                    sources.name(*other_file)
                )),
            );
        }
    }
    let writes: Vec<Writes> = packs
        .iter()
        .filter(|(_, _, p)| p.enabled)
        .map(|(file, doc, pack)| Writes {
            pack,
            file: *file,
            doc,
        })
        .collect();
    for (i, later) in writes.iter().enumerate() {
        for earlier in &writes[..i] {
            // A create pack's fields go to a new opportunity, an update pack's to an
            // existing one: they cannot race on one record.
            if !triggers_overlap(earlier.pack, later.pack)
                || earlier.pack.create.is_some() != later.pack.create.is_some()
            {
                continue;
            }
            let earlier_fields = written_fields(earlier.pack);
            for (field, pointer, at_key) in written_fields(later.pack) {
                let Some((_, first_pointer, first_at_key)) =
                    earlier_fields.iter().find(|(f, _, _)| *f == field)
                else {
                    continue;
                };
                let first_span = span_of(earlier.doc, first_pointer, *first_at_key);
                let line = sources.position(earlier.file, first_span.start).line;
                out.push(
                    Diagnostic::error(
                        Code::WriteConflict,
                        format!("`{field}` is also written by pack `{}` on the same trigger", earlier.pack.name),
                    )
                    .at(later.file, span_of(later.doc, &pointer, at_key))
                    .with_help(format!(
                        "{}:{line} writes it too; one event would race two writes. Let one pack own the field, or give the packs disjoint triggers",
                        sources.name(earlier.file)
                    )),
                );
            }
        }
    }
    out
}

fn span_of(doc: &Document, pointer: &str, at_key: bool) -> Span {
    if at_key {
        doc.key_span(pointer)
    } else {
        doc.value_span(pointer)
    }
}

/// Fields a pack writes: Partner Central fields (`to` mappings, `set`) and deal
/// properties (`from` mappings), with where each is written.
fn written_fields(pack: &RulePack) -> Vec<(String, String, bool)> {
    let mut fields = Vec::new();
    for (prop, m) in &pack.map {
        let at = pointer_join("/map", prop);
        if let Some(to) = &m.to {
            fields.push((normalize(to.as_str()), format!("{at}/to"), false));
        }
        if m.from.is_some() {
            fields.push((format!("deal.{prop}"), at, true));
        }
    }
    for field in pack.set.keys() {
        fields.push((normalize(field), pointer_join("/set", field), true));
    }
    fields
}

/// `Project.ExpectedCustomerSpend[0].Amount` and `Project.ExpectedCustomerSpend.Amount`
/// name the same field for conflict purposes.
fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut skipping = false;
    for c in path.chars() {
        match c {
            '[' => skipping = true,
            ']' => skipping = false,
            _ if !skipping => out.push(c),
            _ => {}
        }
    }
    out
}

fn triggers_overlap(a: &RulePack, b: &RulePack) -> bool {
    a.on.as_slice()
        .iter()
        .any(|x| b.on.as_slice().iter().any(|y| trigger_overlap(x, y)))
}

fn trigger_overlap(x: &Trigger, y: &Trigger) -> bool {
    if let (Some(a), Some(b)) = (x.hubspot, y.hubspot) {
        if a != b {
            return false;
        }
        return x.properties.is_empty()
            || y.properties.is_empty()
            || x.properties.iter().any(|p| y.properties.contains(p));
    }
    if let (Some(a), Some(b)) = (x.partnercentral, y.partnercentral) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (&x.schedule, &y.schedule) {
        return a.every == b.every && a.for_each == b.for_each;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_members_stop_at_filters() {
        assert_eq!(
            jsonpath_members("$.aws_summary.Insights.OpportunityQuality.Score"),
            (
                Some("aws_summary".into()),
                vec![
                    "Insights".into(),
                    "OpportunityQuality".into(),
                    "Score".into()
                ]
            )
        );
        assert_eq!(
            jsonpath_members("$.aws_summary.OpportunityTeam[?@.BusinessTitle == 'AWSSalesRep']"),
            (Some("aws_summary".into()), vec!["OpportunityTeam".into()])
        );
    }

    #[test]
    fn list_indexes_do_not_change_the_field_for_conflicts() {
        assert_eq!(
            normalize("Project.ExpectedCustomerSpend[0].Amount"),
            "Project.ExpectedCustomerSpend.Amount"
        );
    }
}
