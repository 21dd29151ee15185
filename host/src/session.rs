//! The `host-installer` import: the host side of one `load`.
//!
//! The guest asks, in order, to publish the tree, ensure the venv, install the
//! requirements, install the agent and verify the entrypoint. Each request is
//! checked here before anything runs; the session remembers what was done so
//! the loader can mark the venv finished only if every planned step succeeded.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::InstallConfig;
use crate::confine::{self, Bubblewrap, Mounts, NetworkChoice};
use crate::error::LoadError;
use crate::installer::{InstallTarget, Installer, Invocation, cache_dir, venv_python};
use crate::interpreter::Interpreter;
use crate::loader::{Manifest, check_manifest};
use crate::process::{self, Step, StepError, StepOutput};
use crate::requirements::check_line;
use crate::sandbox::bindings::host_installer::Host;
use crate::sandbox::bindings::types::{
    Entrypoint, InstallError, InstallPlan, Manifest as GuestManifest, RefusedRequirement, Requirement, SelfInstall,
    StepFailure, StepReport, VenvInfo,
};
use crate::staging::{PackageLock, Staging, disk_nearly_full, normalize_modes};
use crate::validate::{is_entrypoint, is_safe_component};
use crate::venv::{self, VenvInputs};

/// Output kept in errors that cross back into the guest and into messages.
const ERROR_TAIL: usize = 8 * 1024;
/// The import check: the module and attribute arrive as argv, never as code.
const VERIFY_SCRIPT: &str = "import importlib, sys\nmodule = importlib.import_module(sys.argv[1])\nif len(sys.argv) > 2:\n    getattr(module, sys.argv[2])\n";

/// What a load may use: fixed before the guest runs.
#[derive(Debug)]
pub struct LoadContext {
    /// The loader root.
    pub root: PathBuf,
    /// App id chosen by the caller, if any (else the manifest name).
    pub app_id: Option<String>,
    /// Install settings.
    pub install: InstallConfig,
    /// The back end.
    pub installer: Arc<dyn Installer>,
    /// The base interpreter.
    pub python: Interpreter,
    /// The installer sandbox every step runs in, if any.
    pub sandbox: Option<Bubblewrap>,
    /// What confined steps may read besides the system.
    pub readonly: Vec<PathBuf>,
}

/// The published package.
#[derive(Debug)]
pub struct Published {
    /// `{name}@{version}`.
    pub package_id: String,
    /// The app id it was published under.
    pub app_id: String,
    /// `{root}/packages/{app_id}@{version}`.
    pub path: PathBuf,
    /// The re-checked manifest.
    pub manifest: Manifest,
    /// Held until the load ends: no other load replaces this package meanwhile.
    _lock: PackageLock,
}

impl Published {
    /// Re-checks what the guest extracted (manifest, executables, the tree
    /// itself) and renames the staging tree into place under the package lock:
    /// the one path both `extract` and `load` publish by.
    pub fn publish(
        root: &Path,
        app_id: Option<&str>,
        staging: Staging,
        manifest: GuestManifest,
        executables: &[String],
    ) -> Result<Self, LoadError> {
        let manifest = check_manifest(manifest)?;
        normalize_modes(&staging.tree(), executables)?;
        let app_id = app_id.unwrap_or(&manifest.name).to_owned();
        let dir_name = format!("{app_id}@{}", manifest.version);
        let path = root.join("packages").join(&dir_name);
        let lock = PackageLock::acquire(root, &dir_name)?;
        staging.publish(&path)?;
        Ok(Self {
            package_id: format!("{}@{}", manifest.name, manifest.version),
            app_id,
            path,
            manifest,
            _lock: lock,
        })
    }
}

/// The venv of this load.
#[derive(Debug)]
pub struct VenvState {
    /// `{app_id}_{key}`.
    pub name: String,
    /// Its directory.
    pub path: PathBuf,
    /// The key its marker must hold.
    pub key: String,
    /// A finished venv with this key existed: nothing to install.
    pub reused: bool,
    requirements_file: Option<PathBuf>,
    constraints_file: Option<PathBuf>,
    /// How the agent itself installs.
    pub self_install: SelfInstall,
}

/// What happened, step by step.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Requirements step result (packages installed), if it ran.
    pub requirements: Option<Result<u32, ()>>,
    /// Self-install step result, if it ran.
    pub self_install: Option<bool>,
    /// Wall-clock per step.
    pub timings: Timings,
}

/// Milliseconds per step.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    /// Extraction and validation in the sandbox (until publish).
    pub extract_ms: u64,
    /// Creating (or finding) the venv.
    pub venv_ms: u64,
    /// Installing requirements.
    pub requirements_ms: u64,
    /// Installing the agent.
    pub self_install_ms: u64,
    /// The import check.
    pub verify_ms: u64,
    /// The whole load.
    pub total_ms: u64,
}

/// Host state for the `host-installer` import during one guest run.
#[derive(Debug, Default)]
pub struct InstallSession {
    ctx: Option<LoadContext>,
    staging: Option<Staging>,
    started: Option<Instant>,
    /// Set by `publish`.
    pub published: Option<Published>,
    /// Set by `ensure-venv`.
    pub venv: Option<VenvState>,
    /// Step results.
    pub outcome: Outcome,
    /// Time spent serving imports, excluded from the guest's CPU budget.
    pub in_host: Duration,
    /// A step failed while the root's disk was full, or said ENOSPC: the
    /// failure is the host's, not the package's.
    pub disk_full: std::cell::Cell<bool>,
    /// The requirement line the host's policy refused: the load fails as a
    /// package refusal, whatever the guest reports afterwards.
    pub refused: Option<RefusedRequirement>,
}

impl InstallSession {
    /// A session for `inspect`/`extract`: every installer call is refused.
    pub fn unavailable() -> Self {
        Self::default()
    }

    /// A session for `load`, owning the staging directory it will publish.
    pub fn new(ctx: LoadContext, staging: Staging) -> Self {
        Self {
            ctx: Some(ctx),
            staging: Some(staging),
            started: Some(Instant::now()),
            ..Self::default()
        }
    }

    /// Whether every step the plan called for succeeded, as the host itself
    /// observed (the guest's word is not taken): only then may the venv be
    /// marked finished.
    pub fn all_planned_steps_succeeded(&self) -> bool {
        let Some(venv) = &self.venv else { return false };
        let requirements_ok = venv.requirements_file.is_none() || matches!(self.outcome.requirements, Some(Ok(_)));
        let self_ok = venv.self_install == SelfInstall::None || self.outcome.self_install == Some(true);
        requirements_ok && self_ok
    }

    fn ctx(&self) -> Result<&LoadContext, InstallError> {
        self.ctx
            .as_ref()
            .ok_or_else(|| InstallError::Host("installing is only available during `load`".into()))
    }

    fn step_env(ctx: &LoadContext) -> Vec<(OsString, OsString)> {
        ctx.install
            .pass_env
            .iter()
            .filter_map(|name| std::env::var_os(name).map(|value| (OsString::from(name), value)))
            .collect()
    }

    /// Runs an invocation as a step (confined when the load has a sandbox)
    /// and maps every failure to an [`InstallError`]. Only `venv`, the
    /// package, `cwd` and the installer cache are writable; the network is
    /// there only for the steps that use the index (requirements and
    /// self-install), and only if the configuration allows it.
    fn run(
        &self,
        name: &'static str,
        invocation: Invocation,
        cwd: &Path,
        venv: &Path,
    ) -> Result<StepOutput, InstallError> {
        let ctx = self.ctx()?;
        let install = &ctx.install;
        let (timeout, uses_index) = match name {
            "venv" => (install.venv_timeout, false),
            "requirements" => (install.requirements_timeout, true),
            "self-install" => (install.self_install_timeout, true),
            _ => (install.import_timeout, false),
        };
        let mut step = Step::new(name, invocation.program, cwd, timeout).args(invocation.args);
        step.env = Self::step_env(ctx);
        step.limits = install.limits;
        if let Some(bwrap) = &ctx.sandbox {
            let mut writable = vec![venv.to_owned(), cwd.to_owned()];
            writable.extend(self.published.as_ref().map(|p| p.path.clone()));
            if let Some(cache) = cache_dir(ctx.installer.as_ref()) {
                fs::create_dir_all(&cache)
                    .map_err(|e| InstallError::Host(format!("cannot create {}: {e}", cache.display())))?;
                step = step.env(ctx.installer.cache().0, &cache);
                writable.push(cache);
            }
            let policy = install.policy;
            let wants_network = install.index.is_remote() || policy.allow_direct_urls || policy.allow_index_options;
            let mounts = Mounts {
                writable,
                readonly: ctx.readonly.clone(),
                network: uses_index && install.network == NetworkChoice::Index && wants_network,
            };
            step = bwrap.confine(step, &mounts);
        }
        let result = process::run(&step);
        let failed_output = match &result {
            Ok(output) if !output.status.success() => Some((output.stdout.as_str(), output.stderr.as_str())),
            Err(StepError::TimedOut { stdout, stderr, .. }) => Some((stdout.as_str(), stderr.as_str())),
            _ => None,
        };
        if let Some((stdout, stderr)) = failed_output
            && (disk_nearly_full(&ctx.root) || says_disk_full(stdout) || says_disk_full(stderr))
        {
            self.disk_full.set(true);
        }
        match result {
            Ok(output) if output.status.success() => Ok(output),
            Ok(output) => Err(InstallError::Failed(StepFailure {
                step: name.into(),
                exit_code: output.code(),
                stderr: tail(&output.stderr),
                stdout: tail(&output.stdout),
            })),
            Err(StepError::TimedOut { timeout, .. }) => Err(InstallError::TimedOut((name.into(), timeout.as_secs()))),
            Err(other) => Err(InstallError::Host(other.to_string())),
        }
    }

    fn publish_inner(&mut self, manifest: GuestManifest, executables: Vec<String>) -> Result<String, InstallError> {
        let ctx = self.ctx()?;
        let (root, app_id) = (ctx.root.clone(), ctx.app_id.clone());
        let staging = self
            .staging
            .take()
            .ok_or_else(|| InstallError::Host("the package was already published".into()))?;
        let published = Published::publish(&root, app_id.as_deref(), staging, manifest, &executables)
            .map_err(|e| InstallError::Host(e.to_string()))?;
        let package_id = published.package_id.clone();
        tracing::info!(path = %published.path.display(), package_id = %package_id, "Extracting package to");
        if let Some(started) = self.started {
            self.outcome.timings.extract_ms = started.elapsed().as_millis() as u64;
        }
        self.published = Some(published);
        Ok(package_id)
    }

    fn ensure_venv_inner(&mut self, plan: InstallPlan) -> Result<VenvInfo, InstallError> {
        let started = Instant::now();
        let ctx = self.ctx()?;
        let published = self
            .published
            .as_ref()
            .ok_or_else(|| InstallError::Host("ensure-venv before publish".into()))?;
        let checked =
            checked_lines(&plan.requirements, ctx).and_then(|r| Ok((r, checked_lines(&plan.constraints, ctx)?)));
        let (requirements, constraints) = match checked {
            Ok(lines) => lines,
            Err(refused) => {
                self.refused = Some(refused.clone());
                return Err(InstallError::Refused(refused));
            }
        };
        let build_file = match plan.self_install {
            SelfInstall::None => None,
            SelfInstall::SetupPy => Some("setup.py"),
            SelfInstall::Pyproject => Some("pyproject.toml"),
        };
        let build_files = match build_file {
            None => Vec::new(),
            Some(name) => read_regular(&published.path.join(name))
                .map_err(|e| InstallError::Host(format!("the plan names {name}, but it cannot be read: {e}")))?,
        };
        let index = ctx.install.index.args().join(std::ffi::OsStr::new(" "));
        let key = venv::key(&VenvInputs {
            python: &ctx.python.identity,
            installer: ctx.installer.name(),
            index: &index.to_string_lossy(),
            requirements: &requirements,
            constraints: &constraints,
            package: &published.path,
            build_files: &build_files,
        });
        let path = venv::path(&ctx.root, &published.app_id, &key);
        let name = format!("{}_{key}", published.app_id);
        let reused = venv::is_finished(&path, &key);
        if reused {
            tracing::info!(venv = %name, "Reusing venv");
        } else {
            if fs::symlink_metadata(&path).is_ok() {
                tracing::warn!(venv = %name, "Removing a venv left unfinished by an interrupted load");
                fs::remove_dir_all(&path)
                    .map_err(|e| InstallError::Host(format!("cannot remove {}: {e}", path.display())))?;
            }
            let venvs = ctx.root.join("venvs");
            fs::create_dir_all(&venvs)
                .map_err(|e| InstallError::Host(format!("cannot create {}: {e}", venvs.display())))?;
            // Made first so a confined step can have exactly this directory bound.
            fs::create_dir(&path).map_err(|e| InstallError::Host(format!("cannot create {}: {e}", path.display())))?;
            tracing::info!(
                path = %path.display(),
                installer = ctx.installer.name(),
                sandbox = confine::label(ctx.sandbox.as_ref()),
                "Creating venv"
            );
            let invocation = ctx.installer.create_venv(&ctx.python.executable, &path);
            if let Err(error) = self.run("venv", invocation, &path, &path) {
                // Not yet this load's venv (nothing will discard it): remove it here.
                let _ = fs::remove_dir_all(&path);
                return Err(error);
            }
        }
        // A reused venv already holds these files, written when it was built
        // from the same lines (they are part of its key).
        let write = |lines: &[String], file: &str| -> Result<Option<PathBuf>, InstallError> {
            if lines.is_empty() {
                return Ok(None);
            }
            let target = path.join(file);
            if !reused {
                let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
                fs::write(&target, text)
                    .map_err(|e| InstallError::Host(format!("cannot write {}: {e}", target.display())))?;
            }
            Ok(Some(target))
        };
        let requirements_file = write(&requirements, ".par-requirements.txt")?;
        let constraints_file = write(&constraints, ".par-constraints.txt")?;
        self.outcome.timings.venv_ms = started.elapsed().as_millis() as u64;
        self.venv = Some(VenvState {
            name: name.clone(),
            path,
            key,
            reused,
            requirements_file,
            constraints_file,
            self_install: plan.self_install,
        });
        Ok(VenvInfo { name, reused })
    }

    fn install_requirements_inner(&mut self) -> Result<StepReport, InstallError> {
        let started = Instant::now();
        let (venv, published) = self.venv_and_package()?;
        let Some(file) = venv.requirements_file.clone() else {
            return Err(InstallError::Host("the plan has no requirements to install".into()));
        };
        let (name, venv_path, constraints, package) = (
            venv.name.clone(),
            venv.path.clone(),
            venv.constraints_file.clone(),
            published.path.clone(),
        );
        if venv.reused {
            tracing::info!(venv = %name, "Dependencies already installed (venv reused)");
            self.outcome.requirements = Some(Ok(0));
            return Ok(StepReport {
                packages_count: 0,
                elapsed_ms: 0,
            });
        }
        tracing::info!(venv = %name, "Installing dependencies from requirements.txt");
        let ctx = self.ctx()?;
        let target = InstallTarget::Requirements {
            file: &file,
            constraints: constraints.as_deref(),
        };
        let invocation = ctx.installer.install(&venv_path, target, &ctx.install.index.args());
        let result = self.run("requirements", invocation, &package, &venv_path);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        self.outcome.timings.requirements_ms = elapsed_ms;
        match result {
            Ok(output) => {
                let packages_count = self.ctx()?.installer.packages_installed(&output);
                tracing::info!(packages_count, "External dependencies installed successfully");
                self.outcome.requirements = Some(Ok(packages_count));
                Ok(StepReport {
                    packages_count,
                    elapsed_ms,
                })
            }
            Err(error) => {
                log_step_error(&error, "Dependency installation", &package);
                self.outcome.requirements = Some(Err(()));
                Err(error)
            }
        }
    }

    fn install_self_inner(&mut self) -> Result<StepReport, InstallError> {
        let started = Instant::now();
        let (venv, published) = self.venv_and_package()?;
        if venv.self_install == SelfInstall::None {
            return Err(InstallError::Host(
                "the plan has no setup.py or pyproject.toml to install".into(),
            ));
        }
        let (name, venv_path, package, reused) = (
            venv.name.clone(),
            venv.path.clone(),
            published.path.clone(),
            venv.reused,
        );
        tracing::info!(
            setup_py_exists = package.join("setup.py").is_file(),
            pyproject_exists = package.join("pyproject.toml").is_file(),
            package_path = %package.display(),
            "Checking for agent package metadata"
        );
        if reused {
            tracing::info!(venv = %name, "Agent package already installed (venv reused)");
            self.outcome.self_install = Some(true);
            return Ok(StepReport {
                packages_count: 0,
                elapsed_ms: 0,
            });
        }
        tracing::info!(package_path = %package.display(), venv = %name, "Installing agent package in editable mode");
        let ctx = self.ctx()?;
        let invocation =
            ctx.installer
                .install(&venv_path, InstallTarget::Editable(&package), &ctx.install.index.args());
        let result = self.run("self-install", invocation, &package, &venv_path);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        self.outcome.timings.self_install_ms = elapsed_ms;
        match result {
            Ok(output) => {
                tracing::info!("Agent package installed successfully");
                self.outcome.self_install = Some(true);
                let packages_count = self.ctx()?.installer.packages_installed(&output);
                Ok(StepReport {
                    packages_count,
                    elapsed_ms,
                })
            }
            Err(error) => {
                log_step_error(&error, "Agent package installation", &package);
                self.outcome.self_install = Some(false);
                Err(error)
            }
        }
    }

    fn verify_import_inner(&mut self, entrypoint: Entrypoint) -> Result<(), InstallError> {
        let started = Instant::now();
        if !is_entrypoint(&entrypoint.module, entrypoint.attr.as_deref()) {
            return Err(InstallError::Host(
                "the entrypoint is not a dotted Python identifier".into(),
            ));
        }
        let (venv, _) = self.venv_and_package()?;
        let python = venv_python(&venv.path);
        let scratch =
            tempfile::tempdir().map_err(|e| InstallError::Host(format!("cannot create a scratch dir: {e}")))?;
        let mut args: Vec<OsString> = vec![
            "-I".into(),
            "-c".into(),
            VERIFY_SCRIPT.into(),
            entrypoint.module.clone().into(),
        ];
        if let Some(attr) = &entrypoint.attr {
            args.push(attr.into());
        }
        let venv_path = venv.path.clone();
        let result = self.run(
            "verify-import",
            Invocation { program: python, args },
            scratch.path(),
            &venv_path,
        );
        self.outcome.timings.verify_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => tracing::info!(module = %entrypoint.module, "Agent package verification successful"),
            Err(error) => tracing::warn!(
                module = %entrypoint.module,
                error = %describe(error),
                "Agent package verification failed - imports may not work"
            ),
        }
        result.map(|_| ())
    }

    fn venv_and_package(&self) -> Result<(&VenvState, &Published), InstallError> {
        match (&self.venv, &self.published) {
            (Some(venv), Some(published)) => Ok((venv, published)),
            _ => Err(InstallError::Host("install requested before ensure-venv".into())),
        }
    }

    fn timed<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let started = Instant::now();
        let result = f(self);
        self.in_host += started.elapsed();
        result
    }
}

impl Host for InstallSession {
    fn publish(&mut self, manifest: GuestManifest, executables: Vec<String>) -> Result<String, InstallError> {
        self.timed(|s| s.publish_inner(manifest, executables))
    }

    fn ensure_venv(&mut self, plan: InstallPlan) -> Result<VenvInfo, InstallError> {
        self.timed(|s| s.ensure_venv_inner(plan))
    }

    fn install_requirements(&mut self) -> Result<StepReport, InstallError> {
        self.timed(Self::install_requirements_inner)
    }

    fn install_self(&mut self) -> Result<StepReport, InstallError> {
        self.timed(Self::install_self_inner)
    }

    fn verify_import(&mut self, entrypoint: Entrypoint) -> Result<(), InstallError> {
        self.timed(|s| s.verify_import_inner(entrypoint))
    }
}

/// Checks each line against the policy; the first refusal names its file and line.
fn checked_lines(lines: &[Requirement], ctx: &LoadContext) -> Result<Vec<String>, RefusedRequirement> {
    lines
        .iter()
        .map(|r| {
            let safe_file = r.file.split('/').all(|c| is_safe_component(c, false));
            let verdict = if safe_file {
                check_line(&r.text, ctx.install.policy).map_err(|refusal| refusal.to_string())
            } else {
                Err("the file name is not a plain relative path".into())
            };
            verdict.map(|()| r.text.clone()).map_err(|reason| RefusedRequirement {
                file: r.file.clone(),
                line: r.line,
                text: r.text.chars().take(200).collect(),
                reason,
            })
        })
        .collect()
}

/// Reads a regular file (never through a symlink), at most 1 MiB.
fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    if !fs::symlink_metadata(path)?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    fs::File::open(path)?.take(1024 * 1024).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether installer output carries the operating system's ENOSPC message
/// (Python's `[Errno 28] No space left on device`, Rust's `os error 28`).
fn says_disk_full(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("os error 28")
}

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(ERROR_TAIL);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

fn log_step_error(error: &InstallError, what: &str, package: &Path) {
    match error {
        InstallError::Failed(failure) => tracing::error!(
            stderr = %failure.stderr.trim(),
            stdout = %failure.stdout.trim(),
            package_path = %package.display(),
            "{what} failed"
        ),
        other => tracing::error!(package_path = %package.display(), "{}", describe(other)),
    }
}

/// The spec's wording for each failure: `Dependency installation failed: …`,
/// `Agent package installation timed out after 120s` …
pub fn describe(error: &InstallError) -> String {
    let step_name = |step: &str| match step {
        "requirements" => "Dependency installation",
        "self-install" => "Agent package installation",
        "venv" => "Venv creation",
        "verify-import" => "Agent package verification",
        _ => "Installation step",
    };
    match error {
        InstallError::Failed(failure) => {
            let detail = if failure.stderr.trim().is_empty() {
                &failure.stdout
            } else {
                &failure.stderr
            };
            format!("{} failed: {}", step_name(&failure.step), detail.trim())
        }
        InstallError::TimedOut((step, seconds)) => format!("{} timed out after {seconds}s", step_name(step)),
        InstallError::Refused(r) => format!(
            "requirement refused at {}:{} (`{}`): {}",
            r.file,
            r.line,
            r.text.escape_default(),
            r.reason
        ),
        InstallError::Host(message) => message.clone(),
    }
}
