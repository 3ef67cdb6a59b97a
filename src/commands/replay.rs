//! `pcsync replay`: plans the recorded pack runs again with candidate rules, each
//! at its own time and on the context it saw, and prints what would change: per
//! run the writes added, removed or changed (field by field, texts line by line)
//! and a different verdict, then a summary. `--export` writes runs as golden cases.
//! Reads the state file through a read-only connection: a running service is not
//! disturbed. Makes no remote call and needs no credentials.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pcsync_engine::diagnostic::render_human;
use pcsync_engine::replay::{Change, RecordedRun, Replayed, Summary, replay};
use pcsync_engine::{Outcome, RuleSet, load_rules, simulate};
use pcsync_runtime::store::{RunFilter, read_runs};
use serde_json::{Value, json};

use super::EXIT_USAGE;
use crate::cli::{ReplayArgs as Args, ReplayFailOn, ReplayFormat};

pub fn run(args: Args) -> ExitCode {
    match replay_all(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("pcsync replay: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn replay_all(args: &Args) -> Result<ExitCode, String> {
    let loaded = load_rules(std::slice::from_ref(&args.rules));
    if loaded.has_errors() {
        eprint!("{}", render_human(&loaded.sources, &loaded.diagnostics));
        return Err(format!("the packs in {} do not load", args.rules.display()));
    }
    let rules = loaded.value.ok_or("no rule set")?;
    let state = state_file(args)?;
    let filter = filter(args)?;
    let progress =
        crate::progress::Progress::counter("runs replayed", args.format == ReplayFormat::Human);
    let mut summary = Summary::default();
    let mut changed: Vec<(RecordedRun, Replayed)> = Vec::new();
    let mut exported: Vec<Value> = Vec::new();
    read_runs(&state, &filter, |run| {
        if !args.runs.is_empty() && !args.runs.contains(&run.id) {
            return;
        }
        let replayed = replay(run, &rules);
        summary.add(&replayed);
        if summary.replayed.is_multiple_of(1_000) {
            progress.set(summary.replayed);
        }
        if args.export.is_some() {
            exported.push(case(run, &rules));
        }
        if !replayed.changes.is_empty() {
            changed.push((run.clone(), replayed));
        }
    })
    .map_err(|e| e.to_string())?;
    progress.done();
    let mut out = std::io::stdout().lock();
    let shown = match args.format {
        ReplayFormat::Human => human(&mut out, &changed, &summary),
        ReplayFormat::Json => {
            let runs: Vec<Value> = changed
                .iter()
                .map(|(run, replayed)| {
                    json!({
                        "id": run.id, "at": run.at.to_string(), "pack": run.pack,
                        "event": run.event.kind, "deal": deal_of(run),
                        "opportunity": opportunity_of(run),
                        "changes": replayed.changes,
                    })
                })
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&json!({ "runs": runs, "summary": summary }))
                    .unwrap_or_default()
            )
        }
        ReplayFormat::Github => github(&mut out, &changed, &summary),
    };
    shown.map_err(|e| e.to_string())?;
    if let Some(path) = &args.export {
        export(path, &args.rules, exported)?;
        eprintln!(
            "pcsync replay: wrote {} case(s) to {}",
            summary.replayed,
            path.display()
        );
    }
    let failed = match args.fail_on {
        Some(ReplayFailOn::Changed) => summary.changed > 0,
        Some(ReplayFailOn::NewFailures) => summary.new_failures > 0,
        None => false,
    };
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The state file: `--state`, or the one the config names.
fn state_file(args: &Args) -> Result<PathBuf, String> {
    let path = match (&args.state, &args.config) {
        (Some(state), _) => state.clone(),
        (None, Some(config)) => {
            let loaded = super::checked_config(config, pcsync_engine::MissingEnv::Warning)
                .map_err(|shown| format!("the config does not check:\n{shown}"))?;
            loaded.state_path(config)
        }
        (None, None) => return Err("give --config (the service's) or --state FILE".into()),
    };
    if !path.is_file() {
        return Err(format!("no state file at {}", path.display()));
    }
    Ok(path)
}

fn filter(args: &Args) -> Result<RunFilter, String> {
    let time = |flag: &str, text: &str| -> Result<i64, String> {
        if let Ok(t) = text.parse::<jiff::Timestamp>() {
            return Ok(t.as_millisecond());
        }
        // A date: its start, in UTC.
        format!("{text}T00:00:00Z")
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .ok()
            .ok_or_else(|| format!("{flag} `{text}` is not an RFC 3339 time or a date"))
    };
    let from_ms = match (&args.since, &args.from) {
        (Some(since), _) => {
            let d = pcsync_engine::model::DurationSpec::parse(since)
                .map_err(|e| format!("--since `{since}`: {e}"))?;
            Some(jiff::Timestamp::now().as_millisecond() - d.0.as_millis() as i64)
        }
        (None, Some(from)) => Some(time("--from", from)?),
        (None, None) => None,
    };
    let to_ms = args.to.as_deref().map(|t| time("--to", t)).transpose()?;
    Ok(RunFilter {
        from_ms,
        to_ms,
        pack: args.pack.clone(),
        deal: args.deal.clone(),
    })
}

fn deal_of(run: &RecordedRun) -> Option<String> {
    run.context
        .deal
        .as_ref()
        .map(|d| d.id.clone())
        .or_else(|| run.event.deal_id.clone())
}

/// The opportunity a run was about: the event's, or the one its context holds.
fn opportunity_of(run: &RecordedRun) -> Option<String> {
    run.event.opportunity_id.clone().or_else(|| {
        run.context
            .opportunity
            .as_ref()
            .and_then(|o| o["Id"].as_str().map(str::to_string))
    })
}

/// One run's heading: `#42 2026-11-28T12:00:00Z smart-notifications deal 101 (O1234567), Opportunity Updated`.
fn heading(run: &RecordedRun) -> String {
    let deal = deal_of(run)
        .map(|d| format!(" deal {d}"))
        .unwrap_or_default();
    let opportunity = opportunity_of(run)
        .map(|o| format!(" ({o})"))
        .unwrap_or_default();
    format!(
        "#{} {} {}{deal}{opportunity}, {}",
        run.id, run.at, run.pack, run.event.kind
    )
}

fn short(v: &Value) -> String {
    let text = match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    };
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}

fn change_lines(change: &Change) -> Vec<String> {
    let fields = |fields: &[pcsync_engine::replay::FieldDiff]| -> Vec<String> {
        let mut out = Vec::new();
        for f in fields {
            if f.lines.is_empty() {
                out.push(format!(
                    "      {}: {} -> {}",
                    f.field,
                    short(&f.before),
                    short(&f.after)
                ));
            } else {
                out.push(format!("      {}:", f.field));
                out.extend(f.lines.iter().map(|l| format!("        {l}")));
            }
        }
        out
    };
    match change {
        Change::Added { kind, label, .. } => vec![format!("  + {kind} {label}")],
        Change::Removed { kind, label, .. } => vec![format!("  - {kind} {label}")],
        Change::Changed {
            kind,
            label,
            fields: f,
        } => {
            let mut out = vec![format!("  ~ {kind} {label}")];
            out.extend(fields(f));
            out
        }
        Change::Verdict {
            before,
            after,
            reason,
        } => vec![format!(
            "  ! {before} -> {after}{}",
            reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )],
        Change::State { fields: f } => {
            let mut out = vec!["  ~ remembered state".to_string()];
            out.extend(fields(f));
            out
        }
        Change::Unreadable { error } => vec![format!("  ? {error}")],
    }
}

fn summary_lines(s: &Summary) -> Vec<String> {
    let mut out = vec![format!(
        "{} run(s) replayed: {} unchanged, {} changed; {} new failure(s), {} new deferral(s); \
         notifications (tasks, notes, messages) {} -> {}",
        s.replayed,
        s.unchanged,
        s.changed,
        s.new_failures,
        s.new_deferrals,
        s.notifications_before,
        s.notifications_after
    )];
    out.extend(s.by_kind.iter().map(|(k, n)| format!("  {n:>6}  {k}")));
    out
}

fn human(
    out: &mut impl Write,
    changed: &[(RecordedRun, Replayed)],
    summary: &Summary,
) -> std::io::Result<()> {
    for (run, replayed) in changed {
        writeln!(out, "{}", heading(run))?;
        for c in &replayed.changes {
            for line in change_lines(c) {
                writeln!(out, "{line}")?;
            }
        }
        writeln!(out)?;
    }
    for line in summary_lines(summary) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// GitHub Actions workflow commands: a warning per changed run, the summary as a
/// notice (and in the job summary when `GITHUB_STEP_SUMMARY` is set).
fn github(
    out: &mut impl Write,
    changed: &[(RecordedRun, Replayed)],
    summary: &Summary,
) -> std::io::Result<()> {
    let escape = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    for (run, replayed) in changed {
        let lines: Vec<String> = replayed.changes.iter().flat_map(change_lines).collect();
        writeln!(
            out,
            "::warning title=replay {}::{}",
            escape(&format!("#{} {}", run.id, run.pack)),
            escape(&format!("{}\n{}", heading(run), lines.join("\n")))
        )?;
    }
    let lines = summary_lines(summary);
    writeln!(out, "::notice title=replay::{}", escape(&lines.join("\n")))?;
    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY")
        && let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(path)
    {
        writeln!(file, "### pcsync replay\n\n```\n{}\n```", lines.join("\n"))?;
    }
    Ok(())
}

/// A recorded run as a golden case: its event and context, at its time, expecting
/// what `rules` plan for it (its writes succeeding).
fn case(run: &RecordedRun, rules: &RuleSet) -> Value {
    let plan = simulate(
        &run.event,
        &run.context,
        rules,
        run.at,
        &Outcome::Success { result: json!({}) },
    );
    let effects: Vec<&pcsync_engine::PlanEntry> = plan
        .effects
        .iter()
        .filter(|e| e.pack() == run.pack)
        .collect();
    json!({
        "name": format!("{} (recorded run #{})", heading(run).split_once(' ').map(|(_, h)| h).unwrap_or_default(), run.id),
        "packs": [run.pack],
        "now": run.at.to_string(),
        "event": { "recorded": run.event },
        "context": run.context,
        "expect": { "effects": effects },
    })
}

fn export(path: &Path, rules: &Path, cases: Vec<Value>) -> Result<(), String> {
    // Beside the packs' own tests (`RULES/tests/`) the file needs no `rules:`.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let beside = parent
        .canonicalize()
        .ok()
        .zip(rules.join("tests").canonicalize().ok())
        .is_some_and(|(a, b)| a == b);
    let mut file = serde_json::Map::new();
    if !beside {
        let abs = rules
            .canonicalize()
            .map_err(|e| format!("{}: {e}", rules.display()))?;
        file.insert("rules".into(), json!(abs.display().to_string()));
    }
    file.insert("cases".into(), Value::Array(cases));
    let yaml = serde_yaml::to_string(&Value::Object(file)).map_err(|e| e.to_string())?;
    let text = format!(
        "# Golden cases exported by `pcsync replay --export` from recorded runs: each\n\
         # expects what the rules planned when it was exported. `pcsync test` runs them.\n{yaml}"
    );
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
