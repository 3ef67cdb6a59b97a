//! Keyed turns: work about one subject (a deal, an opportunity, an opportunity's
//! snapshots) goes one at a time, and learns whether another took a turn since it
//! last looked. The worker's batches take turns at the deals and opportunities they
//! work on; the executor's snapshot reads take turns per opportunity.

use std::sync::Arc;

/// The deals and opportunities that batches in flight are working on. Batches are
/// about different keys, but a deal's batch and its opportunity's batch are about
/// the same opportunity: they take turns, and one that read its context while the
/// other still worked (or finished) reads it again, so that neither plans from a
/// state the other changed (a note or notification sent twice, a stale write).
#[derive(Debug, Default)]
pub struct InFlight(std::sync::Mutex<Subjects>);

#[derive(Debug, Default)]
struct Subjects {
    map: std::collections::HashMap<String, Arc<Subject>>,
    /// Releases so far: the clock a batch reads before its context.
    released: u64,
    /// The latest release among subjects forgotten: a subject seen again counts as
    /// released then, since what happened to it meanwhile is not known.
    floor: u64,
}

#[derive(Debug)]
struct Subject {
    lock: Arc<tokio::sync::Mutex<()>>,
    released_at: std::sync::atomic::AtomicU64,
}

/// Held while a batch works on its subjects; releasing stamps them.
pub struct Held<'a> {
    owner: &'a InFlight,
    subjects: Vec<Arc<Subject>>,
    _guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut all = self.owner.0.lock().unwrap_or_else(|e| e.into_inner());
        all.released += 1;
        for s in &self.subjects {
            s.released_at
                .store(all.released, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl InFlight {
    /// The release clock: read it before reading a context, and pass it to
    /// [`InFlight::take`].
    pub fn now(&self) -> u64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).released
    }

    /// Takes `subjects`, waiting for a batch that holds any of them (in a fixed
    /// order, so two batches never wait on each other). `Err` still holds them, and
    /// says the context read at `since` may be stale: another batch worked on one of
    /// the subjects since then, so the caller reads it again.
    pub async fn take(&self, mut subjects: Vec<String>, since: u64) -> Result<Held<'_>, Held<'_>> {
        subjects.sort();
        subjects.dedup();
        let entries: Vec<Arc<Subject>> = {
            let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if all.map.len() > 1_024 {
                let mut floor = all.floor;
                all.map.retain(|_, s| {
                    let keep = Arc::strong_count(s) > 1 || Arc::strong_count(&s.lock) > 1;
                    if !keep {
                        floor = floor.max(s.released_at.load(std::sync::atomic::Ordering::Relaxed));
                    }
                    keep
                });
                all.floor = floor;
            }
            let floor = all.floor;
            subjects
                .iter()
                .map(|name| {
                    Arc::clone(all.map.entry(name.clone()).or_insert_with(|| {
                        Arc::new(Subject {
                            lock: Arc::default(),
                            released_at: floor.into(),
                        })
                    }))
                })
                .collect()
        };
        let mut guards = Vec::with_capacity(entries.len());
        for s in &entries {
            guards.push(Arc::clone(&s.lock).lock_owned().await);
        }
        let stale = entries
            .iter()
            .any(|s| s.released_at.load(std::sync::atomic::Ordering::Relaxed) > since);
        let held = Held {
            owner: self,
            subjects: entries,
            _guards: guards,
        };
        if stale { Err(held) } else { Ok(held) }
    }
}

impl InFlight {
    /// Takes `subject` alone, for work that only needs to go one at a time (it does
    /// not ask whether another turn came since).
    pub async fn turn(&self, subject: &str) -> Held<'_> {
        match self.take(vec![subject.to_string()], u64::MAX).await {
            Ok(held) | Err(held) => held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_for_one_subject_come_one_at_a_time() {
        let turns = InFlight::default();
        let first = turns.turn("O1").await;
        // Another subject goes at once; the same one waits for the first turn to end.
        drop(turns.turn("O2").await);
        let second = turns.turn("O1");
        tokio::pin!(second);
        assert!(futures_util::poll!(second.as_mut()).is_pending());
        drop(first);
        drop(second.await);
    }

    #[tokio::test]
    async fn a_turn_taken_since_a_look_makes_the_look_stale() {
        let turns = InFlight::default();
        let since = turns.now();
        drop(turns.turn("O1").await);
        assert!(turns.take(vec!["O1".into()], since).await.is_err());
        let since = turns.now();
        assert!(
            turns
                .take(vec!["O1".into(), "deal:1".into()], since)
                .await
                .is_ok()
        );
    }
}
