//! `par push` and `par pull`: bundles to and from OCI registries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use par::{LoaderConfig, PackageLoader};

use super::output::print_result;

/// How to reach registries.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Registry")]
pub(crate) struct RegistryArgs {
    /// Speak plain HTTP to this registry (HOST:PORT), as for one on
    /// loopback; every other registry is HTTPS only. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure: Vec<String>,
    /// Take registry logins from this Docker/Podman config.json instead
    /// of REGISTRY_AUTH_FILE, Podman's auth.json, DOCKER_CONFIG or
    /// ~/.docker/config.json.
    #[arg(long = "registry-auth", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Give up a push or pull after this many seconds in all.
    #[arg(long = "registry-timeout", value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
}

impl RegistryArgs {
    /// Puts the settings into the configuration.
    pub(crate) fn apply(&self, config: &mut LoaderConfig) {
        let mut registry = config.registry.clone().deadline(Duration::from_secs(self.timeout));
        for host in &self.insecure {
            registry = registry.insecure_registry(host.clone());
        }
        if let Some(file) = &self.auth_file {
            registry = registry.auth_file(file.clone());
        }
        config.registry = registry;
    }
}

/// `par push BUNDLE REFERENCE`.
pub(crate) async fn push(json: bool, loader: &PackageLoader, bundle: &Path, reference: &str) -> anyhow::Result<()> {
    let pushed = loader.push(bundle, reference).await?;
    print_result(json, &pushed, || {
        format!(
            "Pushed {} ({} of {} blobs uploaded)\n{}",
            bundle.display(),
            pushed.uploaded,
            pushed.blobs,
            pushed.reference
        )
    })
}

/// `par pull REFERENCE -o BUNDLE`.
pub(crate) async fn pull(json: bool, loader: &PackageLoader, reference: &str, output: &Path) -> anyhow::Result<()> {
    let pulled = loader.pull(reference, output).await?;
    print_result(json, &pulled, || {
        let signed = match &pulled.signature {
            Some(path) => format!("\n  signature: {}", path.display()),
            None => String::new(),
        };
        format!("Pulled {} ({}){signed}", pulled.path.display(), pulled.digest)
    })
}
