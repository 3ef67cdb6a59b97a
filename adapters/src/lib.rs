//! pcsync's adapters: the edges that speak other systems' protocols. Today: HubSpot
//! webhook signatures and SNS publishing. Later stages add webhook and EventBridge parsing and the
//! outbound HubSpot, Partner Central and SNS clients, each behind a small trait the
//! runtime uses. Adapters never import the runtime; the engine never imports them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod hubspot;
pub mod partner_central;
pub mod sns;
