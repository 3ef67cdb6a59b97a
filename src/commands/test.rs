//! `pcsync test`: runs rule-pack golden tests. Exit 0 when all pass, 1 when any
//! fails, 2 on usage errors.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use pcsync_engine::golden::{self, FileResult, RuleCache};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

pub fn run(
    paths: Vec<PathBuf>,
    bless: bool,
    filter: Option<String>,
    junit: Option<PathBuf>,
) -> ExitCode {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("rules/tests")]
    } else {
        paths
    };
    let filter = match filter.as_deref().map(regex::Regex::new).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pcsync test: --run is not a regular expression: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        eprintln!("pcsync test: `{}` does not exist", missing.display());
        return ExitCode::from(super::EXIT_USAGE);
    }
    let files = match golden::test_files(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pcsync test: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut cache = RuleCache::default();
    let (mut passed, mut failed, mut blessed) = (0usize, 0usize, 0usize);
    let mut results: Vec<FileResult> = Vec::new();
    for file in &files {
        let result = golden::run_file(file, filter.as_ref(), &mut cache);
        if let Some(error) = &result.error {
            println!("test {} ... ERROR\n{}", file.display(), indent(error));
            failed += 1;
        }
        for case in &result.cases {
            let ok = case.passed();
            let blessing = bless && case.blessable();
            let status = match (ok, blessing) {
                (true, _) => paint("ok", "32", color),
                (false, true) => paint("blessed", "33", color),
                (false, false) => paint("FAILED", "31", color),
            };
            println!("test {} :: {} ... {status}", file.display(), case.name);
            if ok {
                passed += 1;
            } else if blessing {
                blessed += 1;
            } else {
                failed += 1;
                for (i, step) in case.steps.iter().enumerate() {
                    if let Some(why) = &step.failure {
                        if case.steps.len() > 1 {
                            println!("  step {} ({}):", i + 1, step.pointer);
                        }
                        println!("{}", colorize(&indent(why), color));
                    }
                }
            }
        }
        if bless && result.cases.iter().any(|c| !c.passed()) {
            match std::fs::read_to_string(file) {
                Ok(text) => {
                    let new = golden::bless(&text, &result.cases);
                    if let Err(e) = std::fs::write(file, new) {
                        eprintln!("pcsync test: cannot write {}: {e}", file.display());
                        return ExitCode::from(super::EXIT_USAGE);
                    }
                }
                Err(e) => {
                    eprintln!("pcsync test: cannot read {}: {e}", file.display());
                    return ExitCode::from(super::EXIT_USAGE);
                }
            }
        }
        results.push(result);
    }
    if let Some(path) = junit
        && let Err(e) = write_junit(&path, &results)
    {
        eprintln!("pcsync test: cannot write {}: {e}", path.display());
        return ExitCode::from(super::EXIT_USAGE);
    }
    if bless && blessed > 0 {
        println!("blessed {blessed} case(s): expectations rewritten from the actual output");
    }
    println!();
    println!("{} passed, {failed} failed", passed + blessed);
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Colours a unified diff: removed lines red, added lines green.
fn colorize(text: &str, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    text.lines()
        .map(|l| {
            let body = l.trim_start();
            if body.starts_with('+') && !body.starts_with("+++") {
                paint(l, "32", true)
            } else if body.starts_with('-') && !body.starts_with("---") {
                paint(l, "31", true)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_junit(path: &std::path::Path, results: &[FileResult]) -> Result<(), String> {
    let mut report = Report::new("pcsync test");
    for file in results {
        let mut suite = TestSuite::new(file.path.display().to_string());
        if let Some(error) = &file.error {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_description(error.clone());
            suite.add_test_case(TestCase::new("(load)", status));
        }
        for case in &file.cases {
            let status = if case.passed() {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let why: Vec<&str> = case
                    .steps
                    .iter()
                    .filter_map(|s| s.failure.as_deref())
                    .collect();
                s.set_description(why.join("\n"));
                s
            };
            suite.add_test_case(TestCase::new(case.name.clone(), status));
        }
        report.add_test_suite(suite);
    }
    let xml = report.to_string().map_err(|e| e.to_string())?;
    std::fs::write(path, xml).map_err(|e| e.to_string())
}
