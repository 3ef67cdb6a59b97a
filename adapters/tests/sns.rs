//! pcsync's SNS publisher against two SNS implementations: the sandbox, and moto's
//! server (a third-party implementation of the same Query protocol). moto must be
//! installed (`pip install 'moto[server]'`; `.ci/run` does it).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_sns::config::Credentials;
use indexmap::IndexMap;
use pcsync_adapters::sns::SnsPublisher;
use pcsync_sandbox::{Options, Sandbox};
use serde_json::Value;

async fn sdk_client(endpoint: &str) -> aws_sdk_sns::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "sandbox-secret",
            None,
            None,
            "test",
        ))
        .load()
        .await;
    aws_sdk_sns::Client::new(&conf)
}

fn attributes() -> IndexMap<String, String> {
    IndexMap::from([
        ("dealId".to_string(), "101".to_string()),
        ("priority".to_string(), "high".to_string()),
    ])
}

#[tokio::test]
async fn publishes_with_attributes_and_an_sns_safe_subject_to_the_sandbox() {
    let sb = Sandbox::on_loopback(Options::default()).await.unwrap();
    let client = sdk_client(&sb.sns_url).await;
    let topic = client
        .create_topic()
        .name("pcsync-notifications")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let publisher = SnsPublisher::from_client(client);
    let id = publisher
        .publish(
            &topic,
            "🎯 AWS Engagement Score Increased (+18)",
            "Score is now 82.",
            &attributes(),
        )
        .await
        .unwrap();
    assert!(!id.is_empty());
    let messages = sb.sns.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["TopicArn"], topic);
    assert_eq!(m["Subject"], "AWS Engagement Score Increased (+18)");
    assert_eq!(m["Message"], "Score is now 82.");
    assert_eq!(
        m["MessageAttributes"]["dealId"],
        serde_json::json!({"Type": "String", "Value": "101"})
    );
    assert_eq!(m["MessageAttributes"]["priority"]["Value"], "high");
}

#[tokio::test]
async fn an_unknown_topic_is_a_permanent_error() {
    let sb = Sandbox::on_loopback(Options::default()).await.unwrap();
    let publisher = SnsPublisher::from_client(sdk_client(&sb.sns_url).await);
    let err = publisher
        .publish(
            "arn:aws:sns:us-east-1:123456789012:missing",
            "s",
            "m",
            &attributes(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("NotFound"));
    assert!(!err.retryable);
}

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn publishes_to_motos_sns_and_reads_the_message_back() {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server runs: install it with `pip install 'moto[server]'` (.ci/run does)");
    let _moto = Moto(child);
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http
            .get(format!("{url}/moto-api/data.json"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "moto_server did not start on port {port}");

    let client = sdk_client(&url).await;
    let topic = client
        .create_topic()
        .name("pcsync-notifications")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let publisher = SnsPublisher::from_client(client);
    publisher
        .publish(
            &topic,
            "✅ AWS Approved Opportunity",
            "Coordinate with the AWS seller.",
            &attributes(),
        )
        .await
        .unwrap();

    let data: Value = http
        .get(format!("{url}/moto-api/data.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = data["sns"].to_string();
    assert!(
        text.contains("Coordinate with the AWS seller."),
        "message not found in moto's state: {text}"
    );
    assert!(text.contains("AWS Approved Opportunity"), "{text}");
    assert!(text.contains("dealId") && text.contains("101"), "{text}");
}
