//! Templates: one Jinja syntax (minijinja) for notes, tasks, messages and computed
//! values. Jinja because HubSpot's own HubL is Jinja-based, so RevOps staff already
//! read `{{ deal.dealname }}` and `{% for %}`; minijinja because it compiles once,
//! renders without I/O, supports strict undefined (a missing value is an error, not
//! an empty string) and can cap the work a template does (fuel).

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

/// Work a single render may do before it is stopped.
pub const FUEL: u64 = 100_000;

/// Filters minijinja provides (its `builtins`).
const BUILTIN_FILTERS: &[&str] = &[
    "safe",
    "escape",
    "e",
    "lower",
    "upper",
    "title",
    "capitalize",
    "replace",
    "length",
    "count",
    "dictsort",
    "items",
    "reverse",
    "trim",
    "join",
    "split",
    "lines",
    "default",
    "d",
    "round",
    "abs",
    "int",
    "float",
    "attr",
    "first",
    "last",
    "min",
    "max",
    "sort",
    "list",
    "string",
    "bool",
    "batch",
    "slice",
    "sum",
    "indent",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
    "map",
    "groupby",
    "unique",
    "chain",
    "zip",
    "pprint",
    "format",
    "tojson",
    "urlencode",
];

/// Filters pcsync adds.
const PCSYNC_FILTERS: &[&str] = &["truncate", "date"];

/// Every filter a template may use.
pub fn filters() -> impl Iterator<Item = &'static str> {
    BUILTIN_FILTERS.iter().chain(PCSYNC_FILTERS).copied()
}

/// A new template environment with pcsync's settings and no templates.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.add_filter("truncate", truncate);
    env.add_filter("date", date);
    env
}

/// Whether a string is a template at all (has `{{` or `{%`); plain strings are used
/// as they are.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// Filters a template names (`{{ x | truncate(5) }}` names `truncate`).
pub fn filters_used(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = source.as_bytes();
    for (i, _) in source.match_indices('|') {
        // `||` is not a filter; inside `{{ }}`/`{% %}` only (approximate: any `|`).
        if bytes.get(i + 1) == Some(&b'|') || (i > 0 && bytes[i - 1] == b'|') {
            continue;
        }
        let rest = &source[i + 1..];
        let trimmed = rest.trim_start();
        let name: String = trimmed
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push((i + 1 + (rest.len() - trimmed.len()), name));
        }
    }
    out
}

/// `truncate(length=255, killwords=false, end="...")` as in Jinja: text longer than
/// `length` is cut so that with `end` it fits.
fn truncate(
    value: String,
    length: Option<usize>,
    killwords: Option<bool>,
    end: Option<String>,
) -> String {
    let length = length.unwrap_or(255);
    let end = end.unwrap_or_else(|| "...".into());
    if value.chars().count() <= length {
        return value;
    }
    let keep = length.saturating_sub(end.chars().count());
    let mut cut: String = value.chars().take(keep).collect();
    if !killwords.unwrap_or(false)
        && let Some(space) = cut.rfind(' ')
    {
        cut.truncate(space);
    }
    cut.push_str(&end);
    cut
}

/// `date`: a timestamp (RFC 3339 or epoch milliseconds) as `YYYY-MM-DD`, or with a
/// `strftime` format, e.g. `{{ now | date("%Y-%m-%d %H:%M UTC") }}`.
fn date(value: Value, format: Option<String>) -> Result<String, Error> {
    let text = value.to_string();
    let ts = crate::dates::to_timestamp(&text)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e))?;
    let zoned = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    Ok(match format {
        Some(f) => zoned.strftime(&f).to_string(),
        None => zoned.date().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str) -> String {
        let env = environment();
        env.render_str(
            source,
            minijinja::context! { s => "the quick brown fox", now => "2026-11-28T12:34:56Z" },
        )
        .unwrap()
    }

    #[test]
    fn truncate_cuts_at_a_word_and_adds_the_end() {
        assert_eq!(render("{{ s | truncate(13) }}"), "the quick...");
        assert_eq!(render("{{ s | truncate(100) }}"), "the quick brown fox");
        assert_eq!(render("{{ s | truncate(12, true, '…') }}"), "the quick b…");
    }

    #[test]
    fn date_formats_timestamps() {
        assert_eq!(render("{{ now | date }}"), "2026-11-28");
        assert_eq!(
            render("{{ now | date('%Y-%m-%d %H:%M UTC') }}"),
            "2026-11-28 12:34 UTC"
        );
    }

    #[test]
    fn strict_undefined_is_an_error() {
        let env = environment();
        assert!(
            env.render_str("{{ missing }}", minijinja::context! {})
                .is_err()
        );
    }

    #[test]
    fn finds_the_filters_a_template_uses() {
        let used: Vec<String> = filters_used("{{ a | truncate(3) }} {{ b|upper }} {% if x or y %}")
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(used, ["truncate", "upper"]);
    }
}
