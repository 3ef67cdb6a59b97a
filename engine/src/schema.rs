//! JSON Schemas generated from Rust types (the rule pack's here), and validation of a parsed
//! document against them. Schema validation is the first pass of `pcsync check`: it
//! finds every structural problem in a file at once (unknown keys, wrong types,
//! values outside an enum), each mapped back to its line and column.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, FileId, did_you_mean};
use crate::model::RulePack;
use crate::source::{Document, pointer_join};

/// The file name of the rule-pack schema under `schemas/`.
pub const RULE_PACK_SCHEMA_FILE: &str = "rule-pack.schema.json";

/// A generated JSON Schema with its compiled validator: the rule pack's here, the
/// service config's in the runtime (which owns that type).
pub struct Schema {
    value: Value,
    validator: Validator,
    noun: &'static str,
    file_name: &'static str,
}

impl Schema {
    /// The schema of `T`, titled `title`; `noun` names the document in messages
    /// ("the pack"), `file_name` is its file under `schemas/`.
    pub fn generate<T: schemars::JsonSchema>(
        title: &str,
        noun: &'static str,
        file_name: &'static str,
    ) -> Schema {
        let value = generate::<T>(title);
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&value)
            .expect("the generated schema is a valid JSON Schema");
        Schema {
            value,
            validator,
            noun,
            file_name,
        }
    }

    /// The rule pack's schema.
    pub fn rule_pack() -> &'static Schema {
        static PACK: OnceLock<Schema> = OnceLock::new();
        PACK.get_or_init(|| {
            Schema::generate::<RulePack>("pcsync rule pack", "the pack", RULE_PACK_SCHEMA_FILE)
        })
    }

    /// The generated JSON Schema.
    pub fn schema(&self) -> &Value {
        &self.value
    }

    /// What the document is called in messages.
    pub fn noun(&self) -> &'static str {
        self.noun
    }

    /// The schema's file name under `schemas/`.
    pub fn file_name(&self) -> &'static str {
        self.file_name
    }

    fn validator(&self) -> &Validator {
        &self.validator
    }
}

fn generate<T: schemars::JsonSchema>(title: &str) -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), Value::String(title.into()));
    }
    schema
}

/// The schema as the pretty-printed text committed under `schemas/`.
pub fn schema_text(kind: &Schema) -> String {
    serde_json::to_string_pretty(kind.schema()).expect("a schema is plain JSON") + "\n"
}

/// Validates `doc` against the schema and returns one diagnostic per problem.
pub fn validate(kind: &Schema, file: FileId, doc: &Document) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for error in kind.validator().iter_errors(&doc.value) {
        convert(kind, file, doc, &error, &mut out);
    }
    out.dedup_by(|a, b| a.message == b.message && a.span == b.span);
    out
}

fn convert(
    kind: &Schema,
    file: FileId,
    doc: &Document,
    error: &ValidationError<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let root = kind.schema();
    let pointer = error.instance_path().as_str().to_string();
    let instance = error.instance();
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let allowed = allowed_keys(root, &pointer);
            for key in unexpected {
                let at = pointer_join(&pointer, key);
                let mut d = Diagnostic::error(Code::UnknownField, format!("unknown field `{key}`"))
                    .at(file, doc.key_span(&at))
                    .with_pointer(at.clone());
                d.help = did_you_mean(key, allowed.iter().map(String::as_str))
                    .or_else(|| Some(expected_one_of(allowed.iter().map(String::as_str))));
                out.push(d);
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let what = if pointer.is_empty() {
                kind.noun().to_string()
            } else {
                format!("`{}`", last_segment(&pointer))
            };
            out.push(
                Diagnostic::error(
                    Code::MissingField,
                    format!("missing field `{name}` in {what}"),
                )
                .at(file, doc.key_span(&pointer))
                .with_help(format!("add `{name}:`")),
            );
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<&str> = options
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let shown = display_value(instance);
            let mut d = Diagnostic::error(Code::InvalidValue, format!("unknown value {shown}"))
                .at(file, doc.value_span(&pointer));
            d.help = instance
                .as_str()
                .and_then(|s| did_you_mean(s, options.iter().copied()))
                .or_else(|| Some(expected_one_of(options.iter().copied())));
            out.push(d);
        }
        ValidationErrorKind::Type { kind } => {
            let expected = type_names(kind);
            out.push(
                Diagnostic::error(
                    Code::WrongType,
                    format!("expected {expected}, found {}", json_type_name(instance)),
                )
                .at(file, doc.value_span(&pointer)),
            );
        }
        ValidationErrorKind::Pattern { pattern } => {
            let help = if pattern == crate::model::DURATION_PATTERN {
                "write a number and a unit: `30s`, `30m`, `4h`, `3d`".to_string()
            } else if pattern.starts_with("^[a-z0-9]+(-") {
                "use lowercase words joined by `-`, e.g. `deal-update-sync`".to_string()
            } else {
                format!("the value must match `{pattern}`")
            };
            out.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    format!("{} is not in the expected format", display_value(instance)),
                )
                .at(file, doc.value_span(&pointer))
                .with_help(help),
            );
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            convert_alternatives(kind, file, doc, &pointer, instance, context, out);
        }
        _ => {
            let text = error.to_string();
            let mut chars = text.chars();
            let message = match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => text,
            };
            out.push(
                Diagnostic::error(Code::InvalidValue, message).at(file, doc.value_span(&pointer)),
            );
        }
    }
}

/// An `anyOf`/`oneOf` failed: report the errors of the alternative the author most
/// likely meant, which is one whose type matched (its errors are about content, not
/// kind). When no alternative's type matched, say which kinds would do.
fn convert_alternatives(
    kind: &Schema,
    file: FileId,
    doc: &Document,
    pointer: &str,
    instance: &Value,
    context: &[Vec<ValidationError<'static>>],
    out: &mut Vec<Diagnostic>,
) {
    let type_mismatch = |errors: &Vec<ValidationError<'static>>| {
        errors.iter().any(|e| {
            e.instance_path().as_str() == pointer
                && matches!(e.kind(), ValidationErrorKind::Type { .. })
        })
    };
    // Alternatives that are single fixed values (unit variants such as `date`): a
    // miss on each is one "unknown value" with the values as suggestions.
    let constant_miss = |errors: &Vec<ValidationError<'static>>| -> Option<String> {
        match errors.as_slice() {
            [e] if e.instance_path().as_str() == pointer => match e.kind() {
                ValidationErrorKind::Constant { expected_value } => {
                    expected_value.as_str().map(str::to_string)
                }
                _ => None,
            },
            _ => None,
        }
    };
    let constants: Vec<String> = context.iter().filter_map(constant_miss).collect();
    let candidates: Vec<&Vec<ValidationError<'static>>> = context
        .iter()
        .filter(|errors| !type_mismatch(errors) && constant_miss(errors).is_none())
        .collect();
    if candidates.is_empty() && !constants.is_empty() {
        let mut d = Diagnostic::error(
            Code::InvalidValue,
            format!("unknown value {}", display_value(instance)),
        )
        .at(file, doc.value_span(pointer));
        d.help = instance
            .as_str()
            .and_then(|s| did_you_mean(s, constants.iter().map(String::as_str)))
            .or_else(|| Some(expected_one_of(constants.iter().map(String::as_str))));
        out.push(d);
        return;
    }
    if candidates.is_empty() {
        let mut kinds = BTreeSet::new();
        for errors in context {
            for e in errors {
                if let ValidationErrorKind::Type { kind } = e.kind() {
                    kinds.insert(type_names(kind));
                }
            }
        }
        let expected = kinds.into_iter().collect::<Vec<_>>().join(" or ");
        out.push(
            Diagnostic::error(
                Code::WrongType,
                format!("expected {expected}, found {}", json_type_name(instance)),
            )
            .at(file, doc.value_span(pointer)),
        );
        return;
    }
    let fewest = candidates.iter().map(|e| e.len()).min().unwrap_or(0);
    let best: Vec<_> = candidates
        .into_iter()
        .filter(|e| e.len() == fewest)
        .collect();
    let mut found = Vec::new();
    for errors in &best {
        for e in errors.iter() {
            convert(kind, file, doc, e, &mut found);
        }
    }
    // Several alternatives fit equally (the variants of a transform, say): a key that
    // none of them knows is the real mistake, and their differing "missing field"
    // complaints are noise around it.
    if best.len() > 1 && found.iter().any(|d| d.code == Code::UnknownField) {
        found.retain(|d| d.code != Code::MissingField);
    }
    found.sort_by(|a, b| a.message.cmp(&b.message));
    found.dedup_by(|a, b| a.message == b.message && a.span == b.span);
    out.extend(found);
}

fn last_segment(pointer: &str) -> String {
    pointer
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .replace("~1", "/")
        .replace("~0", "~")
}

fn expected_one_of<'a>(options: impl IntoIterator<Item = &'a str>) -> String {
    let options: Vec<String> = options.into_iter().map(|o| format!("`{o}`")).collect();
    if options.len() > 12 {
        format!("expected one of {}, …", options[..12].join(", "))
    } else {
        format!("expected one of {}", options.join(", "))
    }
}

fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn type_names(kind: &TypeKind) -> String {
    let name = |t: String| match t.as_str() {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        "string" => "a string".to_string(),
        "number" | "integer" => format!("{} ({t})", "a number"),
        "boolean" => "`true` or `false`".to_string(),
        "null" => "nothing".to_string(),
        other => other.to_string(),
    };
    match kind {
        TypeKind::Single(t) => name(t.to_string()),
        TypeKind::Multiple(set) => set
            .iter()
            .map(|t| name(t.to_string()))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// The keys the schema allows at `pointer`, across every alternative that could
/// apply there, for "did you mean" suggestions.
fn allowed_keys(root: &Value, pointer: &str) -> Vec<String> {
    let mut current = Vec::new();
    expand(root, root, &mut current);
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        let mut next = Vec::new();
        for schema in current {
            if let Some(p) = schema.get("properties").and_then(|p| p.get(&segment)) {
                expand(root, p, &mut next);
            } else if segment.parse::<usize>().is_ok() && schema.get("items").is_some() {
                expand(root, &schema["items"], &mut next);
            } else if let Some(ap) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                expand(root, ap, &mut next);
            }
        }
        current = next;
    }
    let mut keys = Vec::new();
    for schema in current {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for k in props.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    keys
}

fn expand<'a>(root: &'a Value, schema: &'a Value, out: &mut Vec<&'a Value>) {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str)
        && let Some(resolved) = target.strip_prefix('#').and_then(|p| root.pointer(p))
    {
        expand(root, resolved, out);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            for b in branches {
                expand(root, b, out);
            }
        }
    }
    out.push(schema);
}

/// Removes the keys named by `unknown-field` diagnostics from `doc`, so that a pack
/// whose only structural problems are misspelt keys can still be checked further.
pub fn prune_unknown_fields(doc: &mut Document, pointers: &[String]) {
    for pointer in pointers {
        let Some((parent, key)) = pointer.rsplit_once('/') else {
            continue;
        };
        let key = key.replace("~1", "/").replace("~0", "~");
        if let Some(obj) = doc.value.pointer_mut(parent).and_then(Value::as_object_mut) {
            obj.shift_remove(&key);
        }
    }
}

/// Deserializes a document that passed schema validation. A failure here means the
/// schema and the types disagree, which is a bug, but it is still reported.
pub fn deserialize<T: serde::de::DeserializeOwned>(
    file: FileId,
    doc: &Document,
) -> Result<T, Box<Diagnostic>> {
    serde_json::from_value(doc.value.clone()).map_err(|e| {
        Box::new(Diagnostic::error(Code::InvalidValue, e.to_string()).at(file, doc.value_span("")))
    })
}
