//! The webhook emitter: when deals change, HubSpot POSTs batches of events (1–100) to
//! the app's target URL, signed with v1 and v3, with a 5-second timeout, retries that
//! count up `attemptNumber` (and re-sign), and at most 10 requests in flight
//! (reference §1, §2, §8 item 11).
//!
//! The signing here is written from HubSpot's documentation on its own, not shared
//! with pcsync's verifier, so that the two can check each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};

use crate::control::{Call, Journal};

/// Where and how webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// The app's target URL (the signed URI).
    pub url: String,
    /// The app's client secret.
    pub client_secret: String,
    /// The app's id (`appId`; also the `sourceId` of the app's own writes).
    pub app_id: u64,
    /// The account (`portalId`).
    pub portal_id: u64,
    /// Subscribed deal properties for `deal.propertyChange`; empty for all.
    pub properties: Vec<String>,
    /// Delivery attempts per batch (HubSpot: up to 10).
    pub max_attempts: u32,
    /// The first retry's delay; later ones double. HubSpot's real schedule spans
    /// hours; tests compress it.
    pub retry_base: Duration,
    /// Per-request timeout (HubSpot: 5 seconds).
    pub timeout: Duration,
    /// Requests in flight at once (HubSpot: 10).
    pub max_concurrent: usize,
}

impl WebhookTarget {
    /// HubSpot's delivery settings for `url`.
    pub fn new(url: &str, client_secret: &str, app_id: u64) -> Self {
        WebhookTarget {
            url: url.into(),
            client_secret: client_secret.into(),
            app_id,
            portal_id: 62515,
            properties: Vec::new(),
            max_attempts: 10,
            retry_base: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            max_concurrent: 10,
        }
    }
}

/// Who made a change: HubSpot's `changeSource` and `sourceId`.
#[derive(Debug, Clone)]
pub struct ChangeSource {
    /// `CRM_UI`, `INTEGRATION`, `API`…
    pub change_source: String,
    /// `userId:…`, or the app id for an app's writes.
    pub source_id: String,
}

/// Queues events and delivers them in the background.
pub struct Emitter {
    target: std::sync::Mutex<Option<WebhookTarget>>,
    queue: mpsc::UnboundedSender<Value>,
    next_event: AtomicU64,
}

static EVENT_IDS: AtomicU64 = AtomicU64::new(3_816_279_340);

impl Emitter {
    /// Starts the delivery task; events go nowhere until a target is set.
    pub fn start(journal: Arc<Journal>) -> Arc<Emitter> {
        let (tx, rx) = mpsc::unbounded_channel();
        let emitter = Arc::new(Emitter {
            target: std::sync::Mutex::new(None),
            queue: tx,
            next_event: AtomicU64::new(1),
        });
        tokio::spawn(deliver(Arc::clone(&emitter), rx, journal));
        emitter
    }

    /// Sets (or clears) the delivery target.
    pub fn set_target(&self, target: Option<WebhookTarget>) {
        *self.target.lock().expect("target lock") = target;
    }

    /// The configured app's id.
    pub fn app_id(&self) -> Option<u64> {
        self.target().map(|t| t.app_id)
    }

    fn target(&self) -> Option<WebhookTarget> {
        self.target.lock().expect("target lock").clone()
    }

    /// A deal was created.
    pub fn deal_created(&self, deal_id: &str, source: &ChangeSource) {
        self.push(deal_id, "deal.creation", None, source);
    }

    /// Deal properties changed (one event per property, as HubSpot sends them).
    pub fn deal_changed(&self, deal_id: &str, changes: &[(String, String)], source: &ChangeSource) {
        for (name, value) in changes {
            self.push(deal_id, "deal.propertyChange", Some((name, value)), source);
        }
    }

    /// Company properties changed: one `company.propertyChange` event each.
    pub fn company_changed(
        &self,
        company_id: &str,
        changes: &[(String, String)],
        source: &ChangeSource,
    ) {
        for (name, value) in changes {
            self.push(
                company_id,
                "company.propertyChange",
                Some((name, value)),
                source,
            );
        }
    }

    fn push(
        &self,
        deal_id: &str,
        kind: &str,
        change: Option<(&String, &String)>,
        source: &ChangeSource,
    ) {
        let Some(target) = self.target() else { return };
        if let Some((name, _)) = change
            && !target.properties.is_empty()
            && !target.properties.contains(name)
        {
            return;
        }
        let subscription = self.next_event.fetch_add(1, Ordering::Relaxed);
        let mut event = json!({
            "eventId": EVENT_IDS.fetch_add(1, Ordering::Relaxed),
            "subscriptionId": 6_547_000 + if kind == "deal.creation" { 1 } else { 2 + subscription % 7 },
            "portalId": target.portal_id,
            "appId": target.app_id,
            "occurredAt": jiff::Timestamp::now().as_millisecond(),
            "subscriptionType": kind,
            "attemptNumber": 0,
            "objectId": deal_id.parse::<u64>().unwrap_or_default(),
            "changeSource": source.change_source,
            "sourceId": source.source_id,
        });
        match change {
            Some((name, value)) => {
                event["propertyName"] = json!(name);
                event["propertyValue"] = json!(value);
            }
            None => event["changeFlag"] = json!("CREATED"),
        }
        let _ = self.queue.send(event);
    }
}

/// Batches queued events (up to 100, gathered for a few milliseconds) and sends
/// each batch, at most `max_concurrent` at once.
async fn deliver(
    emitter: Arc<Emitter>,
    mut rx: mpsc::UnboundedReceiver<Value>,
    journal: Arc<Journal>,
) {
    let http = reqwest::Client::new();
    let mut gate: Option<(usize, Arc<Semaphore>)> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let gather = tokio::time::sleep(Duration::from_millis(20));
        tokio::pin!(gather);
        while batch.len() < 100 {
            tokio::select! {
                _ = &mut gather => break,
                next = rx.recv() => match next {
                    Some(e) => batch.push(e),
                    None => break,
                },
            }
        }
        let Some(target) = emitter.target() else {
            continue;
        };
        let semaphore = match &gate {
            Some((n, s)) if *n == target.max_concurrent => Arc::clone(s),
            _ => {
                let s = Arc::new(Semaphore::new(target.max_concurrent.max(1)));
                gate = Some((target.max_concurrent, Arc::clone(&s)));
                s
            }
        };
        let permit = Arc::clone(&semaphore)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (http, journal) = (http.clone(), Arc::clone(&journal));
        tokio::spawn(async move {
            send_with_retries(&http, &target, batch, &journal).await;
            drop(permit);
        });
    }
}

async fn send_with_retries(
    http: &reqwest::Client,
    target: &WebhookTarget,
    mut batch: Vec<Value>,
    journal: &Journal,
) {
    for attempt in 0..target.max_attempts {
        for event in &mut batch {
            event["attemptNumber"] = json!(attempt);
        }
        let body = Value::Array(batch.clone()).to_string();
        let timestamp = jiff::Timestamp::now().as_millisecond().to_string();
        let result = http
            .post(&target.url)
            .timeout(target.timeout)
            .header("content-type", "application/json")
            .header(
                "x-hubspot-signature",
                v1(&target.client_secret, body.as_bytes()),
            )
            .header("x-hubspot-signature-version", "v1")
            .header(
                "x-hubspot-signature-v3",
                v3(
                    &target.client_secret,
                    "POST",
                    &target.url,
                    body.as_bytes(),
                    &timestamp,
                ),
            )
            .header("x-hubspot-request-timestamp", &timestamp)
            .body(body)
            .send()
            .await;
        let status = result.as_ref().map_or(0, |r| r.status().as_u16());
        journal.record(Call {
            service: "hubspot-webhooks".into(),
            operation: format!("POST {}", target.url),
            status,
            request: Value::Array(batch.clone()),
        });
        if (200..300).contains(&status) {
            return;
        }
        tokio::time::sleep(target.retry_base * 2u32.saturating_pow(attempt.min(16))).await;
    }
}

/// `hex(SHA-256(client_secret + body))` (HubSpot "Validating requests", v1).
pub fn v1(secret: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(secret.as_bytes());
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `base64(HMAC-SHA256(client_secret, method + uri + body + timestamp))` over the URI
/// with HubSpot's listed escapes decoded (HubSpot "Validating requests", v3).
pub fn v3(secret: &str, method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(method.as_bytes());
    mac.update(decode(uri).as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn decode(uri: &str) -> String {
    let mut out = uri.to_string();
    for (code, ch) in [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ] {
        out = out.replace(code, ch).replace(&code.to_lowercase(), ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // HubSpot's published vectors (docs and SDK tests).
    #[test]
    fn signatures_match_hubspots_vectors() {
        let secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
        let body = br#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
        assert_eq!(
            v1(secret, body),
            "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
        );
        assert_eq!(
            v3(
                secret,
                "POST",
                "https://www.example.com/webhook_uri",
                b"{'example_field':'example_value'}",
                "1700000300000"
            ),
            "RnbPH7+UMKVkbV32P8bz450N4M56aPmcru1+D3kSDtw="
        );
    }
}
