//! Bundle files kept in par's cache by content (`dists/sha256/{hex}/{name}`),
//! so every load of a bundle, and of every bundle that holds the same file,
//! installs it from one path. The installer's cache knows a local file by
//! its path: a file read from each load's own staging directory is new to
//! it every time and unpacked again (for web's wheels, most of the install
//! step), while a file kept here is unpacked once per node.
//!
//! A file is kept only after the host hashed it as it wrote it, under a
//! temporary name renamed into place, so a file here has the digest it is
//! named by when it arrives. It is not hashed again on use: the installer's
//! cache beside it, which holds the file's unpacked contents and is what an
//! install copies from, is trusted the same way (both live in par's checked
//! private cache).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::fs::cache_dir::CacheDir;
use crate::fs::{HashingWriter, is_sha256_hex};

/// The store of bundle files under par's cache directory.
#[derive(Debug)]
pub(crate) struct DistStore {
    dir: CacheDir,
}

impl DistStore {
    /// Opens (making it private if needed) `{cache}/dists/sha256`.
    pub(crate) fn open(cache: &Path) -> io::Result<Self> {
        Ok(Self {
            dir: CacheDir::open(&cache.join("dists").join("sha256"))?,
        })
    }

    /// The directory every kept file is under (what an install step reads).
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the file `name` with SHA-256 `sha256` (hex, as the host hashed
    /// `source`) is kept, copying it from `source` first if the store lacks
    /// it (a file of another length there is replaced). `name` is a
    /// distribution file's name, checked by the caller.
    pub(crate) fn keep(&self, sha256: &str, name: &str, source: File) -> io::Result<PathBuf> {
        if !is_sha256_hex(sha256) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a SHA-256 in hex"));
        }
        let sub = CacheDir::open(&self.dir.path().join(sha256))?;
        let path = sub.path().join(name);
        let size = source.metadata()?.len();
        if sub.open_private(name).is_some_and(|(_, meta)| meta.len() == size) {
            return Ok(path);
        }
        sub.store_from(name, 0o600, |out| copy_checked(source, out, sha256))?;
        Ok(path)
    }
}

/// Copies `source` to `out`, hashing as it goes: an error unless what was
/// copied has SHA-256 `expected`.
fn copy_checked(mut source: File, out: &mut File, expected: &str) -> io::Result<()> {
    let mut hashing = HashingWriter::new(out);
    io::copy(&mut source, &mut hashing)?;
    let found = hashing.sha256();
    match found == expected {
        true => Ok(()),
        false => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the file changed while it was kept: SHA-256 {found}, not {expected}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;
    use crate::fs::hex;

    #[test]
    fn a_file_is_kept_once_under_its_digest_and_only_with_that_digest() {
        let scratch = tempfile::tempdir().expect("dir");
        let store = DistStore::open(&scratch.path().join("cache")).expect("store");
        let source = scratch.path().join("a-1-py3-none-any.whl");
        std::fs::write(&source, b"wheel bytes").expect("source");
        let sha256 = hex(&Sha256::digest(b"wheel bytes"));
        let open = || File::open(&source).expect("open");

        let kept = store.keep(&sha256, "a-1-py3-none-any.whl", open()).expect("kept");
        assert_eq!(kept, store.path().join(&sha256).join("a-1-py3-none-any.whl"));
        assert_eq!(std::fs::read(&kept).expect("read"), b"wheel bytes");
        let modified = std::fs::metadata(&kept).and_then(|m| m.modified()).expect("mtime");
        assert_eq!(
            store.keep(&sha256, "a-1-py3-none-any.whl", open()).expect("again"),
            kept
        );
        assert_eq!(
            std::fs::metadata(&kept).and_then(|m| m.modified()).expect("mtime"),
            modified,
            "kept once: the installer's cache knows it by path and time"
        );

        std::fs::write(&source, b"other bytes").expect("changed");
        let other = hex(&Sha256::digest(b"wheel bytes!"));
        let error = store
            .keep(&other, "a-1-py3-none-any.whl", open())
            .expect_err("another digest");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let left: Vec<_> = std::fs::read_dir(store.path().join(&other)).expect("dir").collect();
        assert!(left.is_empty(), "nothing kept under a digest the bytes do not have");

        let error = store
            .keep("../x", "a-1-py3-none-any.whl", open())
            .expect_err("not a digest");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
