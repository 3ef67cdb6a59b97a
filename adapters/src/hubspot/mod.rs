//! HubSpot: webhook signature verification.

pub mod signature;
