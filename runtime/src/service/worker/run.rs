//! A pack run: plan, perform the writes (each note, task and message once, through
//! the effect journal), conclude, and settle: the `on_success`/`on_error` follow-ups,
//! kept as a pending settle until they are done.

use pcsync_engine::plan::{plan_pack, settle};
use pcsync_engine::{CompiledPack, Context, Effect, Ending, Event, Outcome, RuleSet, conclude};
use serde_json::Value;

use super::{Settled, Worker, after_error, ending};
use crate::service::creation::{self, Creation};
use crate::service::execute::{ExecError, Executor};
use crate::store::EffectJournal;

impl<E: Executor> Worker<E> {
    /// Plans and performs one pack; `wrote` becomes true when it sent a write (or
    /// finished an earlier try's follow-ups), so that the context is stale.
    pub(super) async fn run_pack(
        &self,
        pack: &CompiledPack,
        rules: &RuleSet,
        event: &Event,
        ctx: &Context,
        wrote: &mut bool,
    ) -> Settled {
        let key = settle_key(event, pack);
        match crate::service::blocking(|| self.store.pending_settle(&key)) {
            Ok(Some(saved)) => {
                *wrote = true;
                if let Some(settled) = self.finish_settle(pack, rules, event, ctx, &saved).await {
                    return settled;
                }
            }
            Ok(None) => {}
            Err(e) => return Settled::Retry(e.to_string(), None),
        }
        // A creation whose steps are not over is not planned again (its opportunity
        // exists): the steps go on once the batch's packs ran (`run_subject`).
        if let Some(deal) = &event.deal_id {
            let key = creation::key(deal, &pack.pack.name);
            match crate::service::blocking(|| self.store.pending_settle(&key)) {
                Ok(Some(_)) => return Settled::Done,
                Ok(None) => {}
                Err(e) => return Settled::Retry(e.to_string(), None),
            }
        }
        let now = self.clock.now();
        let plan = plan_pack(pack, rules, event, ctx, now);
        self.metrics.planned(&plan.pack);
        self.recorder.record(event, ctx, &plan, now);
        tracing::debug!(
            event = %event.id,
            pack = %plan.pack,
            verdict = ?plan.verdict,
            writes = %serde_json::to_string(&plan.writes).unwrap_or_default(),
            "planned"
        );
        let mut result = Value::Null;
        let mut failure = None;
        *wrote |= !plan.writes.is_empty();
        for (index, write) in plan.writes.iter().enumerate() {
            let performed = match self
                .perform_once(event, &plan.pack, index, write, now)
                .await
            {
                Ok(Performed::Skipped) => continue,
                Ok(Performed::Answered(answer)) => Ok(answer),
                Ok(Performed::Failed(e)) => Err(e),
                Err(e) => return Settled::Retry(e.to_string(), None),
            };
            match performed {
                Ok(answer) => {
                    // The creation's steps are written down before its id goes on
                    // the deal: whatever stops this run, they are taken later.
                    if let Effect::CreateOpportunity { deal_id, .. } = write
                        && let Some(steps) = Creation::after(&plan.writes, write, &answer)
                    {
                        let key = creation::key(deal_id, &plan.pack);
                        let now_ms = now.as_millisecond();
                        if let Err(e) = crate::service::blocking(|| {
                            self.store.save_settle(&key, &steps.encode(), now_ms)
                        }) {
                            return Settled::Retry(e.to_string(), None);
                        }
                    }
                    if !answer.is_null() {
                        result = answer;
                    }
                }
                Err(e) if e.replan => {
                    return Settled::Replan(format!("{}: {}", plan.pack, e.message));
                }
                Err(e) if e.retryable => {
                    return after_error(&e, format!("{}: {}", plan.pack, e.message));
                }
                Err(e) => {
                    failure = Some(e.message);
                    break;
                }
            }
        }
        let writes = match failure {
            Some(message) => Outcome::Failure { message },
            None => Outcome::Success { result },
        };
        // What follows is the engine's to say, as it says it for `pcsync test`.
        let conclusion = conclude(&plan, &writes);
        if let Some(record) = conclusion.record {
            let now_ms = now.as_millisecond();
            if let Err(e) =
                crate::service::blocking(|| self.store.record_state(&plan.pack, record, now_ms))
            {
                return Settled::Retry(e.to_string(), None);
            }
        }
        if let Some(follow_up) = &conclusion.follow_up {
            let key = settle_key(event, pack);
            let saved = encode_settle(&plan.writes, follow_up);
            let now_ms = now.as_millisecond();
            if let Err(e) =
                crate::service::blocking(|| self.store.save_settle(&key, &saved, now_ms))
            {
                return Settled::Retry(e.to_string(), None);
            }
            if let Err(settled) = self
                .follow_up(pack, rules, event, ctx, &plan.writes, follow_up, now)
                .await
            {
                return settled;
            }
            if let Err(e) = crate::service::blocking(|| self.store.clear_settle(&key)) {
                return Settled::Retry(e.to_string(), None);
            }
        }
        ending(&plan.pack, conclusion.ending)
    }

    /// A pack run whose writes were done by an earlier try of this batch, but not all
    /// its follow-ups: finishes them rather than planning again (a fresh plan would
    /// find nothing left to change, and settle nothing).
    pub(super) async fn finish_settle(
        &self,
        pack: &CompiledPack,
        rules: &RuleSet,
        event: &Event,
        ctx: &Context,
        saved: &str,
    ) -> Option<Settled> {
        let (planned, outcome) = decode_settle(saved)?;
        let now = self.clock.now();
        if let Err(settled) = self
            .follow_up(pack, rules, event, ctx, &planned, &outcome, now)
            .await
        {
            return Some(settled);
        }
        let key = settle_key(event, pack);
        if let Err(e) = crate::service::blocking(|| self.store.clear_settle(&key)) {
            return Some(Settled::Retry(e.to_string(), None));
        }
        Some(match outcome {
            Outcome::Failure { message } => ending(&pack.pack.name, Ending::Failed(message)),
            Outcome::Success { .. } => Settled::Done,
        })
    }

    /// Performs the pack's `on_success` or `on_error` effects. Follow-ups (the new
    /// opportunity's id on the deal, the sync status) are effects like any other: one
    /// that fails retries the batch, which finishes them from the pending settle, and
    /// the notes already written are not repeated.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn follow_up(
        &self,
        pack: &CompiledPack,
        rules: &RuleSet,
        event: &Event,
        ctx: &Context,
        planned: &[Effect],
        outcome: &Outcome,
        now: jiff::Timestamp,
    ) -> Result<(), Settled> {
        let follow = settle(pack, rules, event, ctx, planned, outcome, now);
        for (offset, effect) in follow.writes.iter().enumerate() {
            let index = planned.len() + offset;
            let performed = match self
                .perform_once(event, &pack.pack.name, index, effect, now)
                .await
            {
                Ok(Performed::Skipped) => continue,
                Ok(Performed::Answered(answer)) => Ok(answer),
                Ok(Performed::Failed(e)) => Err(e),
                Err(e) => return Err(Settled::Retry(e.to_string(), None)),
            };
            let failed = |e: &ExecError| {
                format!(
                    "{}: follow-up {}: {}",
                    pack.pack.name,
                    effect.kind(),
                    e.message
                )
            };
            match performed {
                Ok(_) => {}
                Err(e) => return Err(after_error(&e, failed(&e))),
            }
        }
        Ok(())
    }

    /// Performs one write of a pack run, at most once where repeating it would show:
    /// notes, tasks and messages are not idempotent, so one an earlier try of this
    /// batch carried out (its journal key is remembered) is skipped, and
    /// [`Performed::Skipped`] says so (as it does for a message to a channel the
    /// service does not have).
    /// A store error is the caller's to retry.
    pub(super) async fn perform_once(
        &self,
        event: &Event,
        pack: &str,
        index: usize,
        effect: &Effect,
        now: jiff::Timestamp,
    ) -> Result<Performed, crate::store::StoreError> {
        // A channel the service does not have (SNS without a topic) is skipped, not
        // failed: the pack's other writes and its state go ahead (said once at load).
        if !self.rules.channels().delivers(effect) {
            tracing::debug!(event = %event.id, pack, kind = effect.kind(), "skipped: the config names no SNS topic");
            self.metrics.effect(effect.kind(), "no_topic");
            return Ok(Performed::Skipped);
        }
        let journal = JournalKey::of(event, pack, index, effect);
        if let Some(key) = &journal
            && crate::service::blocking(|| key.done(&*self.store))?
        {
            self.metrics.effect(effect.kind(), "already_done");
            return Ok(Performed::Skipped);
        }
        let performed = self.executor.perform(effect, &*self.store, now).await;
        if let (Some(key), Ok(_)) = (&journal, &performed) {
            crate::service::blocking(|| {
                self.store.remember_effect(&key.key, now.as_millisecond())
            })?;
        }
        self.metrics.effect(
            effect.kind(),
            match &performed {
                Ok(_) => "ok",
                Err(e) if e.retryable => "retry",
                Err(_) => "error",
            },
        );
        Ok(match performed {
            Ok(answer) => Performed::Answered(answer),
            Err(e) => Performed::Failed(e),
        })
    }
}

/// What became of one write ([`Worker::perform_once`]).
pub(super) enum Performed {
    /// Not sent: an earlier try carried it out, or the service has no channel for it.
    Skipped,
    /// Sent, with the API's answer.
    Answered(Value),
    /// Refused, or failed on the way.
    Failed(ExecError),
}

/// The effect journal's key for a note, task or message: the event the pack ran on,
/// the pack, the effect's place among the pack's writes, and a digest of what
/// identifies it to a reader (the deal and the title: a note's first line, a task's
/// or message's subject). Bodies and due times are left out because they may carry
/// the time of planning, which a retry changes; a retry that plans a different note
/// or task does it.
///
/// The digest is SHA-256 (its first 16 bytes, hex) over the kind, deal and title
/// joined by NUL: a specified function, so a key written by one build is found by
/// the next (std's `DefaultHasher` may change between Rust releases).
pub(super) struct JournalKey {
    pub(super) key: String,
}

impl JournalKey {
    pub(super) fn of(event: &Event, pack: &str, index: usize, effect: &Effect) -> Option<Self> {
        use sha2::Digest;
        let (kind, deal, title) = match effect {
            Effect::CreateNote { deal_id, body, .. } => (
                "note",
                deal_id.as_str(),
                body.lines().next().unwrap_or_default(),
            ),
            Effect::CreateTask {
                deal_id, subject, ..
            } => ("task", deal_id.as_str(), subject.as_str()),
            Effect::Publish { subject, .. } => ("publish", "", subject.as_str()),
            _ => return None,
        };
        let digest = sha2::Sha256::new()
            .chain_update(kind)
            .chain_update([0])
            .chain_update(deal)
            .chain_update([0])
            .chain_update(title)
            .finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Some(JournalKey {
            key: format!("v2|{}|{pack}|{index}|{hex}", event.id),
        })
    }

    /// Whether an earlier try carried the effect out.
    pub(super) fn done(&self, store: &dyn EffectJournal) -> Result<bool, crate::store::StoreError> {
        store.effect_done(&self.key)
    }
}

/// The key of a pack run's pending settle: the event it ran on and the pack.
pub(super) fn settle_key(event: &Event, pack: &CompiledPack) -> String {
    format!(
        "{}|{}|{}",
        event.id,
        event.deal_id.as_deref().unwrap_or_default(),
        pack.pack.name
    )
}

/// A pending settle as stored: the planned effects and how their writes ended
/// (versioned JSON, read back by a later try, possibly by a later pcsync).
pub(super) fn encode_settle(planned: &[Effect], outcome: &Outcome) -> String {
    let (ok, value) = match outcome {
        Outcome::Success { result } => (true, result.clone()),
        Outcome::Failure { message } => (false, Value::String(message.clone())),
    };
    serde_json::json!({ "v": 1, "effects": planned, "ok": ok, "value": value }).to_string()
}

pub(super) fn decode_settle(text: &str) -> Option<(Vec<Effect>, Outcome)> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v["v"] != 1 {
        return None;
    }
    let effects: Vec<Effect> = serde_json::from_value(v["effects"].clone()).ok()?;
    let outcome = if v["ok"].as_bool()? {
        Outcome::Success {
            result: v["value"].clone(),
        }
    } else {
        Outcome::Failure {
            message: v["value"].as_str()?.to_string(),
        }
    };
    Some((effects, outcome))
}
