//! Registry settings, results and errors for `par push`, `par pull` and
//! loads from `oci://` references.

use std::path::PathBuf;
use std::time::Duration;

/// How par talks to OCI registries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// Registries (`HOST:PORT`) spoken to over plain HTTP; every other is
    /// HTTPS only, so plain HTTP is something the operator names.
    pub insecure: Vec<String>,
    /// A Docker/Podman `config.json` (or `auth.json`) to take credentials
    /// from, instead of the usual places (`REGISTRY_AUTH_FILE`, Podman's
    /// `auth.json`, `DOCKER_CONFIG`, `~/.docker/config.json`).
    pub auth_file: Option<PathBuf>,
    /// One deadline for a whole push or pull: a stalled registry fails it
    /// rather than holding a load forever.
    pub deadline: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            auth_file: None,
            deadline: Duration::from_secs(600),
        }
    }
}

impl RegistryConfig {
    /// Speaks plain HTTP to `host` (`HOST:PORT`), as for a registry on loopback.
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        self.insecure.push(host.into());
        self
    }

    /// Takes credentials from `path` (a `config.json`).
    pub fn auth_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth_file = Some(path.into());
        self
    }

    /// Sets the deadline of a push or pull.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }
}

/// A bundle pushed to a registry.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct Pushed {
    /// Where, with the manifest's digest (`REGISTRY/REPO:TAG@sha256:…`).
    pub reference: String,
    /// The manifest's digest, which names this bundle in any registry.
    pub digest: String,
    /// How many blobs were uploaded (the others were there already).
    pub uploaded: usize,
    /// How many blobs the manifest names.
    pub blobs: usize,
    /// The digest of the referrer carrying the bundle's signature, where
    /// the registry has the OCI 1.1 referrers API (the signature is a layer
    /// of the bundle's artifact either way).
    pub signature_referrer: Option<String>,
}

/// A bundle pulled from a registry.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct Pulled {
    /// The bundle written.
    pub path: PathBuf,
    /// The manifest's digest the tag resolved to.
    pub digest: String,
    /// The bundle's signature written beside it, when the artifact has one.
    pub signature: Option<PathBuf>,
}

/// Why a push or pull failed; the registry is as untrusted as a package,
/// so each refusal names the blob or field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The reference cannot be parsed.
    #[error("invalid registry reference `{reference}`: {problem}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The registry could not be reached, or the connection failed.
    #[error("registry `{registry}`: {detail}")]
    Unreachable {
        /// `HOST:PORT`.
        registry: String,
        /// What failed.
        detail: String,
    },
    /// The registry asked for credentials par has not, or refused them.
    #[error(
        "registry `{registry}` refused access to `{repository}`: {detail} (hint: log in with `docker login` or pass --registry-auth)"
    )]
    Unauthorized {
        /// `HOST:PORT`.
        registry: String,
        /// The repository.
        repository: String,
        /// What the registry said.
        detail: String,
    },
    /// The registry answered a request with an error.
    #[error("`{reference}`: {what} failed with HTTP {status}: {detail}")]
    Status {
        /// The reference.
        reference: String,
        /// Which request (`manifest`, `blob sha256:…`, …).
        what: String,
        /// The HTTP status.
        status: u16,
        /// The start of the registry's answer.
        detail: String,
    },
    /// The manifest is not a bundle par can take.
    #[error("`{reference}`: manifest refused: {problem}")]
    Manifest {
        /// The reference.
        reference: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A blob differs from what the manifest says of it.
    #[error("`{reference}`: blob `{blob}` ({digest}) refused: {problem}")]
    Blob {
        /// The reference.
        reference: String,
        /// The bundle member the blob holds.
        blob: String,
        /// Its digest in the manifest.
        digest: String,
        /// What is wrong (size, digest).
        problem: String,
    },
    /// The push or pull took longer than [`RegistryConfig::deadline`].
    #[error("`{reference}`: not done within the deadline of {seconds} s")]
    Deadline {
        /// The reference.
        reference: String,
        /// The deadline.
        seconds: u64,
    },
    /// A credentials file cannot be read.
    #[error("credentials file `{}`: {problem}", path.display())]
    AuthFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

impl RegistryError {
    /// The blob holding `blob` (`digest` in the manifest of `reference`) refused.
    pub(crate) fn blob(reference: &impl std::fmt::Display, blob: &str, digest: &str, problem: String) -> Self {
        RegistryError::Blob {
            reference: reference.to_string(),
            blob: blob.to_owned(),
            digest: digest.to_owned(),
            problem,
        }
    }

    /// A stable, kebab-case name for machine output.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::Reference { .. } => "registry-reference",
            RegistryError::Unreachable { .. } => "registry-unreachable",
            RegistryError::Unauthorized { .. } => "registry-unauthorized",
            RegistryError::Status { .. } => "registry-status",
            RegistryError::Manifest { .. } => "registry-manifest",
            RegistryError::Blob { .. } => "registry-blob",
            RegistryError::Deadline { .. } => "registry-deadline",
            RegistryError::AuthFile { .. } => "registry-auth-file",
        }
    }

    /// Whether what the registry holds is at fault (a manifest or blob par
    /// refuses), rather than the way to it.
    pub fn is_content_fault(&self) -> bool {
        matches!(self, RegistryError::Manifest { .. } | RegistryError::Blob { .. })
    }

    /// The blob at fault, if the error names one.
    pub fn subject(&self) -> Option<&str> {
        match self {
            RegistryError::Blob { blob, .. } => Some(blob),
            _ => None,
        }
    }
}
