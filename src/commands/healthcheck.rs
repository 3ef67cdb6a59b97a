//! `pcsync healthcheck`: asks a running service's `/healthz`, for the container image's
//! HEALTHCHECK (the runtime image carries no curl).

use std::process::ExitCode;

pub fn run(url: &str, timeout: u64) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("unhealthy: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let asked = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(timeout.max(1)))
            .build()?;
        let response = client.get(url).send().await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, body))
    });
    match asked {
        Ok((status, _)) if status.is_success() => ExitCode::SUCCESS,
        Ok((status, body)) => {
            eprintln!("unhealthy: {url} answered {status}: {}", body.trim());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            ExitCode::from(1)
        }
    }
}
