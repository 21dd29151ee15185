//! Loader configuration: where packages go and how tightly the sandbox is held.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::sandbox::Limits;
use crate::sandbox::SandboxLimits;

/// The spec's default root; each package lands in `{root}/packages/{app_id}@{version}/`.
pub const DEFAULT_ROOT: &str = "/tmp/pixell-runtime";

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_total_bytes: 512 * 1024 * 1024,
            max_file_bytes: 256 * 1024 * 1024,
            max_ratio: 100,
            ratio_min_bytes: 1024 * 1024,
            max_manifest_bytes: 1024 * 1024,
        }
    }
}

/// Everything a [`crate::PackageLoader`] needs to know; start from [`LoaderConfig::default`].
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Root of all state: `packages/`, `staging/`, `locks/`.
    pub root: PathBuf,
    /// Archive limits the guest enforces.
    pub limits: Limits,
    /// Cap on the guest's linear memory.
    pub guest_memory_bytes: usize,
    /// Cap on the guest's CPU time per run.
    pub guest_cpu_time: Duration,
    /// Where the compiled guest is cached; `None` compiles it in memory every time.
    pub component_cache: Option<PathBuf>,
    /// Whether the guest applies its entry-name rules (only tests turn this off).
    pub(crate) guest_path_rules: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        let sandbox = SandboxLimits::default();
        Self {
            root: PathBuf::from(DEFAULT_ROOT),
            limits: Limits::default(),
            guest_memory_bytes: sandbox.memory_bytes,
            guest_cpu_time: sandbox.cpu_time,
            component_cache: default_cache_dir(),
            guest_path_rules: true,
        }
    }
}

impl LoaderConfig {
    /// A default configuration rooted at `root`.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            ..Self::default()
        }
    }

    /// Turns the guest's path rules off so a test can show the WASI preopen
    /// alone still confines writes. Never available in production builds.
    #[cfg(feature = "test-hooks")]
    pub fn without_guest_path_rules(mut self) -> Self {
        self.guest_path_rules = false;
        self
    }

    pub(crate) fn sandbox_limits(&self) -> SandboxLimits {
        SandboxLimits {
            memory_bytes: self.guest_memory_bytes,
            cpu_time: self.guest_cpu_time,
        }
    }
}

/// `$XDG_CACHE_HOME/par`, else `$HOME/.cache/par`: per-user, so no one else can plant compiled code.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("par"))
}
