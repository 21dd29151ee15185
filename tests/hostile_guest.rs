//! The host's guarantees hold for any guest, not just par's own: a component
//! exporting the same world (`tests/hostile-guest`) calls the installer out
//! of order, twice, with an entrypoint the manifest never named, with huge
//! lists and strings, and reports success after failures. Every case ends
//! in a typed error (a package fault, exit 3 in the CLI), the result never
//! repeats the guest's claims, and nothing is left in the root.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use par::{InstallCall, LoadError, LoaderConfig, PackageLoader, SandboxError};
use par_tests::workspace::offline_config;
use par_tests::{Workspace, assert_no_failures};

const HOSTILE_GUEST: &[u8] = include_bytes!(env!("PAR_HOSTILE_GUEST_WASM"));

/// The configuration of a loader running the hostile guest, installing offline with uv.
fn config(ws: &Workspace) -> LoaderConfig {
    offline_config(ws, env!("CARGO_TARGET_TMPDIR")).with_guest_component(HOSTILE_GUEST)
}

/// A loader running the hostile guest.
fn loader(ws: &Workspace) -> PackageLoader {
    PackageLoader::new(config(ws)).expect("loader")
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
    ("bad-server", "invalid-guest-output", None),
    ("bad-deploy", "invalid-guest-output", None),
    ("bad-permission", "invalid-guest-output", None),
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
    let mut config = config(&ws);
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
    let mut config = config(&ws);
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
#[allow(
    unsafe_code,
    reason = "`set_var` is unsafe: another thread may read the environment meanwhile"
)]
async fn the_guest_has_no_environment_network_or_directories_beyond_its_preopens() {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("PAR_TEST_SECRET", "s3cret") };
    let ws = Workspace::new();
    let error = loader(&ws)
        .load_package(scenario(&ws, "reaches-out"), None)
        .await
        .expect_err("the guest reports what it found");
    assert!(
        error
            .to_string()
            .ends_with("env=0 tcp=false dns=false stdin=0 dirs=/archive,/package"),
        "{error}"
    );
}

/// `host-copy` checks every request itself, and ends at `publish`: nothing
/// is copied into a tree once it is published, nor during `inspect`.
#[test]
fn host_copy_refuses_what_it_must_and_nothing_is_copied_after_publish() {
    let ws = Workspace::new();
    let (error, text) = logged(|| {
        loader(&ws)
            .load_blocking(&scenario(&ws, "copies-anyhow"), None)
            .expect_err("the guest fails after publishing")
    });
    assert_eq!(error.kind(), "guest-protocol", "{error}");
    assert!(
        text.contains(
            "copies: escape=refused-path absolute=refused-path range=out-of-range taken=refused-path \
             crc=checksum-mismatch late=not-now"
        ),
        "{text}"
    );
    ws.assert_left_nothing("copies");
    let error = loader(&ws)
        .inspect_blocking(&scenario(&ws, "copies-anyhow"))
        .expect_err("the guest reports what it was told");
    assert!(error.to_string().ends_with("inspect=not-now"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_is_a_typed_error_with_its_message_escaped() {
    let ws = Workspace::new();
    let error = loader(&ws)
        .load_package(scenario(&ws, "panics"), None)
        .await
        .expect_err("the guest panicked");
    let LoadError::Sandbox(SandboxError::Panic(message)) = &error else {
        panic!("not a panic: {error}");
    };
    assert!(message.contains("hostile guest gave up"), "{message}");
    assert!(
        !message.contains('\x1b'),
        "terminal escapes reach the caller: {message}"
    );
    assert!(error.is_package_fault(), "{error}");
    ws.assert_left_nothing("panic");
}

/// `write-file` checks every request before it queues it, and a file the
/// host could not write fails the extraction whatever the guest reports:
/// the failure names the file, and nothing is published.
#[test]
fn write_file_refuses_what_it_must_and_a_failed_write_fails_the_extraction() {
    let ws = Workspace::new();
    let (result, text) = logged(|| loader(&ws).extract_blocking(&scenario(&ws, "writes-anyhow"), None));
    let error = result.expect_err("a queued file could not be written");
    assert!(
        text.contains(
            "writes: escape=refused-path absolute=refused-path big=over-limit fine=queued taken=queued \
             flush=taken.txt:refused-path after=io"
        ),
        "{text}"
    );
    assert!(matches!(error, LoadError::Io { .. }), "{error}");
    assert!(error.to_string().contains("taken.txt"), "{error}");
    ws.assert_left_nothing("writes");
}

/// The host writes every queued file before it publishes, even when the
/// guest never waits for them.
#[test]
fn queued_files_are_written_before_the_tree_is_published() {
    let ws = Workspace::new();
    let package = loader(&ws)
        .extract_blocking(&scenario(&ws, "writes-without-flush"), None)
        .expect("extracted");
    assert_eq!(
        std::fs::read(package.path.join("queued.txt")).expect("the queued file"),
        vec![b'q'; 4096]
    );
}

/// During `load`, a queued file that could not be written refuses the
/// publish, and nothing is queued after it.
#[test]
fn a_failed_queued_write_refuses_the_publish() {
    let ws = Workspace::new();
    let (error, text) = logged(|| {
        loader(&ws)
            .load_blocking(&scenario(&ws, "publishes-failed-write"), None)
            .expect_err("the publish was refused")
    });
    assert!(
        text.contains("publish: queued=queued publish=refused late=not-now"),
        "{text}"
    );
    assert!(error.to_string().contains("main.py"), "{error}");
    ws.assert_left_nothing("publish");
}

/// Runs `f` with every log line (all levels) captured; its result and the lines.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("utf-8");
    (result, text)
}

/// Collects every formatted log line in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_flood_of_guest_logs_is_capped_cut_and_escaped() {
    let ws = Workspace::new();
    let (error, text) = logged(|| {
        loader(&ws)
            .load_blocking(&scenario(&ws, "log-flood"), None)
            .expect_err("the guest refuses after logging")
    });
    assert_eq!(error.kind(), "manifest-missing", "{error}");
    let guest_lines: Vec<&str> = text.lines().filter(|line| line.contains("par::guest")).collect();
    // 1,000 calls are honoured, then one warning says the rest were dropped.
    assert_eq!(guest_lines.len(), 1_001, "{}", guest_lines.len());
    assert!(
        guest_lines
            .last()
            .is_some_and(|line| line.contains("guest log limit reached"))
    );
    assert!(
        !text.contains('\x1b') && !text.contains('\r'),
        "a control character reached the log"
    );
    assert!(!text.contains("\nforged line"), "a guest line forged a log line");
    for line in &guest_lines {
        // 1 KiB of message, and 16 fields of at most 1 KiB key and value each (escaped).
        assert!(line.len() < 48 * 1024, "a guest line of {} bytes", line.len());
    }
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

#[test]
fn a_hostile_guest_cannot_smuggle_variables_through_the_env_file() {
    let ws = Workspace::new();
    // Loaded by par's own guest; the hostile one then reads its `.env`.
    let real = PackageLoader::new(offline_config(&ws, env!("CARGO_TARGET_TMPDIR"))).expect("loader");
    let hostile = loader(&ws);
    for (name, dotenv, kind) in [
        ("smuggler", "GREETING=hi\n", "env-refused"),
        ("protocol-breaker", "# publish\n", "guest-protocol"),
    ] {
        let apkg = par_tests::agent::agent_apkg(name, "").file(".env", dotenv);
        let package = real.load_blocking(&ws.apkg(name, &apkg), Some(name)).expect("load");
        let mut spec = par::SpawnSpec::new(["python", "server.py"]);
        spec.package_env = true;
        let error = hostile.spawn_blocking(&package, spec).expect_err("refused");
        assert_eq!(
            (error.kind(), error.is_package_fault()),
            (kind, true),
            "{name}: {error}"
        );
        if kind == "env-refused" {
            assert_eq!(error.subject(), Some("LD_PRELOAD"), "{error}");
        }
    }
}

/// The guest reads a lock given for a load; whatever it hands back, the host
/// checks again: a path out of the package is refused naming its entry,
/// and an installer call from `read-lock` is a protocol violation.
#[test]
fn a_hostile_guest_cannot_pass_off_a_lock_the_host_would_refuse() {
    let ws = Workspace::new();
    let hostile = loader(&ws);
    let lock = ws.path().join("in").join("pylock.toml");
    for (text, kind, subject) in [
        ("lock-version = \"1.0\"\n", "lock-invalid", "packages[0] (escapes)"),
        ("# publish\n", "guest-protocol", "publish"),
    ] {
        std::fs::write(&lock, text).expect("write the lock");
        let error = hostile
            .load_locked_blocking(&scenario(&ws, "out-of-order"), None, &lock)
            .expect_err(text);
        assert_eq!((error.kind(), error.subject()), (kind, Some(subject)), "{error}");
        assert!(error.is_package_fault(), "{error}");
        ws.assert_left_nothing(text);
    }
}

/// `lock` takes the plan the guest reads, and checks it as `ensure-venv`
/// does: a line that points the installer at another index is refused.
#[test]
fn a_hostile_guests_plan_is_checked_before_anything_is_resolved() {
    let ws = Workspace::new();
    let error = loader(&ws)
        .lock_blocking(&scenario(&ws, "plan"))
        .expect_err("the plan names another index");
    assert_eq!(error.kind(), "requirements-invalid", "{error}");
    assert!(error.to_string().contains("--index-url"), "{error}");
    ws.assert_left_nothing("lock");
}

/// Unpacking a bundle, whatever the guest writes or asks is checked by the
/// host: a member no bundle may hold is refused, naming it; an installer
/// call from `unbundle` is a protocol violation; nothing is installed or
/// published.
#[test]
fn a_hostile_guest_cannot_unpack_a_bundle_the_host_would_refuse() {
    for (name, kind, subject) in [
        ("bundle", "bundle-invalid", "run.sh"),
        ("bundle-publish", "guest-protocol", "publish"),
    ] {
        let ws = Workspace::new();
        let parb = ws.path().join("in").join(format!("{name}.parb"));
        std::fs::copy(scenario(&ws, name), &parb).expect("the bundle");
        let error = loader(&ws).load_blocking(&parb, None).expect_err(name);
        assert_eq!((error.kind(), error.subject()), (kind, Some(subject)), "{error}");
        assert!(error.is_package_fault(), "{error}");
        ws.assert_left_nothing(name);
    }
}
