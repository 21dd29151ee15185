//! A venv's lock: what its requirements step installed, as a PEP 751
//! `pylock.toml`.
//!
//! The host reads it from what the installer itself says it did, never from
//! the venv afterwards: with uv, the resolution (`uv pip compile --format
//! pylock.toml --generate-hashes`) that the install step then installs
//! exactly; with pip, which has no lock command, the report of the install
//! (`pip install --report`). Every field is checked (a normalised name, a
//! PEP 440 version, a SHA-256 of 64 hex digits, local paths inside the
//! package) and the host writes the lock it keeps itself, from these typed
//! entries: the agent itself as an editable directory, every local path
//! relative to the package directory (so the lock is the same on every node,
//! wherever its root is), and the interpreter and platform it holds for.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uv_normalize::PackageName;

use crate::install::file_url::path_of;
use crate::install::requirements::{self, Asked};
use crate::types::config::{IndexConfig, RequirementPolicy};
use uv_pep508::MarkerEnvironment;

pub(crate) use crate::fs::venv::LOCK;
use uv_pep508::uv_pep440::Version;

/// Largest resolution or install report read back. A report carries every
/// distribution's metadata, descriptions included.
pub(crate) const MAX_INSTALLER_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;

/// pip's install report, written beside the lock uv would write.
pub(crate) const REPORT_FILE: &str = "report.json";

/// One locked distribution as an SBOM names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named<'a> {
    /// Normalised.
    pub name: &'a str,
    /// Absent for a source tree.
    pub version: Option<&'a str>,
    /// The SHA-256 of each of its files.
    pub sha256: Vec<&'a str>,
    /// Where it came from: the first file's URL or path, the directory, the checkout.
    pub origin: Option<&'a str>,
}

/// One file a bundle holds for its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BundleFile {
    /// The lock entry it is for, for messages.
    pub entry: String,
    /// Its file name under the bundle's `wheels/`.
    pub name: String,
    /// Its SHA-256, as the lock says.
    pub sha256: String,
    /// One of a distribution's wheels, any of which may serve (the
    /// platform's is the one fetched).
    pub alternative: bool,
}

/// A file a bundle holds, as the host found it: its SHA-256, hashed by the
/// host, and where the install reads it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeldFile {
    /// Its SHA-256, in hex.
    pub sha256: String,
    /// Where it is kept: the unpacked bundle, or par's store of them.
    pub path: PathBuf,
}

/// A lock the operator gave for a load, checked: what the load installs, exactly.
#[derive(Debug, Clone)]
pub(crate) struct GivenLock {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    /// Its distributions.
    pub lock: Lock,
    /// From a bundle: what the installer is given in place of `lock`.
    pub bundled: Option<Bundled>,
}

/// A lock from a bundle, installed from the bundle's own files.
#[derive(Debug, Clone)]
pub(crate) struct Bundled {
    /// The same distributions, every file the bundle's checked copy.
    pub lock: Lock,
    /// What the bundle's build environment is made of: its build lock's
    /// digest (empty without one), where a load from an index has its
    /// index settings.
    pub build: String,
}

impl GivenLock {
    /// What tells two locks apart: part of the venv's key and of the
    /// settings an unchanged redeploy must share.
    pub(crate) fn digest(&self) -> String {
        self.lock.digest()
    }

    /// What the installer installs: the bundle's files, or the lock's.
    pub(crate) fn for_installer(&self) -> &Lock {
        self.bundled.as_ref().map_or(&self.lock, |bundled| &bundled.lock)
    }
}

/// Why what the installer wrote is not a lock the host can keep.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{entry}: {problem}")]
pub(crate) struct LockError {
    /// The entry at fault (`packages[3] (requests)`), or the file.
    pub entry: String,
    /// What is wrong with it.
    pub problem: String,
}

impl LockError {
    fn new(entry: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            entry: entry.into(),
            problem: problem.into(),
        }
    }
}

/// What a requirements step installed: one entry per distribution, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lock {
    packages: Vec<Locked>,
}

/// One locked distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Locked {
    /// Normalised (PEP 503).
    name: String,
    /// Absent for a source tree, whose version is whatever its code says.
    version: Option<String>,
    /// The index it came from, when the installer names one.
    index: Option<String>,
    source: Source,
}

/// Where a locked distribution's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// An index's files: built distributions and a source distribution,
    /// at least one file (PEP 751 lets a package list both).
    Dists {
        /// The wheels, each with its hash (possibly none).
        wheels: Vec<Artifact>,
        /// The sdist, if any.
        sdist: Option<Artifact>,
    },
    /// A wheel or sdist named by a direct reference (a URL or a file in the package).
    Archive(Artifact),
    /// A directory inside the package.
    Directory { path: String, editable: bool },
    /// A version-control checkout, pinned to a commit.
    Vcs { kind: String, url: String, commit: String },
}

/// A file and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Artifact {
    location: Location,
    sha256: String,
}

/// A URL, or a path relative to the package directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Url(String),
    Path(String),
}

/// Where the lock's local paths are resolved from, and where they must stay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Places<'a> {
    /// The directory the installer wrote its output in (uv's paths are relative to it).
    pub output_dir: &'a Path,
    /// The published package: every local path must be inside it.
    pub package: &'a Path,
}

impl Places<'static> {
    /// For paths already relative to the package (a lock's, a requirement
    /// line's), wherever the package is: resolved against a stand-in.
    fn package_relative() -> Self {
        let package = Path::new("/package");
        Places {
            output_dir: package,
            package,
        }
    }
}

/// The interpreter and platform a lock was resolved for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Environment {
    /// The interpreter's PEP 508 marker environment.
    pub markers: MarkerEnvironment,
    /// `pip` or `uv`.
    pub installer: String,
}

impl Environment {
    /// The PEP 508 marker only this interpreter on this platform satisfies.
    fn marker(&self) -> String {
        let markers = &self.markers;
        format!(
            "python_full_version == '{}' and implementation_name == '{}' and sys_platform == '{}' and platform_machine == '{}'",
            markers.python_full_version().string,
            markers.implementation_name(),
            markers.sys_platform(),
            markers.platform_machine(),
        )
    }
}

impl Lock {
    /// A lock with nothing installed (a package without requirements).
    pub(crate) fn empty() -> Self {
        Self::default()
    }

    /// What tells two locks apart (see [`GivenLock::digest`]), and names
    /// the build environment a bundle's build lock installs.
    pub(crate) fn digest(&self) -> String {
        use sha2::Digest as _;
        crate::fs::hex(&sha2::Sha256::digest(format!("{:?}", self.packages)))
    }

    /// Whether every distribution is a file under `dir` (a store of files
    /// kept by their hash): none a directory or a file of the package,
    /// whose contents no hash pins, none a checkout.
    pub(crate) fn is_all_files_under(&self, dir: &Path) -> bool {
        self.packages.iter().all(|locked| {
            let files = locked.source.files();
            !files.is_empty()
                && files
                    .iter()
                    .all(|file| matches!(&file.location, Location::Path(path) if Path::new(path).starts_with(dir)))
        })
    }

    /// Reads the resolution uv wrote (`uv pip compile --format pylock.toml`).
    pub(crate) fn from_uv(text: &str, places: Places<'_>) -> Result<Self, LockError> {
        let file: PylockFile =
            toml::from_str(text).map_err(|e| LockError::new(LOCK, format!("not a pylock.toml: {e}")))?;
        Self::from_packages(file.packages, places, |_| Ok(()))
    }

    /// A lock an operator gave for a load, as the guest read it: every entry
    /// checked again as the installer's own account is, then against the
    /// loader's index settings and requirement policy as a requirement line
    /// would be ([`policy_problem`]). The package itself (the directory `.`)
    /// is left out: its own step installs it.
    pub(crate) fn from_claims(
        claims: Vec<Claim>,
        index: &IndexConfig,
        policy: RequirementPolicy,
    ) -> Result<Self, LockError> {
        let check = |locked: &Locked| policy_problem(locked, index, policy);
        let mut lock = Self::from_packages(claims, Places::package_relative(), check)?;
        lock.packages
            .retain(|locked| !matches!(&locked.source, Source::Directory { path, .. } if path == "."));
        Ok(lock)
    }

    /// A bundle's lock, as the guest read it: every entry checked again as
    /// [`Self::from_claims`] does, but where its files came from does not
    /// matter (the bundle holds them, checked by [`Self::in_bundle`]), so
    /// only the policy on direct references applies.
    pub(crate) fn from_bundle_claims(claims: Vec<Claim>, policy: RequirementPolicy) -> Result<Self, LockError> {
        let check = |locked: &Locked| direct_problem(locked, policy);
        let mut lock = Self::from_packages(claims, Places::package_relative(), check)?;
        lock.packages
            .retain(|locked| !matches!(&locked.source, Source::Directory { path, .. } if path == "."));
        Ok(lock)
    }

    /// The files a bundle of this lock holds, by entry: every file named by
    /// a URL (a file inside the package comes with it), under its own file
    /// name. A checkout cannot be bundled: it has no file to hold.
    pub(crate) fn bundle_files(&self) -> Result<Vec<BundleFile>, LockError> {
        let mut files = Vec::new();
        for (n, locked) in self.packages.iter().enumerate() {
            let entry = || format!("packages[{n}] ({})", locked.name);
            let artifacts: Vec<&Artifact> = match &locked.source {
                Source::Dists { .. } | Source::Archive(_) => locked.source.files(),
                Source::Directory { .. } => Vec::new(),
                Source::Vcs { .. } => {
                    return Err(LockError::new(
                        entry(),
                        "a version-control checkout has no file a bundle can hold; lock a wheel of it instead",
                    ));
                }
            };
            // Of several files, any one may serve: the one for this interpreter is fetched.
            let alternative = artifacts.len() > 1;
            for artifact in artifacts.into_iter().filter(|a| a.url().is_some()) {
                let name = artifact.location.file_name();
                if !par_rules::bundle::is_distribution_file_name(&name) {
                    return Err(LockError::new(
                        entry(),
                        format!("`{name}` is not a file name a bundle can hold"),
                    ));
                }
                files.push(BundleFile {
                    entry: entry(),
                    name,
                    sha256: artifact.sha256.clone(),
                    alternative,
                });
            }
        }
        Ok(files)
    }

    /// This lock installed from a bundle's files: each file named by a URL
    /// taken from where `held` (by file name) keeps it instead, with the
    /// lock's hash. Of a distribution's wheels, those the bundle left out
    /// (made for other platforms) are dropped; at least one must be there.
    pub(crate) fn in_bundle(&self, held: &BTreeMap<String, HeldFile>) -> Result<Self, LockError> {
        let mut packages = Vec::with_capacity(self.packages.len());
        for (n, locked) in self.packages.iter().enumerate() {
            let entry = || format!("packages[{n}] ({})", locked.name);
            let local = |artifact: &Artifact| -> Result<Option<Artifact>, LockError> {
                if artifact.url().is_none() {
                    return Ok(Some(artifact.clone()));
                }
                let name = artifact.location.file_name();
                match held.get(&name) {
                    None => Ok(None),
                    Some(file) if file.sha256 == artifact.sha256 => Ok(Some(Artifact {
                        location: Location::Path(file.path.display().to_string()),
                        sha256: artifact.sha256.clone(),
                    })),
                    Some(HeldFile { sha256, .. }) => Err(LockError::new(
                        entry(),
                        format!(
                            "the bundle's `{}/{name}` has SHA-256 {sha256}, the lock says {}",
                            par_rules::bundle::FILES_DIR,
                            artifact.sha256
                        ),
                    )),
                }
            };
            let missing = |name: String| {
                LockError::new(
                    entry(),
                    format!("the bundle does not hold `{}/{name}`", par_rules::bundle::FILES_DIR),
                )
            };
            let source = match &locked.source {
                Source::Dists { wheels, sdist } => {
                    let mut kept = Vec::new();
                    for wheel in wheels {
                        kept.extend(local(wheel)?);
                    }
                    let sdist = sdist.as_ref().map(local).transpose()?.flatten();
                    if kept.is_empty() && sdist.is_none() {
                        let first = locked.source.files().first().map(|f| f.location.file_name());
                        return Err(missing(first.unwrap_or_default()));
                    }
                    Source::Dists { wheels: kept, sdist }
                }
                Source::Archive(file) => {
                    Source::Archive(local(file)?.ok_or_else(|| missing(file.location.file_name()))?)
                }
                other => other.clone(),
            };
            packages.push(Locked {
                index: None,
                source,
                ..locked.clone()
            });
        }
        Ok(Self { packages })
    }

    /// The lines `pip download` fetches the bundle's files with: each
    /// distribution by version from the index settings, or by its URL,
    /// pinned by `--hash` to exactly the lock's files.
    pub(crate) fn to_download(&self) -> String {
        let mut lines = String::new();
        for locked in &self.packages {
            let name = &locked.name;
            let remote: Vec<&Artifact> = locked
                .source
                .files()
                .into_iter()
                .filter(|f| f.url().is_some())
                .collect();
            let hashes: String = remote.iter().map(|f| format!(" --hash=sha256:{}", f.sha256)).collect();
            match (&locked.source, &locked.version, remote.first()) {
                (_, _, None) => {}
                (Source::Dists { .. }, Some(version), Some(_)) => {
                    lines += &format!("{name}=={version}{hashes}\n");
                }
                (_, _, Some(file)) => {
                    let url = file.url().unwrap_or_default();
                    lines += &format!("{name} @ {url} --hash=sha256:{}\n", file.sha256);
                }
            }
        }
        lines
    }

    /// Every entry read and checked (then `check`ed), each error naming its entry.
    fn from_packages(
        packages: Vec<PylockPackage>,
        places: Places<'_>,
        check: impl Fn(&Locked) -> Result<(), String>,
    ) -> Result<Self, LockError> {
        let packages = packages
            .into_iter()
            .enumerate()
            .map(|(n, package)| {
                let entry = format!("packages[{n}] ({})", package.name.chars().take(100).collect::<String>());
                Locked::from_pylock(package, places)
                    .and_then(|locked| check(&locked).map(|()| locked))
                    .map_err(|problem| LockError::new(entry, problem))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::sorted(packages)
    }

    /// Reads pip's report of an install (`pip install --report`).
    pub(crate) fn from_pip_report(text: &str, places: Places<'_>) -> Result<Self, LockError> {
        let report: PipReport = serde_json::from_str(text)
            .map_err(|e| LockError::new(REPORT_FILE, format!("not a pip installation report: {e}")))?;
        let packages = report
            .install
            .into_iter()
            .enumerate()
            .map(|(n, item)| {
                let entry = format!(
                    "install[{n}] ({})",
                    item.metadata.name.chars().take(100).collect::<String>()
                );
                Locked::from_pip(item, places).map_err(|problem| LockError::new(entry, problem))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::sorted(packages)
    }

    /// Sorted by name; a name twice is refused.
    fn sorted(mut packages: Vec<Locked>) -> Result<Self, LockError> {
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = packages.windows(2).find(|pair| pair[0].name == pair[1].name) {
            return Err(LockError::new(&pair[0].name, "listed twice"));
        }
        Ok(Self { packages })
    }

    /// Why the lock does not hold what `line` (one the policy accepted) asks
    /// for in `markers`' environment; `None` when it does or the line does
    /// not apply there. What extras and dependencies need is the installer's
    /// to check: the lock installs as one set.
    pub(crate) fn shortfall(&self, line: &str, markers: &MarkerEnvironment) -> Option<String> {
        let asked = match requirements::asked(line) {
            Some(asked) => asked,
            None => return Some("par cannot read this line to check it against the lock".into()),
        };
        match asked {
            Asked::Nothing => None,
            Asked::Named {
                name,
                specifiers,
                direct,
                marker,
            } => {
                if !marker.evaluate(markers, &[]) {
                    return None;
                }
                let Some(locked) = self.packages.iter().find(|p| p.name == name.as_ref()) else {
                    return Some(format!("the lock has no `{name}`"));
                };
                let from_index = matches!(locked.source, Source::Dists { .. });
                if direct && from_index {
                    return Some(format!(
                        "the lock has `{name}` from an index, not the direct reference this line names"
                    ));
                }
                let specifiers = specifiers?;
                match locked.version.as_deref() {
                    Some(version) if Version::from_str(version).is_ok_and(|v| specifiers.contains(&v)) => None,
                    Some(version) => Some(format!("the lock has `{name}` {version}, not `{specifiers}`")),
                    None => Some(format!("the lock has `{name}` from a source tree, without a version")),
                }
            }
            Asked::Path(path) => {
                let wanted = inside_package(Path::new(&path), Places::package_relative()).ok()?;
                let locked = self.packages.iter().any(|p| match &p.source {
                    Source::Directory { path, .. } => *path == wanted,
                    Source::Archive(file) => file.location == Location::Path(wanted.clone()),
                    _ => false,
                });
                (!locked).then(|| format!("the lock has nothing from `{wanted}`"))
            }
        }
    }

    /// The copy of the lock an installer reads: every local path absolute,
    /// under `package` (uv reads relative ones from the lock file's directory).
    pub(crate) fn to_install_lock(&self, package: &Path) -> Result<String, LockError> {
        let file = PylockFile {
            lock_version: "1.0".into(),
            created_by: "par".into(),
            requires_python: None,
            environments: Vec::new(),
            packages: self.packages.iter().map(|p| p.to_pylock(Some(package))).collect(),
            tool: None,
        };
        toml::to_string(&file).map_err(|e| LockError::new(LOCK, e.to_string()))
    }

    /// The lock as pip takes it: requirement lines each pinned by `--hash`
    /// to its exact files (hashed mode, nothing else resolved): a version
    /// from the index or find-links, as a resolved install takes it, or a
    /// direct reference; and the directories and checkouts, which have no
    /// hash to check, apart.
    pub(crate) fn to_pip(&self, package: &Path) -> (String, Vec<String>) {
        let (mut hashed, mut unhashed) = (String::new(), Vec::new());
        let location = |file: &Artifact| match &file.location {
            Location::Url(url) => url.clone(),
            Location::Path(path) => package.join(path).display().to_string(),
        };
        for locked in &self.packages {
            let name = &locked.name;
            let pinned = |file: &Artifact| format!("{name} @ {} --hash=sha256:{}\n", location(file), file.sha256);
            match (&locked.source, &locked.version) {
                // From the index or find-links by version, as a resolved
                // install takes it, held to exactly these files by their hashes.
                (Source::Dists { .. }, Some(version)) => {
                    let files = locked.source.files();
                    let hashes: String = files.iter().map(|f| format!(" --hash=sha256:{}", f.sha256)).collect();
                    hashed += &format!("{name}=={version}{hashes}\n");
                }
                // Without a version, the file itself.
                (Source::Dists { .. }, None) => hashed.extend(locked.source.files().first().map(|f| pinned(f))),
                (Source::Archive(file), _) => hashed += &pinned(file),
                (Source::Directory { path, .. }, _) => unhashed.push(package.join(path).display().to_string()),
                (Source::Vcs { kind, url, commit }, _) => unhashed.push(format!("{name} @ {kind}+{url}@{commit}")),
            }
        }
        (hashed, unhashed)
    }

    /// Each distribution as an SBOM names it, by name.
    pub(crate) fn named(&self) -> impl Iterator<Item = Named<'_>> {
        self.packages.iter().map(|locked| {
            let files = locked.source.files();
            let origin = match &locked.source {
                Source::Directory { path, .. } => Some(path.as_str()),
                Source::Vcs { url, .. } => Some(url.as_str()),
                _ => files.first().map(|file| match &file.location {
                    Location::Url(url) => url.as_str(),
                    Location::Path(path) => path.as_str(),
                }),
            };
            Named {
                name: &locked.name,
                version: locked.version.as_deref(),
                sha256: files.iter().map(|file| file.sha256.as_str()).collect(),
                origin,
            }
        })
    }

    /// How many distributions it names.
    pub(crate) fn len(&self) -> usize {
        self.packages.len()
    }

    /// Whether it names none.
    pub(crate) fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// The `pylock.toml` the host keeps: these packages, the agent (its
    /// distribution name, when it was installed) as an editable directory,
    /// and the environment it was resolved for.
    pub(crate) fn to_pylock(&self, agent: Option<&str>, environment: &Environment) -> Result<String, LockError> {
        let mut packages: Vec<PylockPackage> = self.packages.iter().map(|p| p.to_pylock(None)).collect();
        if let Some(agent) = agent.and_then(|name| PackageName::from_str(name).ok()) {
            packages.push(PylockPackage {
                name: agent.to_string(),
                directory: Some(PylockDirectory {
                    path: ".".into(),
                    editable: Some(true),
                }),
                ..PylockPackage::default()
            });
        }
        let file = PylockFile {
            lock_version: "1.0".into(),
            created_by: "par".into(),
            requires_python: Some(format!("=={}", environment.markers.python_full_version().string)),
            environments: vec![environment.marker()],
            packages,
            tool: Some(Tool {
                par: ToolPar {
                    installer: environment.installer.clone(),
                    paths: "relative to the package directory".into(),
                },
            }),
        };
        let body = toml::to_string(&file).map_err(|e| LockError::new(LOCK, e.to_string()))?;
        Ok(format!(
            "# What par installed into this venv (PEP 751). Local paths are relative to the package directory.\n{body}"
        ))
    }
}

impl Locked {
    fn from_pylock(package: PylockPackage, places: Places<'_>) -> Result<Self, String> {
        let name = normalised_name(&package.name)?;
        let version = package.version.map(|v| checked_version(&v)).transpose()?;
        let artifact = |file: PylockArtifact| -> Result<Artifact, String> {
            let location = match (file.url, file.path) {
                (Some(url), None) => Location::Url(checked_url(&url)?),
                (None, Some(path)) => Location::Path(inside_package(Path::new(&path), places)?),
                _ => return Err("a file needs exactly one of `url` and `path`".into()),
            };
            Ok(Artifact {
                location,
                sha256: sha256_of(&file.hashes)?,
            })
        };
        let source = match (
            package.wheels,
            package.sdist,
            package.archive,
            package.directory,
            package.vcs,
        ) {
            (wheels, sdist, None, None, None)
                if (wheels.is_some() || sdist.is_some()) && wheels.as_ref().is_none_or(|w| !w.is_empty()) =>
            {
                let wheels: Vec<Artifact> = wheels
                    .unwrap_or_default()
                    .into_iter()
                    .map(artifact)
                    .collect::<Result<_, _>>()?;
                for wheel in &wheels {
                    check_wheel_name(wheel, &name, version.as_deref())?;
                }
                Source::Dists {
                    wheels,
                    sdist: sdist.map(artifact).transpose()?,
                }
            }
            (None, None, Some(archive), None, None) => Source::Archive(artifact(archive)?),
            (None, None, None, Some(directory), None) => Source::Directory {
                path: inside_package(Path::new(&directory.path), places)?,
                editable: directory.editable.unwrap_or(false),
            },
            (None, None, None, None, Some(vcs)) => Source::Vcs {
                url: checked_url(&vcs.url.ok_or("a `vcs` source needs its `url`")?)?,
                kind: vcs.kind,
                commit: checked_commit(&vcs.commit_id)?,
            },
            _ => {
                return Err(
                    "needs `wheels` (not empty) and/or `sdist`, or exactly one of `archive`, `directory` and `vcs`"
                        .into(),
                );
            }
        };
        Ok(Self {
            name,
            version,
            index: package.index.map(|url| checked_url(&url)).transpose()?,
            source,
        })
    }

    fn from_pip(item: PipInstall, places: Places<'_>) -> Result<Self, String> {
        let name = normalised_name(&item.metadata.name)?;
        let version = checked_version(&item.metadata.version)?;
        let info = item.download_info;
        let url = checked_url(&info.url)?;
        let local = url
            .starts_with("file://")
            .then(|| inside_package(Path::new(&path_of(&url)?), places))
            .transpose();
        let source = if let Some(vcs) = info.vcs_info {
            let (kind, url) = url.split_once('+').ok_or("a VCS URL without its `git+` prefix")?;
            Source::Vcs {
                kind: kind.to_owned(),
                url: url.to_owned(),
                commit: checked_commit(&vcs.commit_id)?,
            }
        } else if let Some(dir) = info.dir_info {
            let path = local.ok().flatten().ok_or("a local directory outside the package")?;
            Source::Directory {
                path,
                editable: dir.editable.unwrap_or(false),
            }
        } else if let Some(archive) = info.archive_info {
            let sha256 = sha256_of(&archive.hashes)?;
            // A file of the package is named by its path; anything else (an
            // index, a find-links location) by its URL.
            let location = match local {
                Ok(Some(path)) => Location::Path(path),
                _ => Location::Url(url.clone()),
            };
            let artifact = Artifact { location, sha256 };
            match (item.is_direct, url.ends_with(".whl")) {
                (true, _) => Source::Archive(artifact),
                (false, true) => Source::Dists {
                    wheels: vec![artifact],
                    sdist: None,
                },
                (false, false) => Source::Dists {
                    wheels: Vec::new(),
                    sdist: Some(artifact),
                },
            }
        } else {
            return Err("the report says neither where its archive, directory nor checkout came from".into());
        };
        // A source tree's version is whatever its code says at the next build.
        let version = (!matches!(source, Source::Directory { .. })).then_some(version);
        Ok(Self {
            name,
            version,
            index: None,
            source,
        })
    }

    /// Its PEP 751 entry; local paths relative to the package, or absolute
    /// under `package` when given.
    fn to_pylock(&self, package: Option<&Path>) -> PylockPackage {
        let local = |path: &str| match package {
            Some(package) => package.join(path).display().to_string(),
            None => path.to_owned(),
        };
        let file = |artifact: &Artifact| {
            let (url, path) = match &artifact.location {
                Location::Url(url) => (Some(url.clone()), None),
                Location::Path(path) => (None, Some(local(path))),
            };
            PylockArtifact {
                url,
                path,
                hashes: BTreeMap::from([("sha256".to_owned(), artifact.sha256.clone())]),
            }
        };
        let mut entry = PylockPackage {
            name: self.name.clone(),
            version: self.version.clone(),
            index: self.index.clone(),
            ..PylockPackage::default()
        };
        match &self.source {
            Source::Dists { wheels, sdist } => {
                entry.wheels = (!wheels.is_empty()).then(|| wheels.iter().map(file).collect());
                entry.sdist = sdist.as_ref().map(file);
            }
            Source::Archive(archive) => entry.archive = Some(file(archive)),
            Source::Directory { path, editable } => {
                entry.directory = Some(PylockDirectory {
                    path: local(path),
                    editable: Some(*editable),
                })
            }
            Source::Vcs { kind, url, commit } => {
                entry.vcs = Some(PylockVcs {
                    kind: kind.clone(),
                    url: Some(url.clone()),
                    commit_id: commit.clone(),
                })
            }
        }
        entry
    }
}

/// Why the operator's settings would not let a requirement line do what
/// this entry does: an index other than the configured ones (unless
/// packages may name their own), a direct reference by URL (unless direct
/// URLs are allowed), a file on the host outside the configured find-links
/// directories, or any remote URL when the settings name no remote location.
fn policy_problem(locked: &Locked, index: &IndexConfig, policy: RequirementPolicy) -> Result<(), String> {
    if let Some(url) = &locked.index
        && !policy.allow_index_options
        && !configured_index(index, url)
    {
        return Err(format!("the index `{url}` is not one the loader is configured with"));
    }
    direct_problem(locked, policy)?;
    let urls: Vec<&str> = locked.source.files().into_iter().filter_map(Artifact::url).collect();
    urls.into_iter().try_for_each(|url| allowed_url(index, url))
}

/// Why the operator's policy would not let a requirement line name this
/// entry's source: a direct reference by URL, unless direct URLs are allowed.
fn direct_problem(locked: &Locked, policy: RequirementPolicy) -> Result<(), String> {
    let direct = matches!(
        &locked.source,
        Source::Vcs { .. }
            | Source::Archive(Artifact {
                location: Location::Url(_),
                ..
            })
    );
    match direct && !policy.allow_direct_urls {
        true => Err("a direct reference by URL, which the loader's policy does not allow".into()),
        false => Ok(()),
    }
}

impl Source {
    /// Every file it names: wheels, then the sdist; an archive; none for a
    /// directory or checkout.
    fn files(&self) -> Vec<&Artifact> {
        match self {
            Source::Dists { wheels, sdist } => wheels.iter().chain(sdist).collect(),
            Source::Archive(file) => vec![file],
            Source::Directory { .. } | Source::Vcs { .. } => Vec::new(),
        }
    }
}

impl Location {
    /// The file name it ends in, `%XX` escapes decoded.
    fn file_name(&self) -> String {
        let location = match self {
            Location::Url(url) => url.split(['?', '#']).next().unwrap_or(url),
            Location::Path(path) => path,
        };
        let file = location.rsplit('/').next().unwrap_or(location);
        path_of(&format!("file://{file}")).unwrap_or_else(|_| file.to_owned())
    }
}

impl Artifact {
    fn url(&self) -> Option<&str> {
        match &self.location {
            Location::Url(url) => Some(url),
            Location::Path(_) => None,
        }
    }
}

/// Whether `url` is one of the indexes the loader is configured with (PyPI
/// when it names none and may use an index).
fn configured_index(index: &IndexConfig, url: &str) -> bool {
    let same = |configured: &str| configured.trim_end_matches('/') == url.trim_end_matches('/');
    let main = match &index.index_url {
        Some(configured) => same(configured),
        None => !index.no_index && same("https://pypi.org/simple"),
    };
    main || index.extra_index_urls.iter().any(|extra| same(extra))
}

/// A file's URL: a local file only inside a configured find-links
/// directory, a remote one only when the settings name a remote location.
fn allowed_url(index: &IndexConfig, url: &str) -> Result<(), String> {
    if url.starts_with("file://") {
        let named = PathBuf::from(path_of(url)?);
        let climbs = named.components().any(|c| c == Component::ParentDir);
        // Compared as the find-links directories are, past any symlink above.
        let path = match (named.parent().map(Path::canonicalize), named.file_name()) {
            (Some(Ok(dir)), Some(file)) => dir.join(file),
            _ => named,
        };
        let inside = index
            .find_links
            .iter()
            .filter_map(|link| match link.strip_prefix("file://") {
                Some(_) => path_of(link).ok().map(PathBuf::from),
                None => (!link.contains("://")).then(|| PathBuf::from(link)),
            })
            .filter_map(|dir| dir.canonicalize().ok())
            .any(|dir| path.starts_with(dir));
        return match (climbs, inside) {
            (false, true) => Ok(()),
            _ => Err(format!(
                "the file `{url}` is outside every find-links directory the loader is configured with"
            )),
        };
    }
    let remote = url.starts_with("https://") || url.starts_with("http://");
    match (remote, index.is_remote()) {
        (true, true) => Ok(()),
        (true, false) => Err(format!(
            "`{url}` is remote, and the loader installs only from local files"
        )),
        (false, _) => Err(format!("`{url}` is neither a local file nor an http(s) URL")),
    }
}

/// A wheel's file name (PEP 427: `{name}-{version}(-{build})?-{tags}.whl`)
/// must be of this entry's distribution and version: a lock cannot install
/// one project's file under another's name.
fn check_wheel_name(wheel: &Artifact, name: &str, version: Option<&str>) -> Result<(), String> {
    let decoded = wheel.location.file_name();
    let file = &decoded;
    let parts: Vec<&str> = decoded
        .strip_suffix(".whl")
        .map(|stem| stem.split('-').collect())
        .unwrap_or_default();
    let (Some(distribution), Some(file_version)) = (parts.first(), parts.get(1)) else {
        return Err(format!("`{file}` is not a wheel's file name"));
    };
    if !(5..=6).contains(&parts.len()) {
        return Err(format!("`{file}` is not a wheel's file name"));
    }
    if normalised_name(distribution).ok().as_deref() != Some(name) {
        return Err(format!("the wheel `{file}` is not of `{name}`"));
    }
    let same_version = match (version.map(Version::from_str), Version::from_str(file_version)) {
        (None, _) => true,
        (Some(Ok(locked)), Ok(file)) => locked == file,
        _ => false,
    };
    if !same_version {
        return Err(format!(
            "the wheel `{file}` is not of `{name}` {}",
            version.unwrap_or_default()
        ));
    }
    Ok(())
}

fn normalised_name(name: &str) -> Result<String, String> {
    PackageName::from_str(name)
        .map(|name| name.to_string())
        .map_err(|e| format!("`name` is not a distribution name: {e}"))
}

fn checked_version(version: &str) -> Result<String, String> {
    Version::from_str(version)
        .map(|_| version.to_owned())
        .map_err(|e| format!("`version` is not a PEP 440 version: {e}"))
}

/// A URL of at most 8 KiB with a scheme and no whitespace or control characters.
fn checked_url(url: &str) -> Result<String, String> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    let plain = url.len() <= 8 * 1024 && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    match scheme {
        Some(scheme)
            if plain
                && !scheme.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b)) =>
        {
            Ok(url.to_owned())
        }
        _ => Err(format!(
            "`{}` is not a URL",
            url.chars().take(200).collect::<String>().escape_default()
        )),
    }
}

fn checked_commit(commit: &str) -> Result<String, String> {
    let hex = (7..=64).contains(&commit.len()) && commit.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| commit.to_ascii_lowercase())
        .ok_or_else(|| "`commit-id` is not a commit hash".into())
}

/// The SHA-256 among `hashes`: required, 64 hex digits. Only it is kept,
/// so nothing the host did not check rides along.
fn sha256_of(hashes: &BTreeMap<String, String>) -> Result<String, String> {
    let sha256 = hashes.get("sha256").ok_or("no SHA-256 hash")?;
    let hex = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| sha256.to_ascii_lowercase())
        .ok_or_else(|| "the SHA-256 hash is not 64 hex digits".into())
}

/// `path` (relative to the installer's output directory, or absolute),
/// resolved without touching the file system, as a path relative to the
/// package; anything outside the package is refused.
fn inside_package(path: &Path, places: Places<'_>) -> Result<String, String> {
    let mut resolved = PathBuf::new();
    for component in places.output_dir.join(path).components() {
        match component {
            Component::ParentDir => {
                resolved.pop();
            }
            Component::CurDir => {}
            other => resolved.push(other),
        }
    }
    let relative = resolved
        .strip_prefix(places.package)
        .map_err(|_| format!("`{}` is outside the package", path.display()))?;
    let text = relative.to_str().ok_or("a path that is not UTF-8")?;
    Ok(if text.is_empty() { ".".into() } else { text.to_owned() })
}

/// A distribution as the guest read it from an operator's lock, checked by [`Lock::from_claims`].
pub(crate) type Claim = PylockPackage;

/// The part of PEP 751 par reads and writes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct PylockFile {
    lock_version: String,
    #[serde(default)]
    created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requires_python: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    environments: Vec<String>,
    #[serde(default)]
    packages: Vec<PylockPackage>,
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    tool: Option<Tool>,
}

/// One `[[packages]]` entry.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct PylockPackage {
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) index: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) vcs: Option<PylockVcs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) directory: Option<PylockDirectory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) archive: Option<PylockArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sdist: Option<PylockArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) wheels: Option<Vec<PylockArtifact>>,
}

/// A wheel, sdist or archive entry.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PylockArtifact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) hashes: BTreeMap<String, String>,
}

/// A `directory` source.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PylockDirectory {
    pub(crate) path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) editable: Option<bool>,
}

/// A `vcs` source.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct PylockVcs {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    pub(crate) commit_id: String,
}

#[derive(Debug, Serialize)]
struct Tool {
    par: ToolPar,
}

#[derive(Debug, Serialize)]
struct ToolPar {
    installer: String,
    paths: String,
}

/// The part of pip's installation report par reads.
#[derive(Debug, Deserialize)]
struct PipReport {
    install: Vec<PipInstall>,
}

#[derive(Debug, Deserialize)]
struct PipInstall {
    download_info: PipDownloadInfo,
    #[serde(default)]
    is_direct: bool,
    metadata: PipMetadata,
}

#[derive(Debug, Deserialize)]
struct PipDownloadInfo {
    url: String,
    archive_info: Option<PipArchiveInfo>,
    dir_info: Option<PipDirInfo>,
    vcs_info: Option<PipVcsInfo>,
}

#[derive(Debug, Deserialize)]
struct PipArchiveInfo {
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct PipDirInfo {
    editable: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct PipVcsInfo {
    commit_id: String,
}

#[derive(Debug, Deserialize)]
struct PipMetadata {
    name: String,
    version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "81383611a09c1bc0b08b76e0fd5829d7c6824c65b27a6aee339da133f4233ea2";

    fn places() -> Places<'static> {
        Places {
            output_dir: Path::new("/r/venvs/a_1/.par-resolution"),
            package: Path::new("/r/trees/a@1.x"),
        }
    }

    /// What `uv pip compile --format pylock.toml` wrote for a local path and a wheel.
    fn uv_output(extra: &str) -> String {
        format!(
            r#"lock-version = "1.0"
created-by = "uv"
requires-python = ">=3.11.7"

[[packages]]
name = "Foo_Bar"
directory = {{ path = "../../../trees/a@1.x/libs/foo" }}

[[packages]]
name = "packaging"
version = "26.4"
index = "https://pypi.org/simple"
wheels = [{{ url = "https://files.example/packaging-26.4-py3-none-any.whl", hashes = {{ sha256 = "{SHA}" }} }}]
{extra}"#
        )
    }

    fn markers() -> MarkerEnvironment {
        MarkerEnvironment::try_from(uv_pep508::MarkerEnvironmentBuilder {
            implementation_name: "cpython",
            implementation_version: "3.11.7",
            os_name: "posix",
            platform_machine: "x86_64",
            platform_python_implementation: "CPython",
            platform_release: "6.1",
            platform_system: "Linux",
            platform_version: "#1 SMP",
            python_full_version: "3.11.7",
            python_version: "3.11",
            sys_platform: "linux",
        })
        .expect("markers")
    }

    fn environment() -> Environment {
        Environment {
            markers: markers(),
            installer: "uv".into(),
        }
    }

    #[test]
    fn uv_resolution_is_read_with_paths_relative_to_the_package() {
        let lock = Lock::from_uv(&uv_output(""), places()).expect("read");
        assert_eq!(lock.len(), 2);
        assert_eq!(lock.packages[0].name, "foo-bar");
        assert_eq!(
            lock.packages[0].source,
            Source::Directory {
                path: "libs/foo".into(),
                editable: false
            }
        );
        assert_eq!(lock.packages[1].version.as_deref(), Some("26.4"));
        assert_eq!(lock.packages[1].index.as_deref(), Some("https://pypi.org/simple"));
    }

    #[test]
    fn the_written_lock_reads_back_as_the_same_lock_with_the_agent_and_the_environment() {
        let lock = Lock::from_uv(&uv_output(""), places()).expect("read");
        let text = lock.to_pylock(Some("My_Agent"), &environment()).expect("write");
        let value: toml::Value = toml::from_str(&text).expect("TOML");
        assert_eq!(value["lock-version"].as_str(), Some("1.0"));
        assert_eq!(value["created-by"].as_str(), Some("par"));
        assert_eq!(value["requires-python"].as_str(), Some("==3.11.7"));
        let environments = value["environments"].as_array().expect("environments");
        assert!(
            environments[0]
                .as_str()
                .is_some_and(|m| m.starts_with("python_full_version == '3.11.7' and implementation_name == 'cpython'")),
            "{environments:?}"
        );
        assert_eq!(value["tool"]["par"]["installer"].as_str(), Some("uv"));
        let packages = value["packages"].as_array().expect("packages");
        let agent = packages.last().expect("agent");
        assert_eq!(agent["name"].as_str(), Some("my-agent"));
        assert_eq!(agent["directory"]["path"].as_str(), Some("."));
        assert_eq!(agent["directory"]["editable"].as_bool(), Some(true));
        assert_eq!(packages[1]["wheels"][0]["hashes"]["sha256"].as_str(), Some(SHA));

        // Paths in the written lock are relative to the package directory.
        let package = Path::new("/r/trees/a@1.x");
        let again = Lock::from_uv(
            &text,
            Places {
                output_dir: package,
                package,
            },
        )
        .expect("read back");
        let mut expected = lock.packages.clone();
        expected.push(Locked {
            name: "my-agent".into(),
            version: None,
            index: None,
            source: Source::Directory {
                path: ".".into(),
                editable: true,
            },
        });
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(again.packages, expected);
    }

    #[test]
    fn pip_report_is_read_as_wheels_sdists_archives_and_directories() {
        let report = format!(
            r#"{{"version": "1", "install": [
                {{"download_info": {{"url": "file:///wheels/packaging-26.4-py3-none-any.whl",
                    "archive_info": {{"hash": "sha256={SHA}", "hashes": {{"sha256": "{SHA}"}}}}}},
                  "is_direct": false, "requested": true,
                  "metadata": {{"name": "packaging", "version": "26.4", "summary": "x"}}}},
                {{"download_info": {{"url": "https://files.example/six-1.0.tar.gz",
                    "archive_info": {{"hashes": {{"sha256": "{SHA}", "md5": "x"}}}}}},
                  "metadata": {{"name": "six", "version": "1.0"}}}},
                {{"download_info": {{"url": "file:///r/trees/a%401.x/dist/x-2-py3-none-any.whl",
                    "archive_info": {{"hashes": {{"sha256": "{SHA}"}}}}}},
                  "is_direct": true, "metadata": {{"name": "x", "version": "2"}}}},
                {{"download_info": {{"url": "file:///r/trees/a%401.x/libs/foo", "dir_info": {{}}}},
                  "is_direct": true, "metadata": {{"name": "foo", "version": "0.1"}}}}
            ]}}"#
        );
        let lock = Lock::from_pip_report(&report, places()).expect("read");
        let by_name = |name: &str| lock.packages.iter().find(|p| p.name == name).expect(name).clone();
        let artifact = |location| Artifact {
            location,
            sha256: SHA.into(),
        };
        assert_eq!(
            by_name("packaging").source,
            Source::Dists {
                wheels: vec![artifact(Location::Url(
                    "file:///wheels/packaging-26.4-py3-none-any.whl".into()
                ))],
                sdist: None
            }
        );
        assert_eq!(
            by_name("six").source,
            Source::Dists {
                wheels: Vec::new(),
                sdist: Some(artifact(Location::Url("https://files.example/six-1.0.tar.gz".into())))
            }
        );
        assert_eq!(
            by_name("x").source,
            Source::Archive(artifact(Location::Path("dist/x-2-py3-none-any.whl".into())))
        );
        let foo = by_name("foo");
        assert_eq!(foo.version, None, "a source tree's version is not locked");
        assert_eq!(
            foo.source,
            Source::Directory {
                path: "libs/foo".into(),
                editable: false
            }
        );
    }

    #[test]
    fn what_cannot_be_locked_is_refused_naming_the_entry() {
        let refused = |extra: &str| Lock::from_uv(&uv_output(extra), places()).expect_err(extra);
        let cases = [
            (
                "[[packages]]\nname = \"packaging\"\nversion = \"1\"\narchive = { url = \"https://x/p.whl\", hashes = { sha256 = \"".to_owned() + SHA + "\" } }\n",
                "listed twice",
            ),
            (
                "[[packages]]\nname = \"b\"\nversion = \"1\"\nwheels = [{ url = \"https://x/b.whl\", hashes = { sha256 = \"abc\" } }]\n".into(),
                "64 hex digits",
            ),
            (
                "[[packages]]\nname = \"b\"\nversion = \"1\"\nwheels = [{ url = \"https://x/b.whl\", hashes = { md5 = \"abc\" } }]\n".into(),
                "no SHA-256",
            ),
            (
                "[[packages]]\nname = \"b\"\ndirectory = { path = \"../../../../etc\" }\n".into(),
                "outside the package",
            ),
            (
                "[[packages]]\nname = \"b\"\nversion = \"not a version\"\nsdist = { url = \"https://x/b.tar.gz\", hashes = { sha256 = \"".to_owned() + SHA + "\" } }\n",
                "PEP 440",
            ),
            ("[[packages]]\nname = \"b c\"\ndirectory = { path = \".\" }\n".into(), "distribution name"),
            ("[[packages]]\nname = \"b\"\n".into(), "exactly one of"),
            (
                "[[packages]]\nname = \"b\"\nversion = \"1\"\nwheels = [{ url = \"https://x/c-1-py3-none-any.whl\", hashes = { sha256 = \"".to_owned() + SHA + "\" } }]\n",
                "is not of `b`",
            ),
            (
                "[[packages]]\nname = \"b\"\nversion = \"1\"\nwheels = [{ url = \"https://x/b-2-py3-none-any.whl\", hashes = { sha256 = \"".to_owned() + SHA + "\" } }]\n",
                "is not of `b` 1",
            ),
            (
                "[[packages]]\nname = \"b\"\nversion = \"1\"\nwheels = [{ url = \"https://x/b.zip\", hashes = { sha256 = \"".to_owned() + SHA + "\" } }]\n",
                "not a wheel's file name",
            ),
            (
                "[[packages]]\nname = \"b\"\nversion = \"1\"\nsdist = { url = \"no scheme\", hashes = { sha256 = \"".to_owned() + SHA + "\" } }\n",
                "not a URL",
            ),
        ];
        for (extra, needle) in cases {
            let error = refused(&extra);
            assert!(error.to_string().contains(needle), "{extra}: {error}");
        }
        let error = refused("[[packages]]\nname = \"b\"\n");
        assert!(error.entry.starts_with("packages[2] (b)"), "{error}");
        assert!(Lock::from_uv("lock-version = [", places()).is_err());
    }

    #[test]
    fn a_lock_takes_what_the_loaders_settings_allow_and_nothing_else() {
        let links = tempfile::tempdir().expect("links");
        let claim = |name: &str, index: Option<&str>, url: &str, archive: bool| {
            let file = PylockArtifact {
                url: Some(url.to_owned()),
                path: None,
                hashes: BTreeMap::from([("sha256".to_owned(), SHA.to_owned())]),
            };
            let mut claim = Claim {
                name: name.into(),
                version: Some("1".into()),
                index: index.map(str::to_owned),
                ..Claim::default()
            };
            match archive {
                true => claim.archive = Some(file),
                false => claim.wheels = Some(vec![file]),
            }
            claim
        };
        let local = format!("file://{}/a-1-py3-none-any.whl", links.path().display());
        let offline = IndexConfig {
            no_index: true,
            find_links: vec![links.path().display().to_string()],
            ..IndexConfig::default()
        };
        let online = IndexConfig {
            index_url: Some("https://mirror.example/simple/".into()),
            ..IndexConfig::default()
        };
        let open = RequirementPolicy {
            allow_index_options: false,
            allow_direct_urls: true,
        };
        let strict = RequirementPolicy::default();
        let taken =
            |claims, index: &IndexConfig, policy| Lock::from_claims(claims, index, policy).map(|lock| lock.len());
        assert_eq!(taken(vec![claim("a", None, &local, false)], &offline, strict), Ok(1));
        let remote = "https://files.example/a-1-py3-none-any.whl";
        let mirrored = claim("a", Some("https://mirror.example/simple"), remote, false);
        assert_eq!(taken(vec![mirrored], &online, strict), Ok(1));
        assert_eq!(taken(vec![claim("a", None, remote, true)], &online, open), Ok(1));

        let refused =
            |claims, index: &IndexConfig, policy| taken(claims, index, policy).expect_err("refused").to_string();
        let outside = claim(
            "a",
            None,
            &format!("file://{}/../a-1-py3-none-any.whl", links.path().display()),
            false,
        );
        assert!(refused(vec![outside], &offline, strict).contains("outside every find-links"));
        assert!(refused(vec![claim("a", None, remote, false)], &offline, strict).contains("only from local files"));
        let elsewhere = claim("a", Some("https://pypi.org/simple"), remote, false);
        assert!(refused(vec![elsewhere], &online, strict).starts_with("packages[0] (a): the index"));
        assert!(refused(vec![claim("a", None, remote, true)], &online, strict).contains("direct reference"));
        assert!(
            refused(
                vec![claim("a", None, "ftp://x/a-1-py3-none-any.whl", false)],
                &online,
                strict
            )
            .contains("neither")
        );
    }

    /// A bundle holds the file of each entry named by a URL; installed from
    /// it, each is the bundle's copy, and one whose hash differs, or that
    /// is missing, refuses the bundle naming the entry. Of several wheels,
    /// those left out (other platforms) are dropped.
    #[test]
    fn a_bundle_holds_every_remote_file_and_installs_from_its_copies() {
        let other = "1".repeat(64);
        let extra = format!(
            "\n[[packages]]\nname = \"multi\"\nversion = \"1\"\nwheels = [\n  {{ url = \"https://f.example/multi-1-cp311-cp311-linux_x86_64.whl\", hashes = {{ sha256 = \"{SHA}\" }} }},\n  {{ url = \"https://f.example/multi-1-cp311-cp311-win_amd64.whl\", hashes = {{ sha256 = \"{other}\" }} }},\n]\n"
        );
        let lock = Lock::from_uv(&uv_output(&extra), places()).expect("lock");
        let files = lock.bundle_files().expect("files");
        let names: Vec<(&str, bool)> = files.iter().map(|f| (f.name.as_str(), f.alternative)).collect();
        assert_eq!(
            names,
            [
                ("multi-1-cp311-cp311-linux_x86_64.whl", true),
                ("multi-1-cp311-cp311-win_amd64.whl", true),
                ("packaging-26.4-py3-none-any.whl", false),
            ]
        );
        let held_file = |name: &str, sha256: &str| {
            let path = Path::new("/b").join(sha256).join(name);
            (
                name.to_owned(),
                HeldFile {
                    sha256: sha256.to_owned(),
                    path,
                },
            )
        };
        let held = BTreeMap::from([
            held_file("multi-1-cp311-cp311-linux_x86_64.whl", SHA),
            held_file("packaging-26.4-py3-none-any.whl", SHA),
        ]);
        let bundled = lock.in_bundle(&held).expect("bundled");
        let install = bundled
            .to_install_lock(Path::new("/r/trees/a@1.x"))
            .expect("install lock");
        assert!(
            install.contains(&format!("path = \"/b/{SHA}/packaging-26.4-py3-none-any.whl\"")),
            "{install}"
        );
        assert!(
            !install.contains("win_amd64") && !install.contains("https://"),
            "{install}"
        );

        let mut tampered = held.clone();
        let (name, file) = held_file("packaging-26.4-py3-none-any.whl", &other);
        tampered.insert(name, file);
        let error = lock.in_bundle(&tampered).expect_err("another hash");
        assert_eq!(error.entry, "packages[2] (packaging)");
        assert!(
            error.problem.contains("wheels/packaging-26.4-py3-none-any.whl"),
            "{error}"
        );
        let mut missing = held;
        missing.remove("multi-1-cp311-cp311-linux_x86_64.whl");
        let error = lock.in_bundle(&missing).expect_err("no wheel of multi");
        assert_eq!(error.entry, "packages[1] (multi)");

        let vcs = "\n[[packages]]\nname = \"v\"\nvcs = { type = \"git\", url = \"https://g.example/v\", commit-id = \"0123456789abcdef0123456789abcdef01234567\" }\n";
        let error = Lock::from_uv(&uv_output(vcs), places())
            .expect("lock")
            .bundle_files()
            .expect_err("a checkout");
        assert!(error.problem.contains("version-control checkout"), "{error}");
    }

    /// PEP 751 lets a distribution list its wheels and its sdist together,
    /// as uv writes it for an index that has both: read, written back and
    /// given to pip (pinned to any of the files) as one entry.
    #[test]
    fn a_distribution_with_wheels_and_an_sdist_is_one_entry() {
        let other = "2".repeat(64);
        let extra = format!(
            "\n[[packages]]\nname = \"six\"\nversion = \"1.16.0\"\nsdist = {{ url = \"https://f.example/six-1.16.0.tar.gz\", hashes = {{ sha256 = \"{other}\" }} }}\nwheels = [{{ url = \"https://f.example/six-1.16.0-py2.py3-none-any.whl\", hashes = {{ sha256 = \"{SHA}\" }} }}]\n"
        );
        let lock = Lock::from_uv(&uv_output(&extra), places()).expect("lock");
        let six = lock.packages.iter().find(|p| p.name == "six").expect("six");
        assert!(
            matches!(&six.source, Source::Dists { wheels, sdist: Some(_) } if wheels.len() == 1),
            "{six:?}"
        );
        let environment = Environment {
            markers: markers(),
            installer: "uv".into(),
        };
        let written = lock.to_pylock(None, &environment).expect("write");
        let again = Lock::from_uv(&written, Places::package_relative()).expect("read back");
        assert_eq!(again.packages, lock.packages);
        let (hashed, _) = lock.to_pip(Path::new("/r/trees/a@1.x"));
        assert!(
            hashed.contains(&format!("six==1.16.0 --hash=sha256:{SHA} --hash=sha256:{other}\n")),
            "{hashed}"
        );
        let files: Vec<(String, bool)> = lock
            .bundle_files()
            .expect("files")
            .into_iter()
            .filter(|f| f.entry.ends_with("(six)"))
            .map(|f| (f.name, f.alternative))
            .collect();
        assert_eq!(
            files,
            [
                ("six-1.16.0-py2.py3-none-any.whl".to_owned(), true),
                ("six-1.16.0.tar.gz".to_owned(), true)
            ]
        );
    }
}
