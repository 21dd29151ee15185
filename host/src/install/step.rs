//! One installer step of a load, run the same way wherever it is started
//! (the session's thread, or the editable build's own thread): its kind
//! decides its timeout and whether it may use the network; the sandbox
//! binds exactly the paths the caller names; failures become the
//! [`InstallError`]s the guest and the spec's messages expect.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::exec::confine::{Bubblewrap, Mounts, Tmp};
use crate::exec::output::escape_controls;
use crate::exec::process::{self, Step, StepError, StepOutput};
use crate::fs::staging::disk_nearly_full;
use crate::install::installer::{Installer, Invocation, cache_dir};
use crate::types::config::InstallConfig;
use crate::types::config::NetworkChoice;
use crate::types::error::{InstallError, StepFailure};

/// Output kept in errors that cross back into the guest and into messages.
const ERROR_TAIL: usize = 8 * 1024;

/// What a step is for: decides its timeout, its network and its name in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepKind {
    /// Creating the agent's venv.
    Venv,
    /// Resolving `requirements.txt` into a lock, before installing it.
    Resolve,
    /// Fetching the files a lock names, for a bundle.
    Fetch,
    /// Installing `requirements.txt` (or the lock resolved from it).
    Requirements,
    /// Creating a shared build environment (the build backend's requirements).
    BuildEnv,
    /// Running the build backend to make the agent's editable wheel, or
    /// moving a bundle's prebuilt one to the published tree.
    Build,
    /// Installing the agent itself (its editable wheel, or `-e .`).
    SelfInstall,
    /// Importing the entrypoint.
    VerifyImport,
}

impl StepKind {
    /// The step's name in errors and in the spec's messages. Preparing and
    /// building the agent are part of installing it, as in `pip install -e .`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            StepKind::Venv => "venv",
            StepKind::Resolve | StepKind::Requirements => "requirements",
            StepKind::Fetch => "fetch",
            StepKind::BuildEnv | StepKind::Build | StepKind::SelfInstall => "self-install",
            StepKind::VerifyImport => "verify-import",
        }
    }

    /// The configured limit for this kind of step.
    pub(crate) fn timeout(self, install: &InstallConfig) -> Duration {
        match self {
            StepKind::Venv => install.venv_timeout,
            StepKind::Resolve | StepKind::Requirements | StepKind::Fetch => install.requirements_timeout,
            StepKind::BuildEnv | StepKind::Build | StepKind::SelfInstall => install.self_install_timeout,
            StepKind::VerifyImport => install.import_timeout,
        }
    }

    /// What is left of this kind's budget after `spent`; none left is the
    /// step's timeout, reported with the whole budget as the spec words it.
    pub(crate) fn left(self, install: &InstallConfig, spent: Duration) -> Result<Duration, InstallError> {
        let budget = self.timeout(install);
        match budget.saturating_sub(spent) {
            left if left.is_zero() => Err(InstallError::TimedOut((self.name().into(), budget.as_secs()))),
            left => Ok(left),
        }
    }

    /// Steps that fetch from the index (or run a build backend, which pip and
    /// uv run with the same network as the install around it).
    fn uses_index(self) -> bool {
        matches!(
            self,
            StepKind::Resolve
                | StepKind::Fetch
                | StepKind::Requirements
                | StepKind::BuildEnv
                | StepKind::Build
                | StepKind::SelfInstall
        )
    }

    /// Steps run by the installer itself, which keeps its cache writable.
    /// A build backend (the package's own `setup.py`) and the import check
    /// never see the shared cache.
    fn uses_installer_cache(self) -> bool {
        matches!(
            self,
            StepKind::Venv | StepKind::Resolve | StepKind::Requirements | StepKind::BuildEnv | StepKind::SelfInstall
        )
    }
}

/// One step to run: what, where, and what it may touch besides the system.
#[derive(Debug)]
pub(crate) struct StepSpec {
    kind: StepKind,
    invocation: Invocation,
    cwd: PathBuf,
    writable: Vec<PathBuf>,
    readonly: Vec<PathBuf>,
    protected: Vec<PathBuf>,
    timeout: Option<Duration>,
    cancel: Option<Arc<AtomicBool>>,
}

impl StepSpec {
    /// A step whose working directory is its only writable place so far.
    pub(crate) fn new(kind: StepKind, invocation: Invocation, cwd: &Path) -> Self {
        Self {
            kind,
            invocation,
            cwd: cwd.to_owned(),
            writable: vec![cwd.to_owned()],
            readonly: Vec::new(),
            protected: Vec::new(),
            timeout: None,
            cancel: None,
        }
    }

    /// Also lets the step write `path`.
    pub(crate) fn writable(mut self, path: &Path) -> Self {
        self.writable.push(path.to_owned());
        self
    }

    /// Also lets the step read `path`.
    pub(crate) fn readonly(mut self, path: &Path) -> Self {
        self.readonly.push(path.to_owned());
        self
    }

    /// Keeps `paths` read-only although they lie inside a writable place
    /// (what a venv shares with others: see `install::installed_template`).
    /// Confined steps only: unconfined, nothing can hold them.
    pub(crate) fn protected(mut self, paths: &[PathBuf]) -> Self {
        self.protected.extend_from_slice(paths);
        self
    }

    /// Allows less than the kind's configured time (what is left of a budget).
    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Lets another thread stop the step early.
    pub(crate) fn cancel(mut self, cancel: Arc<AtomicBool>) -> Self {
        self.cancel = Some(cancel);
        self
    }
}

/// Everything needed to run a load's steps, cheap to clone into another thread.
#[derive(Debug, Clone)]
pub(crate) struct StepRunner {
    root: PathBuf,
    install: InstallConfig,
    sandbox: Option<Bubblewrap>,
    readonly: Vec<PathBuf>,
    installer_cache: Option<(&'static str, PathBuf)>,
    disk_full: Arc<AtomicBool>,
}

impl StepRunner {
    /// A runner for one load: `readonly` is what every confined step may read.
    pub(crate) fn new(
        root: &Path,
        install: &InstallConfig,
        installer: &dyn Installer,
        sandbox: Option<Bubblewrap>,
        readonly: Vec<PathBuf>,
    ) -> Self {
        Self {
            root: root.to_owned(),
            install: install.clone(),
            installer_cache: cache_dir(installer, install.installer_cache.as_deref())
                .map(|dir| (installer.cache().0, dir)),
            sandbox,
            readonly,
            disk_full: Arc::default(),
        }
    }

    /// The install settings the steps run under.
    pub(crate) fn install(&self) -> &InstallConfig {
        &self.install
    }

    /// Whether a step failed while the root's disk was full, or said ENOSPC:
    /// the failure is then the host's, not the package's.
    pub(crate) fn saw_disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    /// Runs the step (confined when the load has a sandbox) and maps every
    /// failure to an [`InstallError`]. Children get the allow-listed
    /// environment only; the network only for steps that use the index, and
    /// only if the configuration allows it.
    pub(crate) fn run(&self, spec: StepSpec) -> Result<StepOutput, InstallError> {
        let StepSpec {
            kind,
            invocation,
            cwd,
            mut writable,
            readonly,
            protected,
            timeout,
            cancel,
        } = spec;
        let install = &self.install;
        let timeout = timeout.unwrap_or_else(|| kind.timeout(install));
        let mut step = Step::new(kind.name(), invocation.program, &cwd, timeout).args(invocation.args);
        step.env = self.step_env();
        step.limits = install.limits;
        step.cancel = cancel;
        // Named to the installer whether or not it is confined: unconfined,
        // it would otherwise pick its own under `HOME`, not the configured one.
        let installer_cache = self.installer_cache.as_ref().filter(|_| kind.uses_installer_cache());
        if let Some((variable, cache)) = installer_cache {
            fs::create_dir_all(cache)
                .map_err(|e| InstallError::Host(format!("cannot create {}: {e}", cache.display())))?;
            step = step.env(variable, cache);
        }
        if let Some(bwrap) = &self.sandbox {
            writable.extend(installer_cache.map(|(_, cache)| cache.clone()));
            let policy = install.policy;
            let wants_network = install.index.is_remote() || policy.allow_direct_urls || policy.allow_index_options;
            let mounts = Mounts {
                writable,
                readonly: self.readonly.iter().cloned().chain(readonly).collect(),
                protected,
                network: kind.uses_index() && install.network == NetworkChoice::Index && wants_network,
                tmp: Tmp::Scratch,
                tmp_bytes: install.limits.tmp_bytes,
                info: None,
            };
            step = bwrap
                .confine(step, &mounts)
                .map_err(|e| InstallError::Host(format!("cannot prepare the sandbox: {e}")))?;
        }
        let started = std::time::Instant::now();
        let result = process::run(&step);
        tracing::debug!(
            step = kind.name(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Step ran"
        );
        let failed_output = match &result {
            Ok(output) if !output.status.success() => Some((output.stdout.as_str(), output.stderr.as_str())),
            Err(StepError::TimedOut { stdout, stderr, .. }) => Some((stdout.as_str(), stderr.as_str())),
            _ => None,
        };
        if let Some((stdout, stderr)) = failed_output
            && (disk_nearly_full(&self.root) || says_disk_full(stdout) || says_disk_full(stderr))
        {
            self.disk_full.store(true, Ordering::Relaxed);
        }
        let name = kind.name();
        match result {
            Ok(output) if output.status.success() => Ok(output),
            Ok(output) => Err(InstallError::Failed(StepFailure {
                step: name.into(),
                exit_code: output.code(),
                stderr: tail(&output.stderr),
                stdout: tail(&output.stdout),
            })),
            // A shortened timeout is what was left of the kind's budget: the budget is what ran out.
            Err(StepError::TimedOut { .. }) => {
                Err(InstallError::TimedOut((name.into(), kind.timeout(install).as_secs())))
            }
            Err(other) => Err(InstallError::Host(other.to_string())),
        }
    }

    fn step_env(&self) -> Vec<(OsString, OsString)> {
        self.install.passed_env()
    }
}

/// Whether installer output carries the operating system's ENOSPC message
/// (Python's `[Errno 28] No space left on device`, Rust's `os error 28`).
fn says_disk_full(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("os error 28")
}

/// The end of a step's output, where errors are, with every control
/// character escaped (newlines too): the package wrote it, and it reaches
/// errors, logs and terminals, where it must not forge a line or drive the
/// terminal.
fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(ERROR_TAIL);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    escape_controls(&text[start..], usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::installer::Uv;

    /// `InstallConfig::installer_cache` reaches an unconfined installer too,
    /// and only the installer's own steps.
    #[test]
    fn the_configured_installer_cache_is_named_to_unconfined_steps() {
        let dir = tempfile::tempdir().expect("dir");
        let install = InstallConfig {
            installer_cache: Some(dir.path().join("caches")),
            ..InstallConfig::default()
        };
        let runner = StepRunner::new(dir.path(), &install, &Uv::new("uv"), None, Vec::new());
        let printed = |kind| {
            let invocation = Invocation {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), "echo \"${UV_CACHE_DIR:-unset}\"".into()],
            };
            let output = runner.run(StepSpec::new(kind, invocation, dir.path())).expect("ran");
            output.stdout.trim().to_owned()
        };
        let expected = dir.path().join("caches/uv");
        assert_eq!(printed(StepKind::Requirements), expected.display().to_string());
        assert!(expected.is_dir());
        assert_eq!(
            printed(StepKind::Build),
            "unset",
            "a build backend never sees the cache"
        );
    }
}
