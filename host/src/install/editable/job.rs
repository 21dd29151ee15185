//! What a build is asked to do: the package's build system, and everything
//! the build thread needs, owned.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::fs::cache_dir::CacheDir;
use crate::install::installer::Installer;
use crate::install::step::StepRunner;

/// What the build backend is and needs: `[build-system]` of PEP 517/518.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildSystem {
    /// Requirements of the build environment (PEP 508 strings).
    pub requires: Vec<String>,
    /// `module:object` of the backend.
    pub backend: String,
    /// Directories inside the package the backend is imported from.
    pub backend_path: Vec<String>,
}

/// The backend pip and uv use when none is named.
const LEGACY_BACKEND: &str = "setuptools.build_meta:__legacy__";

impl BuildSystem {
    /// What pip and uv assume without a `[build-system]` table.
    pub(crate) fn setuptools_legacy() -> Self {
        Self {
            requires: vec!["setuptools>=40.8.0".into()],
            backend: LEGACY_BACKEND.into(),
            backend_path: Vec::new(),
        }
    }

    /// A declared `[build-system]`; with no backend named, the legacy one
    /// (with the declared requirements), as PEP 517 frontends do.
    pub(crate) fn declared(requires: Vec<String>, backend: Option<String>, backend_path: Vec<String>) -> Self {
        Self {
            requires,
            backend: backend.unwrap_or_else(|| LEGACY_BACKEND.into()),
            backend_path,
        }
    }
}

/// Everything the build thread needs, owned.
#[derive(Debug)]
pub(crate) struct BuildJob {
    /// Runs the confined steps.
    pub runner: StepRunner,
    /// The installer that creates the build environment.
    pub installer: Arc<dyn Installer>,
    /// The base interpreter's executable.
    pub python: PathBuf,
    /// The base interpreter's identity (part of the environment's key).
    pub python_identity: String,
    /// par's own cache, where build environments live, checked private to
    /// this user once, when the build was planned.
    pub cache_dir: CacheDir,
    /// Age past which a build environment is made anew, so open build
    /// requirements pick up new releases.
    pub max_age: Duration,
    /// The published package.
    pub package: PathBuf,
    /// The backend and its requirements.
    pub system: BuildSystem,
    /// Where the environment's files come from, for its key: the index
    /// options, or what stands for a bundle's files (wherever it was
    /// unpacked).
    pub source: Vec<std::ffi::OsString>,
}
