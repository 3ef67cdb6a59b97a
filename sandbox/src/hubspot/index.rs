//! CRM search's index, which lags the writes it indexes: "It may take a few moments
//! for newly created or updated CRM objects to appear in search results" (reference
//! §3.4). A deal written through the API or HubSpot's UI is found by search as it was
//! before the write until the lag has passed; a new deal is not found at all until
//! then. Reads by id (`GET /crm/v3/objects/deals/{id}`, batch read) see every write
//! at once. Data the control API seeds is in place as it has long been, and indexed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use jiff::{SignedDuration, Timestamp};

use super::store::Object;

/// The writes search does not see yet, per deal.
#[derive(Debug, Default)]
pub struct SearchIndex {
    lag: SignedDuration,
    lagging: Mutex<BTreeMap<String, Lagging>>,
}

#[derive(Debug)]
struct Lagging {
    /// What search finds meanwhile: the deal as last indexed (`None`: not at all).
    indexed: Option<Object>,
    /// Later versions and when each becomes visible, oldest first.
    pending: VecDeque<(Timestamp, Object)>,
}

impl SearchIndex {
    /// An index that sees each write `lag` after it is made.
    pub fn new(lag: SignedDuration) -> Self {
        SearchIndex {
            lag,
            lagging: Mutex::default(),
        }
    }

    /// Records that the deal `after.id` was written at `now`; `before` is the deal as
    /// it was before (`None` for a new deal).
    pub fn written(&self, now: Timestamp, before: Option<Object>, after: &Object) {
        if !self.lag.is_positive() {
            return;
        }
        let visible_at = now.saturating_add(self.lag).unwrap_or(Timestamp::MAX);
        let mut lagging = self.lagging.lock().expect("index lock");
        lagging
            .entry(after.id.clone())
            .or_insert_with(|| Lagging {
                indexed: before,
                pending: VecDeque::new(),
            })
            .pending
            .push_back((visible_at, after.clone()));
    }

    /// What search sees at `now`.
    pub fn view(&self, now: Timestamp) -> IndexView<'_> {
        let mut lagging = self.lagging.lock().expect("index lock");
        lagging.retain(|_, l| {
            while l.pending.front().is_some_and(|(at, _)| *at <= now) {
                l.indexed = l.pending.pop_front().map(|(_, o)| o);
            }
            !l.pending.is_empty()
        });
        IndexView { lagging }
    }
}

/// Search's view of the deals at one moment.
pub struct IndexView<'a> {
    lagging: MutexGuard<'a, BTreeMap<String, Lagging>>,
}

impl IndexView<'_> {
    /// The version of `live` search finds, if it finds the deal at all.
    pub fn seen<'a>(&'a self, live: &'a Object) -> Option<&'a Object> {
        match self.lagging.get(&live.id) {
            None => Some(live),
            Some(l) => l.indexed.as_ref(),
        }
    }
}
