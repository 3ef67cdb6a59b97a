//! HubSpot: webhook signature verification and the CRM v3 client.

pub mod client;
pub mod html;
pub mod signature;
