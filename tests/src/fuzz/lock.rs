//! The guest's lock reader (`read-lock`) on arbitrary bytes. Whatever it
//! accepts holds what the host relies on when it checks the entries again:
//! at most the limit of packages, each name once after normalisation, only
//! 64-digit lowercase SHA-256 hashes, paths relative with normal components
//! (or the package itself, `.`), URLs with a scheme and no whitespace; and
//! written out again as a lock, it reads back the same: nothing in it
//! depends on how the original happened to spell it.

use std::collections::BTreeSet;

use par_guest::pylock::{File, Location, Locked, Source, parse};
use par_rules::limits::MAX_LOCKED_PACKAGES;

/// One input.
pub(crate) fn run(data: &[u8]) {
    let Ok(locked) = parse(data) else {
        return;
    };
    assert!(locked.len() <= MAX_LOCKED_PACKAGES, "{} packages", locked.len());
    let mut names = BTreeSet::new();
    for package in &locked {
        assert!(names.insert(normalised(&package.name)), "{} twice", package.name);
        for file in files(&package.source) {
            assert!(
                file.sha256.len() == 64
                    && file
                        .sha256
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "hash {:?}",
                file.sha256
            );
            check_location(&file.location);
        }
        if let Source::Directory { path, .. } = &package.source {
            check_location(&Location::Path(path.clone()));
        }
        if let Some(index) = &package.index {
            check_location(&Location::Url(index.clone()));
        }
    }
    let written = write(&locked);
    assert_eq!(
        parse(written.as_bytes()).as_ref(),
        Ok(&locked),
        "written again as {written}"
    );
}

fn files(source: &Source) -> Vec<&File> {
    match source {
        Source::Distributions { wheels, sdist } => wheels.iter().chain(sdist).collect(),
        Source::Archive(file) => vec![file],
        Source::Directory { .. } | Source::Vcs { .. } => Vec::new(),
    }
}

fn check_location(location: &Location) {
    match location {
        Location::Url(url) => assert!(
            url.split_once("://").is_some_and(|(scheme, _)| !scheme.is_empty())
                && !url.chars().any(|c| c.is_whitespace() || c.is_control()),
            "url {url:?}"
        ),
        Location::Path(path) => assert!(
            path == "."
                || (!path.starts_with('/')
                    && path
                        .split('/')
                        .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'))),
            "path {path:?}"
        ),
    }
}

/// PEP 503.
fn normalised(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    lower
        .split(['-', '_', '.'])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// The entries as a lock again, every string a TOML basic string.
fn write(locked: &[Locked]) -> String {
    let quote = |text: &str| toml::Value::String(text.to_owned()).to_string();
    let file = |file: &File| {
        let location = match &file.location {
            Location::Url(url) => format!("url = {}", quote(url)),
            Location::Path(path) => format!("path = {}", quote(path)),
        };
        format!("{{ {location}, hashes = {{ sha256 = {} }} }}", quote(&file.sha256))
    };
    let mut text = String::from("lock-version = \"1.0\"\n");
    for package in locked {
        text += &format!("[[packages]]\nname = {}\n", quote(&package.name));
        if let Some(version) = &package.version {
            text += &format!("version = {}\n", quote(version));
        }
        if let Some(index) = &package.index {
            text += &format!("index = {}\n", quote(index));
        }
        text += &match &package.source {
            Source::Distributions { wheels, sdist } => {
                let mut text = String::new();
                if !wheels.is_empty() {
                    text += &format!(
                        "wheels = [{}]\n",
                        wheels.iter().map(file).collect::<Vec<_>>().join(", ")
                    );
                }
                if let Some(sdist) = sdist {
                    text += &format!("sdist = {}\n", file(sdist));
                }
                text
            }
            Source::Archive(archive) => format!("archive = {}\n", file(archive)),
            Source::Directory { path, editable } => {
                format!("directory = {{ path = {}, editable = {editable} }}\n", quote(path))
            }
            Source::Vcs { kind, url, commit } => format!(
                "vcs = {{ type = {}, url = {}, commit-id = {} }}\n",
                quote(kind),
                quote(url),
                quote(commit)
            ),
        };
    }
    text
}
