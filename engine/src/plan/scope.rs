//! The variables a pack's Rhai and templates see, built once per pack and event and
//! converted to each language's values only when a script or template uses them.

use std::cell::RefCell;
use std::collections::BTreeMap;

use jiff::Timestamp;
use rhai::{Dynamic, Engine, Scope};
use serde_json::{Map, Value};

use crate::compile::CompiledPack;
use crate::context::Context;
use crate::event::Event;

/// The variables of one pack evaluation.
pub struct Vars<'a> {
    pack: &'a CompiledPack,
    engine: &'a Engine,
    base: Map<String, Value>,
    rhai_cache: RefCell<BTreeMap<String, Dynamic>>,
    jinja_cache: RefCell<Option<BTreeMap<String, minijinja::Value>>>,
}

impl<'a> Vars<'a> {
    /// The base variables: `deal`, `opportunity`, `aws_summary`, `previous`,
    /// `snapshots`, `event`, `settings`, `thresholds`, `now`.
    pub fn new(
        pack: &'a CompiledPack,
        engine: &'a Engine,
        event: &Event,
        ctx: &Context,
        now: Timestamp,
    ) -> Self {
        let p = &pack.pack;
        let mut base = Map::new();
        let mut deal = Map::new();
        if let Some(d) = &ctx.deal {
            deal.insert("id".into(), Value::String(d.id.clone()));
            for name in d.properties.keys() {
                deal.insert(
                    name.clone(),
                    d.property(name)
                        .map_or(Value::String(String::new()), Value::String),
                );
            }
        } else if let Some(id) = &event.deal_id {
            deal.insert("id".into(), Value::String(id.clone()));
        }
        // The changed value from the webhook fills in for a snapshot that lacks it.
        if let Some(change) = &event.property {
            let missing = deal
                .get(&change.name)
                .is_none_or(|v| v.as_str() == Some(""));
            if missing && let Some(v) = &change.value {
                deal.insert(change.name.clone(), Value::String(v.clone()));
            }
        }
        // Unset properties read as empty text, so `deal.x == ""` tests for "unset".
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
        base.insert("deal".into(), Value::Object(deal));
        base.insert(
            "opportunity".into(),
            ctx.opportunity.clone().unwrap_or(Value::Null),
        );
        base.insert(
            "aws_summary".into(),
            ctx.aws_summary.clone().unwrap_or(Value::Null),
        );
        base.insert("snapshots".into(), Value::Array(ctx.snapshots.clone()));
        let previous = ctx.previous.get(&p.pack).map_or(Value::Null, |state| {
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
        });
        base.insert("previous".into(), previous);
        base.insert(
            "event".into(),
            serde_json::to_value(event).unwrap_or(Value::Null),
        );
        base.insert(
            "settings".into(),
            Value::Object(p.settings.clone().into_iter().collect()),
        );
        base.insert(
            "thresholds".into(),
            Value::Object(
                p.thresholds
                    .iter()
                    .map(|(k, v)| (k.clone(), number_value(*v)))
                    .collect(),
            ),
        );
        base.insert("now".into(), Value::String(now.to_string()));
        Vars {
            pack,
            engine,
            base,
            rhai_cache: RefCell::new(BTreeMap::new()),
            jinja_cache: RefCell::new(None),
        }
    }

    /// A base variable.
    pub fn get(&self, name: &str) -> &Value {
        self.base.get(name).unwrap_or(&Value::Null)
    }

    /// The whole root, for JSONPath.
    pub fn root(&self) -> Value {
        Value::Object(self.base.clone())
    }

    fn scope(&self, uses: &[String], extras: &[(&str, &Value)]) -> Scope<'static> {
        let mut scope = Scope::new();
        for name in uses {
            if let Some((_, v)) = extras.iter().find(|(n, _)| n == name) {
                scope.push_dynamic(name.clone(), to_dynamic(v));
                continue;
            }
            let mut cache = self.rhai_cache.borrow_mut();
            let dynamic = cache
                .entry(name.clone())
                .or_insert_with(|| to_dynamic(self.base.get(name).unwrap_or(&Value::Null)))
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
        let mut scope = self.scope(&script.uses, extras);
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
        let mut cache = self.jinja_cache.borrow_mut();
        let base = cache.get_or_insert_with(|| {
            self.base
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        minijinja::Value::from(minijinja::value::Serde(v)),
                    )
                })
                .collect()
        });
        let ctx = if extras.is_empty() {
            minijinja::Value::from_object(base.clone())
        } else {
            let mut all = base.clone();
            for (k, v) in extras {
                all.insert(
                    (*k).to_string(),
                    minijinja::Value::from(minijinja::value::Serde(v)),
                );
            }
            minijinja::Value::from_object(all)
        };
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
