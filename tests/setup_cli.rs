//! `pcsync setup hubspot` against the sandbox: creates the custom deal properties
//! the shipped packs use, and a second run finds them all there.

use std::path::PathBuf;
use std::process::Command;

use pcsync_sandbox::{Options, Sandbox};

#[tokio::test]
async fn setup_creates_the_packs_properties_once() {
    let sb = Sandbox::on_loopback(Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    let config = dir.path().join("pcsync.yaml");
    std::fs::write(
        &config,
        format!(
            "public_url: https://sync.example.com\nrules: {}\nhubspot:\n  base_url: {}\n  token: sandbox-token\n  client_secret: s\npartner_central:\n  catalog: Sandbox\n  endpoint_url: {}\n",
            rules.display(),
            sb.hubspot_url,
            sb.partner_central_url
        ),
    )
    .unwrap();
    let run = move || {
        let out = Command::new(env!("CARGO_BIN_EXE_pcsync"))
            .args(["setup", "hubspot", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = tokio::task::spawn_blocking(run.clone()).await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    for name in [
        "aws_opportunity_id",
        "aws_sync_status",
        "aws_last_sync_date",
        "aws_synced_resources",
        "aws_last_resource_sync",
        "aws_customer_account_id",
    ] {
        assert!(stdout.contains(&format!("created  {name}")), "{stdout}");
    }
    assert!(stdout.contains("6 created, 0 already there"), "{stdout}");
    let kind = sb
        .hubspot
        .with_store(|s| s.deal_properties["aws_last_sync_date"].definition["type"].clone());
    assert_eq!(kind, "datetime");

    let (code, stdout, _) = tokio::task::spawn_blocking(run).await.unwrap();
    assert_eq!(code, Some(0));
    assert!(stdout.contains("0 created, 6 already there"), "{stdout}");
}
