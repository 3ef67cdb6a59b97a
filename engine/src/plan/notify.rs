//! Watches and notifications: compare watched values with the last-known state,
//! decide which notification rules fire (once per change), and render them into
//! tasks, notes and messages.

use std::cell::{LazyCell, OnceCell};

use indexmap::IndexMap;
use jsonpath_rust::query::js_path_process;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Effect, PackRun};
use crate::compile::walk;
use crate::context::StateRecord;
use crate::model::{ChannelKind, Condition, Notification, NumberRef, Priority, PrioritySpec};

/// Runs the pack's watches and notification rules.
pub fn run(run: &mut PackRun<'_>) {
    let p = run.p();
    if p.watch.is_empty() && p.notify.is_empty() {
        return;
    }
    // The root of all variables, built only for a watch that needs it.
    let mut root: Option<Value> = None;
    let previous = run.ctx.previous.get(&p.name);
    let mut now_values: IndexMap<String, Value> = IndexMap::new();
    // Watches over what this run left unread (`schedule.reads`), or over an AWS
    // summary AWS has none of yet (before submission, or not yet made), and that
    // have no last-known value: they stay unknown, unchanged here and not recorded.
    let mut unknown: Vec<String> = Vec::new();
    // Found once per run: most runs read everything, and then no watch's path is
    // looked at for its source.
    let unread: Vec<&str> = [
        ("opportunity", run.ctx.opportunity.is_some()),
        ("aws_summary", run.ctx.aws_summary.is_some()),
    ]
    .into_iter()
    .filter(|(member, loaded)| {
        !loaded && (*member == "aws_summary" || run.event.leaves_unread(member))
    })
    .map(|(member, _)| member)
    .collect();
    if unread.contains(&"aws_summary") && !run.event.leaves_unread("aws_summary") {
        run.step(
            "/needs/aws_summary",
            "the AWS summary is not available: watches over it keep their last-known values",
            None,
            None,
        );
    }
    for (name, watch) in &run.pack.watches {
        let over_unread = watch
            .source
            .as_deref()
            .is_some_and(|source| unread.contains(&source));
        if over_unread {
            let last = previous.and_then(|s| s.watches.get(name)).cloned();
            if last.is_none() {
                unknown.push(name.clone());
            }
            now_values.insert(name.clone(), last.unwrap_or(Value::Null));
            continue;
        }
        if let (Some(steps), Some((member, _))) = (&watch.steps, &watch.within) {
            let value = walk(steps, run.vars.get(member)).cloned();
            now_values.insert(name.clone(), value.unwrap_or(Value::Null));
            continue;
        }
        let selected = match &watch.within {
            Some((member, query)) => js_path_process(query, run.vars.get(member)),
            None => js_path_process(&watch.query, root.get_or_insert_with(|| run.vars.root())),
        };
        let found: Vec<Value> = selected
            .map(|r| r.into_iter().map(|q| q.val.clone()).collect())
            .unwrap_or_default();
        let value = if watch.singular {
            found.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(found)
        };
        now_values.insert(name.clone(), value);
    }
    let opportunity_id = run.opportunity_id();
    let known = |mut values: IndexMap<String, Value>| -> IndexMap<String, Value> {
        if !unknown.is_empty() {
            values.retain(|name, _| !unknown.contains(name));
        }
        values
    };
    if !p.watch.is_empty() && previous.is_none() {
        // First sighting: record a baseline, notify nothing (no flood on first deploy).
        let baseline = known(now_values);
        run.step(
            "/watch",
            "first sighting: baseline recorded, nothing notified",
            None,
            Some(Value::Object(baseline.clone().into_iter().collect())),
        );
        if let Some(id) = opportunity_id {
            run.record(StateRecord {
                opportunity_id: id,
                marks: baseline.clone(),
                watches: baseline,
                sent: Vec::new(),
            });
        }
        return;
    }
    // A watch the last-known state lacks (added to the pack since, or left unread
    // until now) starts from its first value, as a first sighting does: a new watch
    // does not fire for every opportunity at once.
    let seen: Vec<Seen<'_>> = now_values
        .iter()
        .map(|(name, now)| {
            let before = previous.and_then(|s| s.watches.get(name)).unwrap_or(now);
            let since = previous.and_then(|s| s.marks.get(name)).unwrap_or(before);
            Seen {
                name,
                now,
                before,
                since,
            }
        })
        .collect();
    let mut marks: IndexMap<String, Value> = seen
        .iter()
        .map(|w| (w.name.clone(), w.since.clone()))
        .collect();
    // The watches as variables for conditions and templates, built when a rule
    // first needs them: most runs fire nothing and run no script.
    let watch_vars: OnceCell<Vec<(String, Value)>> = OnceCell::new();
    let watch_vars =
        || watch_vars.get_or_init(|| seen.iter().map(|w| (w.name.clone(), w.var())).collect());

    let mut sent: Vec<String> = previous.map(|s| s.sent.clone()).unwrap_or_default();
    let mut new_keys: Vec<String> = Vec::new();
    let mut remembered: IndexMap<String, Vec<String>> = IndexMap::new();
    for (i, rule) in p.notify.iter().enumerate() {
        // Made when first needed: most rules do not fire in most runs.
        let at = LazyCell::new(|| format!("/notify/{i}"));
        let items: Vec<Option<Value>> = match &rule.for_each {
            Some(list) => match run.vars.get(list) {
                Value::Array(items) => items.iter().cloned().map(Some).collect(),
                _ => Vec::new(),
            },
            None => vec![None],
        };
        for item in items {
            let watched = match &rule.when {
                None => Ok(true),
                Some(c) => watch_holds(run, c, &seen),
            };
            let mut extras: Vec<(&str, &Value)> = Vec::new();
            let fires = watched.and_then(|holds| {
                if !holds {
                    return Ok(false);
                }
                extras = watch_vars().iter().map(|(k, v)| (k.as_str(), v)).collect();
                if let Some(item) = &item {
                    extras.push(("item", item));
                }
                match &rule.when {
                    Some(c) if c.condition.is_some() => {
                        run.vars.eval_bool(&format!("{}/when/if", *at), &extras)
                    }
                    _ => Ok(true),
                }
            });
            match fires {
                Ok(false) => {
                    if run.traced {
                        run.step(&at, "not fired", None, None);
                    }
                    continue;
                }
                Err(e) => return run.fail(&at, &e),
                Ok(true) => {}
            }
            let at: &str = &at;
            let key = match dedupe_key(run, at, rule, &seen, item.as_ref(), &extras) {
                Ok(k) => k,
                Err(e) => return run.fail(&format!("{at}/key"), &e),
            };
            let remembered_in_deal = rule.remember_in.as_ref().is_some_and(|prop| {
                run.ctx
                    .deal
                    .as_ref()
                    .and_then(|d| d.property(prop))
                    .is_some_and(|list| list.split(',').any(|k| k.trim() == key))
            });
            if sent.contains(&key) || remembered_in_deal || new_keys.contains(&key) {
                run.step(at, &format!("already sent ({key})"), None, None);
                continue;
            }
            let priority = match priority(run, at, &rule.priority, &extras) {
                Ok(p) => p,
                Err(e) => return run.fail(&format!("{at}/priority"), &e),
            };
            let priority_value = Value::String(priority.as_str().into());
            extras.push(("priority", &priority_value));
            let title = match run.vars.render(&format!("{at}/title"), &extras) {
                Ok(t) => t,
                Err(e) => return run.fail(&format!("{at}/title"), &e),
            };
            let body = match &rule.body {
                Some(_) => match run.vars.render(&format!("{at}/body"), &extras) {
                    Ok(b) => b,
                    Err(e) => return run.fail(&format!("{at}/body"), &e),
                },
                None => String::new(),
            };
            run.step(
                at,
                &format!("fired ({}, key {key})", priority.as_str()),
                None,
                Some(Value::String(title.clone())),
            );
            if let Err(e) = deliver(run, rule, priority, &title, &body, &extras) {
                return run.fail(&format!("{at}/channels"), &e);
            }
            if let Some(prop) = &rule.remember_in {
                remembered
                    .entry(prop.clone())
                    .or_default()
                    .push(key.clone());
            }
            if let Some(watch) = rule.when.as_ref().and_then(|c| c.watch.as_ref())
                && let Some(now) = now_values.get(watch)
            {
                marks.insert(watch.clone(), now.clone());
            }
            new_keys.push(key);
        }
    }
    sent.extend(new_keys.iter().cloned());
    for (prop, keys) in remembered {
        let Some(deal_id) = run.deal_id() else {
            continue;
        };
        let existing = run
            .ctx
            .deal
            .as_ref()
            .and_then(|d| d.property(&prop))
            .unwrap_or_default();
        let mut all: Vec<String> = existing
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        all.extend(keys);
        let mut properties = IndexMap::new();
        properties.insert(prop, all.join(","));
        run.push(Effect::UpdateDeal {
            pack: run.name(),
            deal_id,
            properties,
        });
    }
    let (now_values, marks) = (known(now_values), known(marks));
    let changed = previous.is_none_or(|s| s.watches != now_values || s.marks != marks);
    if let Some(id) = opportunity_id
        && (changed || !new_keys.is_empty())
    {
        run.record(StateRecord {
            opportunity_id: id,
            watches: now_values,
            marks,
            sent: new_keys,
        });
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// One watch in one run: its value now, when last seen (`before`), and when last
/// notified about, or first seen (`since`).
struct Seen<'a> {
    name: &'a String,
    now: &'a Value,
    before: &'a Value,
    since: &'a Value,
}

impl Seen<'_> {
    /// The watch as a variable in conditions and templates: `now`, `before`,
    /// `since`, `changed`, `delta` (`now - since`, for numbers), `appeared`,
    /// `disappeared`.
    fn var(&self) -> Value {
        watch_var(self.before, self.now, self.since)
    }
}

fn watch_var(before: &Value, now: &Value, since: &Value) -> Value {
    let mut m = Map::new();
    m.insert("now".into(), now.clone());
    m.insert("before".into(), before.clone());
    m.insert("since".into(), since.clone());
    m.insert("changed".into(), Value::Bool(before != now));
    let delta = match (since.as_f64(), now.as_f64()) {
        (Some(b), Some(n)) => serde_json::Number::from_f64(n - b).map(|d| {
            if d.as_f64().is_some_and(|f| f.fract() == 0.0) {
                Value::from(d.as_f64().unwrap_or_default() as i64)
            } else {
                Value::Number(d)
            }
        }),
        _ => None,
    };
    m.insert("delta".into(), delta.unwrap_or(Value::Null));
    m.insert(
        "appeared".into(),
        Value::Bool(!present(before) && present(now)),
    );
    m.insert(
        "disappeared".into(),
        Value::Bool(present(before) && !present(now)),
    );
    Value::Object(m)
}

fn number(run: &PackRun<'_>, r: &NumberRef) -> f64 {
    match r {
        NumberRef::Number(n) => *n,
        NumberRef::Name(name) => run.p().thresholds.get(name).copied().unwrap_or(f64::NAN),
    }
}

/// Whether a condition's watch tests hold (true when it names no watch); its
/// script, if any, is the caller's to run.
fn watch_holds(run: &PackRun<'_>, c: &Condition, watches: &[Seen<'_>]) -> Result<bool, String> {
    if let Some(name) = &c.watch {
        let w = watches
            .iter()
            .find(|w| w.name == name)
            .ok_or_else(|| format!("no watch `{name}`"))?;
        let (before, now) = (w.before, w.now);
        let changed = before != now;
        let text = |v: &Value| super::mapping::text_of(v);
        let (b, n) = (before.as_f64(), now.as_f64());
        let since = w.since.as_f64();
        let checks = [
            c.changed.map(|want| changed == want),
            (!c.changed_to.is_empty()).then(|| changed && c.changed_to.contains(&text(now))),
            (!c.changed_from.is_empty()).then(|| changed && c.changed_from.contains(&text(before))),
            c.increased_by.as_ref().map(|r| matches!((since, n), (Some(s), Some(n)) if n - s >= number(run, r))),
            c.decreased_by.as_ref().map(|r| matches!((since, n), (Some(s), Some(n)) if s - n >= number(run, r))),
            c.crossed.as_ref().map(|r| {
                let t = number(run, r);
                matches!((b, n), (Some(b), Some(n)) if (b < t && n >= t) || (b >= t && n < t))
            }),
            c.crossed_above.as_ref().map(|r| matches!((b, n), (Some(b), Some(n)) if b < number(run, r) && n >= number(run, r))),
            c.crossed_below.as_ref().map(|r| matches!((b, n), (Some(b), Some(n)) if b >= number(run, r) && n < number(run, r))),
            c.appeared.map(|want| (!present(before) && present(now)) == want),
            c.disappeared.map(|want| (present(before) && !present(now)) == want),
        ];
        if checks.iter().flatten().any(|ok| !ok) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn dedupe_key(
    run: &PackRun<'_>,
    at: &str,
    rule: &Notification,
    watches: &[Seen<'_>],
    item: Option<&Value>,
    extras: &[(&str, &Value)],
) -> Result<String, String> {
    if rule.key.is_some() {
        return run.vars.render(&format!("{at}/key"), extras);
    }
    let mut key = rule.name.clone();
    if let Some(name) = rule.when.as_ref().and_then(|c| c.watch.as_ref())
        && let Some(w) = watches.iter().find(|w| w.name == name)
    {
        key.push_str(&format!(":{}->{}", compact(w.before), compact(w.now)));
    }
    if let Some(item) = item {
        let digest = Sha256::digest(item.to_string().as_bytes());
        key.push(':');
        key.extend(digest.iter().take(6).map(|b| format!("{b:02x}")));
    }
    Ok(key)
}

/// A short, stable text for a watched value in a dedupe key: scalars as written,
/// lists and objects by a digest of their JSON (`[]` stays `[]`).
fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Array(_) | Value::Object(_) => {
            let digest = Sha256::digest(v.to_string().as_bytes());
            digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
        }
        other => other.to_string(),
    }
}

fn priority(
    run: &PackRun<'_>,
    at: &str,
    spec: &PrioritySpec,
    extras: &[(&str, &Value)],
) -> Result<Priority, String> {
    match spec {
        PrioritySpec::Fixed(p) => Ok(*p),
        PrioritySpec::Computed(rules) => {
            for (level, cond, p) in [
                ("high", &rules.high, Priority::High),
                ("medium", &rules.medium, Priority::Medium),
                ("low", &rules.low, Priority::Low),
            ] {
                if cond.is_some()
                    && run
                        .vars
                        .eval_bool(&format!("{at}/priority/{level}"), extras)?
                {
                    return Ok(p);
                }
            }
            Ok(rules.otherwise)
        }
    }
}

fn deliver(
    run: &mut PackRun<'_>,
    rule: &Notification,
    priority: Priority,
    title: &str,
    body: &str,
    extras: &[(&str, &Value)],
) -> Result<(), String> {
    let channels = &run.p().channels;
    let wanted: Vec<ChannelKind> = if rule.channels.is_empty() {
        [
            channels.task.as_ref().map(|_| ChannelKind::Task),
            channels.note.as_ref().map(|_| ChannelKind::Note),
            channels.sns.as_ref().map(|_| ChannelKind::Sns),
        ]
        .into_iter()
        .flatten()
        .collect()
    } else {
        rule.channels.clone()
    };
    let title_v = Value::String(title.to_string());
    let body_v = Value::String(body.to_string());
    let name_v = Value::String(rule.name.clone());
    let mut vars: Vec<(&str, &Value)> = extras.to_vec();
    vars.extend([
        ("title", &title_v),
        ("body", &body_v),
        ("notification", &name_v),
    ]);
    let deal_id = run.deal_id();
    for channel in wanted {
        match channel {
            ChannelKind::Task => {
                let Some(task) = &channels.task else { continue };
                let Some(deal_id) = deal_id.clone() else {
                    return Err("no deal to put the task on".into());
                };
                let owner = run.vars.render("/channels/task/assign_to", &vars)?;
                let task_body = if task.body.is_some() {
                    run.vars.render("/channels/task/body", &vars)?
                } else {
                    body.to_string()
                };
                let wait = match priority {
                    Priority::High => task.due.high,
                    Priority::Medium => task.due.medium,
                    Priority::Low => task.due.low,
                };
                let due = run
                    .now
                    .checked_add(jiff::SignedDuration::try_from(wait.0).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                run.push(Effect::CreateTask {
                    pack: run.name(),
                    deal_id,
                    owner: owner.trim().to_string(),
                    priority: priority.as_str().into(),
                    due: due.to_string(),
                    subject: title.to_string(),
                    body: task_body,
                });
            }
            ChannelKind::Note => {
                let Some(note) = &channels.note else { continue };
                let Some(deal_id) = deal_id.clone() else {
                    return Err("no deal to put the note on".into());
                };
                let text = if note.body.is_some() {
                    run.vars.render("/channels/note/body", &vars)?
                } else if body.is_empty() {
                    title.to_string()
                } else {
                    format!("{title}\n\n{body}")
                };
                run.push(Effect::CreateNote {
                    pack: run.name(),
                    deal_id,
                    body: text,
                });
            }
            ChannelKind::Sns => {
                let Some(sns) = &channels.sns else { continue };
                let subject = if sns.subject.is_some() {
                    run.vars.render("/channels/sns/subject", &vars)?
                } else {
                    title.to_string()
                };
                let message = if sns.message.is_some() {
                    run.vars.render("/channels/sns/message", &vars)?
                } else if body.is_empty() {
                    title.to_string()
                } else {
                    body.to_string()
                };
                let mut attributes = IndexMap::new();
                for name in sns.attributes.keys() {
                    let at = crate::source::pointer_join("/channels/sns/attributes", name);
                    attributes.insert(name.clone(), run.vars.render(&at, &vars)?);
                }
                run.push(Effect::Publish {
                    pack: run.name(),
                    channel: "sns".into(),
                    subject,
                    message,
                    attributes,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::compile::RuleSet;
    use crate::context::{Context, DealSnapshot, PackState};
    use crate::event::Event;
    use crate::plan::{Decision, Effect, PlanEntry, plan};

    /// A pack with a summary poll: its schedule reads only the AWS summary.
    const PACK: &str = r#"
pack: watcher
on:
  - schedule: { every: 6h, for_each: linked_deals, reads: [aws_summary] }
  - partnercentral: Opportunity Updated
needs:
  opportunity: true
  aws_summary: true
  previous: true
watch:
  score: $.aws_summary.Insights.OpportunityQuality.Score
  review: $.opportunity.LifeCycle.ReviewStatus
notify:
  - name: score-up
    when: { watch: score, increased_by: 10 }
    priority: medium
    title: "up {{ score.delta }}"
  - name: approved
    when: { watch: review, changed_to: [Approved] }
    priority: high
    title: approved
channels:
  note: {}
"#;

    fn rules() -> RuleSet {
        let loaded = crate::load::load_pack_texts(vec![("watcher.yaml".into(), PACK.into())]);
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        loaded.value.unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    /// The 6-hourly summary poll of deal 1 (opportunity O1).
    fn poll() -> Event {
        let mut e = Event::schedule("watcher", Some("1".into()), Some("O1".into()), now());
        e.scheduled = Some(crate::ScheduledRun {
            listed_at: now(),
            deal: DealSnapshot {
                id: "1".into(),
                properties: Default::default(),
            },
            reads: Some(vec![crate::model::PartnerCentralRead::AwsSummary]),
        });
        e
    }

    /// A full read: what `Opportunity Updated` brings.
    fn updated() -> Event {
        let mut e = poll();
        e.scheduled = None;
        e
    }

    fn ctx(previous: Option<Value>, review: Option<&str>, score: i64) -> Context {
        Context {
            deal: Some(DealSnapshot {
                id: "1".into(),
                ..Default::default()
            }),
            opportunity: review.map(|r| json!({ "Id": "O1", "LifeCycle": { "ReviewStatus": r } })),
            aws_summary: Some(json!({ "Insights": { "OpportunityQuality": { "Score": score } } })),
            previous: previous
                .map(|w| {
                    let watches: indexmap::IndexMap<String, Value> =
                        serde_json::from_value(w).unwrap();
                    [(
                        "watcher".to_string(),
                        PackState {
                            marks: watches.clone(),
                            watches,
                            sent: Vec::new(),
                        },
                    )]
                    .into_iter()
                    .collect()
                })
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    /// The notes a run adds and the watches it records.
    fn run(event: &Event, ctx: &Context) -> (Vec<String>, Option<Value>) {
        let plan = plan(event, ctx, &rules(), now());
        let mut notes = Vec::new();
        let mut recorded = None;
        for entry in plan.effects {
            match entry {
                PlanEntry::Write(Effect::CreateNote { body, .. }) => notes.push(body),
                PlanEntry::Decision(Decision::RecordState { record, .. }) => {
                    recorded = Some(serde_json::to_value(&record.watches).unwrap())
                }
                _ => {}
            }
        }
        (notes, recorded)
    }

    #[test]
    fn a_summary_poll_notifies_score_changes_and_keeps_the_unread_review_as_it_was() {
        let before = json!({ "score": 50, "review": "Submitted" });
        let (notes, recorded) = run(&poll(), &ctx(Some(before), None, 70));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("up 20"), "{notes:?}");
        assert_eq!(
            recorded,
            Some(json!({ "score": 70, "review": "Submitted" }))
        );
    }

    #[test]
    fn a_watch_first_known_from_a_later_read_is_a_baseline_not_a_change() {
        // The poll is the opportunity's first sighting: it records the score only.
        let (notes, recorded) = run(&poll(), &ctx(None, None, 40));
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(recorded, Some(json!({ "score": 40 })));
        // The first full read finds it approved: the review's baseline, no news.
        let (notes, recorded) = run(&updated(), &ctx(recorded, Some("Approved"), 40));
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(recorded, Some(json!({ "score": 40, "review": "Approved" })));
        // From there on, a change of review notifies.
        let before = json!({ "score": 40, "review": "Submitted" });
        let (notes, _) = run(&updated(), &ctx(Some(before), Some("Approved"), 40));
        assert!(
            notes.len() == 1 && notes[0].contains("approved"),
            "{notes:?}"
        );
    }

    #[test]
    fn a_poll_whose_context_holds_the_opportunity_anyway_watches_it() {
        // Coalesced with a full read of the same deal, the poll sees the opportunity.
        let before = json!({ "score": 50, "review": "Submitted" });
        let (notes, _) = run(&poll(), &ctx(Some(before), Some("Approved"), 50));
        assert!(
            notes.len() == 1 && notes[0].contains("approved"),
            "{notes:?}"
        );
    }

    #[test]
    fn only_a_schedule_narrows_its_reads() {
        let mut forged = poll();
        forged.source = crate::event::Source::Partnercentral;
        assert!(!forged.leaves_unread("opportunity"));
        assert!(poll().leaves_unread("opportunity"));
        assert!(!poll().leaves_unread("aws_summary"));
        assert!(!poll().leaves_unread("deal"));
    }
}
