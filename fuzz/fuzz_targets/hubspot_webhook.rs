//! HubSpot's webhook body as ingest reads it, and the signature check: any bytes
//! must be read or refused without a panic, a refused signature must never pass,
//! and a body signed with the secret must always pass.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pcsync_adapters::hubspot::signature::{self, Policy, SignatureHeaders};

const SECRET: &str = "fuzz-client-secret";
const URI: &str = "https://sync.example.com/webhooks/hubspot";
const NOW: u64 = 1_764_331_200_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(read) = pcsync_runtime::service::ingest::read_hubspot(data) {
        for (event, stored) in read.events {
            let text = stored.expect("ingest keeps the text as received");
            let back = pcsync_engine::Event::from_stored_json(&text).expect("stored text reads back");
            assert_eq!(back.id, event.id);
            assert_eq!(back.deal_id, event.deal_id);
        }
    }
    // The body's first bytes as a forged signature header: never accepted.
    let forged = String::from_utf8_lossy(&data[..data.len().min(64)]).into_owned();
    let ts = NOW.to_string();
    let headers = SignatureHeaders {
        v3: Some(&forged),
        timestamp: Some(&ts),
        v1: Some(&forged),
        v1_version: Some("v1"),
    };
    let genuine = signature::v3(SECRET, "POST", URI, data, &ts);
    if forged != genuine {
        assert!(signature::verify(SECRET, "POST", URI, data, headers, Policy::default(), NOW).is_err());
    }
    // Signed with the secret: accepted.
    let headers = SignatureHeaders {
        v3: Some(&genuine),
        timestamp: Some(&ts),
        v1: None,
        v1_version: None,
    };
    assert!(signature::verify(SECRET, "POST", URI, data, headers, Policy::default(), NOW).is_ok());
});
