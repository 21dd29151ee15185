//! uv: `uv venv` and `uv pip install`, with uv's shared cache.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{
    InstallTarget, Installer, Invocation, LockFiles, RequirementFiles, RequirementsPlan, Resolution, target_args,
    venv_python,
};
use crate::exec::process::StepOutput;
use crate::install::pylock::LOCK;

/// The uv back end, with the `uv` executable it runs.
#[derive(Debug, Clone)]
pub(crate) struct Uv {
    program: PathBuf,
}

impl Uv {
    /// Uses the given `uv` executable.
    pub(crate) fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }
}

impl Uv {
    /// `uv pip compile` for `python`'s markers into `output/pylock.toml`,
    /// with every hash and no header (it would name this machine's paths).
    fn compile(
        &self,
        python: &Path,
        requirements: RequirementFiles<'_>,
        index_args: &[OsString],
        output: &Path,
    ) -> Invocation {
        let mut args: Vec<OsString> = [
            "pip",
            "compile",
            "--no-config",
            "--quiet",
            "--no-header",
            "--format",
            "pylock.toml",
            "--generate-hashes",
        ]
        .map(OsString::from)
        .into();
        args.extend(["--python".into(), python.into(), "-o".into(), output.join(LOCK).into()]);
        args.extend(index_args.iter().cloned());
        args.extend(requirements.compile_args());
        Invocation {
            program: self.program.clone(),
            args,
        }
    }
}

impl Installer for Uv {
    fn name(&self) -> &'static str {
        "uv"
    }

    fn create_venv(&self, python: &Path, venv: &Path) -> Invocation {
        Invocation {
            program: self.program.clone(),
            args: vec![
                "venv".into(),
                "--no-config".into(),
                "--quiet".into(),
                "--python".into(),
                python.into(),
                venv.into(),
            ],
        }
    }

    fn install(&self, venv: &Path, target: InstallTarget<'_>, index_args: &[OsString]) -> Invocation {
        let mut args: Vec<OsString> = vec![
            "pip".into(),
            "install".into(),
            "--no-config".into(),
            "--python".into(),
            venv_python(venv).into(),
        ];
        if matches!(target, InstallTarget::BuildRequirements(_)) {
            args.push("--compile-bytecode".into());
        }
        args.extend(index_args.iter().cloned());
        args.extend(target_args(target));
        Invocation {
            program: self.program.clone(),
            args,
        }
    }

    /// `uv pip compile` for this venv's interpreter, then `uv pip install`
    /// of exactly that lock.
    fn install_requirements(
        &self,
        venv: &Path,
        requirements: RequirementFiles<'_>,
        index_args: &[OsString],
        output: &Path,
    ) -> RequirementsPlan {
        RequirementsPlan::ResolveThenInstall {
            resolve: self.compile(&venv_python(venv), requirements, index_args, output),
            install: self.install(venv, InstallTarget::Lock(&output.join(LOCK)), index_args),
        }
    }

    fn resolve(
        &self,
        python: &Path,
        requirements: RequirementFiles<'_>,
        index_args: &[OsString],
        output: &Path,
    ) -> (Vec<Invocation>, Resolution) {
        (
            vec![self.compile(python, requirements, index_args, output)],
            Resolution::Pylock,
        )
    }

    /// `uv pip install -r pylock.toml`: exactly its distributions, every hash checked.
    fn install_lock(&self, venv: &Path, lock: LockFiles<'_>, index_args: &[OsString]) -> Vec<Invocation> {
        vec![self.install(venv, InstallTarget::Lock(lock.pylock), index_args)]
    }

    fn program(&self) -> Option<PathBuf> {
        Some(self.program.clone())
    }

    fn cache(&self) -> (&'static str, &'static str) {
        ("UV_CACHE_DIR", "uv")
    }

    fn packages_installed(&self, output: &StepOutput) -> u32 {
        output
            .stderr
            .lines()
            .filter_map(|line| line.trim().strip_prefix("Installed "))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u32>().ok())
            .sum()
    }

    fn installs_prebuilt_editable(&self) -> bool {
        true
    }

    fn venvs_copy(&self) -> bool {
        true
    }
}
