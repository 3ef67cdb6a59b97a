//! The service runtime (`pcsync serve`). Ingest lands first; the workers that
//! resolve, plan and execute follow.

pub mod execute;
pub mod ingest;
pub mod metrics;
pub mod poll;
pub mod reload;
pub mod solutions;
pub mod worker;

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
