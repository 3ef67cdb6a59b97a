//! Immutability: which of a pack's field changes the opportunity's current review
//! status and stage allow.

use serde_json::Value;

use super::{FieldChange, PackRun};
use crate::model::ImmutableAction;

/// What the immutability rules decided.
pub enum Verdict {
    /// Go ahead with these changes (covered fields removed).
    Proceed(Vec<FieldChange>),
    /// Stop the write: defer, skip or fail, with the reason and the rule's pointer.
    Stop(ImmutableAction, String, String),
}

/// Applies the pack's immutability rules, in order, to `changes`.
pub fn apply(run: &mut PackRun<'_>, mut changes: Vec<FieldChange>) -> Verdict {
    let lifecycle = |key: &str| -> Option<String> {
        run.ctx
            .opportunity
            .as_ref()
            .and_then(|o| o.get("LifeCycle"))
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let status = lifecycle("ReviewStatus").unwrap_or_default();
    let stage = lifecycle("Stage").unwrap_or_default();
    for (i, rule) in run.p().immutable.iter().enumerate() {
        let at = || format!("/immutable/{i}");
        let status_match = rule.review_status.is_empty()
            || rule.review_status.iter().any(|s| s.as_str() == status);
        let stage_match = rule.stage.is_empty() || rule.stage.iter().any(|s| s.as_str() == stage);
        if !(status_match && stage_match) {
            continue;
        }
        let covers = |field: &str| {
            if !rule.only.is_empty() {
                !rule.only.iter().any(|f| covers_path(f.as_str(), field))
            } else if !rule.locked.is_empty() {
                rule.locked.iter().any(|f| covers_path(f.as_str(), field))
            } else {
                true
            }
        };
        let covered: Vec<String> = changes
            .iter()
            .filter(|c| covers(&c.field))
            .map(|c| c.field.clone())
            .collect();
        if covered.is_empty() {
            if run.traced {
                run.step(
                    &at(),
                    &format!("applies ({status}), covers none of the changes"),
                    None,
                    None,
                );
            }
            continue;
        }
        let reason = rule.reason.clone().unwrap_or_else(|| {
            format!(
                "opportunity is `{status}`; {} may not change",
                covered.join(", ")
            )
        });
        match rule.then {
            ImmutableAction::SkipField => {
                for field in &covered {
                    run.step(
                        &at(),
                        &format!("field skipped: {field} ({reason})"),
                        None,
                        None,
                    );
                }
                changes.retain(|c| !covered.contains(&c.field));
            }
            action => return Verdict::Stop(action, reason, at()),
        }
    }
    Verdict::Proceed(changes)
}

/// Whether the rule's path covers a changed field: the same field, or a field inside
/// it. List indexes are ignored (`Project.ExpectedCustomerSpend` covers
/// `Project.ExpectedCustomerSpend[0].Amount`).
pub fn covers_path(rule_path: &str, field: &str) -> bool {
    // Compare segment by segment, ignoring `[N]`, without allocating.
    let mut rule = rule_path.split('.').map(strip_index);
    let mut field = field.split('.').map(strip_index);
    loop {
        match (rule.next(), field.next()) {
            (None, _) => return true,
            (Some(_), None) => return false,
            (Some(r), Some(f)) if r != f => return false,
            _ => {}
        }
    }
}

fn strip_index(segment: &str) -> &str {
    segment.split_once('[').map_or(segment, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::covers_path;

    #[test]
    fn a_path_covers_itself_and_what_is_inside_it() {
        assert!(covers_path(
            "Project.ExpectedCustomerSpend",
            "Project.ExpectedCustomerSpend[0].Amount"
        ));
        assert!(covers_path(
            "LifeCycle.TargetCloseDate",
            "LifeCycle.TargetCloseDate"
        ));
        assert!(!covers_path("Project.Title", "Project.TitleX"));
        assert!(!covers_path("LifeCycle.Stage", "LifeCycle.TargetCloseDate"));
        assert!(!covers_path(
            "Project.ExpectedCustomerSpend.Amount",
            "Project.ExpectedCustomerSpend"
        ));
    }
}
