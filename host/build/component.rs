//! Builds one package of the workspace as a `wasm32-wasip2` component, for
//! the build scripts that embed or test components (`host/build.rs`,
//! `tests/build.rs`). Each component gets its own cargo invocation and
//! target directory, like wasmtime's test-programs.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "guest";

/// Builds `package` (whose component is `{artifact}.wasm`) with the pinned
/// toolchain and returns the component's bytes. `watched` are paths, relative
/// to the workspace, whose change must rebuild it.
pub(crate) fn build(package: &str, artifact: &str, watched: &[&str]) -> Vec<u8> {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("the package lives inside the workspace")
        .to_owned();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for path in watched.iter().chain(&["wit", "Cargo.lock", "Cargo.toml"]) {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }

    let toolchain = GuestToolchain::detect(&workspace);
    toolchain.ensure_target_installed();

    let target_dir = shared_target_dir(&out_dir).join("guest-component");
    let mut command = toolchain.command("cargo");
    command
        .current_dir(&workspace)
        .args(["build", "--package", package, "--target", TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags, wrappers and profile settings are for the host
    // target; none of them may leak into the wasm build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let leaks = key.starts_with("CARGO_ENCODED_RUSTFLAGS")
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_BUILD_")
            || key.starts_with("CARGO_TARGET_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || matches!(
                key.as_ref(),
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_MAKEFLAGS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
            );
        if leaks {
            command.env_remove(key.as_ref());
        }
    }
    // wasm SIMD (which wasmtime enables by default) for the inflate loops.
    command.env("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS", "-C target-feature=+simd128");
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build the {package} component: {e}"));
    assert!(
        status.success(),
        "building the {package} component failed (see the cargo output above)"
    );

    let built = target_dir.join(TARGET).join(PROFILE).join(format!("{artifact}.wasm"));
    std::fs::read(&built).unwrap_or_else(|e| panic!("component missing at {}: {e}", built.display()))
}

/// The toolchain the guest is built with. Under rustup it is always the one
/// rust-toolchain.toml pins, even when the host is built with another (for
/// example `cargo +nightly fuzz`): the component stays the same bytes, and
/// nightly need not carry the wasm target.
struct GuestToolchain {
    workspace: PathBuf,
    rustup: bool,
}

impl GuestToolchain {
    fn detect(workspace: &Path) -> Self {
        let rustup = Command::new("rustup")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        Self {
            workspace: workspace.to_owned(),
            rustup,
        }
    }

    /// `cargo` or `rustc`: the rustup proxies resolving the pinned toolchain,
    /// or, without rustup, the ones building the host.
    fn command(&self, tool: &str) -> Command {
        let program = if self.rustup {
            tool.into()
        } else {
            env::var_os(tool.to_uppercase()).unwrap_or_else(|| tool.into())
        };
        let mut command = Command::new(program);
        command.current_dir(&self.workspace);
        if self.rustup {
            for key in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC"] {
                command.env_remove(key);
            }
        }
        command
    }

    /// Adds the wasm target through rustup when it is missing, saying so; if
    /// that is impossible, stops with the one command that fixes it.
    fn ensure_target_installed(&self) {
        let libdir = self
            .command("rustc")
            .args(["--print", "target-libdir", "--target", TARGET])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        if libdir.as_deref().is_some_and(has_std) {
            return;
        }
        println!("cargo:warning=the {TARGET} target is not installed; running `rustup target add {TARGET}`");
        let added = self.rustup
            && self
                .command("rustup")
                .args(["target", "add", TARGET])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            added,
            "the {TARGET} target is missing and rustup could not add it; run `rustup target add {TARGET}` (or `rustup toolchain install` in the repository) and build again"
        );
    }
}

fn has_std(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    })
}

/// The workspace's target directory (the ancestor of `OUT_DIR` holding cargo's
/// `CACHEDIR.TAG`), so every profile and `cargo clippy` share one guest build.
fn shared_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .unwrap_or(out_dir)
        .to_owned()
}
