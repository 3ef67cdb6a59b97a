//! `pcsync check` end to end: the real binary on broken packs (one per kind of
//! error, with golden output), the shipped packs, config files, and the output
//! formats. Set `PCSYNC_BLESS=1` to rewrite the golden `.stderr` files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pcsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .args(args)
        .current_dir(root())
        .env_remove("PCSYNC_FIXTURE_UNSET_TOKEN")
        .output()
        .expect("the pcsync binary runs")
}

fn blessing() -> bool {
    std::env::var_os("PCSYNC_BLESS").is_some_and(|v| v != "0")
}

/// Compares `actual` with the golden file, or rewrites it when blessing.
fn golden(path: &Path, actual: &str) {
    if blessing() {
        std::fs::write(path, actual).expect("golden file is writable");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with PCSYNC_BLESS=1",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "output differs from {}; if the change is intended, rerun with PCSYNC_BLESS=1",
        path.display()
    );
}

/// Every fixture under tests/fixtures/invalid: a `.yaml` file or a directory, named
/// after the kind of error it must produce.
fn invalid_fixtures() -> Vec<(String, String)> {
    let dir = root().join("tests/fixtures/invalid");
    let mut fixtures: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixtures directory exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let kind = p.file_stem().unwrap().to_string_lossy().into_owned();
            let rel = p
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (kind, rel)
        })
        .collect();
    fixtures.sort();
    fixtures
}

#[test]
fn each_broken_pack_is_reported_with_its_kind_position_and_golden_output() {
    let fixtures = invalid_fixtures();
    for (kind, path) in &fixtures {
        let out = pcsync(&["check", path]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{path} should fail with exit 1:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("error[{kind}]")),
            "{path} should report a `{kind}` error:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("--> {path}")),
            "{path}: location missing:\n{stderr}"
        );
        golden(
            &root().join(format!("{path}.stderr").replace(".yaml.stderr", ".stderr")),
            &stderr,
        );
    }
}

#[test]
fn broken_packs_cover_at_least_twelve_kinds_of_error() {
    let kinds: Vec<String> = invalid_fixtures().into_iter().map(|(k, _)| k).collect();
    assert!(kinds.len() >= 12, "only {} kinds: {kinds:?}", kinds.len());
    for kind in &kinds {
        assert!(
            pcsync_engine::Code::ALL.iter().any(|c| c.as_str() == kind),
            "fixture `{kind}` is not named after a diagnostic code"
        );
    }
}

#[test]
fn misspelt_key_reports_line_column_and_suggestion() {
    let out = pcsync(&["check", "tests/fixtures/invalid/unknown-field.yaml"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("error[unknown-field]: unknown field `thresold`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--> tests/fixtures/invalid/unknown-field.yaml:4:1"),
        "{stderr}"
    );
    assert!(stderr.contains("4 | thresold:"), "{stderr}");
    assert!(stderr.contains("^^^^^^^^"), "{stderr}");
    assert!(
        stderr.contains("help: did you mean `thresholds`?"),
        "{stderr}"
    );
}

#[test]
fn shipped_packs_pass_check() {
    let out = pcsync(&["check", "rules"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no problems"), "{stderr}");
}

#[test]
fn json_format_is_one_parseable_report_with_positions() {
    let out = pcsync(&[
        "check",
        "--format",
        "json",
        "tests/fixtures/invalid/unknown-field.yaml",
        "rules",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(report["files_checked"], 5);
    assert_eq!(report["errors"], 1);
    assert_eq!(report["warnings"], 0);
    let d = &report["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "unknown-field");
    assert_eq!(d["message"], "unknown field `thresold`");
    assert_eq!(d["file"], "tests/fixtures/invalid/unknown-field.yaml");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(
        (d["end_line"].as_u64(), d["end_column"].as_u64()),
        (Some(4), Some(9))
    );
    assert_eq!(d["help"], "did you mean `thresholds`?");
    assert_eq!(d["pointer"], "/thresold");
}

#[test]
fn github_format_emits_workflow_annotations() {
    let out = pcsync(&[
        "check",
        "--format",
        "github",
        "tests/fixtures/invalid/invalid-enum-value.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(
            "::error file=tests/fixtures/invalid/invalid-enum-value.yaml,line=10,col=18,title=invalid-enum-value::`Closed Won` is not a valid `Stage`"
        ),
        "{stdout}"
    );
}

#[test]
fn config_files_are_checked_against_the_contract() {
    for (name, code) in [("env-var", 0), ("unknown-key", 1), ("bad-listen", 1)] {
        let path = format!("tests/fixtures/invalid-config/{name}.yaml");
        let out = pcsync(&["check", "--config", &path]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(code), "{path}:\n{stderr}");
        golden(
            &root().join(format!("tests/fixtures/invalid-config/{name}.stderr")),
            &stderr,
        );
    }
}

#[test]
fn missing_paths_are_usage_errors() {
    let out = pcsync(&["check", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("does not exist")
    );
}

#[test]
fn an_empty_rules_directory_is_an_error_unless_allowed_and_serve_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    // Not a pack: only `*.yaml` files directly in the directory are.
    std::fs::write(rules.join("README.md"), "packs go here\n").unwrap();
    let shown = rules.display().to_string();

    let out = pcsync(&["check", &shown]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("error[no-packs]: no rule packs in `{shown}`")),
        "{stderr}"
    );

    let out = pcsync(&["check", "--allow-empty", &shown]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning[no-packs]"), "{stderr}");

    // The config's `rules` names it: `check --config` and `serve` say so.
    let config = dir.path().join("pcsync.yaml");
    let state = dir.path().join("state.db");
    std::fs::write(
        &config,
        format!(
            "public_url: https://sync.example.com\nrules: ./rules\nstate: {}\nhubspot:\n  token: t\n  client_secret: s\npartner_central:\n  catalog: Sandbox\n",
            state.display()
        ),
    )
    .unwrap();
    let out = pcsync(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let out = pcsync(&["serve", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error[no-packs]"), "{stderr}");
    assert!(!state.exists(), "refused before it opened the state file");
}

#[test]
fn serve_and_dlq_explain_a_config_they_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.yaml");
    let out = pcsync(&["serve", "--config", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("absent.yaml"), "{stderr}");

    // A config that checks, but the service never ran with it: no state to read.
    let config = dir.path().join("pcsync.yaml");
    std::fs::write(
        &config,
        format!(
            "public_url: https://sync.example.com\nrules: {}/rules\nstate: {}\nhubspot:\n  token: t\n  client_secret: s\npartner_central:\n  catalog: Sandbox\n",
            env!("CARGO_MANIFEST_DIR"),
            dir.path().join("never.db").display()
        ),
    )
    .unwrap();
    let out = pcsync(&["dlq", "list", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("no state file"), "{stderr}");
    let out = pcsync(&["dlq", "retry", "x7", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}
