//! Opportunities: creation with ClientToken idempotency, reads, full-replacement
//! updates with optimistic locking and the review-status rules, listing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::business::READ_ONLY_LIFECYCLE;
use super::{FieldError, ServiceError};

/// The partner account the sandbox plays.
pub const ACCOUNT: &str = "123456789012";

/// Members of an opportunity the partner writes (UpdateOpportunityRequest minus
/// `Catalog`, `Identifier`, `LastModifiedDate`; reference §4.2).
const CLIENT_MEMBERS: &[&str] = &[
    "PrimaryNeedsFromAws",
    "NationalSecurity",
    "PartnerOpportunityIdentifier",
    "Customer",
    "Project",
    "OpportunityType",
    "Marketing",
    "SoftwareRevenue",
    "LifeCycle",
];

/// One stored opportunity.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The record as GetOpportunity returns it.
    pub record: Value,
    /// `Origin` (not returned by GetOpportunity).
    pub origin: String,
}

/// All Partner Central data of the sandbox.
#[derive(Debug, Default)]
pub struct Store {
    pub(super) opportunities: BTreeMap<String, Stored>,
    pub(super) tokens: HashMap<String, (Value, Value)>,
    pub(super) next_id: u64,
    /// Each opportunity's last modification time (epoch ms): the next one is later.
    pub(super) modified: HashMap<String, i64>,
    pub(super) solutions: Vec<Value>,
    pub(super) summaries: HashMap<String, Value>,
    pub(super) engagements: Vec<super::engagement::Engagement>,
    /// Where each engagement is in `engagements`, by its id and by its opportunity's.
    /// Lookups only: a listing still applies every filter it was given.
    pub(super) engagement_at: HashMap<String, usize>,
    pub(super) engagements_of: HashMap<String, Vec<usize>>,
    /// Submission tasks by ClientToken: the request they were started with (without
    /// the token) and the task id.
    pub(super) task_tokens: HashMap<String, (Value, Value)>,
    /// Submission tasks as ListEngagementFromOpportunityTasks lists them.
    pub(super) tasks: Vec<Value>,
    /// Where each task is in `tasks`, by its id and by its opportunity's.
    pub(super) task_at: HashMap<String, usize>,
    pub(super) tasks_of: HashMap<String, Vec<usize>>,
    /// Tasks still running: their request, when they end (epoch ms), their catalog.
    pub(super) task_inputs: HashMap<String, (Value, i64, String)>,
    /// EventBridge events raised by changes, waiting to be delivered.
    pub(super) events: Vec<Value>,
    pub(super) next_event: u64,
    /// The kind of partner the sandbox plays (the matrix's rows for consulting and
    /// ISV partners); an ISV partner unless a test says otherwise.
    pub partner_type: super::business::PartnerType,
}

impl Store {
    /// Raises an EventBridge event from `aws.partnercentral-selling` (reference §9.3
    /// shapes).
    pub(super) fn emit(&mut self, detail_type: &str, catalog: &str, detail: Value) {
        self.next_event += 1;
        let mut detail = detail;
        detail["catalog"] = json!(catalog);
        let time =
            jiff::Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::now());
        self.events.push(json!({
            "version": "0",
            "id": format!("{:08x}-0123-4123-8123-{:012x}", self.next_event, self.next_event),
            "detail-type": detail_type,
            "source": "aws.partnercentral-selling",
            "account": ACCOUNT,
            "time": time.to_string(),
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }));
    }

    /// Takes the events raised so far.
    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }

    /// `Opportunity Created` / `Opportunity Updated` for one opportunity.
    pub(super) fn emit_opportunity(&mut self, detail_type: &str, id: &str) {
        let catalog = self
            .opportunities
            .get(id)
            .and_then(|s| s.record["Catalog"].as_str())
            .unwrap_or("Sandbox")
            .to_string();
        self.emit(
            detail_type,
            &catalog,
            json!({ "schemaVersion": "1", "opportunity": { "identifier": id } }),
        );
    }

    /// A stored opportunity.
    pub fn opportunity(&self, id: &str) -> Option<&Stored> {
        self.opportunities.get(id)
    }

    /// Every stored opportunity.
    pub fn opportunities(&self) -> impl Iterator<Item = &Stored> {
        self.opportunities.values()
    }

    /// A modification time of `opportunity` strictly after its previous one, so
    /// optimistic locking on `LastModifiedDate` always sees a change, at millisecond
    /// precision (the SDK re-serialises at microseconds, so never emit finer). Only
    /// the one opportunity's times are kept apart: a bulk seed of thousands does not
    /// push the clock ahead of real time, which would make every later
    /// `AfterLastModifiedDate` listing return them all again.
    pub(super) fn tick(&mut self, opportunity: &str) -> Timestamp {
        let last = self.modified.get(opportunity).copied().unwrap_or(i64::MIN);
        let now = Timestamp::now()
            .as_millisecond()
            .max(last.saturating_add(1));
        self.modified.insert(opportunity.to_string(), now);
        Timestamp::from_millisecond(now).expect("a current time is in range")
    }

    /// CreateOpportunity (model doc: idempotent on `ClientToken`; starts at
    /// `Pending Submission`; `Origin` must be `Partner Referral` in the AWS catalog),
    /// with the field matrix's business validation.
    pub fn create(&mut self, input: &Value) -> Result<Value, ServiceError> {
        self.insert(input, true)
    }

    /// Puts an opportunity in place as it exists in Partner Central, without the
    /// business validation a partner's CreateOpportunity gets: the control API's
    /// seeding, for tests that need an opportunity in a given shape (an AWS referral,
    /// an opportunity created before a rule existed).
    pub fn seed(&mut self, input: &Value) -> Result<Value, ServiceError> {
        self.insert(input, false)
    }

    fn insert(&mut self, input: &Value, checked: bool) -> Result<Value, ServiceError> {
        let token = input["ClientToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut body = input.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.remove("ClientToken");
        }
        if let Some((earlier, response)) = self.tokens.get(&token) {
            return if *earlier == body {
                Ok(response.clone())
            } else {
                // CreateOpportunity `ClientToken` doc.
                Err(ServiceError::conflict(
                    "Conflicting client token submitted for a new request body.",
                ))
            };
        }
        let catalog = input["Catalog"].as_str().unwrap_or_default().to_string();
        let origin = input["Origin"]
            .as_str()
            .unwrap_or("Partner Referral")
            .to_string();
        if catalog == "AWS" && origin != "Partner Referral" {
            return Err(business(
                "Origin",
                "must be `Partner Referral` in the AWS catalog",
                "INVALID_VALUE",
            ));
        }
        let errors = if checked {
            super::business::create(input, super::business::today())
        } else {
            Vec::new()
        };
        if !errors.is_empty() {
            return Err(ServiceError::validation(
                "BUSINESS_VALIDATION_FAILED",
                "Business validation failed",
                errors,
            ));
        }
        self.next_id += 1;
        let id = format!("O{}", 5_000_000 + self.next_id);
        let now = self.tick(&id).to_string();
        let mut record = Map::new();
        record.insert("Catalog".into(), json!(catalog));
        record.insert("Id".into(), json!(id));
        record.insert(
            "Arn".into(),
            json!(format!(
                "arn:aws:partnercentral:us-east-1:{ACCOUNT}:catalog/{catalog}/opportunity/{id}"
            )),
        );
        record.insert("CreatedDate".into(), json!(now));
        record.insert("LastModifiedDate".into(), json!(now));
        record.insert("RelatedEntityIdentifiers".into(), json!({}));
        for member in CLIENT_MEMBERS.iter().chain(&["OpportunityTeam"]) {
            if let Some(v) = input.get(*member).filter(|v| !v.is_null()) {
                record.insert((*member).to_string(), v.clone());
            }
        }
        let lifecycle = record.entry("LifeCycle").or_insert_with(|| json!({}));
        lifecycle["ReviewStatus"] = json!("Pending Submission");
        let mut record = Value::Object(record);
        coerce_target_company(&mut record);
        let response = json!({
            "Id": id,
            "PartnerOpportunityIdentifier": input.get("PartnerOpportunityIdentifier").cloned().unwrap_or(Value::Null),
            "LastModifiedDate": now,
        });
        self.opportunities
            .insert(id.clone(), Stored { record, origin });
        self.tokens.insert(token, (body, response.clone()));
        self.emit_opportunity("Opportunity Created", &id);
        Ok(strip_nulls(response))
    }

    /// GetOpportunity.
    pub fn get(&self, input: &Value) -> Result<Value, ServiceError> {
        let stored = self.find(input, "Identifier")?;
        Ok(stored.record.clone())
    }

    pub(super) fn find(&self, input: &Value, key: &str) -> Result<&Stored, ServiceError> {
        let id = input[key].as_str().unwrap_or_default();
        let catalog = input["Catalog"].as_str().unwrap_or_default();
        self.opportunities
            .get(id)
            .filter(|s| s.record["Catalog"] == catalog)
            .ok_or_else(|| {
                ServiceError::not_found(format!(
                    "Opportunity {id} was not found in catalog {catalog}"
                ))
            })
    }

    /// UpdateOpportunity: a full replacement ("If any field is omitted, the API
    /// assumes that the field is set to null", model doc) guarded by
    /// `LastModifiedDate` (best practices, "Implementing optimistic locking").
    pub fn update(&mut self, input: &Value) -> Result<Value, ServiceError> {
        let stored = self.find(input, "Identifier")?.clone();
        let given: Timestamp = input["LastModifiedDate"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|_| {
                ServiceError::validation(
                    "REQUEST_VALIDATION_FAILED",
                    "Request validation failed",
                    vec![],
                )
            })?;
        let current: Timestamp = stored.record["LastModifiedDate"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .unwrap_or_default();
        if given != current {
            return Err(ServiceError::conflict(format!(
                "The opportunity was modified at {current}; LastModifiedDate {given} is stale. Fetch it again with GetOpportunity."
            )));
        }
        let status = stored
            .record
            .pointer("/LifeCycle/ReviewStatus")
            .and_then(Value::as_str)
            .unwrap_or("Pending Submission")
            .to_string();
        let catalog = stored.record["Catalog"]
            .as_str()
            .unwrap_or_default()
            .to_string();

        // Review: "When the opportunity is in Submitted or In-review status, all
        // updates are blocked"; Rejected is "Disqualified (read-only)" (reference §7
        // items 1 and 5). Only the Sandbox catalog's review simulation gets through.
        let requested_status = input
            .pointer("/LifeCycle/ReviewStatus")
            .and_then(Value::as_str)
            .filter(|r| *r != status)
            .map(str::to_string);
        let simulating = catalog == "Sandbox"
            && requested_status
                .as_deref()
                .is_some_and(|r| matches!(r, "Approved" | "Action Required" | "Rejected"));
        if matches!(status.as_str(), "Submitted" | "In review" | "Rejected") && !simulating {
            let why = if status == "Rejected" {
                "a rejected opportunity is read-only"
            } else {
                "updates are blocked while AWS reviews the opportunity"
            };
            return Err(ServiceError::validation(
                "BUSINESS_VALIDATION_FAILED",
                format!("Opportunity is {status}: {why}"),
                vec![FieldError {
                    field: "LifeCycle.ReviewStatus".into(),
                    message: format!("the opportunity is {status}: {why}"),
                    code: "INVALID_RESOURCE_STATE",
                }],
            ));
        }
        // Members AWS owns: a change is refused, an omission keeps them (reference
        // §5.3, §7 "In the AWS catalog, ReviewStatus is read-only").
        let mut read_only = Vec::new();
        for key in READ_ONLY_LIFECYCLE {
            let Some(given) = input.pointer(&format!("/LifeCycle/{key}")) else {
                continue;
            };
            let current = stored
                .record
                .pointer(&format!("/LifeCycle/{key}"))
                .unwrap_or(&Value::Null);
            let simulated = simulating && *key != "NextStepsHistory";
            if given != current && !given.is_null() && !simulated {
                read_only.push(FieldError {
                    field: format!("LifeCycle.{key}"),
                    message: format!("LifeCycle.{key} is set by AWS and cannot be updated"),
                    code: "ACTION_NOT_PERMITTED",
                });
            }
        }
        if !read_only.is_empty() {
            return Err(ServiceError::validation(
                "BUSINESS_VALIDATION_FAILED",
                "Read-only fields cannot be updated",
                read_only,
            ));
        }

        let mut next = stored.record.clone();
        let next_obj = next.as_object_mut().expect("records are objects");
        for member in CLIENT_MEMBERS {
            match input.get(*member).filter(|v| !v.is_null()) {
                Some(v) => next_obj.insert((*member).to_string(), v.clone()),
                None => next_obj.remove(*member),
            };
        }
        let lifecycle = next_obj.entry("LifeCycle").or_insert_with(|| json!({}));
        for key in READ_ONLY_LIFECYCLE {
            match stored.record.pointer(&format!("/LifeCycle/{key}")) {
                Some(v) => lifecycle[*key] = v.clone(),
                None => {
                    if let Some(obj) = lifecycle.as_object_mut() {
                        obj.remove(*key);
                    }
                }
            }
        }
        if simulating && let Some(requested) = &requested_status {
            // testing-sandbox: "use the UpdateOpportunity action with "Catalog":
            // "Sandbox" and Lifecycle.ReviewStatus …" simulates AWS's review.
            lifecycle["ReviewStatus"] = json!(requested);
            for key in ["ReviewStatusReason", "ReviewComments"] {
                if let Some(v) = input.pointer(&format!("/LifeCycle/{key}")) {
                    lifecycle[key] = v.clone();
                }
            }
        }
        coerce_target_company(&mut next);

        // What every update carries, and the matrix's lifecycle columns for what the
        // partner changed (a review simulation alone changes nothing of the partner's).
        let mut errors = super::business::every_update(input);
        let changed = changed_fields(&stored.record, &next);
        if !changed.is_empty() {
            errors.extend(super::business::update(
                &stored.record,
                &next,
                &changed,
                super::business::today(),
                self.partner_type,
            ));
        }
        if !errors.is_empty() {
            return Err(ServiceError::validation(
                "BUSINESS_VALIDATION_FAILED",
                format!("Business validation failed for an opportunity that is {status}"),
                errors,
            ));
        }
        let id = stored.record["Id"].clone();
        let now = self.tick(id.as_str().unwrap_or_default()).to_string();
        next["LastModifiedDate"] = json!(now);
        let id_text = id.as_str().unwrap_or_default().to_string();
        if let Some(s) = self.opportunities.get_mut(&id_text) {
            s.record = next;
        }
        // "You update an opportunity: Opportunity Updated (plus Snapshot Created if a
        // ResourceSnapshotJob is set up …)" (developer guide, event table).
        self.emit_opportunity("Opportunity Updated", &id_text);
        self.snapshot_if_engaged(&id_text, "partner");
        Ok(json!({ "Id": id, "LastModifiedDate": now }))
    }

    /// ListOpportunities: filters, sort (default LastModifiedDate descending),
    /// `MaxResults` 1–100 (default 20), opaque `NextToken`, summaries only
    /// (reference §4.4).
    pub fn list(&self, input: &Value) -> Result<Value, ServiceError> {
        let catalog = input["Catalog"].as_str().unwrap_or_default();
        let strings = |key: &str| -> Option<Vec<&str>> {
            input
                .get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
        };
        let ids = strings("Identifier");
        let stages = strings("LifeCycleStage");
        let statuses = strings("LifeCycleReviewStatus");
        let companies = strings("CustomerCompanyName");
        let time = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .and_then(|s| s.parse::<Timestamp>().ok())
        };
        let after = time(input.pointer("/LastModifiedDate/AfterLastModifiedDate"));
        let before = time(input.pointer("/LastModifiedDate/BeforeLastModifiedDate"));
        let named: Vec<&Stored>;
        let candidates: Box<dyn Iterator<Item = &Stored>> = match &ids {
            // Named opportunities are looked up; the filters below still apply.
            Some(ids) => {
                let unique: BTreeSet<&str> = ids.iter().copied().collect();
                named = unique
                    .into_iter()
                    .filter_map(|id| self.opportunities.get(id))
                    .collect();
                Box::new(named.iter().copied())
            }
            None => Box::new(self.opportunities.values()),
        };
        let mut found: Vec<&Stored> = candidates
            .filter(|s| s.record["Catalog"] == catalog)
            .filter(|s| {
                ids.as_ref()
                    .is_none_or(|ids| ids.contains(&s.record["Id"].as_str().unwrap_or_default()))
            })
            .filter(|s| {
                stages.as_ref().is_none_or(|v| {
                    v.contains(
                        &s.record
                            .pointer("/LifeCycle/Stage")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    )
                })
            })
            .filter(|s| {
                statuses.as_ref().is_none_or(|v| {
                    v.contains(
                        &s.record
                            .pointer("/LifeCycle/ReviewStatus")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    )
                })
            })
            .filter(|s| {
                companies.as_ref().is_none_or(|v| {
                    v.contains(
                        &s.record
                            .pointer("/Customer/Account/CompanyName")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    )
                })
            })
            .filter(|s| {
                let modified = time(s.record.get("LastModifiedDate"));
                // "returns opportunities created or updated on or after that date"
                after.is_none_or(|a| modified.is_some_and(|m| m >= a))
                    && before.is_none_or(|b| modified.is_some_and(|m| m <= b))
            })
            .collect();
        let sort_by = input
            .pointer("/Sort/SortBy")
            .and_then(Value::as_str)
            .unwrap_or("LastModifiedDate");
        let ascending =
            input.pointer("/Sort/SortOrder").and_then(Value::as_str) == Some("ASCENDING");
        // Times sort as instants, not as text (fractional digits vary in length).
        let key = |s: &Stored| -> (Option<Timestamp>, String) {
            let r = &s.record;
            let text = match sort_by {
                "Identifier" => r.pointer("/Id"),
                "CustomerCompanyName" => r.pointer("/Customer/Account/CompanyName"),
                "CreatedDate" => r.pointer("/CreatedDate"),
                "TargetCloseDate" => r.pointer("/LifeCycle/TargetCloseDate"),
                _ => r.pointer("/LastModifiedDate"),
            };
            let text = text.and_then(Value::as_str).unwrap_or_default().to_string();
            (text.parse::<Timestamp>().ok(), text)
        };
        found.sort_by_cached_key(|s| key(s));
        if !ascending {
            found.reverse();
        }
        super::engagement::page_of(&found, input, "OpportunitySummaries", 20, |s| {
            summary(&s.record)
        })
    }

    /// Sets an opportunity's review status as AWS would (control API and tests).
    pub fn set_review(
        &mut self,
        id: &str,
        status: &str,
        comments: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Value, ServiceError> {
        let now = self.tick(id).to_string();
        let stored = self
            .opportunities
            .get_mut(id)
            .ok_or_else(|| ServiceError::not_found(format!("Opportunity {id} was not found")))?;
        let lifecycle = stored
            .record
            .as_object_mut()
            .expect("records are objects")
            .entry("LifeCycle")
            .or_insert_with(|| json!({}));
        lifecycle["ReviewStatus"] = json!(status);
        for (key, value) in [("ReviewComments", comments), ("ReviewStatusReason", reason)] {
            match value {
                Some(v) => lifecycle[key] = json!(v),
                None => {
                    if let Some(obj) = lifecycle.as_object_mut() {
                        obj.remove(key);
                    }
                }
            }
        }
        stored.record["LastModifiedDate"] = json!(now);
        let record = stored.record.clone();
        // AWS approves: Invitation Accepted, Member Added, Opportunity Updated,
        // Snapshot Created; rejects: Invitation Rejected, Opportunity Updated,
        // Snapshot Created (developer guide, event table).
        let catalog = record["Catalog"].as_str().unwrap_or("Sandbox").to_string();
        let engagement = self
            .engagements_of
            .get(id)
            .and_then(|at| at.first())
            .map(|&i| self.engagements[i].id.clone());
        if let Some(engagement) = engagement {
            let invitation = json!({ "engagementInvitation": { "id": format!("engi-{}", &engagement[4..17]), "engagementId": engagement, "participantType": "RECEIVER", "payloadType": "OpportunityInvitation" } });
            match status {
                "Approved" => {
                    self.emit("Engagement Invitation Accepted", &catalog, invitation);
                    self.emit("Engagement Member Added", &catalog, json!({ "engagement": { "id": engagement }, "engagementMember": { "accountId": "aws", "companyName": "Amazon Web Services" } }));
                }
                "Rejected" => self.emit("Engagement Invitation Rejected", &catalog, invitation),
                _ => {}
            }
        }
        self.emit_opportunity("Opportunity Updated", id);
        self.snapshot_if_engaged(id, "aws");
        Ok(record)
    }
}

/// A `ValidationException` for a business rule on one field.
pub(super) fn business(field: &str, message: &str, code: &'static str) -> ServiceError {
    ServiceError::validation(
        "BUSINESS_VALIDATION_FAILED",
        format!("{field} {message}"),
        vec![FieldError {
            field: field.into(),
            message: format!("{field} {message}"),
            code,
        }],
    )
}

/// `TargetCompany` "only accepts the value AWS. If any other value is provided, the
/// system will automatically set it to AWS" (model doc), except `Self` with an
/// `ExpectedContractDuration`.
fn coerce_target_company(record: &mut Value) {
    let has_duration = record
        .pointer("/Project/ExpectedContractDuration")
        .is_some();
    if let Some(items) = record
        .pointer_mut("/Project/ExpectedCustomerSpend")
        .and_then(Value::as_array_mut)
    {
        for item in items {
            if !(has_duration && item["TargetCompany"] == "Self") {
                item["TargetCompany"] = json!("AWS");
            }
        }
    }
}

/// Paths (dotted, with `[i]`) whose value differs between two records, among the
/// members the partner writes.
fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    for member in CLIENT_MEMBERS {
        leaves(old.get(*member).unwrap_or(&Value::Null), member, &mut a);
        leaves(new.get(*member).unwrap_or(&Value::Null), member, &mut b);
    }
    for key in READ_ONLY_LIFECYCLE {
        a.remove(&format!("LifeCycle.{key}"));
        b.remove(&format!("LifeCycle.{key}"));
        a.retain(|k, _| {
            !k.starts_with(&format!("LifeCycle.{key}["))
                && !k.starts_with(&format!("LifeCycle.{key}."))
        });
        b.retain(|k, _| {
            !k.starts_with(&format!("LifeCycle.{key}["))
                && !k.starts_with(&format!("LifeCycle.{key}."))
        });
    }
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

fn leaves(v: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                leaves(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, &format!("{path}[{i}]"), out);
            }
        }
        Value::Null => {}
        other => {
            out.insert(path.to_string(), other.clone());
        }
    }
}

/// The `OpportunitySummary` ListOpportunities returns (reference §4.4).
fn summary(r: &Value) -> Value {
    let pick = |src: Option<&Value>, keys: &[&str]| -> Value {
        let mut m = Map::new();
        if let Some(obj) = src.and_then(Value::as_object) {
            for k in keys {
                if let Some(v) = obj.get(*k) {
                    m.insert((*k).to_string(), v.clone());
                }
            }
        }
        Value::Object(m)
    };
    let mut account = pick(
        r.pointer("/Customer/Account"),
        &["Industry", "OtherIndustry", "CompanyName", "WebsiteUrl"],
    );
    if let Some(address) = r.pointer("/Customer/Account/Address") {
        account["Address"] = pick(
            Some(address),
            &["City", "PostalCode", "StateOrRegion", "CountryCode"],
        );
    }
    strip_nulls(json!({
        "Catalog": r["Catalog"],
        "Id": r["Id"],
        "Arn": r["Arn"],
        "PartnerOpportunityIdentifier": r.get("PartnerOpportunityIdentifier"),
        "OpportunityType": r.get("OpportunityType"),
        "LastModifiedDate": r["LastModifiedDate"],
        "CreatedDate": r["CreatedDate"],
        "LifeCycle": pick(r.get("LifeCycle"), &["Stage", "ClosedLostReason", "NextSteps", "TargetCloseDate", "ReviewStatus", "ReviewComments", "ReviewStatusReason"]),
        "Customer": { "Account": account },
        "Project": pick(r.get("Project"), &["DeliveryModels", "ExpectedCustomerSpend", "ExpectedContractDuration"]),
    }))
}

pub(super) fn strip_nulls(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
    }
    v
}
