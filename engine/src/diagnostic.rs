//! Diagnostics in the style of a compiler: every problem found in a rule pack or a
//! config file carries its file, a byte span, a one-line lowercase message and, where
//! there is a fix, a `help` line. Rendered as rustc-style text, JSON or GitHub
//! Actions annotations.

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term::{self, Chars, Config, DisplayStyle};
use serde::Serialize;

/// A byte range in a source file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` (bytes).
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// Identifies a file in [`Sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileId(pub usize);

/// How bad a diagnostic is. Only errors make `pcsync check` fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The pack or config is not loaded.
    Error,
    /// Loaded, but probably not what was meant.
    Warning,
}

macro_rules! codes {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// The kind of a diagnostic: a stable name that scripts and tests can match on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $(#[doc = $doc] $variant,)*
        }

        impl Code {
            /// The stable kebab-case name (`unknown-field`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// Every code, for documentation and tests.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];
        }
    };
}

codes! {
    Io => "io", "a file could not be read";
    YamlSyntax => "yaml-syntax", "the file is not valid YAML";
    DuplicateKey => "duplicate-key", "a mapping names the same key twice";
    UnknownField => "unknown-field", "a key the language does not have";
    MissingField => "missing-field", "a required key is absent";
    WrongType => "wrong-type", "a value of the wrong type (a list where a string belongs, say)";
    InvalidValue => "invalid-value", "a value outside the allowed set or format";
    DuplicatePack => "duplicate-pack", "two packs share a name";
    NoPacks => "no-packs", "a rules directory without a pack in it: pcsync would sync nothing";
    TriggerShape => "trigger-shape", "a trigger that names no source, several, or a filter that does not apply";
    RhaiSyntax => "rhai-syntax", "a Rhai script or expression that does not compile";
    RhaiUnknownVariable => "rhai-unknown-variable", "a Rhai script uses a variable the pack's context does not provide";
    JsonPathSyntax => "jsonpath-syntax", "a JSONPath that does not parse";
    TemplateSyntax => "template-syntax", "a template that does not parse";
    TemplateUnknownVariable => "template-unknown-variable", "a template uses a variable the pack's context does not provide";
    UnknownFieldPath => "unknown-field-path", "a Partner Central field path that is not in the Opportunity model";
    InvalidEnumValue => "invalid-enum-value", "a value that the Partner Central field does not accept";
    MissingContext => "missing-context", "a rule uses context the pack does not load in `needs`";
    UnknownReference => "unknown-reference", "a name that refers to nothing declared (a watch, threshold, setting or channel)";
    MappingShape => "mapping-shape", "a mapping without a direction, or with conflicting parts";
    WriteConflict => "write-conflict", "two packs write the same field from the same trigger";
    RequiredField => "required-field", "a pack that creates opportunities writes no value for a field AWS requires of every new one";
    ScriptFile => "script-file", "a referenced `.rhai` file that cannot be read";
    EnvVar => "env-var", "a `${VAR}` in the config that is not set";
    ChannelUnavailable => "channel-unavailable", "a pack's notification channel that the service config does not provide (`sns` without `notifications.sns_topic_arn`): it is skipped";
    SchemaInternal => "schema-internal", "the built-in schema could not be applied (a bug in pcsync)";
}

/// One problem, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The kind of problem.
    pub code: Code,
    /// One lowercase line, user input in backticks.
    pub message: String,
    /// The file, when known.
    pub file: Option<FileId>,
    /// Where in the file, when known.
    pub span: Option<Span>,
    /// A short label under the caret.
    pub label: Option<String>,
    /// How to fix it.
    pub help: Option<String>,
    /// The JSON pointer of the offending node, when the problem is about one.
    pub pointer: Option<String>,
}

impl Diagnostic {
    /// An error with `code` and `message`.
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            file: None,
            span: None,
            label: None,
            help: None,
            pointer: None,
        }
    }

    /// A warning with `code` and `message`.
    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    /// Places the diagnostic in `file` at `span`.
    pub fn at(mut self, file: FileId, span: Span) -> Self {
        self.file = Some(file);
        self.span = Some(span);
        self
    }

    /// Places the diagnostic in `file` without a position (I/O errors).
    pub fn in_file(mut self, file: FileId) -> Self {
        self.file = Some(file);
        self
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Records the JSON pointer of the offending node.
    pub fn with_pointer(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    /// Adds a label under the caret.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Whether this is an error (as opposed to a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `did you mean `x`?` for the closest candidate to `input`, if one is close enough.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(input, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The candidate closest to `input` by Jaro-Winkler similarity, if it is close enough
/// to be a likely typo.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let folded = input.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&folded, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The files diagnostics refer to, kept so they can be rendered with source lines.
#[derive(Default)]
pub struct Sources {
    files: SimpleFiles<String, String>,
}

/// A diagnostic's place as line and column (both from 1; columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Sources {
    /// Registers a file's text under a display name.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        FileId(self.files.add(name.into(), text.into()))
    }

    /// The file's display name.
    pub fn name(&self, file: FileId) -> &str {
        self.files
            .get(file.0)
            .map_or("<unknown>", |f| f.name().as_str())
    }

    /// Hides the text at `spans` of `file` (each character becomes `*` as many
    /// times as it has bytes, so every other span stays where it was): a secret
    /// written in a config file must not appear in an error's source snippet.
    pub fn mask(&mut self, file: FileId, spans: &[Span]) {
        self.mask_each(|id, _| {
            if id == file {
                spans.to_vec()
            } else {
                Vec::new()
            }
        });
    }

    /// [`Sources::mask`] in every file, at the spans `find` gives for its text.
    pub fn mask_each(&mut self, find: impl Fn(FileId, &str) -> Vec<Span>) {
        let mut files = SimpleFiles::new();
        let mut id = 0;
        while let Ok(f) = self.files.get(id) {
            let mut text = f.source().clone();
            let spans = find(FileId(id), &text);
            {
                for span in &spans {
                    let Some(hidden) = text.get(span.start..span.end) else {
                        continue;
                    };
                    let stars = "*".repeat(hidden.len());
                    text.replace_range(span.start..span.end, &stars);
                }
            }
            files.add(f.name().clone(), text);
            id += 1;
        }
        self.files = files;
    }

    /// The file's text.
    pub fn text(&self, file: FileId) -> &str {
        self.files.get(file.0).map_or("", |f| f.source().as_str())
    }

    /// The line and column of a byte offset.
    pub fn position(&self, file: FileId, offset: usize) -> Position {
        self.files
            .location(file.0, offset)
            .map(|l| Position {
                line: l.line_number,
                column: l.column_number,
            })
            .unwrap_or(Position { line: 1, column: 1 })
    }

    /// `file:line:col` for a diagnostic, or just the file, or nothing.
    pub fn locate(&self, d: &Diagnostic) -> Option<(String, Option<Position>)> {
        let file = d.file?;
        Some((
            self.name(file).to_string(),
            d.span.map(|s| self.position(file, s.start)),
        ))
    }
}

/// How `pcsync check` prints diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// rustc-style: `error[code]: message`, `--> file:line:col`, the line, a caret, help.
    #[default]
    Human,
    /// One JSON document (see [`render_json`]).
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…,col=…::…`).
    Github,
}

/// Renders diagnostics as rustc-style text with the offending line and a caret.
pub fn render_human(sources: &Sources, diagnostics: &[Diagnostic]) -> String {
    let config = Config {
        display_style: DisplayStyle::Rich,
        chars: Chars::ascii(),
        ..Config::default()
    };
    let mut out = String::new();
    for d in diagnostics {
        let severity = match d.severity {
            Severity::Error => codespan_reporting::diagnostic::Severity::Error,
            Severity::Warning => codespan_reporting::diagnostic::Severity::Warning,
        };
        let mut cs = CsDiagnostic::new(severity)
            .with_code(d.code.as_str())
            .with_message(&d.message);
        match (d.file, d.span) {
            (Some(file), Some(span)) => {
                // Underline within the first line: a caret under a whole block says less.
                let text = sources.text(file);
                let start = span.start.min(text.len());
                let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
                let end = span
                    .end
                    .min(line_end)
                    .max(start + usize::from(start < line_end));
                cs = cs.with_labels(vec![
                    Label::primary(file.0, start..end)
                        .with_message(d.label.clone().unwrap_or_default()),
                ]);
            }
            (Some(file), None) => {
                cs = cs.with_notes(vec![format!("in {}", sources.name(file))]);
            }
            _ => {}
        }
        if let Some(help) = &d.help {
            cs = cs.with_notes(vec![format!("help: {help}")]);
        }
        match term::emit_into_string(&config, &sources.files, &cs) {
            Ok(text) => out.push_str(&text),
            Err(_) => out.push_str(&format!(
                "{}[{}]: {}\n",
                severity_word(d),
                d.code.as_str(),
                d.message
            )),
        }
        out.push('\n');
    }
    out
}

fn severity_word(d: &Diagnostic) -> &'static str {
    match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// One diagnostic as `pcsync check --format json` prints it.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic<'a> {
    /// `error` or `warning`.
    pub severity: Severity,
    /// The stable code (`unknown-field`).
    pub code: &'static str,
    /// The one-line message.
    pub message: &'a str,
    /// The file's path as given on the command line, if any.
    pub file: Option<String>,
    /// Line from 1, if the position is known.
    pub line: Option<usize>,
    /// Column from 1 in characters, if the position is known.
    pub column: Option<usize>,
    /// Line of the span's end.
    pub end_line: Option<usize>,
    /// Column of the span's end (exclusive).
    pub end_column: Option<usize>,
    /// How to fix it.
    pub help: Option<&'a str>,
    /// The JSON pointer of the offending node, if known (`/map/dealstage/to`).
    pub pointer: Option<&'a str>,
}

/// The whole document `pcsync check --format json` prints.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// Number of files read.
    pub files_checked: usize,
    /// Number of error diagnostics.
    pub errors: usize,
    /// Number of warnings.
    pub warnings: usize,
    /// Every diagnostic, in file then position order.
    pub diagnostics: Vec<JsonDiagnostic<'a>>,
}

/// Renders diagnostics as a JSON report.
pub fn render_json(sources: &Sources, diagnostics: &[Diagnostic], files_checked: usize) -> String {
    let report = JsonReport {
        files_checked,
        errors: diagnostics.iter().filter(|d| d.is_error()).count(),
        warnings: diagnostics.iter().filter(|d| !d.is_error()).count(),
        diagnostics: diagnostics
            .iter()
            .map(|d| {
                let start = d
                    .file
                    .zip(d.span)
                    .map(|(f, s)| sources.position(f, s.start));
                let end = d.file.zip(d.span).map(|(f, s)| sources.position(f, s.end));
                JsonDiagnostic {
                    severity: d.severity,
                    code: d.code.as_str(),
                    message: &d.message,
                    file: d.file.map(|f| sources.name(f).to_string()),
                    line: start.map(|p| p.line),
                    column: start.map(|p| p.column),
                    end_line: end.map(|p| p.line),
                    end_column: end.map(|p| p.column),
                    help: d.help.as_deref(),
                    pointer: d.pointer.as_deref(),
                }
            })
            .collect(),
    };
    serde_json::to_string_pretty(&report).expect("the report is plain data") + "\n"
}

/// Renders diagnostics as GitHub Actions annotations.
pub fn render_github(sources: &Sources, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let mut props = Vec::new();
        if let Some((file, pos)) = sources.locate(d) {
            props.push(format!("file={}", escape_property(&file)));
            if let Some(pos) = pos {
                props.push(format!("line={}", pos.line));
                props.push(format!("col={}", pos.column));
            }
        }
        props.push(format!("title={}", escape_property(d.code.as_str())));
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str(&format!("\nhelp: {help}"));
        }
        out.push_str(&format!(
            "::{} {}::{}\n",
            severity_word(d),
            props.join(","),
            escape_data(&message)
        ));
    }
    out
}

// GitHub's workflow-command escaping (actions/toolkit `command.ts`).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Sorts diagnostics by file and position so output is stable.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| {
        (
            d.file,
            d.span.map(|s| s.start),
            d.severity,
            d.message.clone(),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Sources, Vec<Diagnostic>) {
        let mut sources = Sources::default();
        let file = sources.add("rules/x.yaml", "pack: x\nthresold: 3\n");
        let d = Diagnostic::error(Code::UnknownField, "unknown field `thresold`")
            .at(file, Span::new(8, 16))
            .with_help("did you mean `thresholds`?");
        (sources, vec![d])
    }

    #[test]
    fn human_output_shows_location_line_caret_and_help() {
        let (sources, diags) = sample();
        let text = render_human(&sources, &diags);
        assert!(
            text.contains("error[unknown-field]: unknown field `thresold`"),
            "{text}"
        );
        assert!(text.contains("rules/x.yaml:2:1"), "{text}");
        assert!(text.contains("thresold: 3"), "{text}");
        assert!(text.contains("^^^^^^^^"), "{text}");
        assert!(text.contains("help: did you mean `thresholds`?"), "{text}");
    }

    #[test]
    fn github_output_is_one_escaped_workflow_command() {
        let (sources, diags) = sample();
        assert_eq!(
            render_github(&sources, &diags),
            "::error file=rules/x.yaml,line=2,col=1,title=unknown-field::unknown field `thresold`%0Ahelp: did you mean `thresholds`?\n"
        );
    }

    #[test]
    fn suggestions_need_a_close_match() {
        assert_eq!(
            closest("thresold", ["thresholds", "notify"]),
            Some("thresholds")
        );
        assert_eq!(closest("zzz", ["thresholds", "notify"]), None);
    }

    #[test]
    fn codes_are_unique_kebab_case() {
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
    }
}
