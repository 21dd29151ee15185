//! `par lock`: what a package's requirements and build requirements resolve
//! to, for this interpreter and these index settings, installing nothing.

use std::path::Path;

use super::Orchestrator;
use crate::fs::archive::Archive;
use crate::fs::staging::{Scratch, Staging};
use crate::install::editable::BuildSystem;
use crate::install::installer::{Installer as _, Pip};
use crate::install::interpreter::Interpreter;
use crate::install::pylock::{Environment, Lock};
use crate::install::resolve::Resolver;
use crate::install::step::StepRunner;
use crate::sandbox::StagedPreopens;
use crate::types::error::LoadError;
use crate::types::package::ResolvedLock;

/// A package resolved: its staged copy, what it resolved to, and with what.
#[derive(Debug)]
pub(super) struct Resolved {
    /// The staged archive and tree.
    pub staging: Staging,
    /// What its requirements resolved to.
    pub lock: Lock,
    /// What its build requirements resolved to, when it builds.
    pub build: Option<Lock>,
    /// The backend its editable build runs, when it builds.
    pub build_system: Option<BuildSystem>,
    /// The interpreter and installer it was resolved for.
    pub environment: Environment,
    /// The interpreter.
    pub python: Interpreter,
    /// The steps' runner (confined as a load's).
    pub runner: StepRunner,
}

impl Orchestrator {
    /// Extracts the package into staging (the sandbox reads its plan),
    /// resolves what it asks for with the installer, confined as a load's
    /// steps are, and returns the locks (see [`crate::PackageLoader::lock`]).
    pub(crate) fn lock(&self, apkg: &Path) -> Result<ResolvedLock, LoadError> {
        let resolved = self.resolve(apkg, false)?;
        let write = |lock: &Lock| {
            lock.to_pylock(None, &resolved.environment)
                .map_err(|e| LoadError::Internal(format!("cannot write the lock: {e}")))
        };
        Ok(ResolvedLock {
            lock: write(&resolved.lock)?,
            build_lock: resolved.build.as_ref().map(write).transpose()?,
        })
    }

    /// The resolution behind [`Self::lock`] and `par bundle`; with
    /// `any_installer`, the build lock holds what every installer adds to a
    /// `setup.py`'s build (a bundle loads with either).
    pub(super) fn resolve(&self, apkg: &Path, any_installer: bool) -> Result<Resolved, LoadError> {
        let archive = Archive::open(apkg)?;
        let config = &self.config;
        tracing::info!(apkg = %archive.path().display(), "Resolving agent package");
        let staging = Staging::create_unhashed(&self.root, &archive)?;
        self.check_signature(archive.path(), &staging.archive_copy()?)?;
        let rules = self.archive_rules();
        let copies = staging.tree_writes(&rules.limits)?;
        let preopens = StagedPreopens::of(&staging);
        let wanted = self.sandbox.plan(
            preopens.writable(),
            &rules,
            copies,
            staging.tree(),
            config.install.policy,
        )?;
        let python = self.python.resolve()?;
        let installer = self.installer(&python, false)?;
        let runner = self.step_runner(&config.install, &python, installer.as_ref())?;
        let (index_args, package) = (config.install.index.args(), staging.tree_path());
        let resolver = Resolver {
            runner: &runner,
            installer: installer.as_ref(),
            python: &python.executable,
            index_args: &index_args,
            package: &package,
        };
        let scratch = Scratch::create(&self.root, "lock-")?;
        let lock = match wanted.requirements.is_empty() {
            true => Lock::empty(),
            false => resolver
                .resolve(&wanted.requirements, &wanted.constraints, &scratch, "requirements")
                .map_err(LoadError::install)?,
        };
        let mut build_requires = wanted.build_requires.clone();
        if wanted.legacy_build {
            let every = if any_installer { Pip.legacy_build_extras() } else { &[] };
            let extras: std::collections::BTreeSet<&str> =
                installer.legacy_build_extras().iter().chain(every).copied().collect();
            build_requires.extend(extras.into_iter().map(str::to_owned));
        }
        let build = match build_requires.is_empty() {
            true => None,
            false => Some(
                resolver
                    .resolve(&build_requires, &[], &scratch, "build")
                    .map_err(LoadError::install)?,
            ),
        };
        tracing::info!(
            packages = lock.len(),
            build_packages = build.as_ref().map_or(0, Lock::len),
            "Package resolved"
        );
        let environment = Environment {
            markers: python.markers.clone(),
            installer: installer.name().to_owned(),
        };
        Ok(Resolved {
            staging,
            lock,
            build,
            build_system: wanted.build_system,
            environment,
            python,
            runner,
        })
    }
}
