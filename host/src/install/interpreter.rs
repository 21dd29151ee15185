//! The base Python interpreter venvs are made from, asked once where it
//! really lives: version managers put shims on `PATH`, and a confined step
//! must be given the real executable and the prefix it loads its standard
//! library from.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};
use uv_pep508::{MarkerEnvironment, MarkerEnvironmentBuilder};

use crate::exec::process::{self, Step};
use crate::fs::cache_dir::CacheDir;
use crate::types::error::LoadError;

/// Printed by the interpreter itself, one value per line: where it lives,
/// then PEP 508's marker environment, in [`MarkerEnvironmentBuilder`]'s order.
const PROBE: &str = concat!(
    "import os, platform, sys, sysconfig\n",
    "i = sys.implementation.version\n",
    "iv = '%d.%d.%d' % (i.major, i.minor, i.micro) + ('' if i.releaselevel == 'final' else i.releaselevel[0] + str(i.serial))\n",
    "for v in (sys.executable, sys.version.split()[0], sys.prefix, sys.base_prefix, sysconfig.get_path('scripts'),\n",
    "          sys.implementation.name, iv, os.name, platform.machine(), platform.python_implementation(),\n",
    "          platform.release(), platform.system(), platform.version(), platform.python_version(),\n",
    "          '.'.join(platform.python_version_tuple()[:2]), sys.platform):\n",
    "    print(v)\n",
);

/// A Python interpreter, resolved past any shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interpreter {
    /// `sys.executable`: the binary that really runs.
    pub executable: PathBuf,
    /// `Python 3.11.7 /usr/bin/python3.11`: part of every venv key.
    pub identity: String,
    /// PEP 508's marker environment: which requirement lines apply to it,
    /// and what a venv's lock was resolved for.
    pub markers: MarkerEnvironment,
    /// `sys.prefix` and `sys.base_prefix` (one entry when they are equal):
    /// what a confined step must be able to read for the interpreter to start.
    pub prefixes: Vec<PathBuf>,
    /// Its scripts directory, where `pip install uv` puts the real `uv`.
    pub scripts: PathBuf,
}

impl Interpreter {
    /// Asks `found` about itself, or takes the answer kept in `cache_dir`
    /// under `key` ([`answer_key`]) while the interpreter it named is still
    /// the same file. Answers are kept only under a key.
    fn ask(found: &Path, key: Option<&str>, timeout: Duration, cache_dir: Option<&Path>) -> Result<Self, LoadError> {
        let cached = cache_dir
            .and_then(|dir| CacheDir::open(dir).ok())
            .zip(key)
            .map(|(dir, key)| (dir, format!("python-{key}.txt")));
        if let Some((dir, name)) = &cached
            && let Some(found) = dir
                .read_private(name, 64 * 1024)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| Self::parse_kept(&text))
        {
            return Ok(found);
        }
        let mut step = Step::new("python-probe", found, probe_dir(), timeout).args(["-I", "-c", PROBE]);
        // A shim needs PATH (and its own settings under HOME) to find the real interpreter.
        step.env = SHIM_ENV
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
        if let Some((dir, name)) = &cached
            && let Some(executable) = identity_key(&interpreter.executable)
            && let Err(error) = dir.store(name, format!("{}{executable}\n", output.stdout).as_bytes())
        {
            tracing::debug!(path = %dir.path().join(name).display(), %error, "could not cache the interpreter probe");
        }
        Ok(interpreter)
    }

    /// A kept answer: the probe's lines, then the identity the
    /// interpreter's file had, which must still hold.
    fn parse_kept(text: &str) -> Option<Self> {
        let (answer, executable) = text.trim_end().rsplit_once('\n')?;
        let interpreter = Self::parse(answer)?;
        (identity_key(&interpreter.executable).as_deref() == Some(executable)).then_some(interpreter)
    }

    /// Reads the probe's sixteen lines.
    fn parse(text: &str) -> Option<Self> {
        let lines: Vec<&str> = text.lines().collect();
        let [executable, version, prefix, base_prefix, scripts, ref marker @ ..] = lines[..] else {
            return None;
        };
        let [
            implementation_name,
            implementation_version,
            os_name,
            platform_machine,
            platform_python_implementation,
            platform_release,
            platform_system,
            platform_version,
            python_full_version,
            python_version,
            sys_platform,
        ] = marker[..]
        else {
            return None;
        };
        let markers = MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
            implementation_name,
            implementation_version,
            os_name,
            platform_machine,
            platform_python_implementation,
            platform_release,
            platform_system,
            platform_version,
            python_full_version,
            python_version,
            sys_platform,
        })
        .ok()?;
        let executable = PathBuf::from(executable);
        let mut prefixes = vec![PathBuf::from(prefix)];
        if base_prefix != prefix {
            prefixes.push(PathBuf::from(base_prefix));
        }
        executable.is_absolute().then(|| Self {
            identity: format!("Python {version} {}", executable.display()),
            markers,
            executable,
            prefixes,
            scripts: PathBuf::from(scripts),
        })
    }
}

/// Resolves the configured interpreter for every load of a loader: an answer
/// is reused while its [`answer_key`] (a few `stat` calls) is unchanged, so a
/// warm redeploy through a shim costs no interpreter start, yet a changed
/// selection (`pyenv global`, a new `.python-version`, a reinstalled Python)
/// is noticed by the next load.
#[derive(Debug)]
pub(crate) struct Resolver {
    configured: PathBuf,
    timeout: Duration,
    cache_dir: Option<PathBuf>,
    last: Mutex<Option<Remembered>>,
}

impl Resolver {
    /// A resolver for `configured`, keeping answers in `cache_dir` too.
    pub(crate) fn new(configured: &Path, timeout: Duration, cache_dir: Option<&Path>) -> Self {
        Self {
            configured: configured.to_owned(),
            timeout,
            cache_dir: cache_dir.map(Path::to_owned),
            last: Mutex::new(None),
        }
    }

    /// The interpreter as it is now.
    pub(crate) fn resolve(&self) -> Result<Interpreter, LoadError> {
        let found = find(&self.configured)?;
        let key = answer_key(&found, &probe_dir());
        let remembered = self.last.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let (Some(key), Some(last)) = (&key, remembered)
            && *key == last.key
            && identity_key(&last.interpreter.executable).as_ref() == Some(&last.executable)
        {
            return Ok(last.interpreter);
        }
        // Asked without the lock: concurrent loads need not queue behind a probe.
        let interpreter = Interpreter::ask(&found, key.as_deref(), self.timeout, self.cache_dir.as_deref())?;
        let remember = key
            .zip(identity_key(&interpreter.executable))
            .map(|(key, executable)| Remembered {
                key,
                executable,
                interpreter: interpreter.clone(),
            });
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = remember;
        Ok(interpreter)
    }
}

/// The last answer a [`Resolver`] got, with what it depended on.
#[derive(Debug, Clone)]
struct Remembered {
    /// The [`answer_key`] it was given under.
    key: String,
    /// The identity of the interpreter's file then.
    executable: String,
    interpreter: Interpreter,
}

/// What the probe passes to the interpreter (a shim reads both).
const SHIM_ENV: [&str; 2] = ["PATH", "HOME"];

/// Where the probe runs: a version manager may choose by directory.
fn probe_dir() -> PathBuf {
    std::env::temp_dir()
}

fn find(configured: &Path) -> Result<PathBuf, LoadError> {
    process::find_program(configured).ok_or_else(|| LoadError::InvalidInput {
        what: "python",
        detail: format!("`{}` was not found on PATH", configured.display()),
    })
}

/// A key for `program`'s answer when everything that decides it is known:
/// for a compiled executable, the file itself; for a pyenv shim, the shim,
/// the environment the probe passes, and every file pyenv's version
/// selection reads when run from `probe_dir` (`.python-version` there and in
/// each parent, `$PYENV_ROOT/version`). `None` for any other script, whose
/// choice par cannot know.
fn answer_key(program: &Path, probe_dir: &Path) -> Option<String> {
    let mut head = [0u8; 4096];
    let read = fs::File::open(program).ok()?.read(&mut head).ok()?;
    let head = &head[..read];
    if !head.starts_with(b"#!") {
        return identity_key(program);
    }
    let root = pyenv_root(head)?;
    let mut inputs = vec![identity_key(program)?];
    for name in SHIM_ENV {
        inputs.push(format!("{name}={:?}", std::env::var_os(name)));
    }
    for dir in probe_dir.ancestors() {
        inputs.push(identity_key(&dir.join(".python-version")).unwrap_or_default());
    }
    for name in ["version", "global", "default"] {
        inputs.push(identity_key(&root.join(name)).unwrap_or_default());
    }
    Some(format!("shim-{:x}", Sha256::digest(inputs.join("\0").as_bytes())))
}

/// The `PYENV_ROOT` a pyenv shim exports (`export PYENV_ROOT="/…"`), if the
/// script is one: it then runs `pyenv exec`.
fn pyenv_root(script: &[u8]) -> Option<PathBuf> {
    let text = std::str::from_utf8(script).ok()?;
    if !text.contains("pyenv\" exec ") {
        return None;
    }
    let root = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("export PYENV_ROOT="))?;
    let root = root.trim_matches('"');
    Path::new(root).is_absolute().then(|| PathBuf::from(root))
}

/// Path, device, inode, size and mtime of a file; `None` if it is missing.
fn identity_key(program: &Path) -> Option<String> {
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

    /// What a new loader resolves.
    fn resolve(python: &Path, cache_dir: Option<&Path>) -> Result<Interpreter, LoadError> {
        Resolver::new(python, Duration::from_secs(20), cache_dir).resolve()
    }

    #[test]
    fn resolves_the_real_interpreter() {
        let python = resolve(Path::new("python3"), None).expect("python3 on PATH");
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
        let version = &python.markers.python_full_version().string;
        assert!(
            python.identity.starts_with(&format!("Python {version} ")),
            "{}",
            python.identity
        );
        assert_eq!(python.markers.sys_platform(), "linux");
    }

    /// A marker environment's eleven lines, as the probe prints them.
    const MARKERS: &str = "cpython\n3.99.0\nposix\nx86_64\nCPython\n6.1\nLinux\n#1 SMP\n3.99.0\n3.99\nlinux\n";

    #[test]
    fn a_compiled_interpreter_is_asked_once() {
        let python = resolve(Path::new("python3"), None).expect("python3 on PATH");
        let cache = tempfile::tempdir().expect("cache dir");
        let probe = || resolve(&python.executable, Some(cache.path()));
        let first = probe().expect("probe");
        let entries: Vec<_> = fs::read_dir(cache.path()).expect("cache").flatten().collect();
        assert_eq!(entries.len(), 1, "one cached answer");
        // A planted answer in a file only this user can write is what a later
        // probe returns: the proof it was read. It holds only while the file
        // it names is the one it was.
        let exe = python.executable.display().to_string();
        let identity = identity_key(&python.executable).expect("identity");
        fs::write(
            entries[0].path(),
            format!("{exe}\n3.99.0\n/x\n/x\n/x/bin\n{MARKERS}{identity}\n"),
        )
        .expect("rewrite");
        assert_eq!(probe().expect("cached").identity, format!("Python 3.99.0 {exe}"));
        fs::write(
            entries[0].path(),
            format!("{exe}\n3.99.0\n/x\n/x\n/x/bin\n{MARKERS}another-file\n"),
        )
        .expect("rewrite");
        assert_eq!(probe().expect("asked again").identity, first.identity);
        assert_eq!(
            first.prefixes, python.prefixes,
            "the interpreter itself answers as its shim did"
        );
    }

    /// A pyenv-style shim (its `pyenv exec` stands in for pyenv's, choosing
    /// by `$PYENV_ROOT/version` and counting its runs) is asked once, then
    /// again only when its selection changes, by a loader and by the next.
    #[test]
    fn a_pyenv_shim_is_asked_again_only_when_its_selection_changes() {
        use std::os::unix::fs::PermissionsExt;
        let real = resolve(Path::new("python3"), None).expect("python3 on PATH");
        let root = tempfile::tempdir().expect("pyenv root");
        let root = root.path();
        let script = |path: &Path, text: String| {
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, text).expect("script");
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
        };
        for version in ["a", "b"] {
            let bin = root.join("versions").join(version).join("bin");
            fs::create_dir_all(&bin).expect("mkdir");
            std::os::unix::fs::symlink(&real.executable, bin.join("python3")).expect("symlink");
        }
        script(
            &root.join("libexec/pyenv"),
            "#!/bin/sh\necho run >> \"$PYENV_ROOT/runs\"\nshift\nprogram=$1\nshift\nexec \"$PYENV_ROOT/versions/$(cat \"$PYENV_ROOT/version\")/bin/$program\" \"$@\"\n".into(),
        );
        let shim = root.join("shims/python3");
        script(
            &shim,
            format!(
                "#!/bin/sh\nprogram=\"${{0##*/}}\"\nexport PYENV_ROOT=\"{0}\"\nexec \"{0}/libexec/pyenv\" exec \"$program\" \"$@\"\n",
                root.display()
            ),
        );
        fs::write(root.join("version"), "a\n").expect("select a");
        let cache = tempfile::tempdir().expect("cache dir");
        let runs = || fs::read_to_string(root.join("runs")).map_or(0, |text| text.lines().count());
        let resolver = Resolver::new(&shim, Duration::from_secs(20), Some(cache.path()));

        let first = resolver.resolve().expect("resolve");
        assert_eq!(first.executable, root.join("versions/a/bin/python3"));
        resolver.resolve().expect("again");
        let next_loader = Resolver::new(&shim, Duration::from_secs(20), Some(cache.path()));
        next_loader.resolve().expect("a new loader");
        assert_eq!(runs(), 1, "asked once while nothing changed");

        fs::write(root.join("version"), "b\n").expect("select b");
        let second = resolver.resolve().expect("resolve after the change");
        assert_eq!(
            second.executable,
            root.join("versions/b/bin/python3"),
            "never the stale answer"
        );
        assert_eq!(runs(), 2);
    }

    #[test]
    fn a_missing_interpreter_is_invalid_input() {
        let error = resolve(Path::new("no-such-python"), None).expect_err("missing");
        assert!(
            matches!(error, LoadError::InvalidInput { what: "python", .. }),
            "{error}"
        );
    }
}
