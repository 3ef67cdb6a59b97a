//! AWS's opportunity field matrix (`aws-opportunity-fields.csv`): per field, whether a
//! partner-originated CreateOpportunity must carry it and in which lifecycle phases
//! UpdateOpportunity may change it. The rows are AWS's own words, generated into
//! `matrix_data.rs`; the conditions ("When Industry = Other") stay text, and each side
//! of the wire (the sandbox enforcing them, the engine waiting for them) reads them in
//! its own code, citing the row by its `crm_name`.

/// How the matrix classes a field for inbound (partner → AWS) requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// "Mandatory": every create carries it (the `condition` may name exceptions).
    Mandatory,
    /// "Conditionally Mandatory": required when `condition` holds.
    Conditional,
    /// "Optional".
    Optional,
    /// "NA": AWS sets it; partners do not send it.
    NotApplicable,
}

/// Whether a field may be written in a phase (one of the matrix's update columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// "Yes".
    Yes,
    /// "No".
    No,
    /// "Yes (ISV Partners Only)".
    IsvPartnersOnly,
    /// "Yes (For special programs)".
    SpecialPrograms,
    /// "#N/A": AWS-owned.
    NotApplicable,
}

impl Update {
    /// Whether a partner of any kind may write the field in that phase.
    pub fn allowed(self) -> bool {
        !matches!(self, Update::No | Update::NotApplicable)
    }
}

/// One row of the matrix.
#[derive(Debug)]
pub struct FieldRow {
    /// The row's APN CRM JSON name (`customerWebsite`): how rules cite the row.
    pub crm_name: &'static str,
    /// The field's name in Partner Central's pipeline manager (`Customer Website`),
    /// for messages a sales rep reads.
    pub label: &'static str,
    /// The field as the matrix writes it (`Customer.Account.Address.Country`).
    pub matrix_path: &'static str,
    /// The field in the API's member names (`Customer.Account.Address.CountryCode`),
    /// list items without an index; `None` for fields this API version has no member for.
    pub api_path: Option<&'static str>,
    /// "Inbound - Mandatory / Conditionally Mandatory / Optional".
    pub inbound: Requirement,
    /// "Conditions when Mandatory (Biz Validation)", verbatim.
    pub condition: &'static str,
    /// "Field Validation", verbatim.
    pub validation: &'static str,
    /// "Update - Action Required".
    pub action_required: Update,
    /// "Update - After Launched (Closed Won)".
    pub after_launched: Update,
    /// "Updates up until Launched/Lost".
    pub until_launched_or_lost: Update,
    /// "Create".
    pub create: Update,
}

pub use crate::matrix_data::FIELD_MATRIX;

/// The matrix row for an API field path (`Customer.Account.WebsiteUrl`; list indexes
/// are ignored).
pub fn row(api_path: &str) -> Option<&'static FieldRow> {
    let plain = without_indexes(api_path);
    FIELD_MATRIX
        .iter()
        .find(|r| r.api_path == Some(plain.as_str()))
}

/// The matrix row with this CRM name (`customerWebsite`).
pub fn row_named(crm_name: &str) -> Option<&'static FieldRow> {
    FIELD_MATRIX.iter().find(|r| r.crm_name == crm_name)
}

/// The values the service model's documentation lists for a member the model itself
/// does not enumerate (`Customer.Account.Address.StateOrRegion`, `Project.CustomerUseCase`,
/// `Project.ApnPrograms`, `Marketing.UseCases`); empty for others.
pub fn documented_values(api_path: &str) -> &'static [&'static str] {
    let plain: std::borrow::Cow<'_, str> = if api_path.contains('[') {
        without_indexes(api_path).into()
    } else {
        api_path.into()
    };
    crate::matrix_data::DOCUMENTED_VALUES
        .iter()
        .find(|(p, _)| *p == plain)
        .map_or(&[], |(_, v)| v)
}

/// `Project.ExpectedCustomerSpend[0].Amount` → `Project.ExpectedCustomerSpend.Amount`.
pub fn without_indexes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut skipping = false;
    for c in path.chars() {
        match c {
            '[' => skipping = true,
            ']' => skipping = false,
            _ if !skipping => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_path_resolves_in_the_model() {
        for r in FIELD_MATRIX {
            let Some(path) = r.api_path else { continue };
            let found = [
                crate::CREATE_OPPORTUNITY,
                crate::OPPORTUNITY,
                crate::UPDATE_OPPORTUNITY,
            ]
            .iter()
            .any(|root| crate::resolve(root, path).is_ok());
            assert!(found, "{} ({}) is not a model member", path, r.crm_name);
        }
    }

    #[test]
    fn renamed_fields_are_found_by_their_api_names() {
        let country = row("Customer.Account.Address.CountryCode").unwrap();
        assert_eq!(country.crm_name, "country");
        assert_eq!(country.inbound, Requirement::Mandatory);
        let spend = row("Project.ExpectedCustomerSpend[0].Amount").unwrap();
        assert_eq!(spend.crm_name, "expectedMonthlyAwsRevenue");
        assert!(spend.action_required.allowed());
        assert!(
            !row("Project.Title")
                .unwrap()
                .until_launched_or_lost
                .allowed()
        );
        assert_eq!(
            row("Project.DeliveryModels").unwrap().after_launched,
            Update::IsvPartnersOnly
        );
    }

    #[test]
    fn documented_values_come_from_the_model_docs() {
        let states = documented_values("Customer.Account.Address.StateOrRegion");
        assert!(states.contains(&"Massachusetts"));
        assert!(states.contains(&"Dist. of Columbia"));
        assert!(documented_values("Project.CustomerUseCase").contains(&"Security & Compliance"));
        assert!(documented_values("Project.Title").is_empty());
    }
}
