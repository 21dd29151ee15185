//! Venvs copied from a template. What `uv venv` writes depends only on the
//! interpreter, uv, and the venv's own path (named in the activate
//! scripts), yet it takes a confined step of its own: about 20 ms of uv and
//! a sandbox's start, on the longest path of a load whose agent is already
//! built (a bundle's). So par has uv make one venv per interpreter and uv,
//! confined as any venv, in par's private cache, once; each venv is then
//! that template copied through handles under the root, the new venv's path
//! written where the template names its own.

use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _, PermissionsExt as _};

use crate::fs::cache_dir::CacheDir;
use crate::fs::root::{open_dir_nofollow, read_bounded};
use crate::install::plain_path::is_plain_path;
use crate::types::error::InstallError;

/// Where the templates live in par's cache, one directory per key.
const TEMPLATES: &str = "venv-templates";
/// The template's venv, inside its directory.
const VENV: &str = "venv";
/// The path the template's venv was made at, as its files name it.
const ORIGIN: &str = "origin";
/// Most bytes of one file of a template that is copied rather than linked
/// (uv's largest is a few KiB).
pub(super) const MAX_FILE_BYTES: u64 = 1 << 20;

/// The name of the template for the installer `program` and the
/// interpreter `python` (its identity): what decides what the venv holds,
/// the installer's binary by path, size, time and inode.
pub(crate) fn key(program: &Path, python: &str) -> String {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt as _;
    let binary = std::fs::metadata(program)
        .map(|meta| format!("{} {} {} {}", meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()))
        .unwrap_or_default();
    let inputs = format!("1\0{}\0{binary}\0{python}", program.display());
    crate::fs::hex(&sha2::Sha256::digest(inputs))[..32].to_owned()
}

/// A venv uv made once, to copy.
#[derive(Debug)]
pub(crate) struct VenvTemplate {
    venv: Dir,
    origin: Vec<u8>,
}

impl VenvTemplate {
    /// The template named `key` in `cache`; made first, when there is none,
    /// by `make` (which creates a venv at the path it is given, an empty
    /// directory). Two loads making one at once each make their own, and
    /// the first to finish is kept.
    pub(crate) fn ensure(
        cache: &CacheDir,
        key: &str,
        make: impl FnOnce(&Path) -> Result<(), InstallError>,
    ) -> Result<Self, InstallError> {
        let open = |template: TemplateDir| {
            Ok(Self {
                venv: template.venv,
                origin: template.origin,
            })
        };
        ensure_template(cache, key, open, |_, _, venv| make(venv))
    }

    /// Writes a copy of the template into the empty directory `target`, at
    /// `path`: every directory, link and file as it is (modes included),
    /// the template's path replaced with `path` wherever a file names it.
    /// `path` must be plain ([`is_plain_path`]): it is written as it is
    /// into shell and Python source.
    pub(crate) fn copy_to(&self, target: &Dir, path: &Path) -> io::Result<()> {
        let to = plain_bytes(path)?;
        copy_tree(&self.venv, target, "", &|from, to_dir, name, _| {
            copy_file(from, to_dir, name, MAX_FILE_BYTES, &|bytes| {
                Ok(replace_path(&bytes, &self.origin, to))
            })
        })
    }

    /// The template's venv.
    pub(super) fn venv(&self) -> &Dir {
        &self.venv
    }
}

/// A template as it lies in the cache: its directory, its venv, and the
/// path the venv's files name.
pub(super) struct TemplateDir {
    pub dir: Dir,
    pub venv: Dir,
    pub origin: Vec<u8>,
}

/// The template named `key` in `cache`, opened by `open`; made first, when
/// there is none, by `make`, given the template's unfinished directory, the
/// empty venv directory inside it and that directory's path. Two loads making one at
/// once each make their own, and the first to finish is kept.
pub(super) fn ensure_template<T>(
    cache: &CacheDir,
    key: &str,
    open: impl Fn(TemplateDir) -> io::Result<T>,
    make: impl FnOnce(&Dir, &Dir, &Path) -> Result<(), InstallError>,
) -> Result<T, InstallError> {
    let host = |action: &str, e: io::Error| InstallError::Host(format!("venv template {key}: cannot {action}: {e}"));
    cache
        .dir()
        .create_dir_all(TEMPLATES)
        .map_err(|e| host("create its directory", e))?;
    let templates = open_dir_nofollow(cache.dir(), TEMPLATES).map_err(|e| host("open its directory", e))?;
    let templates_path = cache.path().join(TEMPLATES);
    let open = |templates: &Dir| open_template(templates, &templates_path, key).and_then(&open);
    if let Ok(template) = open(&templates) {
        return Ok(template);
    }
    let unfinished = crate::fs::temporary_name(key);
    let venv_path = templates_path.join(&unfinished).join(VENV);
    if !is_plain_path(&venv_path) {
        return Err(host("use", io::Error::other("the cache's path is not plain")));
    }
    let made = templates
        .create_dir(&unfinished)
        .and_then(|()| open_dir_nofollow(&templates, &unfinished))
        .and_then(|dir| {
            dir.create_dir(VENV)?;
            Ok((open_dir_nofollow(&dir, VENV)?, dir))
        })
        .map_err(|e| host("create", e))
        .and_then(|(venv, dir)| {
            make(&dir, &venv, &venv_path)?;
            dir.write(ORIGIN, venv_path.as_os_str().as_bytes())
                .map_err(|e| host("write", e))
        })
        .and_then(|()| {
            templates
                .rename(&unfinished, &templates, key)
                .map_err(|e| host("keep", e))
        });
    if made.is_err() {
        let _ = templates.remove_dir_all(&unfinished);
    }
    match open(&templates) {
        Ok(template) => Ok(template),
        Err(error) => made.and(Err(host("open", error))),
    }
}

/// The template `key`, if it is whole: its interpreter still there (a
/// template whose interpreter is gone is removed, to be made again).
fn open_template(templates: &Dir, path: &Path, key: &str) -> io::Result<TemplateDir> {
    let dir = open_dir_nofollow(templates, key)?;
    let template = TemplateDir {
        origin: read_bounded(&dir, ORIGIN, 4096)?,
        venv: open_dir_nofollow(&dir, VENV)?,
        dir,
    };
    let python = path.join(key).join(VENV).join("bin").join("python");
    if let Err(error) = std::fs::metadata(&python) {
        let _ = templates.remove_dir_all(key);
        return Err(io::Error::new(error.kind(), format!("{}: {error}", python.display())));
    }
    Ok(template)
}

/// `path` as the bytes a template writes, if it is plain ([`is_plain_path`]).
pub(super) fn plain_bytes(path: &Path) -> io::Result<&[u8]> {
    match is_plain_path(path) {
        true => Ok(path.as_os_str().as_bytes()),
        false => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a plain path", path.display()),
        )),
    }
}

/// How one file of a template reaches its copy: given the directory it is
/// in, the copy's directory, its name, and its path in the template.
pub(super) type FileCopy<'a> = dyn Fn(&Dir, &Dir, &str, &str) -> io::Result<()> + 'a;

/// Copies the entries of `from` (at `rel` in its template) into `to`:
/// directories and links as they are, each file by `file`.
pub(super) fn copy_tree(from: &Dir, to: &Dir, rel: &str, file: &FileCopy<'_>) -> io::Result<()> {
    for Entry { name, path, kind } in entries(from, rel)? {
        if kind.is_symlink() {
            to.symlink_contents(from.read_link_contents(&name)?, &name)?;
        } else if kind.is_dir() {
            to.create_dir(&name)?;
            copy_tree(
                &open_dir_nofollow(from, &name)?,
                &open_dir_nofollow(to, &name)?,
                &path,
                file,
            )?;
            to.set_permissions(&name, from.symlink_metadata(&name)?.permissions())?;
        } else if kind.is_file() {
            file(from, to, &name, &path)?;
        } else {
            return Err(io::Error::other(format!(
                "{path:?} is not a file, a directory or a link"
            )));
        }
    }
    Ok(())
}

/// One entry of a directory walked by name.
pub(super) struct Entry {
    /// Its name (UTF-8: a template's or a wheel's names are).
    pub name: String,
    /// Its path in the walk, `/`-separated.
    pub path: String,
    /// What it is (a link is not followed).
    pub kind: cap_std::fs::FileType,
}

/// The entries of `dir`, at `rel` in a walk; an error for a name that is
/// not UTF-8.
pub(super) fn entries(dir: &Dir, rel: &str) -> io::Result<Vec<Entry>> {
    let mut found = Vec::new();
    for entry in dir.entries()? {
        let entry = entry?;
        let name =
            (entry.file_name().into_string()).map_err(|name| io::Error::other(format!("{name:?} is not UTF-8")))?;
        found.push(Entry {
            path: join(rel, &name),
            kind: entry.file_type()?,
            name,
        });
    }
    Ok(found)
}

/// `rel/name`, or `name` at the top.
fn join(rel: &str, name: &str) -> String {
    match rel.is_empty() {
        true => name.to_owned(),
        false => format!("{rel}/{name}"),
    }
}

/// Copies the file `name` of `from` into `to`, its bytes through `edit`,
/// its mode kept; refuses one larger than `max` bytes.
pub(super) fn copy_file(
    from: &Dir,
    to: &Dir,
    name: &str,
    max: u64,
    edit: &dyn Fn(Vec<u8>) -> io::Result<Vec<u8>>,
) -> io::Result<()> {
    let bytes = read_bounded(from, name, max)?;
    write_new(to, name, mode_of(from, name)?, &mut &edit(bytes)?[..])
}

/// The mode of the file `name` of `dir` (a link is not followed).
pub(super) fn mode_of(dir: &Dir, name: &str) -> io::Result<u32> {
    Ok(dir.symlink_metadata(name)?.permissions().mode())
}

/// Writes the new file `name` of `to` with `mode`, its bytes read from
/// `bytes`; an `AlreadyExists` error where `to` holds `name`.
pub(super) fn write_new(to: &Dir, name: &str, mode: u32, bytes: &mut dyn Read) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(mode);
    io::copy(bytes, &mut to.open_with(name, &options)?)?;
    to.set_permissions(name, cap_std::fs::Permissions::from_mode(mode))
}

/// `bytes` with every `from` that is a whole path (not the start of a
/// longer name) replaced with `to`.
pub(super) fn replace_path(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let is_name = |b: &u8| b.is_ascii_alphanumeric() || b"._+@=-".contains(b);
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(from.len().max(1)).position(|window| window == from) {
        let after = &rest[at + from.len()..];
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(if after.first().is_some_and(is_name) { from } else { to });
        rest = after;
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_paths_are_replaced() {
        let text =
            b"VIRTUAL_ENV='/c/t/venv'\nset VIRTUAL_ENV=/c/t/venv\r\n/c/t/venv/bin /c/t/venvs /c/t/venv-2 /c/t/venv";
        assert_eq!(
            replace_path(text, b"/c/t/venv", b"/r/venvs/a_1"),
            b"VIRTUAL_ENV='/r/venvs/a_1'\nset VIRTUAL_ENV=/r/venvs/a_1\r\n/r/venvs/a_1/bin /c/t/venvs /c/t/venv-2 /r/venvs/a_1"
                .to_vec()
        );
        assert_eq!(replace_path(b"", b"/a", b"/b"), b"".to_vec());
    }
}
