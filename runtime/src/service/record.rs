//! Recording pack runs for `pcsync replay`: the worker hands each plan here, with
//! the event and the context it saw; the configured personal data is replaced, and a
//! background task writes the runs in batches (a second's worth, in one
//! transaction) and prunes the record to its retention and size. A full queue drops
//! runs rather than slowing the worker: the record is an aid, not the state.

use std::sync::Arc;
use std::time::Duration;

use pcsync_engine::{Context, Event, PackPlan};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::RecordedRunsConfig;
use crate::store::{RunLog, RunRecord};

enum Message {
    Run(Box<RunRecord>),
    /// Write what is queued now, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Runs waiting to be written, at most.
const QUEUED: usize = 20_000;
/// How often queued runs are written.
const FLUSH: Duration = Duration::from_secs(1);
/// How often the record is pruned.
const PRUNE: Duration = Duration::from_secs(60);

/// Where the worker's runs go.
#[derive(Debug, Default)]
pub struct Recorder {
    queue: Option<mpsc::Sender<Message>>,
    redact: Vec<Vec<String>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl Recorder {
    /// Records nothing.
    pub fn off() -> Self {
        Recorder::default()
    }

    /// Records into `store` as `config` says, from a task on the current runtime.
    pub fn start(
        config: &RecordedRunsConfig,
        store: Arc<dyn RunLog>,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Self {
        if !config.enabled {
            return Recorder::off();
        }
        let (tx, rx) = mpsc::channel(QUEUED);
        tokio::spawn(write(
            rx,
            store,
            clock,
            config.keep.0,
            config.max_mb.saturating_mul(1 << 20),
        ));
        Recorder {
            queue: Some(tx),
            redact: config
                .redact
                .iter()
                .map(|p| p.split('.').map(str::to_string).collect())
                .collect(),
            dropped: Default::default(),
        }
    }

    /// Records one pack run: `plan` as planned at `at` for `event` on `ctx`.
    pub fn record(&self, event: &Event, ctx: &Context, plan: &PackPlan, at: jiff::Timestamp) {
        let Some(queue) = &self.queue else { return };
        let entries = pcsync_engine::replay::entries(plan);
        let (Ok(mut event_json), Ok(mut context), Ok(entries)) = (
            serde_json::to_value(event),
            serde_json::to_value(ctx),
            serde_json::to_string(&entries),
        ) else {
            return;
        };
        for path in &self.redact {
            match path.split_first() {
                Some((root, rest)) if root == "event" => redact(&mut event_json, rest),
                Some(_) => redact(&mut context, path),
                None => {}
            }
        }
        let mut take = |member: &str| context.as_object_mut().and_then(|c| c.remove(member));
        let opportunity = take("opportunity");
        let aws_summary = take("aws_summary");
        let record = RunRecord {
            event_id: event.id.clone(),
            pack: plan.pack.clone(),
            at,
            deal_id: ctx
                .deal
                .as_ref()
                .map(|d| d.id.clone())
                .or_else(|| event.deal_id.clone()),
            event: event_json.to_string(),
            context,
            opportunity,
            aws_summary,
            entries,
        };
        if queue.try_send(Message::Run(Box::new(record))).is_err() {
            let before = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                tracing::warn!(
                    dropped = before + 1,
                    "runs are planned faster than the record keeps them: some are not recorded"
                );
            }
        }
    }
}

impl Recorder {
    /// Writes the runs queued so far (at shutdown, so that the last second's runs
    /// are kept).
    pub async fn flush(&self) {
        let Some(queue) = &self.queue else { return };
        let (done, written) = tokio::sync::oneshot::channel();
        if queue.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

/// Replaces what `path` names in `value` with `"[redacted]"`; `*` stands for every
/// member of an object or item of a list.
pub fn redact(value: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        if !value.is_null() {
            *value = Value::String("[redacted]".into());
        }
        return;
    };
    match value {
        Value::Object(m) if first == "*" => m.values_mut().for_each(|v| redact(v, rest)),
        Value::Array(a) if first == "*" => a.iter_mut().for_each(|v| redact(v, rest)),
        Value::Object(m) => {
            if let Some(v) = m.get_mut(first) {
                redact(v, rest);
            }
        }
        Value::Array(a) => {
            if let Some(v) = first.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                redact(v, rest);
            }
        }
        _ => {}
    }
}

async fn write(
    mut rx: mpsc::Receiver<Message>,
    store: Arc<dyn RunLog>,
    clock: Arc<dyn crate::clock::Clock>,
    keep: Duration,
    max_bytes: u64,
) {
    let mut pruned = tokio::time::Instant::now();
    let mut runs: Vec<RunRecord> = Vec::new();
    let mut flushed: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    loop {
        // A second's worth of runs (from the first), or until asked to flush.
        let Some(first) = rx.recv().await else { break };
        let deadline = tokio::time::Instant::now() + FLUSH;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Run(run) => runs.push(*run),
                Message::Flush(done) => {
                    flushed.push(done);
                    break;
                }
            }
            next = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => Some(m),
                _ => None,
            };
        }
        if !runs.is_empty() {
            let batch = std::mem::take(&mut runs);
            if let Err(e) = super::blocking(|| store.record_runs(&batch)) {
                tracing::warn!(error = %e, runs = batch.len(), "cannot record runs for replay");
            }
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
        if pruned.elapsed() >= PRUNE {
            pruned = tokio::time::Instant::now();
            let before = clock.now_ms() - keep.as_millis() as i64;
            match super::blocking(|| store.prune_runs(before, max_bytes)) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(runs = n, "recorded runs pruned"),
                Err(e) => tracing::warn!(error = %e, "cannot prune the recorded runs"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_reaches_members_items_and_wildcards() {
        let mut v = json!({
            "deal": { "properties": { "email": "a@b.example", "dealname": "Acme" } },
            "opportunity": { "Customer": { "Contacts": [
                { "Email": "x@y.example", "FirstName": "X" },
                { "Email": "z@y.example", "FirstName": "Z" } ] } }
        });
        let path = |p: &str| p.split('.').map(str::to_string).collect::<Vec<_>>();
        redact(&mut v, &path("deal.properties.email"));
        redact(&mut v, &path("opportunity.Customer.Contacts.*.Email"));
        redact(&mut v, &path("deal.properties.missing"));
        assert_eq!(v["deal"]["properties"]["email"], "[redacted]");
        assert_eq!(v["deal"]["properties"]["dealname"], "Acme");
        let contacts = &v["opportunity"]["Customer"]["Contacts"];
        assert_eq!(contacts[0]["Email"], "[redacted]");
        assert_eq!(contacts[1]["Email"], "[redacted]");
        assert_eq!(contacts[1]["FirstName"], "Z");
        assert!(v["deal"]["properties"].get("missing").is_none());
    }
}
