//! The rules in force and how they change: the pack directory is watched for edits
//! (file events through `notify`, or polling where events do not arrive), and
//! `SIGHUP` and `POST /admin/reload` ask directly; all run the same path (load, check,
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
    channels: super::channels::Channels,
    clock: Arc<dyn crate::clock::Clock>,
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
            channels: super::channels::Channels::default(),
            clock: Arc::new(crate::clock::SystemClock),
        }
    }

    /// The host, telling the time of loads by `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn crate::clock::Clock>) -> Self {
        self.status.get_mut().expect("status lock").loaded_at = clock.now().to_string();
        self.clock = clock;
        self
    }

    /// The host, for a service that delivers to `channels` only: runs skip the
    /// others, and `/rules` names the packs that use one.
    pub fn with_channels(mut self, channels: super::channels::Channels) -> Self {
        self.channels = channels;
        self
    }

    /// The channels the service delivers to.
    pub fn channels(&self) -> super::channels::Channels {
        self.channels
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
                status.loaded_at = self.clock.now().to_string();
                status.last_error = None;
                status.reloads_ok += 1;
                self.metrics.reload("changed");
                tracing::info!(version = %version, "rules reloaded");
                Ok(Reloaded::Changed(version))
            }
            Err(shown) => {
                status.reloads_failed += 1;
                self.metrics.reload("error");
                status.last_error = Some((self.clock.now().to_string(), shown.clone()));
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
            "warnings": self.channels.warnings(&rules),
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

    /// Watches the directory, and the `.rhai` files the packs in force refer to
    /// outside it, and reloads when any of them changes, until the task is dropped.
    ///
    /// With [`Watch::Events`] the operating system reports changes (inotify on
    /// Linux); a burst of them (an editor's write-and-rename, a Kubernetes ConfigMap's
    /// `..data` swap) settles for [`DEBOUNCE`] before one reload. The directory's
    /// parent is watched too, so a rules path that is a symlink swapped to another
    /// directory is followed. Where events do not arrive (network file systems),
    /// [`Watch::Poll`] compares the files at an interval instead, and so does a
    /// system that cannot give events (the failure is logged).
    pub async fn watch(self: Arc<Self>, how: Watch) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        // The paths whose events count: the directory (and all under it) and the
        // outside scripts. The parent and the scripts' folders hold other files (the
        // state file, often), whose writes must not wake the reloader.
        let interesting: Arc<RwLock<Vec<PathBuf>>> = Arc::default();
        let paths = Arc::clone(&interesting);
        let handler = move |event: notify::Result<notify::Event>| {
            match event {
                // Reads (ours among them) change nothing.
                Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => {}
                Ok(e) => {
                    let paths = paths.read().unwrap_or_else(|p| p.into_inner());
                    if e.paths.is_empty()
                        || e.paths
                            .iter()
                            .any(|p| paths.iter().any(|i| p.starts_with(i)))
                    {
                        let _ = tx.send(());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watching the rules");
                    let _ = tx.send(());
                }
            }
        };
        let poll = |every: Duration, handler| {
            // Contents compared too: the poller's times are whole seconds, and an
            // edit in the second of the last look would go unseen.
            notify::PollWatcher::new(
                handler,
                notify::Config::default()
                    .with_poll_interval(every)
                    .with_compare_contents(true),
            )
            .map(|w| Box::new(w) as Box<dyn notify::Watcher + Send>)
        };
        let made = match how {
            Watch::Events => notify::recommended_watcher(handler.clone())
                .map(|w| Box::new(w) as Box<dyn notify::Watcher + Send>)
                .or_else(|e| {
                    tracing::warn!(error = %e, "no file events for the rules; polling every second");
                    poll(Duration::from_secs(1), handler)
                }),
            Watch::Poll(every) => poll(every, handler),
        };
        let mut watcher = match made {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the rules; reload them with SIGHUP or POST /admin/reload");
                return;
            }
        };
        let mut watched = Vec::new();
        self.rewatch(&mut *watcher, &mut watched, &interesting);
        let mut seen = self.fingerprint();
        while rx.recv().await.is_some() {
            // Let the burst settle.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let now = self.fingerprint();
            if now != seen {
                let _ = super::blocking(|| self.reload());
                // Taken again: a reload can change which outside files are watched.
                seen = self.fingerprint();
            }
            self.rewatch(&mut *watcher, &mut watched, &interesting);
        }
    }

    /// Watches what [`RuleHost::watch`] covers now, dropping what it no longer does:
    /// the directory (again when it resolves elsewhere: a swapped symlink), its
    /// parent, and the folders of the `.rhai` files outside it.
    fn rewatch(
        &self,
        watcher: &mut dyn notify::Watcher,
        watched: &mut Vec<(PathBuf, PathBuf)>,
        interesting: &RwLock<Vec<PathBuf>>,
    ) {
        use notify::RecursiveMode::{NonRecursive, Recursive};
        let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let dir = real(&self.dir);
        let mut wanted: Vec<(PathBuf, PathBuf, notify::RecursiveMode)> =
            vec![(self.dir.clone(), dir.clone(), Recursive)];
        let mut paths = vec![self.dir.clone(), dir.clone()];
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            wanted.push((parent.to_path_buf(), real(parent), NonRecursive));
        }
        for script in self.current().packs.iter().flat_map(|p| &p.script_files) {
            let script = real(script);
            if !script.starts_with(&dir)
                && let Some(folder) = script.parent()
            {
                wanted.push((folder.to_path_buf(), folder.to_path_buf(), NonRecursive));
                paths.push(script.clone());
            }
        }
        *interesting.write().unwrap_or_else(|p| p.into_inner()) = paths;
        watched.retain(|(path, resolved)| {
            let keep = wanted.iter().any(|(p, r, _)| p == path && r == resolved);
            if !keep {
                let _ = watcher.unwatch(path);
            }
            keep
        });
        for (path, resolved, mode) in wanted {
            if watched.iter().any(|(p, r)| *p == path && *r == resolved) {
                continue;
            }
            match watcher.watch(&path, mode) {
                Ok(()) => watched.push((path, resolved)),
                Err(e) => tracing::warn!(error = %e, path = %path.display(), "cannot watch"),
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

/// How [`RuleHost::watch`] learns of edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// The operating system's file events.
    Events,
    /// Comparing the files at this interval (network file systems).
    Poll(Duration),
}

/// How long a burst of file events must be quiet before the reload.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

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

    /// The language tests' mapping pack (with its script) in `rules`.
    fn write_pack(rules: &Path, marker: &str) {
        let packs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/language/packs");
        std::fs::create_dir_all(rules.join("scripts")).unwrap();
        let pack = std::fs::read_to_string(packs.join("mapping.yaml")).unwrap();
        std::fs::write(rules.join("mapping.yaml"), format!("{pack}\n# {marker}\n")).unwrap();
        std::fs::copy(
            packs.join("scripts/title.rhai"),
            rules.join("scripts/title.rhai"),
        )
        .unwrap();
    }

    /// A host for `rules` and its watcher, running.
    fn watched(rules: &Path, how: Watch) -> (Arc<RuleHost>, tokio::task::JoinHandle<()>) {
        let host = Arc::new(
            RuleHost::load(rules, Arc::new(super::super::metrics::Metrics::default()))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let task = tokio::spawn(Arc::clone(&host).watch(how));
        (host, task)
    }

    /// Waits (up to 10 s) for the rules in force to leave `version`.
    async fn changes_from(host: &RuleHost, version: &str) -> String {
        for _ in 0..500 {
            let now = host.current().version.clone();
            if now != version {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the rules stayed at {version}");
    }

    /// Lets the watcher take its watches before the edit.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    #[test]
    fn a_rules_directory_emptied_is_refused_and_the_packs_stay_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        write_pack(&rules, "one");
        let host = RuleHost::load(&rules, Arc::new(super::super::metrics::Metrics::default()))
            .unwrap_or_else(|e| panic!("{e}"));
        let packs = host.current().packs.len();
        std::fs::remove_file(rules.join("mapping.yaml")).unwrap();
        let refused = host.reload().unwrap_err();
        assert!(refused.contains("error[no-packs]"), "{refused}");
        assert_eq!(host.current().packs.len(), packs);
        assert!(RuleHost::load(&rules, Default::default()).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_editors_write_and_rename_is_in_force_without_a_poll() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        write_pack(&rules, "one");
        let (host, task) = watched(&rules, Watch::Events);
        let before = host.current().version.clone();
        settle().await;
        // As vim and most editors save: a new file, renamed over the old one.
        let text = std::fs::read_to_string(rules.join("mapping.yaml")).unwrap();
        std::fs::write(
            rules.join(".mapping.yaml.swp"),
            text.replace("# one", "# two"),
        )
        .unwrap();
        std::fs::rename(rules.join(".mapping.yaml.swp"), rules.join("mapping.yaml")).unwrap();
        changes_from(&host, &before).await;
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rules_symlink_swapped_to_another_directory_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        write_pack(&dir.path().join("v1"), "one");
        let rules = dir.path().join("rules");
        std::os::unix::fs::symlink(dir.path().join("v1"), &rules).unwrap();
        let (host, task) = watched(&rules, Watch::Events);
        let first = host.current().version.clone();
        settle().await;
        // A deploy tool's swap: the new release beside, the link replaced at once.
        write_pack(&dir.path().join("v2"), "two");
        std::os::unix::fs::symlink(dir.path().join("v2"), dir.path().join("rules.new")).unwrap();
        std::fs::rename(dir.path().join("rules.new"), &rules).unwrap();
        let second = changes_from(&host, &first).await;
        // And the watch follows: an edit in the new directory counts.
        settle().await;
        write_pack(&dir.path().join("v2"), "three");
        changes_from(&host, &second).await;
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kubernetes_configmap_update_is_seen() {
        // A ConfigMap volume: the files are links into `..data`, itself a link to a
        // timestamped directory that an update replaces in one rename.
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        write_pack(&rules.join("..2026_12_01_v1"), "one");
        std::os::unix::fs::symlink("..2026_12_01_v1", rules.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/mapping.yaml", rules.join("mapping.yaml")).unwrap();
        std::os::unix::fs::symlink("..data/scripts", rules.join("scripts")).unwrap();
        let (host, task) = watched(&rules, Watch::Events);
        let before = host.current().version.clone();
        settle().await;
        write_pack(&rules.join("..2026_12_02_v2"), "two");
        std::os::unix::fs::symlink("..2026_12_02_v2", rules.join("..data_tmp")).unwrap();
        std::fs::rename(rules.join("..data_tmp"), rules.join("..data")).unwrap();
        changes_from(&host, &before).await;
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling_finds_an_edit_where_file_events_do_not_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        write_pack(&rules, "one");
        let (host, task) = watched(&rules, Watch::Poll(Duration::from_millis(100)));
        let before = host.current().version.clone();
        settle().await;
        write_pack(&rules, "two, a longer line");
        changes_from(&host, &before).await;
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_edit_of_a_script_outside_the_directory_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        write_pack(&rules, "one");
        let shared = dir.path().join("shared-scripts");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::rename(rules.join("scripts/title.rhai"), shared.join("title.rhai")).unwrap();
        let pack = std::fs::read_to_string(rules.join("mapping.yaml")).unwrap();
        std::fs::write(
            rules.join("mapping.yaml"),
            pack.replace(
                "script_file: scripts/title.rhai",
                "script_file: ../shared-scripts/title.rhai",
            ),
        )
        .unwrap();
        let (host, task) = watched(&rules, Watch::Events);
        let before = host.current().version.clone();
        settle().await;
        let mut text = std::fs::read_to_string(shared.join("title.rhai")).unwrap();
        text.push_str("\n// edited\n");
        std::fs::write(shared.join("title.rhai"), text).unwrap();
        changes_from(&host, &before).await;
        task.abort();
    }

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
