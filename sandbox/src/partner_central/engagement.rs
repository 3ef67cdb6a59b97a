//! Solutions, associations, submission (StartEngagementFromOpportunityTask), the AWS
//! summary, engagements and their resource snapshots.

use serde_json::{Value, json};

use super::opportunity::{ACCOUNT, Store, business, strip_nulls};
use super::{FieldError, ServiceError};

/// How long a submission task runs before it ends (AWS gives no figure; long enough
/// that a client must poll, short enough for tests).
pub const TASK_MILLISECONDS: i64 = 300;

/// An engagement created by submitting an opportunity.
#[derive(Debug, Clone)]
pub struct Engagement {
    /// `eng-` + 14 characters.
    pub id: String,
    /// The opportunity it is about.
    pub opportunity_id: String,
    /// Its resource snapshots, oldest first.
    pub snapshots: Vec<Value>,
}

/// Lower-case base-36 ids of a fixed length, distinct per counter value.
fn id36(n: u64, len: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5bd1_e995;
    (0..len)
        .map(|_| {
            let d = digits[(x % 36) as usize] as char;
            x /= 36;
            if x == 0 {
                x = n.wrapping_add(0x2545_F491_4F6C_DD1D);
            }
            d
        })
        .collect()
}

/// One page of `items` under `key`, following `MaxResults` and the `NextToken`s it
/// issues (`page-N`); an unknown token is a ValidationException.
pub(super) fn page(
    items: Vec<Value>,
    input: &Value,
    key: &str,
    default_max: u64,
) -> Result<Value, ServiceError> {
    page_of(&items, input, key, default_max, Value::clone)
}

/// [`page`] over any items, shown by `show`: only the page's items are shown.
pub(super) fn page_of<T>(
    items: &[T],
    input: &Value,
    key: &str,
    default_max: u64,
    show: impl Fn(&T) -> Value,
) -> Result<Value, ServiceError> {
    let max = input["MaxResults"].as_u64().unwrap_or(default_max) as usize;
    let start = match input
        .get("NextToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        None => 0,
        Some(token) => token
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| {
                ServiceError::validation(
                    "REQUEST_VALIDATION_FAILED",
                    "Invalid NextToken",
                    vec![FieldError {
                        field: "NextToken".into(),
                        message: "not a token this service issued".into(),
                        code: "INVALID_VALUE",
                    }],
                )
            })?,
    };
    let end = (start + max).min(items.len());
    let shown: Vec<Value> = items[start..end].iter().map(show).collect();
    let mut out = json!({ key: shown });
    if end < items.len() {
        out["NextToken"] = json!(format!("page-{end}"));
    }
    Ok(out)
}

impl Store {
    /// Adds a solution to the catalog (control API, demo data).
    pub fn add_solution(
        &mut self,
        catalog: &str,
        id: &str,
        name: &str,
        category: &str,
        status: &str,
    ) {
        let created = jiff::Timestamp::from_millisecond(jiff::Timestamp::now().as_millisecond())
            .expect("a current time is in range")
            .to_string();
        self.solutions
            .retain(|s| s["Id"] != id || s["Catalog"] != catalog);
        self.solutions.push(json!({
            "Catalog": catalog, "Id": id, "Arn": format!("arn:aws:partnercentral:us-east-1:{ACCOUNT}:catalog/{catalog}/solution/{id}"),
            "Name": name, "Status": status, "Category": category, "CreatedDate": created,
        }));
    }

    /// ListSolutions: filters Status, Identifier, Category; sort (default Identifier,
    /// descending per the doc); `MaxResults` 1–100, default 20 (reference §4.8).
    pub fn list_solutions(&self, input: &Value) -> Result<Value, ServiceError> {
        let catalog = input["Catalog"].as_str().unwrap_or_default();
        let filter = |key: &str, s: &Value, field: &str| -> bool {
            input
                .get(key)
                .and_then(Value::as_array)
                .is_none_or(|want| want.iter().any(|w| *w == s[field]))
        };
        let mut items: Vec<Value> = self
            .solutions
            .iter()
            .filter(|s| s["Catalog"] == catalog)
            .filter(|s| {
                filter("Status", s, "Status")
                    && filter("Identifier", s, "Id")
                    && filter("Category", s, "Category")
            })
            .cloned()
            .collect();
        let sort_by = match input
            .pointer("/Sort/SortBy")
            .and_then(Value::as_str)
            .unwrap_or("Identifier")
        {
            "Name" => "Name",
            "Status" => "Status",
            "Category" => "Category",
            "CreatedDate" => "CreatedDate",
            _ => "Id",
        };
        items.sort_by(|a, b| a[sort_by].as_str().cmp(&b[sort_by].as_str()));
        if input.pointer("/Sort/SortOrder").and_then(Value::as_str) != Some("ASCENDING") {
            items.reverse();
        }
        page(items, input, "SolutionSummaries", 20)
    }

    /// AssociateOpportunity: links a solution, AWS product or Marketplace entity
    /// (reference §4.6; quotas: Solutions 10, AwsProducts 20, …).
    pub fn associate(&mut self, input: &Value) -> Result<Value, ServiceError> {
        let stored = self.find(input, "OpportunityIdentifier")?.clone();
        let id = stored.record["Id"].as_str().unwrap_or_default().to_string();
        let kind = input["RelatedEntityType"].as_str().unwrap_or_default();
        let entity = input["RelatedEntityIdentifier"]
            .as_str()
            .unwrap_or_default();
        let catalog = stored.record["Catalog"].as_str().unwrap_or_default();
        if kind == "Solutions" && entity != "Other" {
            let Some(solution) = self
                .solutions
                .iter()
                .find(|s| s["Id"] == entity && s["Catalog"] == catalog)
            else {
                return Err(ServiceError::not_found(format!(
                    "Solution {entity} was not found in catalog {catalog}"
                )));
            };
            // Model: SolutionStatus "Inactive means it is no longer available, and
            // Draft means it isn't published yet"; SolutionBase.Status "Filter for
            // Active solutions for association to an opportunity".
            let status = solution["Status"].as_str().unwrap_or_default();
            if status != "Active" {
                return Err(business(
                    "RelatedEntityIdentifier",
                    &format!(
                        "solution {entity} is {status}: only an Active solution can be associated"
                    ),
                    "INVALID_RESOURCE_STATE",
                ));
            }
        }
        let limit = match kind {
            "AwsProducts" => 20,
            "AwsMarketplaceOffers" => 1,
            _ => 10,
        };
        let stage = stored
            .record
            .pointer("/LifeCycle/Stage")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind == "Solutions"
            && entity == "Other"
            && matches!(stage, "Committed" | "Launched" | "Closed Lost")
        {
            return Err(business(
                "RelatedEntityIdentifier",
                "`Other` is not accepted at stage Committed or beyond",
                "INVALID_VALUE",
            ));
        }
        let now = self.tick(&id).to_string();
        let record = &mut self.opportunities.get_mut(&id).expect("found above").record;
        let list = &mut record["RelatedEntityIdentifiers"][kind];
        if !list.is_array() {
            *list = json!([]);
        }
        let items = list.as_array_mut().expect("just made a list");
        if !items.iter().any(|v| v == entity) {
            if items.len() >= limit {
                return Err(business(
                    "RelatedEntityIdentifier",
                    &format!("at most {limit} {kind} per opportunity"),
                    "TOO_MANY_VALUES",
                ));
            }
            items.push(json!(entity));
        }
        record["LastModifiedDate"] = json!(now);
        // Associating a solution: Opportunity Updated, Snapshot Created (event table).
        self.emit_opportunity("Opportunity Updated", &id);
        self.snapshot_if_engaged(&id, "partner");
        Ok(json!({}))
    }

    /// StartEngagementFromOpportunityTask: an asynchronous task (model doc: it runs
    /// GetOpportunity, CreateEngagement, CreateResourceSnapshot(Job),
    /// CreateEngagementInvitation and SubmitOpportunity; reference §4.5). It answers
    /// `IN_PROGRESS` at once; [`Store::settle_tasks`] ends it a moment later as
    /// `COMPLETE` (the opportunity `Submitted`, its engagement, invitation, snapshot
    /// job and first snapshot made) or `FAILED` with a `ReasonCode` and `Message`, as
    /// ListEngagementFromOpportunityTasks then lists it. A submission fails when the
    /// opportunity has no solution: the field matrix makes
    /// `RelatedEntityIdentifiers.Solutions` mandatory (row `solutionOffered`), and
    /// only AssociateOpportunity sets it. An opportunity before `Qualified` (or
    /// `Closed Lost`) is refused at once, as the model's `LifeCycle.Stage` doc says.
    pub fn start_engagement(&mut self, input: &Value) -> Result<Value, ServiceError> {
        let token = input["ClientToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut body = input.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.remove("ClientToken");
        }
        if let Some((earlier, task_id)) = self.task_tokens.get(&token) {
            // The model makes ClientToken an idempotency token and declares
            // ConflictException: the same token with another body is one, as for
            // CreateOpportunity (ref §2.2).
            if *earlier != body {
                return Err(ServiceError::conflict(
                    "Conflicting client token submitted for a new request body.",
                ));
            }
            let task = task_id
                .as_str()
                .and_then(|id| self.task_at.get(id))
                .map(|&i| self.tasks[i].clone())
                .unwrap_or(Value::Null);
            return Ok(task);
        }
        let stored = self.find(input, "Identifier")?.clone();
        let id = stored.record["Id"].as_str().unwrap_or_default().to_string();
        // "A lead and a prospect must be further matured to a Qualified opportunity
        // before submission. Opportunities that were closed/lost before submission
        // aren't suitable for submission." (model, `LifeCycle.Stage` doc)
        let stage = stored
            .record
            .pointer("/LifeCycle/Stage")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if matches!(stage, "" | "Prospect" | "Closed Lost") {
            return Err(business(
                "LifeCycle.Stage",
                &format!(
                    "is {}: an opportunity is submitted from stage Qualified on, and not once Closed Lost",
                    if stage.is_empty() { "not set" } else { stage }
                ),
                "INVALID_RESOURCE_STATE",
            ));
        }
        let catalog = stored.record["Catalog"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Tasks count on their own, so a submission uses one opportunity-counter value
        // (for its engagement) as before tasks were asynchronous.
        let now = self.tick(&id);
        let task_id = format!("task-{}", id36(1_000_000 + self.tasks.len() as u64, 13));
        let task = json!({
            "TaskId": task_id,
            "TaskArn": format!("arn:aws:partnercentral:us-east-1:{ACCOUNT}:catalog/{catalog}/engagement-from-opportunity-task/{task_id}"),
            "StartTime": now.to_string(), "TaskStatus": "IN_PROGRESS", "OpportunityId": id,
        });
        self.task_inputs.insert(
            task_id.clone(),
            (
                input.clone(),
                now.as_millisecond() + TASK_MILLISECONDS,
                catalog,
            ),
        );
        self.task_at.insert(task_id.clone(), self.tasks.len());
        self.tasks_of.entry(id).or_default().push(self.tasks.len());
        self.tasks.push(task.clone());
        self.task_tokens.insert(token, (body, json!(task_id)));
        Ok(task)
    }

    /// Ends the submission tasks whose time has come (see
    /// [`Store::start_engagement`]). `now_ms` is epoch milliseconds; the service
    /// calls it on every request and every 100 ms.
    pub fn settle_tasks(&mut self, now_ms: i64) {
        let due: Vec<String> = self
            .task_inputs
            .iter()
            .filter(|(_, (_, at, _))| *at <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for task_id in due {
            let Some((input, _, catalog)) = self.task_inputs.remove(&task_id) else {
                continue;
            };
            let outcome = self.submit(&input, &catalog);
            if let Some(task) = self.task_at.get(&task_id).map(|&i| &mut self.tasks[i]) {
                match outcome {
                    Ok(ids) => {
                        task["TaskStatus"] = json!("COMPLETE");
                        for (k, v) in ids {
                            task[k] = json!(v);
                        }
                    }
                    Err((reason, message)) => {
                        task["TaskStatus"] = json!("FAILED");
                        task["ReasonCode"] = json!(reason);
                        task["Message"] = json!(message);
                    }
                }
            }
        }
    }

    /// ListEngagementFromOpportunityTasks: filters by task, opportunity, engagement
    /// and status; StartTime order (descending unless asked); `MaxResults` 1–1000.
    pub fn list_tasks(&self, input: &Value) -> Result<Value, ServiceError> {
        let catalog = input["Catalog"].as_str().unwrap_or_default();
        let filter = |key: &str, task: &Value, field: &str| {
            input
                .get(key)
                .and_then(Value::as_array)
                .is_none_or(|wanted| wanted.iter().any(|w| *w == task[field]))
        };
        // The tasks the id filters name, found by index, in the order they were
        // started; every filter below still applies.
        let ids = |key: &str| {
            input
                .get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        };
        let mut candidates: Vec<usize> = if let Some(ids) = ids("TaskIdentifier") {
            ids.iter()
                .filter_map(|id| self.task_at.get(*id).copied())
                .collect()
        } else if let Some(ids) = ids("OpportunityIdentifier") {
            ids.iter()
                .flat_map(|id| self.tasks_of.get(*id).into_iter().flatten().copied())
                .collect()
        } else {
            (0..self.tasks.len()).collect()
        };
        candidates.sort_unstable();
        candidates.dedup();
        let mut found: Vec<Value> = candidates
            .into_iter()
            .map(|i| &self.tasks[i])
            .filter(|t| {
                t["TaskArn"]
                    .as_str()
                    .is_some_and(|a| a.contains(&format!(":catalog/{catalog}/")))
            })
            .filter(|t| filter("TaskIdentifier", t, "TaskId"))
            .filter(|t| filter("OpportunityIdentifier", t, "OpportunityId"))
            .filter(|t| filter("EngagementIdentifier", t, "EngagementId"))
            .filter(|t| filter("TaskStatus", t, "TaskStatus"))
            .cloned()
            .collect();
        let ascending =
            input.pointer("/Sort/SortOrder").and_then(Value::as_str) == Some("ASCENDING");
        if !ascending {
            found.reverse();
        }
        page(found, input, "TaskSummaries", 100)
    }

    /// What a task does once its time comes: checks the opportunity can be submitted,
    /// then submits it. The ids it made, or the `ReasonCode` and `Message` it fails with.
    fn submit(
        &mut self,
        input: &Value,
        catalog: &str,
    ) -> Result<Vec<(&'static str, String)>, (&'static str, String)> {
        let Ok(stored) = self.find(input, "Identifier").cloned() else {
            return Err((
                "OpportunityAccessDenied",
                "The opportunity no longer exists".into(),
            ));
        };
        let id = stored.record["Id"].as_str().unwrap_or_default().to_string();
        let status = stored
            .record
            .pointer("/LifeCycle/ReviewStatus")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if status != "Pending Submission" {
            return Err((
                "OpportunitySubmissionFailed",
                format!(
                    "Opportunity {id} is {status}; only a Pending Submission opportunity can be submitted"
                ),
            ));
        }
        let solutions = stored
            .record
            .pointer("/RelatedEntityIdentifiers/Solutions")
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty());
        if !solutions {
            return Err((
                "OpportunityValidationFailed",
                "RelatedEntityIdentifiers.Solutions is required to submit an opportunity: associate a solution with AssociateOpportunity first".into(),
            ));
        }
        let involvement = input
            .pointer("/AwsSubmission/InvolvementType")
            .cloned()
            .unwrap_or(json!("Co-Sell"));
        let visibility = input
            .pointer("/AwsSubmission/Visibility")
            .cloned()
            .unwrap_or(json!("Full"));
        self.next_id += 1;
        let n = self.next_id;
        let engagement_id = format!("eng-{}", id36(n, 14));
        let now = self.tick(&id).to_string();
        if let Some(s) = self.opportunities.get_mut(&id) {
            s.record["LifeCycle"]["ReviewStatus"] = json!("Submitted");
            s.record["LastModifiedDate"] = json!(now);
        }
        self.summaries.insert(
            id.clone(),
            json!({
                "Catalog": catalog, "RelatedOpportunityId": id, "Origin": stored.origin,
                "InvolvementType": involvement, "Visibility": visibility,
                "LifeCycle": { "Stage": "Prospect", "TargetCloseDate": stored.record.pointer("/LifeCycle/TargetCloseDate") },
                "OpportunityTeam": [],
                "Insights": { "EngagementScore": "Low" },
                "Project": { "ExpectedCustomerSpend": stored.record.pointer("/Project/ExpectedCustomerSpend").cloned().unwrap_or(json!([])) },
            }),
        );
        self.engagement_at
            .insert(engagement_id.clone(), self.engagements.len());
        self.engagements_of
            .entry(id.clone())
            .or_default()
            .push(self.engagements.len());
        self.engagements.push(Engagement {
            id: engagement_id.clone(),
            opportunity_id: id.clone(),
            snapshots: Vec::new(),
        });
        // StartEngagementFromOpportunityTask: Opportunity Updated, Engagement Created,
        // Snapshot Created, Member Added, Invitation Created (event table).
        self.emit_opportunity("Opportunity Updated", &id);
        self.emit(
            "Engagement Created",
            catalog,
            json!({ "engagement": { "engagementArn": format!("arn:aws:partnercentral:us-east-1::catalog/{catalog}/engagement/{engagement_id}"),
                    "engagementId": engagement_id, "CreatedAt": now, "CreatedBy": ACCOUNT, "ContextTypes": ["CustomerProject"] } }),
        );
        self.snapshot_if_engaged(&id, "partner");
        self.emit(
            "Engagement Member Added",
            catalog,
            json!({ "engagement": { "id": engagement_id }, "engagementMember": { "accountId": ACCOUNT, "companyName": "Sandbox Partner" } }),
        );
        let invitation = format!("engi-{}", id36(n + 2, 13));
        self.emit(
            "Engagement Invitation Created",
            catalog,
            json!({ "engagementInvitation": { "id": invitation, "engagementId": engagement_id,
                    "participantType": "SENDER", "payloadType": "OpportunityInvitation" } }),
        );
        Ok(vec![
            ("ResourceSnapshotJobId", format!("job-{}", id36(n + 1, 13))),
            ("EngagementId", engagement_id),
            ("EngagementInvitationId", invitation),
        ])
    }

    /// GetAwsOpportunitySummary: the AWS-side view (reference §4.7). Before
    /// submission AWS has none: `ResourceNotFoundException`.
    pub fn aws_summary(&self, input: &Value) -> Result<Value, ServiceError> {
        let stored = self.find(input, "RelatedOpportunityIdentifier")?;
        let id = stored.record["Id"].as_str().unwrap_or_default();
        self.summaries.get(id).cloned().ok_or_else(|| {
            ServiceError::not_found(format!(
                "No AWS summary for {id}: it has not been submitted"
            ))
        })
    }

    /// Edits the AWS summary as AWS would (control API): `f` gets the summary.
    pub fn edit_summary(
        &mut self,
        id: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, ServiceError> {
        let summary = self.summaries.get_mut(id).ok_or_else(|| {
            ServiceError::not_found(format!(
                "No AWS summary for {id}: it has not been submitted"
            ))
        })?;
        f(summary);
        let out = summary.clone();
        let now = self.tick(id).to_string();
        if let Some(s) = self.opportunities.get_mut(id) {
            s.record["LastModifiedDate"] = json!(now);
        }
        // "AWS updates your opportunity: Opportunity Updated, Snapshot Created"; the
        // event also covers changes to the AWS summary (event doc).
        self.emit_opportunity("Opportunity Updated", id);
        self.snapshot_if_engaged(id, "aws");
        Ok(out)
    }

    /// A new revision of each template's snapshot, for an engaged opportunity.
    pub fn snapshot_if_engaged(&mut self, opportunity_id: &str, by: &str) {
        let Some(record) = self
            .opportunities
            .get(opportunity_id)
            .map(|s| s.record.clone())
        else {
            return;
        };
        let summary = self.summaries.get(opportunity_id).cloned();
        let now = self.tick(opportunity_id).to_string();
        let catalog = record["Catalog"].as_str().unwrap_or_default().to_string();
        let created_by = if by == "aws" {
            "aws".to_string()
        } else {
            ACCOUNT.to_string()
        };
        let mut raised = Vec::new();
        let engaged = self
            .engagements_of
            .get(opportunity_id)
            .cloned()
            .unwrap_or_default();
        for i in engaged {
            let engagement = &mut self.engagements[i];
            let mut views = vec![(
                "OpportunitySummaryView",
                json!({ "OpportunitySummary": opportunity_view(&record) }),
            )];
            if let Some(s) = &summary {
                let mut full = s.clone();
                if let Some(obj) = full.as_object_mut() {
                    obj.remove("Catalog");
                }
                views.push((
                    "AwsOpportunitySummaryFullView",
                    json!({ "AwsOpportunitySummaryFullView": full }),
                ));
            }
            for (template, payload) in views {
                let revision = engagement
                    .snapshots
                    .iter()
                    .filter(|s| s["ResourceSnapshotTemplateName"] == template)
                    .count()
                    + 1;
                let arn = format!(
                    "arn:aws:partnercentral:us-east-1::catalog/{catalog}/engagement/{}/resource/Opportunity/{opportunity_id}/template/{template}/snapshot/{revision}",
                    engagement.id
                );
                raised.push(json!({ "resourceSnapshot": { "arn": arn, "engagementId": engagement.id, "resourceType": "Opportunity", "resourceId": opportunity_id, "createdBy": created_by, "targetMemberAccounts": [ACCOUNT, "aws"], "resourceSnapshotTemplateName": template } }));
                engagement.snapshots.push(json!({
                    "Catalog": catalog,
                    "Arn": arn,
                    "CreatedBy": created_by, "CreatedAt": now, "EngagementId": engagement.id,
                    "ResourceType": "Opportunity", "ResourceId": opportunity_id,
                    "ResourceSnapshotTemplateName": template, "Revision": revision,
                    "TargetMemberAccounts": [ACCOUNT, "aws"], "Payload": payload,
                }));
            }
        }
        for detail in raised {
            self.emit("Engagement Resource Snapshot Created", &catalog, detail);
        }
    }

    /// ListEngagementResourceAssociations: how to go from an opportunity to its
    /// engagements (reference §4.9).
    pub fn list_associations(&self, input: &Value) -> Result<Value, ServiceError> {
        let catalog = input["Catalog"].as_str().unwrap_or_default();
        // Found by index when an id names them; every filter still applies.
        let named = input
            .get("EngagementIdentifier")
            .and_then(Value::as_str)
            .map(|id| self.engagement_at.get(id).into_iter().copied().collect())
            .or_else(|| {
                input
                    .get("ResourceIdentifier")
                    .and_then(Value::as_str)
                    .map(|id| self.engagements_of.get(id).cloned().unwrap_or_default())
            });
        let candidates: Vec<usize> = named.unwrap_or_else(|| (0..self.engagements.len()).collect());
        let items: Vec<Value> = candidates
            .into_iter()
            .map(|i| &self.engagements[i])
            .filter(|e| self.opportunities.get(&e.opportunity_id).is_some_and(|s| s.record["Catalog"] == catalog))
            .filter(|e| input.get("EngagementIdentifier").and_then(Value::as_str).is_none_or(|id| id == e.id))
            .filter(|e| input.get("ResourceIdentifier").and_then(Value::as_str).is_none_or(|id| id == e.opportunity_id))
            .map(|e| json!({ "Catalog": catalog, "EngagementId": e.id, "ResourceType": "Opportunity", "ResourceId": e.opportunity_id, "CreatedBy": ACCOUNT }))
            .collect();
        page(items, input, "EngagementResourceAssociationSummaries", 100)
    }

    fn engagement(&self, input: &Value) -> Result<&Engagement, ServiceError> {
        let id = input["EngagementIdentifier"].as_str().unwrap_or_default();
        self.engagement_at
            .get(id)
            .map(|&i| &self.engagements[i])
            .ok_or_else(|| ServiceError::not_found(format!("Engagement {id} was not found")))
    }

    /// ListResourceSnapshots of one engagement (reference §4.10).
    pub fn list_snapshots(&self, input: &Value) -> Result<Value, ServiceError> {
        let engagement = self.engagement(input)?;
        let items: Vec<Value> = engagement
            .snapshots
            .iter()
            .filter(|s| input.get("ResourceIdentifier").and_then(Value::as_str).is_none_or(|id| s["ResourceId"] == id))
            .filter(|s| input.get("ResourceSnapshotTemplateIdentifier").and_then(Value::as_str).is_none_or(|t| s["ResourceSnapshotTemplateName"] == t))
            .map(|s| json!({ "Arn": s["Arn"], "Revision": s["Revision"], "ResourceType": s["ResourceType"], "ResourceId": s["ResourceId"], "ResourceSnapshotTemplateName": s["ResourceSnapshotTemplateName"], "CreatedBy": s["CreatedBy"] }))
            .collect();
        page(items, input, "ResourceSnapshotSummaries", 100)
    }

    /// GetResourceSnapshot: one revision (the latest when `Revision` is omitted).
    pub fn get_snapshot(&self, input: &Value) -> Result<Value, ServiceError> {
        let engagement = self.engagement(input)?;
        let template = input["ResourceSnapshotTemplateIdentifier"]
            .as_str()
            .unwrap_or_default();
        let resource = input["ResourceIdentifier"].as_str().unwrap_or_default();
        let mut matching = engagement.snapshots.iter().filter(|s| {
            s["ResourceSnapshotTemplateName"] == template && s["ResourceId"] == resource
        });
        let found = match input.get("Revision").and_then(Value::as_u64) {
            Some(rev) => matching.rfind(|s| s["Revision"] == rev),
            None => matching.next_back(),
        };
        found.cloned().ok_or_else(|| {
            ServiceError::not_found(format!(
                "No snapshot of {resource} with template {template}"
            ))
        })
    }
}

/// The `OpportunitySummaryView` of a record (note the spelling `Lifecycle`).
fn opportunity_view(r: &Value) -> Value {
    let lc = &r["LifeCycle"];
    let project = &r["Project"];
    strip_nulls(json!({
        "OpportunityType": r.get("OpportunityType"),
        "Lifecycle": strip_nulls(json!({ "TargetCloseDate": lc.get("TargetCloseDate"), "ReviewStatus": lc.get("ReviewStatus"), "Stage": lc.get("Stage"), "NextSteps": lc.get("NextSteps") })),
        "OpportunityTeam": r.get("OpportunityTeam"),
        "PrimaryNeedsFromAws": r.get("PrimaryNeedsFromAws"),
        "Customer": r.get("Customer"),
        "Project": strip_nulls(json!({ "DeliveryModels": project.get("DeliveryModels"), "ExpectedCustomerSpend": project.get("ExpectedCustomerSpend"), "CustomerUseCase": project.get("CustomerUseCase"), "SalesActivities": project.get("SalesActivities"), "OtherSolutionDescription": project.get("OtherSolutionDescription") })),
        "RelatedEntityIdentifiers": r.get("RelatedEntityIdentifiers"),
    }))
}

#[cfg(test)]
mod tests {
    use super::id36;

    #[test]
    fn ids_have_the_model_patterns() {
        let re = regex::Regex::new("^[0-9a-z]{14}$").unwrap();
        let ids: Vec<String> = (1..50).map(|n| id36(n, 14)).collect();
        assert!(ids.iter().all(|i| re.is_match(i)));
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }
}
