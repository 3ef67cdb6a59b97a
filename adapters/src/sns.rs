//! Publishing notifications to Amazon SNS with the AWS SDK.

use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::MessageAttributeValue;
use indexmap::IndexMap;

/// Why a publish failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SNS publish failed: {message}")]
pub struct PublishError {
    /// What SNS (or the connection) said.
    pub message: String,
    /// The error code, when SNS answered (`NotFound`, `InvalidParameter`, `Throttled`).
    pub code: Option<String>,
    /// Whether a retry may succeed (throttling, server errors, timeouts).
    pub retryable: bool,
}

/// Publishes messages to SNS topics.
#[derive(Debug, Clone)]
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
    observer: Option<std::sync::Arc<dyn crate::Observer>>,
}

impl SnsPublisher {
    /// A publisher using the standard AWS credential chain, in `region`, talking to
    /// `endpoint_url` when given (the sandbox, a test double) instead of AWS.
    pub async fn new(region: &str, endpoint_url: Option<&str>) -> Self {
        let config =
            crate::aws_sdk_config(region, endpoint_url, None, crate::AwsTimeouts::default()).await;
        Self::from_client(aws_sdk_sns::Client::new(&config))
    }

    /// A publisher from a shared SDK configuration ([`crate::aws_sdk_config`]).
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        Self::from_client(aws_sdk_sns::Client::new(config))
    }

    /// A publisher over an existing client.
    pub fn from_client(client: aws_sdk_sns::Client) -> Self {
        SnsPublisher {
            client,
            observer: None,
        }
    }

    /// Reports each publish to `observer`.
    pub fn with_observer(mut self, observer: std::sync::Arc<dyn crate::Observer>) -> Self {
        let config = self
            .client
            .config()
            .to_builder()
            .interceptor(crate::Attempts {
                api: "sns",
                observer: std::sync::Arc::clone(&observer),
            })
            .build();
        self.client = aws_sdk_sns::Client::from_conf(config);
        self.observer = Some(observer);
        self
    }

    /// Publishes `message` with `subject` and string `attributes` (such as `dealId`,
    /// `priority`) to `topic_arn`; returns the message id. The subject is made to fit
    /// SNS's rule (printable ASCII, no line breaks, at most 100 characters): emoji in
    /// notification titles are dropped rather than failing the publish.
    pub async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
        attributes: &IndexMap<String, String>,
    ) -> Result<String, PublishError> {
        let mut request = self
            .client
            .publish()
            .topic_arn(topic_arn)
            .message(message)
            .set_subject(sns_subject(subject));
        for (name, value) in attributes.iter().filter(|(_, v)| !v.is_empty()) {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| PublishError {
                    message: e.to_string(),
                    code: None,
                    retryable: false,
                })?;
            request = request.message_attributes(name, attribute);
        }
        let started = std::time::Instant::now();
        let result = match request.send().await {
            Ok(out) => Ok(out.message_id.unwrap_or_default()),
            Err(e) => Err(classify(e)),
        };
        if let Some(o) = &self.observer {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.code.as_deref().unwrap_or("transport"),
            };
            o.called("sns", "Publish", outcome, started.elapsed());
        }
        result
    }
}

fn classify(
    e: SdkError<
        aws_sdk_sns::operation::publish::PublishError,
        aws_sdk_sns::config::http::HttpResponse,
    >,
) -> PublishError {
    let code = e.code().map(str::to_string);
    let retryable = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => {
            s.raw().status().as_u16() >= 500
                || matches!(
                    code.as_deref(),
                    Some(
                        "Throttled"
                            | "Throttling"
                            | "ThrottlingException"
                            | "InternalError"
                            | "InternalFailure"
                    )
                )
        }
        _ => false,
    };
    PublishError {
        message: e
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{e:?}")),
        code,
        retryable,
    }
}

/// A subject SNS accepts: printable ASCII without line breaks, at most 100
/// characters; `None` when nothing printable is left.
pub fn sns_subject(title: &str) -> Option<String> {
    let ascii: String = title
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                ' '
            }
        })
        .collect();
    let words: Vec<&str> = ascii.split_whitespace().collect();
    let subject: String = words.join(" ").chars().take(100).collect();
    let subject = subject.trim().to_string();
    (!subject.is_empty()).then_some(subject)
}

#[cfg(test)]
mod tests {
    use super::sns_subject;

    #[test]
    fn subjects_lose_emoji_and_line_breaks_and_fit_100_characters() {
        assert_eq!(
            sns_subject("🎯 AWS Engagement Score Increased (+18)").as_deref(),
            Some("AWS Engagement Score Increased (+18)")
        );
        assert_eq!(sns_subject("a\nb").as_deref(), Some("a b"));
        assert_eq!(sns_subject(&"x".repeat(150)).map(|s| s.len()), Some(100));
        assert_eq!(sns_subject("✅"), None);
    }
}
