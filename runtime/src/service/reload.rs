//! The rules in force and how they change: the pack directory is polled for edits,
//! and `SIGHUP` and `POST /admin/reload` ask directly; all run the same path (load, check,
//! compile, swap). An edit that does not check is logged with its diagnostics and
//! shown on `GET /rules`, and the last good rule set keeps running. Work already
//! planning holds its own `Arc` of the set it started with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use pcsync_engine::diagnostic::render_human;
use pcsync_engine::{RuleSet, load_rules};
use serde_json::{Value, json};

/// The rule set in force and the history of reloads.
pub struct RuleHost {
    dir: PathBuf,
    metrics: Arc<super::metrics::Metrics>,
    current: RwLock<Arc<RuleSet>>,
    status: Mutex<Status>,
}

#[derive(Default)]
struct Status {
    loaded_at: String,
    last_error: Option<(String, String)>,
    reloads_ok: u64,
    reloads_failed: u64,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A new version is in force.
    Changed(String),
    /// The packs are the same as those in force.
    Unchanged(String),
}

impl RuleHost {
    /// Loads `dir`; the rendered diagnostics when it does not check.
    pub fn load(dir: &Path, metrics: Arc<super::metrics::Metrics>) -> Result<RuleHost, String> {
        Ok(RuleHost::new(dir, load_dir(dir)?, metrics))
    }

    /// A host for rules already loaded from `dir`.
    pub fn new(dir: &Path, rules: RuleSet, metrics: Arc<super::metrics::Metrics>) -> RuleHost {
        RuleHost {
            dir: dir.to_path_buf(),
            metrics,
            current: RwLock::new(Arc::new(rules)),
            status: Mutex::new(Status {
                loaded_at: jiff::Timestamp::now().to_string(),
                ..Status::default()
            }),
        }
    }

    /// The rule set in force.
    pub fn current(&self) -> Arc<RuleSet> {
        Arc::clone(&self.current.read().expect("rules lock"))
    }

    /// Loads the directory again and swaps it in when it checks.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let in_force = self.current().version.clone();
        let mut status = self.status.lock().expect("status lock");
        match load_dir(&self.dir) {
            Ok(new) if new.version == in_force => {
                status.last_error = None;
                self.metrics.reload("unchanged");
                Ok(Reloaded::Unchanged(in_force))
            }
            Ok(new) => {
                let version = new.version.clone();
                *self.current.write().expect("rules lock") = Arc::new(new);
                status.loaded_at = jiff::Timestamp::now().to_string();
                status.last_error = None;
                status.reloads_ok += 1;
                self.metrics.reload("changed");
                tracing::info!(version = %version, "rules reloaded");
                Ok(Reloaded::Changed(version))
            }
            Err(shown) => {
                status.reloads_failed += 1;
                self.metrics.reload("error");
                status.last_error = Some((jiff::Timestamp::now().to_string(), shown.clone()));
                tracing::error!(
                    version = %in_force,
                    diagnostics = %shown,
                    "rules: the edit does not check; the rules in force stay"
                );
                Err(shown)
            }
        }
    }

    /// `GET /rules`: the version in force, its packs, and the last reload error.
    pub fn describe(&self) -> Value {
        let rules = self.current();
        let status = self.status.lock().expect("status lock");
        json!({
            "version": rules.version,
            "loaded_at": status.loaded_at,
            "packs": rules.packs.iter().map(|p| json!({
                "pack": p.pack.name,
                "enabled": p.pack.enabled,
                "file": self.relative(&p.path),
            })).collect::<Vec<_>>(),
            "reloads": { "ok": status.reloads_ok, "failed": status.reloads_failed },
            "last_error": status.last_error.as_ref().map(|(at, text)| json!({
                "at": at,
                "diagnostics": text.replace(&format!("{}{}", self.dir.display(), std::path::MAIN_SEPARATOR), ""),
            })),
        })
    }

    /// A pack file as `/rules` shows it: relative to the rule directory (the
    /// machine's layout is not the caller's business), or its name when outside.
    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .ok()
            .or_else(|| path.file_name().map(Path::new))
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Reloads on each `SIGHUP` (Unix).
    pub async fn on_hangup(self: Arc<Self>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/reload");
                return;
            };
            while hangups.recv().await.is_some() {
                let _ = self.reload();
            }
        }
    }

    /// Polls the directory, and the `.rhai` files the packs in force refer to
    /// outside it, once a second; reloads when any of them changes.
    pub async fn watch(self: Arc<Self>) {
        let mut seen = self.fingerprint();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.fingerprint();
            if now != seen {
                let _ = self.reload();
                // Taken again: a reload can change which outside files are watched.
                seen = self.fingerprint();
            }
        }
    }

    fn fingerprint(&self) -> (Fingerprint, Vec<Fingerprint>) {
        let current = self.current();
        // Compared resolved: `rules/../scripts/x.rhai` is outside `rules`.
        let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let dir = real(&self.dir);
        let outside = current
            .packs
            .iter()
            .flat_map(|p| &p.script_files)
            .filter(|f| !real(f).starts_with(&dir))
            .map(|f| fingerprint(f))
            .collect();
        (fingerprint(&self.dir), outside)
    }
}

/// Loads and checks the rule directory; the rendered diagnostics when it does not check.
pub fn load_dir(dir: &Path) -> Result<RuleSet, String> {
    let loaded = load_rules(&[dir.to_path_buf()]);
    match loaded.value {
        Some(rules) if !loaded.has_errors() => Ok(rules),
        _ => Err(render_human(&loaded.sources, &loaded.diagnostics)),
    }
}

/// The newest modification time, total size and file count under `dir`: changes
/// when a pack (or a `.rhai` file it uses) is edited, added or removed.
type Fingerprint = (Option<SystemTime>, u64, usize);

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut newest = None;
    let mut size = 0;
    let mut count = 0;
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.is_file()
    {
        return (meta.modified().ok(), meta.len(), 1);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            count += 1;
            size += meta.len();
            if let Ok(m) = meta.modified() {
                newest = newest.max(Some(m));
            }
        }
    }
    (newest, size, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rhai_file_outside_the_rules_directory_is_watched() {
        let packs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/language/packs");
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        let scripts = dir.path().join("shared-scripts");
        std::fs::create_dir_all(&rules).unwrap();
        std::fs::create_dir_all(&scripts).unwrap();
        let pack = std::fs::read_to_string(packs.join("mapping.yaml")).unwrap();
        let pack = pack.replace(
            "script_file: scripts/title.rhai",
            "script_file: ../shared-scripts/title.rhai",
        );
        std::fs::write(rules.join("mapping.yaml"), pack).unwrap();
        let script = scripts.join("title.rhai");
        std::fs::copy(packs.join("scripts/title.rhai"), &script).unwrap();

        let host = RuleHost::load(&rules, Arc::new(super::super::metrics::Metrics::default()))
            .unwrap_or_else(|e| panic!("{e}"));
        let before = host.fingerprint();
        assert_eq!(before.1.len(), 1, "the outside script is watched");
        let mut text = std::fs::read_to_string(&script).unwrap();
        text.push_str("\n// edited\n");
        std::fs::write(&script, text).unwrap();
        assert_ne!(host.fingerprint(), before);
    }
}
