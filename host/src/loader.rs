//! [`PackageLoader`]: the embedding API. Every archive byte is handled by the
//! sandboxed guest; the loader stages, checks what comes back, and publishes.

use std::path::Path;
use std::sync::Arc;

use crate::agent::AgentProcess;
use crate::load::Orchestrator;
use crate::types::config::LoaderConfig;
use crate::types::error::{LifecycleError, LoadError, SpawnError};
use crate::types::lifecycle::{Collection, GcOptions, Listing};
use crate::types::package::{AgentPackage, ExtractedPackage, Manifest};
use crate::types::spawn::SpawnSpec;

/// Loads APKGs; cheap to clone, safe to share across tasks.
#[derive(Debug, Clone)]
pub struct PackageLoader {
    orchestrator: Arc<Orchestrator>,
}

impl PackageLoader {
    /// Prepares the sandbox (compiling the guest, or loading it from the cache).
    /// Relative paths in `config` are taken from the current directory now:
    /// installer steps run elsewhere, inside their own sandbox.
    pub fn new(config: LoaderConfig) -> Result<Self, LoadError> {
        Ok(Self {
            orchestrator: Arc::new(Orchestrator::new(config)?),
        })
    }

    /// The configuration this loader was built with.
    pub fn config(&self) -> &LoaderConfig {
        self.orchestrator.config()
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
        self.orchestrator.load(apkg, app_id)
    }

    /// Blocking form of [`PackageLoader::inspect`], for callers outside an async runtime.
    pub fn inspect_blocking(&self, apkg: &Path) -> Result<Manifest, LoadError> {
        self.orchestrator.inspect(apkg)
    }

    /// Starts `package`'s agent (loaded by this loader) in the sandbox, on
    /// sockets par binds first, and returns once it runs; then
    /// [`AgentProcess::wait_ready`] waits until it is ready.
    pub async fn spawn(&self, package: &AgentPackage, spec: SpawnSpec) -> Result<AgentProcess, SpawnError> {
        let this = self.clone();
        let package = package.clone();
        tokio::task::spawn_blocking(move || this.spawn_blocking(&package, spec))
            .await
            .map_err(|e| SpawnError::Io {
                action: "the spawn task failed",
                source: std::io::Error::other(e.to_string()),
            })?
    }

    /// Blocking form of [`PackageLoader::spawn`].
    pub fn spawn_blocking(&self, package: &AgentPackage, spec: SpawnSpec) -> Result<AgentProcess, SpawnError> {
        self.orchestrator.spawn(package, spec).map(AgentProcess::new)
    }

    /// Every app under the root: its deployments (current or not, in use by
    /// an agent or not) with their sizes, and the build environments.
    pub async fn list(&self) -> Result<Listing, LifecycleError> {
        let this = self.clone();
        run_lifecycle(move || this.list_blocking()).await
    }

    /// Blocking form of [`PackageLoader::list`].
    pub fn list_blocking(&self) -> Result<Listing, LifecycleError> {
        self.orchestrator.list()
    }

    /// Removes an app (or one `version` of it): trees, links, venvs and
    /// records. Refuses while an agent uses them, unless `force`, which
    /// stops that agent first.
    pub async fn remove(&self, app_id: &str, version: Option<&str>, force: bool) -> Result<Collection, LifecycleError> {
        let this = self.clone();
        let (app_id, version) = (app_id.to_owned(), version.map(str::to_owned));
        run_lifecycle(move || this.remove_blocking(&app_id, version.as_deref(), force)).await
    }

    /// Blocking form of [`PackageLoader::remove`].
    pub fn remove_blocking(
        &self,
        app_id: &str,
        version: Option<&str>,
        force: bool,
    ) -> Result<Collection, LifecycleError> {
        self.orchestrator.remove(app_id, version, force)
    }

    /// Removes what no app needs any more: deployments beyond the ones
    /// `options` keeps, the least recently used ones while the root is over
    /// its budget, and whatever belongs to nothing kept. Never what a
    /// running load or agent holds.
    pub async fn gc(&self, options: GcOptions) -> Result<Collection, LifecycleError> {
        let this = self.clone();
        run_lifecycle(move || this.gc_blocking(&options)).await
    }

    /// Blocking form of [`PackageLoader::gc`].
    pub fn gc_blocking(&self, options: &GcOptions) -> Result<Collection, LifecycleError> {
        self.orchestrator.gc(options)
    }

    /// Blocking form of [`PackageLoader::extract`].
    pub fn extract_blocking(&self, apkg: &Path, app_id: Option<&str>) -> Result<ExtractedPackage, LoadError> {
        self.orchestrator.extract(apkg, app_id)
    }
}

/// Runs blocking lifecycle work off the async runtime's worker threads.
async fn run_lifecycle<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LifecycleError> + Send + 'static,
) -> Result<T, LifecycleError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LifecycleError::Io {
            action: "the lifecycle task failed",
            path: Default::default(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Runs blocking loader work off the async runtime's worker threads.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LoadError> + Send + 'static,
) -> Result<T, LoadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LoadError::Internal(format!("loader task failed: {e}")))?
}
