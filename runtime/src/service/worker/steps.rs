//! A creation's steps after CreateOpportunity answered (see
//! [`crate::service::creation`]): each solution, then the submission once the stage
//! allows it, then its task until AWS ends it.

use pcsync_engine::readiness::SubmissionGate;
use pcsync_engine::{CompiledPack, Context, Effect, Ending, Event, Outcome, RuleSet};
use serde_json::Value;

use super::run::Performed;
use super::{Settled, Worker, after_error, ending};
use crate::service::creation::{self, Creation, Ended};
use crate::service::execute::Executor;

impl<E: Executor> Worker<E> {
    /// Takes a creation's steps from where they stopped (see [`creation`]): each
    /// solution, then the submission once the stage allows it, then its task until
    /// AWS ends it; then the pack settles with how they ended.
    pub(super) async fn follow_creation(
        &self,
        pack: &CompiledPack,
        rules: &RuleSet,
        event: &Event,
        ctx: &Context,
        key: &str,
        mut steps: Creation,
    ) -> Settled {
        let now = self.clock.now();
        let name = pack.pack.name.as_str();
        let id = steps.opportunity_id().to_string();
        let save = |steps: &Creation| {
            crate::service::blocking(|| {
                self.store
                    .save_settle(key, &steps.encode(), now.as_millisecond())
            })
            .map_err(|e| Settled::Retry(e.to_string(), None))
        };
        let mut started = false;
        while steps.ended.is_none() {
            if let Some(solution) = steps.associate.first().cloned() {
                let step = Effect::AssociateOpportunity {
                    pack: name.to_string(),
                    opportunity_id: id.clone(),
                    solution: solution.clone(),
                };
                match self.step(event, name, &step, now).await {
                    Err(settled) => return settled,
                    Ok(Ok(_)) => {
                        steps.associate.remove(0);
                    }
                    Ok(Err(message)) => {
                        steps.ended = Some(Ended::Failure(format!(
                            "AssociateOpportunity {solution}: {message}"
                        )))
                    }
                }
                if let Err(settled) = save(&steps) {
                    return settled;
                }
                continue;
            }
            let Some(submission) = steps.submission.as_mut() else {
                steps.ended = Some(Ended::Success(steps.created.clone()));
                break;
            };
            let Some(task) = &submission.task else {
                let stage = match self.executor.opportunity(&id).await {
                    Ok(Some(o)) => o
                        .pointer("/LifeCycle/Stage")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    Ok(None) => {
                        steps.ended = Some(Ended::Failure(format!(
                            "opportunity {id} is no longer in Partner Central"
                        )));
                        continue;
                    }
                    Err(e) => return after_error(&e, format!("{name}: {}", e.message)),
                };
                match pcsync_engine::readiness::submission(&stage) {
                    SubmissionGate::Open => {
                        let step = Effect::StartEngagement {
                            pack: name.to_string(),
                            opportunity_id: id.clone(),
                            client_token: submission.client_token.clone(),
                            submission: submission.submission.clone(),
                        };
                        match self.step(event, name, &step, now).await {
                            Err(settled) => return settled,
                            Ok(Ok(task)) => {
                                submission.task = Some(task);
                                started = true;
                            }
                            Ok(Err(message)) => {
                                steps.ended = Some(Ended::Failure(format!(
                                    "StartEngagementFromOpportunityTask: {message}"
                                )))
                            }
                        }
                    }
                    SubmissionGate::Refused { reason } => {
                        steps.ended = Some(Ended::Failure(reason));
                    }
                    SubmissionGate::Waits { reason } => {
                        // Said once on the deal; the steps wait for an edit of the
                        // deal that starts the pack again.
                        if !steps.told_waiting {
                            let mut result = steps.created.clone();
                            result["Submission"] =
                                serde_json::json!({ "TaskStatus": "WAITING", "Message": reason });
                            let waiting = Outcome::Success { result };
                            if let Err(settled) = self
                                .follow_up(pack, rules, event, ctx, &steps.planned, &waiting, now)
                                .await
                            {
                                return settled;
                            }
                            steps.told_waiting = true;
                            if let Err(settled) = save(&steps) {
                                return settled;
                            }
                        }
                        tracing::info!(pack = name, opportunity = %id, reason = %reason, "the submission waits");
                        return Settled::Done;
                    }
                }
                if let Err(settled) = save(&steps) {
                    return settled;
                }
                continue;
            };
            let running = task["TaskStatus"] == "IN_PROGRESS";
            let task_id = task["TaskId"].as_str().map(str::to_string);
            match task_id {
                Some(task_id) if running => {
                    if !started {
                        match self.executor.engagement_task(&task_id).await {
                            Ok(Some(listed)) => submission.task = Some(listed),
                            Ok(None) => {}
                            Err(e) => return after_error(&e, format!("{name}: {}", e.message)),
                        }
                    }
                    if submission
                        .task
                        .as_ref()
                        .is_some_and(|t| t["TaskStatus"] == "IN_PROGRESS")
                    {
                        let wait = creation::task_recheck(submission.looks);
                        submission.looks += 1;
                        if let Err(settled) = save(&steps) {
                            return settled;
                        }
                        return Settled::Following(
                            format!("{name}: submission task {task_id} of {id} is in progress"),
                            wait,
                        );
                    }
                }
                _ => {
                    let mut result = steps.created.clone();
                    result["Submission"] = task.clone();
                    steps.ended = Some(Ended::Success(result));
                    if let Err(settled) = save(&steps) {
                        return settled;
                    }
                }
            }
        }
        let outcome = match steps.ended.clone().expect("the loop ends with an ending") {
            Ended::Success(result) => Outcome::Success { result },
            Ended::Failure(message) => Outcome::Failure { message },
        };
        if let Err(settled) = self
            .follow_up(pack, rules, event, ctx, &steps.planned, &outcome, now)
            .await
        {
            return settled;
        }
        if let Err(e) = crate::service::blocking(|| self.store.clear_settle(key)) {
            return Settled::Retry(e.to_string(), None);
        }
        match outcome {
            Outcome::Failure { message } => ending(name, Ending::Failed(message)),
            Outcome::Success { .. } => Settled::Done,
        }
    }

    /// Performs one step of a creation: its answer, or the message of a failure
    /// retries cannot fix; `Err` is how the batch ends when a retry may help.
    pub(super) async fn step(
        &self,
        event: &Event,
        pack: &str,
        effect: &Effect,
        now: jiff::Timestamp,
    ) -> Result<Result<Value, String>, Settled> {
        match self.perform_once(event, pack, 0, effect, now).await {
            Err(e) => Err(Settled::Retry(e.to_string(), None)),
            Ok(Performed::Skipped) => Ok(Ok(Value::Null)),
            Ok(Performed::Answered(answer)) => Ok(Ok(answer)),
            Ok(Performed::Failed(e)) if e.retryable || e.waits_for_quota => Err(after_error(
                &e,
                format!("{pack}: {}: {}", effect.kind(), e.message),
            )),
            Ok(Performed::Failed(e)) => Ok(Err(e.message)),
        }
    }
}
