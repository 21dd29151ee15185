//! `par lock`: what a package's requirements and build requirements resolve
//! to, for this interpreter and these index settings, installing nothing.

use std::path::Path;

use super::Orchestrator;
use super::deploy::readonly_mounts;
use crate::fs::archive::Archive;
use crate::fs::staging::{Scratch, Staging};
use crate::install::pylock::{Environment, Lock};
use crate::install::resolve::Resolver;
use crate::install::step::StepRunner;
use crate::sandbox::Preopens;
use crate::types::error::{InstallError, InstallFailure, LoadError};
use crate::types::package::ResolvedLock;

impl Orchestrator {
    /// Extracts the package into staging (the sandbox reads its plan),
    /// resolves what it asks for with the installer, confined as a load's
    /// steps are, and returns the locks (see [`crate::PackageLoader::lock`]).
    pub(crate) fn lock(&self, apkg: &Path) -> Result<ResolvedLock, LoadError> {
        let archive = Archive::open(apkg)?;
        let config = &self.config;
        tracing::info!(apkg = %archive.path().display(), "Resolving agent package");
        let staging = Staging::create_unhashed(&self.root, &archive)?;
        self.check_signature(archive.path(), &staging.archive_copy()?)?;
        let rules = self.archive_rules();
        let copies = staging.tree_writes(&rules.limits)?;
        let (archive_dir, tree) = (staging.archive_preopen(), staging.tree_preopen());
        let preopens = Preopens {
            archive_dir: Some(&archive_dir),
            package_dir: Some(&tree),
            package_writable: true,
        };
        let wanted = self
            .sandbox
            .plan(preopens, &rules, copies, staging.tree(), config.install.policy)?;
        let python = self.python.resolve()?;
        let installer = self.installer(&python)?;
        let sandbox = self.installer_sandbox()?;
        let readonly = sandbox
            .as_ref()
            .map(|_| readonly_mounts(&config.install, &python, installer.as_ref()))
            .unwrap_or_default();
        let runner = StepRunner::new(self.root.path(), &config.install, installer.as_ref(), sandbox, readonly);
        let (index_args, package) = (config.install.index.args(), staging.tree_path());
        let resolver = Resolver {
            runner: &runner,
            installer: installer.as_ref(),
            python: &python.executable,
            index_args: &index_args,
            package: &package,
        };
        let scratch = Scratch::create(&self.root, "lock-")?;
        let failed = |error: InstallError| LoadError::Install(InstallFailure(vec![error]));
        let lock = match wanted.requirements.is_empty() {
            true => Lock::empty(),
            false => resolver
                .resolve(&wanted.requirements, &wanted.constraints, &scratch, "requirements")
                .map_err(failed)?,
        };
        let build = match wanted.build_requires.is_empty() {
            true => None,
            false => Some(
                resolver
                    .resolve(&wanted.build_requires, &[], &scratch, "build")
                    .map_err(failed)?,
            ),
        };
        let environment = Environment {
            markers: python.markers.clone(),
            installer: installer.name().to_owned(),
        };
        let write = |lock: &Lock| {
            lock.to_pylock(None, &environment)
                .map_err(|e| LoadError::Internal(format!("cannot write the lock: {e}")))
        };
        tracing::info!(
            packages = lock.len(),
            build_packages = build.as_ref().map_or(0, Lock::len),
            "Package resolved"
        );
        Ok(ResolvedLock {
            lock: write(&lock)?,
            build_lock: build.as_ref().map(write).transpose()?,
        })
    }
}
