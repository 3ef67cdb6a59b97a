//! `pcsync doctor` against a running service and the sandbox: every check passes when
//! things are right, and each wrong thing fails on its own line with its fix.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn doctor(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .args(["doctor", "--config"])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_sound_setup_and_names_each_fault_with_its_fix() {
    let (sb, dir, _service, config) = start(|_| {}, "").await;
    let (code, out) = doctor(&config);
    assert_eq!(code, Some(0), "{out}");
    for check in [
        "ok    config",
        "ok    rule packs",
        "ok    state file",
        "ok    hubspot token",
        "ok    hubspot properties",
        "ok    clock",
        "ok    partner central",
        "ok    public url",
        "skip  hubspot webhooks",
        "skip  sns topic",
    ] {
        assert!(out.contains(check), "no `{check}` in:\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");

    // A property the packs write is gone from HubSpot.
    sb.hubspot
        .with_store(|s| s.deal_properties.remove("aws_sync_status"));
    let (code, out) = doctor(&config);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  hubspot properties: missing: aws_sync_status"),
        "{out}"
    );
    assert!(out.contains("fix: run `pcsync setup hubspot"), "{out}");

    // A refused token, and a public URL nothing answers on.
    let text = std::fs::read_to_string(&config).unwrap();
    let port = free_port();
    let broken = text
        .replace("token: sandbox-token", "token: not-the-token")
        .replace(
            &text
                .lines()
                .find(|l| l.starts_with("public_url:"))
                .unwrap()
                .to_string(),
            // With user info, which no message shows.
            &format!("public_url: http://ops:doctor-pass@127.0.0.1:{port}"),
        );
    let broken_config = dir.path().join("broken.yaml");
    std::fs::write(&broken_config, broken).unwrap();
    let (code, out) = doctor(&broken_config);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL  hubspot token:"), "{out}");
    assert!(out.contains("scopes"), "{out}");
    assert!(out.contains("FAIL  public url:"), "{out}");
    assert!(!out.contains("doctor-pass"), "{out}");
    assert!(out.contains("http://***@127.0.0.1"), "{out}");
    // What does not depend on those still passes.
    assert!(out.contains("ok    partner central"), "{out}");
}
