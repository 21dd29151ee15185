//! `ensure-venv`: the venv a load installs into, keyed by everything that
//! decides its contents, made or reused; and the agent's editable build,
//! started beside it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cap_std::fs::Dir;

use super::InstallSession;
use super::plan::{build_system, check_plan, checked_lines};
use super::steps::{self, Target};
use crate::exec::confine;
use crate::fs::cache_dir::CacheDir;
use crate::fs::dist_store::DistStore;
use crate::fs::root::{Area, open_dir_nofollow, open_file_nofollow};
use crate::fs::venv::{self, VenvInputs};
use crate::install::editable::{self, BuildJob, EditableBuild, InstallAlone, Relocation};
use crate::install::installed_template::{self, InstalledTemplate, LinkedVenv};
use crate::install::plain_path::is_plain_path;
use crate::install::pylock::GivenLock;
use crate::install::step::{StepKind, StepSpec};
use crate::install::venv_template::{self, VenvTemplate};
use crate::sandbox::bindings::types::{InstallPlan, Requirement, SelfInstall, VenvInfo};
use crate::types::error::{InstallCall, InstallError, LockRefused, PackageError, RefusedRequirement};
use uv_pep508::MarkerEnvironment;

/// The venv of this load.
#[derive(Debug)]
pub(crate) struct VenvState {
    /// `{app_id}_{key}`.
    pub name: String,
    /// Its directory.
    pub path: PathBuf,
    /// The key its marker must hold.
    pub key: String,
    /// A finished venv with this key existed: nothing to install.
    pub reused: bool,
    pub(super) requirements_file: Option<PathBuf>,
    pub(super) constraints_file: Option<PathBuf>,
    /// How the agent itself installs.
    pub self_install: SelfInstall,
    /// The key of the build environment par's own frontend built the agent in.
    pub build_env: Option<String>,
    /// The requirements, when they were linked from this node's install of
    /// the lock rather than installed.
    pub(super) linked: Option<LinkedVenv>,
}

/// How a venv was made.
#[derive(Debug, PartialEq, Eq)]
enum Made {
    /// Not yet: the installer makes it.
    Empty,
    /// A copy of the venv template.
    Copied,
    /// Linked from an install of the lock.
    Linked(LinkedVenv),
}

impl InstallSession {
    pub(super) fn ensure_venv_inner(&mut self, plan: InstallPlan) -> Result<VenvInfo, InstallError> {
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
        let policy = ctx.install.policy;
        let checked =
            checked_lines(&plan.requirements, policy).and_then(|r| Ok((r, checked_lines(&plan.constraints, policy)?)));
        let (requirements, constraints) = match checked {
            Ok(lines) => lines,
            Err(refused) => {
                self.verdict = Some(PackageError::RequirementsInvalid(refused.clone()).into());
                return Err(InstallError::Refused(refused));
            }
        };
        if let Some(given) = &ctx.lock
            && let Some(refused) = lock_shortfall(given, &plan.requirements, &ctx.python.markers)
        {
            self.verdict = Some(
                LockRefused::Unsatisfied {
                    lock: given.path.clone(),
                    requirement: refused.clone(),
                }
                .into(),
            );
            return Err(InstallError::Refused(refused));
        }
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
        // A bundle's files are wherever it was unpacked; what they are is
        // the lock's digest.
        let index = match ctx.lock.as_ref().is_some_and(|given| given.bundled.is_some()) {
            true => "bundle".into(),
            false => ctx.install.index.args().join(std::ffi::OsStr::new(" ")),
        };
        let key = venv::key(&VenvInputs {
            python: &ctx.python.identity,
            installer: ctx.installer.name(),
            index: &index.to_string_lossy(),
            requirements: &requirements,
            constraints: &constraints,
            package: &published.path,
            build_files: &build_files,
            lock: &ctx.lock.as_ref().map(GivenLock::digest).unwrap_or_default(),
        });
        let name = format!("{}_{key}", published.app_id);
        let path = ctx.root.join(Area::Venvs, &name);
        let venvs = ctx.root.dir(Area::Venvs);
        let host = |action: &'static str| {
            let path = path.clone();
            move |e: std::io::Error| InstallError::Host(format!("cannot {action} {}: {e}", path.display()))
        };
        let marker = venv::sealed_marker(ctx.root.seal(), &name, &key);
        let reused = open_dir_nofollow(venvs, &name).is_ok_and(|venv| venv::is_ready(&venv, &marker));
        let mut editable = None;
        let mut linked = None;
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
            editable = self.start_editable_build(&plan, &published.path, &path)?;
            let made = self.copy_venv_template(venvs, &name, &path).map_err(host("empty"))?;
            if made == Made::Empty {
                let invocation = ctx.installer.create_venv(&ctx.python.executable, &path);
                if let Err(error) = self.runner()?.run(StepSpec::new(StepKind::Venv, invocation, &path)) {
                    // Not yet this load's venv (nothing will discard it): remove it here.
                    let _ = venvs.remove_dir_all(&name);
                    return Err(error);
                }
            }
            if let Made::Linked(made) = made {
                linked = Some(made);
            }
            if let Some(build) = editable.as_mut() {
                build.venv_made(linked.as_ref().map(|l| l.protected.clone()).unwrap_or_default());
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
            build_env: editable.as_ref().and_then(|build| build.build_env().map(str::to_owned)),
            linked,
        });
        self.editable = editable;
        Ok(VenvInfo { name, reused })
    }

    /// Makes the venv `name` (an empty directory of `venvs`, at `path`) a
    /// copy of the installer's template for this interpreter, made first if
    /// there is none ([`VenvTemplate`]), with a bundle's requirements linked
    /// in where it can ([`InstalledTemplate`]). Where it cannot copy (no
    /// private cache, an installer whose venvs do not copy, a path that is
    /// not plain, a failure on the way) the directory is left empty, and the
    /// installer makes the venv as before.
    fn copy_venv_template(&self, venvs: &Dir, name: &str, path: &Path) -> std::io::Result<Made> {
        let (Ok(ctx), Ok(runner)) = (self.ctx(), self.runner()) else {
            return Ok(Made::Empty);
        };
        let cache = ctx.cache_dir.as_deref().and_then(|dir| CacheDir::open(dir).ok());
        let (Some(cache), Some(program)) = (cache, ctx.installer.program()) else {
            return Ok(Made::Empty);
        };
        if !ctx.installer.venvs_copy() || !is_plain_path(path) {
            return Ok(Made::Empty);
        }
        let key = venv_template::key(&program, &ctx.python.identity);
        let make = |at: &Path| {
            let invocation = ctx.installer.create_venv(&ctx.python.executable, at);
            runner.run(StepSpec::new(StepKind::Venv, invocation, at)).map(drop)
        };
        let template = match VenvTemplate::ensure(&cache, &key, make) {
            Ok(template) => template,
            Err(error) => {
                tracing::warn!(%error, venv = %path.display(), "Making the venv with the installer instead of its template");
                return Ok(Made::Empty);
            }
        };
        if let Some(linked) = self.link_requirements(&cache, &key, &template, venvs, name, path)? {
            return Ok(Made::Linked(linked));
        }
        let target = open_dir_nofollow(venvs, name)?;
        match template.copy_to(&target, path) {
            Ok(()) => Ok(Made::Copied),
            Err(error) => {
                tracing::warn!(%error, venv = %path.display(), "Making the venv with the installer instead of its template");
                empty(venvs, name)?;
                Ok(Made::Empty)
            }
        }
    }

    /// Makes the venv `name` (empty, at `path`) the lock's install on this
    /// node linked ([`InstalledTemplate`]), made first from `template` if
    /// there is none; `None` (the directory left empty) for a load without
    /// a bundle's lock or without the installer sandbox, which alone keeps
    /// linked files from being written, or where linking failed.
    fn link_requirements(
        &self,
        cache: &CacheDir,
        venv_key: &str,
        template: &VenvTemplate,
        venvs: &Dir,
        name: &str,
        path: &Path,
    ) -> std::io::Result<Option<LinkedVenv>> {
        let (Ok(ctx), Ok(runner), Some(published)) = (self.ctx(), self.runner(), self.published.as_ref()) else {
            return Ok(None);
        };
        let Some(given) = ctx.lock.as_ref().filter(|given| given.bundled.is_some()) else {
            return Ok(None);
        };
        // Only files the node keeps by their hash: what a directory of
        // the package holds is that package's alone.
        let pinned =
            DistStore::open(cache.path()).is_ok_and(|store| given.for_installer().is_all_files_under(store.path()));
        if ctx.sandbox.is_none() || !pinned {
            return Ok(None);
        }
        let key = installed_template::key(venv_key, &given.digest(), &given.for_installer().digest());
        let install = |at: &Path| {
            let dir = Dir::open_ambient_dir(at, cap_std::ambient_authority())
                .map_err(|e| InstallError::Host(format!("cannot open {}: {e}", at.display())))?;
            let target = Target {
                dir: &dir,
                path: at,
                package: &published.path,
                started: Instant::now(),
            };
            steps::install_lock(ctx, runner, given, &target)
        };
        let linked = InstalledTemplate::ensure(cache, &key, template, install).and_then(|installed| {
            let target = open_dir_nofollow(venvs, name).map_err(|e| InstallError::Host(e.to_string()))?;
            installed
                .link_to(&target, path)
                .map_err(|e| InstallError::Host(format!("cannot link the installed template: {e}")))
        });
        match linked {
            Ok(linked) => Ok(Some(linked)),
            Err(error) => {
                tracing::warn!(%error, venv = %path.display(), "Installing the requirements instead of linking them");
                empty(venvs, name)?;
                Ok(None)
            }
        }
    }

    /// Starts the agent's editable build when par's own frontend can do it:
    /// a back end that installs prebuilt wheels, a cache for build
    /// environments, and a build system this frontend accepts; or, for a
    /// bundle that carries the wheel, moving it to the tree. `None` leaves
    /// the build to the installer's own `-e` in `install-self`.
    fn start_editable_build(
        &self,
        plan: &InstallPlan,
        package: &Path,
        venv: &Path,
    ) -> Result<Option<EditableBuild>, InstallError> {
        let (ctx, runner) = (self.ctx()?, self.runner()?);
        if plan.self_install == SelfInstall::None {
            return Ok(None);
        }
        if let Some(wheel) = &ctx.editable_wheel {
            if ctx.installer.installs_prebuilt_editable() && is_plain_path(package) {
                let relocation = Relocation::to_tree(
                    runner.clone(),
                    ctx.python.executable.clone(),
                    wheel.clone(),
                    package.to_owned(),
                );
                // The bundle's lock holds what the agent needs: it goes in
                // alone, beside the requirements, once the venv is made.
                let install = ctx.lock.as_ref().map(|given| InstallAlone {
                    installer: ctx.installer.clone(),
                    venv: venv.to_owned(),
                    lock: given.lock.clone(),
                    markers: ctx.python.markers.clone(),
                });
                return EditableBuild::relocate(&ctx.root, relocation, install).map(Some);
            }
            tracing::info!(
                installer = ctx.installer.name(),
                tree = %package.display(),
                "The bundle's editable wheel cannot be installed here: building the agent's own"
            );
        }
        // Build environments hold code par runs: only in a cache no one else can write.
        let Some(cache_dir) = ctx.cache_dir.as_deref().and_then(|dir| CacheDir::open(dir).ok()) else {
            tracing::debug!("No private cache for build environments: leaving the editable build to the installer");
            return Ok(None);
        };
        let system = match build_system(plan) {
            Ok(Some(system)) => system,
            Ok(None) => return Ok(None),
            Err(why) => {
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
            source: match ctx.lock.as_ref().and_then(|given| given.bundled.as_ref()) {
                Some(bundled) => vec!["bundle".into(), bundled.build.clone().into()],
                None => ctx.install.index.args(),
            },
        };
        EditableBuild::start(&ctx.root, job).map(Some)
    }
}

/// The first requirement line the given lock does not hold, and how it
/// falls short; or, for a package that installs none, the lock naming
/// distributions at all.
fn lock_shortfall(
    given: &GivenLock,
    requirements: &[Requirement],
    markers: &MarkerEnvironment,
) -> Option<RefusedRequirement> {
    let refused = |file: &str, line: u32, text: &str, reason: String| RefusedRequirement {
        file: file.to_owned(),
        line,
        text: text.chars().take(200).collect(),
        reason,
    };
    if requirements.is_empty() && !given.lock.is_empty() {
        let reason = format!(
            "the package installs no requirements, yet the lock names {} distributions",
            given.lock.len()
        );
        return Some(refused("requirements.txt", 0, "", reason));
    }
    requirements.iter().find_map(|requirement| {
        let reason = given.lock.shortfall(&requirement.text, markers)?;
        Some(refused(&requirement.file, requirement.line, &requirement.text, reason))
    })
}

/// Reads the regular file `name` of `dir` (never through a symlink), at most 1 MiB.
fn read_regular(dir: &Dir, name: &str) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_file_nofollow(dir, name)?
        .take(1024 * 1024)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Empties the venv directory `name` of `venvs` again.
fn empty(venvs: &Dir, name: &str) -> std::io::Result<()> {
    venvs.remove_dir_all(name)?;
    venvs.create_dir(name)
}
