//! Golden-file tests for rule packs: a YAML file of cases, each an event, a context,
//! a fixed `now` and the expected effects (all of them, or a subset with
//! `contains`), or a timeline of such steps where each step sees the state the
//! previous ones recorded. `pcsync test` runs them; `--bless` rewrites failing
//! expectations from the actual output, in place, leaving the rest of the file as
//! written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use crate::compile::RuleSet;
use crate::context::Context;
use crate::event::Event;
use crate::load::load_rules;
use crate::plan::{Outcome, Plan, simulate};
use crate::source::{self, Document};

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// The pack directory, relative to the file. Default: the folder above `tests/`.
    #[serde(default)]
    rules: Option<String>,
    /// The packs whose effects the cases compare (every pack still runs, as in the
    /// service); empty compares them all.
    #[serde(default)]
    packs: Vec<String>,
    /// Shared YAML (anchors) for the cases to refer to; not read otherwise.
    #[serde(default, rename = "fixtures")]
    _fixtures: Option<Value>,
    cases: Vec<CaseSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    /// The packs whose effects this case compares, in place of the file's.
    #[serde(default)]
    packs: Vec<String>,
    #[serde(default)]
    now: Option<String>,
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    context: Option<Context>,
    #[serde(default)]
    outcome: Option<OutcomeSpec>,
    #[serde(default)]
    expect: Option<Value>,
    #[serde(default)]
    timeline: Vec<StepSpec>,
}

impl CaseSpec {
    /// The case as a single step, when it is not a timeline.
    fn step(&self) -> Option<StepSpec> {
        Some(StepSpec {
            now: self.now.clone()?,
            event: self.event.clone()?,
            context: self.context.clone(),
            outcome: self.outcome.clone(),
            expect: self.expect.clone(),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    now: String,
    event: Value,
    #[serde(default)]
    context: Option<Context>,
    #[serde(default)]
    outcome: Option<OutcomeSpec>,
    #[serde(default)]
    expect: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeSpec {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<String>,
}

/// The result of one step of a case.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// Where the step's `expect` is (or would be) in the file.
    pub pointer: String,
    /// The effects produced, as JSON.
    pub actual: Vec<Value>,
    /// The full plan, with trace.
    pub plan: Plan,
    /// Why it failed: a diff or an error. `None` when it passed.
    pub failure: Option<String>,
    /// Whether the step was evaluated (false when its event or time was unusable,
    /// so there is no actual output to bless).
    pub ran: bool,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Its steps (one for a plain case).
    pub steps: Vec<StepResult>,
}

impl CaseResult {
    /// Whether every step passed.
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.failure.is_none())
    }

    /// Whether `--bless` can fix the case: every failing step produced output.
    pub fn blessable(&self) -> bool {
        self.steps.iter().all(|s| s.failure.is_none() || s.ran)
    }
}

/// The result of one test file.
#[derive(Debug)]
pub struct FileResult {
    /// The file.
    pub path: PathBuf,
    /// Its cases (those the filter selected).
    pub cases: Vec<CaseResult>,
    /// Why the file could not run at all.
    pub error: Option<String>,
}

/// Test files under `paths`: each directory's `*.yaml` test files (recursively), each
/// file as given.
pub fn test_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect();
            entries.sort();
            for entry in entries {
                if entry.is_dir() {
                    out.extend(test_files(&[entry])?);
                } else if matches!(
                    entry.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                ) && is_test_file(&entry)
                {
                    out.push(entry);
                }
            }
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Whether a YAML file found in a directory is a test file (it has top-level
/// `cases:`) rather than, say, a rule pack kept beside the tests.
fn is_test_file(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| {
        t.lines()
            .any(|l| l.trim_end() == "cases:" || l.starts_with("cases: "))
    })
}

/// Loaded rule sets by directory, so files sharing a directory load it once.
#[derive(Default)]
pub struct RuleCache {
    sets: HashMap<PathBuf, Result<RuleSet, String>>,
}

impl RuleCache {
    fn get(&mut self, dir: &Path) -> Result<&RuleSet, String> {
        let entry = self.sets.entry(dir.to_path_buf()).or_insert_with(|| {
            let loaded = load_rules(&[dir.to_path_buf()]);
            if loaded.has_errors() {
                let text = crate::diagnostic::render_human(&loaded.sources, &loaded.diagnostics);
                return Err(format!(
                    "the packs in {} do not load:\n{text}",
                    dir.display()
                ));
            }
            loaded
                .value
                .ok_or_else(|| format!("no packs in {}", dir.display()))
        });
        entry.as_ref().map_err(Clone::clone)
    }
}

/// What carries a step out: given the rules, the event, the context, the time and
/// how the writes end, the plan as performed. `pcsync test` uses [`simulate`]; the
/// runtime's tests drive the real worker with the same corpus.
pub type Driver<'a> = dyn FnMut(&RuleSet, &Event, &Context, Timestamp, &Outcome) -> Plan + 'a;

/// Runs one test file; `filter` selects cases by `file-stem/case name`.
pub fn run_file(path: &Path, filter: Option<&regex::Regex>, rules: &mut RuleCache) -> FileResult {
    run_file_with(
        path,
        filter,
        rules,
        &mut |rules, event, ctx, now, outcome| simulate(event, ctx, rules, now, outcome),
    )
}

/// [`run_file`] with another driver than [`simulate`].
pub fn run_file_with(
    path: &Path,
    filter: Option<&regex::Regex>,
    rules: &mut RuleCache,
    driver: &mut Driver<'_>,
) -> FileResult {
    let fail = |error: String| FileResult {
        path: path.to_path_buf(),
        cases: Vec::new(),
        error: Some(error),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read: {e}")),
    };
    let (doc, diags) = source::parse(crate::diagnostic::FileId(0), &text);
    let Some(doc) = doc.filter(|_| diags.is_empty()) else {
        return fail(format!(
            "not valid YAML: {}",
            diags.first().map_or("", |d| d.message.as_str())
        ));
    };
    let file: CaseFile = match serde_json::from_value(doc.value.clone()) {
        Ok(f) => f,
        Err(e) => return fail(format!("not a test file: {e}")),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let rules_dir = match &file.rules {
        Some(r) => dir.join(r),
        None if dir.file_name().is_some_and(|n| n == "tests") => {
            dir.parent().unwrap_or(Path::new(".")).to_path_buf()
        }
        None => dir.to_path_buf(),
    };
    let rule_set = match rules.get(&rules_dir) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cases = Vec::new();
    for (i, case) in file.cases.iter().enumerate() {
        if filter.is_some_and(|f| !f.is_match(&format!("{stem}/{}", case.name))) {
            continue;
        }
        let packs = if case.packs.is_empty() {
            &file.packs
        } else {
            &case.packs
        };
        cases.push(run_case(rule_set, packs, i, case, driver));
    }
    FileResult {
        path: path.to_path_buf(),
        cases,
        error: None,
    }
}

fn run_case(
    rules: &RuleSet,
    packs: &[String],
    index: usize,
    case: &CaseSpec,
    driver: &mut Driver<'_>,
) -> CaseResult {
    let base = format!("/cases/{index}");
    let single = case.step();
    let steps: Vec<(String, &StepSpec)> = match (&single, case.timeline.is_empty()) {
        (Some(step), true) => vec![(format!("{base}/expect"), step)],
        (None, false) => case
            .timeline
            .iter()
            .enumerate()
            .map(|(j, s)| (format!("{base}/timeline/{j}/expect"), s))
            .collect(),
        _ => {
            return CaseResult {
                name: case.name.clone(),
                steps: vec![StepResult {
                    pointer: format!("{base}/expect"),
                    actual: Vec::new(),
                    plan: Plan::default(),
                    failure: Some("a case has either `now`/`event`/`expect` or a `timeline`, not both or neither".into()),
                    ran: false,
                }],
            };
        }
    };
    let mut carried: Option<Context> = None;
    let mut results = Vec::new();
    for (pointer, step) in steps {
        let result = run_step(rules, packs, &pointer, step, &mut carried, driver);
        results.push(result);
    }
    CaseResult {
        name: case.name.clone(),
        steps: results,
    }
}

fn run_step(
    rules: &RuleSet,
    packs: &[String],
    pointer: &str,
    step: &StepSpec,
    carried: &mut Option<Context>,
    driver: &mut Driver<'_>,
) -> StepResult {
    let broken = |failure: String| StepResult {
        pointer: pointer.to_string(),
        actual: Vec::new(),
        plan: Plan::default(),
        failure: Some(failure),
        ran: false,
    };
    let now = match Timestamp::from_str(&step.now) {
        Ok(t) => t,
        Err(e) => return broken(format!("`now` is not an RFC 3339 time: {e}")),
    };
    let event = match Event::from_value(&step.event, now) {
        Ok(e) => e,
        Err(e) => return broken(format!("event: {e}")),
    };
    // A step's context replaces what it names; the state recorded by earlier steps
    // carries over unless the step gives `previous` itself.
    let mut ctx = step.context.clone().unwrap_or_default();
    if let Some(before) = carried.as_ref() {
        if ctx.previous.is_empty() {
            ctx.previous = before.previous.clone();
        }
        if ctx.deal.is_none() {
            ctx.deal = before.deal.clone();
        }
        if ctx.company.is_none() {
            ctx.company = before.company.clone();
        }
        if ctx.opportunity.is_none() {
            ctx.opportunity = before.opportunity.clone();
        }
        if ctx.aws_summary.is_none() {
            ctx.aws_summary = before.aws_summary.clone();
        }
    }
    let outcome = match &step.outcome {
        Some(OutcomeSpec {
            error: Some(message),
            ..
        }) => Outcome::Failure {
            message: message.clone(),
        },
        Some(OutcomeSpec { result, .. }) => Outcome::Success {
            result: result.clone().unwrap_or(Value::Object(Default::default())),
        },
        None => Outcome::Success {
            result: Value::Object(Default::default()),
        },
    };
    let mut plan = driver(rules, &event, &ctx, now, &outcome);
    let mut next = ctx.clone();
    plan.apply_to(&mut next);
    *carried = Some(next);
    if !packs.is_empty() {
        plan.effects.retain(|e| packs.iter().any(|p| p == e.pack()));
        plan.trace.retain(|t| packs.contains(&t.pack));
    }
    let actual: Vec<Value> = plan
        .effects
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
        .collect();
    let failure = match &step.expect {
        None => Some("no `expect`: run with --bless to record the actual effects".to_string()),
        Some(expect) => check(expect, &actual, &plan),
    };
    StepResult {
        pointer: pointer.to_string(),
        actual,
        plan,
        failure,
        ran: true,
    }
}

/// Compares the expectation with the actual effects; `None` when they agree.
fn check(expect: &Value, actual: &[Value], plan: &Plan) -> Option<String> {
    let mut problems = Vec::new();
    if let Some(expected) = expect.get("effects") {
        let actual_v = Value::Array(actual.to_vec());
        let expected = if expected.is_null() {
            Value::Array(Vec::new())
        } else {
            expected.clone()
        };
        if expected != actual_v {
            problems.push(diff(&yaml(&expected), &yaml(&actual_v)));
        }
    }
    if let Some(wanted) = expect.get("contains").and_then(Value::as_array) {
        for w in wanted {
            if !actual.iter().any(|a| subset(w, a)) {
                problems.push(format!(
                    "no effect matches:\n{}\nactual effects:\n{}",
                    indent(&yaml(w)),
                    indent(&yaml(&Value::Array(actual.to_vec())))
                ));
            }
        }
    }
    if let Some(wanted) = expect.get("trace_contains").and_then(Value::as_array) {
        for w in wanted.iter().filter_map(Value::as_str) {
            if !plan.trace.iter().any(|t| t.decision.contains(w)) {
                let decisions: Vec<String> = plan
                    .trace
                    .iter()
                    .map(|t| format!("  {} {}: {}", t.pack, t.at, t.decision))
                    .collect();
                problems.push(format!(
                    "no trace step says `{w}`; the trace:\n{}",
                    decisions.join("\n")
                ));
            }
        }
    }
    let known = ["effects", "contains", "trace_contains"];
    if let Some(obj) = expect.as_object() {
        if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
            problems.push(format!(
                "unknown key `{k}` in `expect` (use `effects`, `contains` or `trace_contains`)"
            ));
        }
        if obj.is_empty() {
            problems.push("`expect` is empty".into());
        }
    } else {
        problems.push(
            "`expect` must be a mapping with `effects`, `contains` or `trace_contains`".into(),
        );
    }
    (!problems.is_empty()).then(|| problems.join("\n"))
}

/// Whether `want` is contained in `have`: objects by their keys, lists item by item
/// (same length), scalars equal.
pub fn subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| subset(v, hv))),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| subset(a, b))
        }
        (w, h) => w == h,
    }
}

/// A value as YAML text.
pub fn yaml(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap_or_else(|e| format!("<not representable as YAML: {e}>"))
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A unified diff of expected against actual YAML.
pub fn diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string()
}

/// Rewrites the `expect` of each failing step in `text` from its actual effects.
/// Returns the new text.
pub fn bless(text: &str, results: &[CaseResult]) -> String {
    let (doc, _) = source::parse(crate::diagnostic::FileId(0), text);
    let Some(doc) = doc else {
        return text.to_string();
    };
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for step in results
        .iter()
        .flat_map(|c| &c.steps)
        .filter(|s| s.failure.is_some())
    {
        if step.actual.is_empty() && step.plan.effects.is_empty() && step.plan.trace.is_empty() {
            continue; // the step did not run (bad event, bad time): nothing to record
        }
        let kept = doc
            .value
            .pointer(&format!("{}/trace_contains", step.pointer))
            .cloned();
        edits.push(expect_edit(text, &doc, &step.pointer, &step.actual, kept));
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (start, end, replacement) in edits {
        out.replace_range(start..end, &replacement);
    }
    out
}

/// The text range of a step's `expect` (key to end of value) and its replacement; an
/// absent `expect` is inserted after the step's last key.
fn expect_edit(
    text: &str,
    doc: &Document,
    pointer: &str,
    actual: &[Value],
    trace_contains: Option<Value>,
) -> (usize, usize, String) {
    let mut expect = serde_json::json!({ "effects": actual });
    if let Some(t) = trace_contains {
        expect["trace_contains"] = t;
    }
    let body = yaml(&expect);
    let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = |at: usize| text[at..].find('\n').map_or(text.len(), |i| at + i);
    if doc.value.pointer(pointer).is_some() {
        let key = doc.key_span(pointer);
        let start = line_start(key.start);
        let col = key.start - start;
        let end = line_end(doc.value_span(pointer).end.saturating_sub(1).max(key.start));
        let prefix = &text[start..key.start];
        return (
            start,
            end,
            format!("{prefix}expect:\n{}", indent_by(&body, col + 2).trim_end()),
        );
    }
    // No `expect` yet: add one after the step's content, aligned with its keys.
    let step = pointer.trim_end_matches("/expect");
    let span = doc.value_span(step);
    let first_key = doc
        .value
        .pointer(step)
        .and_then(Value::as_object)
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_default();
    let key = doc.key_span(&source::pointer_join(step, &first_key));
    let col = key.start - line_start(key.start);
    let end = line_end(span.end.saturating_sub(1));
    (
        end,
        end,
        format!(
            "\n{}expect:\n{}",
            " ".repeat(col),
            indent_by(&body, col + 2).trim_end()
        ),
    )
}

fn indent_by(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_matches_by_keys_and_whole_lists() {
        let have = json!({"UpdateOpportunity": {"pack": "p", "id": "O1", "changes": [{"field": "LifeCycle.Stage", "new": "Launched"}]}});
        assert!(subset(&json!({"UpdateOpportunity": {"id": "O1"}}), &have));
        assert!(!subset(&json!({"UpdateOpportunity": {"id": "O2"}}), &have));
        assert!(!subset(
            &json!({"UpdateOpportunity": {"changes": []}}),
            &have
        ));
    }

    #[test]
    fn bless_replaces_only_the_expect_block() {
        let text = "cases:\n  - name: a\n    now: x\n    expect:\n      effects:\n        - Skip: {pack: p, reason: old}\n  # keep this comment\n  - name: b\n";
        let step = StepResult {
            pointer: "/cases/0/expect".into(),
            actual: vec![json!({"Skip": {"pack": "p", "reason": "new"}})],
            plan: Plan {
                effects: Vec::new(),
                trace: vec![crate::plan::TraceStep {
                    pack: "p".into(),
                    at: "/".into(),
                    decision: "x".into(),
                    input: None,
                    output: None,
                }],
            },
            failure: Some("differs".into()),
            ran: true,
        };
        let out = bless(
            text,
            &[CaseResult {
                name: "a".into(),
                steps: vec![step],
            }],
        );
        assert!(out.contains("reason: new"), "{out}");
        assert!(!out.contains("reason: old"), "{out}");
        assert!(out.contains("# keep this comment\n  - name: b"), "{out}");
    }
}
