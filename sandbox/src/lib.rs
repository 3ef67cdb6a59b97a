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
pub mod partner_central;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use partner_central::{PartnerCentral, Quotas};

/// What the sandbox serves with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Partner Central's quotas.
    pub partner_central_quotas: Quotas,
}

/// A running sandbox.
pub struct Sandbox {
    /// The Partner Central endpoint (`http://127.0.0.1:PORT`), for `endpoint_url`.
    pub partner_central_url: String,
    /// The Partner Central state, for the control API and tests.
    pub partner_central: Arc<PartnerCentral>,
    /// Recorded calls and injected faults.
    pub journal: Arc<control::Journal>,
    task: JoinHandle<()>,
}

impl Sandbox {
    /// Starts the sandbox on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr, options: Options) -> std::io::Result<Sandbox> {
        let journal = Arc::new(control::Journal::default());
        let pc = PartnerCentral::new(options.partner_central_quotas, Arc::clone(&journal));
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = pc
            .router()
            .merge(control::router(Arc::clone(&journal), Arc::clone(&pc)));
        let task = tokio::spawn(async move {
            // The server runs until the sandbox is dropped.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sandbox {
            partner_central_url: format!("http://{local}"),
            partner_central: pc,
            journal,
            task,
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}
