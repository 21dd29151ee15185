//! What the install tests need besides the loader: a local wheelhouse with
//! the build backend (setuptools, wheel) so every install runs with
//! `--no-index`, and a `uv` executable. Both are prepared once per target
//! directory (from the package registry) and reused; the tests themselves
//! never reach an index.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Serializes preparation across test threads and test processes.
fn with_lock<T>(dir: &Path, work: impl FnOnce() -> T) -> T {
    fs::create_dir_all(dir).expect("tools dir");
    let lock = fs::File::create(dir.join(".lock")).expect("lock file");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("lock");
    work()
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A directory holding setuptools and wheel as wheels.
pub fn wheelhouse(tools: &Path) -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tools.join("wheelhouse");
        with_lock(tools, || {
            let ready = dir.join(".ready");
            if !ready.exists() {
                run(
                    Command::new("python3")
                        .args([
                            "-m",
                            "pip",
                            "download",
                            "--disable-pip-version-check",
                            "--only-binary=:all:",
                        ])
                        .arg("--dest")
                        .arg(&dir)
                        .args(["setuptools>=70.1", "wheel"]),
                    "downloading the test wheelhouse",
                );
                fs::write(&ready, "").expect("mark wheelhouse");
            }
        });
        dir
    })
    .clone()
}

/// A `uv` executable: the one on `PATH`, or one installed into a tools venv.
pub fn uv(tools: &Path) -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(found) = std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).map(|d| d.join("uv")).find(|p| p.is_file()))
        {
            return found;
        }
        let venv = tools.join("uv-venv");
        let program = venv.join("bin").join("uv");
        with_lock(tools, || {
            if !program.is_file() {
                run(
                    Command::new("python3").args(["-m", "venv"]).arg(&venv),
                    "creating the uv venv",
                );
                run(
                    Command::new(venv.join("bin").join("python")).args([
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "uv",
                    ]),
                    "installing uv",
                );
            }
        });
        program
    })
    .clone()
}
