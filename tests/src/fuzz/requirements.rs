//! `requirements.txt` on arbitrary bytes: the guest's logical-line reader
//! (continuations, comments) feeding the host's line checker, under both the
//! default and the most open policy. Must return, never panic.
//!
//! The oracle does not model pip's or uv's option parser; it checks the
//! invariant the policy exists for. A line the default policy accepts:
//! - reads back as itself (the guest's reader, which follows pip's, finds
//!   exactly that line in it), so the installer sees what was checked;
//! - holds no word that pip or uv could take for an index, find-links,
//!   trusted-host, `-r` or `-c` option, under any spelling they accept
//!   (short forms with or without a value, long forms and the prefixes
//!   optparse expands), however the line is split into words;
//! - names no URL and no path outside the package.

use par::RequirementPolicy;
use par::requirements::{check_build_requirement, check_line};
use par_guest::install_plan::logical_lines;
use std::path::{Component, Path};

/// Long options that change where packages come from or pull in a file.
const FORBIDDEN_LONG: [&str; 7] = [
    "--index-url",
    "--extra-index-url",
    "--find-links",
    "--trusted-host",
    "--no-index",
    "--requirement",
    "--constraint",
];

/// Whether pip (optparse) or uv could read `word` as a forbidden option.
fn forbidden(word: &str) -> bool {
    let name = word.split('=').next().unwrap_or(word);
    if let Some(long) = name.strip_prefix("--") {
        // optparse expands any unambiguous prefix; count every prefix of at
        // least one letter as a spelling.
        return !long.is_empty() && FORBIDDEN_LONG.iter().any(|option| option[2..].starts_with(long));
    }
    // Short options may be grouped (`-pi URL`) or carry their value (`-iURL`).
    word.strip_prefix('-')
        .is_some_and(|short| short.chars().any(|c| matches!(c, 'i' | 'f' | 'r' | 'c')))
}

/// Every way the line might be cut into words: on spaces, on any whitespace,
/// and with quotes removed first (shlex joins quoted text into a word).
fn words(line: &str) -> impl Iterator<Item = &str> + '_ {
    line.split(char::is_whitespace)
        .chain(line.split(|c: char| c.is_whitespace() || c == '\'' || c == '"'))
        .filter(|word| !word.is_empty())
}

/// One input.
pub(crate) fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let open = RequirementPolicy {
        allow_index_options: true,
        allow_direct_urls: true,
    };
    for (_, line) in logical_lines(&text) {
        let _ = check_line(&line, open);
        if check_build_requirement(&line).is_ok() {
            assert_plain_named(&line);
        }
        if check_line(&line, RequirementPolicy::default()).is_ok() {
            assert_harmless(&line);
        }
    }
}

/// What holds for every line the default policy accepts.
pub(super) fn assert_harmless(line: &str) {
    let reread: Vec<String> = logical_lines(line).into_iter().map(|(_, l)| l).collect();
    assert_eq!(reread, [line], "the installer would read the line differently");
    for word in words(line) {
        assert!(!forbidden(word), "option {word:?} got through: {line:?}");
    }
    // Before the first `;` is what pip and uv install (a name, a path or
    // a URL); after it, markers, whose quoted strings may hold anything.
    let installed = line.split(';').next().unwrap_or("");
    assert!(!installed.contains("://"), "a URL got through: {line:?}");
    // pip may read all of it as a path (when such a directory exists),
    // whatever else it parses as.
    let candidate = Path::new(installed);
    assert!(
        candidate
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
        "a path out of the package got through: {line:?}"
    );
}

/// What holds for every build requirement the host accepts for a shared
/// build environment: a harmless line, and a plain named requirement: no
/// option, no hash, and before any marker a name, maybe extras, no `@ URL`
/// (packaging's reading) and nothing pip would take for a path.
pub(super) fn assert_plain_named(requirement: &str) {
    assert!(
        check_line(requirement, RequirementPolicy::default()).is_ok(),
        "{requirement:?}"
    );
    assert_harmless(requirement);
    assert!(
        !words(requirement).any(|w| w.starts_with('-')),
        "a build requirement held an option: {requirement:?}"
    );
    let head = requirement.split(';').next().unwrap_or("");
    assert!(!head.contains('/') && !head.starts_with('.'), "a path: {requirement:?}");
    let after_name = head.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || "._-".contains(c));
    let after_extras = match after_name.trim_start().strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, r)| r),
        None => after_name,
    };
    assert!(!after_extras.trim_start().starts_with('@'), "a URL: {requirement:?}");
}
