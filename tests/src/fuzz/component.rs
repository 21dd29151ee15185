//! The real guest component, run by the real host, on arbitrary archive
//! bytes: every outcome must be a value or a typed error — a trap, a limit or
//! an endless loop in the sandbox shows up as a `SandboxError`, never as a
//! crash or a hang of the host — and nothing may be published or left in
//! staging for an archive that was refused. `lock` (the guest's `plan`),
//! `load`, and `load` of the bytes as a bundle (the guest's `unbundle`) run too, `load` through the whole installer protocol up to the
//! venv, whose creation fails at once (the installer is `false`), as does
//! `lock`'s resolution: what either created must be gone.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use par::{InstallerChoice, LoadError, LoaderConfig, PackageLoader, SandboxChoice, SandboxError};

struct Rig {
    loader: PackageLoader,
    scratch: tempfile::TempDir,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let mut config = LoaderConfig::with_root(scratch.path().join("root"));
        config.component_cache = Some(scratch.path().join("cache"));
        config.guest_cpu_time = Duration::from_secs(5);
        config.guest_memory_bytes = 128 * 1024 * 1024;
        config.limits.max_total_bytes = 16 * 1024 * 1024;
        config.install.installer = InstallerChoice::Uv;
        config.install.uv = "/bin/false".into();
        config.install.sandbox = SandboxChoice::None;
        let loader = PackageLoader::new(config).expect("loader");
        Rig { loader, scratch }
    })
}

/// Entries in `{root}/{area}`.
fn count(root: &Path, area: &str) -> usize {
    std::fs::read_dir(root.join(area)).map_or(0, |d| d.count())
}

/// A typed outcome, never a host fault.
fn assert_typed(error: &LoadError) {
    match error {
        LoadError::Sandbox(SandboxError::Engine(e)) => panic!("engine failure: {e}"),
        LoadError::Internal(e) => panic!("internal failure: {e}"),
        LoadError::GuestProtocol(e) => panic!("par's own guest broke the protocol: {e}"),
        _ => {}
    }
}

/// One input.
pub(crate) fn run(data: &[u8]) {
    let rig = rig();
    let root = rig.scratch.path().join("root");
    let apkg = rig.scratch.path().join("input.apkg");
    std::fs::write(&apkg, data).expect("write input");
    let _ = rig.loader.inspect_blocking(&apkg);
    match rig.loader.extract_blocking(&apkg, Some("fuzz")) {
        Ok(package) => {
            std::fs::remove_dir_all(&package.path).expect("clean the published tree");
            std::fs::remove_file(&package.link).expect("clean the app's link");
        }
        Err(error) => {
            assert_typed(&error);
            for area in ["packages", "trees"] {
                assert_eq!(count(&root, area), 0, "a refused archive was published in {area}/");
            }
        }
    }
    // `lock` extracts through the guest's `plan`; its resolution fails at once too.
    if let Err(error) = rig.loader.lock_blocking(&apkg) {
        assert_typed(&error);
    }
    if let Err(error) = rig.loader.load_blocking(&apkg, Some("fuzz")) {
        assert_typed(&error);
    }
    // The same bytes as an offline bundle: unpacked by the guest's
    // `unbundle`, checked by the host, the package inside loaded.
    let parb = rig.scratch.path().join("input.parb");
    std::fs::write(&parb, data).expect("write input");
    if let Err(error) = rig.loader.load_blocking(&parb, Some("fuzz")) {
        assert_typed(&error);
    }
    for area in ["staging", "packages", "trees", "venvs"] {
        assert_eq!(count(&root, area), 0, "a failed load left something in {area}/");
    }
}
