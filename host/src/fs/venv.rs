//! Venv identity and completeness.
//!
//! A venv lives at `{root}/venvs/{app_id}_{key}`, the key hashing everything
//! that decides its contents: the interpreter, the installer, the index
//! settings, the requirement lines, the package path it editable-installs and
//! that package's build files. It counts as finished only once the marker
//! (holding the key, sealed with the root's key: [`sealed_marker`]) is
//! written, last; anything else found at that path (a venv left by an
//! interrupted load, or one someone else made) is rebuilt. Just before the
//! marker the host writes the venv's lock (`pylock.toml`): what its
//! requirements step installed ([`crate::install::pylock`]).

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::SystemTime;

use cap_std::fs::{Dir, OpenOptions};
use sha2::{Digest, Sha256};

use crate::fs::hex;
use crate::fs::root::{open_dir_nofollow, open_file_nofollow};
use crate::fs::seal::{Seal, Sealed};

/// File written last into a finished venv.
const MARKER: &str = ".par-complete";
/// The key of the build environment the venv's editable build ran in.
const BUILD_ENV: &str = ".par-build-env";
/// What the venv's requirements step installed, as the host wrote it.
pub(crate) const LOCK: &str = "pylock.toml";
/// The venv's SBOM (CycloneDX JSON), as the host wrote it beside the lock.
pub(crate) const SBOM: &str = "sbom.cdx.json";
/// What a venv holds besides its installs: a venv made before it kept its
/// lock and SBOM has another key, so it is never taken for one that does.
const LAYOUT: &str = "par-venv-3 (pylock.toml, sbom.cdx.json)";

/// The inputs that decide a venv's contents.
#[derive(Debug, Clone)]
pub(crate) struct VenvInputs<'a> {
    /// `python --version` of the base interpreter, and its path.
    pub python: &'a str,
    /// `pip` or `uv`.
    pub installer: &'a str,
    /// Index options, rendered.
    pub index: &'a str,
    /// Checked requirement lines, in order.
    pub requirements: &'a [String],
    /// Checked constraint lines, in order.
    pub constraints: &'a [String],
    /// The published package directory.
    pub package: &'a Path,
    /// Contents of `setup.py` / `pyproject.toml` (empty when absent).
    pub build_files: &'a [u8],
    /// The digest of the lock the load was given (empty without one).
    pub lock: &'a str,
}

/// The key: 16 hex digits of a SHA-256 over all inputs, each length-prefixed.
pub(crate) fn key(inputs: &VenvInputs<'_>) -> String {
    short_key(&[
        LAYOUT.as_bytes(),
        inputs.python.as_bytes(),
        inputs.installer.as_bytes(),
        inputs.index.as_bytes(),
        inputs.requirements.join("\n").as_bytes(),
        inputs.constraints.join("\n").as_bytes(),
        inputs.package.as_os_str().as_encoded_bytes(),
        inputs.build_files,
        inputs.lock.as_bytes(),
    ])
}

/// 16 hex digits of a SHA-256 over `fields`, each length-prefixed so no two
/// lists of fields hash alike: the names of venvs and build environments.
pub(crate) fn short_key(fields: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field);
    }
    hex(&hasher.finalize()[..8])
}

/// What the marker of the venv `name` under a root holds once it is
/// finished for `key`: the key, sealed with the root's key, so a marker
/// only the loader could have written counts.
pub(crate) fn sealed_marker(seal: &Seal, name: &str, key: &str) -> String {
    seal.tag(Sealed::VenvMarker, format!("{name}\0{key}").as_bytes())
}

/// Whether the agent's venv `venv` was finished for exactly this key and
/// still holds its lock and SBOM: what a load may reuse.
pub(crate) fn is_ready(venv: &Dir, key: &str) -> bool {
    has(venv, LOCK) && has(venv, SBOM) && is_finished(venv, key)
}

/// Whether the venv holds `name` ([`LOCK`], [`SBOM`]), a regular file.
pub(crate) fn has(venv: &Dir, name: &str) -> bool {
    venv.symlink_metadata(name).is_ok_and(|m| m.is_file())
}

/// Whether the venv `venv` was finished for exactly this key (its marker
/// read through the handle, never through a symlink).
pub(crate) fn is_finished(venv: &Dir, key: &str) -> bool {
    let mut written = String::new();
    open_file_nofollow(venv, MARKER)
        .and_then(|file| file.take(1024).read_to_string(&mut written))
        .is_ok_and(|_| written.trim() == key)
}

/// When the venv was marked finished: how old what it holds is.
pub(crate) fn finished_at(venv: &Dir) -> Option<SystemTime> {
    open_file_nofollow(venv, MARKER)
        .and_then(|file| file.metadata())
        .and_then(|m| m.modified())
        .ok()
}

/// Marks the venv finished; the last write of a successful build. The marker
/// is created anew (never written through whatever a step left at its name).
pub(crate) fn mark_finished(venv: &Dir, key: &str) -> std::io::Result<()> {
    unmark(venv)?;
    let mut file = venv
        .open_with(MARKER, OpenOptions::new().write(true).create_new(true))?
        .into_std();
    file.write_all(key.as_bytes())?;
    file.sync_all()
}

/// Makes a finished venv (or build environment) unfinished: the first step of removing it.
pub(crate) fn unmark(venv: &Dir) -> std::io::Result<()> {
    match venv.remove_file(MARKER) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Records which build environment built the venv's agent (written by the
/// host once every step is done, before the marker).
pub(crate) fn record_build_env(venv: &Dir, key: &str) -> std::io::Result<()> {
    replace_file(venv, BUILD_ENV, key.as_bytes())
}

/// Writes the venv's lock (`pylock.toml`, [`LOCK`]), once every step is
/// done, before the marker: no step that could write the venv runs after it.
pub(crate) fn record_lock(venv: &Dir, text: &str) -> std::io::Result<()> {
    replace_file(venv, LOCK, text.as_bytes())
}

/// Writes the venv's SBOM ([`SBOM`]), as the lock is written.
pub(crate) fn record_sbom(venv: &Dir, text: &str) -> std::io::Result<()> {
    replace_file(venv, SBOM, text.as_bytes())
}

/// Creates `name` anew with `bytes`, whatever a step left at that name (a
/// symlink is removed, never written through).
fn replace_file(venv: &Dir, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    match venv.remove_file(name) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = venv
        .open_with(name, OpenOptions::new().write(true).create_new(true))?
        .into_std();
    file.write_all(bytes)
}

/// The build environment recorded by [`record_build_env`], if any.
pub(crate) fn build_env(venv: &Dir) -> Option<String> {
    let mut written = String::new();
    open_file_nofollow(venv, BUILD_ENV)
        .and_then(|file| file.take(64).read_to_string(&mut written))
        .ok()?;
    let key = written.trim();
    (!key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit())).then(|| key.to_owned())
}

/// The venv's `lib/python*/site-packages` directories, opened without
/// following a symlink; none when there is no such directory.
pub(crate) fn site_packages(venv: &Path) -> Vec<Dir> {
    let Ok(lib) = Dir::open_ambient_dir(venv.join("lib"), cap_std::ambient_authority()) else {
        return Vec::new();
    };
    site_packages_in(&lib).into_iter().map(|(_, site)| site).collect()
}

/// The venv's one `lib/python*/site-packages`, opened without following a
/// symlink, with its path in the venv (`lib/python3.11/site-packages`); an
/// error unless there is exactly one.
pub(crate) fn one_site_packages(venv: &Dir) -> io::Result<(String, Dir)> {
    let found = site_packages_in(&open_dir_nofollow(venv, "lib")?);
    let [(python, site)] =
        <[_; 1]>::try_from(found).map_err(|_| io::Error::other("the venv has not exactly one site-packages"))?;
    Ok((format!("lib/{python}/site-packages"), site))
}

/// The `python*/site-packages` directories of a venv's `lib`, each with the
/// name of its `python*` directory.
fn site_packages_in(lib: &Dir) -> Vec<(String, Dir)> {
    let Ok(entries) = lib.entries() else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let python = name.to_str().filter(|n| n.starts_with("python"))?;
            let site = open_dir_nofollow(&open_dir_nofollow(lib, python).ok()?, "site-packages").ok()?;
            Some((python.to_owned(), site))
        })
        .collect()
}

/// The project name a `{name}-{version}.dist-info` directory's name spells.
pub(crate) fn dist_info_project(file_name: &str) -> Option<&str> {
    let (name, _) = file_name.strip_suffix(".dist-info")?.split_once('-')?;
    Some(name)
}

/// Whether `line` of a `RECORD` is the one for `entry` (its path as
/// `RECORD` spells it).
pub(crate) fn is_record_line_of(line: &str, entry: &str) -> bool {
    line.strip_prefix(entry).is_some_and(|rest| rest.starts_with(','))
}

/// Every `{name}-{version}.dist-info` directory of the venv's
/// site-packages, with the name as the directory spells it, opened without
/// following a symlink: what is installed, as the venv itself records it.
pub(crate) fn dist_infos(venv: &Path) -> Vec<(String, Dir)> {
    let mut found = Vec::new();
    for site in site_packages(venv) {
        let Ok(entries) = site.entries() else {
            continue;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let name = dist_info_project(file_name).map(str::to_owned);
            if let Some((name, dist)) = name.zip(open_dir_nofollow(&site, file_name).ok()) {
                found.push((name, dist));
            }
        }
    }
    found
}

/// Whether the venv at `path` (anywhere, possibly another root's) is
/// finished and records `key` as its build environment.
pub(crate) fn names_build_env(path: &Path, key: &str) -> bool {
    Dir::open_ambient_dir(path, cap_std::ambient_authority())
        .is_ok_and(|venv| finished_at(&venv).is_some() && build_env(&venv).as_deref() == Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(requirements: &'a [String], package: &'a Path) -> VenvInputs<'a> {
        VenvInputs {
            python: "Python 3.11.7 /usr/bin/python3",
            installer: "pip",
            index: "",
            requirements,
            constraints: &[],
            package,
            build_files: b"setup()",
            lock: "",
        }
    }

    #[test]
    fn key_changes_with_every_input() {
        let reqs = vec!["requests".to_owned()];
        let base = key(&inputs(&reqs, Path::new("/r/packages/a@1")));
        assert_eq!(base.len(), 16);
        assert_eq!(base, key(&inputs(&reqs, Path::new("/r/packages/a@1"))));
        assert_ne!(base, key(&inputs(&reqs, Path::new("/r/packages/a@2"))));
        let other = vec!["requests==2".to_owned()];
        assert_ne!(base, key(&inputs(&other, Path::new("/r/packages/a@1"))));
        let uv = VenvInputs {
            installer: "uv",
            ..inputs(&reqs, Path::new("/r/packages/a@1"))
        };
        assert_ne!(base, key(&uv));
    }

    #[test]
    fn only_a_marker_with_the_key_means_finished() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let dir = Dir::open_ambient_dir(scratch.path(), cap_std::ambient_authority()).expect("open");
        assert!(!is_finished(&dir, "abc"));
        mark_finished(&dir, "abc").expect("mark");
        assert!(is_finished(&dir, "abc"));
        assert!(!is_finished(&dir, "abd"));
    }

    #[test]
    fn a_marker_planted_as_a_symlink_is_neither_read_nor_written_through() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let (venv, outside) = (scratch.path().join("venv"), scratch.path().join("outside"));
        std::fs::create_dir(&venv).expect("venv");
        std::fs::write(&outside, "abc").expect("outside");
        std::os::unix::fs::symlink(&outside, venv.join(MARKER)).expect("plant");
        let dir = Dir::open_ambient_dir(&venv, cap_std::ambient_authority()).expect("open");
        assert!(!is_finished(&dir, "abc"), "a marker read through a symlink");
        mark_finished(&dir, "key").expect("mark");
        assert_eq!(std::fs::read_to_string(&outside).expect("outside"), "abc");
        assert!(is_finished(&dir, "key"));
    }

    #[test]
    fn a_lock_planted_as_a_symlink_is_replaced_not_written_through() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let (venv, outside) = (scratch.path().join("venv"), scratch.path().join("outside"));
        std::fs::create_dir(&venv).expect("venv");
        std::fs::write(&outside, "theirs").expect("outside");
        std::os::unix::fs::symlink(&outside, venv.join(LOCK)).expect("plant");
        let dir = Dir::open_ambient_dir(&venv, cap_std::ambient_authority()).expect("open");
        assert!(!has(&dir, LOCK), "a symlink is no lock");
        record_lock(&dir, "lock-version = \"1.0\"\n").expect("record");
        assert_eq!(std::fs::read_to_string(&outside).expect("outside"), "theirs");
        assert!(has(&dir, LOCK));
        record_sbom(&dir, "{}").expect("record");
        mark_finished(&dir, "key").expect("mark");
        assert!(is_ready(&dir, "key"));
        dir.remove_file(LOCK).expect("remove");
        assert!(!is_ready(&dir, "key"), "a venv without its lock is not reused");
    }
}
