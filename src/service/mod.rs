//! The service runtime (`pcsync serve`). Ingest lands first; the workers that
//! resolve, plan and execute follow.

pub mod execute;
pub mod ingest;
pub mod metrics;
pub mod poll;
pub mod reload;
pub mod worker;
