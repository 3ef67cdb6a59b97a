//! Credentials masked in the log output, whatever wrote them.
//!
//! pcsync never logs a credential itself, but the AWS SDK's crates do at debug and
//! trace (`PCSYNC_LOG=trace`): the identity it resolved (`Credentials`' `Debug`
//! shows the access key id; only the secret is redacted there), the signing
//! parameters and the endpoint parameters carry it. Capping those targets would
//! miss the next SDK version's, so every line is scrubbed on its way to stderr:
//! the `access_key_id` field, anything shaped like an AWS access key id, and the
//! key id in a SigV4 `Credential=` scope.

use std::io::Write;
use std::sync::LazyLock;

use regex::Regex;
use tracing_subscriber::fmt::MakeWriter;

/// `access_key_id: "…"` as `Credentials`' `Debug` writes it (its quotes escaped
/// inside a JSON log line).
static FIELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(access_key_id: \\?")[^"\\]*(\\?")"#).expect("a valid pattern"));

/// An AWS access key id (IAM's unique id prefixes, then 16 characters).
static KEY_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}\b")
        .expect("a valid pattern")
});

/// A SigV4 credential scope: `Credential=<key id>/<date>/<region>/<service>/…`.
static SCOPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(Credential=)[^/\s,]+/").expect("a valid pattern"));

/// `text` with every access key id in it masked.
pub fn access_keys(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("access_key_id") && !text.contains("Credential=") && !KEY_ID.is_match(text) {
        return std::borrow::Cow::Borrowed(text);
    }
    let text = FIELD.replace_all(text, "${1}** redacted **${2}");
    let text = SCOPE.replace_all(&text, "${1}** redacted **/").into_owned();
    let text = KEY_ID
        .replace_all(&text, "${1}****************")
        .into_owned();
    std::borrow::Cow::Owned(text)
}

/// A log writer that masks access key ids in what goes through it (the
/// formatter writes each event whole, in one write).
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

/// The writer of [`Redacting`].
pub struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(access_keys(text).as_bytes())?,
            Err(_) => self
                .0
                .write_all(access_keys(&String::from_utf8_lossy(buf)).as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_ids_are_masked_in_the_sdks_own_lines() {
        // As aws-smithy-runtime logs the identity it resolved, in text and JSON.
        let text = r#"resolved identity identity=Identity { data: Credentials { provider_name: "EnvironmentVariable", access_key_id: "test-key", secret_access_key: "** redacted **" } }"#;
        let masked = access_keys(text);
        assert!(!masked.contains("test-key"), "{masked}");
        assert!(
            masked.contains(r#"access_key_id: "** redacted **""#),
            "{masked}"
        );
        let json = r#"{"fields":{"identity":"Credentials { access_key_id: \"test-key\", x: 1 }"}}"#;
        assert!(
            !access_keys(json).contains("test-key"),
            "{}",
            access_keys(json)
        );

        let header = "authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261208/us-east-1/partnercentral-selling/aws4_request";
        let masked = access_keys(header);
        assert!(!masked.contains("IOSFODNN7EXAMPLE"), "{masked}");
        assert!(masked.contains("/20261208/us-east-1/"), "{masked}");
        assert!(!access_keys("key ASIAIOSFODNN7EXAMPLE here").contains("IOSFODNN7EXAMPLE"));

        let plain = "listening address=http://127.0.0.1:8080";
        assert!(matches!(access_keys(plain), std::borrow::Cow::Borrowed(_)));
    }
}
