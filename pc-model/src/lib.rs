//! The Partner Central Selling API's data model, as a table generated from AWS's
//! service model: shapes, members, enum values and string constraints, plus field
//! path resolution. It is AWS's data, not pcsync's reading of it, which is why both
//! the engine (to check packs) and the sandbox (to validate requests) use it while
//! sharing no code otherwise.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[rustfmt::skip]
mod generated;
pub mod matrix;
#[rustfmt::skip]
mod matrix_data;
mod shape;

pub use shape::{Member, Operation, Shape, ShapeKind, StringRules};

/// The shape that an UpdateOpportunity request carries (the writable opportunity).
pub const UPDATE_OPPORTUNITY: &str = "UpdateOpportunityRequest";
/// The shape of a CreateOpportunity request.
pub const CREATE_OPPORTUNITY: &str = "CreateOpportunityRequest";
/// The shape GetOpportunity returns (the opportunity as pcsync reads it).
pub const OPPORTUNITY: &str = "GetOpportunityResponse";
/// The shape GetAwsOpportunitySummary returns (the AWS-side view).
pub const AWS_SUMMARY: &str = "GetAwsOpportunitySummaryResponse";
/// The shape GetResourceSnapshot returns.
pub const RESOURCE_SNAPSHOT: &str = "GetResourceSnapshotResponse";

/// Looks up a shape by name.
pub fn shape(name: &str) -> Option<&'static Shape> {
    generated::SHAPES
        .binary_search_by(|s| s.name.cmp(name))
        .ok()
        .map(|i| &generated::SHAPES[i])
}

/// Looks up an operation by name.
pub fn operation(name: &str) -> Option<&'static Operation> {
    generated::OPERATIONS.iter().find(|o| o.name == name)
}

/// The enum values of a named string shape (`Stage`, `ReviewStatus`), empty if it has none.
pub fn enum_values(shape_name: &str) -> &'static [&'static str] {
    match shape(shape_name).map(|s| &s.kind) {
        Some(ShapeKind::String(rules)) => rules.enum_values,
        _ => &[],
    }
}

/// One step of a field path: a member name, optionally with a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStep {
    /// The member name (`ExpectedCustomerSpend`).
    pub name: String,
    /// The list index written as `[0]`, if any.
    pub index: Option<usize>,
}

/// Why a field path does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path text is not `Name(.Name)*` with optional `[N]` indexes.
    #[error("`{0}` is not a field path (expected `Name.Name`, with `[N]` after a list)")]
    Syntax(String),
    /// A member does not exist on the shape reached so far.
    #[error("`{member}` is not a field of `{shape}`")]
    UnknownMember {
        /// The member named in the path.
        member: String,
        /// The shape it was looked up on.
        shape: String,
        /// The members that do exist, for a suggestion.
        candidates: Vec<&'static str>,
    },
    /// An index was written after a member that is not a list.
    #[error("`{0}` is not a list, so it takes no `[N]` index")]
    NotAList(String),
    /// A member was named below a scalar.
    #[error("`{0}` has no fields")]
    NotAStructure(String),
}

/// Splits `Project.ExpectedCustomerSpend[0].Amount` into steps.
pub fn parse_path(path: &str) -> Result<Vec<PathStep>, PathError> {
    path_steps(path)
        .map(|step| {
            step.map(|(name, index)| PathStep {
                name: name.to_string(),
                index,
            })
        })
        .collect()
}

/// [`parse_path`]'s steps as they are read, borrowed from `path`: a member name
/// and its list index, if any. For walking a path without allocating.
pub fn path_steps(
    path: &str,
) -> impl Iterator<Item = Result<(&str, Option<usize>), PathError>> + '_ {
    // An empty path, or an empty part, fails the name test below.
    let syntax = || PathError::Syntax(path.to_string());
    path.split('.').map(move |part| {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => {
                let digits = rest.strip_suffix(']').ok_or_else(syntax)?;
                (name, Some(digits.parse::<usize>().map_err(|_| syntax())?))
            }
            None => (part, None),
        };
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(syntax());
        }
        Ok((name, index))
    })
}

/// Walks `path` from the shape `root` and returns the shape it names. Lists are
/// stepped through whether or not the path gives an index, so that
/// `Project.ExpectedCustomerSpend.Amount` names every item's amount (AWS's own
/// documents write paths that way) and `Project.ExpectedCustomerSpend[0].Amount` the
/// first one.
pub fn resolve(root: &str, path: &str) -> Result<&'static Shape, PathError> {
    let steps = parse_path(path)?;
    let mut current = shape(root).expect("root shapes are generated");
    for step in &steps {
        let members = match &current.kind {
            ShapeKind::Structure(m) | ShapeKind::Union(m) => *m,
            _ => return Err(PathError::NotAStructure(current.name.to_string())),
        };
        let member = members
            .iter()
            .find(|m| m.name == step.name)
            .ok_or_else(|| PathError::UnknownMember {
                member: step.name.clone(),
                shape: current.name.to_string(),
                candidates: members.iter().map(|m| m.name).collect(),
            })?;
        current = shape(member.shape).expect("member shapes are generated");
        match (&current.kind, step.index) {
            (ShapeKind::List { member, .. }, _) => {
                current = shape(member).expect("list members are generated");
            }
            (_, Some(_)) => return Err(PathError::NotAList(step.name.clone())),
            (_, None) => {}
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_sorted_for_binary_search() {
        assert!(generated::SHAPES.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn resolves_nested_list_paths_to_their_scalar_shape() {
        let amount = resolve(
            UPDATE_OPPORTUNITY,
            "Project.ExpectedCustomerSpend[0].Amount",
        )
        .unwrap();
        assert_eq!(amount.name, "Amount");
        let currency = resolve(
            UPDATE_OPPORTUNITY,
            "Project.ExpectedCustomerSpend.CurrencyCode",
        )
        .unwrap();
        assert!(enum_values(currency.name).contains(&"EUR"));
    }

    #[test]
    fn stage_enum_has_the_seven_partner_central_stages() {
        let stage = resolve(OPPORTUNITY, "LifeCycle.Stage").unwrap();
        assert_eq!(
            enum_values(stage.name),
            [
                "Prospect",
                "Qualified",
                "Technical Validation",
                "Business Validation",
                "Committed",
                "Launched",
                "Closed Lost"
            ]
        );
    }

    #[test]
    fn unknown_member_names_the_shape_and_offers_candidates() {
        match resolve(UPDATE_OPPORTUNITY, "LifeCycle.Stag") {
            Err(PathError::UnknownMember {
                shape, candidates, ..
            }) => {
                assert_eq!(shape, "LifeCycle");
                assert!(candidates.contains(&"Stage"));
            }
            other => panic!("expected an unknown member, got {other:?}"),
        }
    }

    #[test]
    fn index_after_a_scalar_is_rejected() {
        assert_eq!(
            resolve(UPDATE_OPPORTUNITY, "LifeCycle.Stage[0]").unwrap_err(),
            PathError::NotAList("Stage".into())
        );
        assert!(matches!(
            parse_path("Project..Title"),
            Err(PathError::Syntax(_))
        ));
    }

    #[test]
    fn path_steps_borrow_what_parse_path_copies() {
        let path = "Project.ExpectedCustomerSpend[1].Amount";
        let borrowed: Vec<_> = path_steps(path).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            borrowed,
            [
                ("Project", None),
                ("ExpectedCustomerSpend", Some(1)),
                ("Amount", None)
            ]
        );
        let copied = parse_path(path).unwrap();
        assert!(
            copied
                .iter()
                .zip(&borrowed)
                .all(|(c, (name, index))| c.name == *name && c.index == *index)
        );
        for bad in ["", "Project.", "Project[x]", "1Project"] {
            assert!(
                path_steps(bad).any(|s| s.is_err()),
                "`{bad}` has a step in error"
            );
            assert!(parse_path(bad).is_err(), "`{bad}` does not parse");
        }
    }
}
