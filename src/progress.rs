//! Progress on a terminal for commands that take a while (`setup hubspot`, long
//! `replay` runs): drawn on stderr only when it is a terminal and the output is for
//! people, so CI logs and JSON output stay clean (indicatif hides itself when
//! stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A progress line, or nothing.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar over `len` steps doing `what`; none unless `shown`.
    pub fn bar(len: u64, what: &str, shown: bool) -> Self {
        Progress::with(
            ProgressBar::new(len),
            &format!("{{bar:30}} {{pos}}/{{len}} {what}"),
            shown,
        )
    }

    /// A count of `what` done so far, with its rate; none unless `shown`.
    pub fn counter(what: &str, shown: bool) -> Self {
        Progress::with(
            ProgressBar::new_spinner(),
            &format!("{{spinner}} {{pos}} {what} ({{per_sec}})"),
            shown,
        )
    }

    fn with(bar: ProgressBar, template: &str, shown: bool) -> Self {
        if !shown || bar.is_hidden() {
            return Progress(None);
        }
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    /// `n` steps done.
    pub fn set(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(n);
        }
    }

    /// Prints `line` on stdout without tearing the bar.
    pub fn println(&self, line: &str) {
        match &self.0 {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// Removes the bar.
    pub fn done(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
