//! The spec's whole flow: extract and validate in the sandbox, publish,
//! create or reuse the venv, install, verify the import, and switch the
//! app's link only when every step succeeded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::{Orchestrator, check_app_id, explain_disk_full, readonly_mounts};
use crate::exec::confine;
use crate::fs::archive::{Archive, Digest};
use crate::fs::cache_dir::CacheDir;
use crate::fs::lock::{AppLock, PackageLock};
use crate::fs::redeploy::Deployment;
use crate::fs::root::{Area, RootDir, open_dir_nofollow};
use crate::fs::staging::{Staging, point_link};
use crate::fs::venv;
use crate::install::editable;
use crate::install::installer::venv_python;
use crate::install::pylock::{Environment, GivenLock, Lock};
use crate::install::sbom;
use crate::registry::reference;
use crate::sandbox::StagedPreopens;
use crate::sandbox::install_session::{InstallSession, LoadContext};
use crate::types::config::InstallConfig;
use crate::types::error::LoadError;
use crate::types::lifecycle::GcOptions;
use crate::types::package::{AgentPackage, RegistrySource, Timings};
use crate::types::trust::Signed;

/// What a load from an offline bundle hands the load of the package inside it.
#[derive(Debug)]
pub(super) struct FromBundle {
    /// The bundle's digest: the key its deployment record is kept under.
    pub digest: String,
    /// The settings that record is kept under.
    pub settings: String,
    /// The bundle's signature, checked, when trusted keys are configured.
    pub signed: Option<Signed>,
    /// The install settings: no index but the bundle's files, no network.
    pub install: InstallConfig,
    /// The registry reference and digest it was pulled by, if it was.
    pub source: Option<RegistrySource>,
    /// par's store of bundle files, when the install reads them from there
    /// (a directory install steps may read).
    pub store: Option<PathBuf>,
    /// The agent's editable wheel the bundle carries, if it does.
    pub editable: Option<PathBuf>,
}

/// What a load looks up a recorded load by: the app, the settings, and
/// when the load started (for the timings an unchanged redeploy reports).
#[derive(Debug, Clone, Copy)]
pub(super) struct Lookup<'a> {
    pub app_id: Option<&'a str>,
    pub settings: &'a str,
    pub started: Instant,
}

/// An archive staged for the guest, or the recorded load that answers it.
#[derive(Debug)]
pub(super) enum Staged {
    /// A recorded load of the same bytes under the same settings, as it is.
    Unchanged(Box<AgentPackage>),
    /// Staged anew.
    Fresh(StagedArchive),
}

/// An archive staged anew: its private copy and tree, digest and signature.
#[derive(Debug)]
pub(super) struct StagedArchive {
    pub staging: Staging,
    pub digest: String,
    /// What its signature vouches for, when trusted keys are configured.
    pub signed: Option<Signed>,
}

impl Orchestrator {
    /// The spec's whole flow (see [`crate::PackageLoader::load_package`]);
    /// a bundle (`.parb`) is loaded from its own files, offline.
    pub(crate) fn load(
        &self,
        apkg: &Path,
        app_id: Option<&str>,
        lock: Option<&Path>,
    ) -> Result<AgentPackage, LoadError> {
        if let Some(app_id) = app_id {
            check_app_id(app_id)?;
        }
        let from_registry = apkg.to_str().filter(|text| text.starts_with(reference::SCHEME));
        if par_rules::bundle::is_bundle_path(apkg) || from_registry.is_some() {
            if lock.is_some() {
                return Err(LoadError::InvalidInput {
                    what: "lock",
                    detail: "a bundle installs its own lock; give a lock with a package, not a bundle".into(),
                });
            }
            if let Some(source) = from_registry {
                return self.load_from_registry(source, app_id);
            }
            return self.load_bundle(apkg, app_id, None);
        }
        let lock = lock.map(|path| self.read_given_lock(path)).transpose()?;
        self.deploy(apkg, app_id, lock, None)
    }

    /// Loads the package `apkg` with the lock given (or from a bundle).
    pub(super) fn deploy(
        &self,
        apkg: &Path,
        app_id: Option<&str>,
        lock: Option<GivenLock>,
        bundle: Option<FromBundle>,
    ) -> Result<AgentPackage, LoadError> {
        let archive = Archive::open(apkg)?;
        self.check_free_space()?;
        let config = &self.config;
        let install = bundle.as_ref().map_or(&config.install, |bundle| &bundle.install);
        let started = Instant::now();
        tracing::info!(apkg = %archive.path().display(), "Loading agent package");
        let sandbox = self.installer_sandbox()?;
        let python = self.python.resolve()?;
        let installer = self.installer(&python, false)?;
        let settings = match &bundle {
            Some(bundle) => bundle.settings.clone(),
            None => {
                let given = lock.as_ref().map(GivenLock::digest).unwrap_or_default();
                self.settings_fingerprint(&python, installer.as_ref(), sandbox.is_some(), &given)
            }
        };
        let root = &self.root;
        // A bundle's package is looked up by the bundle's digest, not its own.
        let lookup = Lookup {
            app_id,
            settings: &settings,
            started,
        };
        let StagedArchive {
            staging,
            digest,
            signed,
        } = match self.stage(&archive, bundle.is_none().then_some(&lookup))? {
            Staged::Unchanged(package) => return Ok(*package),
            Staged::Fresh(staged) => staged,
        };
        let readonly = sandbox
            .as_ref()
            .map(|_| {
                let mut mounts = readonly_mounts(install, &python, installer.as_ref());
                mounts.extend(bundle.as_ref().and_then(|bundle| bundle.store.clone()));
                mounts
            })
            .unwrap_or_default();
        // A bundle's signature vouches for everything in it.
        let signed = match &bundle {
            Some(FromBundle {
                signed: Some(outer), ..
            }) => Some(outer.clone()),
            _ => signed,
        };
        let record_key = bundle.as_ref().map_or(&digest, |bundle| &bundle.digest).clone();
        let copies = staging.tree_writes(&config.limits)?;
        let markers = python.markers.clone();
        let preopens = StagedPreopens::of(&staging);
        let context = LoadContext {
            root: Arc::clone(root),
            app_id: app_id.map(str::to_owned),
            digest: digest.clone(),
            signed: signed.clone(),
            lock,
            max_entries: config.limits.max_entries,
            install: install.clone(),
            installer: installer.clone(),
            python,
            sandbox: sandbox.clone(),
            readonly,
            cache_dir: config.component_cache.clone(),
            editable_wheel: bundle.as_ref().and_then(|bundle| bundle.editable.clone()),
        };
        let (facts, mut session) = self.sandbox.load(
            preopens.writable(),
            &self.archive_rules(),
            config.install.strict,
            InstallSession::new(context, staging).with_copies(Some(copies)),
        );
        // Decided from the host's own record; dropping the session on failure
        // removes the tree this load published and puts back what it replaced.
        let facts = match facts {
            Ok(facts) => facts,
            Err(error) => {
                discard_unfinished_venv(root, &session);
                let error = explain_disk_full(error, &config.root, session.saw_disk_full());
                if matches!(error, LoadError::Install(_)) {
                    tracing::error!("{error}");
                }
                return Err(error);
            }
        };
        let (Some(published), Some(venv_state)) = (session.published.take(), session.venv.as_ref()) else {
            return Err(LoadError::Internal(
                "the load ended without publishing or preparing a venv".into(),
            ));
        };
        if !venv_state.reused {
            let lock = session.outcome.lock.take().unwrap_or_else(Lock::empty);
            let agent = facts
                .installed_as_package
                .then(|| editable::editable_install_of(&venv_state.path, &published.path))
                .flatten();
            let environment = Environment {
                markers,
                installer: installer.name().to_owned(),
            };
            tracing::info!(
                lock = %venv_state.path.join(venv::LOCK).display(),
                packages = lock.len(),
                "Recording what the venv holds"
            );
            let text = lock
                .to_pylock(agent.as_deref(), &environment)
                .map_err(|e| LoadError::Internal(format!("cannot write the venv's lock: {e}")))?;
            let manifest = &published.manifest;
            let bill = sbom::sbom(
                &lock,
                (&manifest.name, &manifest.version),
                &sbom::licences_in(&venv_state.path),
            )
            .map_err(|e| LoadError::Internal(format!("cannot write the venv's SBOM: {e}")))?;
            open_dir_nofollow(root.dir(Area::Venvs), &venv_state.name)
                .and_then(|venv| {
                    if let Some(key) = &venv_state.build_env {
                        venv::record_build_env(&venv, key)?;
                    }
                    venv::record_lock(&venv, &text)?;
                    venv::record_sbom(&venv, &bill)?;
                    venv::mark_finished(
                        &venv,
                        &venv::sealed_marker(root.seal(), &venv_state.name, &venv_state.key),
                    )
                })
                .map_err(LoadError::io("cannot mark the venv finished", &venv_state.path))?;
        }
        if let Some(key) = venv_state.build_env.as_deref().filter(|_| !venv_state.reused) {
            self.record_build_env_user(key, &venv_state.path);
        }
        if !facts.installed_as_package {
            tracing::info!(
                note = "Agent may have import issues if it uses root-level packages",
                "No setup.py found - skipping agent package installation"
            );
        }
        let mut timings = session.outcome.timings;
        timings.total_ms = started.elapsed().as_millis() as u64;
        tracing::info!(package_id = %published.package_id, venv = %venv_state.name, "Package loaded successfully");
        let package = AgentPackage {
            package_id: published.package_id.clone(),
            app_id: published.app_id.clone(),
            path: published.path.clone(),
            link: published.link.clone(),
            venv_path: venv_state.path.clone(),
            python_path: venv_python(&venv_state.path),
            lock: venv_state.path.join(venv::LOCK),
            sbom: venv_state.path.join(venv::SBOM),
            manifest: published.manifest.clone(),
            installed_as_package: facts.installed_as_package,
            verified: facts.verified,
            installer: installer.name().to_owned(),
            installer_sandbox: confine::label(sandbox.as_ref()).to_owned(),
            venv_reused: venv_state.reused,
            unchanged_redeploy: false,
            requirements_count: facts.requirements_count,
            timings,
            signed,
            source: bundle.as_ref().and_then(|bundle| bundle.source.clone()),
        };
        let tree = published.open_tree()?;
        // The last step: from here on the app's link names this tree. The
        // locks are held until the record is written.
        let locks = published.commit(root)?;
        let record = Deployment::new(settings, venv_state.key.clone(), package.clone(), &tree)
            .and_then(|record| record.save(root, &record_key, app_id));
        if let Err(error) = record {
            tracing::warn!(%error, "cannot record the load; the next redeploy will redo it");
        }
        drop(locks);
        self.enforce_budget(&package);
        Ok(package)
    }

    /// Stages `archive` for the guest, its signature checked before anything
    /// else (through its descriptor when its digest is known, else on the
    /// copy) and its digest made. With `lookup`, an archive par has hashed
    /// before is known without a read, and a recorded load of the same bytes
    /// under the same settings answers instead ([`Self::unchanged_redeploy`]).
    pub(super) fn stage(&self, archive: &Archive, lookup: Option<&Lookup<'_>>) -> Result<Staged, LoadError> {
        let root = &self.root;
        let known = lookup.and_then(|_| archive.known_digest(root));
        let known_signed = match &known {
            Some(_) => self.check_signature_of(archive)?,
            None => None,
        };
        if let (Some(digest), Some(lookup)) = (&known, lookup)
            && let Some(package) = self.unchanged_redeploy(digest, lookup, known_signed.as_ref())?
        {
            return Ok(Staged::Unchanged(Box::new(package)));
        }
        #[cfg(feature = "test-hooks")]
        if let Some(hook) = &self.config.before_copy {
            (hook.0)(archive.path());
        }
        let (staging, digest) = Staging::create(root, archive, known)?;
        let signed = match &digest {
            Digest::Known(_) => known_signed,
            Digest::Hashing(_) => self.check_signature(archive.path(), &staging.archive_copy()?)?,
        };
        let digest = match digest {
            Digest::Known(digest) => digest,
            Digest::Hashing(pending) => {
                let digest = pending
                    .wait()
                    .map_err(LoadError::io("cannot hash the staged copy of", archive.path()))?;
                if let Some(lookup) = lookup {
                    archive.remember(root, &digest);
                    if let Some(package) = self.unchanged_redeploy(&digest, lookup, signed.as_ref())? {
                        return Ok(Staged::Unchanged(Box::new(package)));
                    }
                }
                digest
            }
        };
        Ok(Staged::Fresh(StagedArchive {
            staging,
            digest,
            signed,
        }))
    }

    /// Lists the venv among the users of the build environment that built
    /// its agent, so `gc` in any root keeps that environment while it stays.
    fn record_build_env_user(&self, key: &str, venv: &Path) {
        let Some(dir) = &self.config.component_cache else {
            return;
        };
        if let Err(error) = CacheDir::open(dir).and_then(|cache| editable::add_user(&cache, key, venv)) {
            tracing::warn!(%error, "cannot list the venv as a user of its build environment; gc may remove that environment");
        }
    }

    /// After a load that wrote something: with a budget configured, the
    /// least recently used deployments go until the root fits it, never
    /// `package`'s (whatever other loads did meanwhile) nor an app's current one.
    fn enforce_budget(&self, package: &AgentPackage) {
        let Some(budget) = self.config.max_root_bytes else {
            return;
        };
        let options = GcOptions {
            keep: usize::MAX,
            max_bytes: Some(budget),
            older_than: None,
            dry_run: false,
        };
        let tree = self.root.name_in(&package.path, Area::Trees).map(str::to_owned);
        match self.collect(&options, &Vec::from_iter(tree)) {
            Ok(collection) if collection.root_bytes_after > budget => tracing::warn!(
                root_bytes = collection.root_bytes_after,
                max_root_bytes = budget,
                "The root is over its budget with nothing more that may be removed"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot keep the root within its budget"),
        }
    }

    /// The recorded result of an earlier load of the same archive, when
    /// nothing it depends on has changed since (see [`crate::fs::redeploy`]).
    fn unchanged_redeploy(
        &self,
        digest: &str,
        lookup: &Lookup<'_>,
        signed: Option<&Signed>,
    ) -> Result<Option<AgentPackage>, LoadError> {
        let Lookup {
            app_id,
            settings,
            started,
        } = *lookup;
        let root = &self.root;
        let Some(record) = Deployment::find(root, digest, app_id) else {
            return Ok(None);
        };
        let Some(dir_name) = record.package_dir_name() else {
            return Ok(None);
        };
        // Checked under the app's and the package's locks, so no load is
        // replacing it and no `gc` removing it meanwhile.
        let _app = AppLock::shared(root, record.app_id())?;
        let _lock = PackageLock::acquire(root, &dir_name)?;
        let Some(mut package) = record.unchanged(root, settings) else {
            return Ok(None);
        };
        if let Some(signed) = signed {
            signed.check(&package.manifest.name, &package.manifest.version)?;
        }
        package.signed = signed.cloned();
        // This archive becomes the app's current deployment again, if another one had replaced it.
        point_link(root, &dir_name, &package.path)?;
        if let Err(error) = Deployment::touch(root, digest, app_id) {
            tracing::warn!(%error, "cannot mark the record as loaded now; `gc` may take it for older than it is");
        }
        package.venv_reused = true;
        package.unchanged_redeploy = true;
        package.requirements_count = 0;
        package.timings = Timings {
            total_ms: started.elapsed().as_millis() as u64,
            ..Timings::default()
        };
        tracing::info!(package_id = %package.package_id, "Package unchanged since its last load: nothing to do");
        let venv = package
            .venv_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        tracing::info!(package_id = %package.package_id, venv = %venv, "Package loaded successfully");
        Ok(Some(package))
    }
}

/// Removes a venv this load created but did not finish, so nothing half-built stays behind.
fn discard_unfinished_venv(root: &RootDir, session: &InstallSession) {
    if let Some(venv) = &session.venv
        && !venv.reused
        && let Err(e) = root.dir(Area::Venvs).remove_dir_all(&venv.name)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %venv.path.display(), error = %e, "cannot remove an unfinished venv");
    }
}
