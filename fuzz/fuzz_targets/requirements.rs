//! `requirements.txt` on arbitrary bytes: the guest's logical-line reader
//! (continuations, comments) feeding the host's line checker. Must return,
//! never panic; and no line the default policy accepts may change where
//! packages come from, pull in another file, name a URL or climb out of
//! the package.
#![no_main]

use libfuzzer_sys::fuzz_target;
use par::requirements::{RequirementPolicy, check_line};
use par_guest::install_plan::logical_lines;

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
        assert!(!line.contains("://"), "a URL got through: {line:?}");
        let first = line.split(|c: char| c.is_whitespace() || c == '=').next().unwrap_or("");
        assert!(!FORBIDDEN_OPTIONS.contains(&first), "{line:?}");
        let path = line.strip_prefix("-e").unwrap_or(&line).trim();
        assert!(!path.starts_with('/'), "an absolute path got through: {line:?}");
        assert!(
            !path.split(['/', '[', ' ', ';']).any(|part| part == ".."),
            "a path out of the package got through: {line:?}"
        );
    }
});
