//! Every fuzz target's body, run on stable as an ordinary test: each seed of
//! its corpus and each past finding kept in `fuzz/regressions/{target}/`.
//! Real fuzzing (`just fuzz`) explores from the same seeds; this keeps every
//! target's code and oracle running in CI, and every finding fixed.

use std::fs;
use std::path::{Path, PathBuf};

use par_tests::fuzz::Target;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Past findings for `target`, as `(file name, bytes)`.
fn regressions(target: Target) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join("regressions").join(target.name());
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .map(|entry| {
            let entry = entry.expect("regression entry");
            let bytes = fs::read(entry.path()).expect("regression input");
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    found.sort();
    found
}

fn replay(target: Target) {
    let inputs: Vec<_> = target.seeds().into_iter().chain(regressions(target)).collect();
    assert!(!inputs.is_empty(), "{} has nothing to replay", target.name());
    for (name, bytes) in inputs {
        let outcome = std::panic::catch_unwind(|| target.run(&bytes));
        assert!(outcome.is_ok(), "{}: input {name} fails its oracle", target.name());
    }
}

#[test]
fn manifest() {
    replay(Target::Manifest);
}

#[test]
fn entry_name() {
    replay(Target::EntryName);
}

#[test]
fn requirements() {
    replay(Target::Requirements);
}

#[test]
fn build_system() {
    replay(Target::BuildSystem);
}

#[test]
fn archive() {
    replay(Target::Archive);
}

#[test]
fn component() {
    replay(Target::Component);
}

#[test]
fn dotenv() {
    replay(Target::DotEnv);
}

#[test]
fn lock() {
    replay(Target::Lock);
}

#[test]
fn deploy() {
    replay(Target::Deploy);
}

/// Every regression directory belongs to a target, and every target is a
/// binary of the fuzz crate: a target added or renamed in one place only
/// fails here.
#[test]
fn targets_regressions_and_fuzz_binaries_agree() {
    let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut binaries: Vec<&str> = manifest
        .lines()
        .filter_map(|line| line.strip_prefix("name = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .filter(|name| *name != "par-fuzz")
        .collect();
    binaries.sort_unstable();
    let mut expected = names.clone();
    expected.sort_unstable();
    assert_eq!(binaries, expected, "fuzz/Cargo.toml's binaries");
    for entry in fs::read_dir(fuzz_dir().join("regressions")).expect("fuzz/regressions") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(names.contains(&name.as_str()), "fuzz/regressions/{name} is no target");
    }
}
