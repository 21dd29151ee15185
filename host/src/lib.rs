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
//!
//! # Layers
//!
//! Each layer uses only the layers below it (`tests/layering.rs` holds the
//! code to this), and the folders are the layers, top to bottom:
//!
//! - **API**: [`PackageLoader`] (`loader.rs`), the async and blocking entry
//!   points, and [`AgentProcess`] (`agent.rs`), an agent it started.
//! - **Orchestration** (`load/`): the steps of `inspect`, `extract` and `load`, in order.
//! - **Boundary** (`sandbox/`): wasmtime, the WIT bindings and the imports the
//!   guest calls; the only place generated types appear, and where every
//!   request is checked against the host's own protocol.
//! - **Mechanisms**: installing (`install/`: installer back ends, editable
//!   builds, the interpreter, the requirement policy), running processes
//!   (`exec/`: subprocesses with limits, bubblewrap), and files under the
//!   root (`fs/`: the root's handles, staging, venvs, records, the cache).
//! - **Vocabulary** (`types/`): configuration, errors and results: plain
//!   data every layer speaks and the API returns, depending on nothing above.

mod agent;
mod exec;
mod fs;
#[doc(hidden)]
pub mod fuzzing;
mod install;
mod load;
mod loader;
mod registry;
mod sandbox;
mod trust;
mod types;

pub use agent::AgentProcess;

/// What the seccomp filter of every confined step and agent refuses, and
/// why ([`seccomp::REFUSED`]): for auditors, and for tests that try each.
pub mod seccomp {
    pub use crate::exec::seccomp::{Answer, REFUSED, Refusal, When};
}
pub use install::requirements;
pub use loader::PackageLoader;
pub use trust::signature::generate_keys;
pub use types::config::{
    ARCHIVE_SETTLE_TIME, Choice, DEFAULT_PASS_ENV, DEFAULT_ROOT, IndexConfig, InstallConfig, InstallerChoice, Limits,
    LoaderConfig, NetworkChoice, RequirementPolicy, ResourceLimits, SandboxChoice, SandboxLimits,
};
pub use types::error::{
    ArchiveInconsistent, BundleRefused, EntryProblem, EnvFileRefused, GuestProtocolError, Inconsistency, InstallCall,
    InstallError, InstallFailure, IoFailure, LifecycleError, LimitExceeded, LimitKind, LoadError, LockRefused,
    ManifestInvalid, NoCommand, PackageError, RefusedRequirement, SandboxError, SpawnError, StepFailure, UnsafeDir,
    UnsafeEntry,
};
pub use types::lifecycle::{
    AppListing, BuildEnvironment, Collection, DeploymentListing, GcOptions, Listing, Reason, Removed, RemovedKind,
    RunningAgent,
};
pub use types::package::{
    AgentPackage, DataAccess, Deploy, Entrypoint, ExtractedPackage, Manifest, Permissions, RegistrySource,
    ResolvedLock, Timings, WrittenBundle,
};
pub use types::registry::{Pulled, Pushed, RegistryConfig, RegistryError};
pub use types::spawn::{
    AgentNetwork, BoundSocket, Endpoint, EnvSource, HealthCheck, Listen, MAX_UNIX_PATH_BYTES, SpawnSpec,
};
pub use types::trust::{KeyError, SignatureError, Signed, SigningKey, TrustedKey};
