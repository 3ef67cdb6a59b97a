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

/// Where the standard AWS credential chain can find credentials without asking an
/// instance metadata service: the environment, a web identity, a container's
/// credentials endpoint, the shared files. Named for messages.
pub fn credential_sources() -> Vec<&'static str> {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
            .is_some_and(|p| p.is_file())
    };
    let mut found = Vec::new();
    if set("AWS_ACCESS_KEY_ID") {
        found.push("AWS_ACCESS_KEY_ID");
    }
    if set("AWS_PROFILE") {
        found.push("AWS_PROFILE");
    }
    if set("AWS_WEB_IDENTITY_TOKEN_FILE") {
        found.push("AWS_WEB_IDENTITY_TOKEN_FILE");
    }
    if set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") || set("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        found.push("the container credentials endpoint");
    }
    if file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials") {
        found.push("~/.aws/credentials");
    }
    if file("AWS_CONFIG_FILE", ".aws/config") {
        found.push("~/.aws/config");
    }
    found
}

/// Whether this machine looks like an EC2 instance (where the instance metadata
/// service gives a role's credentials): the firmware says so, or the operator
/// pointed the SDK at a metadata endpoint.
pub fn on_ec2() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    std::env::var_os("AWS_EC2_METADATA_SERVICE_ENDPOINT").is_some()
        || read("/sys/class/dmi/id/sys_vendor").contains("Amazon EC2")
        || read("/sys/class/dmi/id/board_asset_tag").starts_with("i-")
        || read("/sys/hypervisor/uuid").starts_with("ec2")
}

/// Makes sure credentials can be had before the service starts, instead of at its
/// first call: with no source configured and no EC2 instance to ask, it says so at
/// once, without the SDK probing the metadata address; otherwise it resolves them
/// (within `wait`).
pub async fn check_credentials(
    config: &aws_config::SdkConfig,
    wait: std::time::Duration,
) -> Result<(), String> {
    use aws_sdk_partnercentralselling::config::ProvideCredentials;
    const HOW: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with \
        ~/.aws/config, or a web identity (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE), \
        or run where a container or instance role provides them";
    let Some(provider) = config.credentials_provider() else {
        return Err(format!("no AWS credentials provider is configured: {HOW}"));
    };
    if credential_sources().is_empty() && !on_ec2() {
        return Err(format!(
            "no AWS credentials: none in the environment or ~/.aws, and this is not an EC2 instance; {HOW}"
        ));
    }
    match tokio::time::timeout(wait, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "cannot get AWS credentials: {}; {HOW}",
            aws_sdk_partnercentralselling::error::DisplayErrorContext(&e)
        )),
        Err(_) => Err(format!(
            "no AWS credentials within {wait:?} (the credential chain did not answer); {HOW}"
        )),
    }
}

/// A rate limiter for `quota` that starts with its burst spent, as if the process
/// had just sent a burst. A restarted pcsync does not know what the process before
/// it sent in its last moments, and the service counts those calls: a limiter that
/// started full would add its whole burst to them (a crash loop met 30 Partner
/// Central throttles that way). Against a token bucket of the same quota, which is
/// how AWS counts requests per second, a bucket emptied at start-up can never hold
/// more than the service's, whatever came before; the cost is at most one burst's
/// worth of waiting after a start.
pub fn drained_limiter(quota: governor::Quota) -> governor::DefaultDirectRateLimiter {
    let limiter = governor::RateLimiter::direct(quota);
    let _ = limiter.check_n(quota.burst_size());
    limiter
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
