//! The container image's start-up, outside a container: `deploy/entrypoint.sh` writes
//! the config from environment variables alone and starts `pcsync serve` with it, as
//! the image's ENTRYPOINT does; `pcsync healthcheck` is the image's HEALTHCHECK.

mod common;

use std::process::{Command, Stdio};

use common::*;
use pcsync_sandbox::{Options, Sandbox};
use serde_json::json;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn healthcheck(url: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .args(["healthcheck", "--url", url, "--timeout", "2"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_entrypoint_runs_the_service_from_the_environment_alone() {
    let sb = Sandbox::demo_on_loopback(Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let stderr = dir.path().join("stderr.log");
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    // Only the environment: no config file where the image looks for one. A secret
    // with YAML's special characters must arrive as written.
    let child = Command::new("sh")
        .arg(root().join("deploy/entrypoint.sh"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PCSYNC_BIN", env!("CARGO_BIN_EXE_pcsync"))
        .env("PCSYNC_CONFIG", dir.path().join("absent.yaml"))
        .env("TMPDIR", dir.path())
        .env("PCSYNC_LISTEN", format!("127.0.0.1:{port}"))
        .env("PCSYNC_PUBLIC_URL", &url)
        .env("PCSYNC_STATE", dir.path().join("state/pcsync.db"))
        .env("PCSYNC_RULES", root().join("rules"))
        .env("PCSYNC_ADMIN_TOKEN", "admin: 'token' #1")
        .env("HUBSPOT_TOKEN", "sandbox-token")
        .env("HUBSPOT_CLIENT_SECRET", "s3cret: {with} 'quotes' #")
        .env("HUBSPOT_APP_ID", "777")
        .env("HUBSPOT_BASE_URL", &sb.hubspot_url)
        .env("PARTNER_CENTRAL_CATALOG", "Sandbox")
        .env("PARTNER_CENTRAL_ENDPOINT_URL", &sb.partner_central_url)
        .env("EVENTBRIDGE_SECRET", "events-secret-0123456789")
        .env("AWS_ACCESS_KEY_ID", "sandbox")
        .env("AWS_SECRET_ACCESS_KEY", "sandbox")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let service = Service { child, stderr, url };
    let health = format!("{}/healthz", service.url);
    let http = reqwest::Client::new();
    eventually("the service to answer", &service, || get(&http, &health)).await;
    let (healthy, why) = healthcheck(&health);
    assert!(healthy, "{why}");
    // The secrets stayed in the environment: the written config names them only.
    let written = std::fs::read_to_string(dir.path().join("pcsync.yaml")).unwrap();
    assert!(written.contains("${HUBSPOT_CLIENT_SECRET}"), "{written}");
    assert!(!written.contains("s3cret"), "{written}");
    // The operator token arrived as written.
    let rules = http
        .get(format!("{}/rules", service.url))
        .bearer_auth("admin: 'token' #1")
        .send()
        .await
        .unwrap();
    assert_eq!(rules.status().as_u16(), 200);

    // It syncs: HubSpot's signed webhooks (with the odd secret) reach it.
    http.post(format!("{}/_sandbox/hubspot/webhooks", sb.hubspot_url))
        .json(&json!({ "url": format!("{}/webhooks/hubspot", service.url),
                       "client_secret": "s3cret: {with} 'quotes' #", "app_id": 777 }))
        .send_ok()
        .await;
    qualify_demo_deal(&http, &sb).await;
    demo_opportunity_qualified(&http, &sb, &service).await;
}

#[test]
fn the_healthcheck_fails_when_nothing_answers() {
    let port = free_port();
    let (healthy, why) = healthcheck(&format!("http://127.0.0.1:{port}/healthz"));
    assert!(!healthy);
    assert!(why.starts_with("unhealthy:"), "{why}");
}

#[test]
fn the_entrypoint_says_which_variable_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg(root().join("deploy/entrypoint.sh"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PCSYNC_BIN", env!("CARGO_BIN_EXE_pcsync"))
        .env("PCSYNC_CONFIG", dir.path().join("absent.yaml"))
        .env("TMPDIR", dir.path())
        .env("HUBSPOT_TOKEN", "t")
        .env("HUBSPOT_CLIENT_SECRET", "s")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PCSYNC_PUBLIC_URL"), "{stderr}");
}
