//! What the sandbox's test files share: a sandbox, and the real SDK client for it.
// Each test binary uses its own subset.
#![allow(dead_code)]

use aws_sdk_partnercentralselling as pc;
use pcsync_sandbox::{Options, Quotas, Sandbox};

/// A sandbox on a free port with these Partner Central quotas.
pub async fn sandbox(quotas: Quotas) -> Sandbox {
    Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        Options {
            partner_central_quotas: quotas,
            ..Options::default()
        },
    )
    .await
    .unwrap()
}

/// The real Partner Central SDK client for `sb`, pcsync's shared AWS configuration
/// with `max_attempts` tries per call.
pub async fn client(sb: &Sandbox, max_attempts: u32) -> pc::Client {
    let shared = pcsync_adapters::aws_sdk_config(
        "us-east-1",
        Some(&sb.partner_central_url),
        Some(("AKIDEXAMPLE", "sandbox-secret")),
    )
    .await;
    let conf = pc::config::Builder::from(&shared)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts))
        .build();
    pc::Client::from_conf(conf)
}
