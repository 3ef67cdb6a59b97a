//! `pcsync eval`: prints the effects one event would produce (assuming its writes
//! succeed, as golden tests do), and with `--trace` which rule decided what.

use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use jiff::Timestamp;
use pcsync_engine::diagnostic::{FileId, render_human};
use pcsync_engine::{Context, Event, Outcome, golden, load_rules, simulate, source};

pub fn run(
    event: &Path,
    context: Option<&Path>,
    now: Option<&str>,
    trace: bool,
    rules: &Path,
) -> ExitCode {
    let now = match now.map(Timestamp::from_str).transpose() {
        Ok(t) => t.unwrap_or_else(Timestamp::now),
        Err(e) => return usage(&format!("--now is not an RFC 3339 time: {e}")),
    };
    let loaded = load_rules(&[rules.to_path_buf()]);
    if loaded.has_errors() {
        eprint!("{}", render_human(&loaded.sources, &loaded.diagnostics));
        return usage(&format!("the packs in {} do not load", rules.display()));
    }
    let Some(rule_set) = loaded.value else {
        return usage("no rule set");
    };
    let event_value = match read_yaml(event) {
        Ok(v) => v,
        Err(e) => return usage(&e),
    };
    let event = match Event::from_value(&event_value, now) {
        Ok(e) => e,
        Err(e) => return usage(&format!("{}: {e}", event_display(event))),
    };
    let ctx: Context = match context {
        None => Context::default(),
        Some(path) => match read_yaml(path)
            .and_then(|v| serde_json::from_value(v).map_err(|e| format!("{}: {e}", path.display())))
        {
            Ok(c) => c,
            Err(e) => return usage(&e),
        },
    };
    let plan = simulate(
        &event,
        &ctx,
        &rule_set,
        now,
        &Outcome::Success {
            result: serde_json::json!({}),
        },
    );
    let mut out = serde_json::Map::new();
    out.insert(
        "effects".into(),
        serde_json::to_value(&plan.effects).unwrap_or_default(),
    );
    if trace {
        out.insert(
            "trace".into(),
            serde_json::to_value(&plan.trace).unwrap_or_default(),
        );
    }
    print!("{}", golden::yaml(&serde_json::Value::Object(out)));
    ExitCode::SUCCESS
}

fn event_display(path: &Path) -> String {
    path.display().to_string()
}

fn read_yaml(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (doc, diags) = source::parse(FileId(0), &text);
    match doc {
        Some(d) if diags.is_empty() => Ok(d.value),
        _ => Err(format!(
            "{}: {}",
            path.display(),
            diags
                .first()
                .map_or("not valid YAML or JSON".to_string(), |d| d.message.clone())
        )),
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("pcsync eval: {message}");
    ExitCode::from(super::EXIT_USAGE)
}
