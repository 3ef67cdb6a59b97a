//! `pcsync check`: validates rule packs and the service config, printing every
//! problem like a compiler. Exit 0 clean, 1 errors, 2 usage or I/O error.

use std::path::PathBuf;
use std::process::ExitCode;

use pcsync_engine::diagnostic::{self, Diagnostic, Severity, Sources};
use pcsync_engine::{Code, MissingEnv, load_rules};
use pcsync_runtime::config::load_config;
use pcsync_runtime::service::channels::Channels;

use crate::cli::CheckFormat;

struct Report {
    sources: Vec<Sources>,
    diagnostics: Vec<Vec<Diagnostic>>,
    files: usize,
}

pub fn run(
    paths: Vec<PathBuf>,
    config: Option<PathBuf>,
    format: CheckFormat,
    allow_empty: bool,
) -> ExitCode {
    let mut report = Report {
        sources: Vec::new(),
        diagnostics: Vec::new(),
        files: 0,
    };
    let mut rule_paths = paths;
    let mut service = None;
    if let Some(config_path) = &config {
        let env = |name: &str| std::env::var(name).ok();
        let loaded = load_config(config_path, &env, MissingEnv::Warning);
        service = loaded.value.clone();
        if rule_paths.is_empty()
            && let Some(cfg) = &loaded.value
        {
            rule_paths.push(cfg.rules_dir(config_path));
        }
        report.files += loaded.files_checked;
        report.diagnostics.push(loaded.diagnostics);
        report.sources.push(loaded.sources);
    } else if rule_paths.is_empty() {
        rule_paths.push(PathBuf::from("rules"));
    }
    if !rule_paths.is_empty() {
        if let Some(missing) = rule_paths.iter().find(|p| !p.exists()) {
            eprintln!("pcsync check: `{}` does not exist", missing.display());
            return ExitCode::from(super::EXIT_USAGE);
        }
        let mut loaded = load_rules(&rule_paths);
        // A channel the config does not provide is skipped at run time: said here.
        if let (Some(cfg), Some(rules)) = (&service, &loaded.value) {
            let channels = Channels::of(&cfg.notifications);
            let skipped: Vec<Diagnostic> = channels
                .missing(rules)
                .map(|pack| {
                    Diagnostic::warning(
                        Code::ChannelUnavailable,
                        format!(
                            "pack `{}` has an `sns` channel but the config has no \
                             `notifications.sns_topic_arn`",
                            pack.pack.name
                        ),
                    )
                    .in_file(pack.file)
                    .with_pointer("/channels/sns")
                    .with_help(
                        "its SNS messages are skipped (tasks and notes are still made); \
                         set `notifications.sns_topic_arn` to send them",
                    )
                })
                .collect();
            loaded.diagnostics.extend(skipped);
        }
        if allow_empty {
            for d in &mut loaded.diagnostics {
                if d.code == Code::NoPacks {
                    d.severity = Severity::Warning;
                }
            }
        }
        report.files += loaded.files_checked;
        report.diagnostics.push(loaded.diagnostics);
        report.sources.push(loaded.sources);
    }

    let all: Vec<&Diagnostic> = report.diagnostics.iter().flatten().collect();
    let errors = all.iter().filter(|d| d.is_error()).count();
    let warnings = all.len() - errors;
    let io_only = errors > 0
        && all
            .iter()
            .filter(|d| d.is_error())
            .all(|d| d.code == Code::Io);
    match format {
        CheckFormat::Human => {
            for (sources, diags) in report.sources.iter().zip(&report.diagnostics) {
                eprint!("{}", diagnostic::render_human(sources, diags));
            }
            let noun = if report.files == 1 { "file" } else { "files" };
            if errors == 0 && warnings == 0 {
                eprintln!("checked {} {noun}: no problems", report.files);
            } else {
                eprintln!(
                    "checked {} {noun}: {errors} error(s), {warnings} warning(s)",
                    report.files
                );
            }
        }
        CheckFormat::Json => {
            // One report covering every file: merge by rendering each source set.
            let mut merged = serde_json::json!({
                "files_checked": report.files,
                "errors": errors,
                "warnings": warnings,
                "diagnostics": [],
            });
            for (sources, diags) in report.sources.iter().zip(&report.diagnostics) {
                let part: serde_json::Value =
                    serde_json::from_str(&diagnostic::render_json(sources, diags, 0))
                        .expect("render_json emits JSON");
                if let (Some(all), Some(new)) = (
                    merged["diagnostics"].as_array_mut(),
                    part["diagnostics"].as_array(),
                ) {
                    all.extend(new.iter().cloned());
                }
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&merged).expect("plain JSON")
            );
        }
        CheckFormat::Github => {
            for (sources, diags) in report.sources.iter().zip(&report.diagnostics) {
                print!("{}", diagnostic::render_github(sources, diags));
            }
        }
    }
    if io_only {
        ExitCode::from(super::EXIT_USAGE)
    } else if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
