//! par: a sandboxed APKG loader for agent runtimes.
//!
//! An APKG is a zip archive holding an agent's `agent.yaml` and Python code.
//! Every byte of it is untrusted, so all reading, extraction and manifest
//! parsing happens inside a WASI component (the guest, built from `guest/`)
//! that wasmtime runs with a memory cap, a CPU-time cap and exactly two
//! preopened directories. This crate is the trusted host: it runs the guest,
//! re-checks everything the guest returns, and publishes package trees
//! atomically. The trust boundary is the WIT in `wit/`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), par::LoadError> {
//! let loader = par::PackageLoader::new(par::LoaderConfig::with_root("/tmp/pixell-runtime"))?;
//! let package = loader.extract("agent.apkg", Some("my-app")).await?;
//! println!("{} is in {}", package.package_id, package.path.display());
//! # Ok(()) }
//! ```

mod cache_dir;
pub mod config;
pub mod confine;
mod editable;
pub mod error;
mod install_step;
pub mod installer;
mod interpreter;
mod loader;
mod package;
pub mod process;
mod redeploy;
pub mod requirements;
mod root;
mod sandbox;
mod staging;
mod venv;

pub use config::{DEFAULT_ROOT, Limits, LoaderConfig};
pub use config::{IndexConfig, InstallConfig, InstallerChoice};
pub use confine::{NetworkChoice, SandboxChoice};
pub use error::InstallFailure;
pub use error::{
    ArchiveInconsistent, EntryProblem, Inconsistency, InstallError, IoFailure, LimitExceeded, LimitKind,
    ManifestInvalid, RefusedRequirement, StepFailure, UnsafeEntry,
};
pub use error::{GuestProtocolError, InstallCall, LoadError, PackageError, SandboxError};
pub use loader::PackageLoader;
pub use package::{AgentPackage, Entrypoint, ExtractedPackage, Manifest, Timings};
pub use requirements::RequirementPolicy;
