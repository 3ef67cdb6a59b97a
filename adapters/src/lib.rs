//! pcsync's adapters: the edges that speak other systems' protocols: HubSpot webhook
//! signatures and the CRM client, the Partner Central client (the real AWS SDK), and
//! SNS publishing. Adapters never import the runtime; the engine never imports them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod hubspot;
pub mod partner_central;
pub mod sns;

/// The AWS SDK configuration pcsync's clients share: `region`, `endpoint_url` instead
/// of AWS when given (the sandbox), and credentials from the standard chain, or fixed
/// ones when `static_credentials` is given (the sandbox, which needs none real).
pub async fn aws_sdk_config(
    region: &str,
    endpoint_url: Option<&str>,
    static_credentials: Option<(&str, &str)>,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()));
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

/// Receives what the clients measure, for the service's metrics. Optional: a client
/// without one measures nothing.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// A call to `api` (`partnercentral`, `hubspot`, `sns`) finished: its operation
    /// (`GetOpportunity`, `PATCH /crm/v3/objects/deals/{id}`), outcome (`ok` or the
    /// error code or HTTP status) and how long it took, SDK retries included.
    fn called(&self, api: &'static str, operation: &str, outcome: &str, took: std::time::Duration);
    /// A call waited `waited` for the client-side rate limiter of `api` before going out.
    fn waited(&self, api: &'static str, waited: std::time::Duration);
}
