//! The install steps after `ensure-venv`: `install-requirements`,
//! `install-self` (the editable build's wheel, or the installer's own `-e`)
//! and `verify-import`, each run by the step runner and timed.

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use cap_std::fs::Dir;

use super::{InstallSession, LoadContext};
use crate::fs::root::{Area, open_dir_nofollow};
use crate::install::editable::{self, EditableBuild, Prepared};
use crate::install::installer::{
    InstallTarget, Invocation, LockFiles, RequirementFiles, RequirementsPlan, Resolution, venv_python,
};
use crate::install::pylock::{GivenLock, LOCK, Lock, Places};
use crate::install::resolve::read_resolution;
use crate::install::step::{StepKind, StepRunner, StepSpec};
use crate::sandbox::bindings::types::{Entrypoint, SelfInstall, StepReport};
use crate::types::error::{GuestProtocolError, InstallError, describe};
use par_rules::names::is_entrypoint;

/// The import check: the directory to put first on `sys.path` (empty for
/// none), the module and the attribute arrive as argv, never as code.
const VERIFY_SCRIPT: &str = "import importlib, sys\nif sys.argv[1]:\n    sys.path.insert(0, sys.argv[1])\nmodule = importlib.import_module(sys.argv[2])\nif len(sys.argv) > 3:\n    getattr(module, sys.argv[3])\n";

/// Where in the venv the installer writes its resolution or report for the
/// host, removed once read.
const OUTPUT_DIR: &str = ".par-resolution";

impl InstallSession {
    pub(super) fn install_requirements_inner(&mut self) -> Result<StepReport, InstallError> {
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
        let (ctx, runner) = (self.ctx()?, self.runner()?);
        if let (Some(linked), Some(given)) = (&venv.linked, &ctx.lock) {
            let packages_count = linked.installed;
            tracing::info!(venv = %name, packages_count, "Dependencies linked from this node's install of the lock");
            tracing::info!(packages_count, "External dependencies installed successfully");
            self.outcome.lock = Some(given.lock.clone());
            self.outcome.requirements_count = packages_count;
            return Ok(StepReport {
                packages_count,
                elapsed_ms: 0,
            });
        }
        tracing::info!(venv = %name, "Installing dependencies from requirements.txt");
        let host = |action: &'static str| {
            let path = venv_path.clone();
            move |e: std::io::Error| InstallError::Host(format!("cannot {action} {}: {e}", path.display()))
        };
        let venv_dir = open_dir_nofollow(ctx.root.dir(Area::Venvs), &name).map_err(host("open the venv of"))?;
        let target = Target {
            dir: &venv_dir,
            path: &venv_path,
            package: &package,
            started,
        };
        let result = if let Some(given) = &ctx.lock {
            install_lock(ctx, runner, given, &target).map(|count| (count, given.lock.clone()))
        } else {
            target.with_output_dir(|output_dir| {
                let files = RequirementFiles {
                    file: &file,
                    constraints: constraints.as_deref(),
                };
                let places = Places {
                    output_dir,
                    package: &package,
                };
                let index_args = ctx.install.index.args();
                match ctx
                    .installer
                    .install_requirements(&venv_path, files, &index_args, output_dir)
                {
                    RequirementsPlan::ResolveThenInstall { resolve, install } => {
                        target.run(ctx, runner, StepKind::Resolve, resolve).and_then(|_| {
                            let lock = read_output(&venv_dir, Resolution::Pylock, places)?;
                            Ok((target.run(ctx, runner, StepKind::Requirements, install)?, lock))
                        })
                    }
                    RequirementsPlan::InstallWithReport(install) => target
                        .run(ctx, runner, StepKind::Requirements, install)
                        .and_then(|count| Ok((count, read_output(&venv_dir, Resolution::PipReport, places)?))),
                }
            })
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        self.outcome.timings.requirements_ms = elapsed_ms;
        match result {
            Ok((packages_count, lock)) => {
                self.outcome.lock = Some(lock);
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

    pub(super) fn install_self_inner(&mut self) -> Result<StepReport, InstallError> {
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
            Ok(packages_count) => {
                tracing::info!("Agent package installed successfully");
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
    /// is no such build, the installer's own `-e` on the package; how many
    /// distributions that installed.
    fn self_install_step(&mut self, venv: &Path, package: &Path) -> Result<u32, InstallError> {
        let mut build = self.editable.take();
        let prepared = build.as_mut().map(EditableBuild::wait).transpose()?;
        if let Some(Prepared::Wheel { busy, .. } | Prepared::Installed { busy, .. }) = &prepared {
            self.outcome.timings.build_ms = busy.as_millis() as u64;
        }
        if let Some(Prepared::Installed { path, installed, .. }) = prepared {
            // The build's thread installed it (a bundle's wheel, alone).
            record_editable_install(venv, &path, package);
            return Ok(installed);
        }
        let (ctx, runner) = (self.ctx()?, self.runner()?);
        let index = ctx.install.index.args();
        let protected = self
            .venv
            .as_ref()
            .and_then(|v| v.linked.as_ref())
            .map(|l| l.protected.as_slice());
        let spec = |target| {
            let invocation = ctx.installer.install(venv, target, &index);
            StepSpec::new(StepKind::SelfInstall, invocation, package)
                .writable(venv)
                .protected(protected.unwrap_or_default())
        };
        let (Some(build), Some(Prepared::Wheel { path: wheel, busy })) = (&build, &prepared) else {
            if let Some(Prepared::Installer(reason)) = &prepared {
                tracing::info!(%reason, "Leaving the editable build to the installer");
            }
            let output = runner.run(spec(InstallTarget::Editable(package)))?;
            return Ok(ctx.installer.packages_installed(&output));
        };
        let left = StepKind::SelfInstall.left(&ctx.install, *busy)?;
        let output = runner.run(
            spec(InstallTarget::Wheel(wheel))
                .readonly(build.wheel_dir())
                .timeout(left),
        )?;
        record_editable_install(venv, wheel, package);
        Ok(ctx.installer.packages_installed(&output))
    }

    pub(super) fn verify_import_inner(&mut self, entrypoint: Entrypoint) -> Result<(), InstallError> {
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
}

/// The venv a requirements install goes into, and for which load.
pub(super) struct Target<'a> {
    /// The venv's directory.
    pub dir: &'a Dir,
    /// Its path.
    pub path: &'a Path,
    /// The published tree: the steps' working directory.
    pub package: &'a Path,
    /// When the requirements budget started.
    pub started: Instant,
}

impl Target<'_> {
    /// Runs `f` with the installer's output directory made in the venv,
    /// and removes it after.
    fn with_output_dir<T>(&self, f: impl FnOnce(&Path) -> Result<T, InstallError>) -> Result<T, InstallError> {
        let output_dir = self.path.join(OUTPUT_DIR);
        self.dir
            .create_dir(OUTPUT_DIR)
            .map_err(|e| InstallError::Host(format!("cannot create {}: {e}", output_dir.display())))?;
        let result = f(&output_dir);
        if let Err(error) = self.dir.remove_dir_all(OUTPUT_DIR) {
            tracing::warn!(%error, "cannot remove the installer's output from the venv");
        }
        result
    }

    /// Runs one installer step into the venv with what is left of the
    /// requirements budget; how many distributions it installed.
    fn run(
        &self,
        ctx: &LoadContext,
        runner: &StepRunner,
        kind: StepKind,
        invocation: Invocation,
    ) -> Result<u32, InstallError> {
        let left = StepKind::Requirements.left(&ctx.install, self.started.elapsed())?;
        let spec = StepSpec::new(kind, invocation, self.package)
            .writable(self.path)
            .timeout(left);
        let output = runner.run(spec)?;
        Ok(ctx.installer.packages_installed(&output))
    }
}

/// Installs exactly the given lock into `target`; how many distributions
/// the installer installed.
pub(super) fn install_lock(
    ctx: &LoadContext,
    runner: &StepRunner,
    given: &GivenLock,
    target: &Target<'_>,
) -> Result<u32, InstallError> {
    target.with_output_dir(|output_dir| {
        let unhashed = write_lock_files(target.dir, given.for_installer(), target.package)?;
        let (pylock, hashed) = (output_dir.join(LOCK), output_dir.join(HASHED_FILE));
        let files = LockFiles {
            pylock: &pylock,
            hashed: unhashed.hashed.then_some(hashed.as_path()),
            unhashed: &unhashed.rest,
        };
        let mut count = 0;
        for invocation in ctx
            .installer
            .install_lock(target.path, files, &ctx.install.index.args())
        {
            count += target.run(ctx, runner, StepKind::Requirements, invocation)?;
        }
        Ok(count)
    })
}

/// The hash-pinned requirement lines pip installs a lock from.
const HASHED_FILE: &str = "locked-requirements.txt";

/// What [`write_lock_files`] wrote: whether any line is hash-pinned, and
/// what pip installs apart.
struct Unhashed {
    hashed: bool,
    rest: Vec<String>,
}

/// Writes a given lock into the venv's output directory for the installer:
/// as `pylock.toml` (uv) and as hash-pinned requirement lines (pip).
fn write_lock_files(venv: &Dir, lock: &Lock, package: &Path) -> Result<Unhashed, InstallError> {
    let write = |name: &str, text: &str| {
        open_dir_nofollow(venv, OUTPUT_DIR)
            .and_then(|output| output.write(name, text))
            .map_err(|e| InstallError::Host(format!("cannot write the lock for the installer: {e}")))
    };
    let pylock = lock
        .to_install_lock(package)
        .map_err(|e| InstallError::Host(format!("cannot write the lock for the installer: {e}")))?;
    write(LOCK, &pylock)?;
    let (hashed, rest) = lock.to_pip(package);
    write(HASHED_FILE, &hashed)?;
    Ok(Unhashed {
        hashed: !hashed.is_empty(),
        rest,
    })
}

/// Reads what the installer left in the venv's output directory into a lock.
fn read_output(venv: &Dir, resolution: Resolution, places: Places<'_>) -> Result<Lock, InstallError> {
    let output = open_dir_nofollow(venv, OUTPUT_DIR)
        .map_err(|e| InstallError::Host(format!("cannot open the installer's output: {e}")))?;
    read_resolution(&output, resolution, places)
}

/// Records the agent installed from `wheel` as an editable install of
/// `package` in `venv` (a failure only warned of: the agent is installed).
fn record_editable_install(venv: &Path, wheel: &Path, package: &Path) {
    let wheel_name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Err(error) = editable::record_editable(venv, &wheel_name, package) {
        tracing::warn!(%error, "cannot record the agent as an editable install in its venv");
    }
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
