//! The service (`pcsync serve`): ingest puts webhooks and EventBridge events in the
//! durable inbox; the worker loads what the engine says a run needs, has the engine
//! plan and conclude, and performs the writes; the pollers queue scheduled runs; the
//! rule host hot-reloads the packs; the Solutions API serves the cached catalog.

pub mod admin;
pub mod channels;
mod creation;
pub mod execute;
pub mod http;
pub mod in_flight;
pub mod ingest;
pub mod metrics;
pub mod poll;
pub mod quota;
pub mod record;
pub mod reload;
pub mod solutions;
pub mod worker;

/// Requests committing events right now. The worker gives way while there are any
/// (a little, never for long): answering HubSpot quickly matters more than working
/// the inbox a few milliseconds sooner, and accepted events are durable anyway.
#[derive(Debug, Default)]
pub struct Busy(std::sync::atomic::AtomicUsize);

impl Busy {
    /// Counts the caller as busy until the guard drops.
    pub fn enter(&self) -> BusyGuard<'_> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        BusyGuard(self)
    }

    /// Whether any request is committing.
    pub fn any(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed) > 0
    }
}

/// See [`Busy::enter`].
pub struct BusyGuard<'a>(&'a Busy);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        (self.0)
            .0
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A delay in `[0, span_ms)` that differs between calls and between `seed`s (a
/// schedule, an event): spreads retries and scheduled runs so they do not fire in
/// lockstep. std's randomly keyed hasher is random enough for that.
pub fn random_below(span_ms: i64, seed: impl std::hash::Hash) -> i64 {
    use std::hash::BuildHasher;
    if span_ms <= 0 {
        return 0;
    }
    let nanos = jiff::Timestamp::now().as_nanosecond();
    let h = std::hash::RandomState::new().hash_one((seed, nanos));
    (h % span_ms as u64) as i64
}

/// Runs a synchronous store call from async code without stalling the runtime's
/// other tasks (HTTP requests among them) while it waits for the database: on the
/// multi-threaded runtime the thread hands its other tasks over first.
pub fn blocking<T>(call: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}
