//! `pcsync dlq list|retry|drop`: the dead-letter list, read from the state file the
//! service config names (the service may be running: SQLite serialises access).

use std::path::Path;
use std::process::ExitCode;

use pcsync_engine::MissingEnv;

use super::EXIT_USAGE;
use crate::cli::DlqAction;
use pcsync_runtime::store::{Inbox, SqliteStore};

pub fn run(action: DlqAction) -> ExitCode {
    let (config, id) = match &action {
        DlqAction::List { config } => (config, None),
        DlqAction::Retry { id, config } | DlqAction::Drop { id, config } => (config, Some(id)),
    };
    let store = match open(config) {
        Ok(s) => s,
        Err(message) => {
            eprintln!("pcsync dlq: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let seq = match id.map(|id| id.trim_start_matches('#').parse::<i64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            eprintln!(
                "pcsync dlq: `{}` is not a dead-letter id (the number `dlq list` shows)",
                id.map(String::as_str).unwrap_or_default()
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let now = jiff::Timestamp::now().as_millisecond();
    let result = match (action, seq) {
        (DlqAction::List { .. }, _) => store.dead_letters().map(|letters| {
            if letters.is_empty() {
                println!("no dead letters");
            }
            for l in letters {
                let parked = jiff::Timestamp::from_millisecond(l.parked_at)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                let about = l
                    .event
                    .deal_id
                    .as_ref()
                    .map(|d| format!("deal {d}"))
                    .or_else(|| {
                        l.event
                            .opportunity_id
                            .as_ref()
                            .map(|o| format!("opportunity {o}"))
                    })
                    .unwrap_or_else(|| "-".into());
                println!(
                    "#{} {} {} ({about}) parked {parked} after {} attempts\n    {}",
                    l.seq,
                    format!("{:?}", l.event.source).to_lowercase(),
                    l.event.kind,
                    l.attempts,
                    l.reason
                );
            }
            true
        }),
        (DlqAction::Retry { .. }, Some(seq)) => store.requeue(seq, now).inspect(|found| {
            if *found {
                println!("#{seq} is back in the inbox");
            }
        }),
        (DlqAction::Drop { .. }, Some(seq)) => store.drop_dead(seq).inspect(|found| {
            if *found {
                println!("#{seq} deleted");
            }
        }),
        _ => unreachable!("retry and drop take an id"),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("pcsync dlq: no dead letter #{}", seq.unwrap_or_default());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("pcsync dlq: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn open(config_file: &Path) -> Result<SqliteStore, String> {
    let config = super::checked_config(config_file, MissingEnv::Warning)
        .map_err(|shown| format!("the config does not check:\n{shown}"))?;
    let path = &config.state_path(config_file);
    if !path.exists() {
        return Err(format!(
            "no state file at {} (has the service run with this config?)",
            path.display()
        ));
    }
    SqliteStore::open(path).map_err(|e| e.to_string())
}
