//! The agent's editable build, with par as the PEP 517 frontend.
//!
//! `pip install -e .` and `uv pip install -e .` resolve a fresh build
//! environment and start a fresh interpreter for each of the backend's three
//! hooks; for a small agent that is nearly all of a cold load. Here one Python
//! process, in a build environment shared across loads (see [`build_env`]),
//! runs `get_requires_for_build_editable` and `build_editable`, and the
//! installer then installs the wheel. The build needs nothing from the
//! agent's venv, so it runs on a thread of its own while the venv is created
//! and the requirements install. Whatever this frontend does not handle
//! (extra build requirements from the backend, no PEP 660 hook) is left to
//! the installer's own `-e`, as before. A bundle carries the wheel built
//! once, and a load only moves it to its tree (see [`prebuilt`]).

mod build_env;
mod direct_url;
mod job;
mod place;
mod prebuilt;

use std::ffi::OsString;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(crate) use build_env::{Generation, add_user, discard_generations, generations, users};
pub(crate) use direct_url::{editable_install_of, record_editable};
pub(crate) use job::{BuildJob, BuildSystem};
pub(crate) use prebuilt::{InstallAlone, Relocation, check_requires};

use crate::exec::output::escape_controls;
use crate::fs::staging::Scratch;
use crate::install::installer::Invocation;
use crate::install::requirements::check_build_requirement;
use crate::install::step::{StepKind, StepSpec};
use crate::types::error::InstallError;

/// The frontend the build environment's Python runs (see the file's docstring).
const FRONTEND: &str = include_str!("frontend.py");
/// Most of a build's `fallback.txt` read: a reason, not a file to load whole.
const MAX_FALLBACK_BYTES: u64 = 4096;

/// What a finished build leaves for the self-install.
#[derive(Debug)]
pub(crate) enum Prepared {
    /// The editable wheel, to install with the installer.
    Wheel {
        /// The wheel file, inside the build's scratch directory.
        path: PathBuf,
        /// Time the build itself took (waiting for its turn not counted),
        /// charged to the self-install's budget.
        busy: Duration,
    },
    /// The editable wheel, installed already, alone (a bundle's prebuilt
    /// wheel: see [`InstallAlone`]).
    Installed {
        /// The wheel file, inside the build's scratch directory.
        path: PathBuf,
        /// Time moving and installing it took.
        busy: Duration,
        /// Distributions installed.
        installed: u32,
    },
    /// The installer's own `-e` must do it; why.
    Installer(String),
}

/// A build running on its own thread; dropping it cancels the build.
#[derive(Debug)]
pub(crate) struct EditableBuild {
    handle: Option<JoinHandle<Result<Prepared, InstallError>>>,
    cancel: Arc<AtomicBool>,
    /// Holds the wheel until the self-install has installed it.
    scratch: Scratch,
    /// The key of the build environment it runs in (none for a prebuilt
    /// wheel moved to its tree).
    build_env: Option<String>,
    /// Tells the thread the venv is made, and what in it the install must
    /// not write, when it installs the wheel itself; dropped unsent (the
    /// install given up) when it is not.
    venv_made: Option<mpsc::Sender<Vec<PathBuf>>>,
}

impl EditableBuild {
    /// Starts the build on a thread of its own, writing into a fresh scratch
    /// directory under `{root}/staging/`.
    pub(crate) fn start(root: &crate::fs::root::RootDir, job: BuildJob) -> Result<Self, InstallError> {
        let build_env = build_env::key_of(&job);
        Self::spawn(root, Some(build_env), None, move |wheel_dir, stop| {
            build(&job, wheel_dir, stop)
        })
    }

    /// Starts moving a prebuilt wheel to its tree (see [`Relocation`]), on
    /// a thread of its own as a build would be; with `install`, then
    /// installs it there, alone, once [`Self::venv_made`] says it may.
    pub(crate) fn relocate(
        root: &crate::fs::root::RootDir,
        relocation: Relocation,
        install: Option<InstallAlone>,
    ) -> Result<Self, InstallError> {
        let started = Instant::now();
        let (made, venv_made) = mpsc::channel();
        let sender = install.is_some().then_some(made);
        Self::spawn(root, None, sender, move |wheel_dir, stop| {
            let path = relocation.run(wheel_dir, stop)?;
            let Some(install) = install else {
                return Ok(Prepared::Wheel {
                    path,
                    busy: started.elapsed(),
                });
            };
            let installed = install.run(&relocation, &path, wheel_dir, &venv_made, stop)?;
            Ok(Prepared::Installed {
                path,
                busy: started.elapsed(),
                installed,
            })
        })
    }

    /// Says the venv is made: a wheel the thread installs itself may go
    /// in, with `protected` read-only (see [`StepSpec::protected`]).
    pub(crate) fn venv_made(&mut self, protected: Vec<PathBuf>) {
        if let Some(made) = self.venv_made.take() {
            let _ = made.send(protected);
        }
    }

    fn spawn(
        root: &crate::fs::root::RootDir,
        build_env: Option<String>,
        venv_made: Option<mpsc::Sender<Vec<PathBuf>>>,
        work: impl FnOnce(&Path, &Arc<AtomicBool>) -> Result<Prepared, InstallError> + Send + 'static,
    ) -> Result<Self, InstallError> {
        let scratch = Scratch::create(root, "build-").map_err(|e| InstallError::Host(e.to_string()))?;
        let cancel = Arc::new(AtomicBool::new(false));
        let (wheel_dir, stop) = (scratch.path().to_owned(), cancel.clone());
        let handle = std::thread::Builder::new()
            .name("par-editable-build".into())
            .spawn(move || work(&wheel_dir, &stop))
            .map_err(|e| InstallError::Host(format!("cannot start the build thread: {e}")))?;
        Ok(Self {
            handle: Some(handle),
            cancel,
            scratch,
            build_env,
            venv_made,
        })
    }

    /// The key of the build environment it runs in: recorded in the venv,
    /// so `list` and `gc` know which venvs each environment built.
    pub(crate) fn build_env(&self) -> Option<&str> {
        self.build_env.as_deref()
    }

    /// Waits for the build; the wheel stays readable until `self` is dropped.
    pub(crate) fn wait(&mut self) -> Result<Prepared, InstallError> {
        let handle = self
            .handle
            .take()
            .ok_or_else(|| InstallError::Host("the build was already waited for".into()))?;
        handle
            .join()
            .map_err(|_| InstallError::Host("the build thread panicked".into()))?
    }

    /// The directory the wheel was built into (readable by the install step).
    pub(crate) fn wheel_dir(&self) -> &Path {
        self.scratch.path()
    }
}

impl Drop for EditableBuild {
    fn drop(&mut self) {
        // First, so a thread waiting for the venv gives up.
        self.venv_made = None;
        if let Some(handle) = self.handle.take() {
            self.cancel.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}

/// Whether this frontend may build `system` at all: every requirement is a
/// plain named requirement (see [`check_build_requirement`]), the backend is
/// `module:object`, and every backend path is a plain relative directory.
pub(crate) fn is_buildable(system: &BuildSystem) -> bool {
    let backend_ok =
        system.backend.split(':').count() <= 2 && system.backend.split(':').all(par_rules::names::is_dotted_identifier);
    let paths_ok = system
        .backend_path
        .iter()
        .all(|path| path == "." || par_rules::names::is_contained_relative(path));
    !system.requires.is_empty()
        && system.requires.iter().all(|r| check_build_requirement(r).is_ok())
        && backend_ok
        && paths_ok
}

fn build(job: &BuildJob, wheel_dir: &Path, cancel: &Arc<AtomicBool>) -> Result<Prepared, InstallError> {
    let started = Instant::now();
    let env = build_env::ensure(job, cancel)?;
    let left = StepKind::Build.left(job.runner.install(), started.elapsed())?;
    let mut args: Vec<OsString> = vec![
        "-I".into(),
        "-c".into(),
        FRONTEND.into(),
        job.system.backend.clone().into(),
        wheel_dir.into(),
    ];
    args.extend(job.system.backend_path.iter().map(OsString::from));
    let invocation = Invocation {
        program: crate::install::installer::venv_python(env.path()),
        args,
    };
    tracing::debug!(package_path = %job.package.display(), backend = %job.system.backend, "Building the editable wheel");
    let spec = StepSpec::new(StepKind::Build, invocation, &job.package)
        .writable(wheel_dir)
        .readonly(env.path())
        .timeout(left)
        .cancel(cancel.clone());
    job.runner.run(spec)?;
    let busy = started.elapsed();
    let fallback = wheel_dir.join("fallback.txt");
    if fs::symlink_metadata(&fallback).is_ok_and(|m| m.is_file()) {
        // The build wrote it: as much as a reason needs, escaped.
        let mut reason = Vec::new();
        let _ = fs::File::open(&fallback).and_then(|file| file.take(MAX_FALLBACK_BYTES).read_to_end(&mut reason));
        return Ok(Prepared::Installer(escape_controls(
            &String::from_utf8_lossy(&reason),
            500,
        )));
    }
    Ok(Prepared::Wheel {
        path: the_wheel(wheel_dir)?,
        busy,
    })
}

/// The one regular `.whl` file the backend left in `dir` (a build may write
/// what it likes there, so nothing else is taken on trust).
fn the_wheel(dir: &Path) -> Result<PathBuf, InstallError> {
    let host = |detail: String| InstallError::Host(format!("the build backend's output: {detail}"));
    let entries = fs::read_dir(dir).map_err(|e| host(format!("cannot list {}: {e}", dir.display())))?;
    let mut wheels = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| host(e.to_string()))?;
        let name = entry.file_name();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && name.to_str().is_some_and(|n| n.ends_with(".whl")) {
            wheels.push(entry.path());
        }
    }
    match <[PathBuf; 1]>::try_from(wheels) {
        Ok([wheel]) => Ok(wheel),
        Err(found) => Err(host(format!("expected one wheel, found {}", found.len()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wheel_is_taken_only_as_one_regular_whl_file() {
        let dir = tempfile::tempdir().expect("dir");
        let wheel = |name: &str| dir.path().join(name);
        assert!(the_wheel(dir.path()).is_err(), "no wheel");
        std::fs::create_dir(wheel("a-0.1-py3-none-any.whl")).expect("a directory");
        std::os::unix::fs::symlink("/etc/passwd", wheel("b-0.1-py3-none-any.whl")).expect("a link");
        assert!(
            the_wheel(dir.path()).is_err(),
            "a directory and a symlink are not wheels"
        );
        std::fs::write(wheel("c-0.1-py3-none-any.whl"), "wheel").expect("a wheel");
        assert_eq!(the_wheel(dir.path()).expect("one"), wheel("c-0.1-py3-none-any.whl"));
        std::fs::write(wheel("d-0.1-py3-none-any.whl"), "wheel").expect("a second wheel");
        assert!(the_wheel(dir.path()).is_err(), "two wheels");
    }
}
