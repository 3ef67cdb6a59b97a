//! HubSpot webhook signatures, exactly as HubSpot computes them (developers.hubspot.com
//! "Validating requests"; HubSpot's Node, Python, PHP and Ruby SDKs):
//!
//! - v1: `hex(SHA-256(client_secret + raw_body))`, in `X-HubSpot-Signature`.
//! - v2: `hex(SHA-256(client_secret + method + uri + raw_body))`.
//! - v3: `base64(HMAC-SHA256(client_secret, method + uri + raw_body + timestamp))`, in
//!   `X-HubSpot-Signature-v3`, with the millisecond timestamp in
//!   `X-HubSpot-Request-Timestamp`; requests older than 5 minutes are rejected.
//!
//! v1 signs neither the URL nor a time, so a captured request can be replayed: pcsync
//! accepts it only when the config says so.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How old (or how far in the future) a v3 timestamp may be: HubSpot's 5 minutes.
pub const MAX_AGE_MS: u64 = 5 * 60 * 1000;

/// The signature headers of one webhook request.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureHeaders<'a> {
    /// `X-HubSpot-Signature-v3`.
    pub v3: Option<&'a str>,
    /// `X-HubSpot-Request-Timestamp` (milliseconds since the epoch).
    pub timestamp: Option<&'a str>,
    /// `X-HubSpot-Signature`.
    pub v1: Option<&'a str>,
    /// `X-HubSpot-Signature-Version` (`v1` or `v2`).
    pub v1_version: Option<&'a str>,
}

/// What a verification accepts.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Accept a v1 signature when no v3 signature is present.
    pub accept_v1: bool,
    /// The largest accepted distance between the timestamp and now.
    pub max_age_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            accept_v1: false,
            max_age_ms: MAX_AGE_MS,
        }
    }
}

/// Which signature a request was accepted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The v3 HMAC with a fresh timestamp.
    V3,
    /// The v1 hash (only when the policy accepts it).
    V1,
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header the policy accepts.
    #[error("missing signature: expected X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp")]
    Missing,
    /// The v3 signature came without a timestamp, or the timestamp is not a number.
    #[error("missing or malformed X-HubSpot-Request-Timestamp")]
    BadTimestamp,
    /// The timestamp is further than the window from now.
    #[error("stale timestamp: {age_ms} ms from now, more than the {max_ms} ms allowed")]
    Stale {
        /// Distance from now, in milliseconds.
        age_ms: u64,
        /// The window.
        max_ms: u64,
    },
    /// The signature does not match the request.
    #[error("signature mismatch ({0})")]
    Mismatch(&'static str),
    /// Only a v1 signature was sent and the policy refuses v1.
    #[error("v1 signatures are not accepted (set hubspot.accept_v1_signatures to allow them)")]
    V1NotAccepted,
}

/// The v1 signature: `hex(SHA-256(secret + body))`.
pub fn v1(secret: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(secret.as_bytes());
    hash.update(body);
    hex(&hash.finalize())
}

/// The v2 signature: `hex(SHA-256(secret + method + uri + body))`.
pub fn v2(secret: &str, method: &str, uri: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(secret.as_bytes());
    hash.update(method.as_bytes());
    hash.update(uri.as_bytes());
    hash.update(body);
    hex(&hash.finalize())
}

/// The v3 signature over `method + uri + body + timestamp`, where `uri` is the full
/// URL HubSpot called (it is decoded as HubSpot's table says before signing).
pub fn v3(secret: &str, method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(method.as_bytes());
    mac.update(decode_uri(uri).as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Decodes the twelve percent-escapes HubSpot's v3 procedure lists (and no others:
/// `%20`, `%26`, `%3D` stay encoded). Case-insensitive.
pub fn decode_uri(uri: &str) -> String {
    const TABLE: [(&str, char); 12] = [
        ("3A", ':'),
        ("2F", '/'),
        ("3F", '?'),
        ("40", '@'),
        ("21", '!'),
        ("24", '$'),
        ("27", '\''),
        ("28", '('),
        ("29", ')'),
        ("2A", '*'),
        ("2C", ','),
        ("3B", ';'),
    ];
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3).map(str::to_ascii_uppercase);
        match code.and_then(|c| TABLE.iter().find(|(k, _)| *k == c)) {
            Some((_, ch)) => {
                out.push(*ch);
                rest = &rest[i + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Verifies a webhook request. `uri` is the full public URL HubSpot called
/// (`public_url` + path + query), `now_ms` the current time.
pub fn verify(
    secret: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    headers: SignatureHeaders<'_>,
    policy: Policy,
    now_ms: u64,
) -> Result<Verified, SignatureError> {
    if let Some(given) = headers.v3 {
        let timestamp = headers.timestamp.ok_or(SignatureError::BadTimestamp)?;
        let ts: u64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        let age_ms = now_ms.abs_diff(ts);
        if age_ms > policy.max_age_ms {
            return Err(SignatureError::Stale {
                age_ms,
                max_ms: policy.max_age_ms,
            });
        }
        let expected = v3(secret, method, uri, body, timestamp);
        return if equal(expected.as_bytes(), given.trim().as_bytes()) {
            Ok(Verified::V3)
        } else {
            Err(SignatureError::Mismatch("v3"))
        };
    }
    match headers.v1 {
        Some(_) if !policy.accept_v1 => Err(SignatureError::V1NotAccepted),
        Some(given) => {
            let expected = match headers.v1_version {
                Some("v2") => v2(secret, method, uri, body),
                _ => v1(secret, body),
            };
            if equal(
                expected.as_bytes(),
                given.trim().to_ascii_lowercase().as_bytes(),
            ) {
                Ok(Verified::V1)
            } else {
                Err(SignatureError::Mismatch("v1"))
            }
        }
        None => Err(SignatureError::Missing),
    }
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Official vectors: HubSpot's docs and SDK tests (reference §2.3).
    const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const URI: &str = "https://www.example.com/webhook_uri";
    const SINGLE_QUOTED: &[u8] = b"{'example_field':'example_value'}";

    #[test]
    fn v1_matches_hubspot_vectors() {
        let body = br#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
        assert_eq!(
            v1(SECRET, body),
            "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
        );
        assert_eq!(
            v1(SECRET, SINGLE_QUOTED),
            "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
        );
    }

    #[test]
    fn v2_matches_hubspot_vectors() {
        assert_eq!(
            v2(SECRET, "GET", URI, b""),
            "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
        );
        assert_eq!(
            v2(SECRET, "POST", URI, br#"{"example_field":"example_value"}"#),
            "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"
        );
        assert_eq!(
            v2(SECRET, "POST", URI, SINGLE_QUOTED),
            "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"
        );
    }

    #[test]
    fn v3_matches_hubspot_vectors() {
        for (ts, expected) in [
            ("15000000", "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="),
            (
                "1693657560000",
                "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=",
            ),
            (
                "1700000300000",
                "RnbPH7+UMKVkbV32P8bz450N4M56aPmcru1+D3kSDtw=",
            ),
        ] {
            assert_eq!(
                v3(SECRET, "POST", URI, SINGLE_QUOTED, ts),
                expected,
                "timestamp {ts}"
            );
        }
    }

    const EXAMPLE_BODY: &[u8] = br#"[{"eventId":100,"subscriptionId":1,"portalId":99999,"appId":12345,"occurredAt":1714200001000,"subscriptionType":"deal.propertyChange","attemptNumber":0,"objectId":4500,"propertyName":"dealstage","propertyValue":"qualifiedtobuy","changeSource":"CRM_UI","sourceId":"userId:123"}]"#;

    #[test]
    fn v3_decodes_only_hubspots_table_in_the_query() {
        let uri = "https://example.com/hubspot/webhook?src=hs%3Aapp%2Fv3&note=a%20b";
        assert_eq!(
            decode_uri(uri),
            "https://example.com/hubspot/webhook?src=hs:app/v3&note=a%20b"
        );
        assert_eq!(
            v3(
                "test-client-secret",
                "POST",
                uri,
                EXAMPLE_BODY,
                "1714200002000"
            ),
            "Zqhe6ETof9qb11geYrGJpYIyEmozaigrqUTOzdBg11E="
        );
    }

    fn headers(sig: &str) -> SignatureHeaders<'_> {
        SignatureHeaders {
            v3: Some(sig),
            timestamp: Some("1714200002000"),
            ..Default::default()
        }
    }

    #[test]
    fn fresh_v3_request_verifies() {
        let uri = "https://example.com/hubspot/webhook";
        let sig = "dzTEe8yhJ5OH53TH9UKrKuVPRcatauAlhc6vFePoGzI=";
        let got = verify(
            "test-client-secret",
            "POST",
            uri,
            EXAMPLE_BODY,
            headers(sig),
            Policy::default(),
            1714200002000 + 1000,
        );
        assert_eq!(got, Ok(Verified::V3));
    }

    #[test]
    fn tampered_body_wrong_secret_or_url_fail() {
        let uri = "https://example.com/hubspot/webhook";
        let sig = "dzTEe8yhJ5OH53TH9UKrKuVPRcatauAlhc6vFePoGzI=";
        let now = 1714200002000;
        let mut body = EXAMPLE_BODY.to_vec();
        body[10] = b'9';
        for (secret, uri, body) in [
            ("test-client-secret", uri, &body[..]),
            ("other-secret", uri, EXAMPLE_BODY),
            (
                "test-client-secret",
                "https://example.com/hubspot/webhook/",
                EXAMPLE_BODY,
            ),
        ] {
            assert_eq!(
                verify(
                    secret,
                    "POST",
                    uri,
                    body,
                    headers(sig),
                    Policy::default(),
                    now
                ),
                Err(SignatureError::Mismatch("v3"))
            );
        }
    }

    #[test]
    fn timestamps_outside_five_minutes_are_stale_either_way() {
        let uri = "https://example.com/hubspot/webhook";
        let sig = "dzTEe8yhJ5OH53TH9UKrKuVPRcatauAlhc6vFePoGzI=";
        let ts = 1714200002000;
        for now in [ts + MAX_AGE_MS + 1, ts - MAX_AGE_MS - 1] {
            assert!(matches!(
                verify(
                    "test-client-secret",
                    "POST",
                    uri,
                    EXAMPLE_BODY,
                    headers(sig),
                    Policy::default(),
                    now
                ),
                Err(SignatureError::Stale { .. })
            ));
        }
        assert!(
            verify(
                "test-client-secret",
                "POST",
                uri,
                EXAMPLE_BODY,
                headers(sig),
                Policy::default(),
                ts + MAX_AGE_MS
            )
            .is_ok()
        );
    }

    #[test]
    fn v1_only_when_the_policy_allows_it() {
        let uri = "https://example.com/hubspot/webhook";
        let h = SignatureHeaders {
            v1: Some("50bd88562c8f707630ec9c70be2b6d1eec1e1bf5620daeec71ef51d53d6377ea"),
            v1_version: Some("v1"),
            ..Default::default()
        };
        let strict = Policy::default();
        let lenient = Policy {
            accept_v1: true,
            ..Policy::default()
        };
        assert_eq!(
            verify(
                "test-client-secret",
                "POST",
                uri,
                EXAMPLE_BODY,
                h,
                strict,
                0
            ),
            Err(SignatureError::V1NotAccepted)
        );
        assert_eq!(
            verify(
                "test-client-secret",
                "POST",
                uri,
                EXAMPLE_BODY,
                h,
                lenient,
                0
            ),
            Ok(Verified::V1)
        );
        assert_eq!(
            verify("wrong", "POST", uri, EXAMPLE_BODY, h, lenient, 0),
            Err(SignatureError::Mismatch("v1"))
        );
    }

    #[test]
    fn no_signature_is_missing() {
        assert_eq!(
            verify(
                "s",
                "POST",
                "https://x",
                b"[]",
                SignatureHeaders::default(),
                Policy::default(),
                0
            ),
            Err(SignatureError::Missing)
        );
    }
}
