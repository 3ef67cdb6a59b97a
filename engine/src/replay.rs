//! Replay: a recorded pack run planned again with other rules, at its own time and
//! against the context it saw, and how the two plans differ. The runtime records
//! runs; `pcsync replay` reads them and prints what this module finds. Pure: no
//! I/O, no clock.
//!
//! Each run is replayed on its own, with the last-known state it saw. A candidate
//! whose notifications would have changed that state would have gone on
//! differently; replay shows the first difference of each run, not the chain.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compile::RuleSet;
use crate::context::{Context, StateRecord};
use crate::event::Event;
use crate::plan::{Decision, Effect, PackPlan, PlanEntry, plan_pack_traced, triggered};

/// One pack run as the service recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRun {
    /// Its id in the record (the order runs were recorded in).
    pub id: i64,
    /// When it was planned: the `now` it is planned at again.
    pub at: Timestamp,
    /// The pack.
    pub pack: String,
    /// The event it ran on.
    pub event: Event,
    /// What it saw (with the configured fields redacted).
    pub context: Context,
    /// What it planned (its writes, its verdict when not proceeding, the state it
    /// records) as the JSON text of its [`PlanEntry`] lines. Kept as text: most
    /// runs replay to the same text, and only the others are read into lines.
    pub entries_json: String,
}

impl RecordedRun {
    /// The recorded plan's lines.
    pub fn entries(&self) -> Result<Vec<PlanEntry>, String> {
        serde_json::from_str(&self.entries_json)
            .map_err(|e| format!("the recorded plan of run #{} does not read: {e}", self.id))
    }
}

/// A pack's plan as [`PlanEntry`] lines: its writes, then its verdict when it did
/// not proceed, then the state it would record (what the record keeps).
pub fn entries(plan: &PackPlan) -> Vec<PlanEntry> {
    lines(
        plan.pack.clone(),
        plan.writes.clone(),
        plan.decision(),
        plan.state.clone(),
    )
}

/// [`entries`], taking the plan rather than copying out of it.
fn into_entries(plan: PackPlan) -> Vec<PlanEntry> {
    let decision = plan.decision();
    lines(plan.pack, plan.writes, decision, plan.state)
}

fn lines(
    pack: String,
    writes: Vec<Effect>,
    decision: Option<Decision>,
    state: Option<StateRecord>,
) -> Vec<PlanEntry> {
    let mut out: Vec<PlanEntry> = writes.into_iter().map(PlanEntry::Write).collect();
    out.extend(decision.map(PlanEntry::Decision));
    if let Some(record) = state {
        out.push(PlanEntry::Decision(Decision::RecordState { pack, record }));
    }
    out
}

/// Whether `value` serializes to exactly `text`, compared as it is written: no
/// copy of the text is made, and the first differing byte ends it.
fn serializes_to<T: Serialize>(value: &T, text: &str) -> bool {
    struct Against<'a>(&'a [u8]);
    impl std::io::Write for Against<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match self.0.strip_prefix(buf) {
                Some(rest) => {
                    self.0 = rest;
                    Ok(buf.len())
                }
                None => Err(std::io::ErrorKind::InvalidData.into()),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut against = Against(text.as_bytes());
    serde_json::to_writer(&mut against, value).is_ok() && against.0.is_empty()
}

/// How a run ended: `proceed`, `skip`, `defer` or `fail`.
pub fn verdict_of(entries: &[PlanEntry]) -> &'static str {
    entries
        .iter()
        .find_map(|e| match e {
            PlanEntry::Decision(Decision::Skip { .. }) => Some("skip"),
            PlanEntry::Decision(Decision::Defer { .. }) => Some("defer"),
            PlanEntry::Decision(Decision::Fail { .. }) => Some("fail"),
            _ => None,
        })
        .unwrap_or("proceed")
}

/// One difference between the recorded plan and the replayed one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum Change {
    /// A write the candidate adds.
    Added {
        /// `CreateTask`, `UpdateOpportunity`…
        kind: String,
        /// What identifies it to a reader (its title, its deal).
        label: String,
        /// The write.
        effect: Value,
    },
    /// A write the candidate no longer makes.
    Removed {
        /// Its kind.
        kind: String,
        /// What identifies it.
        label: String,
        /// The write.
        effect: Value,
    },
    /// A write both make, differently.
    Changed {
        /// Its kind.
        kind: String,
        /// What identifies it.
        label: String,
        /// Field by field, and texts line by line.
        fields: Vec<FieldDiff>,
    },
    /// The run ends differently.
    Verdict {
        /// `proceed`, `skip`, `defer`, `fail` as recorded.
        before: String,
        /// As replayed.
        after: String,
        /// The replayed reason, when it does not proceed.
        reason: Option<String>,
    },
    /// The state it would remember differs (watched values, marks, keys sent).
    State {
        /// Field by field.
        fields: Vec<FieldDiff>,
    },
    /// The recorded plan could not be read (a damaged record): nothing to compare.
    Unreadable {
        /// Why.
        error: String,
    },
}

impl Change {
    /// The kind of change for the summary: `added CreateTask`, `verdict skip -> proceed`.
    pub fn summary_kind(&self) -> String {
        match self {
            Change::Added { kind, .. } => format!("added {kind}"),
            Change::Removed { kind, .. } => format!("removed {kind}"),
            Change::Changed { kind, .. } => format!("changed {kind}"),
            Change::Verdict { before, after, .. } => format!("verdict {before} -> {after}"),
            Change::State { .. } => "state".into(),
            Change::Unreadable { .. } => "unreadable record".into(),
        }
    }
}

/// One field that differs: its JSON pointer within the write, and the values (a
/// text that differs by lines has its line diff instead).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// `/properties/amount`, `/changes/0/new`, `/body`.
    pub field: String,
    /// As recorded (`null` when absent).
    pub before: Value,
    /// As replayed.
    pub after: Value,
    /// For texts of several lines: `-`/`+`/` ` prefixed lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

/// A run planned again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replayed {
    /// The recorded run's id.
    pub id: i64,
    /// What the candidate plans.
    pub entries: Vec<PlanEntry>,
    /// What was recorded, when it is not the same text as `entries`.
    pub recorded: Option<Vec<PlanEntry>>,
    /// How it differs from the record; empty when it does not.
    pub changes: Vec<Change>,
}

impl Replayed {
    /// What was recorded.
    pub fn recorded(&self) -> &[PlanEntry] {
        self.recorded.as_deref().unwrap_or(&self.entries)
    }
}

/// Plans `run` again with `rules`, at its time, on its context. A pack the
/// candidate lacks, or that no longer starts on the event, plans nothing.
pub fn replay(run: &RecordedRun, rules: &RuleSet) -> Replayed {
    let pack = rules
        .packs
        .iter()
        .find(|p| p.pack.name == run.pack && p.pack.enabled && triggered(&p.pack, &run.event));
    let entries = match pack {
        Some(pack) => into_entries(plan_pack_traced(
            pack,
            rules,
            &run.event,
            &run.context,
            run.at,
            false,
        )),
        None => Vec::new(),
    };
    // The same text is the same plan; only a run that differs is read and compared
    // line by line (a difference in text alone, such as member order, is none).
    let same = serializes_to(&entries, &run.entries_json);
    let (recorded, changes) = if same {
        (None, Vec::new())
    } else {
        match run.entries() {
            Ok(before) => {
                let changes = if before == entries {
                    Vec::new()
                } else {
                    diff(&before, &entries)
                };
                (Some(before), changes)
            }
            Err(error) => (Some(Vec::new()), vec![Change::Unreadable { error }]),
        }
    };
    Replayed {
        id: run.id,
        entries,
        recorded,
        changes,
    }
}

/// What differs between two plans of one run.
pub fn diff(before: &[PlanEntry], after: &[PlanEntry]) -> Vec<Change> {
    let mut changes = Vec::new();
    let (vb, va) = (verdict_of(before), verdict_of(after));
    if vb != va {
        let reason = after.iter().find_map(|e| match e {
            PlanEntry::Decision(
                Decision::Skip { reason, .. }
                | Decision::Defer { reason, .. }
                | Decision::Fail { reason, .. },
            ) => Some(reason.clone()),
            _ => None,
        });
        changes.push(Change::Verdict {
            before: vb.into(),
            after: va.into(),
            reason,
        });
    }
    let writes = |entries: &[PlanEntry]| -> Vec<(String, String, Value)> {
        entries
            .iter()
            .filter_map(|e| match e {
                PlanEntry::Write(w) => serde_json::to_value(w).ok(),
                _ => None,
            })
            .map(|v| {
                let (kind, label) = identity(&v);
                (kind, label, v)
            })
            .collect()
    };
    let mut left = writes(before);
    for (kind, label, now) in writes(after) {
        match left.iter().position(|(k, l, _)| *k == kind && *l == label) {
            Some(i) => {
                let (_, _, was) = left.remove(i);
                if was != now {
                    let fields = fields(&was, &now);
                    changes.push(Change::Changed {
                        kind,
                        label,
                        fields,
                    });
                }
            }
            None => changes.push(Change::Added {
                kind,
                label,
                effect: now,
            }),
        }
    }
    for (kind, label, was) in left {
        changes.push(Change::Removed {
            kind,
            label,
            effect: was,
        });
    }
    let state = |entries: &[PlanEntry]| {
        entries
            .iter()
            .find_map(|e| match e {
                PlanEntry::Decision(d @ Decision::RecordState { .. }) => {
                    serde_json::to_value(d).ok()
                }
                _ => None,
            })
            .unwrap_or(Value::Null)
    };
    let (sb, sa) = (state(before), state(after));
    if sb != sa {
        changes.push(Change::State {
            fields: fields(&sb, &sa),
        });
    }
    changes
}

/// A write's kind and what identifies it among its run's writes: the deal and the
/// title for notes, tasks and messages, the deal or opportunity for updates.
fn identity(effect: &Value) -> (String, String) {
    let Some((kind, body)) = effect.as_object().and_then(|o| o.iter().next()) else {
        return (String::new(), String::new());
    };
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    let label = match kind.as_str() {
        "CreateNote" => format!(
            "deal {}: {}",
            text("deal_id"),
            text("body").lines().next().unwrap_or_default()
        ),
        "CreateTask" => format!("deal {}: {}", text("deal_id"), text("subject")),
        "Publish" => text("subject").to_string(),
        _ => ["deal_id", "opportunity_id", "identifier"]
            .iter()
            .map(|k| text(k))
            .find(|s| !s.is_empty())
            .map(|s| s.to_string())
            .unwrap_or_default(),
    };
    (kind.clone(), label)
}

/// Field-by-field differences between two writes (or state lines), below their
/// kind (`{"CreateTask": {...}}`).
fn fields(before: &Value, after: &Value) -> Vec<FieldDiff> {
    let inner = |v: &Value| match v.as_object() {
        Some(m) if m.len() == 1 => m.values().next().cloned().unwrap_or(Value::Null),
        _ => v.clone(),
    };
    let (mut b, mut a) = (BTreeMap::new(), BTreeMap::new());
    flatten(&inner(before), String::new(), &mut b);
    flatten(&inner(after), String::new(), &mut a);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (was, now) = (
                b.get(k).cloned().unwrap_or(Value::Null),
                a.get(k).cloned().unwrap_or(Value::Null),
            );
            (was != now).then(|| {
                let lines = match (&was, &now) {
                    (Value::String(x), Value::String(y))
                        if x.contains('\n') || y.contains('\n') =>
                    {
                        text_diff(x, y)
                    }
                    _ => Vec::new(),
                };
                FieldDiff {
                    field: k.clone(),
                    before: was,
                    after: now,
                    lines,
                }
            })
        })
        .collect()
}

/// Scalars (and empty containers) by JSON pointer, below the write's kind.
fn flatten(v: &Value, at: String, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let escaped = k.replace('~', "~0").replace('/', "~1");
                flatten(x, format!("{at}/{escaped}"), out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                flatten(x, format!("{at}/{i}"), out);
            }
        }
        _ => {
            out.insert(if at.is_empty() { "/".into() } else { at }, v.clone());
        }
    }
}

/// A line diff of two texts: `-` recorded, `+` replayed, ` ` both.
pub fn text_diff(before: &str, after: &str) -> Vec<String> {
    similar::TextDiff::from_lines(before, after)
        .iter_all_changes()
        .map(|c| {
            let sign = match c.tag() {
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
                similar::ChangeTag::Equal => ' ',
            };
            format!("{sign}{}", c.value().trim_end_matches('\n'))
        })
        .collect()
}

/// Whether a write is a notification a person receives: a task, a note, a message.
fn notifies(entry: &PlanEntry) -> bool {
    matches!(
        entry,
        PlanEntry::Write(
            crate::plan::Effect::CreateTask { .. }
                | crate::plan::Effect::CreateNote { .. }
                | crate::plan::Effect::Publish { .. }
        )
    )
}

/// What a replay found, over all its runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Runs replayed.
    pub replayed: u64,
    /// Runs the candidate plans exactly as recorded.
    pub unchanged: u64,
    /// Runs it plans differently.
    pub changed: u64,
    /// Changes by kind (`added CreateTask`, `verdict proceed -> skip`, `state`).
    pub by_kind: BTreeMap<String, u64>,
    /// Runs that fail with the candidate and did not.
    pub new_failures: u64,
    /// Runs that wait with the candidate and did not.
    pub new_deferrals: u64,
    /// Tasks, notes and messages, as recorded.
    pub notifications_before: u64,
    /// And as replayed.
    pub notifications_after: u64,
}

impl Summary {
    /// Counts one replayed run.
    pub fn add(&mut self, replayed: &Replayed) {
        self.replayed += 1;
        if replayed.changes.is_empty() {
            self.unchanged += 1;
        } else {
            self.changed += 1;
        }
        for c in &replayed.changes {
            *self.by_kind.entry(c.summary_kind()).or_default() += 1;
        }
        let recorded = replayed.recorded();
        let (vb, va) = (verdict_of(recorded), verdict_of(&replayed.entries));
        self.new_failures += u64::from(va == "fail" && vb != "fail");
        self.new_deferrals += u64::from(va == "defer" && vb != "defer");
        self.notifications_before += recorded.iter().filter(|e| notifies(e)).count() as u64;
        self.notifications_after += replayed.entries.iter().filter(|e| notifies(e)).count() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_compared_as_it_is_written() {
        let value = serde_json::json!({"a": [1, "two"]});
        assert!(serializes_to(&value, r#"{"a":[1,"two"]}"#));
        assert!(!serializes_to(&value, r#"{"a":[1,"two"]}  "#), "longer");
        assert!(!serializes_to(&value, r#"{"a":[1,"tw"#), "shorter");
        assert!(!serializes_to(&value, r#"{"a":[1,"twO"]}"#), "different");
    }

    fn note(body: &str) -> PlanEntry {
        PlanEntry::Write(Effect::CreateNote {
            pack: "p".into(),
            deal_id: "101".into(),
            body: body.into(),
        })
    }

    fn skip(reason: &str) -> PlanEntry {
        PlanEntry::Decision(Decision::Skip {
            pack: "p".into(),
            reason: reason.into(),
        })
    }

    #[test]
    fn the_same_plan_is_unchanged_and_differences_are_named_field_by_field() {
        let before = vec![note("Title\nold line\nkept")];
        assert!(diff(&before, &before.clone()).is_empty());
        let after = vec![note("Title\nnew line\nkept"), note("Another\n")];
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 2, "{changes:#?}");
        let Change::Changed {
            kind,
            label,
            fields,
        } = &changes[0]
        else {
            panic!("{changes:#?}")
        };
        assert_eq!(
            (kind.as_str(), label.as_str()),
            ("CreateNote", "deal 101: Title")
        );
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].field, "/body");
        assert_eq!(
            fields[0].lines,
            [" Title", "-old line", "+new line", " kept"]
        );
        assert!(matches!(&changes[1], Change::Added { kind, .. } if kind == "CreateNote"));
        // The candidate skips: the note is gone and the verdict says why.
        let changes = diff(&before, &[skip("not linked")]);
        assert_eq!(
            changes[0],
            Change::Verdict {
                before: "proceed".into(),
                after: "skip".into(),
                reason: Some("not linked".into())
            }
        );
        assert_eq!(changes[1].summary_kind(), "removed CreateNote");
    }
}
