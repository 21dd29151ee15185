//! The real guest component, run by the real host, on arbitrary archive
//! bytes: every outcome must be a value or a typed error — a trap, a limit or
//! an endless loop in the sandbox shows up as a `SandboxError`, never as a
//! crash or a hang of the host — and nothing may be published or left in
//! staging for an archive that was refused.

use std::sync::OnceLock;
use std::time::Duration;

use par::{LoadError, LoaderConfig, PackageLoader, SandboxError};

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
        let loader = PackageLoader::new(config).expect("loader");
        Rig { loader, scratch }
    })
}

/// One input.
pub fn run(data: &[u8]) {
    let rig = rig();
    let apkg = rig.scratch.path().join("input.apkg");
    std::fs::write(&apkg, data).expect("write input");
    let _ = rig.loader.inspect_blocking(&apkg);
    match rig.loader.extract_blocking(&apkg, Some("fuzz")) {
        Ok(package) => {
            std::fs::remove_dir_all(&package.path).expect("clean the published tree");
            std::fs::remove_file(&package.link).expect("clean the app's link");
        }
        Err(LoadError::Sandbox(SandboxError::Engine(e))) => panic!("engine failure: {e}"),
        Err(LoadError::Internal(e)) => panic!("internal failure: {e}"),
        Err(_) => {
            for dir in ["packages", "trees"] {
                let published = std::fs::read_dir(rig.scratch.path().join("root").join(dir)).map_or(0, |d| d.count());
                assert_eq!(published, 0, "a refused archive was published in {dir}/");
            }
        }
    }
    let staging = rig.scratch.path().join("root/staging");
    let left = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "staging left behind");
}
