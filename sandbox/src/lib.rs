//! pcsync's sandbox: local servers that speak HubSpot's and Partner Central's real
//! wire protocols, keep state, and enforce the rules the real services enforce (each
//! with its source). Tests, benchmarks and `pcsync serve --sandbox` use it; the real
//! clients (the AWS SDK, reqwest) talk to it over HTTP on 127.0.0.1.
//!
//! It shares no code with the engine or the adapters: it is the other side of the
//! wire, written from the API references, so that a misunderstanding cannot hide on
//! both sides at once. (The generated Partner Central model table is AWS's data, and
//! is shared.)
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod control;
pub mod demo;
pub mod hubspot;
pub mod partner_central;
pub mod sns;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use hubspot::{HubSpot, HubSpotOptions};
pub use partner_central::{PartnerCentral, Quotas};

/// What the sandbox serves with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Partner Central's quotas.
    pub partner_central_quotas: Quotas,
    /// HubSpot's token and rate limits.
    pub hubspot: HubSpotOptions,
}

/// A running sandbox.
pub struct Sandbox {
    /// The Partner Central endpoint (`http://127.0.0.1:PORT`), for `endpoint_url`.
    pub partner_central_url: String,
    /// The Partner Central state, for the control API and tests.
    pub partner_central: Arc<PartnerCentral>,
    /// The HubSpot API base URL (`http://127.0.0.1:PORT`), in place of
    /// `https://api.hubapi.com`.
    pub hubspot_url: String,
    /// The HubSpot state, for the control API and tests.
    pub hubspot: Arc<HubSpot>,
    /// The SNS endpoint (`http://127.0.0.1:PORT`), for `sns_endpoint_url`.
    pub sns_url: String,
    /// The SNS state.
    pub sns: Arc<sns::Sns>,
    /// Recorded calls and injected faults.
    pub journal: Arc<control::Journal>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sandbox {
    /// Starts the sandbox on free loopback ports, as tests and benches do.
    pub async fn on_loopback(options: Options) -> std::io::Result<Sandbox> {
        Sandbox::start(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// [`Sandbox::on_loopback`], seeded with the demo's data ([`demo::seed`]).
    pub async fn demo_on_loopback(options: Options) -> std::io::Result<Sandbox> {
        let sb = Sandbox::on_loopback(options).await?;
        demo::seed(&sb);
        Ok(sb)
    }

    /// Starts the sandbox: Partner Central on `addr` (port 0 picks free ports),
    /// HubSpot on the next port and SNS on the one after. The control API answers on
    /// all three.
    pub async fn start(addr: SocketAddr, options: Options) -> std::io::Result<Sandbox> {
        let journal = Arc::new(control::Journal::default());
        let pc = PartnerCentral::new(options.partner_central_quotas, Arc::clone(&journal));
        let hs = HubSpot::new(options.hubspot.clone(), Arc::clone(&journal));
        let sns = sns::Sns::new(Arc::clone(&journal));
        let control = control::router(
            Arc::clone(&journal),
            Arc::clone(&pc),
            Arc::clone(&hs),
            Arc::clone(&sns),
        );
        let pc_listener = TcpListener::bind(addr).await?;
        let pc_local = pc_listener.local_addr()?;
        let mut hs_addr = addr;
        if addr.port() != 0 {
            hs_addr.set_port(addr.port() + 1);
        }
        let hs_listener = TcpListener::bind(hs_addr).await?;
        let hs_local = hs_listener.local_addr()?;
        let mut sns_addr = addr;
        if addr.port() != 0 {
            sns_addr.set_port(addr.port() + 2);
        }
        let sns_listener = TcpListener::bind(sns_addr).await?;
        let sns_local = sns_listener.local_addr()?;
        let sns_app = sns.router().merge(control.clone());
        let pc_app = pc.router().merge(control.clone());
        let hs_app = hs.router().merge(control);
        // The servers run until the sandbox is dropped.
        let tasks = vec![
            tokio::spawn(async move {
                let _ = axum::serve(pc_listener, pc_app).await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(hs_listener, hs_app).await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(sns_listener, sns_app).await;
            }),
        ];
        Ok(Sandbox {
            partner_central_url: format!("http://{pc_local}"),
            partner_central: pc,
            hubspot_url: format!("http://{hs_local}"),
            hubspot: hs,
            sns_url: format!("http://{sns_local}"),
            sns,
            journal,
            tasks,
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
