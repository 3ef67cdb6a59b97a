//! The variables a pack's Rhai and templates see, built once per pack and event and
//! converted to each language's values only when a script or template uses them.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;

use jiff::Timestamp;
use rhai::{Dynamic, Engine, Scope};
use serde_json::{Map, Value};

use crate::compile::CompiledPack;
use crate::context::{Context, VARIABLES};
use crate::event::Event;

/// The variables of one pack evaluation. Each is built the first time something
/// reads it: a pack whose only script reads `deal` never copies the opportunity.
pub struct Vars<'a> {
    pack: &'a CompiledPack,
    engine: &'a Engine,
    event: &'a Event,
    ctx: &'a Context,
    now: Timestamp,
    built: [OnceCell<Value>; VARIABLES.len()],
    rhai_cache: RefCell<BTreeMap<String, Dynamic>>,
    jinja_cache: RefCell<Option<BTreeMap<String, minijinja::Value>>>,
}

static NULL: Value = Value::Null;

impl<'a> Vars<'a> {
    /// The variables for `pack` evaluating `event` in `ctx` at `now`.
    pub fn new(
        pack: &'a CompiledPack,
        engine: &'a Engine,
        event: &'a Event,
        ctx: &'a Context,
        now: Timestamp,
    ) -> Self {
        Vars {
            pack,
            engine,
            event,
            ctx,
            now,
            built: Default::default(),
            rhai_cache: RefCell::new(BTreeMap::new()),
            jinja_cache: RefCell::new(None),
        }
    }

    /// A base variable (`Null` for names that are not variables).
    pub fn get(&self, name: &str) -> &Value {
        match name {
            "opportunity" => return self.ctx.opportunity.as_ref().unwrap_or(&NULL),
            "aws_summary" => return self.ctx.aws_summary.as_ref().unwrap_or(&NULL),
            _ => {}
        }
        match VARIABLES.iter().position(|n| *n == name) {
            Some(i) => self.built[i].get_or_init(|| self.build(name)),
            None => &NULL,
        }
    }

    fn build(&self, name: &str) -> Value {
        let p = &self.pack.pack;
        match name {
            "deal" => self.deal(),
            "company" => {
                let mut company = Map::new();
                let loaded = self.ctx.company.as_ref();
                company.insert(
                    "id".into(),
                    Value::String(loaded.map(|c| c.id.clone()).unwrap_or_default()),
                );
                for name in &p.needs.company {
                    company.insert(name.clone(), Value::String(self.company_property(name)));
                }
                if let Some(c) = loaded {
                    for (k, v) in &c.properties {
                        company.entry(k.clone()).or_insert_with(|| match v {
                            Value::Null => Value::String(String::new()),
                            other => other.clone(),
                        });
                    }
                }
                Value::Object(company)
            }
            "snapshots" => Value::Array(self.ctx.snapshots.clone()),
            "previous" => self.ctx.previous.get(&p.name).map_or(Value::Null, |state| {
                let mut m = Map::new();
                m.insert(
                    "watches".into(),
                    Value::Object(state.watches.clone().into_iter().collect()),
                );
                m.insert("sent".into(), Value::from(state.sent.clone()));
                for (k, v) in &state.watches {
                    m.entry(k.clone()).or_insert(v.clone());
                }
                Value::Object(m)
            }),
            "event" => serde_json::to_value(self.event).unwrap_or(Value::Null),
            "settings" => Value::Object(p.settings.clone().into_iter().collect()),
            "thresholds" => Value::Object(
                p.thresholds
                    .iter()
                    .map(|(k, v)| (k.clone(), number_value(*v)))
                    .collect(),
            ),
            "now" => Value::String(self.now.to_string()),
            _ => Value::Null,
        }
    }

    /// One property of the deal's company as `company.NAME` reads it; empty text when
    /// unset or when the deal has no company.
    pub fn company_property(&self, name: &str) -> String {
        self.ctx
            .company
            .as_ref()
            .and_then(|c| {
                if name == "id" {
                    Some(c.id.clone())
                } else {
                    c.property(name)
                }
            })
            .unwrap_or_default()
    }

    /// One deal property as `deal.NAME` reads it: the snapshot's value, else the
    /// webhook's new value, else empty text (`deal.x == ""` tests for "unset").
    pub fn deal_property(&self, name: &str) -> String {
        let from_snapshot = self
            .ctx
            .deal
            .as_ref()
            .and_then(|d| d.property(name))
            .filter(|v| !v.is_empty());
        from_snapshot
            .or_else(|| {
                self.event
                    .property
                    .as_ref()
                    .filter(|c| c.name == name)
                    .and_then(|c| c.value.clone())
            })
            .or_else(|| (name == "id").then(|| self.deal_id()).flatten())
            .unwrap_or_default()
    }

    /// The deal the event is about: the loaded deal's id, else the event's.
    pub fn deal_id(&self) -> Option<String> {
        self.ctx
            .deal
            .as_ref()
            .map(|d| d.id.clone())
            .or_else(|| self.event.deal_id.clone())
            .filter(|id| !id.is_empty())
    }

    /// `deal` as a Rhai map, built straight from the snapshot (no JSON in between:
    /// guards read the deal on every event), with just `fields` when the script's
    /// reads are known.
    fn deal_dynamic(&self, fields: Option<&[String]>) -> Dynamic {
        let p = &self.pack.pack;
        let mut map = rhai::Map::new();
        if let Some(fields) = fields {
            for name in fields {
                map.insert(
                    name.as_str().into(),
                    Dynamic::from(self.deal_property(name)),
                );
            }
            return Dynamic::from_map(map);
        }
        if let Some(d) = &self.ctx.deal {
            for name in d.properties.keys() {
                map.insert(
                    name.as_str().into(),
                    Dynamic::from(self.deal_property(name)),
                );
            }
        }
        for name in p
            .needs
            .deal
            .iter()
            .chain(std::iter::once(&p.needs.link_property))
        {
            if !map.contains_key(name.as_str()) {
                map.insert(
                    name.as_str().into(),
                    Dynamic::from(self.deal_property(name)),
                );
            }
        }
        if let Some(change) = &self.event.property
            && !map.contains_key(change.name.as_str())
        {
            map.insert(
                change.name.as_str().into(),
                Dynamic::from(self.deal_property(&change.name)),
            );
        }
        map.insert(
            "id".into(),
            Dynamic::from(self.deal_id().unwrap_or_default()),
        );
        Dynamic::from_map(map)
    }

    /// `deal`: its id and properties as text; unset properties the pack needs read
    /// as empty text, so `deal.x == ""` tests for "unset".
    fn deal(&self) -> Value {
        let p = &self.pack.pack;
        let mut deal = Map::new();
        if let Some(d) = &self.ctx.deal {
            deal.insert("id".into(), Value::String(d.id.clone()));
            for name in d.properties.keys() {
                deal.insert(
                    name.clone(),
                    d.property(name)
                        .map_or(Value::String(String::new()), Value::String),
                );
            }
        } else if let Some(id) = &self.event.deal_id {
            deal.insert("id".into(), Value::String(id.clone()));
        }
        // The changed value from the webhook fills in for a snapshot that lacks it.
        if let Some(change) = &self.event.property {
            let missing = deal
                .get(&change.name)
                .is_none_or(|v| v.as_str() == Some(""));
            if missing && let Some(v) = &change.value {
                deal.insert(change.name.clone(), Value::String(v.clone()));
            }
        }
        for name in p
            .needs
            .deal
            .iter()
            .chain(std::iter::once(&p.needs.link_property))
        {
            deal.entry(name.clone())
                .or_insert(Value::String(String::new()));
        }
        deal.entry("id").or_insert(Value::String(String::new()));
        Value::Object(deal)
    }

    /// The whole root, for JSONPath.
    pub fn root(&self) -> Value {
        Value::Object(
            VARIABLES
                .iter()
                .map(|n| (n.to_string(), self.get(n).clone()))
                .collect(),
        )
    }

    fn scope(
        &self,
        script: &crate::compile::CompiledScript,
        extras: &[(&str, &Value)],
    ) -> Scope<'static> {
        let mut scope = Scope::new();
        for name in &script.uses {
            if name == "deal" && !extras.iter().any(|(n, _)| *n == "deal") {
                scope.push_dynamic("deal", self.deal_dynamic(script.deal_fields.as_deref()));
                continue;
            }
            if let Some((_, v)) = extras.iter().find(|(n, _)| n == name) {
                scope.push_dynamic(name.clone(), to_dynamic(v));
                continue;
            }
            let mut cache = self.rhai_cache.borrow_mut();
            let dynamic = cache
                .entry(name.clone())
                .or_insert_with(|| to_dynamic(self.get(name)))
                .clone();
            scope.push_dynamic(name.clone(), dynamic);
        }
        scope
    }

    /// Runs the Rhai at `pointer` and returns its value as JSON.
    pub fn eval(&self, pointer: &str, extras: &[(&str, &Value)]) -> Result<Value, String> {
        let script = self
            .pack
            .scripts
            .get(pointer)
            .ok_or_else(|| format!("no compiled script at {pointer}"))?;
        let mut scope = self.scope(script, extras);
        let out: Dynamic = self
            .engine
            .eval_ast_with_scope(&mut scope, &script.ast)
            .map_err(|e| format!("Rhai at {pointer}: {}", rhai_error(&e)))?;
        rhai::serde::from_dynamic::<Value>(&out).map_err(|e| format!("Rhai at {pointer}: {e}"))
    }

    /// Runs the Rhai boolean at `pointer`.
    pub fn eval_bool(&self, pointer: &str, extras: &[(&str, &Value)]) -> Result<bool, String> {
        match self.eval(pointer, extras)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "Rhai at {pointer}: expected true or false, got {other}"
            )),
        }
    }

    /// Renders the template at `pointer`.
    pub fn render(&self, pointer: &str, extras: &[(&str, &Value)]) -> Result<String, String> {
        let template = self
            .pack
            .templates
            .get_template(pointer)
            .map_err(|e| format!("template at {pointer}: {e}"))?;
        // Convert only what this template reads: base variables once per pack run,
        // place variables (`value`, `item`, watches…) per render.
        let uses = self.pack.template_uses.get(pointer);
        let mut cache = self.jinja_cache.borrow_mut();
        let cache = cache.get_or_insert_with(BTreeMap::new);
        let mut vars: BTreeMap<String, minijinja::Value> = BTreeMap::new();
        for name in uses.into_iter().flatten() {
            if let Some((_, v)) = extras.iter().find(|(n, _)| n == name) {
                vars.insert(
                    name.clone(),
                    minijinja::Value::from(minijinja::value::Serde(v)),
                );
            } else if VARIABLES.contains(&name.as_str()) {
                let v = cache
                    .entry(name.clone())
                    .or_insert_with(|| {
                        minijinja::Value::from(minijinja::value::Serde(self.get(name)))
                    })
                    .clone();
                vars.insert(name.clone(), v);
            }
        }
        let ctx = minijinja::Value::from_object(vars);
        template.render(ctx).map_err(|e| {
            let mut text = format!("template at {pointer}: {}", e.kind());
            if let Some(detail) = e.detail() {
                text.push_str(": ");
                text.push_str(detail);
            }
            text
        })
    }
}

/// A threshold as JSON: whole numbers stay whole (`80`, not `80.0`, in templates).
fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        Value::from(n)
    }
}

fn to_dynamic(v: &Value) -> Dynamic {
    rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
}

fn rhai_error(e: &rhai::EvalAltResult) -> String {
    match e {
        rhai::EvalAltResult::ErrorTooManyOperations(_) => format!(
            "stopped after {} operations (an endless loop?)",
            crate::script::MAX_OPERATIONS
        ),
        other => other.to_string(),
    }
}
