//! Staging and publishing package trees.
//!
//! A package is never extracted in place. The guest writes into a fresh
//! staging directory under `{root}/staging/`; publishing renames the finished
//! tree to `{root}/trees/{app_id}@{version}.{digest}` (named by the archive's
//! digest, so a redeploy of the same bytes finds the same tree and venv), and
//! only once every install step has succeeded does the host point the app's
//! link `{root}/packages/{app_id}@{version}` at it, with one rename. A failed
//! or interrupted load leaves the previous deployment exactly as it was: its
//! link, its tree and the venv that imports from that tree.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{LoadError, PackageError};
use crate::validate::is_contained_relative;

/// File name of the archive inside the read-only preopen.
const ARCHIVE_NAME: &str = "package.apkg";

/// Name of the lock file each live staging directory holds.
const LIVE_LOCK: &str = ".live";

/// A directory under `{root}/staging/`, removed with everything in it when
/// dropped. While it exists it holds a lock on its `.live` file, so
/// [`sweep_abandoned`] can tell it from one left by a load that was killed.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    _live: File,
}

impl Scratch {
    /// Creates `{root}/staging/{prefix}XXXX/` (mode 0700) and takes its lock.
    pub fn create(root: &Path, prefix: &str) -> Result<Self, LoadError> {
        let staging_root = root.join("staging");
        create_dirs(&staging_root, 0o700)?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&staging_root)
            .map_err(LoadError::io("cannot create a staging directory in", &staging_root))?;
        let live = lock_file(&dir.path().join(LIVE_LOCK), rustix::fs::FlockOperation::LockExclusive)?;
        Ok(Self { dir, _live: live })
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The staging directory of one extraction: the archive the guest reads and
/// the tree it writes.
#[derive(Debug)]
pub struct Staging {
    scratch: Scratch,
}

impl Staging {
    /// Creates `{root}/staging/stage-XXXX/` with `archive/package.apkg` (a hard
    /// link to, or else a copy of, `apkg`) and an empty `tree/`.
    pub fn create(root: &Path, apkg: &Path) -> Result<Self, LoadError> {
        let staging = Self {
            scratch: Scratch::create(root, "stage-")?,
        };
        let archive_dir = staging.archive_dir();
        create_dirs(&archive_dir, 0o700)?;
        create_dirs(&staging.tree(), 0o700)?;
        let linked = archive_dir.join(ARCHIVE_NAME);
        if fs::hard_link(apkg, &linked).is_err() {
            fs::copy(apkg, &linked).map_err(LoadError::io("cannot copy the archive into staging from", apkg))?;
        }
        Ok(staging)
    }

    /// The directory preopened read-only for the guest: it holds only the archive.
    pub fn archive_dir(&self) -> PathBuf {
        self.scratch.path().join("archive")
    }

    /// The directory preopened read-write for the guest: the package tree.
    pub fn tree(&self) -> PathBuf {
        self.scratch.path().join("tree")
    }

    /// Moves the finished tree to `dest` (a tree of the same archive found
    /// there is set aside, and put back if this load fails). The caller holds
    /// the package lock; nothing points at `dest` until [`PublishedTree::commit`].
    pub fn publish(self, dest: &Path) -> Result<PublishedTree, LoadError> {
        if let Some(parent) = dest.parent() {
            create_dirs(parent, 0o755)?;
        }
        let mut replaced = None;
        if fs::symlink_metadata(dest).is_ok() {
            let aside = self.scratch.path().join("replaced");
            fs::rename(dest, &aside).map_err(LoadError::io("cannot move the previous tree out of", dest))?;
            replaced = Some(aside);
        }
        let published = PublishedTree {
            path: dest.to_owned(),
            replaced,
            committed: false,
            scratch: self.scratch,
        };
        fs::rename(published.scratch.path().join("tree"), dest)
            .map_err(LoadError::io("cannot publish the package to", dest))?;
        Ok(published)
    }
}

/// A tree published under `{root}/trees/` that no link points at yet. Dropped
/// without [`PublishedTree::commit`], it is removed and the tree it replaced
/// (if any) is put back: nothing a failed load made is kept.
#[derive(Debug)]
pub struct PublishedTree {
    path: PathBuf,
    replaced: Option<PathBuf>,
    committed: bool,
    scratch: Scratch,
}

impl PublishedTree {
    /// Makes this tree the app's current one: `link` is replaced by a
    /// symlink to it with one rename, so a reader sees the old tree or the
    /// new one, never neither.
    pub fn commit(mut self, link: &Path) -> Result<(), LoadError> {
        switch_link(link, &self.path, self.scratch.path())?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PublishedTree {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the tree of a failed load");
        }
        if let Some(replaced) = &self.replaced
            && let Err(e) = fs::rename(replaced, &self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot put back the tree a failed load replaced");
        }
    }
}

/// Points `link` at `target`, a tree already published under `root`: for a
/// load that found its deployment unchanged but no longer current.
pub fn point_link(root: &Path, link: &Path, target: &Path) -> Result<(), LoadError> {
    if fs::read_link(link).is_ok_and(|current| current == target) {
        return Ok(());
    }
    let scratch = Scratch::create(root, "link-")?;
    switch_link(link, target, scratch.path())
}

/// Points `link` at `target` with a rename over the old link. A real
/// directory there (published by an older par) is first moved into
/// `scratch`, which is removed with the load.
fn switch_link(link: &Path, target: &Path, scratch: &Path) -> Result<(), LoadError> {
    if let Some(parent) = link.parent() {
        create_dirs(parent, 0o755)?;
    }
    let temporary = scratch.join("link");
    std::os::unix::fs::symlink(target, &temporary).map_err(LoadError::io("cannot create a link at", &temporary))?;
    if fs::symlink_metadata(link).is_ok_and(|m| m.is_dir()) {
        fs::rename(link, scratch.join("previous-layout"))
            .map_err(LoadError::io("cannot move an old package directory out of", link))?;
    }
    fs::rename(&temporary, link).map_err(LoadError::io("cannot switch the package link", link))
}

/// Removes staging directories whose owner is gone (a killed load): their
/// `.live` lock can be taken. Directories of loads still running are kept.
pub fn sweep_abandoned(root: &Path) {
    let staging_root = root.join("staging");
    let Ok(entries) = fs::read_dir(&staging_root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let abandoned = match lock_file(
            &path.join(LIVE_LOCK),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(_released_on_drop) => true,
            Err(LoadError::Io { source, .. }) => source.kind() == std::io::ErrorKind::NotFound,
            Err(_) => false,
        };
        if abandoned && fs::remove_dir_all(&path).is_ok() {
            tracing::info!(path = %path.display(), "Removed staging left by an interrupted load");
        }
    }
}

/// Opens (creating if needed) and locks a file.
pub(crate) fn lock_file(path: &Path, operation: rustix::fs::FlockOperation) -> Result<File, LoadError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(LoadError::io("cannot open lock file", path))?;
    rustix::fs::flock(&file, operation).map_err(|e| LoadError::io("cannot lock", path)(e.into()))?;
    Ok(file)
}

/// Creates a directory and its parents with `mode`.
pub fn create_dirs(path: &Path, mode: u32) -> Result<(), LoadError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(LoadError::io("cannot create directory", path))
}

/// Sets every directory to 0755 and every file to 0644, or 0755 for the
/// executables the guest reported (each checked to be a contained relative
/// path naming a regular file in the tree). Any symlink or special file in the
/// tree means the guest misbehaved, and the package is refused.
pub fn normalize_modes(tree: &Path, executables: &[String]) -> Result<(), LoadError> {
    let mut pending: HashSet<&str> = HashSet::with_capacity(executables.len());
    for path in executables {
        if !is_contained_relative(path) {
            return Err(invalid(
                "executable path",
                format!("`{}` leaves the package", path.escape_default()),
            )
            .into());
        }
        pending.insert(path.as_str());
    }
    walk(tree, "", &mut pending)?;
    if let Some(missing) = pending.iter().next() {
        return Err(invalid(
            "executable path",
            format!("`{}` is not a file in the package", missing.escape_default()),
        )
        .into());
    }
    Ok(())
}

fn walk(dir: &Path, relative: &str, executables: &mut HashSet<&str>) -> Result<(), LoadError> {
    set_mode(dir, 0o755)?;
    let entries = fs::read_dir(dir).map_err(LoadError::io("cannot read directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(LoadError::io("cannot read directory", dir))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let child = if relative.is_empty() {
            name.into_owned()
        } else {
            format!("{relative}/{name}")
        };
        // The entry's own type (never following a symlink), usually without a system call.
        let kind = entry.file_type().map_err(LoadError::io("cannot inspect", &path))?;
        if kind.is_dir() {
            walk(&path, &child, executables)?;
        } else if kind.is_file() {
            let mode = if executables.remove(child.as_str()) {
                0o755
            } else {
                0o644
            };
            let current = entry.metadata().map_err(LoadError::io("cannot inspect", &path))?;
            if current.permissions().mode() & 0o7777 != mode {
                set_mode(&path, mode)?;
            }
        } else {
            return Err(invalid(
                "package tree",
                format!("`{}` is not a regular file or directory", child.escape_default()),
            )
            .into());
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LoadError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(LoadError::io("cannot set the mode of", path))
}

fn invalid(what: &'static str, detail: String) -> PackageError {
    PackageError::InvalidGuestOutput { what, detail }
}

/// An exclusive lock on one package id, held while its directory is replaced,
/// so two loads of the same package never interleave their renames.
#[derive(Debug)]
pub struct PackageLock {
    _file: File,
}

impl PackageLock {
    /// Blocks until `{root}/locks/{package_dir_name}.lock` is ours.
    pub fn acquire(root: &Path, package_dir_name: &str) -> Result<Self, LoadError> {
        let locks = root.join("locks");
        create_dirs(&locks, 0o700)?;
        let path = locks.join(format!("{package_dir_name}.lock"));
        let file = lock_file(&path, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(Self { _file: file })
    }
}

/// Whether the filesystem holding `path` has less than 1 MiB left for
/// unprivileged writers: what a write failure inside the sandbox, or an
/// installer step failing without saying why, is checked against.
pub(crate) fn disk_nearly_full(path: &Path) -> bool {
    rustix::fs::statvfs(path).is_ok_and(|s| s.f_bavail.saturating_mul(s.f_frsize) < 1024 * 1024)
}
