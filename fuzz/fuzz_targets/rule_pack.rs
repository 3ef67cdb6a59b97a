//! The rule-pack loader, YAML text to a checked, compiled rule set, on whatever a
//! RevOps edit might save: it must answer with diagnostics, never panic or hang.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = pcsync_engine::load::load_pack_texts(vec![(
        std::path::PathBuf::from("fuzz/pack.yaml"),
        text.to_string(),
    )]);
    // Rendering the diagnostics is what a user sees: it must not panic either.
    let _ = pcsync_engine::diagnostic::render_human(&loaded.sources, &loaded.diagnostics);
});
