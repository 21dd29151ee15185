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
use crate::confine::{self, Bubblewrap};
use crate::editable::{self, BuildJob, BuildSystem, EditableBuild, Prepared};
use crate::error::LoadError;
use crate::install_step::{StepKind, StepRunner, StepSpec};
use crate::installer::{InstallTarget, Installer, Invocation, venv_python};
use crate::interpreter::Interpreter;
use crate::loader::{Manifest, check_manifest};
use crate::requirements::check_line;
use crate::sandbox::bindings::host_installer::Host;
use crate::sandbox::bindings::types::{
    BuildSystem as GuestBuildSystem, Entrypoint, InstallError, InstallPlan, Manifest as GuestManifest,
    RefusedRequirement, Requirement, SelfInstall, StepReport, VenvInfo,
};
use crate::sandbox::cache;
use crate::staging::{PackageLock, Staging, normalize_modes};
use crate::validate::{is_entrypoint, is_safe_component};
use crate::venv::{self, VenvInputs};

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
    /// par's own cache (build environments live there); `None` leaves every
    /// editable build to the installer's own `-e`.
    pub cache_dir: Option<PathBuf>,
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
    /// Installing the agent (with uv, mostly waiting for its build to end).
    pub self_install_ms: u64,
    /// Building the agent's editable wheel with par's frontend, which runs
    /// beside the venv creation and the requirements install (0 when the
    /// installer built it).
    #[serde(default)]
    pub build_ms: u64,
    /// The import check.
    pub verify_ms: u64,
    /// The whole load.
    pub total_ms: u64,
}

/// Host state for the `host-installer` import during one guest run.
#[derive(Debug, Default)]
pub struct InstallSession {
    ctx: Option<LoadContext>,
    runner: Option<StepRunner>,
    staging: Option<Staging>,
    /// The agent's editable build, running since `ensure-venv`.
    editable: Option<EditableBuild>,
    started: Option<Instant>,
    /// Set by `publish`.
    pub published: Option<Published>,
    /// Set by `ensure-venv`.
    pub venv: Option<VenvState>,
    /// Step results.
    pub outcome: Outcome,
    /// Time spent serving imports, excluded from the guest's CPU budget.
    pub in_host: Duration,
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
        let runner = StepRunner::new(
            &ctx.root,
            &ctx.install,
            ctx.installer.as_ref(),
            ctx.sandbox.clone(),
            ctx.readonly.clone(),
        );
        Self {
            runner: Some(runner),
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

    /// Whether a step failed while the root's disk was full, or said
    /// ENOSPC: the failure is then the host's, not the package's.
    pub fn saw_disk_full(&self) -> bool {
        self.runner.as_ref().is_some_and(StepRunner::saw_disk_full)
    }

    fn ctx(&self) -> Result<&LoadContext, InstallError> {
        self.ctx
            .as_ref()
            .ok_or_else(|| InstallError::Host("installing is only available during `load`".into()))
    }

    fn runner(&self) -> Result<&StepRunner, InstallError> {
        self.runner
            .as_ref()
            .ok_or_else(|| InstallError::Host("installing is only available during `load`".into()))
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
        // Both files decide what the build makes (`pyproject.toml` may name
        // the backend of a `setup.py` project).
        let mut build_files = Vec::new();
        if plan.self_install != SelfInstall::None {
            for name in ["setup.py", "pyproject.toml"] {
                let path = published.path.join(name);
                if fs::symlink_metadata(&path).is_err() {
                    continue;
                }
                let bytes =
                    read_regular(&path).map_err(|e| InstallError::Host(format!("{name} cannot be read: {e}")))?;
                build_files.extend((bytes.len() as u64).to_le_bytes());
                build_files.extend(bytes);
            }
        }
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
        let mut editable = None;
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
            // The build needs nothing from the venv: it runs while the venv is
            // created and the requirements install.
            editable = self.start_editable_build(&plan, &published.path)?;
            let invocation = ctx.installer.create_venv(&ctx.python.executable, &path);
            if let Err(error) = self.runner()?.run(StepSpec::new(StepKind::Venv, invocation, &path)) {
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
        self.editable = editable;
        Ok(VenvInfo { name, reused })
    }

    /// Starts the agent's editable build when par's own frontend can do it:
    /// a back end that installs prebuilt wheels, a cache for build
    /// environments, and a build system this frontend accepts. `None` leaves
    /// the build to the installer's own `-e` in `install-self`.
    fn start_editable_build(&self, plan: &InstallPlan, package: &Path) -> Result<Option<EditableBuild>, InstallError> {
        let (ctx, runner) = (self.ctx()?, self.runner()?);
        if plan.self_install == SelfInstall::None {
            return Ok(None);
        }
        // Build environments hold code par runs: only in a cache no one else can write.
        let Some(cache_dir) = ctx.cache_dir.as_deref().and_then(|dir| cache::trusted_dir(dir).ok()) else {
            tracing::debug!("No private cache for build environments: leaving the editable build to the installer");
            return Ok(None);
        };
        let system = match &plan.build_system {
            GuestBuildSystem::Legacy => BuildSystem::setuptools_legacy(),
            GuestBuildSystem::Declared(declared) => BuildSystem::declared(
                declared.requires.clone(),
                declared.backend.clone(),
                declared.backend_path.clone(),
            ),
            GuestBuildSystem::Unreadable(why) => {
                tracing::debug!(reason = %why, "Leaving the editable build to the installer");
                return Ok(None);
            }
        };
        if !ctx.installer.installs_prebuilt_editable() || !editable::is_buildable(&system) {
            return Ok(None);
        }
        let job = BuildJob {
            runner: runner.clone(),
            installer: ctx.installer.clone(),
            python: ctx.python.executable.clone(),
            python_identity: ctx.python.identity.clone(),
            cache_dir,
            max_age: ctx.install.build_env_max_age,
            package: package.to_owned(),
            system,
        };
        EditableBuild::start(&ctx.root, job).map(Some)
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
        let result = self
            .runner()?
            .run(StepSpec::new(StepKind::Requirements, invocation, &package).writable(&venv_path));
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
        let result = self.self_install_step(&venv_path, &package);
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

    /// Installs the agent: the wheel the editable build made, or, when there
    /// is no such build, the installer's own `-e` on the package.
    fn self_install_step(&mut self, venv: &Path, package: &Path) -> Result<crate::process::StepOutput, InstallError> {
        let mut build = self.editable.take();
        let prepared = build.as_mut().map(EditableBuild::wait).transpose()?;
        if let Some(Prepared::Wheel { busy, .. }) = &prepared {
            self.outcome.timings.build_ms = busy.as_millis() as u64;
        }
        let (ctx, runner) = (self.ctx()?, self.runner()?);
        let index = ctx.install.index.args();
        let spec = |target| {
            let invocation = ctx.installer.install(venv, target, &index);
            StepSpec::new(StepKind::SelfInstall, invocation, package).writable(venv)
        };
        let (Some(build), Some(Prepared::Wheel { path: wheel, busy })) = (&build, &prepared) else {
            if let Some(Prepared::Installer(reason)) = &prepared {
                tracing::info!(%reason, "Leaving the editable build to the installer");
            }
            return runner.run(spec(InstallTarget::Editable(package)));
        };
        let left = StepKind::SelfInstall.left(&ctx.install, *busy)?;
        let output = runner.run(
            spec(InstallTarget::Wheel(wheel))
                .readonly(build.wheel_dir())
                .timeout(left),
        )?;
        let wheel_name = wheel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Err(error) = editable::record_editable(venv, &wheel_name, package) {
            tracing::warn!(%error, "cannot record the agent as an editable install in its venv");
        }
        Ok(output)
    }

    fn verify_import_inner(&mut self, entrypoint: Entrypoint) -> Result<(), InstallError> {
        let started = Instant::now();
        if !is_entrypoint(&entrypoint.module, entrypoint.attr.as_deref()) {
            return Err(InstallError::Host(
                "the entrypoint is not a dotted Python identifier".into(),
            ));
        }
        let (venv, published) = self.venv_and_package()?;
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
        let (venv_path, package) = (venv.path.clone(), published.path.clone());
        let invocation = Invocation { program: python, args };
        let result = self.runner()?.run(
            StepSpec::new(StepKind::VerifyImport, invocation, scratch.path())
                .writable(&venv_path)
                .writable(&package),
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
