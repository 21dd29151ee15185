//! Loader configuration: where packages go and how tightly the sandbox is held.

use std::path::PathBuf;
use std::time::Duration;

use super::trust::TrustedKey;

pub use par_rules::limits::Limits;

/// How old an archive's change time must be, when a load opens it, for par
/// to record the archive's identity on disk (device, inode, size, times) with
/// its digest and not hash it again while that identity holds: longer than
/// a local file system's clock tick, so any later write changes the identity.
pub const ARCHIVE_SETTLE_TIME: std::time::Duration = std::time::Duration::from_millis(100);

/// The spec's default root; each package lands in `{root}/packages/{app_id}@{version}/`.
pub const DEFAULT_ROOT: &str = "/tmp/pixell-runtime";

/// A setting chosen by name (`--installer uv` on the CLI, `installer="uv"`
/// in Python): the one table of names for each choice.
pub trait Choice: Copy + Default + PartialEq + 'static {
    /// Every value, with the name it is chosen by.
    const NAMES: &'static [(&'static str, Self)];

    /// The value called `name`, if there is one.
    fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, value)| *value)
    }

    /// The name this value is chosen by.
    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, value)| *value == self)
            .map_or("", |(name, _)| name)
    }
}

impl Choice for InstallerChoice {
    const NAMES: &'static [(&'static str, Self)] = &[("auto", Self::Auto), ("pip", Self::Pip), ("uv", Self::Uv)];
}

impl Choice for SandboxChoice {
    const NAMES: &'static [(&'static str, Self)] =
        &[("auto", Self::Auto), ("bwrap", Self::Bwrap), ("none", Self::None)];
}

impl Choice for NetworkChoice {
    const NAMES: &'static [(&'static str, Self)] = &[("none", Self::None), ("index", Self::Index)];
}

/// Limits applied to every guest run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Cap on the guest's linear memory.
    pub memory_bytes: usize,
    /// Cap on the CPU time the guest's thread uses, less the CPU time the
    /// host spends serving installer calls: time spent waiting (on a step,
    /// on the disk) is not counted.
    pub cpu_time: Duration,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 * 1024 * 1024,
            cpu_time: Duration::from_secs(60),
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
    /// The guest's limits on an offline bundle (`.parb`): the package
    /// inside it still meets `limits`.
    pub bundle_limits: Limits,
    /// Cap on the guest's linear memory.
    pub guest_memory_bytes: usize,
    /// Cap on the guest's CPU time per run.
    pub guest_cpu_time: Duration,
    /// Where the compiled guest is cached; `None` compiles it in memory every time.
    pub component_cache: Option<PathBuf>,
    /// How venvs are created and packages installed.
    pub install: InstallConfig,
    /// Most bytes the root may take (as `du` counts them). After each load
    /// that wrote something, the least recently used deployments are removed
    /// until the root fits, never an app's current one, one a running agent
    /// uses, or the one that load made. `None`: no budget.
    pub max_root_bytes: Option<u64>,
    /// Least free space a load or extraction needs on the root's filesystem
    /// to start; below it, it refuses with `disk-full` before writing anything.
    pub min_free_bytes: Option<u64>,
    /// Keys whose minisign signatures the loader accepts. With any, a
    /// package loads only with a valid signature by one of them beside it
    /// (`{apkg}.minisig`, its trusted comment `name=NAME version=VERSION`
    /// matching the manifest); without, signatures are not looked at.
    pub trusted_keys: Vec<TrustedKey>,
    /// How par talks to OCI registries (push, pull, `oci://` loads).
    pub registry: crate::types::registry::RegistryConfig,
    /// Whether the guest applies its entry-name rules (only tests turn this off).
    pub(crate) guest_path_rules: bool,
    /// Another component in place of par's own guest (only tests set this,
    /// to show the host's guarantees hold for any guest).
    pub(crate) guest_component: Option<std::sync::Arc<[u8]>>,
    /// Called with the archive's path once a load has opened it (and, if
    /// par hashed it before, found its digest) and before it copies it for
    /// the guest (only tests set this, to rewrite it there).
    #[cfg(feature = "test-hooks")]
    pub(crate) before_copy: Option<Hook>,
}

/// A function a test runs inside a load.
#[cfg(feature = "test-hooks")]
#[derive(Clone)]
pub(crate) struct Hook(pub(crate) std::sync::Arc<dyn Fn(&std::path::Path) + Send + Sync>);

#[cfg(feature = "test-hooks")]
impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// Which installer back end to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstallerChoice {
    /// uv when it is on `PATH` or can be fetched (`fetch_uv`), pip otherwise.
    #[default]
    Auto,
    /// `python -m venv` and `pip install`, as the spec does.
    Pip,
    /// `uv venv` and `uv pip install`.
    Uv,
}

/// Where packages may come from: passed to the installer as options, never
/// taken from the package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexConfig {
    /// `--no-index`: only local paths and `find_links`.
    pub no_index: bool,
    /// `--index-url`.
    pub index_url: Option<String>,
    /// `--extra-index-url`, each.
    pub extra_index_urls: Vec<String>,
    /// `--find-links`, each (directories or URLs).
    pub find_links: Vec<String>,
}

impl IndexConfig {
    /// Whether installing needs the network: an index is in use, or a
    /// find-links location is a URL.
    pub fn is_remote(&self) -> bool {
        !self.no_index
            || self
                .find_links
                .iter()
                .any(|link| link.contains("://") && !link.starts_with("file:"))
    }

    /// The installer options these settings stand for.
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args = Vec::new();
        if self.no_index {
            args.push("--no-index".into());
        }
        if let Some(url) = &self.index_url {
            args.extend(["--index-url".into(), url.into()]);
        }
        for url in &self.extra_index_urls {
            args.extend(["--extra-index-url".into(), url.into()]);
        }
        for link in &self.find_links {
            args.extend(["--find-links".into(), link.into()]);
        }
        args
    }
}

impl InstallConfig {
    /// These settings with no network: no index, only the local find-links
    /// directories, every step in an empty network namespace.
    pub(crate) fn offline(&self) -> Self {
        let local = self.index.find_links.iter().filter(|link| !link.contains("://"));
        self.without_network(local.cloned().collect())
    }

    /// These settings installing from the files in `dir` alone (an
    /// unpacked bundle's): no index, no other find-links, no network.
    pub(crate) fn only_files_in(&self, dir: &std::path::Path) -> Self {
        self.without_network(vec![dir.display().to_string()])
    }

    /// The loader's environment variables installer steps inherit: those
    /// [`Self::pass_env`] names.
    pub(crate) fn passed_env(&self) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        self.pass_env
            .iter()
            .filter_map(|name| std::env::var_os(name).map(|value| (name.into(), value)))
            .collect()
    }

    fn without_network(&self, find_links: Vec<String>) -> Self {
        Self {
            index: IndexConfig {
                no_index: true,
                index_url: None,
                extra_index_urls: Vec::new(),
                find_links,
            },
            network: NetworkChoice::None,
            offline: true,
            ..self.clone()
        }
    }
}

/// What installer subprocesses inherit from the loader's environment: the
/// basics, and the operator's trust, proxy and index settings. Nothing else
/// (API keys, tokens, the runtime's own configuration) reaches `setup.py`.
pub const DEFAULT_PASS_ENV: [&str; 22] = [
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_SYSTEM_CERTS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// Whether installer subprocesses run under bubblewrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxChoice {
    /// Use bubblewrap when it is installed and works; warn loudly when it does not.
    #[default]
    Auto,
    /// Require bubblewrap: a load fails if it is missing or cannot create namespaces.
    Bwrap,
    /// Run installer subprocesses with the loader's own view of the system.
    None,
}

/// When a confined step may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkChoice {
    /// Never: every step runs in an empty network namespace.
    None,
    /// Only install steps, and only when the index settings name a remote location.
    #[default]
    Index,
}

/// `setrlimit` ceilings applied to a step (and inherited by everything it starts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    /// `RLIMIT_AS`: virtual memory, so an allocation loop fails instead of starving the host.
    pub address_space_bytes: Option<u64>,
    /// `RLIMIT_FSIZE`: largest file a step may write.
    pub file_size_bytes: Option<u64>,
    /// `RLIMIT_NOFILE`: open file descriptors.
    pub open_files: Option<u64>,
    /// `RLIMIT_CPU`: CPU seconds, a backstop behind the wall-clock deadline.
    pub cpu_seconds: Option<u64>,
    /// Most processes the step may have at once, through a pids cgroup of
    /// its own where the loader may create one (where cgroups are available); that
    /// cgroup also lets every process the step started be killed at its end.
    pub processes: Option<u64>,
    /// Most memory all its processes may use together (tmpfs pages they
    /// write included), through a memory cgroup of its own where the loader
    /// may create one; an agent without one gets it as `RLIMIT_AS` instead.
    pub memory_bytes: Option<u64>,
    /// The size of each tmpfs the sandbox gives it (its `/tmp`, or an
    /// install step's scratch directory, and `/dev/shm`).
    pub tmp_bytes: Option<u64>,
}

/// What the operator allows beyond the safe default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequirementPolicy {
    /// Let packages name their own index or find-links locations.
    pub allow_index_options: bool,
    /// Let packages install from URLs (`pkg @ https://…`, `git+https://…`).
    pub allow_direct_urls: bool,
}

/// Installing the agent: back end, interpreter, timeouts, index policy.
#[derive(Debug, Clone)]
pub struct InstallConfig {
    /// pip, uv, or whichever is available.
    pub installer: InstallerChoice,
    /// The interpreter venvs are made from (looked up on `PATH` if relative).
    pub python: PathBuf,
    /// The `uv` executable (looked up on `PATH` if relative).
    pub uv: PathBuf,
    /// Whether a load that finds no `uv` (and is not offline) fetches the
    /// pinned release into par's cache, its hash checked, rather than
    /// installing with pip; `auto` falls back to pip when that fails.
    pub fetch_uv: bool,
    /// Limit for creating the venv.
    pub venv_timeout: Duration,
    /// Limit for installing `requirements.txt` (the spec's 300 s).
    pub requirements_timeout: Duration,
    /// Limit for the editable self-install (the spec's 120 s).
    pub self_install_timeout: Duration,
    /// Limit for the import check (the spec's 10 s).
    pub import_timeout: Duration,
    /// Age past which par makes a build environment anew (with uv), so open
    /// build requirements such as `setuptools>=40.8.0` pick up new releases.
    pub build_env_max_age: Duration,
    /// Where packages come from.
    pub index: IndexConfig,
    /// A directory holding the installers' caches, one per back end (`uv/`,
    /// `pip/`); `None` uses each installer's own (`$UV_CACHE_DIR`,
    /// `$PIP_CACHE_DIR`, `$XDG_CACHE_HOME`, `~/.cache`).
    pub installer_cache: Option<PathBuf>,
    /// What requirement lines may do beyond the safe default.
    pub policy: RequirementPolicy,
    /// Environment variables passed through to installer subprocesses; everything else is cleared.
    pub pass_env: Vec<String>,
    /// Fail the load when the entrypoint does not import (the spec only warns).
    pub strict: bool,
    /// `setrlimit` ceilings for every installer subprocess.
    pub limits: ResourceLimits,
    /// Whether installer subprocesses run under bubblewrap.
    pub sandbox: SandboxChoice,
    /// The `bwrap` executable (looked up on `PATH` if relative).
    pub bwrap: PathBuf,
    /// When confined steps may use the network.
    pub network: NetworkChoice,
    /// Install with no network at all: no index (only local find-links
    /// directories), and every step in an empty network namespace. A load
    /// from a bundle is always offline.
    pub offline: bool,
}

impl Default for InstallConfig {
    fn default() -> Self {
        Self {
            installer: InstallerChoice::Auto,
            python: PathBuf::from("python3"),
            uv: PathBuf::from("uv"),
            fetch_uv: true,
            venv_timeout: Duration::from_secs(120),
            requirements_timeout: Duration::from_secs(300),
            self_install_timeout: Duration::from_secs(120),
            import_timeout: Duration::from_secs(10),
            build_env_max_age: Duration::from_secs(7 * 24 * 60 * 60),
            index: IndexConfig::default(),
            installer_cache: None,
            policy: RequirementPolicy::default(),
            pass_env: DEFAULT_PASS_ENV.map(String::from).into(),
            strict: false,
            limits: ResourceLimits {
                address_space_bytes: Some(4 * 1024 * 1024 * 1024),
                file_size_bytes: Some(1024 * 1024 * 1024),
                open_files: Some(1024),
                cpu_seconds: Some(600),
                processes: Some(512),
                // Room for the largest wheels (a CUDA build of torch is
                // 2.5 GB, which pip downloads to its temporary directory).
                memory_bytes: Some(8 * 1024 * 1024 * 1024),
                tmp_bytes: Some(4 * 1024 * 1024 * 1024),
            },
            sandbox: SandboxChoice::Auto,
            bwrap: PathBuf::from("bwrap"),
            network: NetworkChoice::Index,
            offline: false,
        }
    }
}

impl Default for LoaderConfig {
    fn default() -> Self {
        let sandbox = SandboxLimits::default();
        Self {
            root: PathBuf::from(DEFAULT_ROOT),
            limits: Limits::default(),
            bundle_limits: Limits::bundle(),
            guest_memory_bytes: sandbox.memory_bytes,
            guest_cpu_time: sandbox.cpu_time,
            component_cache: default_cache_dir(),
            install: InstallConfig::default(),
            max_root_bytes: None,
            min_free_bytes: None,
            trusted_keys: Vec::new(),
            registry: Default::default(),
            guest_path_rules: true,
            guest_component: None,
            #[cfg(feature = "test-hooks")]
            before_copy: None,
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

    /// Runs `wasm`, a component exporting the same world, in place of par's
    /// own guest: for tests with a hostile guest. Never available in
    /// production builds.
    #[cfg(feature = "test-hooks")]
    pub fn with_guest_component(mut self, wasm: &[u8]) -> Self {
        self.guest_component = Some(wasm.into());
        self
    }

    /// Runs `hook` with the archive's path after a load opened it (and
    /// found the digest it had, if par hashed it before) and before it
    /// copies it for the guest: for tests that rewrite the file there.
    /// Never available in production builds.
    #[cfg(feature = "test-hooks")]
    pub fn before_copy(mut self, hook: impl Fn(&std::path::Path) + Send + Sync + 'static) -> Self {
        self.before_copy = Some(Hook(std::sync::Arc::new(hook)));
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
