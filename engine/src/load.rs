//! Loading: reads rule packs (a directory of `*.yaml` files, or files named one by
//! one) and the service config, and runs every pass: YAML with positions, the JSON
//! Schema, semantic checks and compilation. All problems of all files are collected;
//! a rule set is produced only when there is no error.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::check;
use crate::compile::{self, RuleSet};
use crate::diagnostic::{self, Code, Diagnostic, FileId, Severity, Sources, Span};
use crate::model::RulePack;
use crate::schema::{self, Schema};
use crate::script;
use crate::source::{self, Document};
use serde_json::Value;

/// The outcome of loading: every diagnostic, the sources to render them, and the
/// rule set if nothing was an error.
pub struct Loaded<T> {
    /// Files read, for rendering diagnostics.
    pub sources: Sources,
    /// Every problem found, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// How many files were checked.
    pub files_checked: usize,
    /// The result, when there was no error.
    pub value: Option<T>,
}

impl<T> Loaded<T> {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// The pack files under `paths`: each directory's `*.yaml` and `*.yml` files (not
/// its subdirectories, where golden tests live), and each file as given.
pub fn pack_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| (path.clone(), e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Loads, checks and compiles the packs under `paths`.
pub fn load_rules(paths: &[PathBuf]) -> Loaded<RuleSet> {
    let mut sources = Sources::default();
    let mut diagnostics = Vec::new();
    let files = match pack_files(paths) {
        Ok(files) => files,
        Err((path, e)) => {
            let file = sources.add(path.display().to_string(), String::new());
            diagnostics.push(
                Diagnostic::error(Code::Io, format!("cannot read `{}`: {e}", path.display()))
                    .in_file(file),
            );
            return Loaded {
                sources,
                diagnostics,
                files_checked: 0,
                value: None,
            };
        }
    };
    if files.is_empty() {
        // A directory emptied by a bad deploy or a wrong `rules:` path loads as a
        // rule set that does nothing; it is an error, so the service does not
        // start (or reload) on it and sync nothing in silence.
        let dirs: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        diagnostics.push(
            Diagnostic::error(
                Code::NoPacks,
                format!("no rule packs in `{}`", dirs.join("`, `")),
            )
            .with_help(
                "a pack is a `*.yaml` file in the directory itself; add one, or point \
                 `rules` at the directory that holds them",
            ),
        );
    }
    let mut texts = Vec::with_capacity(files.len());
    let all = files.len();
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => texts.push((path, text)),
            Err(e) => {
                let file = sources.add(path.display().to_string(), String::new());
                diagnostics.push(
                    Diagnostic::error(Code::Io, format!("cannot read `{}`: {e}", path.display()))
                        .in_file(file),
                );
            }
        }
    }
    let mut loaded = load_texts(sources, diagnostics, texts);
    loaded.files_checked = all;
    loaded
}

/// [`load_rules`] for packs already read: each file's path (for messages, and for
/// the `.rhai` files it names) and text. What `pcsync` loads from disk goes through
/// here, and so does the fuzzer.
pub fn load_pack_texts(files: Vec<(PathBuf, String)>) -> Loaded<RuleSet> {
    load_texts(Sources::default(), Vec::new(), files)
}

fn load_texts(
    mut sources: Sources,
    mut diagnostics: Vec<Diagnostic>,
    files: Vec<(PathBuf, String)>,
) -> Loaded<RuleSet> {
    let files_checked = files.len();
    let engine = script::shared();
    let mut hasher = Sha256::new();
    let mut parsed: Vec<(FileId, PathBuf, Document, RulePack)> = Vec::new();
    for (path, text) in files {
        let path = &path;
        let Some((file, doc)) = parse_document(&mut sources, &mut diagnostics, path, text) else {
            continue;
        };
        hasher.update(path.display().to_string().as_bytes());
        hasher.update(sources.text(file).as_bytes());
        let Some(doc) = validate_structure(Schema::rule_pack(), file, doc, &mut diagnostics) else {
            continue;
        };
        match schema::deserialize::<RulePack>(file, &doc) {
            Ok(pack) => {
                diagnostics.extend(check::check_pack(file, &doc, &pack));
                parsed.push((file, path.clone(), doc, pack));
            }
            Err(d) => diagnostics.push(*d),
        }
    }
    let set_view: Vec<(FileId, &Document, &RulePack)> =
        parsed.iter().map(|(f, _, d, p)| (*f, d, p)).collect();
    diagnostics.extend(check::check_set(&sources, &set_view));
    let mut packs = Vec::new();
    for (file, path, doc, pack) in parsed {
        let (compiled, found) = compile::compile(&engine, &mut sources, file, &path, &doc, pack);
        diagnostics.extend(found);
        packs.extend(compiled);
    }
    for pack in &packs {
        for script in &pack.script_files {
            if let Ok(text) = std::fs::read(script) {
                hasher.update(&text);
            }
        }
    }
    mask_url_user_info(&mut sources, &mut diagnostics);
    diagnostic::sort(&mut diagnostics);
    let failed = diagnostics.iter().any(Diagnostic::is_error);
    let version = hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    Loaded {
        sources,
        diagnostics,
        files_checked,
        value: (!failed).then(|| RuleSet {
            packs,
            engine,
            version,
        }),
    }
}

/// Runs the schema over `doc`. Misspelt keys alone do not stop the later passes: they
/// are reported, dropped, and the rest of the file is checked too.
fn validate_structure(
    kind: &Schema,
    file: FileId,
    mut doc: Document,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Document> {
    let errors = schema::validate(kind, file, &doc);
    if errors.is_empty() {
        return Some(doc);
    }
    let only_unknown_keys = errors
        .iter()
        .all(|d| d.code == Code::UnknownField && d.pointer.is_some());
    let pointers: Vec<String> = errors.iter().filter_map(|d| d.pointer.clone()).collect();
    diagnostics.extend(errors);
    if !only_unknown_keys {
        return None;
    }
    schema::prune_unknown_fields(&mut doc, &pointers);
    schema::validate(kind, file, &doc).is_empty().then_some(doc)
}

fn read_document(
    sources: &mut Sources,
    diagnostics: &mut Vec<Diagnostic>,
    path: &Path,
) -> Option<(FileId, Document)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            let file = sources.add(path.display().to_string(), String::new());
            diagnostics.push(
                Diagnostic::error(Code::Io, format!("cannot read `{}`: {e}", path.display()))
                    .in_file(file),
            );
            return None;
        }
    };
    parse_document(sources, diagnostics, path, text)
}

/// Registers a file's text and parses it as YAML with positions.
fn parse_document(
    sources: &mut Sources,
    diagnostics: &mut Vec<Diagnostic>,
    path: &Path,
    text: String,
) -> Option<(FileId, Document)> {
    let file = sources.add(path.display().to_string(), text);
    let (doc, found) = source::parse(file, sources.text(file));
    let syntax_failed = doc.is_none();
    diagnostics.extend(found);
    if syntax_failed {
        return None;
    }
    doc.map(|d| (file, d))
}

/// How a `${VAR}` that is not set is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingEnv {
    /// An error: the service cannot start without it.
    Error,
    /// A warning: `pcsync check` validates configs in CI, where secrets are absent.
    Warning,
}

/// Loads a YAML document at `path` (a service config), interpolating `${VAR}` from
/// `env`, validating it against `schema` and deserializing it; `check` adds the
/// document's own semantic checks (the runtime's config checks its address and
/// directories).
///
/// `secrets` are the JSON pointers of values no diagnostic may show (tokens,
/// shared secrets): a message about one says `(hidden)` instead of the value, and a
/// value written in the file is masked in the source snippets.
pub fn load_document<T: serde::de::DeserializeOwned>(
    path: &Path,
    schema: &Schema,
    secrets: &[&str],
    env: &dyn Fn(&str) -> Option<String>,
    missing: MissingEnv,
    check: impl FnOnce(&T, &Document, FileId, &mut Vec<Diagnostic>),
) -> Loaded<T> {
    let mut sources = Sources::default();
    let mut diagnostics = Vec::new();
    let Some((file, mut doc)) = read_document(&mut sources, &mut diagnostics, path) else {
        // Not YAML: mask what looks like a secret's line (`client_secret: …`).
        if let Some(file) = diagnostics.iter().find_map(|d| d.file) {
            let spans = secret_lines(sources.text(file), secrets);
            sources.mask(file, &spans);
        }
        mask_url_user_info(&mut sources, &mut diagnostics);
        return Loaded {
            sources,
            diagnostics,
            files_checked: 1,
            value: None,
        };
    };
    let severity = match missing {
        MissingEnv::Error => Severity::Error,
        MissingEnv::Warning => Severity::Warning,
    };
    // The secrets: the ones named, and whatever is under a key that names one (a
    // misspelt `client_secert`, a key the config does not have).
    let mut secrets: Vec<String> = secrets.iter().map(|p| p.to_string()).collect();
    secrets.extend(crate::redact::secret_pointers(&doc.value));
    secrets.sort();
    secrets.dedup();
    // Secrets written in the file itself (not `${VAR}` references) are masked.
    let written: Vec<Span> = secrets
        .iter()
        .filter(|p| {
            doc.value
                .pointer(p)
                .is_some_and(|v| !v.is_object() && !v.is_array())
        })
        .map(|p| doc.value_span(p))
        .filter(|span| {
            sources
                .text(file)
                .get(span.start..span.end)
                .is_some_and(|t| !t.is_empty() && !t.contains("${"))
        })
        .collect();
    let mut unset = Vec::new();
    interpolate(&mut doc.value, String::new(), env, &mut unset);
    let hidden: Vec<String> = secrets
        .iter()
        .filter_map(|p| match doc.value.pointer(p)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .filter(|v| !v.is_empty())
        .collect();
    for (pointer, var) in unset {
        let mut d = Diagnostic::error(
            Code::EnvVar,
            format!("environment variable `{var}` is not set"),
        )
        .at(file, doc.value_span(&pointer))
        .with_help(format!(
            "set `{var}`, or write `${{{var}:-default}}` to give a default"
        ));
        d.severity = severity;
        diagnostics.push(d);
    }
    let mut value = None;
    if let Some(doc) = validate_structure(schema, file, doc, &mut diagnostics) {
        match schema::deserialize::<T>(file, &doc) {
            Ok(loaded) => {
                check(&loaded, &doc, file, &mut diagnostics);
                value = Some(loaded);
            }
            Err(d) => diagnostics.push(*d),
        }
    }
    if !hidden.is_empty() {
        for d in &mut diagnostics {
            for text in [Some(&mut d.message), d.label.as_mut(), d.help.as_mut()]
                .into_iter()
                .flatten()
            {
                *text = redact(text, &hidden);
            }
        }
    }
    sources.mask(file, &written);
    mask_url_user_info(&mut sources, &mut diagnostics);
    diagnostic::sort(&mut diagnostics);
    let failed = diagnostics.iter().any(Diagnostic::is_error);
    Loaded {
        sources,
        diagnostics,
        files_checked: 1,
        value: value.filter(|_| !failed),
    }
}

/// In a file that does not parse: the values on lines that set a secret's key
/// (`  shared_secret: abc`, or any key that names a secret), unless they are a
/// `${VAR}` reference.
fn secret_lines(text: &str, secrets: &[&str]) -> Vec<Span> {
    let keys: Vec<&str> = secrets
        .iter()
        .filter_map(|p| p.rsplit('/').next())
        .collect();
    let mut spans = Vec::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some((key, rest)) = trimmed.split_once(':') {
            let name = key
                .trim_start_matches("- ")
                .trim()
                .trim_matches(['"', '\'']);
            let value = rest.trim_end_matches(['\n', '\r']);
            if (keys.contains(&name) || crate::redact::secret_key(name))
                && !value.trim().is_empty()
                && !value.contains("${")
            {
                let at = start + indent + key.len() + 1;
                spans.push(Span {
                    start: at,
                    end: at + value.len(),
                });
            }
        }
        start += line.len();
    }
    spans
}

/// Masks the user info of every URL (`https://user:pass@host`) in the sources'
/// snippets and in the diagnostics' text.
fn mask_url_user_info(sources: &mut Sources, diagnostics: &mut [Diagnostic]) {
    sources.mask_each(|_, text| crate::redact::url_user_info(text));
    for d in diagnostics {
        for text in [Some(&mut d.message), d.label.as_mut(), d.help.as_mut()]
            .into_iter()
            .flatten()
        {
            if let std::borrow::Cow::Owned(masked) = crate::redact::mask_urls(text) {
                *text = masked;
            }
        }
    }
}

/// `text` with each of `secrets` replaced by `(hidden)`: quoted (as schema errors
/// show values) and in backticks always, bare when it is long enough not to be
/// mistaken for part of a word.
fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        let quoted = serde_json::to_string(secret).unwrap_or_default();
        text = text
            .replace(&quoted, "(hidden)")
            .replace(&format!("`{secret}`"), "(hidden)");
        if secret.chars().count() >= 4 {
            text = text.replace(secret.as_str(), "(hidden)");
        }
    }
    text
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string; `$$` stands for `$`.
/// Records the pointer and name of each variable that is not set.
fn interpolate(
    value: &mut serde_json::Value,
    pointer: String,
    env: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<(String, String)>,
) {
    match value {
        serde_json::Value::String(s) => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(i) = rest.find('$') {
                out.push_str(&rest[..i]);
                rest = &rest[i..];
                if let Some(after) = rest.strip_prefix("$$") {
                    out.push('$');
                    rest = after;
                } else if let Some(end) = rest.strip_prefix("${").and_then(|r| r.find('}')) {
                    let inner = &rest[2..2 + end];
                    let (name, default) = match inner.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (inner, None),
                    };
                    match env(name).or_else(|| default.map(str::to_string)) {
                        Some(v) => out.push_str(&v),
                        None => {
                            // Left as written, so the rest of the checks see a value.
                            out.push_str(&rest[..3 + end]);
                            unset.push((pointer.clone(), name.to_string()));
                        }
                    }
                    rest = &rest[3 + end..];
                } else {
                    out.push('$');
                    rest = &rest[1..];
                }
            }
            out.push_str(rest);
            *s = out;
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, format!("{pointer}/{i}"), env, unset);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                interpolate(v, source::pointer_join(&pointer, k), env, unset);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn interpolation_replaces_defaults_and_escapes() {
        let env = |name: &str| (name == "TOKEN").then(|| "secret".to_string());
        let mut v = json!({"a": "${TOKEN}", "b": "x-${MISSING:-dflt}", "c": "$$5", "d": "${NOPE}"});
        let mut unset = Vec::new();
        interpolate(&mut v, String::new(), &env, &mut unset);
        assert_eq!(
            v,
            json!({"a": "secret", "b": "x-dflt", "c": "$5", "d": "${NOPE}"})
        );
        assert_eq!(unset, vec![("/d".to_string(), "NOPE".to_string())]);
    }

    // `check::currency_conversion`, through the whole pipeline.
    #[test]
    fn a_conversion_names_known_currencies_and_reads_a_mapped_one() {
        let pack = |rates: &str, currency_mapping: &str| {
            let text = format!(
                "pack: p\non: {{ hubspot: deal.propertyChange }}\nneeds: {{ deal: [amount, deal_currency_code], opportunity: true }}\n\
                 convert_currency: {{ to: USD, rates: {{ {rates} }} }}\nmap:\n  amount: {{ to: \"Project.ExpectedCustomerSpend[0].Amount\" }}\n{currency_mapping}"
            );
            load_pack_texts(vec![("p.yaml".into(), text)])
                .diagnostics
                .into_iter()
                .map(|d| d.message)
                .collect::<Vec<_>>()
        };
        let currency = "  deal_currency_code: { to: \"Project.ExpectedCustomerSpend[0].CurrencyCode\", allow: [USD, EUR] }\n";
        assert_eq!(pack("GBP: 1.27", currency), Vec::<String>::new());
        let typo = pack("GPB: 1.27", currency);
        assert!(
            typo.iter().any(|m| m.contains("`GPB` is not an ISO 4217")),
            "{typo:?}"
        );
        let unread = pack("GBP: 1.27", "");
        assert!(
            unread.iter().any(|m| m.contains("needs a mapping to")),
            "{unread:?}"
        );
    }
}
