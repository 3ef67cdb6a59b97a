//! `pcsync schema`: writes the generated JSON Schemas.

use std::path::Path;
use std::process::ExitCode;

use pcsync_engine::schema::{Schema, schema_text};

pub fn run(out: &Path) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("pcsync schema: cannot create `{}`: {e}", out.display());
        return ExitCode::from(super::EXIT_USAGE);
    }
    for kind in [Schema::rule_pack(), pcsync_runtime::config::schema()] {
        let path = out.join(kind.file_name());
        if let Err(e) = std::fs::write(&path, schema_text(kind)) {
            eprintln!("pcsync schema: cannot write `{}`: {e}", path.display());
            return ExitCode::from(super::EXIT_USAGE);
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
