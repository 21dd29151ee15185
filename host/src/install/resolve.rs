//! Resolving a package's requirements without installing anything (`par
//! lock`), and reading what an installer left for the host: the checked
//! lines written into a scratch directory, the installer's resolution steps
//! run with the package as their working directory, and the lock they leave.

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use cap_std::fs::Dir;

use crate::fs::root::{open_dir_nofollow, read_bounded};
use crate::fs::staging::Scratch;
use crate::install::editable::BuildSystem;
use crate::install::installer::{Installer, RequirementFiles, Resolution};
use crate::install::pylock::{Lock, MAX_INSTALLER_OUTPUT_BYTES, Places};
use crate::install::step::{StepKind, StepRunner, StepSpec};
use crate::types::error::InstallError;

/// What a package asks to have installed, every line checked by the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// `requirements.txt`'s lines.
    pub requirements: Vec<String>,
    /// Its constraint lines.
    pub constraints: Vec<String>,
    /// The build backend's requirements (`[build-system] requires`).
    pub build_requires: Vec<String>,
    /// Whether those are setuptools' legacy backend's, assumed for a
    /// `setup.py` alone (to which an installer may add its own).
    pub legacy_build: bool,
    /// The backend the agent's editable build runs, when it builds.
    pub build_system: Option<BuildSystem>,
}

/// One resolution: who resolves, for which interpreter, from where.
#[derive(Debug)]
pub(crate) struct Resolver<'a> {
    /// Runs the steps (confined when the loader has a sandbox).
    pub runner: &'a StepRunner,
    /// The back end.
    pub installer: &'a dyn Installer,
    /// The interpreter whose markers decide what applies.
    pub python: &'a Path,
    /// The index options.
    pub index_args: &'a [OsString],
    /// The package tree: the steps' working directory (local paths are its).
    pub package: &'a Path,
}

impl Resolver<'_> {
    /// Resolves `lines` under `constraints` in the directory `name` of
    /// `scratch` (made here), installing nothing; the lock the installer
    /// reported, its paths relative to the package.
    pub(crate) fn resolve(
        &self,
        lines: &[String],
        constraints: &[String],
        scratch: &Scratch,
        name: &str,
    ) -> Result<Lock, InstallError> {
        let host = |action: &'static str| {
            let path = scratch.path().join(name);
            move |e: std::io::Error| InstallError::Host(format!("cannot {action} {}: {e}", path.display()))
        };
        scratch.dir().create_dir(name).map_err(host("create"))?;
        let dir = open_dir_nofollow(scratch.dir(), name).map_err(host("open"))?;
        let output = scratch.path().join(name);
        let write = |file: &str, lines: &[String]| {
            let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
            dir.write(file, text).map_err(host("write into"))
        };
        write("requirements.txt", lines)?;
        if !constraints.is_empty() {
            write("constraints.txt", constraints)?;
        }
        let (file, constraints_file) = (output.join("requirements.txt"), output.join("constraints.txt"));
        let files = RequirementFiles {
            file: &file,
            constraints: (!constraints.is_empty()).then_some(constraints_file.as_path()),
        };
        let (steps, resolution) = self.installer.resolve(self.python, files, self.index_args, &output);
        let started = Instant::now();
        for invocation in steps {
            let left = StepKind::Resolve.left(self.runner.install(), started.elapsed())?;
            let spec = StepSpec::new(StepKind::Resolve, invocation, self.package)
                .writable(&output)
                .timeout(left);
            self.runner.run(spec)?;
        }
        let places = Places {
            output_dir: &output,
            package: self.package,
        };
        read_resolution(&dir, resolution, places)
    }
}

/// Reads what the installer left in its output directory `dir` into a lock.
pub(crate) fn read_resolution(dir: &Dir, resolution: Resolution, places: Places<'_>) -> Result<Lock, InstallError> {
    let name = resolution.file();
    let unreadable =
        |problem: String| InstallError::Host(format!("the installer's account of what it resolved: {problem}"));
    let bytes = read_bounded(dir, name, MAX_INSTALLER_OUTPUT_BYTES)
        .map_err(|e| unreadable(format!("cannot read {name}: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| unreadable(format!("{name} is not UTF-8")))?;
    resolution.read(&text, places).map_err(|e| unreadable(e.to_string()))
}
