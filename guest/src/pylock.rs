//! A lock the operator gave for a load (`par load --lock FILE`): PEP 751
//! `pylock.toml`, read here because it is untrusted input. What comes out is
//! a list of distributions, each with one source (wheels and/or an sdist,
//! or exactly one archive, directory or checkout), SHA-256 hashes
//! only, every name once and every path inside the package; the host checks
//! each entry again, and against its policy and the package's requirements.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use par_rules::limits::{MAX_LOCK_BYTES, MAX_LOCKED_PACKAGES};

/// Longest name, version or other short string taken.
const MAX_SHORT: usize = 200;
/// Longest URL or path taken.
const MAX_LONG: usize = 8 * 1024;
/// Most wheels one distribution may list.
const MAX_WHEELS: usize = 1_000;

/// One locked distribution, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// As written (checked to be a distribution name).
    pub name: String,
    /// Absent for a source tree.
    pub version: Option<String>,
    /// The index it came from.
    pub index: Option<String>,
    /// Where its bytes come from.
    pub source: Source,
}

/// One of PEP 751's sources: an index's files (wheels, an sdist, or both),
/// or exactly one of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built distributions and a source distribution, at least one file.
    Distributions {
        /// The wheels (possibly none).
        wheels: Vec<File>,
        /// The sdist, if any.
        sdist: Option<File>,
    },
    /// A wheel or sdist named by a direct reference.
    Archive(File),
    /// A directory of the package.
    Directory {
        /// Relative to the package.
        path: String,
        /// Installed editable.
        editable: bool,
    },
    /// A version-control checkout pinned to a commit.
    Vcs {
        /// `git`, `hg`, `svn` or `bzr`.
        kind: String,
        /// Where to check it out from.
        url: String,
        /// The commit.
        commit: String,
    },
}

/// A file and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Where it is.
    pub location: Location,
    /// 64 lowercase hex digits.
    pub sha256: String,
}

/// A URL, or a path relative to the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A URL with a scheme.
    Url(String),
    /// A relative path with normal components.
    Path(String),
}

/// Why a lock is refused: the entry at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry}: {problem}")]
pub struct LockError {
    /// `packages[3] (requests)`, or `pylock.toml` for the file as a whole.
    pub entry: String,
    /// What is wrong.
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Document {
    lock_version: String,
    #[serde(default)]
    packages: Vec<Package>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Package {
    name: String,
    version: Option<String>,
    index: Option<String>,
    marker: Option<toml::Value>,
    vcs: Option<Vcs>,
    directory: Option<Directory>,
    archive: Option<RawFile>,
    sdist: Option<RawFile>,
    wheels: Option<Vec<RawFile>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Vcs {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    path: Option<String>,
    commit_id: String,
}

#[derive(Deserialize)]
struct Directory {
    path: String,
    editable: Option<bool>,
}

#[derive(Deserialize)]
struct RawFile {
    url: Option<String>,
    path: Option<String>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

/// Reads a lock.
pub fn parse(bytes: &[u8]) -> Result<Vec<Locked>, LockError> {
    let whole = |problem: String| LockError {
        entry: "pylock.toml".into(),
        problem,
    };
    if bytes.len() as u64 > MAX_LOCK_BYTES {
        return Err(whole(format!("larger than {MAX_LOCK_BYTES} bytes")));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| whole("not UTF-8".into()))?;
    let document: Document = toml::from_str(text).map_err(|e| whole(format!("not a pylock.toml: {}", e.message())))?;
    if document.lock_version.split('.').next() != Some("1") {
        return Err(whole(format!(
            "lock-version `{}` is not 1.x",
            short(&document.lock_version)
        )));
    }
    if document.packages.len() > MAX_LOCKED_PACKAGES {
        return Err(whole(format!("more than {MAX_LOCKED_PACKAGES} packages")));
    }
    let mut seen = BTreeSet::new();
    document
        .packages
        .into_iter()
        .enumerate()
        .map(|(n, package)| {
            let entry = format!("packages[{n}] ({})", short(&package.name));
            let locked = read_package(package).map_err(|problem| LockError {
                entry: entry.clone(),
                problem,
            })?;
            if !seen.insert(normalised(&locked.name)) {
                return Err(LockError {
                    entry,
                    problem: "listed twice".into(),
                });
            }
            Ok(locked)
        })
        .collect()
}

fn read_package(package: Package) -> Result<Locked, String> {
    if !is_name(&package.name) {
        return Err("`name` is not a distribution name".into());
    }
    if package.marker.is_some() {
        return Err(
            "a `marker`: par installs every entry of a lock, so it must be resolved for one interpreter".into(),
        );
    }
    let version = package.version.map(|v| checked_short("version", v)).transpose()?;
    let index = package.index.map(checked_url).transpose()?;
    let source = match (
        package.wheels,
        package.sdist,
        package.archive,
        package.directory,
        package.vcs,
    ) {
        (wheels, sdist, None, None, None)
            if (wheels.is_some() || sdist.is_some())
                && wheels.as_ref().is_none_or(|w| !w.is_empty() && w.len() <= MAX_WHEELS) =>
        {
            Source::Distributions {
                wheels: wheels
                    .unwrap_or_default()
                    .into_iter()
                    .map(read_file)
                    .collect::<Result<_, _>>()?,
                sdist: sdist.map(read_file).transpose()?,
            }
        }
        (None, None, Some(archive), None, None) => Source::Archive(read_file(archive)?),
        (None, None, None, Some(directory), None) => Source::Directory {
            path: checked_path(directory.path)?,
            editable: directory.editable.unwrap_or(false),
        },
        (None, None, None, None, Some(vcs)) => {
            if vcs.path.is_some() {
                return Err("a `vcs` source in a local path".into());
            }
            if !["git", "hg", "svn", "bzr"].contains(&vcs.kind.as_str()) {
                return Err(format!("`vcs.type` `{}` is not git, hg, svn or bzr", short(&vcs.kind)));
            }
            let commit = vcs.commit_id;
            if !(7..=64).contains(&commit.len()) || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("`vcs.commit-id` is not a commit hash".into());
            }
            Source::Vcs {
                kind: vcs.kind,
                url: checked_url(vcs.url.ok_or("a `vcs` source without its `url`")?)?,
                commit: commit.to_ascii_lowercase(),
            }
        }
        _ => {
            return Err(format!(
                "needs `wheels` (1 to {MAX_WHEELS}) and/or `sdist`, or exactly one of `archive`, `directory` and `vcs`"
            ));
        }
    };
    Ok(Locked {
        name: package.name,
        version,
        index,
        source,
    })
}

fn read_file(file: RawFile) -> Result<File, String> {
    let location = match (file.url, file.path) {
        (Some(url), None) => Location::Url(checked_url(url)?),
        (None, Some(path)) => Location::Path(checked_path(path)?),
        _ => return Err("a file needs exactly one of `url` and `path`".into()),
    };
    if let Some(other) = file.hashes.keys().find(|algorithm| *algorithm != "sha256") {
        return Err(format!("the hash algorithm `{}` is not one par checks", short(other)));
    }
    let sha256 = file.hashes.get("sha256").ok_or("a file without its SHA-256")?;
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a SHA-256 that is not 64 hex digits".into());
    }
    Ok(File {
        location,
        sha256: sha256.to_ascii_lowercase(),
    })
}

/// PEP 508: letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
fn is_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=MAX_SHORT).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// PEP 503: lower case, each run of `-`, `_` and `.` one `-`.
fn normalised(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if "-_.".contains(c) {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

fn checked_short(field: &str, value: String) -> Result<String, String> {
    let plain = !value.is_empty() && value.len() <= MAX_SHORT && value.bytes().all(|b| b.is_ascii_graphic());
    plain
        .then_some(value)
        .ok_or_else(|| format!("`{field}` is not a plain version string"))
}

/// A URL: a scheme, `://`, at most 8 KiB, no whitespace or control characters.
fn checked_url(url: String) -> Result<String, String> {
    let scheme_ok = url.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
    });
    let plain = url.len() <= MAX_LONG && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    (scheme_ok && plain)
        .then_some(url)
        .ok_or_else(|| "a URL that is not one (a scheme, no spaces or control characters, at most 8 KiB)".into())
}

/// A path inside the package: `.`, or relative with normal components.
fn checked_path(path: String) -> Result<String, String> {
    if path == "." {
        return Ok(path);
    }
    let normal = |c: &str| !c.is_empty() && c != "." && c != ".." && !c.chars().any(|ch| ch.is_control() || ch == '\\');
    let inside = path.len() <= MAX_LONG && !path.starts_with('/') && path.split('/').all(normal);
    inside
        .then_some(path)
        .ok_or_else(|| "a path that is not relative and inside the package".into())
}

/// At most 100 characters of untrusted text, escaped, for messages.
fn short(text: &str) -> String {
    text.chars().take(100).collect::<String>().escape_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "81383611a09c1bc0b08b76e0fd5829d7c6824c65b27a6aee339da133f4233ea2";

    fn lock(packages: &str) -> String {
        format!("lock-version = \"1.0\"\ncreated-by = \"par\"\n{packages}")
    }

    #[test]
    fn a_lock_par_writes_reads_back() {
        let text = lock(&format!(
            "[[packages]]\nname = \"packaging\"\nversion = \"26.4\"\n\n[[packages.wheels]]\nurl = \"file:///w/packaging-26.4-py3-none-any.whl\"\n\n[packages.wheels.hashes]\nsha256 = \"{SHA}\"\n\n[[packages]]\nname = \"test-agent\"\n\n[packages.directory]\npath = \".\"\neditable = true\n\n[tool.par]\ninstaller = \"uv\"\n"
        ));
        let locked = parse(text.as_bytes()).expect("read");
        assert_eq!(locked.len(), 2);
        assert_eq!(
            locked[0].source,
            Source::Distributions {
                wheels: vec![File {
                    location: Location::Url("file:///w/packaging-26.4-py3-none-any.whl".into()),
                    sha256: SHA.into()
                }],
                sdist: None
            }
        );
        assert_eq!(
            locked[1].source,
            Source::Directory {
                path: ".".into(),
                editable: true
            }
        );
    }

    #[test]
    fn wheels_and_an_sdist_are_one_source_and_an_archive_beside_them_is_not() {
        let both = format!(
            "name = \"six\"\nversion = \"1.16.0\"\nsdist = {{ url = \"https://x/six-1.16.0.tar.gz\", hashes = {{ sha256 = \"{SHA}\" }} }}\nwheels = [{{ url = \"https://x/six-1.16.0-py2.py3-none-any.whl\", hashes = {{ sha256 = \"{SHA}\" }} }}]\n"
        );
        let locked = parse(lock(&format!("[[packages]]\n{both}")).as_bytes()).expect("read");
        assert!(
            matches!(&locked[0].source, Source::Distributions { wheels, sdist: Some(_) } if wheels.len() == 1),
            "{locked:?}"
        );
        let with_archive = format!(
            "[[packages]]\n{both}archive = {{ url = \"https://x/six.whl\", hashes = {{ sha256 = \"{SHA}\" }} }}\n"
        );
        let error = parse(lock(&with_archive).as_bytes()).expect_err("an archive beside them");
        assert!(error.problem.contains("exactly one of"), "{error:?}");
    }

    #[test]
    fn what_a_lock_may_not_hold_is_refused_naming_the_entry() {
        let file = |hashes: &str| format!("sdist = {{ url = \"https://x/b-1.tar.gz\", hashes = {{ {hashes} }} }}");
        let cases = [
            (
                format!("name = \"b\"\nversion = \"1\"\n{}", file("md5 = \"x\"")),
                "`md5`",
            ),
            (
                format!(
                    "name = \"b\"\nversion = \"1\"\n{}",
                    file(&format!("sha256 = \"{SHA}\", sha512 = \"x\""))
                ),
                "`sha512`",
            ),
            (
                format!("name = \"b\"\nversion = \"1\"\n{}", file("sha256 = \"abc\"")),
                "64 hex",
            ),
            (
                "name = \"b\"\ndirectory = { path = \"../etc\" }".into(),
                "inside the package",
            ),
            (
                "name = \"b\"\ndirectory = { path = \"/etc\" }".into(),
                "inside the package",
            ),
            (
                "name = \"b c\"\ndirectory = { path = \"x\" }".into(),
                "distribution name",
            ),
            ("name = \"b\"\n".into(), "exactly one of"),
            (
                "name = \"b\"\nmarker = \"sys_platform == 'win32'\"\ndirectory = { path = \"x\" }".into(),
                "`marker`",
            ),
            (
                format!("name = \"b\"\nsdist = {{ url = \"no scheme\", hashes = {{ sha256 = \"{SHA}\" }} }}"),
                "not one",
            ),
            (
                "name = \"b\"\nvcs = { type = \"git\", url = \"https://x/b\", commit-id = \"zz\" }".into(),
                "commit hash",
            ),
        ];
        for (package, needle) in cases {
            let error = parse(lock(&format!("[[packages]]\n{package}\n")).as_bytes()).expect_err(&package);
            assert!(error.to_string().contains(needle), "{package}: {error}");
            assert!(error.entry.starts_with("packages[0] (b"), "{error}");
        }
        let twice = lock(
            "[[packages]]\nname = \"A_b\"\ndirectory = { path = \"x\" }\n[[packages]]\nname = \"a.B\"\ndirectory = { path = \"y\" }\n",
        );
        assert_eq!(
            parse(twice.as_bytes()).expect_err("twice").to_string(),
            "packages[1] (a.B): listed twice"
        );
        assert!(parse(b"lock-version = \"2.0\"\n").is_err());
        assert!(parse(b"\xff").is_err());
        assert!(parse(&vec![b' '; MAX_LOCK_BYTES as usize + 1]).is_err());
    }
}
