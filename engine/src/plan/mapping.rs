//! One mapping, step by step: table, allow-list, transforms, script, then the target
//! field's own rules (enum, length, format) from the Partner Central model.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::model::{Mapping, NumberRef, Transform, Unmapped};
use crate::partner_central::{Shape, ShapeKind};

use super::scope::Vars;
use crate::dates::{to_date, to_timestamp};

/// What became of one mapped value.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Write this value.
    Value(Value),
    /// Leave the field out; the reason says why.
    Skip(String),
    /// The value does not map and the mapping says `unmapped: skip_field`.
    Unmapped(String),
    /// Fail the whole update.
    Error(String),
}

/// Maps `input` (the source value, `None` when unset) through `m`, for a target of
/// shape `target` (when the target is a Partner Central field).
pub fn apply(
    vars: &Vars<'_>,
    pointer: &str,
    m: &Mapping,
    input: Option<Value>,
    target: Option<&Shape>,
    thresholds: &indexmap::IndexMap<String, f64>,
) -> Mapped {
    let unmapped = |reason: String, raw: &Value| match m.unmapped {
        Unmapped::SkipField => Mapped::Unmapped(reason),
        Unmapped::Keep => Mapped::Value(raw.clone()),
        Unmapped::Error => Mapped::Error(reason),
    };
    let empty = input
        .as_ref()
        .is_none_or(|v| v.is_null() || v.as_str() == Some(""));
    let mut value = match input {
        Some(v) if !empty => v,
        _ => match m.transform.iter().find_map(|t| match t {
            Transform::Default(d) => Some(d.clone()),
            _ => None,
        }) {
            Some(d) => Value::String(d),
            None if m.otherwise.is_some() => Value::Null,
            None if m.script.is_some() || m.script_file.is_some() => Value::String(String::new()),
            None => return Mapped::Skip("no value".into()),
        },
    };
    let raw = value.clone();
    let text = text_of(&value);

    match (&m.table, &m.otherwise) {
        (Some(table), otherwise) => match (table.get(&text), otherwise) {
            (Some(v), _) => value = Value::String(v.clone()),
            (None, Some(fallback)) => value = Value::String(fallback.clone()),
            (None, None) => return unmapped(format!("`{text}` is not in the table"), &raw),
        },
        (None, Some(fallback)) if value.is_null() => value = Value::String(fallback.clone()),
        (None, _) => {}
    }
    if let Some(allow) = &m.allow {
        let now = text_of(&value);
        if !allow.contains(&now) {
            return unmapped(format!("`{now}` is not one of {}", list(allow)), &raw);
        }
    }
    for t in &m.transform {
        value = match transform(t, value, thresholds) {
            Ok(v) => v,
            Err(reason) => return unmapped(reason, &raw),
        };
    }
    let script_at = if m.script.is_some() {
        Some(format!("{pointer}/script"))
    } else if m.script_file.is_some() {
        Some(format!("{pointer}/script_file"))
    } else {
        None
    };
    if let Some(at) = script_at {
        match vars.eval(&at, &[("value", &value)]) {
            Ok(Value::Null) => return Mapped::Skip("the script returned nothing".into()),
            Ok(v) => value = v,
            Err(e) => return Mapped::Error(e),
        }
    }
    if let Some(shape) = target {
        match conform(value, shape) {
            Ok(v) => value = v,
            Err(reason) => return unmapped(reason, &raw),
        }
    }
    Mapped::Value(value)
}

/// Text of a scalar value (numbers and booleans as written).
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn transform(
    t: &Transform,
    value: Value,
    thresholds: &indexmap::IndexMap<String, f64>,
) -> Result<Value, String> {
    let text = text_of(&value);
    Ok(match t {
        Transform::Date => Value::String(to_date(&text)?),
        Transform::Datetime => Value::String(to_timestamp(&text)?.to_string()),
        Transform::Number => Value::String(decimal_text(parse_decimal(&text)?)),
        Transform::Ratio(r) => {
            let ratio = match r {
                NumberRef::Number(n) => *n,
                NumberRef::Name(name) => *thresholds
                    .get(name)
                    .ok_or_else(|| format!("no threshold `{name}`"))?,
            };
            let ratio = Decimal::try_from(ratio)
                .map_err(|_| format!("ratio {ratio} is not a usable number"))?;
            Value::String(decimal_text(parse_decimal(&text)? * ratio))
        }
        Transform::Trim => Value::String(text.trim().to_string()),
        Transform::Truncate(n) => {
            let mut text = text;
            if let Some((end, _)) = text.char_indices().nth(*n) {
                text.truncate(end);
            }
            Value::String(text)
        }
        Transform::Upper => Value::String(text.to_uppercase()),
        Transform::Lower => Value::String(text.to_lowercase()),
        Transform::Default(d) if text.is_empty() => Value::String(d.clone()),
        Transform::Default(_) => value,
    })
}

/// An amount converted at `rate` (`convert_currency`), rounded to cents.
pub fn convert(value: &Value, rate: f64) -> Result<Value, String> {
    let rate =
        Decimal::try_from(rate).map_err(|_| format!("rate {rate} is not a usable number"))?;
    Ok(Value::String(decimal_text(
        parse_decimal(&text_of(value))? * rate,
    )))
}

fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let cleaned: String = text.trim().chars().filter(|c| *c != ',').collect();
    Decimal::from_str(&cleaned)
        .or_else(|_| Decimal::from_scientific(&cleaned))
        .map_err(|_| format!("`{text}` is not a number"))
}

/// A decimal rounded to cents, without trailing zeros (`12500.5`, `2000`).
fn decimal_text(d: Decimal) -> String {
    d.round_dp(2).normalize().to_string()
}

/// Makes `value` fit the target shape (numbers become text for string fields), or
/// says which of the field's rules it breaks.
/// Checks a value against the list the service model documents for `field` but does
/// not enumerate (`Customer.Account.Address.StateOrRegion`: `Alabama | Alaska | …`),
/// which Partner Central checks when it receives it.
pub fn documented(field: &str, value: &Value) -> Result<(), String> {
    let allowed = crate::partner_central::matrix::documented_values(field);
    if allowed.is_empty() {
        return Ok(());
    }
    let items = match value {
        Value::Array(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    for item in items {
        let text = text_of(item);
        if !allowed.contains(&text.as_str()) {
            return Err(format!(
                "`{}` is not one of the values Partner Central accepts for {field}",
                short(&text)
            ));
        }
    }
    Ok(())
}

pub fn conform(value: Value, shape: &Shape) -> Result<Value, String> {
    match &shape.kind {
        ShapeKind::String(rules) => {
            let text = match &value {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => text_of(&value),
                other => return Err(format!("`{other}` is not text")),
            };
            if !rules.enum_values.is_empty() && !rules.enum_values.contains(&text.as_str()) {
                let shown: Vec<String> = rules
                    .enum_values
                    .iter()
                    .take(10)
                    .map(|v| format!("`{v}`"))
                    .collect();
                return Err(format!(
                    "`{text}` is not a valid `{}` ({}{})",
                    shape.name,
                    shown.join(", "),
                    if rules.enum_values.len() > 10 {
                        ", …"
                    } else {
                        ""
                    }
                ));
            }
            let len = text.chars().count() as u64;
            if let Some(min) = rules.min.filter(|m| len < *m) {
                return Err(format!(
                    "`{}` has {len} characters; Partner Central needs at least {min}",
                    short(&text)
                ));
            }
            if let Some(max) = rules.max.filter(|m| len > *m) {
                return Err(format!(
                    "text has {len} characters; Partner Central accepts at most {max}"
                ));
            }
            if let Some((min, max)) = rules.pattern.and_then(length_pattern) {
                // AWS writes many length limits as `(?s).{20,2000}`: say them as lengths.
                if len < min {
                    return Err(format!(
                        "`{}` has {len} characters; Partner Central needs at least {min}",
                        short(&text)
                    ));
                }
                if len > max {
                    return Err(format!(
                        "text has {len} characters; Partner Central accepts at most {max}"
                    ));
                }
            } else if let Some(pattern) = rules.pattern
                && let Some(re) = pattern_regex(pattern)
                && !re.is_match(&text)
            {
                return Err(format!(
                    "`{}` is not in the format Partner Central accepts for `{}`",
                    short(&text),
                    shape.name
                ));
            }
            Ok(Value::String(text))
        }
        ShapeKind::Integer { min, max } => {
            let n: i64 = text_of(&value)
                .trim()
                .parse()
                .map_err(|_| format!("`{}` is not a whole number", text_of(&value)))?;
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                return Err(format!("{n} is out of range"));
            }
            Ok(Value::from(n))
        }
        ShapeKind::Boolean => match text_of(&value).as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            other => Err(format!("`{other}` is not true or false")),
        },
        ShapeKind::Timestamp => Ok(Value::String(to_timestamp(&text_of(&value))?.to_string())),
        _ => Ok(value),
    }
}

/// The bounds of a pure length pattern such as `(?s).{20,2000}`.
fn length_pattern(pattern: &str) -> Option<(u64, u64)> {
    let inner = pattern.strip_prefix("(?s).{")?.strip_suffix('}')?;
    let (min, max) = inner.split_once(',')?;
    Some((min.parse().ok()?, max.parse().ok()?))
}

fn short(text: &str) -> String {
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text.to_string()
    }
}

/// Partner Central's patterns, compiled once each for the life of the process (a
/// fixed set from the model, so keeping them costs a bounded amount). A pattern the
/// regex crate cannot compile is not enforced here (the API still enforces it).
fn pattern_regex(pattern: &'static str) -> Option<&'static Regex> {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, Option<&'static Regex>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .expect("the pattern cache is never poisoned");
    *cache.entry(pattern).or_insert_with(|| {
        Regex::new(&format!("^(?:{pattern})$"))
            .ok()
            .map(|re| &*Box::leak(Box::new(re)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partner_central::{UPDATE_OPPORTUNITY, resolve};

    #[test]
    fn truncate_counts_characters_not_bytes() {
        let cut = |text: &str, n| {
            transform(
                &Transform::Truncate(n),
                Value::String(text.into()),
                &Default::default(),
            )
            .unwrap()
        };
        assert_eq!(cut("Zürich café", 6), "Zürich");
        assert_eq!(cut("Zürich", 6), "Zürich");
        assert_eq!(cut("Zü", 6), "Zü");
        assert_eq!(cut("日本語のテキスト", 3), "日本語");
        assert_eq!(cut("abc", 0), "");
    }

    #[test]
    fn dates_from_iso_epoch_and_plain_days() {
        assert_eq!(to_date("2026-12-31").unwrap(), "2026-12-31");
        assert_eq!(to_date("2019-12-07T16:50:06.678Z").unwrap(), "2019-12-07");
        assert_eq!(to_date("1767139200000").unwrap(), "2025-12-31");
        assert!(to_date("next tuesday").is_err());
    }

    #[test]
    fn numbers_round_to_cents_without_floating_point_noise() {
        let t = indexmap::IndexMap::new();
        assert_eq!(
            transform(&Transform::Number, Value::from("1,500.00"), &t).unwrap(),
            "1500"
        );
        assert_eq!(
            transform(
                &Transform::Ratio(NumberRef::Number(0.1)),
                Value::from("0.3"),
                &t
            )
            .unwrap(),
            "0.03"
        );
        assert_eq!(
            transform(
                &Transform::Ratio(NumberRef::Number(0.0833)),
                Value::from("120000"),
                &t
            )
            .unwrap(),
            "9996"
        );
    }

    #[test]
    fn conform_enforces_enum_length_and_pattern() {
        let stage = resolve(UPDATE_OPPORTUNITY, "LifeCycle.Stage").unwrap();
        assert!(conform(Value::from("Closed Won"), stage).is_err());
        assert_eq!(conform(Value::from("Launched"), stage).unwrap(), "Launched");
        let problem = resolve(UPDATE_OPPORTUNITY, "Project.CustomerBusinessProblem").unwrap();
        assert!(
            conform(Value::from("too short"), problem)
                .unwrap_err()
                .contains("at least 20")
        );
        let amount = resolve(
            UPDATE_OPPORTUNITY,
            "Project.ExpectedCustomerSpend[0].Amount",
        )
        .unwrap();
        assert_eq!(conform(Value::from(2000), amount).unwrap(), "2000");
        assert!(conform(Value::from("-5"), amount).is_err());
    }
}
