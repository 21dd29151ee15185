//! The host's guarantees hold for any guest, not just par's own: a component
//! exporting the same world (`tests/hostile-guest`) calls the installer out
//! of order, twice, with an entrypoint the manifest never named, with huge
//! lists and strings, and reports success after failures. Every case ends
//! in a typed error (a package fault, exit 3 in the CLI), the result never
//! repeats the guest's claims, and nothing is left in the root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use par::{InstallCall, InstallerChoice, LoadError, LoaderConfig, PackageLoader, SandboxError};
use par_tests::workspace::{component_cache, installer_cache};
use par_tests::{Workspace, assert_no_failures, tools};

const HOSTILE_GUEST: &[u8] = include_bytes!(env!("PAR_HOSTILE_GUEST_WASM"));

fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-tools")
}

/// A loader running the hostile guest, installing offline with uv.
fn loader(ws: &Workspace) -> PackageLoader {
    let mut config = LoaderConfig::with_root(ws.root()).with_guest_component(HOSTILE_GUEST);
    config.component_cache = Some(component_cache(env!("CARGO_TARGET_TMPDIR")));
    config.install.installer_cache = Some(installer_cache(env!("CARGO_TARGET_TMPDIR")));
    config.install.installer = InstallerChoice::Uv;
    config.install.uv = tools::uv(&tools_dir());
    config.install.index.no_index = true;
    config.install.index.find_links = vec![tools::wheelhouse(&tools_dir()).display().to_string()];
    PackageLoader::new(config).expect("loader")
}

/// The "archive" the hostile guest reads: the name of what it should do.
fn scenario(ws: &Workspace, name: &str) -> PathBuf {
    let path = ws.path().join("in").join(format!("{name}.apkg"));
    std::fs::write(&path, name).expect("write scenario");
    path
}

/// What each scenario must end with: the error's kind and the call it names.
const CASES: &[(&str, &str, Option<InstallCall>)] = &[
    ("out-of-order", "guest-protocol", Some(InstallCall::EnsureVenv)),
    ("publish-twice", "guest-protocol", Some(InstallCall::Publish)),
    ("wrong-entrypoint", "guest-protocol", Some(InstallCall::VerifyImport)),
    ("huge-list", "guest-protocol", Some(InstallCall::Publish)),
    ("huge-plan", "guest-protocol", Some(InstallCall::EnsureVenv)),
    ("huge-string", "guest-protocol", Some(InstallCall::EnsureVenv)),
    ("success-after-failure", "guest-protocol", None),
    ("skips-planned-step", "guest-protocol", None),
    ("unplanned-step", "guest-protocol", Some(InstallCall::InstallSelf)),
    ("plan-contradicts-tree", "guest-protocol", Some(InstallCall::EnsureVenv)),
    ("false-failure", "guest-protocol", None),
    ("publish-refused", "invalid-guest-output", None),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_misbehaviour_is_a_typed_package_fault_that_leaves_nothing() {
    let mut failures = Vec::new();
    for &(name, kind, call) in CASES {
        let ws = Workspace::new();
        let result = loader(&ws).load_package(scenario(&ws, name), None).await;
        let error = match result {
            Ok(package) => {
                failures.push(format!("{name}: accepted: {package:?}"));
                continue;
            }
            Err(error) => error,
        };
        if error.kind() != kind {
            failures.push(format!("{name}: kind {} != {kind}: {error}", error.kind()));
        }
        if !error.is_package_fault() {
            failures.push(format!("{name}: not a package fault: {error}"));
        }
        if let Some(call) = call
            && error.subject() != Some(call.name())
        {
            failures.push(format!("{name}: subject {:?} != {call}: {error}", error.subject()));
        }
        let message = error.to_string();
        if message.contains("claimed") || message.contains("99") {
            failures.push(format!("{name}: the error repeats the guest's claims: {message}"));
        }
        if message.len() > 4096 {
            failures.push(format!(
                "{name}: the error carries {} bytes of guest text",
                message.len()
            ));
        }
        ws.assert_left_nothing(name);
    }
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_result_is_the_hosts_record_never_the_guests_report() {
    let ws = Workspace::new();
    // The guest follows the protocol, but no `main.py` exists, so the import
    // check fails; its report claims an installed, verified package with 99
    // requirements in a reused venv named `claimed`.
    let package = loader(&ws)
        .load_package(scenario(&ws, "lies-in-report"), None)
        .await
        .expect("a load that broke no rule succeeds");
    assert!(!package.installed_as_package, "{package:?}");
    assert_eq!(package.verified, Some(false), "{package:?}");
    assert_eq!(package.requirements_count, 0, "{package:?}");
    assert!(!package.venv_reused, "{package:?}");
    assert!(
        package
            .venv_path
            .file_name()
            .is_some_and(|n| !n.to_string_lossy().contains("claimed")),
        "{package:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_is_enforced_by_the_host() {
    let ws = Workspace::new();
    let mut config = LoaderConfig::with_root(ws.root()).with_guest_component(HOSTILE_GUEST);
    config.component_cache = Some(component_cache(env!("CARGO_TARGET_TMPDIR")));
    config.install.installer = InstallerChoice::Uv;
    config.install.uv = tools::uv(&tools_dir());
    config.install.strict = true;
    let loader = PackageLoader::new(config).expect("loader");
    // The import check fails and the guest reports success anyway.
    let error = loader
        .load_package(scenario(&ws, "lies-in-report"), None)
        .await
        .expect_err("strict and unverified");
    assert_eq!(error.kind(), "guest-protocol", "{error}");
    ws.assert_left_nothing("strict");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_busy_in_a_loop_is_stopped_at_its_cpu_cap() {
    let ws = Workspace::new();
    let mut config = LoaderConfig::with_root(ws.root()).with_guest_component(HOSTILE_GUEST);
    config.component_cache = Some(component_cache(env!("CARGO_TARGET_TMPDIR")));
    config.guest_cpu_time = Duration::from_millis(500);
    let loader = PackageLoader::new(config).expect("loader");
    let error = loader
        .load_package(scenario(&ws, "busy-loop"), None)
        .await
        .expect_err("an endless loop");
    assert!(
        matches!(error, LoadError::Sandbox(SandboxError::CpuTimeLimit { .. })),
        "{error}"
    );
    ws.assert_left_nothing("busy loop");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_installer_call_during_extract_is_refused() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let error = loader
        .extract(scenario(&ws, "installer-during-extract"), None)
        .await
        .expect_err("the guest called publish itself");
    assert!(matches!(error, LoadError::GuestProtocol(_)), "{error}");
    assert_eq!(error.subject(), Some("publish"));
    ws.assert_left_nothing("extract");
}
