//! [`PackageLoader`]: the embedding API. Every archive byte is handled by the
//! sandboxed guest; the loader stages, checks what comes back, and publishes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{InstallConfig, InstallerChoice, LoaderConfig};
use crate::confine::{self, Bubblewrap, SandboxChoice};
use crate::error::{LoadError, PackageError};
use crate::installer::{Installer, Pip, Uv, venv_python};
use crate::interpreter::{Interpreter, Resolver};
use crate::package::{AgentPackage, ExtractedPackage, Manifest, Timings};
use crate::process::find_program_in;
use crate::redeploy::{self, Deployment};
use crate::root::{Area, RootDir, open_dir_nofollow};
use crate::sandbox::install_session::{InstallSession, LoadContext, PublishRequest, Published};
use crate::sandbox::{ArchiveRules, Preopens, Sandbox};
use crate::staging::{PackageLock, Staging, disk_nearly_full, point_link, sweep_abandoned};
use crate::venv;
use par_rules::names::is_safe_component;

/// Loads APKGs; cheap to clone, safe to share across tasks.
#[derive(Debug, Clone)]
pub struct PackageLoader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The root, opened once: every file operation under it goes through it.
    root: Arc<RootDir>,
    config: LoaderConfig,
    sandbox: Sandbox,
    /// The base interpreter, resolved past any shim on every load; an
    /// answer is reused while what decided it is unchanged.
    python: Resolver,
    /// The installer sandbox, probed on first use (`None`: not used).
    installer_sandbox: std::sync::OnceLock<Result<Option<Bubblewrap>, String>>,
}

impl PackageLoader {
    /// Prepares the sandbox (compiling the guest, or loading it from the cache).
    /// Relative paths in `config` are taken from the current directory now:
    /// installer steps run elsewhere, inside their own sandbox.
    pub fn new(mut config: LoaderConfig) -> Result<Self, LoadError> {
        let started = Instant::now();
        config.root =
            std::path::absolute(&config.root).map_err(LoadError::io("cannot resolve the root", &config.root))?;
        for cache in [&mut config.component_cache, &mut config.install.installer_cache]
            .into_iter()
            .flatten()
        {
            *cache =
                std::path::absolute(&*cache).map_err(LoadError::io("cannot resolve the cache directory", &*cache))?;
        }
        let sandbox = Sandbox::new(
            config.component_cache.as_deref(),
            config.sandbox_limits(),
            config.guest_component.as_deref(),
        )?;
        let root = Arc::new(RootDir::open(&config.root)?);
        sweep_abandoned(&root);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "sandbox ready");
        let python = Resolver::new(
            &config.install.python,
            config.install.import_timeout,
            config.component_cache.as_deref(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                config,
                sandbox,
                python,
                installer_sandbox: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The configuration this loader was built with.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.config
    }

    /// Validates the archive and returns its manifest without publishing anything.
    pub async fn inspect(&self, apkg: impl AsRef<Path>) -> Result<Manifest, LoadError> {
        let this = self.clone();
        let apkg = apkg.as_ref().to_owned();
        run_blocking(move || this.inspect_blocking(&apkg)).await
    }

    /// Extracts the archive in the sandbox and publishes it to
    /// `{root}/packages/{app_id}@{version}`; `app_id` defaults to the manifest name.
    pub async fn extract(&self, apkg: impl AsRef<Path>, app_id: Option<&str>) -> Result<ExtractedPackage, LoadError> {
        let this = self.clone();
        let apkg = apkg.as_ref().to_owned();
        let app_id = app_id.map(str::to_owned);
        run_blocking(move || this.extract_blocking(&apkg, app_id.as_deref())).await
    }

    /// The spec's whole flow: extract and validate in the sandbox, publish,
    /// create or reuse the venv, install `requirements.txt`, install the agent
    /// itself in editable mode, and check that the entrypoint imports.
    pub async fn load_package(&self, apkg: impl AsRef<Path>, app_id: Option<&str>) -> Result<AgentPackage, LoadError> {
        let this = self.clone();
        let apkg = apkg.as_ref().to_owned();
        let app_id = app_id.map(str::to_owned);
        run_blocking(move || this.load_blocking(&apkg, app_id.as_deref())).await
    }

    /// Blocking form of [`PackageLoader::load_package`].
    pub fn load_blocking(&self, apkg: &Path, app_id: Option<&str>) -> Result<AgentPackage, LoadError> {
        if let Some(app_id) = app_id {
            check_app_id(app_id)?;
        }
        let apkg = regular_file(apkg)?;
        let config = &self.inner.config;
        let started = Instant::now();
        tracing::info!(apkg = %apkg.display(), "Loading agent package");
        let sandbox = self.installer_sandbox()?;
        let python = self.inner.python.resolve()?;
        let installer = self.installer(&python)?;
        let settings = self.settings_fingerprint(&python, installer.as_ref(), sandbox.is_some());
        let digest = redeploy::apkg_digest(&apkg).map_err(LoadError::io("cannot read the archive", &apkg))?;
        if let Some(package) = self.unchanged_redeploy(&digest, app_id, &settings, started)? {
            return Ok(package);
        }
        let readonly = sandbox
            .as_ref()
            .map(|_| readonly_mounts(&config.install, &python, installer.as_ref()))
            .unwrap_or_default();
        let root = &self.inner.root;
        let staging = Staging::create(root, &apkg)?;
        let (archive_dir, tree) = (staging.archive_preopen(), staging.tree_preopen());
        let context = LoadContext {
            root: Arc::clone(root),
            app_id: app_id.map(str::to_owned),
            digest: digest.clone(),
            max_entries: config.limits.max_entries,
            install: config.install.clone(),
            installer: installer.clone(),
            python,
            sandbox: sandbox.clone(),
            readonly,
            cache_dir: config.component_cache.clone(),
        };
        let preopens = Preopens {
            archive_dir: &archive_dir,
            package_dir: Some(&tree),
        };
        let (facts, mut session) = self.inner.sandbox.load(
            preopens,
            &self.archive_rules(),
            config.install.strict,
            InstallSession::new(context, staging),
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
            open_dir_nofollow(root.dir(Area::Venvs), &venv_state.name)
                .and_then(|venv| venv::mark_finished(&venv, &venv_state.key))
                .map_err(LoadError::io("cannot mark the venv finished", &venv_state.path))?;
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
            manifest: published.manifest.clone(),
            installed_as_package: facts.installed_as_package,
            verified: facts.verified,
            installer: installer.name().to_owned(),
            installer_sandbox: confine::label(sandbox.as_ref()).to_owned(),
            venv_reused: venv_state.reused,
            unchanged_redeploy: false,
            requirements_count: facts.requirements_count,
            timings,
        };
        let tree = published.open_tree()?;
        // The last step: from here on the app's link names this tree.
        published.commit(root)?;
        let record = Deployment::new(settings, venv_state.key.clone(), package.clone(), &tree)
            .and_then(|record| record.save(root, &digest, app_id));
        if let Err(error) = record {
            tracing::warn!(%error, "cannot record the load; the next redeploy will redo it");
        }
        Ok(package)
    }

    /// The recorded result of an earlier load of the same archive, when
    /// nothing it depends on has changed since (see [`crate::redeploy`]).
    fn unchanged_redeploy(
        &self,
        digest: &str,
        app_id: Option<&str>,
        settings: &str,
        started: Instant,
    ) -> Result<Option<AgentPackage>, LoadError> {
        let root = &self.inner.root;
        let Some(record) = Deployment::find(root, digest, app_id) else {
            return Ok(None);
        };
        let Some(dir_name) = record.package_dir_name() else {
            return Ok(None);
        };
        // Checked under the package's lock, so no load is replacing it meanwhile.
        let _lock = PackageLock::acquire(root, &dir_name)?;
        let Some(mut package) = record.unchanged(root, settings) else {
            return Ok(None);
        };
        // This archive becomes the app's current deployment again, if another one had replaced it.
        point_link(root, &dir_name, &package.path)?;
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

    /// Everything that shapes what a load does, so a recorded load is only
    /// taken as current under the same settings.
    fn settings_fingerprint(&self, python: &Interpreter, installer: &dyn Installer, sandboxed: bool) -> String {
        let config = &self.inner.config;
        let install = &config.install;
        redeploy::settings_fingerprint(&[
            &config.limits,
            &config.guest_path_rules,
            &python.identity,
            &installer.name(),
            &installer.program(),
            &sandboxed,
            &install.network,
            &install.index,
            &install.policy,
            &install.pass_env,
            &install.strict,
            &install.limits,
        ])
    }

    /// The configured back end; `auto` takes uv when it is on `PATH` (or
    /// beside the interpreter, where `pip install uv` puts it).
    fn installer(&self, python: &Interpreter) -> Result<Arc<dyn Installer>, LoadError> {
        let install = &self.inner.config.install;
        let uv = find_program_in(&install.uv, std::slice::from_ref(&python.scripts));
        Ok(match (install.installer, uv) {
            (InstallerChoice::Pip, _) | (InstallerChoice::Auto, None) => Arc::new(Pip),
            (InstallerChoice::Uv | InstallerChoice::Auto, Some(uv)) => Arc::new(Uv::new(uv)),
            (InstallerChoice::Uv, None) => {
                return Err(LoadError::InvalidInput {
                    what: "installer",
                    detail: format!("`{}` was not found on PATH", install.uv.display()),
                });
            }
        })
    }

    /// The bubblewrap installer steps run under, per `--sandbox`; `auto`
    /// falls back to running them unconfined, and says so on every load.
    fn installer_sandbox(&self) -> Result<Option<Bubblewrap>, LoadError> {
        let install = &self.inner.config.install;
        let probed = self.inner.installer_sandbox.get_or_init(|| match install.sandbox {
            SandboxChoice::None => Ok(None),
            SandboxChoice::Auto | SandboxChoice::Bwrap => Bubblewrap::probe(&install.bwrap).map(Some),
        });
        match (probed, install.sandbox) {
            (Ok(found), _) => Ok(found.clone()),
            (Err(why), SandboxChoice::Bwrap) => Err(LoadError::InstallerSandbox(why.clone())),
            (Err(why), _) => {
                tracing::warn!(
                    reason = %why,
                    "Installer sandbox unavailable: setup.py and the installer run with the loader's own \
                     privileges, files and network (install bubblewrap, or pass --sandbox none to silence this)"
                );
                Ok(None)
            }
        }
    }

    /// Blocking form of [`PackageLoader::inspect`], for callers outside an async runtime.
    pub fn inspect_blocking(&self, apkg: &Path) -> Result<Manifest, LoadError> {
        let apkg = regular_file(apkg)?;
        tracing::info!(apkg = %apkg.display(), "Inspecting agent package");
        let staging = Staging::create(&self.inner.root, &apkg)?;
        let archive_dir = staging.archive_preopen();
        let preopens = Preopens {
            archive_dir: &archive_dir,
            package_dir: None,
        };
        self.inner.sandbox.inspect(preopens, &self.archive_rules())
    }

    /// Blocking form of [`PackageLoader::extract`].
    pub fn extract_blocking(&self, apkg: &Path, app_id: Option<&str>) -> Result<ExtractedPackage, LoadError> {
        if let Some(app_id) = app_id {
            check_app_id(app_id)?;
        }
        let apkg = regular_file(apkg)?;
        let root = &self.inner.root;
        tracing::info!(apkg = %apkg.display(), "Loading agent package");
        let started = Instant::now();
        let digest = redeploy::apkg_digest(&apkg).map_err(LoadError::io("cannot read the archive", &apkg))?;
        let staging = Staging::create(root, &apkg)?;
        let (archive_dir, tree) = (staging.archive_preopen(), staging.tree_preopen());
        tracing::info!(staging = %staging.tree_path().display(), "Extracting package");
        let preopens = Preopens {
            archive_dir: &archive_dir,
            package_dir: Some(&tree),
        };
        let report = self
            .inner
            .sandbox
            .extract(preopens, &self.archive_rules())
            .map_err(|e| explain_disk_full(e, root.path(), false))?;
        let request = PublishRequest {
            app_id,
            digest: &digest,
            max_entries: self.inner.config.limits.max_entries,
            manifest: report.manifest,
            executables: &report.executables,
        };
        let published = Published::publish(root, request, staging)?;
        tracing::info!(
            package_id = %published.package_id,
            path = %published.path.display(),
            files = report.files,
            bytes = report.bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Package extracted"
        );
        let package = ExtractedPackage {
            package_id: published.package_id.clone(),
            app_id: published.app_id.clone(),
            path: published.path.clone(),
            link: published.link.clone(),
            manifest: published.manifest.clone(),
            files: report.files,
            dirs: report.dirs,
            bytes: report.bytes,
        };
        published.commit(root)?;
        Ok(package)
    }

    fn archive_rules(&self) -> ArchiveRules {
        ArchiveRules {
            limits: self.inner.config.limits,
            path_rules: self.inner.config.guest_path_rules,
        }
    }
}

/// Turns a failure caused by a full disk into [`LoadError::DiskFull`], the
/// host's fault: inside the sandbox it shows only as WASI's generic I/O
/// error (so the free space under the root is what tells); an installer step
/// is judged by the session, which looked when the step failed.
fn explain_disk_full(error: LoadError, root: &Path, install_saw_full_disk: bool) -> LoadError {
    let (during, detail) = match &error {
        LoadError::Package(PackageError::Write(failure)) if disk_nearly_full(root) => {
            let entry = failure.entry.as_deref().unwrap_or("?");
            (
                "writing the package tree",
                format!("entry `{entry}`: {}", failure.message),
            )
        }
        LoadError::Install(failure) if install_saw_full_disk => ("installing", failure.to_string()),
        _ => return error,
    };
    LoadError::DiskFull {
        during,
        root: root.to_owned(),
        detail,
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

/// What every confined step may read besides the system: the interpreter's
/// prefixes, the installer binary, local find-links directories and the
/// certificate files the operator's environment names.
fn readonly_mounts(install: &InstallConfig, python: &Interpreter, installer: &dyn Installer) -> Vec<PathBuf> {
    const CERT_VARIABLES: [&str; 4] = ["SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "PIP_CERT"];
    let certificates = CERT_VARIABLES
        .into_iter()
        .filter(|name| install.pass_env.iter().any(|passed| passed == name))
        .filter_map(std::env::var_os)
        .map(PathBuf::from);
    let find_links = install
        .index
        .find_links
        .iter()
        .filter(|link| !link.contains("://"))
        .map(PathBuf::from);
    let mut mounts: Vec<PathBuf> = python.prefixes.iter().cloned().chain(installer.program()).collect();
    for path in certificates.chain(find_links) {
        if let Ok(path) = path.canonicalize() {
            mounts.push(path);
        }
    }
    mounts
}

/// Runs blocking loader work off the async runtime's worker threads.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LoadError> + Send + 'static,
) -> Result<T, LoadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LoadError::Internal(format!("loader task failed: {e}")))?
}

/// Resolves symlinks and insists on a regular file, so the staging hard link
/// points at the archive itself and never at a link the guest could not follow.
fn regular_file(apkg: &Path) -> Result<PathBuf, LoadError> {
    let resolved = apkg
        .canonicalize()
        .map_err(LoadError::io("cannot open the archive", apkg))?;
    let meta = std::fs::metadata(&resolved).map_err(LoadError::io("cannot open the archive", apkg))?;
    if !meta.is_file() {
        return Err(LoadError::InvalidInput {
            what: "archive",
            detail: format!("`{}` is not a regular file", apkg.display()),
        });
    }
    Ok(resolved)
}

fn check_app_id(app_id: &str) -> Result<(), LoadError> {
    if is_safe_component(app_id, false) {
        Ok(())
    } else {
        Err(LoadError::InvalidInput {
            what: "app id",
            detail: format!(
                "`{}` must start with a letter or digit and hold only letters, digits, `.`, `_`, `-` (at most 128)",
                app_id.escape_default()
            ),
        })
    }
}
