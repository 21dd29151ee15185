//! Venvs that hold a bundle's requirements, linked from a template. A
//! bundle pins each distribution by hash, and of what uv installs from a
//! wheel only the scripts it writes name the venv's path; yet installing
//! them takes a confined uv step that copies every file (a sandbox's binds
//! are separate mounts, so uv cannot hard-link from its cache). So par has
//! uv install a lock once per node and interpreter, confined as any
//! install, into a copy of the venv template in its private cache; each
//! venv of that lock is then the template again, with what the lock
//! installed hard-linked, and the scripts that name the template's path
//! written anew, each with its line in `RECORD`.
//!
//! A linked file is one inode, shared by the template and every venv made
//! from it: no step may write one. The import check and the agent see the
//! whole venv read-only; a step that may write the venv (the agent's own
//! install) gets each entry the lock installed bound read-only over it
//! ([`LinkedVenv::protected`]), so a wheel that would overwrite one fails.
//! That takes the installer sandbox: without it, nothing is linked.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::fs::cache_dir::CacheDir;
use crate::fs::root::{open_dir_nofollow, open_file_nofollow, read_bounded};
use crate::fs::venv::{is_record_line_of, one_site_packages};
use crate::install::venv_template::{
    Entry, MAX_FILE_BYTES, TemplateDir, VenvTemplate, copy_file, copy_tree, ensure_template, entries, mode_of,
    plain_bytes, replace_path, write_new,
};
use crate::types::error::InstallError;

/// What the template's maker found, beside its venv.
const MANIFEST: &str = "installed.json";
/// Most bytes of the manifest.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Most bytes of one `RECORD` whose lines are rewritten.
const MAX_RECORD_BYTES: u64 = 64 << 20;

/// The name of the template for the venv template `venv_key` with the lock
/// `lock` installed from `files` (what the installer read the lock from).
pub(crate) fn key(venv_key: &str, lock: &str, files: &str) -> String {
    let inputs = format!("1\0{venv_key}\0{lock}\0{files}");
    crate::fs::hex(&Sha256::digest(inputs))[..32].to_owned()
}

/// A copy of a venv template with a lock installed in it, to link from.
#[derive(Debug)]
pub(crate) struct InstalledTemplate {
    venv: Dir,
    origin: Vec<u8>,
    manifest: Manifest,
}

/// What the install put in the template, as its maker found it.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// Distributions the installer said it installed.
    installed: u32,
    /// Each entry the install added to a directory the venv template has
    /// (`bin/`, `site-packages/`): linked, and protected, whole.
    linked: Vec<String>,
    /// The files that name the template's path, each with its `RECORD` line.
    rewritten: Vec<Rewrite>,
}

/// A file whose bytes name the template's path.
#[derive(Debug, Serialize, Deserialize)]
struct Rewrite {
    /// The file, in the venv.
    file: String,
    /// The `RECORD` that lists it, in the venv.
    record: String,
    /// Its path as that `RECORD` spells it.
    entry: String,
}

/// A venv linked from an [`InstalledTemplate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LinkedVenv {
    /// Distributions installed in it.
    pub installed: u32,
    /// What a step that may write the venv must see read-only: every entry
    /// the lock installed.
    pub protected: Vec<PathBuf>,
}

impl InstalledTemplate {
    /// The template named `key` in `cache`; made first, when there is none:
    /// a copy of `bare`, into which `install` (given its path) installs the
    /// lock and says how many distributions it installed.
    pub(crate) fn ensure(
        cache: &CacheDir,
        key: &str,
        bare: &VenvTemplate,
        install: impl FnOnce(&Path) -> Result<u32, InstallError>,
    ) -> Result<Self, InstallError> {
        let open = |template: TemplateDir| {
            let manifest = read_bounded(&template.dir, MANIFEST, MAX_MANIFEST_BYTES)?;
            Ok(Self {
                manifest: serde_json::from_slice(&manifest).map_err(io::Error::other)?,
                venv: template.venv,
                origin: template.origin,
            })
        };
        let host = |action: &str, e: io::Error| InstallError::Host(format!("installed template {key}: {action}: {e}"));
        ensure_template(cache, key, open, |dir, venv, path| {
            bare.copy_to(venv, path)
                .map_err(|e| host("cannot copy the venv template", e))?;
            let installed = install(path)?;
            let (linked, rewritten) =
                survey(venv, bare.venv(), path).map_err(|e| host("cannot use what was installed", e))?;
            let manifest = Manifest {
                installed,
                linked,
                rewritten,
            };
            let json = serde_json::to_vec(&manifest).map_err(|e| host("cannot write", io::Error::other(e)))?;
            dir.write(MANIFEST, json).map_err(|e| host("cannot write", e))
        })
    }

    /// Makes the empty directory `target`, at `path`, a venv holding the
    /// lock: the template's entries linked where the lock installed them,
    /// the files naming the template's path written with `path` instead (and
    /// their `RECORD` lines to match), the rest copied as the venv
    /// template's are. `path` must be plain.
    pub(crate) fn link_to(&self, target: &Dir, path: &Path) -> io::Result<LinkedVenv> {
        let to = plain_bytes(path)?;
        let mut written: HashMap<&str, Vec<u8>> = HashMap::new();
        let mut records: HashMap<&str, Vec<(&str, String)>> = HashMap::new();
        for rewrite in &self.manifest.rewritten {
            let bytes = read_relative(&self.venv, &rewrite.file, MAX_FILE_BYTES)?;
            let bytes = replace_path(&bytes, &self.origin, to);
            let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(&bytes));
            let line = format!("{},sha256={digest},{}", rewrite.entry, bytes.len());
            records.entry(&rewrite.record).or_default().push((&rewrite.entry, line));
            written.insert(&rewrite.file, bytes);
        }
        let linked: HashSet<&str> = self.manifest.linked.iter().map(String::as_str).collect();
        copy_tree(&self.venv, target, "", &|from, to_dir, name, rel| {
            if let Some(bytes) = written.get(rel) {
                write_new(to_dir, name, mode_of(from, name)?, &mut &bytes[..])
            } else if let Some(lines) = records.get(rel) {
                copy_file(from, to_dir, name, MAX_RECORD_BYTES, &|bytes| {
                    edit_record(&bytes, lines)
                })
            } else if is_within(rel, &linked) {
                from.hard_link(name, to_dir, name)
            } else {
                copy_file(from, to_dir, name, MAX_FILE_BYTES, &|bytes| {
                    Ok(replace_path(&bytes, &self.origin, to))
                })
            }
        })?;
        Ok(LinkedVenv {
            installed: self.manifest.installed,
            protected: self.manifest.linked.iter().map(|entry| path.join(entry)).collect(),
        })
    }
}

/// Whether `rel` is one of `entries` or inside one.
fn is_within(rel: &str, entries: &HashSet<&str>) -> bool {
    rel.match_indices('/')
        .map(|(at, _)| &rel[..at])
        .chain([rel])
        .any(|prefix| entries.contains(prefix))
}

/// `RECORD`'s bytes with the line of each `(entry, line)` replaced by `line`;
/// an error unless each entry has exactly one line.
fn edit_record(bytes: &[u8], lines: &[(&str, String)]) -> io::Result<Vec<u8>> {
    let text = std::str::from_utf8(bytes).map_err(|_| io::Error::other("a RECORD is not UTF-8"))?;
    let mut out = String::with_capacity(text.len());
    let mut replaced = vec![0usize; lines.len()];
    for line in text.split_inclusive('\n') {
        let found = lines.iter().position(|(entry, _)| is_record_line_of(line, entry));
        match found {
            Some(at) => {
                replaced[at] += 1;
                out.push_str(&lines[at].1);
                out.push('\n');
            }
            None => out.push_str(line),
        }
    }
    match replaced.iter().all(|count| *count == 1) {
        true => Ok(out.into_bytes()),
        false => Err(io::Error::other(
            "a RECORD does not list a rewritten script exactly once",
        )),
    }
}

/// What the install added to the template's venv `installed` (a copy of
/// `bare`, at `path`): the entries to link, and the files naming `path`,
/// each with the one `RECORD` line that lists it.
fn survey(installed: &Dir, bare: &Dir, path: &Path) -> io::Result<(Vec<String>, Vec<Rewrite>)> {
    let (mut linked, mut copied) = (Vec::new(), Vec::new());
    added(installed, bare, "", &mut linked, &mut copied)?;
    let origin = plain_bytes(path)?;
    let mut naming = Vec::new();
    for entry in linked.iter().chain(&copied) {
        files_naming(installed, entry, origin, &mut naming)?;
    }
    if naming.is_empty() {
        return Ok((linked, Vec::new()));
    }
    let (site, _) = one_site_packages(installed)?;
    let records: Vec<(String, String)> = linked
        .iter()
        .filter(|entry| {
            entry
                .strip_prefix(site.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|name| !name.contains('/') && name.ends_with(".dist-info"))
        })
        .map(|dist| {
            let record = format!("{dist}/RECORD");
            let text = read_relative(installed, &record, MAX_RECORD_BYTES)?;
            Ok((record, String::from_utf8_lossy(&text).into_owned()))
        })
        .collect::<io::Result<_>>()?;
    let depth = site.split('/').count();
    let mut rewritten = Vec::new();
    for file in naming {
        if file.ends_with("/RECORD") {
            return Err(io::Error::other(format!("{file} names the venv's path")));
        }
        let entry = match file.strip_prefix(site.as_str()).and_then(|rest| rest.strip_prefix('/')) {
            Some(inside) => inside.to_owned(),
            None => format!("{}{file}", "../".repeat(depth)),
        };
        let mut listing = records.iter().flat_map(|(record, text)| {
            text.lines()
                .filter(|line| is_record_line_of(line, &entry))
                .map(move |_| record)
        });
        let (Some(record), None) = (listing.next(), listing.next()) else {
            return Err(io::Error::other(format!(
                "{file} names the venv's path, and not exactly one RECORD lists it"
            )));
        };
        rewritten.push(Rewrite {
            record: record.clone(),
            file,
            entry,
        });
    }
    Ok((linked, rewritten))
}

/// Walks `installed` beside `bare` from `rel`: an entry `bare` lacks is
/// `copied` at the top (`.lock`, a wheel's data), `linked` below it.
fn added(installed: &Dir, bare: &Dir, rel: &str, linked: &mut Vec<String>, copied: &mut Vec<String>) -> io::Result<()> {
    for Entry { name, path, kind } in entries(installed, rel)? {
        match bare.symlink_metadata(&name) {
            Ok(meta) if meta.is_dir() && kind.is_dir() => added(
                &open_dir_nofollow(installed, &name)?,
                &open_dir_nofollow(bare, &name)?,
                &path,
                linked,
                copied,
            )?,
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => match rel.is_empty() {
                true => copied.push(path),
                false => linked.push(path),
            },
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Adds to `found` every regular file at or under `rel` whose bytes hold `origin`.
fn files_naming(venv: &Dir, rel: &str, origin: &[u8], found: &mut Vec<String>) -> io::Result<()> {
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let dir = open_relative_dir(venv, parent)?;
    let kind = dir.symlink_metadata(name)?.file_type();
    if kind.is_dir() {
        for child in entries(&open_dir_nofollow(&dir, name)?, rel)? {
            files_naming(venv, &child.path, origin, found)?;
        }
    } else if kind.is_file() && holds(open_file_nofollow(&dir, name)?, origin)? {
        found.push(rel.to_owned());
    }
    Ok(())
}

/// Whether `file`'s bytes hold `needle`, read a chunk at a time.
fn holds(mut file: std::fs::File, needle: &[u8]) -> io::Result<bool> {
    let mut window = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut chunk)?;
        if read == 0 {
            return Ok(false);
        }
        window.extend_from_slice(&chunk[..read]);
        if window.windows(needle.len().max(1)).any(|w| w == needle) {
            return Ok(true);
        }
        let keep = window.len().min(needle.len().saturating_sub(1));
        window.drain(..window.len() - keep);
    }
}

/// The directory at the `/`-separated `rel` under `venv`, no link followed.
fn open_relative_dir(venv: &Dir, rel: &str) -> io::Result<Dir> {
    let mut dir = venv.try_clone()?;
    for part in rel.split('/').filter(|part| !part.is_empty()) {
        dir = open_dir_nofollow(&dir, part)?;
    }
    Ok(dir)
}

/// The bytes of the file at the `/`-separated `rel` under `venv`, at most `max`.
fn read_relative(venv: &Dir, rel: &str, max: u64) -> io::Result<Vec<u8>> {
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    read_bounded(&open_relative_dir(venv, parent)?, name, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_line_is_replaced_only_where_its_entry_is_whole() {
        let record = b"../../../bin/app,sha256=old,10\n../../../bin/app2,sha256=x,3\napp/__init__.py,,\n";
        let lines = [("../../../bin/app", "../../../bin/app,sha256=new,12".to_owned())];
        assert_eq!(
            edit_record(record, &lines).expect("edited"),
            b"../../../bin/app,sha256=new,12\n../../../bin/app2,sha256=x,3\napp/__init__.py,,\n".to_vec()
        );
        let missing = [("../../../bin/other", String::new())];
        assert!(edit_record(record, &missing).is_err());
    }

    #[test]
    fn an_entry_inside_a_linked_one_is_linked() {
        let linked = HashSet::from(["bin/app", "lib/p/site-packages/pkg"]);
        assert!(is_within("bin/app", &linked));
        assert!(is_within("lib/p/site-packages/pkg/sub/x.py", &linked));
        assert!(!is_within("lib/p/site-packages/pkg2/x.py", &linked));
        assert!(!is_within("bin/application", &linked));
    }

    #[test]
    fn a_path_is_found_across_chunks() {
        let dir = tempfile::tempdir().expect("dir");
        let mut bytes = vec![b'x'; (1 << 20) - 3];
        bytes.extend_from_slice(b"/a/path/venv\n");
        std::fs::write(dir.path().join("f"), &bytes).expect("write");
        let open = || std::fs::File::open(dir.path().join("f")).expect("open");
        assert!(holds(open(), b"/a/path/venv").expect("read"));
        assert!(!holds(open(), b"/a/path/venv2").expect("read"));
    }
}
