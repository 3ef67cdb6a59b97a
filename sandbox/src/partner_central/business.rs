//! Business validation: the rules AWS states beyond the service model's shapes, from
//! the opportunity field matrix (`aws-opportunity-fields.csv`, cited by the row's APN
//! CRM name, e.g. row `customerWebsite`) and the developer guide (reference §§5, 7).
//! The matrix's columns arrive as data (`pcsync_pc_model::matrix`); the conditions are
//! read here, in the sandbox's own words, so that the engine's reading of them cannot
//! hide a mistake on both sides of the wire.
//!
//! The sandbox plays a partner that takes part in no special program (no
//! software-revenue fields: rows `contract*`, `customerSoftwareValue*`,
//! `procurementType`, "For special programs"), an ISV partner unless a test makes it
//! a consulting partner ([`PartnerType`]): the matrix gives an ISV partner
//! `Project.DeliveryModels` and `Project.AdditionalComments` after Launched (rows
//! `deliveryModel`, `additionalComments`: "Yes (ISV Partners Only)"), and asks a
//! consulting partner for the customer's AWS account id at Launched (row
//! `awsAccountId`: "For Consulting Partners, When Stage = Launched").

use jiff::Timestamp;
use pcsync_pc_model::matrix::{self, FIELD_MATRIX, Requirement, Update};
use serde_json::Value;

use super::FieldError;

/// The kind of partner account the sandbox plays, where the field matrix tells them
/// apart (rows `awsAccountId`, `deliveryModel`, `additionalComments`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PartnerType {
    /// An independent software vendor (the default).
    #[default]
    Isv,
    /// A consulting partner.
    Consulting,
}

/// Countries the matrix names as having no postal code (row `postalCode`: "Exception:
/// Not mandatory for countries without a postal code. Includes: Bonaire, Sint
/// Eustatius and Saba"; "Countries without postal code will no longer take values").
pub const NO_POSTAL_CODE: &[&str] = &["BQ"];

/// Members AWS owns on an opportunity: a partner's update may not change them in the
/// `AWS` catalog (reference §5.3: ReviewStatus "read-only (except for Sandbox
/// simulation, §7)"; matrix rows `apnReviewerComments`, `nextStepHistory` are NA for
/// partners).
pub const READ_ONLY_LIFECYCLE: &[&str] = &[
    "ReviewStatus",
    "ReviewComments",
    "ReviewStatusReason",
    "NextStepsHistory",
];

/// The values at an API path (`Project.ExpectedCustomerSpend.Amount` walks every item).
fn values_at<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![root];
    for step in path.split('.') {
        let mut next = Vec::new();
        for v in current {
            match v.get(step) {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(Value::Null) | None => {}
                Some(other) => next.push(other),
            }
        }
        current = next;
    }
    current
}

fn text<'a>(root: &'a Value, path: &str) -> Option<&'a str> {
    values_at(root, path)
        .into_iter()
        .find_map(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// Whether a field holds a value: a non-blank string, a non-empty list, anything else
/// non-null.
fn present(root: &Value, path: &str) -> bool {
    // A list member counts as present when it has at least one item.
    let (parent, last) = path.rsplit_once('.').unwrap_or(("", path));
    let holders = if parent.is_empty() {
        vec![root]
    } else {
        values_at(root, parent)
    };
    holders.iter().any(|h| match h.get(last) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    })
}

fn missing(field: &str, why: &str) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: format!("{field} is required {why}"),
        code: "REQUIRED_FIELD_MISSING",
    }
}

fn invalid(field: &str, message: String, code: &'static str) -> FieldError {
    FieldError {
        field: field.to_string(),
        message,
        code,
    }
}

/// CreateOpportunity's business validation for a partner-originated opportunity
/// (`Origin: Partner Referral`; an AWS referral simulated in the Sandbox catalog is
/// AWS's data and skips it). `today` is the service's current UTC date.
pub fn create(input: &Value, today: jiff::civil::Date) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if input["Origin"].as_str() == Some("AWS Referral") {
        return errors;
    }
    let natsec = input["NationalSecurity"].as_str() == Some("Yes");
    let country = text(input, "Customer.Account.Address.CountryCode");

    // Every row the matrix marks inbound "Mandatory" whose member a create carries,
    // with the exceptions its condition column states.
    for row in FIELD_MATRIX {
        let Some(path) = row.api_path else { continue };
        if row.inbound != Requirement::Mandatory
            || pcsync_pc_model::resolve(pcsync_pc_model::CREATE_OPPORTUNITY, path).is_err()
        {
            // RelatedEntityIdentifiers.Solutions (row `solutionOffered`) is not a
            // create member: AssociateOpportunity adds it, and submission checks it.
            continue;
        }
        let excused = match row.crm_name {
            // "Exception: Not mandatory if NatSec = True"
            "customerWebsite" | "customerCompanyName" => natsec,
            "postalCode" => country.is_some_and(|c| NO_POSTAL_CODE.contains(&c)),
            // "Exception: Not required while creating a new Opportunity"
            "stage" => true,
            _ => false,
        };
        if !excused && !present(input, path) {
            errors.push(missing(path, &format!("(matrix row `{}`)", row.crm_name)));
        }
    }

    // Row `industryOther`: "When Industry = Other".
    if text(input, "Customer.Account.Industry") == Some("Other")
        && !present(input, "Customer.Account.OtherIndustry")
    {
        errors.push(missing(
            "Customer.Account.OtherIndustry",
            "when Industry is Other (matrix row `industryOther`)",
        ));
    }
    // Row `doesOppBelongToNatSec`: "Takes a value Yes only when the industry is
    // Government".
    if natsec && text(input, "Customer.Account.Industry") != Some("Government") {
        errors.push(invalid(
            "NationalSecurity",
            "NationalSecurity may be Yes only when Industry is Government (matrix row `doesOppBelongToNatSec`)".into(),
            "INVALID_VALUE",
        ));
    }
    // Row `postalCode`: countries without one "will no longer take values".
    if let Some(c) = country.filter(|c| NO_POSTAL_CODE.contains(c))
        && present(input, "Customer.Account.Address.PostalCode")
    {
        errors.push(invalid(
            "Customer.Account.Address.PostalCode",
            format!("country `{c}` has no postal code (matrix row `postalCode`)"),
            "INVALID_VALUE",
        ));
    }
    // Row `state`: "When country = United States. Not required if NatSec = True";
    // "accepted only when country is United States".
    let state = "Customer.Account.Address.StateOrRegion";
    match (country, present(input, state)) {
        (Some("US"), false) if !natsec => errors.push(missing(
            state,
            "when the country is US (matrix row `state`)",
        )),
        (Some(c), true) if c != "US" => errors.push(invalid(
            state,
            format!(
                "StateOrRegion is accepted only when the country is US, not `{c}` (matrix row `state`)"
            ),
            "INVALID_VALUE",
        )),
        _ => {}
    }
    // Row `IsOppFromMarketingActivity`: when it is No (`None`), the channel, use
    // cases, funding and campaign "must be null"; row `isMarketingDevelopmentFunded`
    // is required when it is Yes (`Marketing Activity`).
    match text(input, "Marketing.Source") {
        Some("None") => {
            for field in [
                "Marketing.Channels",
                "Marketing.UseCases",
                "Marketing.AwsFundingUsed",
                "Marketing.CampaignName",
            ] {
                if present(input, field) {
                    errors.push(invalid(
                        field,
                        format!("{field} must be empty when Marketing.Source is None (matrix row `IsOppFromMarketingActivity`)"),
                        "INVALID_VALUE",
                    ));
                }
            }
        }
        Some("Marketing Activity") if !present(input, "Marketing.AwsFundingUsed") => {
            errors.push(missing(
                "Marketing.AwsFundingUsed",
                "when Marketing.Source is Marketing Activity (matrix row `isMarketingDevelopmentFunded`)",
            ));
        }
        _ => {}
    }
    // Row `parentOppId`: 'When Opportunity Type is set to "Flat Renewal"'.
    if text(input, "OpportunityType") == Some("Flat Renewal")
        && !present(input, "Project.RelatedOpportunityIdentifier")
    {
        errors.push(missing(
            "Project.RelatedOpportunityIdentifier",
            "when OpportunityType is Flat Renewal (matrix row `parentOppId`)",
        ));
    }
    // Row `competitiveTrackingOther`: "When competitiveTracking = Other".
    if text(input, "Project.CompetitorName") == Some("*Other")
        && !present(input, "Project.OtherCompetitorNames")
    {
        errors.push(missing(
            "Project.OtherCompetitorNames",
            "when CompetitorName is *Other (matrix row `competitiveTrackingOther`)",
        ));
    }
    // Rows whose Create column is No: not part of a new opportunity.
    for row in FIELD_MATRIX {
        let Some(path) = row.api_path else { continue };
        if row.create == Update::No
            && row.crm_name != "stage"
            && pcsync_pc_model::resolve(pcsync_pc_model::CREATE_OPPORTUNITY, path).is_ok()
            && present(input, path)
        {
            errors.push(invalid(
                path,
                format!(
                    "{path} cannot be set when creating an opportunity (matrix row `{}`, Create: No)",
                    row.crm_name
                ),
                "ACTION_NOT_PERMITTED",
            ));
        }
    }
    values(input, None, today, &mut errors);
    errors
}

/// Value rules that hold for every write: the expected spend (row
/// `expectedMonthlyAwsRevenue` "Greater than 0"; "Accepted values are USD and EUR",
/// reference §5.2), the documented value lists, a target close date not in the past
/// (row `targetCloseDate`; on update only when it changes, so an old opportunity can
/// still be edited otherwise).
fn values(
    input: &Value,
    before: Option<&Value>,
    today: jiff::civil::Date,
    errors: &mut Vec<FieldError>,
) {
    if let Some(spend) = input
        .pointer("/Project/ExpectedCustomerSpend")
        .and_then(Value::as_array)
    {
        for (i, item) in spend.iter().enumerate() {
            let code = item["CurrencyCode"].as_str().unwrap_or_default();
            if !matches!(code, "USD" | "EUR") {
                errors.push(invalid(
                    &format!("Project.ExpectedCustomerSpend[{i}].CurrencyCode"),
                    format!("`{code}` is not accepted; use USD or EUR"),
                    "INVALID_VALUE",
                ));
            }
            let amount = item["Amount"].as_str().unwrap_or_default();
            let positive = amount.parse::<f64>().is_ok_and(|a| a > 0.0);
            if !positive {
                errors.push(invalid(
                    &format!("Project.ExpectedCustomerSpend[{i}].Amount"),
                    format!("the expected monthly spend must be greater than 0, not `{amount}` (matrix row `expectedMonthlyAwsRevenue`)"),
                    "VALUE_OUT_OF_RANGE",
                ));
            }
        }
    }
    for path in [
        "Customer.Account.Address.StateOrRegion",
        "Project.CustomerUseCase",
        "Project.ApnPrograms",
        "Marketing.UseCases",
    ] {
        let allowed = matrix::documented_values(path);
        for v in values_at(input, path) {
            let Some(v) = v.as_str() else { continue };
            if !allowed.contains(&v) {
                errors.push(invalid(
                    path,
                    format!("`{v}` is not a valid value of {path} (service model documentation)"),
                    "INVALID_VALUE",
                ));
            }
        }
    }
    let date = input
        .pointer("/LifeCycle/TargetCloseDate")
        .and_then(Value::as_str);
    let unchanged = before
        .and_then(|b| b.pointer("/LifeCycle/TargetCloseDate"))
        .and_then(Value::as_str)
        == date;
    if let Some(date) = date.filter(|_| !unchanged)
        && date.parse::<jiff::civil::Date>().is_ok_and(|d| d < today)
    {
        errors.push(invalid(
            "LifeCycle.TargetCloseDate",
            "must not be in the past (matrix row `targetCloseDate`)".into(),
            "INVALID_VALUE",
        ));
    }
}

/// Where an opportunity is in its life, for the matrix's update columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not yet reviewed (Pending Submission): "Before submission, partners can make
    /// updates" (reference §7 item 2).
    Draft,
    /// `Action Required`: column "Update - Action Required".
    ActionRequired,
    /// Approved and not yet Launched or Closed Lost: column "Updates up until
    /// Launched/Lost", with §7's list of fields locked once Approved.
    Approved,
    /// Stage Launched: column "Update - After Launched (Closed Won)".
    Launched,
    /// Stage Closed Lost: the update columns end at Launched/Lost.
    ClosedLost,
}

fn phase(record: &Value) -> Phase {
    let stage = record.pointer("/LifeCycle/Stage").and_then(Value::as_str);
    let status = record
        .pointer("/LifeCycle/ReviewStatus")
        .and_then(Value::as_str);
    match (stage, status) {
        (Some("Launched"), _) => Phase::Launched,
        (Some("Closed Lost"), _) => Phase::ClosedLost,
        (_, Some("Action Required")) => Phase::ActionRequired,
        (_, Some("Approved")) => Phase::Approved,
        _ => Phase::Draft,
    }
}

/// Not updatable once `Approved` (reference §7 item 4).
const APPROVED_LOCKED: &[&str] = &[
    "Customer.Account.Address.CountryCode",
    "Customer.Account.Address.PostalCode",
    "Customer.Account.Industry",
    "Customer.Account.WebsiteUrl",
    "Project.CustomerBusinessProblem",
    "PartnerOpportunityIdentifier",
    "Project.Title",
];

/// Editable while `Action Required` (reference §7 item 3; the matrix's "Update - Action
/// Required" column agrees).
const ACTION_REQUIRED_EDITABLE: &[&str] = &[
    "Customer.Account.Address.City",
    "Customer.Account.Address.CountryCode",
    "Customer.Account.Address.PostalCode",
    "Customer.Account.Address.StateOrRegion",
    "Customer.Account.Address.StreetAddress",
    "Customer.Account.WebsiteUrl",
    "LifeCycle.TargetCloseDate",
    "Project.ExpectedCustomerSpend",
    "Project.CustomerBusinessProblem",
    "PartnerOpportunityIdentifier",
];

/// Whether a changed path is one of `fields` or inside one (indexes ignored).
pub fn covered(fields: &[&str], path: &str) -> bool {
    let plain = matrix::without_indexes(path);
    fields
        .iter()
        .any(|f| plain == *f || plain.starts_with(&format!("{f}.")))
}

/// The matrix row that governs a changed leaf path: its own, or its parent's
/// (`Project.ExpectedCustomerSpend[0].Amount` → row `expectedMonthlyAwsRevenue`).
fn governing_row(path: &str) -> Option<&'static matrix::FieldRow> {
    let mut plain = matrix::without_indexes(path);
    loop {
        if let Some(row) = matrix::row(&plain) {
            return Some(row);
        }
        plain = plain.rsplit_once('.')?.0.to_string();
    }
}

/// UpdateOpportunity's lifecycle rules for the partner-written fields that `changed`
/// between the stored record and the replacement `next`. Review-status blocks
/// (Submitted, In review, Rejected) are the caller's: they refuse any update.
pub fn update(
    stored: &Value,
    next: &Value,
    changed: &[String],
    today: jiff::civil::Date,
    partner: PartnerType,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let phase = phase(stored);
    for field in changed {
        let row = governing_row(field);
        let cite = |column: &str| {
            row.map_or(String::new(), |r| {
                format!(" (matrix row `{}`, {column})", r.crm_name)
            })
        };
        let refusal = match phase {
            Phase::Draft => None,
            Phase::ActionRequired => (!covered(ACTION_REQUIRED_EDITABLE, field)).then(|| {
                format!(
                    "{field} cannot be updated while the opportunity is Action Required; only the fields AWS asked about may change{}",
                    cite("Update - Action Required: No")
                )
            }),
            Phase::Approved => {
                let matrix_locked = row.is_some_and(|r| r.until_launched_or_lost == Update::No);
                (matrix_locked || covered(APPROVED_LOCKED, field)).then(|| {
                    format!(
                        "{field} is locked once AWS has approved the opportunity{}",
                        cite("Updates up until Launched/Lost: No")
                    )
                })
            }
            Phase::Launched => {
                // A partner outside special programs: "Yes", and "Yes (ISV Partners
                // Only)" for an ISV partner.
                let allowed = row.is_some_and(|r| match r.after_launched {
                    Update::Yes => true,
                    Update::IsvPartnersOnly => partner == PartnerType::Isv,
                    _ => false,
                });
                (!allowed).then(|| {
                    format!(
                        "{field} cannot be updated after the opportunity is Launched{}",
                        cite("Update - After Launched (Closed Won): No")
                    )
                })
            }
            Phase::ClosedLost => Some(format!(
                "{field} cannot be updated: the opportunity is Closed Lost, and the matrix's update columns end at Launched/Lost"
            )),
        };
        if let Some(message) = refusal {
            errors.push(invalid(field, message, "ACTION_NOT_PERMITTED"));
        }
    }
    // Row `closedLostReason`: "When an opportunity stage changes to Closed Lost".
    let stage = |r: &Value| {
        r.pointer("/LifeCycle/Stage")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if stage(next).as_deref() == Some("Closed Lost")
        && stage(stored).as_deref() != Some("Closed Lost")
        && !present(next, "LifeCycle.ClosedLostReason")
    {
        errors.push(missing(
            "LifeCycle.ClosedLostReason",
            "when the stage changes to Closed Lost (matrix row `closedLostReason`)",
        ));
    }
    // Row `awsAccountId`: "For Consulting Partners, When Stage = Launched". Its
    // "Update - After Launched" column is No, so it comes with the move or before.
    if partner == PartnerType::Consulting
        && stage(next).as_deref() == Some("Launched")
        && stage(stored).as_deref() != Some("Launched")
        && !present(next, "Customer.Account.AwsAccountId")
    {
        errors.push(missing(
            "Customer.Account.AwsAccountId",
            "from a consulting partner when the stage is Launched (matrix row `awsAccountId`)",
        ));
    }
    // Row `industryOther` and the state and marketing rules hold on update as on create.
    if text(next, "Customer.Account.Industry") == Some("Other")
        && !present(next, "Customer.Account.OtherIndustry")
    {
        errors.push(missing(
            "Customer.Account.OtherIndustry",
            "when Industry is Other (matrix row `industryOther`)",
        ));
    }
    values(next, Some(stored), today, &mut errors);
    errors
}

/// What every UpdateOpportunity must carry, whatever it changes: the partner's CRM
/// id (row `partnerCrmUniqueIdentifier`: "Conditionally Mandatory", "For all
/// updates"; the row `apnCrmUniqueIdentifier`, `Identifier`, is the model's own
/// required member).
pub fn every_update(input: &Value) -> Vec<FieldError> {
    if present(input, "PartnerOpportunityIdentifier") {
        return Vec::new();
    }
    vec![missing(
        "PartnerOpportunityIdentifier",
        "in every update (matrix row `partnerCrmUniqueIdentifier`, \"For all updates\")",
    )]
}

/// Today's date in UTC, as the service judges "not in the past".
pub fn today() -> jiff::civil::Date {
    Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn complete() -> Value {
        json!({
            "Catalog": "Sandbox", "ClientToken": "t", "Origin": "Partner Referral",
            "PrimaryNeedsFromAws": ["Co-Sell - Deal Support"],
            "Customer": {"Account": {"CompanyName": "Acme", "Industry": "Software and Internet",
                "WebsiteUrl": "https://acme.example",
                "Address": {"CountryCode": "US", "PostalCode": "02110", "StateOrRegion": "Massachusetts"}}},
            "Project": {"Title": "Acme", "CustomerBusinessProblem": "Acme needs one data lake for five silos",
                "CustomerUseCase": "Database", "DeliveryModels": ["SaaS or PaaS"],
                "SalesActivities": ["Initialized discussions with customer"],
                "ExpectedCustomerSpend": [{"Amount": "100", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS"}]},
            "Marketing": {"Source": "None"},
            "LifeCycle": {"TargetCloseDate": "2031-01-01"}
        })
    }

    fn today() -> jiff::civil::Date {
        jiff::civil::date(2026, 12, 1)
    }

    fn fields(errors: &[FieldError]) -> Vec<(&str, &str)> {
        errors.iter().map(|e| (e.field.as_str(), e.code)).collect()
    }

    #[test]
    fn a_complete_partner_opportunity_passes() {
        assert_eq!(create(&complete(), today()), vec![]);
    }

    #[test]
    fn every_mandatory_row_is_reported_when_absent() {
        let got = create(&json!({"Catalog": "Sandbox", "ClientToken": "t"}), today());
        for field in [
            "Customer.Account.Address.CountryCode",
            "Customer.Account.WebsiteUrl",
            "Customer.Account.Industry",
            "Customer.Account.CompanyName",
            "Customer.Account.Address.PostalCode",
            "LifeCycle.TargetCloseDate",
            "Project.DeliveryModels",
            "Marketing.Source",
            "PrimaryNeedsFromAws",
            "Project.Title",
            "Project.SalesActivities",
            "Project.ExpectedCustomerSpend.Amount",
            "Project.CustomerBusinessProblem",
            "Project.CustomerUseCase",
        ] {
            assert!(
                fields(&got).contains(&(field, "REQUIRED_FIELD_MISSING")),
                "{field} not reported: {got:?}"
            );
        }
    }

    #[test]
    fn conditions_follow_their_rows() {
        let mut o = complete();
        o["Customer"]["Account"]["Industry"] = json!("Other");
        o["Customer"]["Account"]["Address"] = json!({"CountryCode": "BQ", "PostalCode": "1"});
        o["Marketing"] = json!({"Source": "None", "Channels": ["Email"]});
        o["NationalSecurity"] = json!("Yes");
        let got = create(&o, today());
        let got = fields(&got);
        assert!(got.contains(&("Customer.Account.OtherIndustry", "REQUIRED_FIELD_MISSING")));
        assert!(got.contains(&("Customer.Account.Address.PostalCode", "INVALID_VALUE")));
        assert!(got.contains(&("Marketing.Channels", "INVALID_VALUE")));
        assert!(got.contains(&("NationalSecurity", "INVALID_VALUE")));

        let mut o = complete();
        o["Customer"]["Account"]["Address"]["StateOrRegion"] = json!("Bavaria");
        o["LifeCycle"]["TargetCloseDate"] = json!("2020-01-01");
        o["LifeCycle"]["ClosedLostReason"] = json!("Price");
        o["Project"]["ExpectedCustomerSpend"][0]["Amount"] = json!("0");
        let got = create(&o, today());
        let got = fields(&got);
        assert!(got.contains(&("Customer.Account.Address.StateOrRegion", "INVALID_VALUE")));
        assert!(got.contains(&("LifeCycle.TargetCloseDate", "INVALID_VALUE")));
        assert!(got.contains(&("LifeCycle.ClosedLostReason", "ACTION_NOT_PERMITTED")));
        assert!(got.contains(&(
            "Project.ExpectedCustomerSpend[0].Amount",
            "VALUE_OUT_OF_RANGE"
        )));
    }

    #[test]
    fn national_security_excuses_website_company_and_state() {
        let mut o = complete();
        o["NationalSecurity"] = json!("Yes");
        o["Customer"]["Account"] = json!({"CompanyName": "", "Industry": "Government",
            "Address": {"CountryCode": "US", "PostalCode": "20001"}});
        assert_eq!(create(&o, today()), vec![]);
    }

    #[test]
    fn lifecycle_columns_govern_updates() {
        let mut approved = complete();
        approved["LifeCycle"] = json!({"Stage": "Qualified", "ReviewStatus": "Approved", "TargetCloseDate": "2031-01-01"});
        let changed = vec![
            "Customer.Account.CompanyName".to_string(),
            "LifeCycle.Stage".to_string(),
        ];
        let got = update(&approved, &approved, &changed, today(), PartnerType::Isv);
        assert_eq!(
            fields(&got),
            vec![("Customer.Account.CompanyName", "ACTION_NOT_PERMITTED")]
        );

        let mut launched = approved.clone();
        launched["LifeCycle"]["Stage"] = json!("Launched");
        let changed = vec![
            "Project.DeliveryModels[0]".to_string(),
            "LifeCycle.TargetCloseDate".to_string(),
        ];
        let got = update(&launched, &launched, &changed, today(), PartnerType::Isv);
        assert_eq!(
            fields(&got),
            vec![("LifeCycle.TargetCloseDate", "ACTION_NOT_PERMITTED")]
        );

        let mut lost = approved.clone();
        lost["LifeCycle"]["Stage"] = json!("Closed Lost");
        let got = update(
            &approved,
            &lost,
            &["LifeCycle.Stage".to_string()],
            today(),
            PartnerType::Isv,
        );
        assert_eq!(
            fields(&got),
            vec![("LifeCycle.ClosedLostReason", "REQUIRED_FIELD_MISSING")]
        );
        lost["LifeCycle"]["ClosedLostReason"] = json!("Price");
        assert_eq!(
            update(
                &approved,
                &lost,
                &["LifeCycle.Stage".to_string()],
                today(),
                PartnerType::Isv
            ),
            vec![]
        );
    }
    #[test]
    fn every_update_carries_the_partner_crm_id() {
        let mut o = complete();
        o["PartnerOpportunityIdentifier"] = json!("40000000001");
        assert_eq!(every_update(&o), vec![]);
        o.as_object_mut()
            .unwrap()
            .remove("PartnerOpportunityIdentifier");
        assert_eq!(
            fields(&every_update(&o)),
            vec![("PartnerOpportunityIdentifier", "REQUIRED_FIELD_MISSING")]
        );
    }

    #[test]
    fn a_consulting_partner_gives_the_customers_aws_account_at_launched() {
        let mut approved = complete();
        approved["LifeCycle"] = json!({"Stage": "Committed", "ReviewStatus": "Approved", "TargetCloseDate": "2031-01-01"});
        let mut launched = approved.clone();
        launched["LifeCycle"]["Stage"] = json!("Launched");
        let changed = vec!["LifeCycle.Stage".to_string()];
        assert_eq!(
            update(&approved, &launched, &changed, today(), PartnerType::Isv),
            vec![]
        );
        assert_eq!(
            fields(&update(
                &approved,
                &launched,
                &changed,
                today(),
                PartnerType::Consulting
            )),
            vec![("Customer.Account.AwsAccountId", "REQUIRED_FIELD_MISSING")]
        );
        launched["Customer"]["Account"]["AwsAccountId"] = json!("123456789012");
        let changed = vec![
            "LifeCycle.Stage".to_string(),
            "Customer.Account.AwsAccountId".to_string(),
        ];
        assert_eq!(
            update(
                &approved,
                &launched,
                &changed,
                today(),
                PartnerType::Consulting
            ),
            vec![]
        );
        // After Launched, the ISV-only columns are not a consulting partner's.
        let delivery = vec!["Project.DeliveryModels[0]".to_string()];
        assert_eq!(
            fields(&update(
                &launched,
                &launched,
                &delivery,
                today(),
                PartnerType::Consulting
            )),
            vec![("Project.DeliveryModels[0]", "ACTION_NOT_PERMITTED")]
        );
    }
}
