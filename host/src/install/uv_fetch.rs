//! A pinned uv for machines that have none on `PATH`: fetched on first use
//! into par's cache by the interpreter's own pip (so the operator's index,
//! proxy and certificate settings apply), the wheel's SHA-256 required to be
//! one of PyPI's for that release (by pip, and again here), and kept for
//! every later load. A first load then takes uv's second rather than pip's
//! quarter of a minute; with no network it fails at once and `auto` falls
//! back to pip.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::exec::process::{self, Step};
use crate::fs::bundle::sha256_of;
use crate::fs::cache_dir::CacheDir;
use crate::types::config::IndexConfig;

/// The uv release par fetches.
pub(crate) const UV_VERSION: &str = "0.13.9";

/// The SHA-256 of every Linux wheel of uv [`UV_VERSION`] on PyPI (glibc and
/// musl; x86-64, i686, aarch64, armv6/7, ppc64le, s390x, riscv64): pip takes
/// the one for this machine only if it is among them.
const WHEEL_HASHES: [&str; 13] = [
    "56ec37616c00220032fc7b8c9d0ef51367fd0d70d9cd6ddd841660f949f84fed",
    "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
    "7ec1e1dd9b6cb335c301afdf877989df384227313981850755a59561f75e4ab8",
    "16963d19594e18d746a70c7fce82237bde4f2cac4cfcf0ca2b84796fe9d0c6e9",
    "db5c8df7145c21ffea9c0f74e38823bac3af60cbadf0e26b8633f08627b17bab",
    "c5dbdb7c8737cd183a9dce95b39cfd1f3d54ec2a27a1bb58f160293f9ba2c805",
    "a6e845f387e4ed55bb59342957a9179e24a631fcc7668bda3426ae1cef8ed4b9",
    "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    "ecb6028d79dc96fbeafffe5c8af62a7099487ebc05a701e76714eebcffd06375",
    "6d5114bba238adddacb32fb11904f2b3ff4e988f8e9ff0d8d3b5e9822cf836b8",
    "6b0c7b9f47a5d011939d61e324d3fe18a8bc155d8dd53add738709a92f290a7c",
    "a2ee66fe8b6608e1482ab1bde5799da04705c1cb40324c7f66054ecf46ae6e40",
    "2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25",
];

/// The largest uv executable par takes out of a wheel (0.13.9's is 37 MiB).
const MAX_EXECUTABLE_BYTES: u64 = 256 << 20;

/// How long after a failed fetch `auto` installs with pip without trying
/// again, so a machine with no way to the index pays for the attempt once.
const RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// Why no uv was fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// A fetch failed within [`RETRY_AFTER`].
    #[error("a fetch failed less than an hour ago (remove `{0}` to try again)")]
    RecentlyFailed(PathBuf),
    /// pip did not download it.
    #[error("pip could not download it (exit {code}): {stderr}")]
    Download {
        /// pip's exit code.
        code: i32,
        /// The end of what pip printed.
        stderr: String,
    },
    /// The file pip left is not one of the pinned wheels.
    #[error("`{file}` has SHA-256 {found}, which is not one of uv {UV_VERSION}'s")]
    Hash {
        /// The file.
        file: String,
        /// Its digest.
        found: String,
    },
    /// The wheel does not hold the executable where uv's wheels do.
    #[error("the wheel has no `{0}` of at most {MAX_EXECUTABLE_BYTES} bytes")]
    Wheel(String),
    /// The cache or a step failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Where a fetched uv lives under par's cache directory `cache`.
fn home(cache: &Path) -> PathBuf {
    cache.join(format!("uv-{UV_VERSION}"))
}

/// The uv a fetch put in `cache`, if it is there and only this user can
/// change it.
pub(crate) fn cached(cache: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = CacheDir::open(&home(cache)).ok()?;
    let (_, meta) = dir.open_private("uv")?;
    (meta.mode() & 0o100 != 0).then(|| dir.path().join("uv"))
}

/// How to fetch: with which interpreter, from where, in what environment.
#[derive(Debug)]
pub(crate) struct Fetch<'a> {
    /// par's cache directory.
    pub cache: &'a Path,
    /// The interpreter whose pip downloads the wheel.
    pub python: &'a Path,
    /// Where packages come from (the operator's index settings).
    pub index: &'a IndexConfig,
    /// The environment pip runs with (what installer steps inherit).
    pub env: Vec<(OsString, OsString)>,
    /// Wall-clock limit for the download.
    pub timeout: Duration,
    /// Try even when a fetch failed within the hour (`--installer uv`).
    pub insist: bool,
}

impl Fetch<'_> {
    /// Fetches uv into the cache and returns its path; a failure is
    /// remembered (for `auto`) for [`RETRY_AFTER`].
    pub(crate) fn run(&self) -> Result<PathBuf, FetchError> {
        let home = CacheDir::open(&home(self.cache))?;
        let failed = home.path().join("failed");
        let recent = |modified: SystemTime| modified.elapsed().is_ok_and(|age| age < RETRY_AFTER);
        if !self.insist && std::fs::metadata(&failed).and_then(|m| m.modified()).is_ok_and(recent) {
            return Err(FetchError::RecentlyFailed(failed));
        }
        tracing::info!(version = UV_VERSION, cache = %home.path().display(), "Fetching uv (none on PATH)");
        let fetched = self.download(&home);
        match &fetched {
            Ok(_) => {
                let _ = home.dir().remove_file("failed");
            }
            Err(_) => {
                let _ = home.store("failed", b"");
            }
        }
        fetched
    }

    fn download(&self, home: &CacheDir) -> Result<PathBuf, FetchError> {
        let scratch = tempfile::Builder::new().prefix(".download-").tempdir_in(home.path())?;
        let pinned: String = WHEEL_HASHES
            .iter()
            .map(|hash| format!(" --hash=sha256:{hash}"))
            .collect();
        let requirements = scratch.path().join("requirements.txt");
        std::fs::write(&requirements, format!("uv=={UV_VERSION}{pinned}\n"))?;
        let wheels = scratch.path().join("wheels");
        let mut step = Step::new("uv-fetch", self.python, scratch.path(), self.timeout).args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar=off",
            "--quiet",
            "--retries=1",
            "--timeout=15",
        ]);
        step.args.extend([OsString::from("--dest"), wheels.clone().into()]);
        step.args.extend([OsString::from("--requirement"), requirements.into()]);
        step.args.extend(self.index.args());
        step.env = self.env.clone();
        let output = process::run(&step).map_err(|e| io::Error::other(e.to_string()))?;
        if !output.status.success() {
            return Err(FetchError::Download {
                code: output.code(),
                stderr: pip_errors(&output.stderr),
            });
        }
        let wheel = std::fs::read_dir(&wheels)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|e| e == "whl"))
            .ok_or_else(|| FetchError::Wheel("wheel".into()))?;
        let file = std::fs::File::open(&wheel)?;
        let found = sha256_of(file.try_clone()?)?;
        if !WHEEL_HASHES.contains(&found.as_str()) {
            return Err(FetchError::Hash {
                file: wheel.file_name().unwrap_or_default().to_string_lossy().into_owned(),
                found,
            });
        }
        let executable = read_executable(file)?;
        home.store_with_mode("uv", &executable, 0o700)?;
        Ok(home.path().join("uv"))
    }
}

/// What pip said went wrong: its `ERROR:` lines (else its last line), on
/// one line, at most 400 characters.
fn pip_errors(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|line| line.starts_with("ERROR:")).collect();
    let said = if errors.is_empty() {
        stderr.trim().lines().last().unwrap_or_default().to_owned()
    } else {
        errors.join(" ")
    };
    said.chars().filter(|c| !c.is_control()).take(400).collect()
}

/// uv's executable, from the wheel's scripts.
fn read_executable(wheel: std::fs::File) -> Result<Vec<u8>, FetchError> {
    let name = format!("uv-{UV_VERSION}.data/scripts/uv");
    let missing = || FetchError::Wheel(name.clone());
    let mut archive = zip::ZipArchive::new(wheel).map_err(|_| missing())?;
    let entry = archive.by_name(&name).map_err(|_| missing())?;
    if entry.size() > MAX_EXECUTABLE_BYTES {
        return Err(missing());
    }
    let mut bytes = Vec::new();
    entry.take(MAX_EXECUTABLE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_EXECUTABLE_BYTES {
        return Err(missing());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_hashes_are_sha256_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for hash in WHEEL_HASHES {
            assert_eq!(hash.len(), 64, "{hash}");
            assert!(
                hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "{hash}"
            );
            assert!(seen.insert(hash), "{hash} twice");
        }
    }

    #[test]
    fn a_cached_uv_others_can_write_is_not_taken() {
        use std::os::unix::fs::PermissionsExt as _;
        let cache = tempfile::tempdir().expect("tempdir");
        assert_eq!(cached(cache.path()), None);
        let home = CacheDir::open(&home(cache.path())).expect("home");
        home.store_with_mode("uv", b"#!/bin/sh\n", 0o700).expect("store");
        assert_eq!(cached(cache.path()), Some(home.path().join("uv")));
        std::fs::set_permissions(home.path().join("uv"), std::fs::Permissions::from_mode(0o722)).expect("chmod");
        assert_eq!(cached(cache.path()), None);
    }
}
