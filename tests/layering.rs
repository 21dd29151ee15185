//! The host's folders are its layers, and each module uses only its own
//! layer and those below it; the modules form no cycle; and nothing outside
//! `sandbox/` (the boundary) names a type generated from the WIT. So the
//! layers stay layers as the code grows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every module of the host crate (`a::b`), with its file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut pending = vec![src.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("host/src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src").with_extension("");
            let mut name = relative.to_string_lossy().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_owned();
            }
            if name != "lib" && name != "main" {
                found.insert(name, path);
            }
        }
    }
    found
}

/// A module's code without its tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("module source");
    let text = text.split("#[cfg(test)]").next().unwrap_or_default().to_owned();
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `line` holds the path `prefix` itself, not a longer name ending in it.
fn names_path(line: &str, prefix: &str) -> bool {
    line.match_indices(prefix).any(|(at, _)| {
        !line[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The longest known module named by `segments`.
fn resolve(known: &BTreeMap<String, PathBuf>, segments: &[&str]) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|name| known.contains_key(name))
}

/// Which modules each module uses: `crate::…`, `super::…`, and child modules it names.
fn uses(known: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let path_chars = |c: char| c.is_ascii_lowercase() || c == '_' || c == ':' || c.is_ascii_digit();
    known
        .iter()
        .map(|(name, path)| {
            let source = code(path);
            let own: Vec<&str> = name.split("::").collect();
            let mut used = BTreeSet::new();
            for (prefix, base) in [("crate::", Vec::new()), ("super::", own[..own.len() - 1].to_vec())] {
                for (at, _) in source.match_indices(prefix) {
                    let rest: String = source[at + prefix.len()..]
                        .chars()
                        .take_while(|c| path_chars(*c))
                        .collect();
                    let mut segments = base.clone();
                    segments.extend(rest.split("::").filter(|s| !s.is_empty()));
                    if let Some(target) = resolve(known, &segments).filter(|t| t != name) {
                        used.insert(target);
                    }
                }
            }
            // A parent that only re-exports a child's items (`pub use child::X`)
            // does not use it; one whose own code names the child does.
            let re_export = |line: &&str| {
                let line = line.trim_start();
                line.starts_with("pub use ") || line.starts_with("pub(crate) use ")
            };
            let own_code: Vec<&str> = source.lines().filter(|line| !re_export(line)).collect();
            for line in source.lines() {
                let declared = line
                    .trim_start()
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub ");
                if let Some(child) = declared.strip_prefix("mod ").and_then(|rest| rest.strip_suffix(';')) {
                    let child_name = format!("{name}::{child}");
                    let named = own_code.iter().any(|line| names_path(line, &format!("{child}::")));
                    if known.contains_key(&child_name) && named {
                        used.insert(child_name);
                    }
                }
            }
            (name.clone(), used)
        })
        .collect()
}

/// The modules on a cycle, if any (depth-first search).
fn a_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            return Some(path[start..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The host's layers, top first: each is the module (file or folder) at the
/// top of `host/src` whose name is given. The binary's `cli` sits above the API.
const LAYERS: [&[&str]; 9] = [
    &["cli"],
    &["loader", "agent", "fuzzing"],
    &["load"],
    &["sandbox"],
    &["install"],
    &["exec"],
    &["trust", "registry"],
    &["fs"],
    &["types"],
];

/// The layer a module belongs to (0 is the top), from its first segment.
fn layer_of(module: &str) -> Option<usize> {
    let top = module.split("::").next().unwrap_or_default();
    LAYERS.iter().position(|names| names.contains(&top))
}

/// Every use of a module in a higher layer than the user's, as `user -> used`.
fn upward_uses(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for (user, used) in graph {
        for target in used {
            if let (Some(from), Some(to)) = (layer_of(user), layer_of(target))
                && to < from
            {
                found.push(format!("{user} -> {target}"));
            }
        }
    }
    found
}

fn host_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src")
}

#[test]
fn the_host_has_no_module_cycle() {
    let known = modules(&host_src());
    assert!(known.len() > 20, "found only {known:?}");
    let graph = uses(&known);
    assert_eq!(a_cycle(&graph), None, "a module cycle");
}

#[test]
fn every_module_uses_only_its_layer_and_those_below() {
    let known = modules(&host_src());
    let unplaced: Vec<&String> = known.keys().filter(|name| layer_of(name).is_none()).collect();
    assert!(unplaced.is_empty(), "modules in no layer: {unplaced:?}");
    assert_eq!(
        upward_uses(&uses(&known)),
        Vec::<String>::new(),
        "uses that reach up a layer"
    );
}

#[test]
fn a_use_that_reaches_up_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("fs::root", vec!["types::error", "install::step"]),
        ("load", vec!["sandbox", "fs::root"]),
    ]
    .into_iter()
    .map(|(n, e)| (n.to_owned(), e.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(upward_uses(&graph), vec!["fs::root -> install::step".to_owned()]);
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec![])]
            .into_iter()
            .map(|(n, e)| (n.to_owned(), e.into_iter().map(str::to_owned).collect()))
            .collect();
    assert_eq!(a_cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into()]));
}

#[test]
fn generated_types_appear_only_in_the_boundary() {
    for (name, path) in modules(&host_src()) {
        if name == "sandbox" || name.starts_with("sandbox::") {
            continue;
        }
        let source = code(&path);
        assert!(
            !source.contains("bindings"),
            "{name} reaches the WIT bindings; only sandbox/ may"
        );
    }
}

/// Every test docs/SECURITY.md names as the check of a claim (a backticked
/// `file::…::name`, `*` matching any part of a name), with whether a test
/// function of that name exists.
fn tests_named_by_the_threat_model() -> Vec<(String, bool)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let document = std::fs::read_to_string(root.join("docs/SECURITY.md")).expect("docs/SECURITY.md");
    let mut sources = String::new();
    let mut files = BTreeSet::new();
    let mut pending = vec![
        root.join("host"),
        root.join("tests"),
        root.join("guest"),
        root.join("rules"),
    ];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() && !path.ends_with("target") {
                files.insert(stem);
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.insert(stem);
                sources.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let functions: BTreeSet<&str> = sources
        .split("fn ")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
        })
        .collect();
    let matches = |pattern: &str| {
        let parts: Vec<&str> = pattern.split('*').collect();
        functions.iter().any(|name| match parts.as_slice() {
            [whole] => name == whole,
            [first, .., last] => {
                name.starts_with(first) && name.ends_with(last) && name.len() >= first.len() + last.len()
            }
            [] => false,
        })
    };
    let mut named = Vec::new();
    for quoted in document.split('`').skip(1).step_by(2) {
        let segments: Vec<&str> = quoted.split("::").collect();
        let is_reference = segments.len() >= 2
            && segments.iter().all(|s| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '*' || c == '…')
            });
        if !is_reference {
            continue;
        }
        let last = segments[segments.len() - 1].trim_start_matches('…');
        if last == "tests" || last == "*" {
            continue;
        }
        let file = segments[0].trim_start_matches('…');
        let in_a_file = file.is_empty() || file == "*" || files.contains(file);
        named.push((quoted.to_owned(), in_a_file && matches(last)));
    }
    named
}

#[test]
fn every_test_the_threat_model_names_exists() {
    let named = tests_named_by_the_threat_model();
    assert!(named.len() > 40, "found only {named:?}");
    let missing: Vec<&String> = named.iter().filter(|(_, found)| !found).map(|(name, _)| name).collect();
    assert_eq!(
        missing,
        Vec::<&String>::new(),
        "docs/SECURITY.md names tests that do not exist"
    );
}
