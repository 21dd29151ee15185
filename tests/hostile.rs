//! Every hostile archive in the catalogue is refused with its typed error,
//! publishes nothing, leaves no staging directory and writes nothing outside
//! the root — through the library API, with the real sandbox.

use par::{LoadError, LoaderConfig, PackageLoader};
use par_tests::{HostileCase, Workspace, assert_no_failures, hostile_cases, workspace::component_cache};

fn loader(ws: &Workspace, case: &HostileCase) -> PackageLoader {
    let mut config = LoaderConfig::with_root(ws.root());
    config.component_cache = Some(component_cache(env!("CARGO_TARGET_TMPDIR")));
    if let Some(max) = case.limits.max_total_bytes {
        config.limits.max_total_bytes = max;
    }
    if let Some(max) = case.limits.max_file_bytes {
        config.limits.max_file_bytes = max;
    }
    PackageLoader::new(config).expect("loader")
}

/// Checks one refusal; returns a description of what was wrong, if anything.
fn check(case: &HostileCase, result: Result<impl std::fmt::Debug, LoadError>) -> Option<String> {
    let error = match result {
        Ok(value) => return Some(format!("{}: accepted: {value:?}", case.name)),
        Err(LoadError::Package(error)) => error,
        Err(other) => return Some(format!("{}: not a package error: {other}", case.name)),
    };
    let message = error.to_string();
    let expected = &case.expected;
    if error.kind() != expected.kind {
        return Some(format!(
            "{}: kind {} != {} ({message})",
            case.name,
            error.kind(),
            expected.kind
        ));
    }
    if error.subject().map(str::to_owned) != expected.subject {
        return Some(format!(
            "{}: subject {:?} != {:?} ({message})",
            case.name,
            error.subject(),
            expected.subject
        ));
    }
    if !message.contains(expected.needle) {
        return Some(format!("{}: message lacks {:?}: {message}", case.name, expected.needle));
    }
    None
}

/// Which loader entry point a case goes through.
#[derive(Clone, Copy)]
enum Op {
    Extract,
    Inspect,
}

/// Loads one hostile case in a fresh workspace; returns what was wrong, if anything.
async fn run_case(case: &HostileCase, op: Op) -> Option<String> {
    let ws = Workspace::new();
    let apkg = ws.apkg("hostile", &case.apkg);
    let loader = loader(&ws, case);
    let failure = match op {
        Op::Extract => check(case, loader.extract(&apkg, None).await),
        Op::Inspect => check(case, loader.inspect(&apkg).await),
    };
    ws.assert_left_nothing(case.name);
    failure
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_archive_is_refused_by_extract() {
    let mut failures = Vec::new();
    for case in hostile_cases() {
        failures.extend(run_case(&case, Op::Extract).await);
    }
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_refuses_every_archive_whose_fault_shows_without_decompressing() {
    // Limits on decompressed bytes are only measurable while writing; inspect
    // reads nothing but the central directory and agent.yaml.
    let mut failures = Vec::new();
    for case in hostile_cases() {
        if !matches!(
            case.name,
            "zip bomb (compression ratio)"
                | "total size over budget"
                | "big stored files over the total budget"
                | "small stored entry whose bytes fail their CRC"
                | "big stored entry whose bytes fail their CRC"
        ) {
            failures.extend(run_case(&case, Op::Inspect).await);
        }
    }
    assert_no_failures(&failures);
}

/// The host words each unsafe entry exactly as the guest does: both render
/// the one `EntryProblem` of `par-rules`, carried across the WIT between them.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_words_each_unsafe_entry_as_the_guest_does() {
    let mut failures = Vec::new();
    for case in hostile_cases()
        .into_iter()
        .filter(|c| c.expected.kind == "unsafe-entry")
    {
        let ws = Workspace::new();
        let apkg = ws.apkg("hostile", &case.apkg);
        let host = match loader(&ws, &case).extract(&apkg, None).await {
            Err(LoadError::Package(error)) => error.to_string(),
            other => {
                failures.push(format!("{}: the host did not refuse the package: {other:?}", case.name));
                continue;
            }
        };
        let scratch = tempfile::tempdir().expect("scratch directory");
        let bytes = std::io::Cursor::new(case.apkg.to_bytes());
        let guest = match par_guest::extract(bytes, scratch.path(), &par_guest::ExtractOptions::default()) {
            Err(error) => error.to_string(),
            Ok(report) => {
                failures.push(format!("{}: the guest accepted it natively: {report:?}", case.name));
                continue;
            }
        };
        if host != guest {
            failures.push(format!("{}: host `{host}` != guest `{guest}`", case.name));
        }
    }
    assert_no_failures(&failures);
}
