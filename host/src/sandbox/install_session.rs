//! The `host-installer` import: the host side of one `load`.
//!
//! The guest asks, in order, to publish the tree, ensure the venv, install the
//! requirements, install the agent and verify the entrypoint. Each request is
//! checked here before anything runs, against the protocol ([`Protocol`]) and
//! against the host's own policies. The session records what each step did,
//! and that record, never the guest's report, decides the load's result
//! ([`InstallSession::conclude`]).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cap_std::fs::Dir;

use super::bindings::host_installer::Host;
use super::bindings::types::{
    BuildSystem as GuestBuildSystem, Entrypoint, InstallError as WitInstallError, InstallPlan,
    LoadError as GuestLoadError, LoadReport, Manifest as GuestManifest, Requirement, SelfInstall, StepReport, VenvInfo,
};
use super::convert::{check_manifest, to_wit_install_error};
use super::protocol::Protocol;
use crate::exec::confine::{self, Bubblewrap};
use crate::fs::cache_dir::CacheDir;
use crate::fs::lock::{AppLock, PackageLock};
use crate::fs::root::{Area, RootDir, open_dir_nofollow, open_file_nofollow};
use crate::fs::staging::{PublishedTree, Staging, normalize_modes};
use crate::fs::venv::{self, VenvInputs};
use crate::install::editable::{self, BuildJob, BuildSystem, EditableBuild, Prepared};
use crate::install::installer::{InstallTarget, Installer, Invocation, venv_python};
use crate::install::interpreter::Interpreter;
use crate::install::requirements::check_line;
use crate::install::step::{StepKind, StepRunner, StepSpec};
use crate::types::config::InstallConfig;
use crate::types::error::{
    GuestProtocolError, InstallCall, InstallError, InstallFailure, LoadError, RefusedRequirement, SandboxError,
    describe,
};
use crate::types::package::{Manifest, Timings};
use par_rules::limits::{MAX_BACKEND_PATHS, MAX_BUILD_REQUIRES, MAX_REQUIREMENT_LINES, MAX_REQUIREMENTS_FILE_BYTES};
use par_rules::names::{is_entrypoint, is_safe_component};

/// Longest string in a plan: no line of a requirements file the guest reads is longer.
const MAX_PLAN_STRING_BYTES: usize = MAX_REQUIREMENTS_FILE_BYTES as usize;
/// Longest executable path reported (Linux's own `PATH_MAX`).
const MAX_EXECUTABLE_PATH_BYTES: usize = 4096;

/// The import check: the directory to put first on `sys.path` (empty for
/// none), the module and the attribute arrive as argv, never as code.
const VERIFY_SCRIPT: &str = "import importlib, sys\nif sys.argv[1]:\n    sys.path.insert(0, sys.argv[1])\nmodule = importlib.import_module(sys.argv[2])\nif len(sys.argv) > 3:\n    getattr(module, sys.argv[3])\n";

/// What a load may use: fixed before the guest runs.
#[derive(Debug)]
pub struct LoadContext {
    /// The loader root, opened once.
    pub root: Arc<RootDir>,
    /// App id chosen by the caller, if any (else the manifest name).
    pub app_id: Option<String>,
    /// The archive's SHA-256: names the tree this load publishes.
    pub digest: String,
    /// Most entries the archive may list: also the most executables it can report.
    pub max_entries: u32,
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

/// The published package: its tree is in place, but the app's link is
/// switched to it only by [`Published::commit`]; dropped uncommitted, the
/// tree is removed and the previous deployment is untouched.
#[derive(Debug)]
pub struct Published {
    /// `{name}@{version}`.
    pub package_id: String,
    /// The app id it was published under.
    pub app_id: String,
    /// `{root}/packages/{app_id}@{version}`: the app's link, switched on commit.
    pub link: PathBuf,
    /// The link's name, `{app_id}@{version}`.
    link_name: String,
    /// `{root}/trees/{app_id}@{version}.{digest}`: the tree this load's venv imports.
    pub path: PathBuf,
    /// The re-checked manifest.
    pub manifest: Manifest,
    tree: PublishedTree,
    /// Held until the load has recorded what it did: no `gc` or `remove`
    /// sees the app's deployment half made, and no other load replaces this
    /// package meanwhile.
    locks: Held,
}

/// The app's lock (shared) and the package's lock, held by a load from
/// publishing until its record is written.
#[derive(Debug)]
pub struct Held {
    _app: AppLock,
    _package: PackageLock,
}

impl Published {
    /// Re-checks what the guest extracted (manifest, executables, the tree
    /// itself) and renames the staging tree into place under the package lock:
    /// the one path both `extract` and `load` publish by.
    pub fn publish(root: &RootDir, request: PublishRequest<'_>, staging: Staging) -> Result<Self, LoadError> {
        let PublishRequest {
            app_id,
            digest,
            max_entries,
            manifest,
            executables,
        } = request;
        check_size(
            InstallCall::Publish,
            "executables",
            executables.len(),
            max_entries as usize,
        )?;
        for path in executables {
            check_size(
                InstallCall::Publish,
                "an executable path",
                path.len(),
                MAX_EXECUTABLE_PATH_BYTES,
            )?;
        }
        normalize_modes(staging.tree(), executables)?;
        let app_id = app_id.unwrap_or(&manifest.name).to_owned();
        let dir_name = format!("{app_id}@{}", manifest.version);
        let tree_name = format!("{dir_name}.{}", &digest[..digest.len().min(16)]);
        let link = root.join(Area::Packages, &dir_name);
        let path = root.join(Area::Trees, &tree_name);
        let locks = Held {
            _app: AppLock::shared(root, &app_id)?,
            _package: PackageLock::acquire(root, &dir_name)?,
        };
        let tree = staging.publish(root, &tree_name)?;
        Ok(Self {
            package_id: format!("{}@{}", manifest.name, manifest.version),
            app_id,
            link,
            link_name: dir_name,
            path,
            manifest,
            tree,
            locks,
        })
    }

    /// A handle on the published tree.
    pub fn open_tree(&self) -> Result<Dir, LoadError> {
        self.tree.open().map_err(LoadError::io("cannot open", &self.path))
    }

    /// Makes this the app's current deployment (see [`PublishedTree::commit`]);
    /// the locks stay held until the caller drops them.
    pub fn commit(self, root: &RootDir) -> Result<Held, LoadError> {
        self.tree.commit(root, &self.link_name, &self.path)?;
        Ok(self.locks)
    }
}

/// What the guest asks to publish, and what the host checks it against.
#[derive(Debug)]
pub struct PublishRequest<'a> {
    /// App id chosen by the caller, if any (else the manifest name).
    pub app_id: Option<&'a str>,
    /// The archive's SHA-256.
    pub digest: &'a str,
    /// Most entries the archive may list.
    pub max_entries: u32,
    /// The manifest, checked by the host.
    pub manifest: Manifest,
    /// Files the guest says the archive marks executable.
    pub executables: &'a [String],
}

/// What the host observed a load do: the only source of the result's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The agent itself was installed, by a step the host ran and saw succeed.
    pub installed_as_package: bool,
    /// The host's import check's outcome; none when the manifest names no entrypoint.
    pub verified: Option<bool>,
    /// Packages the host's requirements step installed.
    pub requirements_count: u32,
}

/// Refuses a list or string larger than anything a well-behaved guest sends.
fn check_size(call: InstallCall, what: &'static str, size: usize, max: usize) -> Result<(), GuestProtocolError> {
    if size > max {
        return Err(GuestProtocolError::TooLarge { call, what, size, max });
    }
    Ok(())
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
    /// The key of the build environment par's own frontend built the agent in.
    pub build_env: Option<String>,
}

/// What happened, step by step, as the host saw it.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Every failed install step (venv, requirements, agent), in order.
    pub failures: Vec<InstallError>,
    /// Packages the requirements step installed.
    pub requirements_count: u32,
    /// Why the import check failed, if it did.
    pub verify_failure: Option<InstallError>,
    /// Wall-clock per step.
    pub timings: Timings,
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
    /// CPU time the host spent serving installer calls on the guest's
    /// thread: excluded from the guest's CPU budget.
    pub host_cpu: Duration,
    /// The calls made, checked against the protocol.
    protocol: Protocol,
    /// A failure the host itself decided (a refused requirement line, a
    /// refused publish): the load ends with it, whatever the guest reports.
    verdict: Option<LoadError>,
}

impl InstallSession {
    /// A session for `inspect`/`extract`: every installer call is refused.
    pub fn unavailable() -> Self {
        Self {
            protocol: Protocol::unavailable(),
            ..Self::default()
        }
    }

    /// A session for `load`, owning the staging directory it will publish.
    pub fn new(ctx: LoadContext, staging: Staging) -> Self {
        let runner = StepRunner::new(
            ctx.root.path(),
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
            protocol: Protocol::for_load(),
            ..Self::default()
        }
    }

    /// Decides the load's result from the host's own record. The guest's
    /// report is read only for whether it claims success or failure, and a
    /// claim the record contradicts is a protocol violation; a refusal the
    /// guest made before asking the host for anything is its rules at work.
    pub fn conclude(
        &mut self,
        guest: Result<Result<LoadReport, GuestLoadError>, SandboxError>,
    ) -> Result<Facts, LoadError> {
        if let Some(violation) = self.protocol.violation() {
            return Err(violation.clone().into());
        }
        if let Some(verdict) = self.verdict.take() {
            return Err(verdict);
        }
        let strict = self.ctx.as_ref().is_some_and(|ctx| ctx.install.strict);
        let failures = &self.outcome.failures;
        let strict_failure = self.outcome.verify_failure.as_ref().filter(|_| strict);
        // A report of success carries claims; none of them is read.
        let claimed_failure = guest?.err();
        if let Some(error) = claimed_failure {
            let install_claim = matches!(
                error,
                GuestLoadError::Install(_) | GuestLoadError::InstallFailed(_) | GuestLoadError::VerificationFailed(_)
            );
            if !self.protocol.any_call() && !install_claim {
                return Err(error.into());
            }
            if !failures.is_empty() {
                return Err(LoadError::Install(InstallFailure(failures.clone())));
            }
            if let Some(failure) = strict_failure {
                return Err(LoadError::Verification(InstallFailure(vec![failure.clone()])));
            }
            return Err(GuestProtocolError::FalseFailure(describe_guest_claim(&error)).into());
        }
        if let Some(failed) = self
            .protocol
            .first_failure()
            .filter(|c| *c != InstallCall::VerifyImport)
        {
            return Err(GuestProtocolError::FalseSuccess(format!("`{failed}` failed")).into());
        }
        if strict_failure.is_some() {
            return Err(GuestProtocolError::FalseSuccess("`verify-import` failed under --strict".into()).into());
        }
        if let Some(missing) = self.protocol.first_missing() {
            return Err(GuestProtocolError::FalseSuccess(format!("`{missing}` was never called")).into());
        }
        let has_entrypoint = self.published.as_ref().is_some_and(|p| p.manifest.entrypoint.is_some());
        Ok(Facts {
            installed_as_package: self.protocol.succeeded(InstallCall::InstallSelf),
            verified: has_entrypoint.then(|| self.protocol.succeeded(InstallCall::VerifyImport)),
            requirements_count: self.outcome.requirements_count,
        })
    }

    /// The protocol violation of an `inspect` or `extract` run, if the guest
    /// called the installer there.
    pub fn violation(&self) -> Option<GuestProtocolError> {
        self.protocol.violation().cloned()
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
        let staging = self
            .staging
            .take()
            .ok_or_else(|| InstallError::Host("the package was already published".into()))?;
        let manifest = match check_manifest(manifest) {
            Ok(manifest) => manifest,
            Err(refusal) => {
                let error = LoadError::from(refusal);
                let message = error.to_string();
                self.verdict = Some(error);
                return Err(InstallError::Host(message));
            }
        };
        let ctx = self.ctx()?;
        let root = Arc::clone(&ctx.root);
        let request = PublishRequest {
            app_id: ctx.app_id.as_deref(),
            digest: &ctx.digest,
            max_entries: ctx.max_entries,
            manifest,
            executables: &executables,
        };
        let published = match Published::publish(&root, request, staging) {
            Ok(published) => published,
            Err(error) => {
                let message = error.to_string();
                if let LoadError::GuestProtocol(violation) = error {
                    self.protocol.violate(violation);
                } else {
                    self.verdict = Some(error);
                }
                return Err(InstallError::Host(message));
            }
        };
        if published.manifest.entrypoint.is_some() {
            self.protocol.plan(InstallCall::VerifyImport);
        }
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
        let tree = published.open_tree().map_err(|e| InstallError::Host(e.to_string()))?;
        if let Err(violation) = check_plan(&plan, &tree) {
            let message = violation.to_string();
            self.protocol.violate(violation);
            return Err(InstallError::Host(message));
        }
        let checked =
            checked_lines(&plan.requirements, ctx).and_then(|r| Ok((r, checked_lines(&plan.constraints, ctx)?)));
        let (requirements, constraints) = match checked {
            Ok(lines) => lines,
            Err(refused) => {
                self.verdict = Some(crate::types::error::PackageError::RequirementsInvalid(refused.clone()).into());
                return Err(InstallError::Refused(refused));
            }
        };
        // Both files decide what the build makes (`pyproject.toml` may name
        // the backend of a `setup.py` project).
        let mut build_files = Vec::new();
        if plan.self_install != SelfInstall::None {
            for name in ["setup.py", "pyproject.toml"] {
                if tree.symlink_metadata(name).is_err() {
                    continue;
                }
                let bytes =
                    read_regular(&tree, name).map_err(|e| InstallError::Host(format!("{name} cannot be read: {e}")))?;
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
        let name = format!("{}_{key}", published.app_id);
        let path = ctx.root.join(Area::Venvs, &name);
        let venvs = ctx.root.dir(Area::Venvs);
        let host = |action: &'static str| {
            let path = path.clone();
            move |e: std::io::Error| InstallError::Host(format!("cannot {action} {}: {e}", path.display()))
        };
        let marker = venv::sealed_marker(ctx.root.seal(), &name, &key);
        let reused = open_dir_nofollow(venvs, &name).is_ok_and(|venv| venv::is_finished(&venv, &marker));
        let mut editable = None;
        if reused {
            tracing::info!(venv = %name, "Reusing venv");
        } else {
            if venvs.symlink_metadata(&name).is_ok() {
                tracing::warn!(venv = %name, "Removing a venv left unfinished by an interrupted load");
                venvs.remove_dir_all(&name).map_err(host("remove"))?;
            }
            // Made first so a confined step can have exactly this directory bound.
            venvs.create_dir(&name).map_err(host("create"))?;
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
                let _ = venvs.remove_dir_all(&name);
                return Err(error);
            }
        }
        let venv_dir = open_dir_nofollow(venvs, &name).map_err(host("open"))?;
        // A reused venv already holds these files, written when it was built
        // from the same lines (they are part of its key).
        let write = |lines: &[String], file: &str| -> Result<Option<PathBuf>, InstallError> {
            if lines.is_empty() {
                return Ok(None);
            }
            let target = path.join(file);
            if !reused {
                let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
                venv_dir
                    .write(file, text)
                    .map_err(|e| InstallError::Host(format!("cannot write {}: {e}", target.display())))?;
            }
            Ok(Some(target))
        };
        let requirements_file = write(&requirements, ".par-requirements.txt")?;
        let constraints_file = write(&constraints, ".par-constraints.txt")?;
        self.outcome.timings.venv_ms = started.elapsed().as_millis() as u64;
        if requirements_file.is_some() {
            self.protocol.plan(InstallCall::InstallRequirements);
        }
        if plan.self_install != SelfInstall::None {
            self.protocol.plan(InstallCall::InstallSelf);
        }
        self.venv = Some(VenvState {
            name: name.clone(),
            path,
            key,
            reused,
            requirements_file,
            constraints_file,
            self_install: plan.self_install,
            build_env: editable.as_ref().map(|build| build.build_env().to_owned()),
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
        let Some(cache_dir) = ctx.cache_dir.as_deref().and_then(|dir| CacheDir::open(dir).ok()) else {
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
                self.outcome.requirements_count = packages_count;
                Ok(StepReport {
                    packages_count,
                    elapsed_ms,
                })
            }
            Err(error) => {
                log_step_error(&error, "Dependency installation", &package);
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
                let packages_count = self.ctx()?.installer.packages_installed(&output);
                Ok(StepReport {
                    packages_count,
                    elapsed_ms,
                })
            }
            Err(error) => {
                log_step_error(&error, "Agent package installation", &package);
                Err(error)
            }
        }
    }

    /// Installs the agent: the wheel the editable build made, or, when there
    /// is no such build, the installer's own `-e` on the package.
    fn self_install_step(
        &mut self,
        venv: &Path,
        package: &Path,
    ) -> Result<crate::exec::process::StepOutput, InstallError> {
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
        let (venv, published) = self.venv_and_package()?;
        let named = published.manifest.entrypoint.as_ref();
        let same = named.is_some_and(|named| named.module == entrypoint.module && named.attr == entrypoint.attr);
        // The manifest's entrypoint passed `is_entrypoint` at publish.
        if !same || !is_entrypoint(&entrypoint.module, entrypoint.attr.as_deref()) {
            let asked = format!("{}:{}", entrypoint.module, entrypoint.attr.as_deref().unwrap_or(""));
            let violation = GuestProtocolError::WrongEntrypoint {
                asked: asked.chars().take(200).collect::<String>().escape_default().to_string(),
            };
            let message = violation.to_string();
            self.protocol.violate(violation);
            return Err(InstallError::Host(message));
        }
        let python = venv_python(&venv.path);
        let scratch =
            tempfile::tempdir().map_err(|e| InstallError::Host(format!("cannot create a scratch dir: {e}")))?;
        // An old package is not installed: the runtime puts its directory on
        // `sys.path`, so the check does too, and answers the runtime's question.
        let search_first: OsString = match venv.self_install {
            SelfInstall::None => published.path.clone().into(),
            SelfInstall::SetupPy | SelfInstall::Pyproject => OsString::new(),
        };
        let mut args: Vec<OsString> = vec![
            "-I".into(),
            "-c".into(),
            VERIFY_SCRIPT.into(),
            search_first,
            entrypoint.module.clone().into(),
        ];
        if let Some(attr) = &entrypoint.attr {
            args.push(attr.into());
        }
        let (venv_path, package) = (venv.path.clone(), published.path.clone());
        let invocation = Invocation { program: python, args };
        let result = self.runner()?.run(
            // The package's code runs here (its import): it reads the venv and
            // the tree, as its agent will, and writes only the scratch directory.
            StepSpec::new(StepKind::VerifyImport, invocation, scratch.path())
                .readonly(&venv_path)
                .readonly(&package),
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

    /// Serves one import call: the protocol allows it or nothing runs; how
    /// it ended is recorded; the CPU time it took is the host's, not the guest's.
    fn call<T>(
        &mut self,
        call: InstallCall,
        f: impl FnOnce(&mut Self) -> Result<T, InstallError>,
    ) -> Result<T, InstallError> {
        let cpu_before = crate::exec::process::thread_cpu_time();
        let result = match self.protocol.begin(call) {
            Err(violation) => Err(InstallError::Host(violation.to_string())),
            Ok(()) => {
                let result = f(self);
                self.protocol.end(call, result.is_ok());
                if let Err(error) = &result {
                    self.record_failure(call, error);
                }
                result
            }
        };
        self.host_cpu += crate::exec::process::thread_cpu_time().saturating_sub(cpu_before);
        result
    }

    /// Keeps a failed step's error for the result; a refusal or violation,
    /// which decides the load by itself, is not a step failure.
    fn record_failure(&mut self, call: InstallCall, error: &InstallError) {
        if self.verdict.is_some() || self.protocol.violation().is_some() {
            return;
        }
        match call {
            InstallCall::VerifyImport => self.outcome.verify_failure = Some(error.clone()),
            InstallCall::EnsureVenv | InstallCall::InstallRequirements | InstallCall::InstallSelf => {
                self.outcome.failures.push(error.clone());
            }
            InstallCall::Publish => self.verdict = Some(LoadError::Internal(describe(error))),
        }
    }
}

impl Host for InstallSession {
    fn publish(&mut self, manifest: GuestManifest, executables: Vec<String>) -> Result<String, WitInstallError> {
        self.call(InstallCall::Publish, |s| s.publish_inner(manifest, executables))
            .map_err(to_wit_install_error)
    }

    fn ensure_venv(&mut self, plan: InstallPlan) -> Result<VenvInfo, WitInstallError> {
        self.call(InstallCall::EnsureVenv, |s| s.ensure_venv_inner(plan))
            .map_err(to_wit_install_error)
    }

    fn install_requirements(&mut self) -> Result<StepReport, WitInstallError> {
        self.call(InstallCall::InstallRequirements, Self::install_requirements_inner)
            .map_err(to_wit_install_error)
    }

    fn install_self(&mut self) -> Result<StepReport, WitInstallError> {
        self.call(InstallCall::InstallSelf, Self::install_self_inner)
            .map_err(to_wit_install_error)
    }

    fn verify_import(&mut self, entrypoint: Entrypoint) -> Result<(), WitInstallError> {
        self.call(InstallCall::VerifyImport, |s| s.verify_import_inner(entrypoint))
            .map_err(to_wit_install_error)
    }
}

/// What the guest claimed, for the message of a claim the host never saw.
fn describe_guest_claim(error: &GuestLoadError) -> String {
    let kind = LoadError::from(error.clone()).kind();
    format!("{kind} after the host's steps had succeeded")
}

/// Refuses a plan larger than the guest's own limits allow, or one whose
/// self-install contradicts the published tree.
fn check_plan(plan: &InstallPlan, tree: &Dir) -> Result<(), GuestProtocolError> {
    let call = InstallCall::EnsureVenv;
    let lines = plan.requirements.len() + plan.constraints.len();
    check_size(call, "requirement lines", lines, MAX_REQUIREMENT_LINES)?;
    for line in plan.requirements.iter().chain(&plan.constraints) {
        check_size(
            call,
            "a requirement line's bytes",
            line.text.len(),
            MAX_PLAN_STRING_BYTES,
        )?;
        check_size(
            call,
            "a requirement file name's bytes",
            line.file.len(),
            MAX_EXECUTABLE_PATH_BYTES,
        )?;
    }
    match &plan.build_system {
        GuestBuildSystem::Declared(declared) => {
            check_size(call, "build requirements", declared.requires.len(), MAX_BUILD_REQUIRES)?;
            check_size(call, "backend paths", declared.backend_path.len(), MAX_BACKEND_PATHS)?;
            let strings = declared
                .requires
                .iter()
                .chain(&declared.backend_path)
                .chain(&declared.backend);
            for string in strings {
                check_size(
                    call,
                    "a build-system string's bytes",
                    string.len(),
                    MAX_PLAN_STRING_BYTES,
                )?;
            }
        }
        GuestBuildSystem::Unreadable(why) => {
            check_size(call, "a build-system message's bytes", why.len(), MAX_PLAN_STRING_BYTES)?;
        }
        GuestBuildSystem::Legacy => {}
    }
    let is_file = |name: &str| tree.symlink_metadata(name).is_ok_and(|m| m.is_file());
    let consistent = match plan.self_install {
        SelfInstall::SetupPy => is_file("setup.py"),
        SelfInstall::Pyproject => is_file("pyproject.toml") && !is_file("setup.py"),
        SelfInstall::None => !is_file("setup.py"),
    };
    if !consistent {
        return Err(GuestProtocolError::PlanMismatch(format!(
            "self-install `{:?}` with setup.py {} and pyproject.toml {}",
            plan.self_install,
            if is_file("setup.py") { "present" } else { "absent" },
            if is_file("pyproject.toml") { "present" } else { "absent" },
        )));
    }
    Ok(())
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

/// Reads the regular file `name` of `dir` (never through a symlink), at most 1 MiB.
fn read_regular(dir: &Dir, name: &str) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_file_nofollow(dir, name)?
        .take(1024 * 1024)
        .read_to_end(&mut bytes)?;
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
