//! pcsync's adapters: the edges that speak other systems' protocols: HubSpot webhook
//! signatures and the CRM client, the Partner Central client (the real AWS SDK), and
//! SNS publishing. Adapters never import the runtime; the engine never imports them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod hubspot;
pub mod partner_central;
pub mod sns;

/// How long an AWS call may take. Each attempt (one HTTP exchange) gets `attempt`;
/// the call, the SDK's own retries included, gets `attempt` times the SDK's attempts
/// (3), so a hung endpoint never holds the worker for longer than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// One attempt (connect, send, read the answer).
    pub attempt: std::time::Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        AwsTimeouts {
            attempt: std::time::Duration::from_secs(10),
        }
    }
}

/// The AWS SDK configuration pcsync's clients share: `region`, `endpoint_url` instead
/// of AWS when given (the sandbox), and credentials from the standard chain, or fixed
/// ones when `static_credentials` is given (the sandbox, which needs none real).
pub async fn aws_sdk_config(
    region: &str,
    endpoint_url: Option<&str>,
    static_credentials: Option<(&str, &str)>,
    timeouts: AwsTimeouts,
) -> aws_config::SdkConfig {
    let attempt = timeouts.attempt;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(attempt.min(std::time::Duration::from_secs(3)))
                .operation_attempt_timeout(attempt)
                .operation_timeout(attempt * 3)
                .build(),
        );
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some((key, secret)) = static_credentials {
        loader = loader.credentials_provider(aws_sdk_sns::config::Credentials::new(
            key, secret, None, None, "pcsync",
        ));
    }
    loader.load().await
}

/// Reports every attempt of an AWS SDK call (its own retries included) to an
/// [`Observer`], so that `/metrics` counts what went over the wire, not only what
/// the caller saw.
#[derive(Debug)]
pub(crate) struct Attempts {
    pub(crate) api: &'static str,
    pub(crate) observer: std::sync::Arc<dyn Observer>,
}

impl aws_sdk_partnercentralselling::config::Intercept for Attempts {
    fn name(&self) -> &'static str {
        "pcsync::Attempts"
    }

    fn read_after_attempt(
        &self,
        context: &aws_sdk_partnercentralselling::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _: &aws_sdk_partnercentralselling::config::RuntimeComponents,
        cfg: &mut aws_sdk_partnercentralselling::config::ConfigBag,
    ) -> Result<(), aws_sdk_partnercentralselling::error::BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map_or("unknown", |m| m.name());
        let outcome = match (context.response(), context.output_or_error()) {
            (Some(r), _) if r.status().is_success() => "ok".to_string(),
            (Some(r), _) => r.status().as_u16().to_string(),
            (None, Some(Err(e))) if e.is_timeout_error() => "timeout".to_string(),
            (None, _) => "transport".to_string(),
        };
        self.observer.attempted(self.api, operation, &outcome);
        Ok(())
    }
}

/// Receives what the clients measure, for the service's metrics. Optional: a client
/// without one measures nothing.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// A call to `api` (`partnercentral`, `hubspot`, `sns`) finished: its operation
    /// (`GetOpportunity`, `PATCH /crm/v3/objects/deals/{id}`), outcome (`ok` or the
    /// error code or HTTP status) and how long it took, SDK retries included.
    fn called(&self, api: &'static str, operation: &str, outcome: &str, took: std::time::Duration);
    /// A call waited `waited` for the client-side rate limiter of `api` before going out.
    fn waited(&self, api: &'static str, waited: std::time::Duration);
    /// One attempt of a call to `api` ended (an SDK call may make several): its
    /// operation and outcome (`ok`, the HTTP status, `timeout` or `transport`).
    fn attempted(&self, api: &'static str, operation: &str, outcome: &str) {
        let _ = (api, operation, outcome);
    }
}
