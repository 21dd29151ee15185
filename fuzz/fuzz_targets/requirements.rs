//! `requirements.txt` on arbitrary bytes: the guest's logical-line reader
//! (continuations, comments) feeding the host's line checker. Must return,
//! never panic; and no line the default policy accepts may change where
//! packages come from, pull in another file, name a URL or climb out of
//! the package.
#![no_main]

use libfuzzer_sys::fuzz_target;
use par::requirements::{RequirementPolicy, check_line};
use par_guest::install_plan::logical_lines;
use std::path::Component;

/// Options the default policy must never let through, however spelled.
const FORBIDDEN_OPTIONS: [&str; 11] = [
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--no-index",
    "--trusted-host",
];

/// The local path pip would install for a requirement, modelled on pip's own
/// rules: markers cut at the first `;` (not for `-e`), extras only when the
/// rest ends in `[…]`, and a path is anything holding a `/` or starting with `.`.
fn pip_path(requirement: &str, markers: bool) -> Option<&str> {
    let spec = match markers {
        true => requirement.split(';').next().unwrap_or("").trim(),
        false => requirement.trim(),
    };
    let spec = match spec.strip_suffix(']').and_then(|s| s.rsplit_once('[')) {
        Some((path, extras)) if !extras.contains(']') => path.trim(),
        _ => spec,
    };
    (spec.contains('/') || spec.starts_with('.')).then_some(spec)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let open = RequirementPolicy {
        allow_index_options: true,
        allow_direct_urls: true,
    };
    for (_, line) in logical_lines(&text) {
        let _ = check_line(&line, open);
        if check_line(&line, RequirementPolicy::default()).is_err() {
            continue;
        }
        assert!(!line.chars().any(char::is_control), "{line:?}");
        let first = line.split(|c: char| c.is_whitespace() || c == '=').next().unwrap_or("");
        assert!(!FORBIDDEN_OPTIONS.contains(&first), "{line:?}");
        // As optparse reads them: `-eVALUE`, `-e VALUE`, `--editable=VALUE`, `--editable VALUE`.
        let editable = match (line.strip_prefix("--editable"), line.strip_prefix("-e")) {
            (Some(long), _) => Some(long.strip_prefix('=').unwrap_or(long).trim()),
            (None, Some(short)) => Some(short.trim()),
            (None, None) => None,
        };
        let (target, markers) = match editable {
            Some(value) => (value, false),
            None => (line.split(" --").next().unwrap_or(""), true),
        };
        assert!(!target.contains("://"), "a URL got through: {line:?}");
        if let Some(path) = pip_path(target, markers) {
            let path = std::path::Path::new(path);
            assert!(
                path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
                "a path out of the package got through: {line:?}"
            );
        }
    }
});
