//! Request validation as the service model states it: required members, enum values,
//! string lengths and patterns, list sizes, number ranges, timestamp syntax. The Rust
//! SDK validates none of this client-side (reference §3, "Required inputs"), so the
//! server must, and answers with a `ValidationException` listing every problem.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use pcsync_pc_model::{ShapeKind, shape};
use regex::Regex;
use serde_json::Value;

/// One entry of a `ValidationException`'s `ErrorList`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The member path (`LifeCycle.Stage`, `Project.ExpectedCustomerSpend[0].Amount`).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// The model's `ValidationExceptionErrorCode`.
    pub code: &'static str,
}

/// Validates `value` against the shape `shape_name`.
pub fn validate(shape_name: &str, value: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check(shape_name, value, "", &mut errors);
    errors
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_string()
    } else {
        format!("{path}.{member}")
    }
}

fn check(shape_name: &str, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(shape) = shape(shape_name) else {
        return;
    };
    let mut fail = |message: String, code: &'static str| {
        errors.push(FieldError {
            field: path.to_string(),
            message,
            code,
        });
    };
    match &shape.kind {
        ShapeKind::Structure(members) | ShapeKind::Union(members) => {
            let Some(obj) = value.as_object() else {
                return fail("must be an object".into(), "INVALID_VALUE");
            };
            // A member the model does not define is refused, not ignored: a typo or
            // a member of another shape (GetOpportunity's `Arn`) is the client's bug.
            for key in obj.keys() {
                if !members.iter().any(|m| m.name == key) {
                    errors.push(FieldError {
                        field: join(path, key),
                        message: format!("{} is not a member of {}", join(path, key), shape.name),
                        code: "INVALID_VALUE",
                    });
                }
            }
            for m in members.iter() {
                match obj.get(m.name) {
                    None | Some(Value::Null) if m.required => errors.push(FieldError {
                        field: join(path, m.name),
                        message: format!("{} is required", join(path, m.name)),
                        code: "REQUIRED_FIELD_MISSING",
                    }),
                    None | Some(Value::Null) => {}
                    Some(v) => check(m.shape, v, &join(path, m.name), errors),
                }
            }
        }
        ShapeKind::List { member, min, max } => {
            let Some(items) = value.as_array() else {
                return fail("must be a list".into(), "INVALID_VALUE");
            };
            let len = items.len() as u64;
            if let Some(min) = min.filter(|m| len < *m) {
                fail(format!("needs at least {min} values"), "NOT_ENOUGH_VALUES");
            }
            if let Some(max) = max.filter(|m| len > *m) {
                fail(format!("accepts at most {max} values"), "TOO_MANY_VALUES");
            }
            for (i, item) in items.iter().enumerate() {
                check(member, item, &format!("{path}[{i}]"), errors);
            }
        }
        ShapeKind::String(rules) => {
            let Some(text) = value.as_str() else {
                return fail("must be a string".into(), "INVALID_VALUE");
            };
            if !rules.enum_values.is_empty() && !rules.enum_values.contains(&text) {
                return fail(
                    format!("`{text}` is not a valid value"),
                    "INVALID_ENUM_VALUE",
                );
            }
            let len = text.chars().count() as u64;
            if rules.min.is_some_and(|m| len < m) || rules.max.is_some_and(|m| len > m) {
                return fail(
                    format!("length {len} is out of range"),
                    "INVALID_STRING_FORMAT",
                );
            }
            if let Some(re) = rules.pattern.and_then(pattern)
                && !re.is_match(text)
            {
                fail(
                    format!("does not match {}", rules.pattern.unwrap_or_default()),
                    "INVALID_STRING_FORMAT",
                );
            }
        }
        ShapeKind::Integer { min, max } => match value.as_i64() {
            None => fail("must be an integer".into(), "INVALID_VALUE"),
            Some(n) if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) => {
                fail(format!("{n} is out of range"), "VALUE_OUT_OF_RANGE")
            }
            Some(_) => {}
        },
        ShapeKind::Double if !value.is_number() => fail("must be a number".into(), "INVALID_VALUE"),
        ShapeKind::Boolean if !value.is_boolean() => {
            fail("must be true or false".into(), "INVALID_VALUE")
        }
        ShapeKind::Timestamp => {
            let ok = value
                .as_str()
                .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok());
            if !ok {
                fail(
                    "must be an RFC 3339 date-time string".into(),
                    "INVALID_STRING_FORMAT",
                );
            }
        }
        ShapeKind::Map { .. } if !value.is_object() => {
            fail("must be an object".into(), "INVALID_VALUE")
        }
        _ => {}
    }
}

/// The model's patterns match the whole value; compiled once each.
fn pattern(p: &'static str) -> Option<&'static Regex> {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, Option<&'static Regex>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .expect("pattern cache lock");
    *cache.entry(p).or_insert_with(|| {
        Regex::new(&format!("^(?:{p})$"))
            .ok()
            .map(|r| &*Box::leak(Box::new(r)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_every_problem_with_its_path_and_code() {
        let errors = validate(
            "UpdateOpportunityRequest",
            &json!({"Catalog": "Sandbox", "Identifier": "X1",
                "LifeCycle": {"Stage": "Closed Won", "TargetCloseDate": "31/12/2026"},
                "Project": {"CustomerBusinessProblem": "short"}}),
        );
        let got: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert!(
            got.contains(&("LastModifiedDate", "REQUIRED_FIELD_MISSING")),
            "{got:?}"
        );
        assert!(
            got.contains(&("Identifier", "INVALID_STRING_FORMAT")),
            "{got:?}"
        );
        assert!(
            got.contains(&("LifeCycle.Stage", "INVALID_ENUM_VALUE")),
            "{got:?}"
        );
        assert!(
            got.contains(&("LifeCycle.TargetCloseDate", "INVALID_STRING_FORMAT")),
            "{got:?}"
        );
        assert!(
            got.contains(&("Project.CustomerBusinessProblem", "INVALID_STRING_FORMAT")),
            "{got:?}"
        );
    }

    #[test]
    fn members_unknown_to_the_model_are_refused_wherever_they_are() {
        let errors = validate(
            "UpdateOpportunityRequest",
            &json!({"Catalog": "Sandbox", "Identifier": "O1", "LastModifiedDate": "2026-01-01T00:00:00Z",
                "Arn": "arn:x", "LifeCycle": {"Stage": "Prospect", "Stag": "x"}}),
        );
        let got: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            got,
            [
                ("Arn", "INVALID_VALUE"),
                ("LifeCycle.Stag", "INVALID_VALUE")
            ]
        );
    }

    #[test]
    fn a_valid_request_passes() {
        let errors = validate(
            "GetOpportunityRequest",
            &json!({"Catalog": "Sandbox", "Identifier": "O1234567"}),
        );
        assert!(errors.is_empty(), "{errors:?}");
    }
}
