//! Amazon SNS over the AWS Query protocol (form-encoded `Action=…&Version=2010-03-31`
//! requests, XML answers): CreateTopic and Publish with message attributes, enough
//! to receive pcsync's notifications. Published messages are kept and readable
//! through the control API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::control::{Call, Journal};

/// The SNS side of the sandbox.
pub struct Sns {
    topics: Mutex<Vec<String>>,
    messages: Mutex<Vec<Value>>,
    journal: Arc<Journal>,
}

impl Sns {
    /// An SNS with no topics.
    pub fn new(journal: Arc<Journal>) -> Arc<Self> {
        Arc::new(Sns {
            topics: Mutex::new(Vec::new()),
            messages: Mutex::new(Vec::new()),
            journal,
        })
    }

    /// The HTTP routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", post(handle))
            .with_state(Arc::clone(self))
    }

    /// Every message published, oldest first.
    pub fn messages(&self) -> Vec<Value> {
        self.messages.lock().expect("sns lock").clone()
    }

    /// Creates a topic (idempotent, as CreateTopic is) and returns its ARN.
    pub fn create_topic(&self, name: &str) -> String {
        let arn = format!(
            "arn:aws:sns:us-east-1:{}:{name}",
            crate::partner_central::ACCOUNT
        );
        let mut topics = self.topics.lock().expect("sns lock");
        if !topics.contains(&arn) {
            topics.push(arn.clone());
        }
        arn
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{:08x}-5a1d-4b0c-9e5d-{:012x}",
        NEXT.load(Ordering::Relaxed),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn xml(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    r
}

/// An SNS error (`Sender` faults: 400 InvalidParameter, 404 NotFound).
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    xml(
        status,
        format!(
            "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            xml_escape(message),
            request_id()
        ),
    )
}

async fn handle(State(sns): State<Arc<Sns>>, body: Bytes) -> Response {
    let form: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let action = form.get("Action").cloned().unwrap_or_default();
    // An injected fault answers instead (a 5xx as SNS's `InternalError`).
    let injected = match sns.journal.take_fault("sns", &action) {
        Some(fault) => {
            crate::control::apply_fault(&fault, |status| {
                let code =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let name = if status >= 500 {
                    "InternalError"
                } else {
                    "InvalidParameter"
                };
                error(code, name, "injected by the sandbox")
            })
            .await
        }
        None => None,
    };
    let response = match injected {
        Some(r) => r,
        None => match action.as_str() {
            "CreateTopic" => create_topic(&sns, &form),
            "Publish" => publish(&sns, &form),
            other => error(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                &format!("The action {other} is not valid for this endpoint."),
            ),
        },
    };
    sns.journal.record(Call {
        service: "sns".into(),
        operation: action,
        status: response.status().as_u16(),
        request: json!(form),
    });
    response
}

fn create_topic(sns: &Sns, form: &BTreeMap<String, String>) -> Response {
    let name = form.get("Name").cloned().unwrap_or_default();
    // Topic names: 1–256 letters, digits, hyphens and underscores (.fifo allowed).
    let base = name.strip_suffix(".fifo").unwrap_or(&name);
    if base.is_empty()
        || name.len() > 256
        || !base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "Invalid parameter: Topic Name",
        );
    }
    let arn = sns.create_topic(&name);
    xml(
        StatusCode::OK,
        format!(
            "<CreateTopicResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><CreateTopicResult><TopicArn>{}</TopicArn></CreateTopicResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></CreateTopicResponse>",
            xml_escape(&arn),
            request_id()
        ),
    )
}

/// Publish: the topic must exist; `Subject` is at most 100 printable ASCII
/// characters without line breaks; the message at most 256 KiB; at most 10 message
/// attributes, each with a `DataType` and a value (SNS API reference, Publish).
fn publish(sns: &Sns, form: &BTreeMap<String, String>) -> Response {
    let topic = form.get("TopicArn").cloned().unwrap_or_default();
    if !sns.topics.lock().expect("sns lock").contains(&topic) {
        return error(StatusCode::NOT_FOUND, "NotFound", "Topic does not exist");
    }
    let Some(message) = form.get("Message").filter(|m| !m.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "Invalid parameter: Message",
        );
    };
    if message.len() > 262_144 {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "Invalid parameter: Message too long",
        );
    }
    let subject = form.get("Subject").cloned();
    if let Some(s) = &subject {
        let printable = s.chars().all(|c| c.is_ascii() && !c.is_ascii_control());
        if s.is_empty() || s.chars().count() > 100 || !printable {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "Invalid parameter: Subject",
            );
        }
    }
    let mut attributes = serde_json::Map::new();
    for i in 1.. {
        let prefix = format!("MessageAttributes.entry.{i}");
        let Some(name) = form.get(&format!("{prefix}.Name")) else {
            break;
        };
        let kind = form
            .get(&format!("{prefix}.Value.DataType"))
            .cloned()
            .unwrap_or_default();
        let value = form
            .get(&format!("{prefix}.Value.StringValue"))
            .or_else(|| form.get(&format!("{prefix}.Value.BinaryValue")))
            .cloned();
        let type_ok = kind == "String"
            || kind == "Number"
            || kind == "Binary"
            || kind.starts_with("String.")
            || kind.starts_with("Number.");
        if !type_ok || value.as_deref().is_none_or(str::is_empty) {
            return error(
                StatusCode::BAD_REQUEST,
                "ParameterValueInvalid",
                &format!(
                    "The message attribute '{name}' has an invalid message attribute type or value."
                ),
            );
        }
        attributes.insert(name.clone(), json!({ "Type": kind, "Value": value }));
    }
    if attributes.len() > 10 {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "Number of message attributes exceeds the limit of 10",
        );
    }
    let id = request_id();
    sns.messages.lock().expect("sns lock").push(json!({
        "MessageId": id, "TopicArn": topic, "Subject": subject, "Message": message, "MessageAttributes": attributes,
    }));
    xml(
        StatusCode::OK,
        format!(
            "<PublishResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><PublishResult><MessageId>{id}</MessageId></PublishResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></PublishResponse>",
            request_id()
        ),
    )
}
