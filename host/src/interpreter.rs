//! The base Python interpreter venvs are made from, asked once where it
//! really lives: version managers put shims on `PATH`, and a confined step
//! must be given the real executable and the prefix it loads its standard
//! library from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};

use crate::error::LoadError;
use crate::process::{self, Step};
use crate::sandbox::cache;

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
    /// When it is a compiled executable (not a version manager's shim, whose
    /// answer depends on where it runs) the answer is kept in `cache_dir`,
    /// keyed by the file's identity, so later loads skip a Python start-up.
    pub fn probe(configured: &Path, timeout: Duration, cache_dir: Option<&Path>) -> Result<Self, LoadError> {
        let found = process::find_program(configured).ok_or_else(|| LoadError::InvalidInput {
            what: "python",
            detail: format!("`{}` was not found on PATH", configured.display()),
        })?;
        let cached = cache_dir
            .and_then(|dir| cache::trusted_dir(dir).ok())
            .zip(identity_key(&found))
            .map(|(dir, key)| dir.join(format!("python-{key}.txt")));
        if let Some(path) = &cached
            && cache::trusted_file(path)
            && let Some(found) = fs::read_to_string(path).ok().and_then(|text| Self::parse(&text))
        {
            return Ok(found);
        }
        let mut step = Step::new("python-probe", &found, std::env::temp_dir(), timeout).args(["-I", "-c", PROBE]);
        // A shim needs PATH (and its own settings under HOME) to find the real interpreter.
        step.env = ["PATH", "HOME"]
            .into_iter()
            .filter_map(|name| std::env::var_os(name).map(|value| (name.into(), value)))
            .collect();
        let output = process::run(&step).map_err(|e| LoadError::Internal(e.to_string()))?;
        let interpreter = Self::parse(&output.stdout).ok_or_else(|| LoadError::InvalidInput {
            what: "python",
            detail: format!(
                "`{}` did not describe itself (exit {}): {}",
                found.display(),
                output.code(),
                output.stderr.trim()
            ),
        })?;
        if let Some(path) = &cached
            && let Some(dir) = path.parent()
            && let Err(error) = cache::store(dir, path, output.stdout.as_bytes())
        {
            tracing::debug!(path = %path.display(), %error, "could not cache the interpreter probe");
        }
        Ok(interpreter)
    }

    /// Reads the probe's five lines.
    fn parse(text: &str) -> Option<Self> {
        let lines: Vec<&str> = text.lines().collect();
        let [executable, version, prefix, base_prefix, scripts] = lines[..] else {
            return None;
        };
        let executable = PathBuf::from(executable);
        let mut prefixes = vec![PathBuf::from(prefix)];
        if base_prefix != prefix {
            prefixes.push(PathBuf::from(base_prefix));
        }
        executable.is_absolute().then(|| Self {
            identity: format!("Python {version} {}", executable.display()),
            executable,
            prefixes,
            scripts: PathBuf::from(scripts),
        })
    }
}

/// Path, device, inode, size and mtime of a compiled executable; `None` for
/// a script, whose answer is not a property of the file.
fn identity_key(program: &Path) -> Option<String> {
    let mut magic = [0u8; 2];
    fs::File::open(program).ok()?.read_exact(&mut magic).ok()?;
    if &magic == b"#!" {
        return None;
    }
    let meta = fs::metadata(program).ok()?;
    let identity = format!(
        "{}\0{}\0{}\0{}\0{}.{}",
        program.display(),
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    Some(format!("{:x}", Sha256::digest(identity.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_real_interpreter() {
        let python = Interpreter::probe(Path::new("python3"), Duration::from_secs(20), None).expect("python3 on PATH");
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
    fn a_compiled_interpreter_is_asked_once() {
        let python = Interpreter::probe(Path::new("python3"), Duration::from_secs(20), None).expect("python3 on PATH");
        let cache = tempfile::tempdir().expect("cache dir");
        let probe = || Interpreter::probe(&python.executable, Duration::from_secs(20), Some(cache.path()));
        let first = probe().expect("probe");
        let entries: Vec<_> = fs::read_dir(cache.path()).expect("cache").flatten().collect();
        assert_eq!(entries.len(), 1, "one cached answer");
        // A planted answer in a file only this user can write is what a later probe returns: the proof it was read.
        fs::write(entries[0].path(), "/x/python\n3.99.0\n/x\n/x\n/x/bin\n").expect("rewrite");
        assert_eq!(probe().expect("cached").identity, "Python 3.99.0 /x/python");
        assert_eq!(
            first.prefixes, python.prefixes,
            "the interpreter itself answers as its shim did"
        );
    }

    #[test]
    fn a_missing_interpreter_is_invalid_input() {
        let error = Interpreter::probe(Path::new("no-such-python"), Duration::from_secs(5), None).expect_err("missing");
        assert!(
            matches!(error, LoadError::InvalidInput { what: "python", .. }),
            "{error}"
        );
    }
}
