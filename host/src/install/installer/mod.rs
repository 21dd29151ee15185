//! The two installer back ends behind one trait: `pip` (the spec's commands)
//! and `uv` (much faster). Each only builds argv vectors; running them is
//! [`crate::exec::process`]'s job, checking their inputs is the session's.

mod pip;
mod uv;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub(crate) use pip::Pip;
pub(crate) use uv::Uv;

use crate::exec::process::StepOutput;
use crate::install::pylock::{LOCK, Lock, LockError, Places, REPORT_FILE};

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invocation {
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// The requirement lines of a load: a file the host wrote, and optionally a
/// constraints file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequirementFiles<'a> {
    /// Requirements file.
    pub file: &'a Path,
    /// Constraints file.
    pub constraints: Option<&'a Path>,
}

/// How an installer installs a load's requirements so that the host learns
/// exactly what went in (the venv's lock, [`crate::install::pylock`]).
#[derive(Debug, Clone)]
pub(crate) enum RequirementsPlan {
    /// Resolve into `pylock.toml` in the output directory, then install
    /// exactly that resolution, hashes checked.
    ResolveThenInstall {
        /// Writes the resolution.
        resolve: Invocation,
        /// Installs it.
        install: Invocation,
    },
    /// Install, writing a report of what was installed (`report.json`) in
    /// the output directory.
    InstallWithReport(Invocation),
}

/// What an installer leaves in its output directory for the host, once it
/// resolved (or installed) a load's requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// uv's resolution, `pylock.toml`.
    Pylock,
    /// pip's report of an install, `report.json`.
    PipReport,
}

impl Resolution {
    /// The file it is in, in the installer's output directory.
    pub(crate) fn file(self) -> &'static str {
        match self {
            Resolution::Pylock => LOCK,
            Resolution::PipReport => REPORT_FILE,
        }
    }

    /// Reads it into a lock.
    pub(crate) fn read(self, text: &str, places: Places<'_>) -> Result<Lock, LockError> {
        match self {
            Resolution::Pylock => Lock::from_uv(text, places),
            Resolution::PipReport => Lock::from_pip_report(text, places),
        }
    }
}

/// The files a load given a lock installs from, written by the host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockFiles<'a> {
    /// The lock as PEP 751 (`pylock.toml`), local paths absolute.
    pub pylock: &'a Path,
    /// The same as hash-pinned requirement lines, when any has a hash.
    pub hashed: Option<&'a Path>,
    /// Directories and checkouts, which have no hash to pin.
    pub unhashed: &'a [String],
}

/// What an install step installs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum InstallTarget<'a> {
    /// The load's requirement lines.
    Requirements(RequirementFiles<'a>),
    /// A lock (`pylock.toml`): exactly its distributions, nothing resolved.
    Lock(&'a Path),
    /// The package directory, in editable mode.
    Editable(&'a Path),
    /// A wheel file (the agent's editable wheel, built by par's frontend).
    Wheel(&'a Path),
    /// A wheel file alone, none of its dependencies (a bundle's prebuilt
    /// agent, whose dependencies its lock holds).
    WheelAlone(&'a Path),
    /// A build backend's requirements (a host-written file) into a build
    /// environment, with bytecode compiled: builds see it read-only.
    BuildRequirements(&'a Path),
}

/// One way of creating venvs and installing into them.
pub(crate) trait Installer: Send + Sync + std::fmt::Debug {
    /// `pip` or `uv`: reported in results and part of the venv key.
    fn name(&self) -> &'static str;
    /// The command that creates a venv at `venv` for `python`.
    fn create_venv(&self, python: &Path, venv: &Path) -> Invocation;
    /// The command that installs `target` into `venv`; `index_args` are appended.
    fn install(&self, venv: &Path, target: InstallTarget<'_>, index_args: &[OsString]) -> Invocation;
    /// How the load's requirements go into `venv`, the installer writing
    /// what it resolved or installed into `output`.
    fn install_requirements(
        &self,
        venv: &Path,
        requirements: RequirementFiles<'_>,
        index_args: &[OsString],
        output: &Path,
    ) -> RequirementsPlan;
    /// The commands that resolve `requirements` for `python` into `output`
    /// (a scratch directory they may write), installing nothing, and what
    /// they leave there: what `par lock` writes.
    fn resolve(
        &self,
        python: &Path,
        requirements: RequirementFiles<'_>,
        index_args: &[OsString],
        output: &Path,
    ) -> (Vec<Invocation>, Resolution);
    /// The commands that install exactly the distributions of a lock into
    /// `venv`, resolving nothing.
    fn install_lock(&self, venv: &Path, lock: LockFiles<'_>, index_args: &[OsString]) -> Vec<Invocation>;
    /// The installer's own executable, when it is not the venv's Python
    /// (a confined step must be able to read it).
    fn program(&self) -> Option<PathBuf>;
    /// The environment variable naming the installer's cache, and the
    /// cache's directory name under `$XDG_CACHE_HOME` (or `~/.cache`).
    fn cache(&self) -> (&'static str, &'static str);
    /// How many packages the finished step reports as installed.
    fn packages_installed(&self, output: &StepOutput) -> u32;
    /// Whether the agent may be built by par's own PEP 517 frontend and
    /// installed as a wheel ([`crate::install::editable`]); pip keeps the spec's
    /// `pip install -e .`.
    fn installs_prebuilt_editable(&self) -> bool;
    /// Whether a venv it makes can be copied to another path by writing
    /// that path where the venv names its own
    /// ([`crate::install::venv_template`]); pip's holds pip, installed for
    /// its own path.
    fn venvs_copy(&self) -> bool;

    /// What the installer adds to setuptools' legacy backend's build
    /// requirements when it builds a `setup.py` alone, so a lock of the
    /// build environment holds everything an offline build needs.
    fn legacy_build_extras(&self) -> &'static [&'static str] {
        &[]
    }
}

/// Where the installer keeps its cache: under `configured` when the
/// operator names a directory, else resolved as the tool itself does from the
/// loader's environment; `None` when there is no home to put it in.
pub(crate) fn cache_dir(installer: &dyn Installer, configured: Option<&Path>) -> Option<PathBuf> {
    let (variable, name) = installer.cache();
    if let Some(dir) = configured {
        return Some(dir.join(name));
    }
    let non_empty = |v: &str| std::env::var_os(v).filter(|v| !v.is_empty()).map(PathBuf::from);
    non_empty(variable)
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|d| d.join(name)))
        .or_else(|| non_empty("HOME").map(|d| d.join(".cache").join(name)))
}

/// The interpreter inside a venv.
pub(crate) fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

impl RequirementFiles<'_> {
    /// `-r FILE [-c CONSTRAINTS]`.
    fn args(&self) -> Vec<OsString> {
        let mut args = vec![OsString::from("-r")];
        args.extend(self.compile_args());
        args
    }

    /// `FILE [-c CONSTRAINTS]`, as `uv pip compile` takes them.
    fn compile_args(&self) -> Vec<OsString> {
        let mut args = vec![self.file.into()];
        if let Some(constraints) = self.constraints {
            args.extend([OsString::from("-c"), constraints.into()]);
        }
        args
    }
}

fn target_args(target: InstallTarget<'_>) -> Vec<OsString> {
    match target {
        InstallTarget::Requirements(files) => files.args(),
        InstallTarget::Lock(lock) => vec![OsString::from("-r"), lock.into()],
        InstallTarget::Editable(package) => vec![OsString::from("-e"), package.into()],
        InstallTarget::Wheel(wheel) => vec![wheel.into()],
        InstallTarget::WheelAlone(wheel) => vec!["--no-deps".into(), wheel.into()],
        InstallTarget::BuildRequirements(file) => vec![OsString::from("-r"), file.into()],
    }
}
