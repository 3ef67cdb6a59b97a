//! The committed JSON Schemas match the engine's and the runtime's types, and every shipped pack
//! validates against the committed rule-pack schema (checked with the `jsonschema`
//! crate directly, independent of `pcsync check`).

use std::path::PathBuf;

use pcsync_engine::diagnostic::FileId;
use pcsync_engine::schema::{Schema, schema_text};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_schemas_match_the_generated_ones() {
    for kind in [Schema::rule_pack(), pcsync_runtime::config::schema()] {
        let path = root().join("schemas").join(kind.file_name());
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == schema_text(kind),
            "{} is stale: run `cargo run -- schema` and commit the result",
            path.display()
        );
    }
}

#[test]
fn every_shipped_pack_validates_against_the_committed_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/rule-pack.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the committed schema compiles");
    let mut packs = 0;
    for entry in std::fs::read_dir(root().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/rule-pack.schema.json"),
            "{} must start with the schema comment so editors complete it",
            path.display()
        );
        let (doc, diags) = pcsync_engine::source::parse(FileId(0), &text);
        assert!(diags.is_empty(), "{}: {diags:?}", path.display());
        let value = doc.expect("valid YAML").value;
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        packs += 1;
    }
    assert!(
        packs >= 4,
        "expected the shipped packs under rules/, found {packs}"
    );
}

#[test]
fn schema_rejects_what_check_rejects_structurally() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/rule-pack.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/invalid/unknown-field.yaml")).unwrap();
    let (doc, _) = pcsync_engine::source::parse(FileId(0), &text);
    assert!(!validator.is_valid(&doc.unwrap().value));
}
