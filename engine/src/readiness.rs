//! Whether a new opportunity is ready to create: what AWS's field matrix requires of
//! a partner-originated CreateOpportunity (`aws-opportunity-fields.csv`, inbound
//! "Mandatory" and "Conditionally Mandatory" columns) that the planned body lacks.
//! AWS refuses an incomplete create with a ValidationException; pcsync instead waits,
//! tells the rep what is missing, and creates once an edit supplies the rest.
//!
//! An update has its own requirements ([`missing_on_update`]): the partner's CRM id
//! on every update, and a consulting partner's customer AWS account id at Launched.
//! On both, every list item written must be whole (the service model's required
//! members of an `ExpectedCustomerSpend` item), and a field the matrix asks for only
//! under a condition that does not hold is not sent ([`out_of_place`]).
//!
//! This is the engine's own reading of the matrix's conditions; the sandbox reads them
//! separately, so that one misreading cannot pass on both sides.

use jiff::civil::Date;
use pcsync_pc_model::ShapeKind;
use pcsync_pc_model::matrix::{self, FIELD_MATRIX, Requirement};
use serde_json::{Map, Value};

use crate::model::PartnerType;
use crate::partner_central;

/// One thing a create still lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The Partner Central field (`Customer.Account.Address.PostalCode`).
    pub field: String,
    /// What a sales rep calls it (`Postal Code`), with why when it is not simply
    /// absent (`Target Close Date (in the past)`).
    pub label: String,
}

/// Countries without postal codes (matrix row `postalCode`).
const NO_POSTAL_CODE: &[&str] = &["BQ"];

/// The request body the changes make.
pub fn body<'a>(changes: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Value {
    applied(Value::Object(Map::new()), changes)
}

/// `record` with the changes written into it: what an update sends. A change whose
/// field is not a path is left out.
pub fn applied<'a>(
    mut root: Value,
    changes: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Value {
    for (field, new) in changes {
        let _ = set_path(&mut root, field, new.clone());
    }
    root
}

/// Sets `value` at a Partner Central field path (`Project.ExpectedCustomerSpend[0].Amount`)
/// in `root`, creating the structures and list items on the way.
pub fn set_path(
    root: &mut Value,
    path: &str,
    value: Value,
) -> Result<(), partner_central::PathError> {
    let steps = partner_central::parse_path(path)?;
    let mut at = root;
    for step in &steps {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let slot = at
            .as_object_mut()
            .expect("made an object")
            .entry(step.name.clone())
            .or_insert(Value::Null);
        at = match step.index {
            Some(n) => {
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                let list = slot.as_array_mut().expect("made a list");
                while list.len() <= n {
                    list.push(Value::Object(Map::new()));
                }
                &mut list[n]
            }
            None => slot,
        };
    }
    *at = value;
    Ok(())
}

fn values<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![root];
    for step in path.split('.') {
        current = current
            .into_iter()
            .flat_map(|v| match v.get(step) {
                Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
                Some(Value::Null) | None => Vec::new(),
                Some(other) => vec![other],
            })
            .collect();
    }
    current
}

fn filled(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

fn text<'a>(root: &'a Value, path: &str) -> Option<&'a str> {
    values(root, path)
        .into_iter()
        .find_map(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// The currencies Partner Central takes for an expected spend: the model's
/// `CurrencyCode` lists 168, but its documentation says "Accepted values are USD and
/// EUR" (reference §5.2).
pub const ACCEPTED_CURRENCIES: &[&str] = &["USD", "EUR"];

/// What a sales rep calls a Partner Central field: its matrix row's label, else the
/// spend item's members by name, else the path.
pub fn label(path: &str) -> String {
    let plain = matrix::without_indexes(path);
    match (matrix::row(path), plain.as_str()) {
        (Some(row), _) => row.label.to_string(),
        (None, "Project.ExpectedCustomerSpend.CurrencyCode") => "Currency".to_string(),
        (None, _) => path.to_string(),
    }
}

/// What `body` (a partner-originated CreateOpportunity's members) lacks for AWS to
/// accept it on `today`, in the matrix's order.
pub fn missing(body: &Value, today: Date) -> Vec<Missing> {
    let natsec = text(body, "NationalSecurity") == Some("Yes");
    let country = text(body, "Customer.Account.Address.CountryCode");
    let mut out = Vec::new();
    let mut need = |field: &str, label: String| {
        if !out.iter().any(|m: &Missing| m.field == field) {
            out.push(Missing {
                field: field.to_string(),
                label,
            });
        }
    };
    for row in FIELD_MATRIX {
        let Some(path) = row.api_path else { continue };
        let creatable = partner_central::resolve(partner_central::CREATE_OPPORTUNITY, path).is_ok();
        let required = match (row.inbound, row.crm_name) {
            (_, _) if !creatable => false,
            // "Exception: Not required while creating a new Opportunity".
            (_, "stage") => false,
            // "Exception: Not mandatory if NatSec = True".
            (Requirement::Mandatory, "customerWebsite" | "customerCompanyName") => !natsec,
            // "Not mandatory for countries without a postal code".
            (Requirement::Mandatory, "postalCode") => {
                !country.is_some_and(|c| NO_POSTAL_CODE.contains(&c))
            }
            (Requirement::Mandatory, _) => true,
            (Requirement::Conditional, "industryOther") => {
                text(body, "Customer.Account.Industry") == Some("Other")
            }
            (Requirement::Conditional, "state") => country == Some("US") && !natsec,
            (Requirement::Conditional, "isMarketingDevelopmentFunded") => {
                text(body, "Marketing.Source") == Some("Marketing Activity")
            }
            (Requirement::Conditional, "parentOppId") => {
                text(body, "OpportunityType") == Some("Flat Renewal")
            }
            (Requirement::Conditional, "competitiveTrackingOther") => {
                text(body, "Project.CompetitorName") == Some("*Other")
            }
            _ => false,
        };
        let (parent, last) = path.rsplit_once('.').unwrap_or(("", path));
        let holders = if parent.is_empty() {
            vec![body]
        } else {
            values(body, parent)
        };
        let present = holders.iter().any(|h| h.get(last).is_some_and(filled));
        if required && !present {
            need(path, row.label.to_string());
        }
    }
    // Row `expectedMonthlyAwsRevenue`: "Greater than 0".
    let spend = "Project.ExpectedCustomerSpend.Amount";
    let positive = values(body, spend)
        .iter()
        .filter_map(|v| v.as_str())
        .any(|a| a.parse::<f64>().is_ok_and(|a| a > 0.0));
    if !positive {
        need(spend, label(spend));
    }
    // Every spend item in a currency AWS takes: the model requires `CurrencyCode` in
    // each item, and AWS accepts only USD and EUR (reference §5.2).
    let currency = "Project.ExpectedCustomerSpend.CurrencyCode";
    let items = values(body, "Project.ExpectedCustomerSpend");
    for item in &items {
        match item.get("CurrencyCode").and_then(Value::as_str) {
            Some(code) if ACCEPTED_CURRENCIES.contains(&code) => {}
            Some(code) if !code.trim().is_empty() => need(
                currency,
                format!(
                    "{} ({code} is not accepted: {})",
                    label(currency),
                    ACCEPTED_CURRENCIES.join(" or ")
                ),
            ),
            _ => need(currency, label(currency)),
        }
    }
    // Row `targetCloseDate`: "Date cannot be in the past".
    let close = "LifeCycle.TargetCloseDate";
    if text(body, close)
        .and_then(|d| d.parse::<Date>().ok())
        .is_some_and(|d| d < today)
    {
        need(close, format!("{} (in the past)", label(close)));
    }
    // A member said missing above (the currency, with why) is not said again.
    let partial = partial_items(partner_central::CREATE_OPPORTUNITY, body, &lists_in(body));
    for p in partial {
        if !out.iter().any(|m| m.field == p.field) {
            out.push(p);
        }
    }
    out
}

/// What the update `after` (the opportunity `before` with the planned `changed`
/// fields written into it) lacks for AWS to accept it from a `partner` of that type,
/// in the matrix's order, then the items that are not whole.
pub fn missing_on_update(
    before: &Value,
    after: &Value,
    changed: &[&str],
    partner: PartnerType,
) -> Vec<Missing> {
    let mut out = Vec::new();
    let stage = |r: &Value| {
        r.pointer("/LifeCycle/Stage")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    for row in FIELD_MATRIX {
        let Some(path) = row.api_path else { continue };
        let required = match (row.inbound, row.crm_name) {
            // "For all updates".
            (Requirement::Conditional, "partnerCrmUniqueIdentifier") => true,
            // "For Consulting Partners, When Stage = Launched"; its "Update - After
            // Launched" column is No, so it comes with the move or before it.
            (Requirement::Conditional, "awsAccountId") => {
                partner == PartnerType::Consulting
                    && stage(after).as_deref() == Some("Launched")
                    && stage(before).as_deref() != Some("Launched")
            }
            _ => false,
        };
        if required && !values(after, path).into_iter().any(filled) {
            out.push(Missing {
                field: path.to_string(),
                label: row.label.to_string(),
            });
        }
    }
    let lists: Vec<String> = changed
        .iter()
        .filter(|f| f.contains('['))
        .filter_map(|f| {
            f.rsplit_once('[')
                .map(|(list, _)| matrix::without_indexes(list))
        })
        .collect();
    out.extend(partial_items(
        partner_central::UPDATE_OPPORTUNITY,
        after,
        &lists,
    ));
    out
}

/// The list members (`Project.ExpectedCustomerSpend`) of a request body whose items
/// are records.
fn lists_in(body: &Value) -> Vec<String> {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        let Some(obj) = v.as_object() else { return };
        for (k, v) in obj {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            match v {
                Value::Array(items) if items.iter().any(Value::is_object) => out.push(path),
                Value::Object(_) => walk(v, &path, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(body, "", &mut out);
    out
}

/// The members the service model requires of every item of the `lists` of `body`
/// (a request of shape `root`) that some item lacks: `ExpectedCustomerSpend` items
/// need `CurrencyCode`, `Frequency` and `TargetCompany`, and AWS refuses a request
/// with a partial one.
fn partial_items(root: &str, body: &Value, lists: &[String]) -> Vec<Missing> {
    let mut out: Vec<Missing> = Vec::new();
    for list in lists {
        let Ok(item) = partner_central::resolve(root, list) else {
            continue;
        };
        let ShapeKind::Structure(members) = &item.kind else {
            continue;
        };
        let (parent, last) = list.rsplit_once('.').unwrap_or(("", list));
        let holders = if parent.is_empty() {
            vec![body]
        } else {
            values(body, parent)
        };
        let items: Vec<&Value> = holders
            .iter()
            .filter_map(|h| h.get(last).and_then(Value::as_array))
            .flatten()
            .collect();
        for m in members.iter().filter(|m| m.required) {
            let field = format!("{list}.{}", m.name);
            let lacking = items
                .iter()
                .any(|i| i.get(m.name).is_none_or(|v| !filled(v)));
            if lacking && !out.iter().any(|o| o.field == field) {
                // What a rep calls the list (the label of the matrix row about it or
                // its members), and the member as AWS names it.
                let within = format!("{list}.");
                let list_label = FIELD_MATRIX
                    .iter()
                    .find(|r| {
                        r.api_path
                            .is_some_and(|p| p == list.as_str() || p.starts_with(&within))
                    })
                    .map_or(list.as_str(), |r| r.label);
                out.push(Missing {
                    field,
                    label: format!("{list_label}: {}", m.name),
                });
            }
        }
    }
    out
}

/// Fields the matrix asks for only under a condition ([`out_of_place`] reads them).
const CONDITIONAL: &[&str] = &["Customer.Account.OtherIndustry"];

/// Whether the matrix asks for `field` only under a condition: a write of it is
/// checked by [`out_of_place`].
pub fn conditional(field: &str) -> bool {
    CONDITIONAL.contains(&field)
}

/// Fields of `body` (a request, or the record an update sends) that the matrix asks
/// for only under a condition that does not hold there, with why: row `industryOther`
/// describes the industry "when the selected value in the industry field is Other".
pub fn out_of_place(body: &Value) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let other = "Customer.Account.OtherIndustry";
    if values(body, other).into_iter().any(filled)
        && text(body, "Customer.Account.Industry") != Some("Other")
    {
        out.push((
            other,
            "sent only when the industry is Other (matrix row `industryOther`)",
        ));
    }
    out
}

/// The unconditionally mandatory fields of a partner-originated create, for
/// `pcsync check`: a create pack that writes none of these can never create.
pub fn always_required() -> impl Iterator<Item = &'static matrix::FieldRow> {
    FIELD_MATRIX.iter().filter(|row| {
        row.inbound == Requirement::Mandatory
            && !matches!(
                row.crm_name,
                "stage" | "customerWebsite" | "customerCompanyName" | "postalCode"
            )
            && row.api_path.is_some_and(|p| {
                partner_central::resolve(partner_central::CREATE_OPPORTUNITY, p).is_ok()
            })
    })
}

/// Whether AWS takes a submission (StartEngagementFromOpportunityTask) of an
/// opportunity at a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmissionGate {
    /// The stage allows it.
    Open,
    /// Not yet: the opportunity must mature first; the submission waits for an edit
    /// that moves it on.
    Waits {
        /// Why, as a rep reads it.
        reason: String,
    },
    /// Never: the opportunity is closed.
    Refused {
        /// Why, as a rep reads it.
        reason: String,
    },
}

/// What the model says of a submission at `stage` (the `LifeCycle.Stage` doc of
/// `partnercentral-selling-service-2.json`): "A lead and a prospect must be further
/// matured to a `Qualified` opportunity before submission. Opportunities that were
/// closed/lost before submission aren't suitable for submission."
pub fn submission(stage: &str) -> SubmissionGate {
    match stage {
        "Prospect" | "" => SubmissionGate::Waits {
            reason: format!(
                "AWS takes a submission from stage Qualified on; the opportunity is at {}",
                if stage.is_empty() { "no stage" } else { stage }
            ),
        },
        "Closed Lost" => SubmissionGate::Refused {
            reason: "AWS takes no submission of an opportunity that is Closed Lost".into(),
        },
        _ => SubmissionGate::Open,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_submission_waits_for_qualified_and_never_follows_closed_lost() {
        use super::{SubmissionGate, submission};
        assert!(matches!(
            submission("Prospect"),
            SubmissionGate::Waits { .. }
        ));
        assert!(matches!(
            submission("Closed Lost"),
            SubmissionGate::Refused { .. }
        ));
        for open in [
            "Qualified",
            "Technical Validation",
            "Business Validation",
            "Committed",
        ] {
            assert_eq!(submission(open), SubmissionGate::Open, "{open}");
        }
    }

    use super::*;
    use serde_json::json;

    fn change(field: &str, new: Value) -> (&str, Value) {
        (field, new)
    }

    fn body(changes: &[(&str, Value)]) -> Value {
        super::body(changes.iter().map(|(f, v)| (*f, v)))
    }

    fn today() -> Date {
        jiff::civil::date(2026, 12, 1)
    }

    #[test]
    fn a_complete_body_misses_nothing() {
        let changes = vec![
            change("PrimaryNeedsFromAws", json!(["Co-Sell - Deal Support"])),
            change("Customer.Account.CompanyName", json!("Acme")),
            change("Customer.Account.Industry", json!("Software and Internet")),
            change("Customer.Account.WebsiteUrl", json!("https://acme.example")),
            change("Customer.Account.Address.CountryCode", json!("US")),
            change("Customer.Account.Address.PostalCode", json!("02110")),
            change(
                "Customer.Account.Address.StateOrRegion",
                json!("Massachusetts"),
            ),
            change("LifeCycle.TargetCloseDate", json!("2027-01-31")),
            change("Project.Title", json!("Acme")),
            change(
                "Project.CustomerBusinessProblem",
                json!("twenty characters and more"),
            ),
            change("Project.CustomerUseCase", json!("Database")),
            change("Project.DeliveryModels", json!(["SaaS or PaaS"])),
            change(
                "Project.SalesActivities",
                json!(["Initialized discussions with customer"]),
            ),
            change("Project.ExpectedCustomerSpend[0].Amount", json!("100")),
            change(
                "Project.ExpectedCustomerSpend[0].CurrencyCode",
                json!("EUR"),
            ),
            change(
                "Project.ExpectedCustomerSpend[0].Frequency",
                json!("Monthly"),
            ),
            change(
                "Project.ExpectedCustomerSpend[0].TargetCompany",
                json!("AWS"),
            ),
            change("Marketing.Source", json!("None")),
        ];
        assert_eq!(missing(&body(&changes), today()), vec![]);
    }

    #[test]
    fn a_spend_needs_a_currency_aws_takes() {
        let spend = |code: Option<&str>| {
            let mut changes = vec![change(
                "Project.ExpectedCustomerSpend[0].Amount",
                json!("100"),
            )];
            if let Some(code) = code {
                changes.push(change(
                    "Project.ExpectedCustomerSpend[0].CurrencyCode",
                    json!(code),
                ));
            }
            missing(&body(&changes), today())
                .into_iter()
                .filter(|m| m.field == "Project.ExpectedCustomerSpend.CurrencyCode")
                .map(|m| m.label)
                .collect::<Vec<_>>()
        };
        assert_eq!(spend(Some("USD")), Vec::<String>::new());
        assert_eq!(spend(Some("EUR")), Vec::<String>::new());
        assert_eq!(spend(None), ["Currency"]);
        assert_eq!(
            spend(Some("GBP")),
            ["Currency (GBP is not accepted: USD or EUR)"]
        );
    }

    #[test]
    fn reports_what_is_missing_with_the_names_reps_know() {
        let changes = vec![
            change("Customer.Account.Address.CountryCode", json!("US")),
            change("Customer.Account.Industry", json!("Other")),
            change("LifeCycle.TargetCloseDate", json!("2026-11-30")),
            change("Project.ExpectedCustomerSpend[0].Amount", json!("0")),
        ];
        let got: Vec<String> = missing(&body(&changes), today())
            .into_iter()
            .map(|m| m.label)
            .collect();
        for label in [
            "Customer Website",
            "Other - Industry Vertical",
            "Postal Code",
            "State",
            "Customer Company Name",
            "Estimated AWS Monthly Recurring Revenue",
            "Target Close Date (in the past)",
        ] {
            assert!(got.contains(&label.to_string()), "{label}: {got:?}");
        }
        assert!(!got.iter().any(|l| l == "Country"), "{got:?}");
    }

    #[test]
    fn a_country_without_postal_codes_needs_none() {
        let changes = vec![change("Customer.Account.Address.CountryCode", json!("BQ"))];
        let got = missing(&body(&changes), today());
        assert!(!got.iter().any(|m| m.field.ends_with("PostalCode")));
        assert!(!got.iter().any(|m| m.field.ends_with("StateOrRegion")));
    }
    fn record() -> Value {
        json!({
            "PartnerOpportunityIdentifier": "101",
            "LifeCycle": {"Stage": "Committed"},
            "Customer": {"Account": {"Industry": "Retail"}},
            "Project": {"ExpectedCustomerSpend": [{"Amount": "100", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS"}]}
        })
    }

    fn labels(missing: Vec<Missing>) -> Vec<String> {
        missing.into_iter().map(|m| m.label).collect()
    }

    #[test]
    fn every_update_carries_the_partner_crm_id() {
        let before = record();
        let mut after = record();
        after
            .as_object_mut()
            .unwrap()
            .remove("PartnerOpportunityIdentifier");
        assert_eq!(
            labels(missing_on_update(&before, &after, &[], PartnerType::Isv)),
            ["Partner CRM Unique Identifier"]
        );
        assert_eq!(
            missing_on_update(&before, &before, &[], PartnerType::Isv),
            vec![]
        );
    }

    #[test]
    fn a_consulting_partner_launches_with_the_customers_aws_account() {
        let before = record();
        let mut after = record();
        after["LifeCycle"]["Stage"] = json!("Launched");
        let changed = ["LifeCycle.Stage"];
        assert_eq!(
            missing_on_update(&before, &after, &changed, PartnerType::Isv),
            vec![]
        );
        assert_eq!(
            labels(missing_on_update(
                &before,
                &after,
                &changed,
                PartnerType::Consulting
            )),
            ["Customer AWS Account ID"]
        );
        after["Customer"]["Account"]["AwsAccountId"] = json!("123456789012");
        assert_eq!(
            missing_on_update(&before, &after, &changed, PartnerType::Consulting),
            vec![]
        );
    }

    #[test]
    fn a_spend_item_is_written_whole() {
        let before = json!({"PartnerOpportunityIdentifier": "101"});
        let changed = ["Project.ExpectedCustomerSpend[0].Amount"];
        let after = applied(before.clone(), [(changed[0], &json!("100"))]);
        let got = missing_on_update(&before, &after, &changed, PartnerType::Isv);
        let fields: Vec<&str> = got.iter().map(|m| m.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "Project.ExpectedCustomerSpend.CurrencyCode",
                "Project.ExpectedCustomerSpend.Frequency",
                "Project.ExpectedCustomerSpend.TargetCompany"
            ]
        );
        assert_eq!(
            got[0].label,
            "Estimated AWS Monthly Recurring Revenue: CurrencyCode"
        );
        // On create too.
        let partial = body(&[change(
            "Project.ExpectedCustomerSpend[0].Amount",
            json!("100"),
        )]);
        assert!(
            missing(&partial, today())
                .iter()
                .any(|m| m.field == "Project.ExpectedCustomerSpend.Frequency")
        );
    }

    #[test]
    fn other_industry_belongs_with_the_industry_other() {
        let mut b =
            json!({"Customer": {"Account": {"Industry": "Retail", "OtherIndustry": "retail"}}});
        assert_eq!(
            out_of_place(&b).iter().map(|o| o.0).collect::<Vec<_>>(),
            ["Customer.Account.OtherIndustry"]
        );
        b["Customer"]["Account"]["Industry"] = json!("Other");
        assert!(out_of_place(&b).is_empty());
    }
}
