//! [`PackageLoader`]: the embedding API. Every archive byte is handled by the
//! sandboxed guest; the loader stages, checks what comes back, and publishes.

use std::path::Path;
use std::sync::Arc;

use crate::agent::AgentProcess;
use crate::load::Orchestrator;
use crate::types::config::LoaderConfig;
use crate::types::error::{LifecycleError, LoadError, SpawnError};
#[cfg(doc)]
use crate::types::error::{PackageError, SandboxError};
use crate::types::lifecycle::{Collection, GcOptions, Listing};
use crate::types::package::{AgentPackage, ExtractedPackage, Manifest, ResolvedLock, WrittenBundle};
use crate::types::registry::{Pulled, Pushed};
use crate::types::spawn::SpawnSpec;
use crate::types::trust::{Signed, SigningKey};

/// Loads APKGs; cheap to clone, safe to share across tasks.
#[derive(Debug, Clone)]
pub struct PackageLoader {
    orchestrator: Arc<Orchestrator>,
}

impl PackageLoader {
    /// Prepares the sandbox (compiling the guest, or loading it from the cache).
    /// Relative paths in `config` are taken from the current directory now:
    /// installer steps run elsewhere, inside their own sandbox.
    ///
    /// # Errors
    ///
    /// - [`LoadError::Io`]: the root, the cache or a find-links path cannot
    ///   be resolved, or the root cannot be made or opened.
    /// - [`LoadError::RootUnsafe`]: another user owns or can write the root,
    ///   one of its areas, or a directory above it.
    /// - [`LoadError::Sandbox`] ([`SandboxError::Engine`]): wasmtime cannot
    ///   start or compile the guest.
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
    ///
    /// # Errors
    ///
    /// - [`LoadError::Package`]: a rule refuses the archive (see
    ///   [`PackageError::kind`]: `archive-unreadable`, `archive-inconsistent`,
    ///   `unsafe-entry`, `limit-exceeded`, `manifest-missing`,
    ///   `manifest-invalid`, `invalid-guest-output`).
    /// - [`LoadError::Sandbox`]: the guest ran out of memory or CPU time,
    ///   panicked or trapped.
    /// - [`LoadError::GuestProtocol`]: the guest called the installer.
    /// - [`LoadError::InvalidInput`] (`archive`): `apkg` is not a regular file.
    /// - [`LoadError::Io`]: `apkg` cannot be read, or staging under the root failed.
    /// - [`LoadError::Internal`]: the blocking task the work runs on failed.
    pub async fn inspect(&self, apkg: impl AsRef<Path>) -> Result<Manifest, LoadError> {
        let this = self.clone();
        let apkg = apkg.as_ref().to_owned();
        run_blocking(move || this.inspect_blocking(&apkg)).await
    }

    /// Extracts the archive in the sandbox and publishes it to
    /// `{root}/packages/{app_id}@{version}`; `app_id` defaults to the manifest name.
    ///
    /// # Errors
    ///
    /// - [`LoadError::InvalidInput`]: `app_id` is not a safe name (`app id`),
    ///   or `apkg` is not a regular file (`archive`).
    /// - [`LoadError::Package`]: a rule refuses the archive (see
    ///   [`PackageError::kind`]: `archive-unreadable`, `archive-inconsistent`,
    ///   `unsafe-entry`, `limit-exceeded`, `manifest-missing`,
    ///   `manifest-invalid`, `write-failed`, `invalid-guest-output`).
    /// - [`LoadError::Sandbox`]: the guest ran out of memory or CPU time,
    ///   panicked or trapped.
    /// - [`LoadError::GuestProtocol`]: the guest called the installer, or
    ///   reported more executables than the archive may hold.
    /// - [`LoadError::DiskFull`]: the root's disk is under `min_free_bytes`,
    ///   or filled up while the tree was written.
    /// - [`LoadError::Io`]: `apkg` cannot be read, or a file operation under
    ///   the root (staging, locking, publishing) failed.
    /// - [`LoadError::Internal`]: the blocking task the work runs on failed.
    pub async fn extract(&self, apkg: impl AsRef<Path>, app_id: Option<&str>) -> Result<ExtractedPackage, LoadError> {
        let this = self.clone();
        let apkg = apkg.as_ref().to_owned();
        let app_id = app_id.map(str::to_owned);
        run_blocking(move || this.extract_blocking(&apkg, app_id.as_deref())).await
    }

    /// The spec's whole flow: extract and validate in the sandbox, publish,
    /// create or reuse the venv, install `requirements.txt`, install the agent
    /// itself in editable mode, and check that the entrypoint imports.
    ///
    /// # Errors
    ///
    /// Every error of [`PackageLoader::extract`], and:
    ///
    /// - [`LoadError::Install`]: creating the venv, installing the
    ///   requirements or installing the agent failed or timed out, or a
    ///   requirement line is refused by the policy.
    /// - [`LoadError::Verification`]: `strict` is set and the entrypoint does not import.
    /// - [`LoadError::GuestProtocol`]: the guest broke the installer protocol
    ///   (calls out of order, unplanned or too large, or a report the host's
    ///   record contradicts).
    /// - [`LoadError::InstallerSandbox`]: `--sandbox bwrap` is asked for and
    ///   bubblewrap cannot confine here.
    /// - [`LoadError::InvalidInput`]: also the interpreter (`python`) or the
    ///   installer (`installer`) cannot be found or used, or `apkg` changed
    ///   while it was read (`archive`).
    /// - [`LoadError::DiskFull`]: also when the disk filled up while installing.
    /// - [`LoadError::Internal`]: a fault of the host itself, or the blocking
    ///   task the work runs on failed.
    pub async fn load_package(&self, apkg: impl AsRef<Path>, app_id: Option<&str>) -> Result<AgentPackage, LoadError> {
        let this = self.clone();
        let apkg = apkg.as_ref().to_owned();
        let app_id = app_id.map(str::to_owned);
        run_blocking(move || this.load_blocking(&apkg, app_id.as_deref())).await
    }

    /// Blocking form of [`PackageLoader::load_package`].
    ///
    /// # Errors
    ///
    /// Every error of [`PackageLoader::extract`], and:
    ///
    /// - [`LoadError::Install`]: creating the venv, installing the
    ///   requirements or installing the agent failed or timed out, or a
    ///   requirement line is refused by the policy.
    /// - [`LoadError::Verification`]: `strict` is set and the entrypoint does not import.
    /// - [`LoadError::GuestProtocol`]: the guest broke the installer protocol
    ///   (calls out of order, unplanned or too large, or a report the host's
    ///   record contradicts).
    /// - [`LoadError::InstallerSandbox`]: `--sandbox bwrap` is asked for and
    ///   bubblewrap cannot confine here.
    /// - [`LoadError::InvalidInput`]: also the interpreter (`python`) or the
    ///   installer (`installer`) cannot be found or used, or `apkg` changed
    ///   while it was read (`archive`).
    /// - [`LoadError::DiskFull`]: also when the disk filled up while installing.
    /// - [`LoadError::Internal`]: a fault of the host itself.
    pub fn load_blocking(&self, apkg: &Path, app_id: Option<&str>) -> Result<AgentPackage, LoadError> {
        self.orchestrator.load(apkg, app_id, None)
    }

    /// [`PackageLoader::load_package`], installing exactly the distributions
    /// of `lock` (a PEP 751 `pylock.toml`, such as the `lock` of an earlier
    /// load) instead of resolving the package's requirements: nothing is
    /// resolved, every file is checked against its hash, and the lock must
    /// hold what every requirement line asks for.
    ///
    /// # Errors
    ///
    /// Every error of [`PackageLoader::load_package`], and
    /// [`LoadError::Lock`]: the lock cannot be read, one of its entries is
    /// malformed or names an index, URL or path the loader's settings and
    /// policy do not allow (`lock-invalid`), or it does not satisfy one of
    /// the package's requirement lines (`lock-unsatisfied`), before anything
    /// is installed.
    pub async fn load_locked(
        &self,
        apkg: impl AsRef<Path>,
        app_id: Option<&str>,
        lock: impl AsRef<Path>,
    ) -> Result<AgentPackage, LoadError> {
        let this = self.clone();
        let (apkg, lock) = (apkg.as_ref().to_owned(), lock.as_ref().to_owned());
        let app_id = app_id.map(str::to_owned);
        run_blocking(move || this.load_locked_blocking(&apkg, app_id.as_deref(), &lock)).await
    }

    /// Resolves the package's requirements and its build backend's
    /// requirements for this loader's interpreter and index settings,
    /// installing nothing (the installer steps run confined, as a load's),
    /// and returns the PEP 751 locks: what [`PackageLoader::load_locked`]
    /// then installs exactly, on any node.
    ///
    /// # Errors
    ///
    /// Every error of [`PackageLoader::inspect`], and [`LoadError::Install`]
    /// when a resolution fails (a requirement no index satisfies), a
    /// refused requirement line, or [`LoadError::GuestProtocol`].
    pub async fn lock(&self, apkg: impl AsRef<Path>) -> Result<ResolvedLock, LoadError> {
        let this = self.clone();
        let apkg = apkg.as_ref().to_owned();
        run_blocking(move || this.lock_blocking(&apkg)).await
    }

    /// Blocking form of [`PackageLoader::lock`].
    ///
    /// # Errors
    ///
    /// As [`PackageLoader::lock`].
    pub fn lock_blocking(&self, apkg: &Path) -> Result<ResolvedLock, LoadError> {
        self.orchestrator.lock(apkg)
    }

    /// Writes an offline bundle of `apkg` to `output` (which must end in
    /// `.parb`): the package, its locks (resolved as [`PackageLoader::lock`]
    /// resolves them), every file they name (fetched once, each checked
    /// against the lock's SHA-256), its SBOM and, with `key`, its signature
    /// (`agent.apkg.minisig` inside, `{output}.minisig` beside). Loading
    /// the bundle then needs no index and no network.
    ///
    /// # Errors
    ///
    /// Every error of [`PackageLoader::lock`]; [`LoadError::Bundle`] when a
    /// lock names what a bundle cannot hold (a checkout); [`LoadError::Install`]
    /// when a file cannot be fetched; [`LoadError::Io`] when the bundle
    /// cannot be written.
    pub fn bundle_blocking(
        &self,
        apkg: &Path,
        output: &Path,
        key: Option<&SigningKey>,
    ) -> Result<WrittenBundle, LoadError> {
        self.orchestrator.bundle(apkg, output, key)
    }

    /// Pushes a bundle; see [`PackageLoader::push_blocking`].
    ///
    /// # Errors
    ///
    /// As [`PackageLoader::push_blocking`].
    pub async fn push(&self, parb: &Path, reference: &str) -> Result<Pushed, LoadError> {
        let (this, parb, reference) = (self.clone(), parb.to_owned(), reference.to_owned());
        run_blocking(move || this.push_blocking(&parb, &reference)).await
    }

    /// Pulls a bundle; see [`PackageLoader::pull_blocking`].
    ///
    /// # Errors
    ///
    /// As [`PackageLoader::pull_blocking`].
    pub async fn pull(&self, reference: &str, output: &Path) -> Result<Pulled, LoadError> {
        let (this, reference, output) = (self.clone(), reference.to_owned(), output.to_owned());
        run_blocking(move || this.pull_blocking(&reference, &output)).await
    }

    /// Pushes the offline bundle `parb` (from [`PackageLoader::bundle_blocking`])
    /// to the registry `reference` (`REGISTRY/REPO:TAG`) as an OCI artifact:
    /// one blob per member, so bundles that share wheels share blobs, and
    /// only the blobs the registry lacks are uploaded. The bundle's
    /// signature beside it (`{parb}.minisig`) travels with it.
    ///
    /// # Errors
    ///
    /// [`LoadError::Registry`] for a bad reference, a registry that cannot
    /// be reached, refuses access or an upload, or the deadline
    /// ([`crate::RegistryConfig::deadline`]); [`LoadError::Bundle`] (and every
    /// archive error) when the bundle is refused, or was not laid out by
    /// `par bundle`; [`LoadError::Io`] when a file cannot be read.
    pub fn push_blocking(&self, parb: &Path, reference: &str) -> Result<Pushed, LoadError> {
        self.orchestrator.push(parb, reference)
    }

    /// Pulls the bundle at `reference` (`REGISTRY/REPO:TAG` or
    /// `REGISTRY/REPO@sha256:…`) into `output` (ending in `.parb`), and its
    /// signature beside it when it has one. Every blob is checked against
    /// the manifest's size and digest, and the bundle against the digest
    /// the manifest names, before it is renamed into place: a failed pull
    /// leaves nothing at `output`.
    ///
    /// # Errors
    ///
    /// [`LoadError::Registry`]: as for a push, and a manifest or blob
    /// refused ([`crate::RegistryError::Manifest`], [`crate::RegistryError::Blob`]);
    /// [`LoadError::InvalidInput`] when `output` does not end in `.parb`;
    /// [`LoadError::Io`] when the bundle cannot be written.
    pub fn pull_blocking(&self, reference: &str, output: &Path) -> Result<Pulled, LoadError> {
        self.orchestrator.pull(reference, output)
    }

    /// Blocking form of [`PackageLoader::load_locked`].
    ///
    /// # Errors
    ///
    /// As [`PackageLoader::load_locked`].
    pub fn load_locked_blocking(
        &self,
        apkg: &Path,
        app_id: Option<&str>,
        lock: &Path,
    ) -> Result<AgentPackage, LoadError> {
        self.orchestrator.load(apkg, app_id, Some(lock))
    }

    /// Blocking form of [`PackageLoader::inspect`], for callers outside an async runtime.
    ///
    /// # Errors
    ///
    /// - [`LoadError::Package`]: a rule refuses the archive (see
    ///   [`PackageError::kind`]: `archive-unreadable`, `archive-inconsistent`,
    ///   `unsafe-entry`, `limit-exceeded`, `manifest-missing`,
    ///   `manifest-invalid`, `invalid-guest-output`).
    /// - [`LoadError::Sandbox`]: the guest ran out of memory or CPU time,
    ///   panicked or trapped.
    /// - [`LoadError::GuestProtocol`]: the guest called the installer.
    /// - [`LoadError::InvalidInput`] (`archive`): `apkg` is not a regular file.
    /// - [`LoadError::Io`]: `apkg` cannot be read, or staging under the root failed.
    pub fn inspect_blocking(&self, apkg: &Path) -> Result<Manifest, LoadError> {
        self.orchestrator.inspect(apkg)
    }

    /// Starts `package`'s agent (loaded by this loader) in the sandbox, on
    /// sockets par binds first, and returns once it runs; then
    /// [`AgentProcess::wait_ready`] waits until it is ready.
    ///
    /// # Errors
    ///
    /// - [`SpawnError::InvalidSpec`]: no command, a socket name that is
    ///   invalid or given twice, a health check on no socket, or a package
    ///   this loader did not publish.
    /// - [`SpawnError::EnvRefused`], [`SpawnError::EnvValue`]: the manifest,
    ///   the package's `.env` or the caller sets a variable that is refused,
    ///   or a value that cannot be a variable's.
    /// - [`SpawnError::EnvFile`], [`SpawnError::EnvFileSandbox`]: the
    ///   package's `.env` is refused, or reading it in the sandbox failed.
    /// - [`SpawnError::Bind`]: a socket cannot be bound.
    /// - [`SpawnError::SandboxUnavailable`]: `bwrap` is asked for and cannot
    ///   confine here.
    /// - [`SpawnError::Io`]: locking the app, opening the tree, making the
    ///   state directory or starting the process failed.
    /// - [`SpawnError::Io`] also when the blocking task the work runs on failed.
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
    ///
    /// # Errors
    ///
    /// - [`SpawnError::InvalidSpec`]: no command, a socket name that is
    ///   invalid or given twice, a health check on no socket, or a package
    ///   this loader did not publish.
    /// - [`SpawnError::EnvRefused`], [`SpawnError::EnvValue`]: the manifest,
    ///   the package's `.env` or the caller sets a variable that is refused,
    ///   or a value that cannot be a variable's.
    /// - [`SpawnError::EnvFile`], [`SpawnError::EnvFileSandbox`]: the
    ///   package's `.env` is refused, or reading it in the sandbox failed.
    /// - [`SpawnError::Bind`]: a socket cannot be bound.
    /// - [`SpawnError::SandboxUnavailable`]: `bwrap` is asked for and cannot
    ///   confine here.
    /// - [`SpawnError::Io`]: locking the app, opening the tree, making the
    ///   state directory or starting the process failed.
    pub fn spawn_blocking(&self, package: &AgentPackage, spec: SpawnSpec) -> Result<AgentProcess, SpawnError> {
        self.orchestrator.spawn(package, spec).map(AgentProcess::new)
    }

    /// Every app under the root: its deployments (current or not, in use by
    /// an agent or not) with their sizes, and the build environments.
    ///
    /// # Errors
    ///
    /// [`LifecycleError::Io`] when the blocking task the work runs on fails;
    /// what cannot be read under the root is left out of the listing instead.
    pub async fn list(&self) -> Result<Listing, LifecycleError> {
        let this = self.clone();
        run_lifecycle(move || this.list_blocking()).await
    }

    /// Blocking form of [`PackageLoader::list`].
    ///
    /// # Errors
    ///
    /// None at present: what cannot be read under the root is left out of
    /// the listing. The `Result` leaves room for failures to come.
    pub fn list_blocking(&self) -> Result<Listing, LifecycleError> {
        self.orchestrator.list()
    }

    /// The SBOM (CycloneDX 1.5 JSON) of the app's most recently loaded
    /// deployment, or of its most recent one of `version`: what its venv
    /// holds, the agent as the root component.
    ///
    /// # Errors
    ///
    /// - [`LifecycleError::InvalidInput`]: `app_id` is not a safe name.
    /// - [`LifecycleError::NotFound`]: no deployment of the app (or that
    ///   version) with an SBOM is under the root.
    /// - [`LifecycleError::Io`]: the SBOM cannot be read.
    pub fn sbom_blocking(&self, app_id: &str, version: Option<&str>) -> Result<String, LifecycleError> {
        self.orchestrator.sbom(app_id, version)
    }

    /// Removes an app (or one `version` of it): trees, links, venvs and
    /// records. Refuses while an agent uses them, unless `force`, which
    /// stops that agent first.
    ///
    /// # Errors
    ///
    /// - [`LifecycleError::InvalidInput`]: `app_id` is not a safe name.
    /// - [`LifecycleError::NotFound`]: nothing of the app (or that version) is under the root.
    /// - [`LifecycleError::InUse`]: a running agent uses it and `force` is not set.
    /// - [`LifecycleError::Stop`]: with `force`, an agent would not stop.
    /// - [`LifecycleError::Io`]: locking the app or making the trash
    ///   directory failed.
    ///   Also [`LifecycleError::Io`] when the blocking task the work runs on failed.
    pub async fn remove(&self, app_id: &str, version: Option<&str>, force: bool) -> Result<Collection, LifecycleError> {
        let this = self.clone();
        let (app_id, version) = (app_id.to_owned(), version.map(str::to_owned));
        run_lifecycle(move || this.remove_blocking(&app_id, version.as_deref(), force)).await
    }

    /// Blocking form of [`PackageLoader::remove`].
    ///
    /// # Errors
    ///
    /// - [`LifecycleError::InvalidInput`]: `app_id` is not a safe name.
    /// - [`LifecycleError::NotFound`]: nothing of the app (or that version) is under the root.
    /// - [`LifecycleError::InUse`]: a running agent uses it and `force` is not set.
    /// - [`LifecycleError::Stop`]: with `force`, an agent would not stop.
    /// - [`LifecycleError::Io`]: locking the app or making the trash
    ///   directory failed.
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
    ///
    /// # Errors
    ///
    /// [`LifecycleError::Io`] when an app cannot be locked or the trash
    /// directory cannot be made. What cannot be removed is logged and left,
    /// not an error.
    /// Also [`LifecycleError::Io`] when the blocking task the work runs on failed.
    pub async fn gc(&self, options: GcOptions) -> Result<Collection, LifecycleError> {
        let this = self.clone();
        run_lifecycle(move || this.gc_blocking(&options)).await
    }

    /// Blocking form of [`PackageLoader::gc`].
    ///
    /// # Errors
    ///
    /// [`LifecycleError::Io`] when an app cannot be locked or the trash
    /// directory cannot be made. What cannot be removed is logged and left,
    /// not an error.
    pub fn gc_blocking(&self, options: &GcOptions) -> Result<Collection, LifecycleError> {
        self.orchestrator.gc(options)
    }

    /// Checks that `apkg` carries a valid minisign signature (`{apkg}.minisig`)
    /// by one of the configured trusted keys, and that its manifest names
    /// the package the signature was made for; what the signature vouches for.
    ///
    /// # Errors
    ///
    /// - [`LoadError::InvalidInput`]: no trusted keys are configured, or
    ///   `apkg` is not a regular file.
    /// - [`LoadError::Signature`]: the signature is missing
    ///   (`signature-missing`), or not valid, by another key, or made for
    ///   another package (`signature-invalid`).
    /// - [`LoadError::Package`], [`LoadError::Sandbox`]: the manifest could
    ///   not be read, as for [`PackageLoader::inspect`].
    pub fn verify_blocking(&self, apkg: &Path) -> Result<Signed, LoadError> {
        self.orchestrator.verify(apkg)
    }

    /// Signs `apkg` with `key` for the package its manifest names (the
    /// trusted comment `name=NAME version=VERSION`) and writes the detached
    /// signature `{apkg}.minisig` beside it, in minisign's format.
    ///
    /// # Errors
    ///
    /// - [`LoadError::InvalidInput`]: `apkg` is not a regular file, or the
    ///   key cannot sign.
    /// - [`LoadError::Package`], [`LoadError::Sandbox`]: the archive is
    ///   refused, as by [`PackageLoader::inspect`]: only a package that
    ///   would load is signed.
    /// - [`LoadError::Io`]: the signature cannot be written.
    pub fn sign_blocking(&self, apkg: &Path, key: &SigningKey) -> Result<Signed, LoadError> {
        self.orchestrator.sign(apkg, key)
    }

    /// Blocking form of [`PackageLoader::extract`].
    ///
    /// # Errors
    ///
    /// - [`LoadError::InvalidInput`]: `app_id` is not a safe name (`app id`),
    ///   or `apkg` is not a regular file (`archive`).
    /// - [`LoadError::Package`]: a rule refuses the archive (see
    ///   [`PackageError::kind`]: `archive-unreadable`, `archive-inconsistent`,
    ///   `unsafe-entry`, `limit-exceeded`, `manifest-missing`,
    ///   `manifest-invalid`, `write-failed`, `invalid-guest-output`).
    /// - [`LoadError::Sandbox`]: the guest ran out of memory or CPU time,
    ///   panicked or trapped.
    /// - [`LoadError::GuestProtocol`]: the guest called the installer, or
    ///   reported more executables than the archive may hold.
    /// - [`LoadError::DiskFull`]: the root's disk is under `min_free_bytes`,
    ///   or filled up while the tree was written.
    /// - [`LoadError::Io`]: `apkg` cannot be read, or a file operation under
    ///   the root (staging, locking, publishing) failed.
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
