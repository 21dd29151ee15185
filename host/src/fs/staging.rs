//! Staging and publishing package trees, through the root's handles.
//!
//! A package is never extracted in place. The guest writes into a fresh
//! staging directory under `{root}/staging/`; publishing renames the finished
//! tree to `{root}/trees/{app_id}@{version}.{digest}` (named by the archive's
//! digest, so a redeploy of the same bytes finds the same tree and venv), and
//! only once every install step has succeeded does the host point the app's
//! link `{root}/packages/{app_id}@{version}` at it, with one rename. A failed
//! or interrupted load leaves the previous deployment exactly as it was: its
//! link, its tree and the venv that imports from that tree. Every operation
//! here goes through a [`RootDir`] handle, never through a path.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, OpenOptionsExt as _};
use rustix::fs::{AtFlags, FlockOperation, Mode};

use crate::fs::archive::{Archive, Digest};
use crate::fs::lock::lock_in;
use crate::fs::root::{Area, RootDir, fd_path, open_dir_nofollow, open_file_nofollow};
use crate::fs::tree_writes::TreeWrites;
use crate::types::error::{LoadError, PackageError};
use par_rules::limits::Limits;
use par_rules::names::is_contained_relative;

/// File name of the archive inside the read-only preopen.
const ARCHIVE_NAME: &str = "package.apkg";

/// Name of the lock file each live staging directory holds.
const LIVE_LOCK: &str = ".live";

/// A directory under `{root}/staging/`, removed with everything in it when
/// dropped. While it exists it holds a lock on its `.live` file, so
/// [`sweep_abandoned`] can tell it from one left by a load that was killed.
#[derive(Debug)]
pub(crate) struct Scratch {
    staging: Dir,
    name: String,
    dir: Dir,
    path: PathBuf,
    _live: crate::fs::lock::LockFile,
}

impl Scratch {
    /// Creates `{root}/staging/{prefix}…/` (mode 0700) and takes its lock.
    pub(crate) fn create(root: &RootDir, prefix: &str) -> Result<Self, LoadError> {
        Self::create_in(root, Area::Staging, prefix)
    }

    /// Creates `{root}/{area}/{prefix}…/` (mode 0700) and takes its lock:
    /// `area` is one [`sweep_abandoned`] sweeps.
    pub(crate) fn create_in(root: &RootDir, area: Area, prefix: &str) -> Result<Self, LoadError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let staging_path = root.path().join(area.name());
        let staging = root
            .dir(area)
            .try_clone()
            .map_err(LoadError::io("cannot open", &staging_path))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut attempt = 0;
        let name = loop {
            let name = format!(
                "{prefix}{:x}-{:x}-{nanos:x}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            match create_private_dir(&staging, &name) {
                Ok(()) => break name,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
                Err(e) => return Err(LoadError::io("cannot create a staging directory in", &staging_path)(e)),
            }
        };
        let path = staging_path.join(&name);
        let dir = open_dir_nofollow(&staging, &name).map_err(LoadError::io("cannot open", &path))?;
        let live =
            lock_in(&dir, LIVE_LOCK, FlockOperation::LockExclusive).map_err(LoadError::io("cannot lock", &path))?;
        Ok(Self {
            staging,
            name,
            dir,
            path,
            _live: live,
        })
    }

    /// The directory's path: for argv, never for the host's own access.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The handle on the directory.
    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = remove_all(&self.staging, &self.name);
    }
}

/// Removes `name` in `dir` and everything in it, never following a symlink.
/// A directory a step left without write permission (a `setup.py` can
/// `chmod` what it made in its venv) is opened up first, so it cannot pin
/// what it holds on the disk. Used in par's private areas only (staging and
/// trash), where no one else can swap a directory for a link meanwhile.
pub(crate) fn remove_all(dir: &Dir, name: &str) -> io::Result<()> {
    match dir.remove_dir_all(name) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up(dir, name);
            dir.remove_dir_all(name)
        }
        other => other,
    }
}

/// Gives the owner full access to the directory `name` in `dir` and every
/// directory below it (symlinks are left alone).
fn open_up(dir: &Dir, name: &str) {
    if !dir.symlink_metadata(name).is_ok_and(|m| m.is_dir()) {
        return;
    }
    let _ = rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty());
    let Ok(sub) = open_dir_nofollow(dir, name) else {
        return;
    };
    for entry in sub.entries().into_iter().flatten().flatten() {
        if let Some(child) = entry.file_name().to_str() {
            open_up(&sub, child);
        }
    }
}

/// The staging directory of one extraction: the archive the guest reads and
/// the tree it writes.
#[derive(Debug)]
pub(crate) struct Staging {
    scratch: Scratch,
    archive: Dir,
    tree: Dir,
}

impl Staging {
    /// Creates `{root}/staging/stage-…/` with `archive/package.apkg`, a
    /// private, read-only copy of `archive` made through its one
    /// descriptor (refused if the archive changed meanwhile), and an empty
    /// `tree/`. The guest reads that copy. Its digest is `known`, or is
    /// being made from exactly that copy on a thread of its own.
    pub(crate) fn create(
        root: &RootDir,
        archive: &Archive,
        known: Option<String>,
    ) -> Result<(Self, Digest), LoadError> {
        let (staging, copy) = Self::empty(root)?;
        let digest = match known {
            Some(digest) => {
                archive.copy_into(&copy)?;
                Digest::Known(digest)
            }
            None => Digest::Hashing(archive.copy_hashed(&copy)?),
        };
        Ok((staging, digest))
    }

    /// [`Self::create`] without a digest, for reading the archive only
    /// (inspecting, verifying, signing).
    pub(crate) fn create_unhashed(root: &RootDir, archive: &Archive) -> Result<Self, LoadError> {
        let (staging, copy) = Self::empty(root)?;
        archive.copy_into(&copy)?;
        Ok(staging)
    }

    /// The staging directories, and the archive's copy, still empty.
    fn empty(root: &RootDir) -> Result<(Self, File), LoadError> {
        let scratch = Scratch::create(root, "stage-")?;
        let (archive_dir, tree) = (sub_dir(&scratch, "archive")?, sub_dir(&scratch, "tree")?);
        let copied = scratch.path().join("archive").join(ARCHIVE_NAME);
        let file = archive_dir
            .open_with(
                ARCHIVE_NAME,
                cap_std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o400),
            )
            .map_err(LoadError::io("cannot copy the archive into staging at", &copied))?
            .into_std();
        let staging = Self {
            scratch,
            archive: archive_dir,
            tree,
        };
        Ok((staging, file))
    }

    /// A handle on the private copy of the archive, for reading.
    pub(crate) fn archive_copy(&self) -> Result<File, LoadError> {
        open_file_nofollow(&self.archive, ARCHIVE_NAME).map_err(LoadError::io(
            "cannot open",
            self.scratch.path().join("archive").join(ARCHIVE_NAME),
        ))
    }

    /// What the guest's `host-copy` calls may copy: from the private copy of
    /// the archive into the tree, within `limits`.
    pub(crate) fn tree_writes(&self, limits: &Limits) -> Result<TreeWrites, LoadError> {
        let tree = self
            .tree
            .try_clone()
            .map_err(LoadError::io("cannot open", self.tree_path()))?;
        TreeWrites::new(self.archive_copy()?, tree, limits).map_err(LoadError::io("cannot open", self.tree_path()))
    }

    /// What to preopen read-only for the guest: the directory holding only the
    /// archive, reached through its handle.
    pub(crate) fn archive_preopen(&self) -> PathBuf {
        fd_path(&self.archive)
    }

    /// What to preopen read-write for the guest: the package tree, reached
    /// through its handle.
    pub(crate) fn tree_preopen(&self) -> PathBuf {
        fd_path(&self.tree)
    }

    /// The tree's path, for messages.
    pub(crate) fn tree_path(&self) -> PathBuf {
        self.scratch.path().join("tree")
    }

    /// The handle on the tree the guest wrote.
    pub(crate) fn tree(&self) -> &Dir {
        &self.tree
    }

    /// Moves the finished tree to `{root}/trees/{name}`. The name holds the
    /// archive's digest, so a directory already there is that archive's
    /// tree (an agent may be running in it): it is kept, never replaced nor
    /// removed, and only what no longer holds the archive's bytes is put
    /// back in it from this extraction. Anything else there (a symlink, a file) is
    /// moved aside into this load's scratch, never followed. The caller
    /// holds the package lock; nothing points at the tree until
    /// [`PublishedTree::commit`].
    pub(crate) fn publish(self, root: &RootDir, name: &str) -> Result<PublishedTree, LoadError> {
        let path = root.join(Area::Trees, name);
        let trees = root
            .dir(Area::Trees)
            .try_clone()
            .map_err(LoadError::io("cannot open", &path))?;
        let scratch = self.scratch;
        let existing = trees.symlink_metadata(name).ok();
        let reused = existing.as_ref().is_some_and(|meta| meta.is_dir());
        if existing.is_some() && !reused {
            trees
                .rename(name, scratch.dir(), "replaced")
                .map_err(LoadError::io("cannot move what is not a tree out of", &path))?;
        }
        if reused {
            tracing::info!(tree = %path.display(), "Reusing the tree already published from the same archive");
            let existing = open_dir_nofollow(&trees, name).map_err(LoadError::io("cannot open", &path))?;
            restore(&self.tree, &existing, "").map_err(|e| LoadError::io("cannot restore the tree", &path)(e))?;
        } else {
            scratch
                .dir()
                .rename("tree", &trees, name)
                .map_err(LoadError::io("cannot publish the package to", &path))?;
        }
        Ok(PublishedTree {
            trees,
            name: name.to_owned(),
            made: !reused,
            committed: false,
            scratch,
        })
    }
}

/// Puts back, in `existing` (a tree of the same archive, maybe in use),
/// every file and directory of `fresh` (this load's extraction) that is
/// missing there or no longer holds the archive's bytes: each by one rename
/// over the old entry, which is never followed and never written into, so a
/// process reading the old file keeps what it opened. What the archive does
/// not hold (what install steps added) is left.
fn restore(fresh: &Dir, existing: &Dir, relative: &str) -> io::Result<()> {
    for entry in fresh.entries()? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let kind = entry.file_type()?;
        let there = existing.symlink_metadata(&name).ok();
        if kind.is_dir() && there.as_ref().is_some_and(|meta| meta.is_dir()) {
            let child = format!("{relative}{name}/");
            restore(
                &open_dir_nofollow(fresh, &name)?,
                &open_dir_nofollow(existing, &name)?,
                &child,
            )?;
            continue;
        }
        let same = kind.is_file()
            && there.as_ref().is_some_and(|meta| meta.is_file())
            && same_bytes(
                &open_file_nofollow(fresh, &name)?,
                &open_file_nofollow(existing, &name)?,
            )?;
        if same {
            continue;
        }
        if there.as_ref().is_some_and(|meta| meta.is_dir()) {
            tracing::warn!(entry = %format!("{relative}{name}"), "a directory stands where the archive has a file; left as it is");
            continue;
        }
        tracing::info!(entry = %format!("{relative}{name}"), "Restoring what the archive holds");
        fresh.rename(&name, existing, &name)?;
    }
    Ok(())
}

/// Whether two open files hold the same bytes.
fn same_bytes(a: &std::fs::File, b: &std::fs::File) -> io::Result<bool> {
    use std::io::Read as _;
    if a.metadata()?.len() != b.metadata()?.len() {
        return Ok(false);
    }
    let (mut a, mut b) = (io::BufReader::new(a), io::BufReader::new(b));
    let (mut left, mut right) = ([0u8; 8192], [0u8; 8192]);
    loop {
        let n = a.read(&mut left)?;
        if n == 0 {
            return Ok(true);
        }
        b.read_exact(&mut right[..n])?;
        if left[..n] != right[..n] {
            return Ok(false);
        }
    }
}

/// A tree under `{root}/trees/` that no link points at yet. Dropped without
/// [`PublishedTree::commit`], a tree this load made is removed; one it found
/// there (the same archive's, maybe in use) is left as it was.
#[derive(Debug)]
pub(crate) struct PublishedTree {
    trees: Dir,
    name: String,
    /// This load made it (else it was there, from the same archive).
    made: bool,
    committed: bool,
    scratch: Scratch,
}

impl PublishedTree {
    /// A handle on the published tree.
    pub(crate) fn open(&self) -> io::Result<Dir> {
        open_dir_nofollow(&self.trees, &self.name)
    }

    /// Makes this tree the app's current one: `{root}/packages/{link}` is
    /// replaced by a symlink to `target` (this tree's path) with one rename,
    /// so a reader sees the old tree or the new one, never neither.
    pub(crate) fn commit(mut self, root: &RootDir, link: &str, target: &Path) -> Result<(), LoadError> {
        switch_link(root, link, target, &self.scratch)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PublishedTree {
    fn drop(&mut self) {
        if self.committed || !self.made {
            return;
        }
        if let Err(e) = self.trees.remove_dir_all(&self.name)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(tree = %self.name, error = %e, "cannot remove the tree of a failed load");
        }
    }
}

/// Points `{root}/packages/{link}` at `target`, a tree already published:
/// for a load that found its deployment unchanged but no longer current.
pub(crate) fn point_link(root: &RootDir, link: &str, target: &Path) -> Result<(), LoadError> {
    let current = root.dir(Area::Packages).read_link_contents(link);
    if current.is_ok_and(|current| current == target) {
        return Ok(());
    }
    let scratch = Scratch::create(root, "link-")?;
    switch_link(root, link, target, &scratch)
}

/// Points `{root}/packages/{link}` at `target` with a rename over the old
/// link. A real directory there (published by an older par) is first moved
/// into `scratch`, which is removed with the load.
fn switch_link(root: &RootDir, link: &str, target: &Path, scratch: &Scratch) -> Result<(), LoadError> {
    let packages = root.dir(Area::Packages);
    let path = root.join(Area::Packages, link);
    let _ = scratch.dir().remove_file("link");
    scratch
        .dir()
        .symlink_contents(target, "link")
        .map_err(LoadError::io("cannot create a link in", scratch.path()))?;
    if packages.symlink_metadata(link).is_ok_and(|m| m.is_dir()) {
        packages
            .rename(link, scratch.dir(), "previous-layout")
            .map_err(LoadError::io("cannot move an old package directory out of", &path))?;
    }
    scratch
        .dir()
        .rename("link", packages, link)
        .map_err(LoadError::io("cannot switch the package link", &path))
}

/// Removes staging and trash directories whose owner is gone (a killed
/// load, `gc` or `remove`): their `.live` lock can be taken. Directories of
/// loads and collections still running are kept.
pub(crate) fn sweep_abandoned(root: &RootDir) {
    for area in [Area::Staging, Area::Trash] {
        sweep(root, area);
    }
}

fn sweep(root: &RootDir, area: Area) {
    let staging = root.dir(area);
    let Ok(entries) = staging.entries() else {
        return;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let abandoned = match open_dir_nofollow(staging, &name) {
            Ok(dir) => match lock_in(&dir, LIVE_LOCK, FlockOperation::NonBlockingLockExclusive) {
                Ok(_released_on_drop) => true,
                Err(e) => e.kind() == io::ErrorKind::NotFound,
            },
            Err(_) => false,
        };
        if abandoned && remove_all(staging, &name).is_ok() {
            tracing::info!(path = %root.join(area, &name).display(), "Removed what an interrupted load or collection left");
        }
    }
}

/// Creates the directory `name` in `dir` with mode 0700.
fn create_private_dir(dir: &Dir, name: &str) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.mode(0o700);
    dir.create_dir_with(name, &builder)
}

/// Creates and opens the directory `name` in the scratch directory.
fn sub_dir(scratch: &Scratch, name: &str) -> Result<Dir, LoadError> {
    let path = scratch.path().join(name);
    create_private_dir(scratch.dir(), name).map_err(LoadError::io("cannot create directory", &path))?;
    open_dir_nofollow(scratch.dir(), name).map_err(LoadError::io("cannot open", &path))
}

/// Sets every directory to 0755 and every file to 0644, or 0755 for the
/// executables the guest reported (each checked to be a contained relative
/// path naming a regular file in the tree). Any symlink or special file in the
/// tree means the guest misbehaved, and the package is refused.
pub(crate) fn normalize_modes(tree: &Dir, executables: &[String]) -> Result<(), LoadError> {
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

fn walk(dir: &Dir, relative: &str, executables: &mut HashSet<&str>) -> Result<(), LoadError> {
    let io = |action| move |e: io::Error| LoadError::io(action, relative.to_owned())(e);
    rustix::fs::fchmod(dir, Mode::from_raw_mode(0o755)).map_err(|e| io("cannot set the mode of")(e.into()))?;
    for entry in dir.entries().map_err(io("cannot read directory"))? {
        let entry = entry.map_err(io("cannot read directory"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(invalid("package tree", format!("a name in `{relative}` is not UTF-8")).into());
        };
        let child = if relative.is_empty() {
            name.to_owned()
        } else {
            format!("{relative}/{name}")
        };
        // The entry's own type (never following a symlink), usually without a system call.
        let kind = entry.file_type().map_err(io("cannot inspect"))?;
        if kind.is_dir() {
            let sub = open_dir_nofollow(dir, name).map_err(LoadError::io("cannot open", child.clone()))?;
            walk(&sub, &child, executables)?;
        } else if kind.is_file() {
            let mode = if executables.remove(child.as_str()) {
                0o755
            } else {
                0o644
            };
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(|e| LoadError::io("cannot set the mode of", child.clone())(e.into()))?;
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

fn invalid(what: &'static str, detail: String) -> PackageError {
    PackageError::InvalidGuestOutput { what, detail }
}

/// Whether the filesystem holding `path` has less than 1 MiB left for
/// unprivileged writers: what a write failure inside the sandbox, or an
/// installer step failing without saying why, is checked against.
pub(crate) fn disk_nearly_full(path: &Path) -> bool {
    free_bytes(path).is_some_and(|free| free < 1024 * 1024)
}

/// Bytes left for unprivileged writers on the filesystem holding `path`.
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    rustix::fs::statvfs(path)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("meta").permissions().mode() & 0o7777
    }

    #[test]
    fn directories_a_step_closed_are_opened_up_for_removal_and_links_left_alone() {
        let scratch = tempfile::tempdir().expect("dir");
        let (base, outside) = (scratch.path().join("trash"), scratch.path().join("outside"));
        std::fs::create_dir_all(base.join("venv/lib/closed")).expect("dirs");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        std::fs::write(base.join("venv/lib/closed/file"), "x").expect("file");
        std::os::unix::fs::symlink(&outside, base.join("venv/lib/link")).expect("link");
        for (dir, closed) in [("venv/lib/closed", 0o500), ("venv/lib", 0o500), ("venv", 0o000)] {
            std::fs::set_permissions(base.join(dir), std::fs::Permissions::from_mode(closed)).expect("close");
        }
        let dir = Dir::open_ambient_dir(&base, cap_std::ambient_authority()).expect("open");
        open_up(&dir, "venv");
        for opened in ["venv", "venv/lib", "venv/lib/closed"] {
            assert_eq!(mode(&base.join(opened)), 0o700, "{opened}");
        }
        assert_eq!(mode(&outside), 0o555, "the link's target was changed");
        remove_all(&dir, "venv").expect("remove");
        assert!(!base.join("venv").exists() && outside.is_dir());
    }
}
