//! The types of the generated Partner Central model table.

/// One shape of the service model.
#[derive(Debug)]
pub struct Shape {
    /// The model's shape name (`LifeCycle`, `Stage`).
    pub name: &'static str,
    /// What the shape holds.
    pub kind: ShapeKind,
}

/// What a shape holds.
#[derive(Debug)]
pub enum ShapeKind {
    /// A record of named members.
    Structure(&'static [Member]),
    /// A record of which exactly one member is set (`ResourceSnapshotPayload`).
    Union(&'static [Member]),
    /// A list of `member` shapes.
    List {
        /// The item shape.
        member: &'static str,
        /// Fewest items allowed.
        min: Option<u64>,
        /// Most items allowed.
        max: Option<u64>,
    },
    /// A string-keyed map.
    Map {
        /// The value shape.
        value: &'static str,
    },
    /// A string, possibly constrained to an enum, a length or a pattern.
    String(StringRules),
    /// An integer within optional bounds.
    Integer {
        /// Smallest value allowed.
        min: Option<i64>,
        /// Largest value allowed.
        max: Option<i64>,
    },
    /// A floating-point number.
    Double,
    /// `true` or `false`.
    Boolean,
    /// An RFC 3339 timestamp string.
    Timestamp,
}

/// A member of a structure or union.
#[derive(Debug)]
pub struct Member {
    /// The member name as it appears on the wire (`TargetCloseDate`).
    pub name: &'static str,
    /// The member's shape name.
    pub shape: &'static str,
    /// Whether the model marks the member required.
    pub required: bool,
}

/// Constraints on a string shape.
#[derive(Debug)]
pub struct StringRules {
    /// Allowed values; empty when the string is free-form.
    pub enum_values: &'static [&'static str],
    /// Minimum length in characters.
    pub min: Option<u64>,
    /// Maximum length in characters.
    pub max: Option<u64>,
    /// A regular expression the whole value must match.
    pub pattern: Option<&'static str>,
}

/// An operation with its input and output shapes.
#[derive(Debug)]
pub struct Operation {
    /// The operation name (`UpdateOpportunity`).
    pub name: &'static str,
    /// The input shape name.
    pub input: &'static str,
    /// The output shape name, absent for operations that return nothing.
    pub output: Option<&'static str>,
}
