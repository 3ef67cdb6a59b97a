//! Templates: one Jinja syntax (minijinja) for notes, tasks, messages and computed
//! values. Jinja because HubSpot's own HubL is Jinja-based, so RevOps staff already
//! read `{{ deal.dealname }}` and `{% for %}`; minijinja because it compiles once,
//! renders without I/O, supports strict undefined (a missing value is an error, not
//! an empty string) and can cap the work a template does (fuel).

use minijinja::{Environment, UndefinedBehavior};

/// Work a single render may do before it is stopped.
pub const FUEL: u64 = 100_000;

/// A new template environment with pcsync's settings and no templates.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env
}

/// Whether a string is a template at all (has `{{` or `{%`); plain strings are used
/// as they are.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}
