//! par's own cache directory (the compiled guest, interpreter answers,
//! build environments), checked private: owned by this user and closed to
//! others, and so is every directory above it (or root's, or sticky like
//! `/tmp`). Files in it are read and written through a handle, never
//! through a symlink.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use crate::fs::owner;
use crate::fs::root::open_file_nofollow;

/// par's own cache directory, checked private, and a handle on it.
#[derive(Debug)]
pub(crate) struct CacheDir {
    path: PathBuf,
    dir: Dir,
}

impl CacheDir {
    /// Creates the directory (mode 0700) if needed and opens it, if it is this
    /// user's and closed to others, and no directory above it can be changed
    /// by anyone but this user or root (the root's rules: [`owner`]).
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        let path = owner::prepare(dir, 0o700)?;
        let dir = owner::open_private(&path)?;
        Ok(Self { path, dir })
    }

    /// The directory's (canonical) path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The handle on the directory.
    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    /// `name` opened without following a link, with its metadata, if it is
    /// a regular file of this user that no one else can write (checked on
    /// the open file, so it cannot be swapped between check and use).
    pub(crate) fn open_private(&self, name: &str) -> Option<(std::fs::File, std::fs::Metadata)> {
        use std::os::unix::fs::MetadataExt as _;
        let file = open_file_nofollow(&self.dir, name).ok()?;
        let meta = file.metadata().ok()?;
        let private = meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o022 == 0;
        (private && meta.is_file()).then_some((file, meta))
    }

    /// The bytes of `name` (at most `max`), if it is private ([`Self::open_private`]).
    pub(crate) fn read_private(&self, name: &str, max: u64) -> Option<Vec<u8>> {
        let (file, _) = self.open_private(name)?;
        let mut bytes = Vec::new();
        file.take(max).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Writes `name` atomically (mode 0600): a new temporary file, then a rename.
    pub(crate) fn store(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.store_with_mode(name, bytes, 0o600)
    }

    /// Writes `name` atomically with `mode` (0700 for a program par runs).
    pub(crate) fn store_with_mode(&self, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
        self.store_from(name, mode, |file| file.write_all(bytes))
    }

    /// Writes `name` atomically with `mode` from what `fill` writes: a new
    /// temporary file, synced, then a rename; when `fill` (or the write)
    /// fails, the temporary file is removed and `name` is left as it was.
    pub(crate) fn store_from<E: From<io::Error>>(
        &self,
        name: &str,
        mode: u32,
        fill: impl FnOnce(&mut std::fs::File) -> Result<(), E>,
    ) -> Result<(), E> {
        let temporary = crate::fs::temporary_name(name);
        let _ = self.dir.remove_file(&temporary);
        let written = self
            .dir
            .open_with(&temporary, OpenOptions::new().write(true).create_new(true).mode(mode))
            .map_err(E::from)
            .and_then(|file| {
                let mut file = file.into_std();
                fill(&mut file)?;
                file.sync_all().map_err(E::from)
            })
            .and_then(|()| self.dir.rename(&temporary, &self.dir, name).map_err(E::from));
        if written.is_err() {
            let _ = self.dir.remove_file(&temporary);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_or_a_file_others_can_write_is_not_read_and_not_written_through() {
        use std::os::unix::fs::PermissionsExt as _;
        let scratch = tempfile::tempdir().expect("dir");
        let (dir, outside) = (scratch.path().join("cache"), scratch.path().join("outside"));
        let cache = CacheDir::open(&dir).expect("a private dir");
        std::fs::write(&outside, "planted").expect("outside");
        std::os::unix::fs::symlink(&outside, dir.join("guest.cwasm")).expect("plant");
        assert_eq!(cache.read_private("guest.cwasm", 1024), None, "read through a symlink");
        cache.store("guest.cwasm", b"new").expect("store replaces the link");
        assert_eq!(std::fs::read_to_string(&outside).expect("outside"), "planted");
        assert_eq!(cache.read_private("guest.cwasm", 1024), Some(b"new".to_vec()));

        std::fs::set_permissions(dir.join("guest.cwasm"), std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert_eq!(cache.read_private("guest.cwasm", 1024), None, "others could write it");
    }

    /// Threads of one process keeping the same file at once (loads of one
    /// bundle, say) each write a temporary of their own: every one
    /// succeeds, and the file is whole.
    #[test]
    fn threads_storing_one_file_at_once_each_succeed_and_leave_it_whole() {
        let scratch = tempfile::tempdir().expect("dir");
        let cache = std::sync::Arc::new(CacheDir::open(&scratch.path().join("cache")).expect("a private dir"));
        let contents: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
        let start = std::sync::Arc::new(std::sync::Barrier::new(8));
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let (cache, contents, start) = (cache.clone(), contents.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    cache.store_from("file", 0o600, |out| {
                        for chunk in contents.chunks(4096) {
                            out.write_all(chunk)?;
                        }
                        Ok::<(), io::Error>(())
                    })
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("a writer").expect("each store succeeds");
        }
        assert_eq!(cache.read_private("file", 1 << 20), Some(contents));
        let names: Vec<_> = std::fs::read_dir(cache.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["file"], "no temporary left");
    }

    #[test]
    fn a_directory_above_the_cache_that_others_can_write_disables_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let scratch = tempfile::tempdir().expect("dir");
        let open = scratch.path().join("open");
        std::fs::create_dir(&open).expect("open dir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let error = CacheDir::open(&open.join("par")).expect_err("an ancestor anyone can change");
        assert!(error.to_string().contains("others can swap"), "{error}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("sticky");
        assert!(CacheDir::open(&open.join("par")).is_ok(), "sticky like /tmp");
    }
}
