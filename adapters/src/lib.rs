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
