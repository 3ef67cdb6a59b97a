//! Carrying out a plan's effects against the real APIs.
//!
//! UpdateOpportunity replaces the whole record, so an update takes the opportunity
//! as the run's context read found it ([`PlannedReads`]), applies the plan's field
//! changes to it and sends it all back with that `LastModifiedDate`. A
//! `ConflictException` (someone wrote since the plan's read) asks the worker to plan
//! again from a fresh read: the opportunity may have moved into a review status in
//! which the pack's immutability rules defer or skip the change.

use std::collections::HashMap;

use indexmap::IndexMap;
use jiff::Timestamp;
use pcsync_adapters::hubspot::client::{Deal, HubSpotClient, HubSpotError};
use pcsync_adapters::partner_central::{PartnerCentralClient, PcError};
use pcsync_adapters::sns::{PublishError, SnsPublisher};
use pcsync_engine::{DealSnapshot, Effect};
use serde_json::{Map, Value, json};

use crate::store::{EchoMemory, SnapshotCache, SnapshotId, StoreError};

/// Why an effect failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExecError {
    /// What happened, for the dead-letter list and `on_error` templates.
    pub message: String,
    /// Whether trying the event again later may succeed.
    pub retryable: bool,
    /// How long the remote API asked to wait before trying again, if it said.
    pub retry_after: Option<std::time::Duration>,
    /// The opportunity changed since it was read (`ConflictException`): plan again
    /// from a fresh read rather than retrying the same write.
    pub replan: bool,
    /// A daily API quota is spent: wait `retry_after` without counting an attempt
    /// (the call was held back, or refused for the day, not failed).
    pub waits_for_quota: bool,
}

impl ExecError {
    /// A failure retries cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        ExecError {
            message: message.into(),
            retryable: false,
            retry_after: None,
            replan: false,
            waits_for_quota: false,
        }
    }
}

impl From<PcError> for ExecError {
    fn from(e: PcError) -> Self {
        let mut message = e.to_string();
        if let Some(errors) = e.body.as_ref().and_then(|b| b.get("ErrorList")) {
            message.push_str(&format!(" {errors}"));
        }
        ExecError {
            message,
            retryable: e.retryable,
            retry_after: e.retry_after,
            replan: false,
            waits_for_quota: e.is_quota_spent(),
        }
    }
}

impl From<HubSpotError> for ExecError {
    fn from(e: HubSpotError) -> Self {
        ExecError {
            retryable: e.retryable() || e.is_daily_limit(),
            retry_after: e.retry_after(),
            message: e.to_string(),
            replan: false,
            // HubSpot's daily limit waits for its reset, as a spent Partner Central
            // quota does, without counting an attempt.
            waits_for_quota: e.is_daily_limit(),
        }
    }
}

impl From<PublishError> for ExecError {
    fn from(e: PublishError) -> Self {
        ExecError {
            retryable: e.retryable,
            retry_after: None,
            message: format!("SNS: {e}"),
            replan: false,
            waits_for_quota: false,
        }
    }
}

impl From<StoreError> for ExecError {
    fn from(e: StoreError) -> Self {
        ExecError {
            message: e.to_string(),
            retryable: true,
            retry_after: None,
            replan: false,
            waits_for_quota: false,
        }
    }
}

/// What the worker needs of the outside world: the reads that fill a pack's context
/// and the writes a plan holds. [`ApiExecutor`] speaks to HubSpot, Partner Central and
/// SNS; tests give the worker one that records what it was asked.
pub trait Executor: Send + Sync + 'static {
    /// Performs one write; answers what the write returned (CreateOpportunity's
    /// response, an update's new `LastModifiedDate`), `Null` when nothing. Values it
    /// writes to deal properties are remembered in `store` (echo suppression).
    fn perform(
        &self,
        effect: &Effect,
        store: &dyn EchoMemory,
        now: Timestamp,
    ) -> impl Future<Output = Result<Value, ExecError>> + Send;

    /// The deal with these properties; `None` when HubSpot has no such deal.
    fn deal(
        &self,
        id: &str,
        properties: &[String],
    ) -> impl Future<Output = Result<Option<DealSnapshot>, ExecError>> + Send;

    /// The first deal whose `link` property holds `opportunity_id`.
    fn deal_linked_to(
        &self,
        link: &str,
        opportunity_id: &str,
        properties: &[String],
    ) -> impl Future<Output = Result<Option<DealSnapshot>, ExecError>> + Send;

    /// The deal's primary company with these properties.
    fn primary_company(
        &self,
        deal_id: &str,
        properties: &[String],
    ) -> impl Future<Output = Result<Option<DealSnapshot>, ExecError>> + Send;

    /// The ids of a company's deals.
    fn company_deals(
        &self,
        company_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, ExecError>> + Send;

    /// GetOpportunity; `None` when AWS does not know the id.
    fn opportunity(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Value>, ExecError>> + Send;

    /// A submission task as ListEngagementFromOpportunityTasks lists it now; `None`
    /// when AWS lists no such task.
    fn engagement_task(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<Option<Value>, ExecError>> + Send;

    /// GetAwsOpportunitySummary; `None` when AWS keeps none.
    fn aws_summary(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Value>, ExecError>> + Send;

    /// The opportunity's resource snapshots of these templates, oldest first. A
    /// revision read before comes from `cache` (AWS never changes one), and a new
    /// one is kept there.
    fn snapshots(
        &self,
        id: &str,
        templates: &[String],
        cache: &dyn SnapshotCache,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<Value>, ExecError>> + Send;
}

/// The clients effects are carried out with.
pub struct ApiExecutor {
    /// HubSpot (shared with the pollers: one limiter for the account).
    pub hubspot: std::sync::Arc<HubSpotClient>,
    /// Partner Central.
    pub partner_central: PartnerCentralClient,
    /// SNS and the topic notifications go to, when configured.
    pub sns: Option<(SnsPublisher, String)>,
    /// Snapshot reads take turns per opportunity. Two runs about one opportunity (a
    /// deal's scheduled run and an event about its opportunity) may read their
    /// contexts at once; taking turns at its snapshots, the second finds the
    /// revisions the first read in the cache instead of reading them from AWS again.
    pub snapshot_turns: super::in_flight::InFlight,
    /// The opportunities as the last context read found them, for the update
    /// planned on them.
    pub planned: PlannedReads,
}

/// Each opportunity as the last context read found them (GetOpportunity), so that
/// an UpdateOpportunity sends the record and the `LastModifiedDate` it was planned
/// on, instead of reading again: a review that began since then makes AWS answer
/// `ConflictException`, and the worker plans again from a fresh read (which the
/// immutability rules then see), where a second read would have hidden it from the
/// plan and cost a read per write. Two runs about one opportunity take turns
/// (`InFlight`), so the last read is the run's own. Bounded: a read no update
/// follows is forgotten with the rest once there are [`PlannedReads::MAX`].
#[derive(Debug, Default)]
pub struct PlannedReads(std::sync::Mutex<HashMap<String, Value>>);

impl PlannedReads {
    /// Opportunities held at most.
    pub const MAX: usize = 1_024;

    fn keep(&self, id: &str, record: &Value) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= Self::MAX && !held.contains_key(id) {
            held.clear();
        }
        held.insert(id.to_string(), record.clone());
    }

    fn take(&self, id: &str) -> Option<Value> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id)
    }
}

fn snapshot(d: Deal) -> DealSnapshot {
    DealSnapshot {
        properties: deal_properties(&d.properties),
        id: d.id,
    }
}

impl Executor for ApiExecutor {
    async fn deal(
        &self,
        id: &str,
        properties: &[String],
    ) -> Result<Option<DealSnapshot>, ExecError> {
        Ok(self.hubspot.get_deal(id, properties).await?.map(snapshot))
    }

    async fn deal_linked_to(
        &self,
        link: &str,
        opportunity_id: &str,
        properties: &[String],
    ) -> Result<Option<DealSnapshot>, ExecError> {
        let found = self
            .hubspot
            .find_deals(link, opportunity_id, properties)
            .await?;
        Ok(found.into_iter().next().map(snapshot))
    }

    async fn primary_company(
        &self,
        deal_id: &str,
        properties: &[String],
    ) -> Result<Option<DealSnapshot>, ExecError> {
        Ok(self
            .hubspot
            .primary_company(deal_id, properties)
            .await?
            .map(snapshot))
    }

    async fn company_deals(&self, company_id: &str) -> Result<Vec<String>, ExecError> {
        Ok(self.hubspot.company_deals(company_id).await?)
    }

    async fn opportunity(&self, id: &str) -> Result<Option<Value>, ExecError> {
        match self.partner_central.get_opportunity(id).await {
            Ok(o) => {
                self.planned.keep(id, &o);
                Ok(Some(o))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn aws_summary(&self, id: &str) -> Result<Option<Value>, ExecError> {
        Ok(self.partner_central.get_aws_summary(id).await?)
    }

    async fn engagement_task(&self, task_id: &str) -> Result<Option<Value>, ExecError> {
        Ok(self.partner_central.engagement_task(task_id).await?)
    }

    async fn snapshots(
        &self,
        id: &str,
        templates: &[String],
        cache: &dyn SnapshotCache,
        now: Timestamp,
    ) -> Result<Vec<Value>, ExecError> {
        let now_ms = now.as_millisecond();
        let _turn = self.snapshot_turns.turn(id).await;
        let mut snapshots = Vec::new();
        for r in self
            .partner_central
            .snapshot_revisions(id, templates)
            .await?
        {
            let key = SnapshotId {
                opportunity: id,
                engagement: &r.engagement,
                template: &r.template,
                revision: r.revision.into(),
            };
            // The cache only saves reads: when it fails, AWS answers instead.
            let cached = super::blocking(|| cache.cached_snapshot(key, now_ms))
                .inspect_err(|e| tracing::warn!(error = %e, "cannot read the snapshot cache"))
                .ok()
                .flatten()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok());
            if let Some(snapshot) = cached {
                snapshots.push(snapshot);
                continue;
            }
            let snapshot = self.partner_central.snapshot(id, &r).await?;
            if let Err(e) =
                super::blocking(|| cache.cache_snapshot(key, &snapshot.to_string(), now_ms))
            {
                tracing::warn!(error = %e, "cannot keep a snapshot revision");
            }
            snapshots.push(snapshot);
        }
        Ok(snapshots)
    }

    async fn perform(
        &self,
        effect: &Effect,
        store: &dyn EchoMemory,
        now: Timestamp,
    ) -> Result<Value, ExecError> {
        let now_ms = now.as_millisecond();
        match effect {
            Effect::UpdateOpportunity { id, changes, .. } => {
                // The record the plan was made on; read only when no context read
                // left one (an update planned elsewhere).
                let mut record = match self.planned.take(id) {
                    Some(record) => record,
                    None => self.partner_central.get_opportunity(id).await?,
                };
                let modified = record["LastModifiedDate"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                for change in changes {
                    set_path(&mut record, &change.field, change.new.clone())?;
                }
                match self
                    .partner_central
                    .update_opportunity(id, &modified, &record)
                    .await
                {
                    Ok(modified) => Ok(json!({ "Id": id, "LastModifiedDate": modified })),
                    Err(e) if e.is_conflict() => Err(ExecError {
                        replan: true,
                        waits_for_quota: false,
                        retryable: true,
                        ..ExecError::from(e)
                    }),
                    Err(e) => Err(e.into()),
                }
            }
            Effect::CreateOpportunity {
                client_token,
                fields,
                ..
            } => {
                let mut body = Value::Object(Map::new());
                for field in fields {
                    set_path(&mut body, &field.field, field.new.clone())?;
                }
                let created = match self
                    .partner_central
                    .create_opportunity(client_token, &body)
                    .await
                {
                    Ok(created) => created,
                    // The token was used with another body: this deal's opportunity was
                    // created by an earlier try, and the deal changed since. It is the
                    // one carrying the deal's PartnerOpportunityIdentifier.
                    Err(e) if e.is_conflict() => {
                        let partner_id = body["PartnerOpportunityIdentifier"]
                            .as_str()
                            .unwrap_or_default();
                        match self
                            .partner_central
                            .find_by_partner_identifier(partner_id)
                            .await?
                        {
                            Some(found) => found,
                            None => return Err(e.into()),
                        }
                    }
                    Err(e) => return Err(e.into()),
                };
                // The solutions and the submission are steps of their own, taken by
                // the worker once the id is on the deal.
                Ok(created)
            }
            Effect::AssociateOpportunity {
                opportunity_id,
                solution,
                ..
            } => {
                self.partner_central
                    .associate_solution(opportunity_id, solution)
                    .await?;
                Ok(Value::Null)
            }
            Effect::StartEngagement {
                opportunity_id,
                client_token,
                submission,
                ..
            } => Ok(self
                .partner_central
                .start_engagement(
                    opportunity_id,
                    client_token,
                    &submission.involvement_type,
                    &submission.visibility,
                )
                .await?),
            Effect::CreateNote { deal_id, body, .. } => {
                let id = self
                    .hubspot
                    .create_note(deal_id, body, &now.to_string())
                    .await?;
                Ok(json!({ "id": id }))
            }
            Effect::CreateTask {
                deal_id,
                owner,
                priority,
                due,
                subject,
                body,
                ..
            } => {
                let id = self
                    .hubspot
                    .create_task(deal_id, owner, subject, body, priority, due)
                    .await?;
                Ok(json!({ "id": id }))
            }
            Effect::UpdateDeal {
                deal_id,
                properties,
                ..
            } => {
                // Remembered first: the webhook HubSpot sends about this write may
                // arrive before the PATCH returns.
                for (name, value) in properties {
                    super::blocking(|| {
                        store.remember_write(&format!("deal:{deal_id}"), name, value, now_ms)
                    })?;
                }
                self.hubspot.update_deal(deal_id, properties).await?;
                Ok(Value::Null)
            }
            Effect::Publish {
                subject,
                message,
                attributes,
                ..
            } => {
                let Some((sns, topic)) = &self.sns else {
                    return Err(ExecError::permanent(
                        "a pack publishes a notification but the config has no \
                         notifications.sns_topic_arn",
                    ));
                };
                let id = sns.publish(topic, subject, message, attributes).await?;
                Ok(json!({ "MessageId": id }))
            }
        }
    }
}

/// Sets `value` at a Partner Central field path in `root`
/// ([`pcsync_engine::readiness::set_path`]); a field that is not a path is a
/// permanent error.
pub fn set_path(root: &mut Value, path: &str, value: Value) -> Result<(), ExecError> {
    pcsync_engine::readiness::set_path(root, path, value)
        .map_err(|e| ExecError::permanent(e.to_string()))
}

/// Deal properties as the engine reads them.
pub fn deal_properties(properties: &IndexMap<String, Option<String>>) -> IndexMap<String, Value> {
    properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_path_writes_into_existing_records_and_builds_missing_parts() {
        let mut record = json!({
            "LifeCycle": { "Stage": "Prospect", "ReviewStatus": "Approved" },
            "Project": { "ExpectedCustomerSpend": [{ "Amount": "10", "CurrencyCode": "USD" }] }
        });
        set_path(&mut record, "LifeCycle.Stage", json!("Qualified")).unwrap();
        set_path(
            &mut record,
            "Project.ExpectedCustomerSpend[0].Amount",
            json!("25"),
        )
        .unwrap();
        set_path(&mut record, "Customer.Account.CompanyName", json!("Acme")).unwrap();
        assert_eq!(record["LifeCycle"]["Stage"], "Qualified");
        assert_eq!(record["LifeCycle"]["ReviewStatus"], "Approved");
        assert_eq!(
            record["Project"]["ExpectedCustomerSpend"][0]["Amount"],
            "25"
        );
        assert_eq!(
            record["Project"]["ExpectedCustomerSpend"][0]["CurrencyCode"],
            "USD"
        );
        assert_eq!(record["Customer"]["Account"]["CompanyName"], "Acme");

        let mut empty = json!({});
        set_path(
            &mut empty,
            "Project.ExpectedCustomerSpend[1].Amount",
            json!("5"),
        )
        .unwrap();
        assert_eq!(
            empty["Project"]["ExpectedCustomerSpend"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert!(set_path(&mut empty, "Project..Title", json!("x")).is_err());
    }
}
