//! The engine's modules form layers: a module uses only modules below it. A lower
//! layer that reached up (the templates into the planner, say) would make the two
//! one tangle that can only be understood, tested and changed together.

use std::collections::BTreeMap;
use std::path::Path;

/// Bottom first. A module may use those before it.
const LAYERS: &[&str] = &[
    "partner_central",
    "dates",
    "context",
    "event",
    "diagnostic",
    "script",
    "model",
    "source",
    "redact",
    "embed",
    "readiness",
    "template",
    "check",
    "compile",
    "schema",
    "load",
    "plan",
    "golden",
    "replay",
];

/// Every `crate::module` a file names, by the top-level module the file belongs to.
fn uses() -> BTreeMap<String, Vec<(String, String)>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let module = rel.split(['/', '.']).next().unwrap().to_string();
            if module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices("crate::") {
                let used: String = text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !used.is_empty() {
                    out.entry(module.clone())
                        .or_default()
                        .push((rel.clone(), used));
                }
            }
        }
    }
    out
}

#[test]
fn no_module_reaches_up_a_layer() {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut wrong = Vec::new();
    for (module, used) in uses() {
        let Some(mine) = rank(&module) else {
            wrong.push(format!("`{module}` is in no layer: add it to LAYERS"));
            continue;
        };
        for (file, other) in used {
            match rank(&other) {
                None => wrong.push(format!(
                    "{file} uses `crate::{other}`, which is in no layer"
                )),
                Some(theirs) if theirs > mine => wrong.push(format!(
                    "{file} (layer `{module}`) reaches up to `crate::{other}`"
                )),
                Some(_) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
