//! pip: `python -m venv`, then `python -m pip install` as the spec does.

use std::ffi::OsString;
use std::path::Path;

use super::{
    InstallTarget, Installer, Invocation, LockFiles, RequirementFiles, RequirementsPlan, Resolution, target_args,
    venv_python,
};
use crate::exec::process::StepOutput;
use crate::install::pylock::REPORT_FILE;

/// The pip back end.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pip;

impl Installer for Pip {
    fn name(&self) -> &'static str {
        "pip"
    }

    fn create_venv(&self, python: &Path, venv: &Path) -> Invocation {
        Invocation {
            program: python.to_owned(),
            args: vec!["-m".into(), "venv".into(), venv.into()],
        }
    }

    fn install(&self, venv: &Path, target: InstallTarget<'_>, index_args: &[OsString]) -> Invocation {
        pip_install(venv, index_args, target_args(target))
    }

    /// pip 23 has no lock command: the install reports what it installed.
    fn install_requirements(
        &self,
        venv: &Path,
        requirements: RequirementFiles<'_>,
        index_args: &[OsString],
        output: &Path,
    ) -> RequirementsPlan {
        let mut install = self.install(venv, InstallTarget::Requirements(requirements), index_args);
        install
            .args
            .extend(["--report".into(), output.join(REPORT_FILE).into()]);
        RequirementsPlan::InstallWithReport(install)
    }

    /// pip 23 has no lock command: a venv of its own in `output` (pip
    /// may not be in the base interpreter), and there a dry run of the
    /// install that reports what it would install.
    fn resolve(
        &self,
        python: &Path,
        requirements: RequirementFiles<'_>,
        index_args: &[OsString],
        output: &Path,
    ) -> (Vec<Invocation>, Resolution) {
        let venv = output.join("venv");
        let mut args: Vec<OsString> = ["--dry-run", "--ignore-installed", "--report"]
            .map(OsString::from)
            .into();
        args.push(output.join(REPORT_FILE).into());
        args.extend(target_args(InstallTarget::Requirements(requirements)));
        (
            vec![self.create_venv(python, &venv), pip_install(&venv, index_args, args)],
            Resolution::PipReport,
        )
    }

    /// pip 23 reads no lock: the hash-pinned lines with `--no-deps
    /// --require-hashes` (each distribution exactly that file, nothing
    /// resolved), then the directories and checkouts with `--no-deps`.
    fn install_lock(&self, venv: &Path, lock: LockFiles<'_>, index_args: &[OsString]) -> Vec<Invocation> {
        let mut steps = Vec::new();
        if let Some(hashed) = lock.hashed {
            let args = [
                "--no-deps".into(),
                "--require-hashes".into(),
                "-r".into(),
                hashed.into(),
            ];
            steps.push(pip_install(venv, index_args, args.into()));
        }
        if !lock.unhashed.is_empty() {
            let args = std::iter::once("--no-deps".into()).chain(lock.unhashed.iter().map(OsString::from));
            steps.push(pip_install(venv, index_args, args.collect()));
        }
        steps
    }

    fn program(&self) -> Option<std::path::PathBuf> {
        None
    }

    fn cache(&self) -> (&'static str, &'static str) {
        ("PIP_CACHE_DIR", "pip")
    }

    fn packages_installed(&self, output: &StepOutput) -> u32 {
        output
            .stdout
            .lines()
            .filter_map(|line| line.trim().strip_prefix("Successfully installed "))
            .map(|names| names.split_whitespace().count() as u32)
            .sum()
    }

    fn installs_prebuilt_editable(&self) -> bool {
        false
    }

    fn venvs_copy(&self) -> bool {
        false
    }

    /// pip 23 builds a `setup.py` alone with `wheel` beside setuptools.
    fn legacy_build_extras(&self) -> &'static [&'static str] {
        &["wheel"]
    }
}

/// `python -m pip install` in the venv, quietly non-interactive, with the
/// index options and then `args`.
fn pip_install(venv: &Path, index_args: &[OsString], args: Vec<OsString>) -> Invocation {
    let mut all: Vec<OsString> = ["-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        .map(OsString::from)
        .into();
    all.extend(index_args.iter().cloned());
    all.extend(args);
    Invocation {
        program: venv_python(venv),
        args: all,
    }
}
