//! Compiles a pack's embedded code once per load: Rhai guards and scripts, templates
//! and JSONPaths. Every piece is checked against the variables its place in the pack
//! provides, so a template that names `opportunity` in a pack that never loads it is
//! caught by `pcsync check`, not in production.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use minijinja::Environment;
use rhai::{AST, Dynamic, Engine, ParseErrorType, Scope};
use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, FileId, Sources, Span, did_you_mean};
use crate::embed;
use crate::model::{RulePack, Template};
use crate::partner_central::{self, PathError};
use crate::source::{Document, pointer_join};
use crate::template;

/// A pack with its code compiled, ready to evaluate.
pub struct CompiledPack {
    /// The pack as written.
    pub pack: RulePack,
    /// The file it came from.
    pub file: FileId,
    /// Its path on disk.
    pub path: PathBuf,
    /// Rhai code, keyed by the JSON pointer of where it is written (`/when/0/if`).
    pub scripts: HashMap<String, CompiledScript>,
    /// Templates, each registered under the JSON pointer of where it is written.
    pub templates: Environment<'static>,
    /// Watched JSONPaths by watch name.
    pub watches: IndexMap<String, Watch>,
    /// `.rhai` files the pack refers to (watched for reload too).
    pub script_files: Vec<PathBuf>,
    /// The model shape of each Partner Central field the pack writes, resolved once.
    pub targets: HashMap<String, &'static crate::partner_central::Shape>,
    /// The variables each template reads, by template pointer (only those are
    /// converted when it renders).
    pub template_uses: HashMap<String, Vec<String>>,
    /// Whether anything but a watch over it reads the AWS summary (a mapping from
    /// `aws_summary.…`, a script, a template, a watch over the whole context): only
    /// then does a run without one stop at `needs`. Watches over the summary alone
    /// keep their last-known values, and the pack's other watches run.
    pub summary_outside_watches: bool,
}

impl std::fmt::Debug for CompiledPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPack")
            .field("pack", &self.pack.name)
            .field("path", &self.path)
            .field("scripts", &self.scripts.len())
            .field("watches", &self.watches.len())
            .finish()
    }
}

/// A watched JSONPath, with what planning asks of it worked out once here. One that
/// starts at a variable (`$.aws_summary.Insights…`) also runs as the rest of the
/// path (`$.Insights…`) on that variable alone, which selects the same values
/// without copying every variable into one root.
pub struct Watch {
    /// The path as written, over the root of all variables.
    pub query: JpQuery,
    /// The variable it reads (`aws_summary`), when the path names one.
    pub source: Option<String>,
    /// The variable it starts at, and the rest of the path from there.
    pub within: Option<(&'static str, JpQuery)>,
    /// That rest as plain member and index steps, when it is only those
    /// (`.Insights.OpportunityQuality.Score`, `[0]`): walked directly, with no
    /// query engine and no result paths built.
    pub steps: Option<Vec<Step>>,
    /// Whether it names at most one value (no filter, wildcard, slice or descendant
    /// step): the watch then holds that value, not a list.
    pub singular: bool,
}

impl Watch {
    fn new(path: &str, query: JpQuery) -> Watch {
        let (source, _) = crate::check::jsonpath_members(path);
        let within = source.as_deref().and_then(|member| {
            let member = crate::context::VARIABLES.iter().find(|n| **n == member)?;
            let tail = &path["$.".len() + member.len()..];
            // Member and index steps only; a descent (`..`) keeps the whole root.
            let simple = tail.is_empty()
                || tail.starts_with('[')
                || (tail.starts_with('.') && !tail.starts_with(".."));
            if !simple {
                return None;
            }
            let query = jsonpath_rust::parser::parse_json_path(&format!("${tail}")).ok()?;
            Some((*member, query))
        });
        let singular = !(path.contains("[?")
            || path.contains('*')
            || path.contains("..")
            || path.contains(':'));
        let steps = within.as_ref().and_then(|(_, rest)| {
            rest.segments
                .iter()
                .map(|segment| match segment {
                    Segment::Selector(Selector::Name(name)) => Some(Step::Member(name.clone())),
                    Segment::Selector(Selector::Index(i)) => Some(Step::Index(*i)),
                    _ => None,
                })
                .collect()
        });
        Watch {
            query,
            source,
            within,
            steps,
            singular,
        }
    }
}

/// One step of a plain path.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// An object's member.
    Member(String),
    /// An array's item; a negative index counts from the end.
    Index(i64),
}

/// The value `steps` lead to from `value`, as JSONPath's member and index
/// selectors find it (RFC 9535 2.3.1, 2.3.3), or `None`.
pub fn walk<'v>(steps: &[Step], value: &'v Value) -> Option<&'v Value> {
    steps.iter().try_fold(value, |v, step| match step {
        Step::Member(name) => v.as_object()?.get(name),
        Step::Index(i) => {
            let items = v.as_array()?;
            let at = if *i >= 0 {
                usize::try_from(*i).ok()?
            } else {
                items
                    .len()
                    .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
            };
            items.get(at)
        }
    })
}

/// A compiled Rhai script and the variables it refers to (only those are converted
/// into Rhai values when it runs).
pub struct CompiledScript {
    /// The compiled code.
    pub ast: AST,
    /// The context variables the code mentions.
    pub uses: Vec<String>,
    /// The deal properties the code reads as `deal.NAME`, when that is the only way
    /// it uses `deal` (then only those are converted); `None` for all of them.
    pub deal_fields: Option<Vec<String>>,
}

/// The properties `code` reads as `deal.NAME`, or `None` when it uses `deal` in any
/// other way (`deal["x"]`, `deal.keys()`, passing `deal` along).
fn deal_fields(code: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let bytes = code.as_bytes();
    for (i, _) in code.match_indices("deal") {
        let before_ok = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b'.');
        let after = &code[i + 4..];
        let after_ok = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !(before_ok && after_ok) {
            continue;
        }
        let name: String = after
            .strip_prefix('.')?
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let rest = &after[1 + name.len()..];
        if name.is_empty() || rest.trim_start().starts_with('(') {
            return None;
        }
        if !fields.contains(&name) {
            fields.push(name);
        }
    }
    Some(fields)
}

/// The variables of `vars` that `code` mentions as whole words.
fn uses(code: &str, vars: &[String]) -> Vec<String> {
    let words: std::collections::HashSet<&str> = code
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    vars.iter()
        .filter(|v| words.contains(v.as_str()))
        .cloned()
        .collect()
}

/// Context variables a pack loads through `needs`, and how to ask for each.
const NEEDED_VARIABLES: &[(&str, &str)] = &[
    ("opportunity", "add `opportunity: true` under `needs`"),
    ("aws_summary", "add `aws_summary: true` under `needs`"),
    ("previous", "add `previous: true` under `needs`"),
    (
        "snapshots",
        "list snapshot templates under `needs.snapshots`, e.g. `[OpportunitySummaryView]`",
    ),
];

/// Variables that exist only in some places of a pack, and where.
const PLACE_VARIABLES: &[(&str, &str)] = &[
    (
        "value",
        "`value` exists in mapping scripts and `unmapped_note`",
    ),
    (
        "item",
        "`item` exists in notification rules that have `for_each`, and in channel templates",
    ),
    ("changes", "`changes` exists in `on_success`"),
    ("not_sent", "`not_sent` exists in `on_success`"),
    ("result", "`result` exists in `on_success`"),
    ("error", "`error` exists in `on_error`"),
    (
        "missing",
        "`missing` exists in `create.incomplete` and `update.incomplete`",
    ),
    (
        "missing_fields",
        "`missing_fields` exists in `create.incomplete` and `update.incomplete`",
    ),
    (
        "priority",
        "`priority` exists in notification templates and channels",
    ),
    ("title", "`title` exists in channel templates"),
    ("body", "`body` exists in channel templates"),
    ("notification", "`notification` exists in channel templates"),
];

/// Template globals that minijinja provides.
const TEMPLATE_GLOBALS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "loop",
    "self",
    "super",
    "varargs",
    "kwargs",
];

/// Where a piece of embedded code stands, and what it may refer to.
struct Site {
    pointer: String,
    vars: Vec<String>,
}

/// Compiles one pack. Returns the compiled pack when there were no errors.
pub fn compile(
    engine: &Engine,
    sources: &mut Sources,
    file: FileId,
    path: &Path,
    doc: &Document,
    pack: RulePack,
) -> (Option<CompiledPack>, Vec<Diagnostic>) {
    let mut c = Compiler {
        engine,
        file,
        text: sources.text(file).to_string(),
        doc,
        pack: &pack,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        diagnostics: Vec::new(),
        scripts: HashMap::new(),
        templates: template::environment(),
        watches: IndexMap::new(),
        script_files: Vec::new(),
        template_uses: HashMap::new(),
    };
    c.run(sources);
    let Compiler {
        diagnostics,
        scripts,
        templates,
        watches,
        script_files,
        template_uses,
        ..
    } = c;
    if diagnostics.iter().any(Diagnostic::is_error) {
        return (None, diagnostics);
    }
    let root = if pack.create.is_some() {
        partner_central::CREATE_OPPORTUNITY
    } else {
        partner_central::UPDATE_OPPORTUNITY
    };
    let targets = pack
        .map
        .values()
        .filter_map(|m| m.to.as_ref().map(|t| t.0.clone()))
        .chain(pack.set.keys().cloned())
        .filter_map(|path| {
            partner_central::resolve(root, &path)
                .ok()
                .map(|shape| (path, shape))
        })
        .collect();
    const SUMMARY: &str = "aws_summary";
    let summary_outside_watches = pack
        .map
        .values()
        .filter_map(|m| m.from.as_ref())
        .any(|from| from.as_str().starts_with("aws_summary."))
        || scripts
            .values()
            .any(|s| s.uses.iter().any(|u| u == SUMMARY))
        || template_uses.values().flatten().any(|u| u == SUMMARY)
        || watches.values().any(|w| w.source.is_none());
    let compiled = CompiledPack {
        template_uses,
        summary_outside_watches,
        targets,
        pack,
        file,
        path: path.to_path_buf(),
        scripts,
        templates,
        watches,
        script_files,
    };
    (Some(compiled), diagnostics)
}

struct Compiler<'a> {
    engine: &'a Engine,
    file: FileId,
    text: String,
    doc: &'a Document,
    pack: &'a RulePack,
    dir: PathBuf,
    diagnostics: Vec<Diagnostic>,
    scripts: HashMap<String, CompiledScript>,
    templates: Environment<'static>,
    watches: IndexMap<String, Watch>,
    script_files: Vec<PathBuf>,
    template_uses: HashMap<String, Vec<String>>,
}

impl Compiler<'_> {
    fn run(&mut self, sources: &mut Sources) {
        let pack = self.pack;
        let base = self.base_vars();
        let with = |extra: &[&str]| -> Vec<String> {
            let mut v = base.clone();
            v.extend(extra.iter().map(|s| s.to_string()));
            v
        };

        for (i, _) in pack.when.iter().enumerate() {
            self.rhai(
                &Site {
                    pointer: format!("/when/{i}/if"),
                    vars: base.clone(),
                },
                true,
            );
        }

        for (prop, mapping) in &pack.map {
            let at = pointer_join("/map", prop);
            if mapping.condition.is_some() {
                self.rhai(
                    &Site {
                        pointer: format!("{at}/if"),
                        vars: base.clone(),
                    },
                    true,
                );
            }
            let vars = with(&["value"]);
            if mapping.script.is_some() {
                self.rhai(
                    &Site {
                        pointer: format!("{at}/script"),
                        vars: vars.clone(),
                    },
                    false,
                );
            }
            if let Some(file) = &mapping.script_file {
                self.rhai_file(sources, &format!("{at}/script_file"), file, &vars);
            }
            if let Some(note) = &mapping.unmapped_note {
                self.template(
                    &Site {
                        pointer: format!("{at}/unmapped_note"),
                        vars,
                    },
                    note,
                );
            }
        }

        for (field, value) in &pack.set {
            if let Value::String(s) = value
                && template::is_template(s)
            {
                let site = Site {
                    pointer: pointer_join("/set", field),
                    vars: base.clone(),
                };
                self.template(&site, &Template(s.clone()));
            }
        }

        if let Some(create) = &pack.create {
            let site = Site {
                pointer: "/create/client_token".into(),
                vars: base.clone(),
            };
            self.template(&site, &create.client_token);
            for (i, t) in create.associate_solutions.iter().enumerate() {
                let site = Site {
                    pointer: format!("/create/associate_solutions/{i}"),
                    vars: base.clone(),
                };
                self.template(&site, t);
            }
            if let Some(start) = &create.start_engagement
                && start.condition.is_some()
            {
                self.rhai(
                    &Site {
                        pointer: "/create/start_engagement/if".into(),
                        vars: base.clone(),
                    },
                    true,
                );
            }
        }

        for (name, path) in &pack.watch {
            self.jsonpath(&pointer_join("/watch", name), path.as_str());
        }

        let watch_names: Vec<&str> = pack.watch.keys().map(String::as_str).collect();
        let any_for_each = pack.notify.iter().any(|n| n.for_each.is_some());
        for (i, rule) in pack.notify.iter().enumerate() {
            let at = format!("/notify/{i}");
            let mut vars = with(&watch_names);
            if rule.for_each.is_some() {
                vars.push("item".into());
            }
            if let Some(when) = &rule.when
                && when.condition.is_some()
            {
                self.rhai(
                    &Site {
                        pointer: format!("{at}/when/if"),
                        vars: vars.clone(),
                    },
                    true,
                );
            }
            if let crate::model::PrioritySpec::Computed(rules) = &rule.priority {
                for (level, cond) in [
                    ("high", &rules.high),
                    ("medium", &rules.medium),
                    ("low", &rules.low),
                ] {
                    if cond.is_some() {
                        self.rhai(
                            &Site {
                                pointer: format!("{at}/priority/{level}"),
                                vars: vars.clone(),
                            },
                            true,
                        );
                    }
                }
            }
            vars.push("priority".into());
            if let Some(key) = &rule.key {
                self.template(
                    &Site {
                        pointer: format!("{at}/key"),
                        vars: vars.clone(),
                    },
                    key,
                );
            }
            self.template(
                &Site {
                    pointer: format!("{at}/title"),
                    vars: vars.clone(),
                },
                &rule.title,
            );
            if let Some(body) = &rule.body {
                self.template(
                    &Site {
                        pointer: format!("{at}/body"),
                        vars: vars.clone(),
                    },
                    body,
                );
            }
        }

        let mut channel_vars = with(&watch_names);
        channel_vars.extend(["priority", "title", "body", "notification"].map(String::from));
        if any_for_each {
            channel_vars.push("item".into());
        }
        let ch = &pack.channels;
        let mut channel_templates: Vec<(String, &Template)> = Vec::new();
        if let Some(task) = &ch.task {
            channel_templates.push(("/channels/task/assign_to".into(), &task.assign_to));
            if let Some(b) = &task.body {
                channel_templates.push(("/channels/task/body".into(), b));
            }
        }
        if let Some(b) = ch.note.as_ref().and_then(|n| n.body.as_ref()) {
            channel_templates.push(("/channels/note/body".into(), b));
        }
        if let Some(sns) = &ch.sns {
            if let Some(s) = &sns.subject {
                channel_templates.push(("/channels/sns/subject".into(), s));
            }
            if let Some(m) = &sns.message {
                channel_templates.push(("/channels/sns/message".into(), m));
            }
            for (k, t) in &sns.attributes {
                channel_templates.push((pointer_join("/channels/sns/attributes", k), t));
            }
        }
        for (pointer, t) in channel_templates {
            self.template(
                &Site {
                    pointer,
                    vars: channel_vars.clone(),
                },
                t,
            );
        }

        let incomplete = pack.create.as_ref().map(|c| &c.incomplete);
        let update_incomplete = pack.update.as_ref().map(|u| &u.incomplete);
        for (section, extra, effects) in [
            (
                "on_success",
                &["changes", "not_sent", "result"][..],
                Some(&pack.on_success),
            ),
            ("on_error", &["error"][..], Some(&pack.on_error)),
            (
                "create/incomplete",
                &["missing", "missing_fields"][..],
                incomplete,
            ),
            (
                "update/incomplete",
                &["missing", "missing_fields"][..],
                update_incomplete,
            ),
        ] {
            let Some(effects) = effects else { continue };
            let vars = with(extra);
            for (prop, t) in &effects.set_deal {
                let at = pointer_join(&format!("/{section}/set_deal"), prop);
                self.template(
                    &Site {
                        pointer: at,
                        vars: vars.clone(),
                    },
                    t,
                );
            }
            if let Some(note) = &effects.note {
                self.template(
                    &Site {
                        pointer: format!("/{section}/note"),
                        vars: vars.clone(),
                    },
                    note,
                );
            }
        }
    }

    /// Variables every place in the pack sees.
    fn base_vars(&self) -> Vec<String> {
        let needs = &self.pack.needs;
        let mut v: Vec<String> = ["deal", "event", "settings", "thresholds", "now"]
            .map(String::from)
            .into();
        for (name, loaded) in [
            ("opportunity", needs.opportunity),
            ("aws_summary", needs.aws_summary),
            ("previous", needs.previous),
            ("snapshots", !needs.snapshots.is_empty()),
            ("company", !needs.company.is_empty()),
        ] {
            if loaded {
                v.push(name.into());
            }
        }
        v
    }

    fn scope(vars: &[String]) -> Scope<'static> {
        let mut scope = Scope::new();
        for v in vars {
            scope.push_dynamic(v.clone(), Dynamic::UNIT);
        }
        scope
    }

    fn rhai(&mut self, site: &Site, expression: bool) {
        let Some(code) = self
            .doc
            .value
            .pointer(&site.pointer)
            .and_then(Value::as_str)
        else {
            return;
        };
        let scope = Self::scope(&site.vars);
        let result = if expression {
            self.engine.compile_expression_with_scope(&scope, code)
        } else {
            self.engine.compile_with_scope(&scope, code)
        };
        match result {
            Ok(ast) => {
                let uses = uses(code, &site.vars);
                self.scripts.insert(
                    site.pointer.clone(),
                    CompiledScript {
                        deal_fields: deal_fields(code),
                        ast,
                        uses,
                    },
                );
            }
            Err(err) => {
                let value_span = self.doc.value_span(&site.pointer);
                let (line, col) = (
                    err.1.line().unwrap_or(1),
                    err.1.position().unwrap_or(1).saturating_sub(1),
                );
                let (text, file) = (self.text.clone(), self.file);
                let d = rhai_diagnostic(&err.0, &site.vars);
                let len = match &*err.0 {
                    ParseErrorType::VariableUndefined(name) => name.chars().count(),
                    _ => 1,
                };
                self.diagnostics
                    .push(d.at(file, embed::span(&text, value_span, line, col, len)));
            }
        }
    }

    fn rhai_file(&mut self, sources: &mut Sources, pointer: &str, relative: &str, vars: &[String]) {
        let path = self.dir.join(relative);
        let code = match std::fs::read_to_string(&path) {
            Ok(code) => code,
            Err(e) => {
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::ScriptFile,
                        format!("cannot read script file `{relative}`: {e}"),
                    )
                    .at(self.file, self.doc.value_span(pointer))
                    .with_help(format!(
                        "the path is relative to the pack's folder: {}",
                        self.dir.display()
                    )),
                );
                return;
            }
        };
        self.script_files.push(path.clone());
        let script_file = sources.add(path.display().to_string(), code.clone());
        match self.engine.compile_with_scope(&Self::scope(vars), &code) {
            Ok(ast) => {
                let uses = uses(&code, vars);
                self.scripts.insert(
                    pointer.to_string(),
                    CompiledScript {
                        deal_fields: deal_fields(&code),
                        ast,
                        uses,
                    },
                );
            }
            Err(err) => {
                let (line, col) = (
                    err.1.line().unwrap_or(1),
                    err.1.position().unwrap_or(1).saturating_sub(1),
                );
                // A .rhai file has no YAML around it: lines map one to one.
                let at = line_offset(&code, line, col);
                self.diagnostics.push(rhai_diagnostic(&err.0, vars).at(
                    script_file,
                    Span::new(at, (at + 1).min(code.len().max(at + 1))),
                ));
            }
        }
    }

    fn template(&mut self, site: &Site, template: &Template) {
        let source = template.as_str();
        let value_span = self.doc.value_span(&site.pointer);
        if let Err(e) = self
            .templates
            .add_template_owned(site.pointer.clone(), source.to_string())
        {
            let (line, col) = match e.range() {
                Some(r) => embed::line_col(source, r.start),
                None => (e.line().unwrap_or(1), 0),
            };
            let detail = e
                .detail()
                .map(str::to_string)
                .unwrap_or_else(|| e.kind().to_string());
            self.diagnostics.push(
                Diagnostic::error(
                    Code::TemplateSyntax,
                    format!("template syntax error: {detail}"),
                )
                .at(self.file, embed::span(&self.text, value_span, line, col, 2))
                .with_help(
                    "templates use Jinja syntax: `{{ deal.dealname }}`, `{% if … %}…{% endif %}`",
                ),
            );
            return;
        }
        for (at, name) in template::filters_used(source) {
            if !template::filters().any(|f| f == name) {
                let (line, col) = embed::line_col(source, at);
                let mut d =
                    Diagnostic::error(Code::TemplateSyntax, format!("unknown filter `{name}`")).at(
                        self.file,
                        embed::span(&self.text, value_span, line, col, name.chars().count()),
                    );
                d.help = did_you_mean(&name, template::filters())
                    .or_else(|| Some("see the filters in the README".into()));
                self.diagnostics.push(d);
            }
        }
        let tmpl = self
            .templates
            .get_template(&site.pointer)
            .expect("just added");
        let mut names: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
        names.sort();
        let mut roots: Vec<String> = names
            .iter()
            .map(|n| n.split('.').next().unwrap_or_default().to_string())
            .collect();
        roots.dedup();
        self.template_uses.insert(site.pointer.clone(), roots);
        for name in names {
            if let Some(mut d) = self.check_reference(&name, &site.vars) {
                let at = source.find(&name).unwrap_or(0);
                let (line, col) = embed::line_col(source, at);
                d = d.at(
                    self.file,
                    embed::span(&self.text, value_span, line, col, name.chars().count()),
                );
                self.diagnostics.push(d);
            }
        }
    }

    /// Checks a dotted variable reference (`deal.dealname`, `opportunity.LifeCycle.Stage`).
    fn check_reference(&self, dotted: &str, vars: &[String]) -> Option<Diagnostic> {
        let mut parts = dotted.split('.');
        let root = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        if TEMPLATE_GLOBALS.contains(&root) {
            return None;
        }
        if !vars.iter().any(|v| v == root) {
            return Some(unknown_variable(Code::TemplateUnknownVariable, root, vars));
        }
        let needs = &self.pack.needs;
        match (root, rest.first()) {
            ("deal", Some(prop)) => {
                let loaded = *prop == "id"
                    || *prop == needs.link_property
                    || needs.deal.iter().any(|p| p == prop);
                (!loaded).then(|| {
                    Diagnostic::error(
                        Code::MissingContext,
                        format!("deal property `{prop}` is not loaded"),
                    )
                    .with_help(format!("add `{prop}` to `needs.deal`"))
                })
            }
            ("opportunity", Some(_)) => {
                model_path(partner_central::OPPORTUNITY, "opportunity", &rest)
            }
            ("aws_summary", Some(_)) => {
                model_path(partner_central::AWS_SUMMARY, "aws_summary", &rest)
            }
            ("settings", Some(key)) => (!self.pack.settings.contains_key(*key)).then(|| {
                let mut d =
                    Diagnostic::error(Code::UnknownReference, format!("no setting named `{key}`"));
                d.help = did_you_mean(key, self.pack.settings.keys().map(String::as_str))
                    .or_else(|| Some("declare it under `settings`".into()));
                d
            }),
            ("thresholds", Some(key)) => (!self.pack.thresholds.contains_key(*key)).then(|| {
                let mut d = Diagnostic::error(
                    Code::UnknownReference,
                    format!("no threshold named `{key}`"),
                );
                d.help = did_you_mean(key, self.pack.thresholds.keys().map(String::as_str))
                    .or_else(|| Some("declare it under `thresholds`".into()));
                d
            }),
            _ => None,
        }
    }

    fn jsonpath(&mut self, pointer: &str, path: &str) {
        match jsonpath_rust::parser::parse_json_path(path) {
            Ok(query) => {
                let name = pointer.rsplit('/').next().unwrap_or_default().to_string();
                self.watches.insert(name, Watch::new(path, query));
            }
            Err(e) => {
                let text = e.to_string();
                let col = regex::Regex::new(r"--> \d+:(\d+)")
                    .expect("valid regex")
                    .captures(&text)
                    .and_then(|c| c[1].parse::<usize>().ok())
                    .unwrap_or(1);
                let expected = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("= expected "))
                    .map(|w| w.replace('_', " "))
                    .unwrap_or_else(|| "a valid expression".into());
                let help = if col <= 1 {
                    "a JSONPath starts at `$`, e.g. `$.aws_summary.Insights.EngagementScore`"
                        .to_string()
                } else {
                    format!(
                        "expected {expected} here; JSONPath syntax is RFC 9535, e.g. `$.aws_summary.OpportunityTeam[?@.BusinessTitle == 'AWSSalesRep']`"
                    )
                };
                let span = embed::span(&self.text, self.doc.value_span(pointer), 1, col - 1, 1);
                self.diagnostics.push(
                    Diagnostic::error(Code::JsonPathSyntax, format!("invalid JSONPath `{path}`"))
                        .at(self.file, span)
                        .with_help(help),
                );
            }
        }
    }
}

fn line_offset(code: &str, line: usize, col: usize) -> usize {
    let start: usize = code
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let line_text = code[start..].split('\n').next().unwrap_or("");
    start
        + line_text
            .char_indices()
            .nth(col)
            .map_or(line_text.len(), |(i, _)| i)
}

fn rhai_diagnostic(err: &ParseErrorType, vars: &[String]) -> Diagnostic {
    match err {
        ParseErrorType::VariableUndefined(name) => {
            unknown_variable(Code::RhaiUnknownVariable, name, vars)
        }
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            let message: String = match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => text,
            };
            Diagnostic::error(Code::RhaiSyntax, format!("rhai: {message}"))
                .with_help("Rhai syntax: https://rhai.rs/book/language/")
        }
    }
}

/// A variable that is not in scope: not loaded, not available here, or unknown.
fn unknown_variable(code: Code, name: &str, vars: &[String]) -> Diagnostic {
    if let Some((_, how)) = NEEDED_VARIABLES.iter().find(|(n, _)| *n == name) {
        return Diagnostic::error(
            Code::MissingContext,
            format!("`{name}` is not loaded by this pack"),
        )
        .with_help(*how);
    }
    if let Some((_, where_)) = PLACE_VARIABLES.iter().find(|(n, _)| *n == name) {
        return Diagnostic::error(code, format!("`{name}` is not available here"))
            .with_help(*where_);
    }
    let mut d = Diagnostic::error(code, format!("unknown variable `{name}`"));
    d.help = did_you_mean(name, vars.iter().map(String::as_str)).or_else(|| {
        Some(format!(
            "available here: {}",
            vars.iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    });
    d
}

/// Checks `root.A.B` against the Partner Central model.
fn model_path(shape: &str, root: &str, rest: &[&str]) -> Option<Diagnostic> {
    let path = rest.join(".");
    match partner_central::resolve(shape, &path) {
        Ok(_) => None,
        Err(PathError::UnknownMember {
            member,
            shape,
            candidates,
        }) => Some(crate::check::unknown_member(
            Some(&format!("{root}.{path}")),
            &member,
            &shape,
            &candidates,
        )),
        // Indexing and deeper access into scalars are left to run time.
        Err(_) => None,
    }
}

/// A loaded, checked and compiled set of packs: what the service runs.
pub struct RuleSet {
    /// The packs, in file-name order.
    pub packs: Vec<CompiledPack>,
    /// The Rhai engine the packs' scripts were compiled for.
    pub engine: Arc<rhai::Engine>,
    /// A short hash of every file's content: changes whenever any pack changes.
    pub version: String,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("version", &self.version)
            .field("packs", &self.packs)
            .finish()
    }
}

impl RuleSet {
    /// The pack with this name.
    pub fn pack(&self, name: &str) -> Option<&CompiledPack> {
        self.packs.iter().find(|p| p.pack.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::{Watch, deal_fields, walk};
    use jsonpath_rust::query::js_path_process;
    use serde_json::{Value, json};

    #[test]
    fn a_watch_under_one_variable_selects_what_the_whole_path_does() {
        let root = json!({
            "deal": {"id": "101", "amount": "5"},
            "opportunity": {"LifeCycle": {"ReviewStatus": "Approved"}},
            "aws_summary": {
                "Insights": {"OpportunityQuality": {"Score": 42}},
                "OpportunityTeam": [
                    {"BusinessTitle": "AWSSalesRep", "Email": "a@example.com"},
                    {"BusinessTitle": "PSM", "Email": "b@example.com"}
                ]
            },
            "company": null,
        });
        let select = |q: &jsonpath_rust::parser::model::JpQuery, v: &Value| -> Vec<Value> {
            js_path_process(q, v)
                .map(|r| r.into_iter().map(|x| x.val.clone()).collect())
                .unwrap_or_default()
        };
        for (path, within, plain) in [
            (
                "$.aws_summary.Insights.OpportunityQuality.Score",
                Some("aws_summary"),
                true,
            ),
            (
                "$.aws_summary.OpportunityTeam[?@.BusinessTitle == 'AWSSalesRep'].Email",
                Some("aws_summary"),
                false,
            ),
            (
                "$.aws_summary.OpportunityTeam[*].Email",
                Some("aws_summary"),
                false,
            ),
            (
                "$.aws_summary.OpportunityTeam[1].Email",
                Some("aws_summary"),
                true,
            ),
            (
                "$.aws_summary.OpportunityTeam[-2].Email",
                Some("aws_summary"),
                true,
            ),
            (
                "$.aws_summary.OpportunityTeam[-3].Email",
                Some("aws_summary"),
                true,
            ),
            (
                "$.aws_summary.OpportunityTeam[2]",
                Some("aws_summary"),
                true,
            ),
            ("$.aws_summary.Insights[0]", Some("aws_summary"), true),
            (
                "$.aws_summary.OpportunityTeam.Email",
                Some("aws_summary"),
                true,
            ),
            ("$.aws_summary['Insights']", Some("aws_summary"), true),
            (
                "$.aws_summary['Insights', 'OpportunityTeam']",
                Some("aws_summary"),
                false,
            ),
            (
                "$.opportunity.LifeCycle.ReviewStatus",
                Some("opportunity"),
                true,
            ),
            ("$.opportunity", Some("opportunity"), true),
            ("$.company.name", Some("company"), true),
            ("$.aws_summary..Score", None, false),
            ("$.elsewhere.x", None, false),
            ("$..Email", None, false),
        ] {
            let query = jsonpath_rust::parser::parse_json_path(path).unwrap();
            let watch = Watch::new(path, query);
            let whole = select(&watch.query, &root);
            match &watch.within {
                Some((member, sub)) => {
                    assert_eq!(Some(*member), within, "{path}");
                    assert_eq!(select(sub, &root[*member]), whole, "{path}");
                }
                None => assert_eq!(within, None, "{path}"),
            }
            if let (Some(steps), Some((member, _))) = (&watch.steps, &watch.within) {
                assert!(watch.singular, "{path}");
                let walked: Vec<Value> = walk(steps, &root[*member]).cloned().into_iter().collect();
                assert_eq!(walked, whole, "{path}");
            }
            assert_eq!(watch.steps.is_some(), plain, "{path}");
        }
        // What it reads, even where it needs the whole root; and whether it names
        // one value or a list.
        let watch =
            |path: &str| Watch::new(path, jsonpath_rust::parser::parse_json_path(path).unwrap());
        assert_eq!(
            watch("$.aws_summary..Score").source.as_deref(),
            Some("aws_summary")
        );
        assert_eq!(watch("$..Email").source, None);
        assert!(watch("$.aws_summary.Insights.OpportunityQuality.Score").singular);
        assert!(!watch("$.aws_summary.OpportunityTeam[*].Email").singular);
        assert!(!watch("$.aws_summary.OpportunityTeam[?@.BusinessTitle == 'x']").singular);
    }

    #[test]
    fn deal_fields_lists_dotted_reads_only() {
        assert_eq!(
            deal_fields(r#"deal.aws_opportunity_id == "" || deal.amount > 1"#),
            Some(vec!["aws_opportunity_id".into(), "amount".into()])
        );
        assert_eq!(deal_fields("ideal.x + deal_name"), Some(vec![]));
        assert_eq!(deal_fields("deal.keys().len() > 0"), None);
        assert_eq!(deal_fields("deal[\"x\"]"), None);
    }
}
