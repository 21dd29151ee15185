//! [`PackageLoader`]: the embedding API. Every archive byte is handled by the
//! sandboxed guest; the loader stages, checks what comes back, and publishes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::config::LoaderConfig;
use crate::error::{LoadError, PackageError};
use crate::sandbox::{ExtractOptions, GuestManifest, Preopens, Sandbox};
use crate::staging::{PackageLock, Staging, normalize_modes, sweep_abandoned};
use crate::validate::{is_dotted_identifier, is_safe_component};

/// Largest manifest document (as JSON) the host accepts back from the guest.
const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// A validated `agent.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// Package name (a safe path component).
    pub name: String,
    /// Version as written in the manifest (a safe path component).
    pub version: String,
    /// The entrypoint the runtime starts, if the manifest names one.
    pub entrypoint: Option<Entrypoint>,
    /// The whole manifest as JSON, unknown fields included.
    pub document: serde_json::Value,
}

/// A Python entrypoint, `module.path:attr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entrypoint {
    /// Dotted module path.
    pub module: String,
    /// Attribute after `:`, if any.
    pub attr: Option<String>,
}

/// A package tree published under the root.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtractedPackage {
    /// `{name}@{version}` from the manifest.
    pub package_id: String,
    /// The app id the package was published under (defaults to the name).
    pub app_id: String,
    /// `{root}/packages/{app_id}@{version}`.
    pub path: PathBuf,
    /// The validated manifest.
    pub manifest: Manifest,
    /// Regular files written.
    pub files: u32,
    /// Directory entries in the archive.
    pub dirs: u32,
    /// Uncompressed bytes written.
    pub bytes: u64,
}

/// Loads APKGs; cheap to clone, safe to share across tasks.
#[derive(Debug, Clone)]
pub struct PackageLoader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: LoaderConfig,
    sandbox: Sandbox,
}

impl PackageLoader {
    /// Prepares the sandbox (compiling the guest, or loading it from the cache).
    pub fn new(config: LoaderConfig) -> Result<Self, LoadError> {
        let started = Instant::now();
        let sandbox = Sandbox::new(config.component_cache.as_deref(), config.sandbox_limits())?;
        sweep_abandoned(&config.root);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "sandbox ready");
        Ok(Self {
            inner: Arc::new(Inner { config, sandbox }),
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

    /// Blocking form of [`PackageLoader::inspect`], for callers outside an async runtime.
    pub fn inspect_blocking(&self, apkg: &Path) -> Result<Manifest, LoadError> {
        let apkg = regular_file(apkg)?;
        tracing::info!(apkg = %apkg.display(), "Inspecting agent package");
        let staging = Staging::create(&self.inner.config.root, &apkg)?;
        let archive_dir = staging.archive_dir();
        let preopens = Preopens {
            archive_dir: &archive_dir,
            package_dir: None,
        };
        let manifest = self.inner.sandbox.inspect(preopens, &self.extract_options())??;
        Ok(check_manifest(manifest)?)
    }

    /// Blocking form of [`PackageLoader::extract`].
    pub fn extract_blocking(&self, apkg: &Path, app_id: Option<&str>) -> Result<ExtractedPackage, LoadError> {
        if let Some(app_id) = app_id {
            check_app_id(app_id)?;
        }
        let apkg = regular_file(apkg)?;
        let root = &self.inner.config.root;
        tracing::info!(apkg = %apkg.display(), "Loading agent package");
        let started = Instant::now();
        let staging = Staging::create(root, &apkg)?;
        let (archive_dir, tree) = (staging.archive_dir(), staging.tree());
        tracing::info!(staging = %tree.display(), "Extracting package");
        let preopens = Preopens {
            archive_dir: &archive_dir,
            package_dir: Some(&tree),
        };
        let report = self.inner.sandbox.extract(preopens, &self.extract_options())??;
        let manifest = check_manifest(report.manifest)?;
        normalize_modes(&tree, &report.executables)?;
        let app_id = app_id.unwrap_or(&manifest.name).to_owned();
        let dir_name = format!("{app_id}@{}", manifest.version);
        let path = root.join("packages").join(&dir_name);
        let _lock = PackageLock::acquire(root, &dir_name)?;
        staging.publish(&path)?;
        let package_id = format!("{}@{}", manifest.name, manifest.version);
        tracing::info!(
            package_id = %package_id,
            path = %path.display(),
            files = report.files,
            bytes = report.bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Package extracted"
        );
        Ok(ExtractedPackage {
            package_id,
            app_id,
            path,
            manifest,
            files: report.files,
            dirs: report.dirs,
            bytes: report.bytes,
        })
    }

    fn extract_options(&self) -> ExtractOptions {
        ExtractOptions {
            limits: self.inner.config.limits,
            enforce_path_rules: self.inner.config.guest_path_rules,
        }
    }
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

/// Re-checks the guest's manifest: names and versions become paths, modules become argv.
fn check_manifest(manifest: GuestManifest) -> Result<Manifest, PackageError> {
    let invalid = |what, detail: String| PackageError::InvalidGuestOutput { what, detail };
    if !is_safe_component(&manifest.name, false) {
        return Err(invalid("manifest name", manifest.name.escape_default().to_string()));
    }
    if !is_safe_component(&manifest.version, true) {
        return Err(invalid(
            "manifest version",
            manifest.version.escape_default().to_string(),
        ));
    }
    let entrypoint = match manifest.entrypoint {
        None => None,
        Some(ep) => {
            let attr_ok = ep
                .attr
                .as_deref()
                .is_none_or(|a| is_dotted_identifier(a) && !a.contains('.'));
            if !is_dotted_identifier(&ep.module) || !attr_ok {
                return Err(invalid(
                    "entrypoint",
                    format!("{}:{:?}", ep.module.escape_default(), ep.attr),
                ));
            }
            Some(Entrypoint {
                module: ep.module,
                attr: ep.attr,
            })
        }
    };
    if manifest.document.len() > MAX_DOCUMENT_BYTES {
        return Err(invalid(
            "manifest document",
            format!("{} bytes", manifest.document.len()),
        ));
    }
    let document: serde_json::Value =
        serde_json::from_str(&manifest.document).map_err(|e| invalid("manifest document", e.to_string()))?;
    if !document.is_object() {
        return Err(invalid("manifest document", "not a JSON object".into()));
    }
    Ok(Manifest {
        name: manifest.name,
        version: manifest.version,
        entrypoint,
        document,
    })
}
