use std::borrow::Cow;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A length of time written the way people write it: `30m`, `4h`, `3d`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationSpec(pub Duration);

/// The pattern the schema enforces; humantime accepts it.
pub const DURATION_PATTERN: &str = r"^[0-9]+ ?(ms|s|m|h|d)( ?[0-9]+ ?(ms|s|m|h|d))*$";

impl DurationSpec {
    /// Parses `30m`, `4h`, `3d`, `1h 30m`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let valid = regex::Regex::new(DURATION_PATTERN)
            .expect("the duration pattern is a valid regex")
            .is_match(text);
        if !valid {
            return Err(format!(
                "`{text}` is not a duration (write a number and a unit: `30s`, `30m`, `4h`, `3d`)"
            ));
        }
        humantime::parse_duration(text)
            .map(DurationSpec)
            .map_err(|e| format!("`{text}` is not a duration: {e}"))
    }
}

impl std::fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DurationSpec::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A length of time: a number and a unit (`ms`, `s`, `m`, `h`, `d`), e.g. `30m`, `4h`, `3d`.",
            "examples": ["30m", "4h", "24h", "3d"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_rule_packs_use() {
        assert_eq!(
            DurationSpec::parse("30m").unwrap().0,
            Duration::from_secs(1800)
        );
        assert_eq!(
            DurationSpec::parse("4h").unwrap().0,
            Duration::from_secs(4 * 3600)
        );
        assert_eq!(
            DurationSpec::parse("3d").unwrap().0,
            Duration::from_secs(3 * 86400)
        );
        assert_eq!(
            DurationSpec::parse("1h 30m").unwrap().0,
            Duration::from_secs(5400)
        );
    }

    #[test]
    fn rejects_numbers_without_units() {
        assert!(DurationSpec::parse("30").is_err());
        assert!(DurationSpec::parse("thirty minutes").is_err());
    }
}
