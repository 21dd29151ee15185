//! What `list`, `remove` and `gc` return: the same structures the CLI
//! prints with `--json`. Times are seconds since the Unix epoch; sizes are
//! bytes on disk (allocated blocks), each hard-linked file counted once.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::trust::Signed;

/// Everything under a root, app by app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// The loader root.
    pub root: PathBuf,
    /// Every app with a tree, venv, link or record under the root, by name.
    pub apps: Vec<AppListing>,
    /// Build environments in par's cache, with the venvs of this root built with each.
    pub build_environments: Vec<BuildEnvironment>,
    /// Agents started from this root that are still running.
    pub agents: Vec<RunningAgent>,
    /// Everything in the root's areas, as `du` counts it.
    pub root_bytes: u64,
}

/// One app's deployments, most recently loaded first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppListing {
    /// The app id.
    pub app_id: String,
    /// Its deployments, most recently loaded first (the first is the current one).
    pub deployments: Vec<DeploymentListing>,
    /// Venvs of the app that no deployment's record names (left by an
    /// interrupted or superseded load): `gc` removes them.
    pub orphan_venvs: Vec<PathBuf>,
}

/// One published tree and what belongs to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentListing {
    /// The manifest's version.
    pub version: String,
    /// The first 16 hex digits of the archive's SHA-256.
    pub digest: String,
    /// `{root}/trees/{app_id}@{version}.{digest}`.
    pub path: PathBuf,
    /// `{root}/packages/{app_id}@{version}`, when it points at this tree.
    pub link: Option<PathBuf>,
    /// The venv its record names (none for a tree `extract` published).
    pub venv: Option<PathBuf>,
    /// That venv's lock, `{venv}/pylock.toml`: what it holds (see `AgentPackage::lock`).
    pub lock: Option<PathBuf>,
    /// That venv's SBOM, `{venv}/sbom.cdx.json` (see `AgentPackage::sbom`).
    pub sbom: Option<PathBuf>,
    /// The tree's size.
    pub tree_bytes: u64,
    /// The venv's size (0 without one).
    pub venv_bytes: u64,
    /// When it was last loaded (a full load, or an unchanged redeploy).
    pub last_loaded: u64,
    /// Whether it is the app's most recently loaded deployment, which `gc` always keeps.
    pub current: bool,
    /// Host pids of the running agents started from it.
    pub agents: Vec<u32>,
    /// Who signed the archive, when the loader that loaded it trusted keys.
    pub signed: Option<Signed>,
}

/// A build environment (one generation) in par's cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildEnvironment {
    /// Its directory.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// When it was finished.
    pub finished: u64,
    /// The venvs of this root whose editable build ran in it.
    pub users: Vec<PathBuf>,
}

/// An agent started by `par run` or `spawn`, still running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunningAgent {
    /// Its host pid (bubblewrap's, when sandboxed).
    pub pid: u32,
    /// The pid of the loader that started it and watches it.
    pub owner: u32,
    /// Its app.
    pub app_id: String,
    /// The tree it runs from.
    pub path: PathBuf,
    /// The venv it runs with.
    pub venv: PathBuf,
    /// When it started.
    pub started: u64,
}

/// What `gc` should keep and what it may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// Deployments kept per app: the most recently loaded ones. The current
    /// one is kept even at 0.
    pub keep: usize,
    /// After that, least recently used deployments (never an app's current
    /// one) are removed until the root takes at most this many bytes.
    pub max_bytes: Option<u64>,
    /// Only what was last loaded longer ago than this is removed.
    pub older_than: Option<Duration>,
    /// Report what would be removed, and change nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            keep: 2,
            max_bytes: None,
            older_than: None,
            dry_run: false,
        }
    }
}

/// What a `gc` or `remove` removed (or, with `dry_run`, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Collection {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Every item removed.
    pub removed: Vec<Removed>,
    /// Apps passed over because a load or agent start held them.
    pub busy_apps: Vec<String>,
    /// Host pids of the agents stopped first (`remove --force`).
    pub stopped_agents: Vec<u32>,
    /// The size of everything removed.
    pub bytes_removed: u64,
    /// What the disk got back: files also linked from elsewhere (an
    /// installer's cache, a kept venv) are removed but not freed.
    pub bytes_freed: u64,
    /// The root's size before.
    pub root_bytes_before: u64,
    /// The root's size after (as it would be, with `dry_run`).
    pub root_bytes_after: u64,
}

/// One thing removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// What it was.
    pub kind: RemovedKind,
    /// Its app, when it belongs to one.
    pub app_id: Option<String>,
    /// Where it was.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Why it went.
    pub reason: Reason,
}

/// The kinds of things `gc` and `remove` remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemovedKind {
    /// A published package tree.
    Tree,
    /// A venv.
    Venv,
    /// A record of a load.
    Record,
    /// An app's link under `packages/`.
    Link,
    /// A build environment in par's cache.
    BuildEnvironment,
    /// Something par never makes there (a planted symlink, a stray file): removed as itself, never followed.
    Stray,
}

/// Why something was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Beyond the deployments `keep` asks for.
    Keep,
    /// Least recently used while the root was over its budget.
    Budget,
    /// Belongs to nothing kept.
    Unused,
    /// `remove` asked for it.
    Requested,
}
