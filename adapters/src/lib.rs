//! pcsync's adapters: the edges that speak other systems' protocols: HubSpot webhook
//! signatures and the CRM client, the Partner Central client (the real AWS SDK), and
//! SNS publishing. Adapters never import the runtime; the engine never imports them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod hubspot;
pub mod partner_central;
pub mod quota;
pub mod sns;

/// How long an AWS call may take. Each attempt (one HTTP exchange) gets `attempt`.
/// SNS calls keep the SDK's retries, and the whole call gets `attempt` times its
/// attempts (3); the Partner Central client retries itself (three attempts, through
/// its rate limiter, at most 1 s and then 2 s of backoff unless the service asks for
/// more), so a hung endpoint never holds the worker for much longer than three
/// attempts either.
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
    let sources = credential_sources();
    if sources.is_empty() && !on_ec2() {
        return Err(format!(
            "no AWS credentials: none in the environment or ~/.aws, and this is not an EC2 instance; {HOW}"
        ));
    }
    let tried = match sources.is_empty() {
        true => "the instance role".to_string(),
        false => sources.join(", "),
    };
    match tokio::time::timeout(wait, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "cannot get AWS credentials from {tried}: {}; {HOW}",
            aws_sdk_partnercentralselling::error::DisplayErrorContext(&e)
        )),
        Err(_) => Err(format!(
            "no AWS credentials from {tried} within {wait:?} (the credential chain did not answer); {HOW}"
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

/// How much slower than a per-second quota pcsync paces its calls.
const PACING_MARGIN: f64 = 1.05;

/// A quota that sends at most `per_second` requests a second, evenly spaced a little
/// wider than the service's own spacing, with no burst.
///
/// A service counting with a token bucket of the same rate (AWS's per-second quotas)
/// would otherwise throttle pcsync without it going over: a client that sends a full
/// burst and then one request per period leaves the service's bucket with nothing to
/// spare, so any request the network delays a little bunches up with the next and
/// is refused. The long fault run met 659 such throttles (29 in 12 cycles on
/// GetResourceSnapshot alone, none injected). Paced 5% wide with no burst, the
/// service's bucket stays full, and jitter of up to a period is absorbed.
pub fn paced_quota(per_second: u32) -> governor::Quota {
    let period = std::time::Duration::from_secs_f64(PACING_MARGIN / f64::from(per_second.max(1)));
    governor::Quota::with_period(period).expect("a positive period")
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
    /// `api` refused a call for the day (HubSpot's daily limit); it resets at
    /// `resets_at`.
    fn daily_limit(&self, api: &'static str, resets_at: jiff::Timestamp) {
        let _ = (api, resets_at);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;
    use governor::{Quota, RateLimiter};

    /// Requests a client limited by `client` sends as fast as it may, each reaching
    /// a service that counts with a token bucket of `per_second` after a network delay
    /// of 0–40 ms, pausing for 3 s after every 100 (work comes in waves); the number
    /// the service refuses.
    fn refused(client: Quota, per_second: u32, requests: usize) -> usize {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(client, clock.clone());
        let _ = limiter.check_n(client.burst_size());
        let mut now = Duration::ZERO;
        let mut arrivals = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        while arrivals.len() < requests {
            match limiter.check() {
                Ok(()) => {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    arrivals.push(now + Duration::from_millis(seed % 41));
                    if arrivals.len() % 100 == 0 {
                        clock.advance(Duration::from_secs(3));
                        now += Duration::from_secs(3);
                    }
                }
                Err(_) => {
                    clock.advance(Duration::from_millis(1));
                    now += Duration::from_millis(1);
                }
            }
        }
        arrivals.sort();
        let service_clock = FakeRelativeClock::default();
        let service = RateLimiter::direct_with_clock(
            Quota::per_second(std::num::NonZeroU32::new(per_second).unwrap()),
            service_clock.clone(),
        );
        let mut at = Duration::ZERO;
        arrivals
            .into_iter()
            .filter(|arrival| {
                service_clock.advance(*arrival - at);
                at = *arrival;
                service.check().is_err()
            })
            .count()
    }

    #[test]
    fn paced_calls_are_never_throttled_by_a_bucket_of_the_same_rate() {
        for per_second in [1, 10] {
            assert_eq!(
                refused(super::paced_quota(per_second), per_second, 2_000),
                0,
                "{per_second}/s"
            );
            // What the limiters did before: the same rate with its burst. Jitter alone
            // gets requests refused (this is why pacing exists).
            let same = Quota::per_second(std::num::NonZeroU32::new(per_second).unwrap());
            assert!(refused(same, per_second, 2_000) > 0, "{per_second}/s");
        }
    }

    #[test]
    fn pacing_costs_no_more_than_five_percent() {
        let period = super::paced_quota(1).replenish_interval();
        assert!(period >= Duration::from_secs(1) && period <= Duration::from_millis(1_050));
        assert_eq!(super::paced_quota(10).burst_size().get(), 1);
    }
}
