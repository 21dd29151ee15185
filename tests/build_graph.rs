//! One build of each heavy crate per test run: `python/tests/run` builds the
//! extension alone (`maturin develop`), after `cargo test --workspace` built
//! everything with the tests' dev dependencies. Cargo compiles a crate again
//! wherever the two resolve other features for it, and everything above it
//! with it: proptest's `fork` once turned on fnv's `std`, which gimli sees,
//! and wasmtime and Cranelift were compiled twice. This holds the crates
//! whose features may differ to the few that must.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// The crates whose features differ, and why each must: par's tests turn on
/// its test hooks; the test archives write reserved zip extra fields;
/// proptest needs num-traits' `std`. None is under wasmtime.
const MAY_DIFFER: [&str; 3] = ["par", "zip", "num-traits"];

/// Every package `cargo tree` resolves for `args` (`name vX.Y.Z`) with its
/// features: a set, as a build dependency is resolved apart from the rest.
fn features(args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "--prefix",
            "none",
            "--format",
            "{p}|{f}",
        ])
        .args(args)
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some((package, features)) = line.trim_end_matches(" (*)").split_once('|') {
            let package = package.split(" (").next().unwrap_or(package);
            found.entry(package.to_owned()).or_default().insert(features.to_owned());
        }
    }
    found
}

#[test]
fn the_python_extension_compiles_again_only_what_must_differ() {
    let alone = features(&["--package", "par-python", "--edges", "normal,build"]);
    let together = features(&["--workspace", "--edges", "normal,build,dev"]);
    assert!(
        alone.keys().any(|package| package.starts_with("wasmtime ")),
        "cargo tree's output was not read: {alone:?}"
    );
    let mut differing = Vec::new();
    for (package, sets) in &alone {
        if MAY_DIFFER.iter().any(|name| package.split(' ').next() == Some(*name)) {
            continue;
        }
        let built = together.get(package);
        for features in sets
            .iter()
            .filter(|set| !built.is_some_and(|built| built.contains(*set)))
        {
            differing.push(format!("{package}: [{features}] alone, {built:?} in the workspace"));
        }
    }
    assert!(
        differing.is_empty(),
        "maturin would compile these (and all that depends on them) a second time:\n{}",
        differing.join("\n")
    );
}
