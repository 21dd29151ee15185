//! What a load, an extraction and an inspection return: the crate's own
//! types, which nothing generated from the WIT appears in.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::trust::Signed;

/// A validated `agent.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Package name (a safe path component).
    pub name: String,
    /// Version as written in the manifest (a safe path component).
    pub version: String,
    /// The entrypoint the runtime starts, if the manifest names one.
    pub entrypoint: Option<Entrypoint>,
    /// `http_server`: the ASGI app (`module:app`) PAR serves on the REST
    /// socket, and what `par run` starts when given no command.
    #[serde(default)]
    pub http_server: Option<Entrypoint>,
    /// `a2a.http_server`: the ASGI app serving the agent-to-agent protocol.
    #[serde(default)]
    pub a2a_http_server: Option<Entrypoint>,
    /// `permissions`: what the agent asks its users to grant.
    #[serde(default)]
    pub permissions: Option<Permissions>,
    /// `data_access`: the user data and outside services the agent reaches.
    #[serde(default)]
    pub data_access: Option<DataAccess>,
    /// `deploy.json` beside `agent.yaml`, if the package has one.
    #[serde(default)]
    pub deploy: Option<Deploy>,
    /// The whole manifest as JSON, unknown fields included.
    pub document: serde_json::Value,
}

/// A manifest's `permissions`, as PAK writes them: names for the runtime
/// to show and grant, never acted on by par.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Permissions {
    /// Granted before the agent runs.
    pub required: Vec<String>,
    /// Asked for when a feature needs them.
    pub optional: Vec<String>,
}

/// A manifest's `data_access`, as PAK writes it: what a runtime shows
/// before a user lets the agent in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataAccess {
    /// OAuth providers the agent signs users in with.
    pub oauth_providers: Vec<String>,
    /// Kinds of user data it reads.
    pub user_data: Vec<String>,
    /// Outside APIs it calls.
    pub external_apis: Vec<String>,
}

/// `deploy.json`, as PAK writes it beside `agent.yaml`: how the runtime
/// should serve the agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Deploy {
    /// `expose`: the surfaces served (`rest`, `a2a`, `ui`), in order.
    pub expose: Vec<String>,
    /// `ports`: the port PAK chose for each surface, in name order.
    pub ports: Vec<(String, u16)>,
    /// `multiplex`: whether the surfaces share one server.
    pub multiplex: Option<bool>,
    /// `environment`: variables in name order, as written (`${VAR}` unresolved).
    pub environment: Vec<(String, String)>,
}

/// A Python entrypoint, `module.path:attr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// `{root}/trees/{app_id}@{version}.{digest}`: the tree itself.
    pub path: PathBuf,
    /// `{root}/packages/{app_id}@{version}`: the app's link, now pointing at `path`.
    pub link: PathBuf,
    /// The validated manifest.
    pub manifest: Manifest,
    /// Regular files written.
    pub files: u32,
    /// Directory entries in the archive.
    pub dirs: u32,
    /// Uncompressed bytes written.
    pub bytes: u64,
    /// Who signed it, when the loader trusts keys (see `LoaderConfig::trusted_keys`).
    pub signed: Option<Signed>,
}

/// A loaded agent: what the embedding runtime needs to start it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentPackage {
    /// `{name}@{version}` from the manifest.
    pub package_id: String,
    /// The app id it was published under.
    pub app_id: String,
    /// `{root}/trees/{app_id}@{version}.{digest}`: the package tree the venv
    /// imports from. It stays as it is while this deployment is kept, even
    /// when a later load of another archive switches `link`: start the agent
    /// here (`AGENT_PACKAGE_PATH`).
    pub path: PathBuf,
    /// `{root}/packages/{app_id}@{version}`: a link the host points at the
    /// app's current tree, switched with one rename only when a load has
    /// succeeded; a failed load leaves it, the tree and the venv as they were.
    pub link: PathBuf,
    /// `{root}/venvs/{app_id}_{key}`.
    pub venv_path: PathBuf,
    /// The venv's interpreter: start the agent with it.
    pub python_path: PathBuf,
    /// `{venv_path}/pylock.toml`: what the venv holds, as a PEP 751 lock
    /// written by the host from the installer's own account (every
    /// distribution's version, origin and SHA-256, the agent itself as an
    /// editable directory), so any node can prove or repeat the install.
    pub lock: PathBuf,
    /// `{venv_path}/sbom.cdx.json`: the same as a CycloneDX 1.5 SBOM, the
    /// agent its root component, with the licences each distribution's
    /// metadata declares.
    pub sbom: PathBuf,
    /// The validated manifest.
    pub manifest: Manifest,
    /// The agent was installed as an editable package, so its modules import
    /// without `sys.path` additions; false for old packages without build files.
    pub installed_as_package: bool,
    /// Whether the entrypoint imported in the venv (none without an entrypoint).
    pub verified: Option<bool>,
    /// `pip` or `uv`.
    pub installer: String,
    /// `bwrap` when installer steps ran in the installer sandbox, else `none`.
    pub installer_sandbox: String,
    /// A finished venv was reused (a redeploy): nothing was installed.
    pub venv_reused: bool,
    /// The same archive was loaded before with the same settings, and its
    /// tree and venv were exactly as that load left them: nothing ran at all.
    pub unchanged_redeploy: bool,
    /// Packages installed from `requirements.txt`.
    pub requirements_count: u32,
    /// Milliseconds per step.
    pub timings: Timings,
    /// Who signed the archive, when the loader trusts keys (see
    /// `LoaderConfig::trusted_keys`).
    #[serde(default)]
    pub signed: Option<Signed>,
    /// The registry reference and manifest digest it was pulled by, when
    /// loaded from `oci://…`: pin other nodes to that digest.
    #[serde(default)]
    pub source: Option<RegistrySource>,
}

/// Where a package loaded from a registry came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegistrySource {
    /// The reference as given (`REGISTRY/REPO:TAG` or `…@sha256:…`).
    pub reference: String,
    /// The digest of the manifest it resolved to.
    pub digest: String,
}

/// What `par lock` resolved for a package, installing nothing: PEP 751
/// locks to give a load (`--lock`) or to audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedLock {
    /// The requirements' lock (`pylock.toml`): what a load with it installs.
    pub lock: String,
    /// The lock of the build backend's requirements, when the agent is
    /// built (its `pyproject.toml`, or setuptools' for a `setup.py`).
    pub build_lock: Option<String>,
}

/// An offline bundle `par bundle` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WrittenBundle {
    /// The bundle file.
    pub path: PathBuf,
    /// The package's name, from its manifest.
    pub name: String,
    /// The package's version, from its manifest.
    pub version: String,
    /// The distribution files it holds, by file name.
    pub files: Vec<String>,
    /// Its size.
    pub bytes: u64,
    /// Its signature (and the package's, inside it), when made with a key.
    pub signed: Option<Signed>,
}

/// Milliseconds per step.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Extraction and validation in the sandbox (until publish).
    pub extract_ms: u64,
    /// Creating (or finding) the venv.
    pub venv_ms: u64,
    /// Installing requirements.
    pub requirements_ms: u64,
    /// Installing the agent (with uv, mostly waiting for its build to end).
    pub self_install_ms: u64,
    /// Building the agent's editable wheel with par's frontend, which runs
    /// beside the venv creation and the requirements install (0 when the
    /// installer built it).
    #[serde(default)]
    pub build_ms: u64,
    /// The import check.
    pub verify_ms: u64,
    /// The whole load.
    pub total_ms: u64,
}
