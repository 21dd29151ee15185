//! The base Python interpreter venvs are made from, asked once where it
//! really lives: version managers put shims on `PATH`, and a confined step
//! must be given the real executable and the prefix it loads its standard
//! library from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::LoadError;
use crate::process::{self, Step};

/// Printed by the interpreter itself, one value per line.
const PROBE: &str = "import sys, sysconfig\nfor v in (sys.executable, sys.version.split()[0], sys.prefix, sys.base_prefix, sysconfig.get_path('scripts')):\n    print(v)\n";

/// A Python interpreter, resolved past any shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// `sys.executable`: the binary that really runs.
    pub executable: PathBuf,
    /// `Python 3.11.7 /usr/bin/python3.11`: part of every venv key.
    pub identity: String,
    /// `sys.prefix` and `sys.base_prefix` (one entry when they are equal):
    /// what a confined step must be able to read for the interpreter to start.
    pub prefixes: Vec<PathBuf>,
    /// Its scripts directory, where `pip install uv` puts the real `uv`.
    pub scripts: PathBuf,
}

impl Interpreter {
    /// Finds `configured` (on `PATH` if relative) and asks it about itself.
    pub fn probe(configured: &Path, timeout: Duration) -> Result<Self, LoadError> {
        let found = process::find_program(configured).ok_or_else(|| LoadError::InvalidInput {
            what: "python",
            detail: format!("`{}` was not found on PATH", configured.display()),
        })?;
        let mut step = Step::new("python-probe", &found, std::env::temp_dir(), timeout).args(["-I", "-c", PROBE]);
        // A shim needs PATH (and its own settings under HOME) to find the real interpreter.
        step.env = ["PATH", "HOME"]
            .into_iter()
            .filter_map(|name| std::env::var_os(name).map(|value| (name.into(), value)))
            .collect();
        let output = process::run(&step).map_err(|e| LoadError::Internal(e.to_string()))?;
        let lines: Vec<&str> = output.stdout.lines().collect();
        let [executable, version, prefix, base_prefix, scripts] = lines[..] else {
            return Err(LoadError::InvalidInput {
                what: "python",
                detail: format!(
                    "`{}` did not describe itself (exit {}): {}",
                    found.display(),
                    output.code(),
                    output.stderr.trim()
                ),
            });
        };
        let executable = PathBuf::from(executable);
        let mut prefixes = vec![PathBuf::from(prefix)];
        if base_prefix != prefix {
            prefixes.push(PathBuf::from(base_prefix));
        }
        Ok(Self {
            identity: format!("Python {version} {}", executable.display()),
            executable,
            prefixes,
            scripts: PathBuf::from(scripts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_real_interpreter() {
        let python = Interpreter::probe(Path::new("python3"), Duration::from_secs(20)).expect("python3 on PATH");
        assert!(python.executable.is_absolute());
        let mut magic = [0u8; 4];
        std::io::Read::read_exact(&mut std::fs::File::open(&python.executable).expect("open"), &mut magic)
            .expect("read");
        assert_eq!(
            &magic,
            b"\x7fELF",
            "{} is not the interpreter binary",
            python.executable.display()
        );
        assert!(python.identity.starts_with("Python 3."), "{}", python.identity);
        assert!(python.prefixes.iter().any(|p| python.executable.starts_with(p)));
    }

    #[test]
    fn a_missing_interpreter_is_invalid_input() {
        let error = Interpreter::probe(Path::new("no-such-python"), Duration::from_secs(5)).expect_err("missing");
        assert!(
            matches!(error, LoadError::InvalidInput { what: "python", .. }),
            "{error}"
        );
    }
}
