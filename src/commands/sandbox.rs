//! `pcsync sandbox`: runs the local HubSpot, Partner Central and SNS sandbox on its
//! own, seeded with demo data, until interrupted.

use std::process::ExitCode;

use pcsync_sandbox::{Options, Sandbox, demo};

pub fn run(listen: &str) -> ExitCode {
    let addr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pcsync sandbox: `{listen}` is not an address to listen on: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pcsync sandbox: cannot start the runtime: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    runtime.block_on(async {
        let sandbox = match Sandbox::start(addr, Options::default()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("pcsync sandbox: cannot listen on {listen}: {e}");
                return ExitCode::from(super::EXIT_USAGE);
            }
        };
        let pairs = demo::seed(&sandbox);
        println!("partner central: {}", sandbox.partner_central_url);
        println!(
            "hubspot:         {} (token: {})",
            sandbox.hubspot_url,
            pcsync_sandbox::HubSpotOptions::default().token
        );
        println!("sns:             {}", sandbox.sns_url);
        println!("control api:     {}/_sandbox", sandbox.partner_central_url);
        for (deal, opportunity) in &pairs {
            println!("demo: deal {deal} <-> opportunity {opportunity}");
        }
        println!("point the AWS SDKs at it with endpoint_url; Ctrl-C stops it");
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}
