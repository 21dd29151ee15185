//! Registry blobs kept in par's cache by content (`blobs/sha256/{hex}`), so
//! a node fetches only the blobs it lacks: a blob is written under a
//! temporary name and renamed only after its size and digest checked, under
//! a lock per blob, so two pulls of one blob fetch it once and a pull killed
//! halfway leaves nothing a later one takes for whole; and every blob is
//! hashed again before each use, so a cached file changed since is fetched
//! anew rather than trusted.

use std::fs::File;
use std::io::{self, Seek as _};
use std::path::Path;

use rustix::fs::FlockOperation;

use crate::fs::bundle::sha256_of;
use crate::fs::cache_dir::CacheDir;
use crate::fs::lock::lock_in;

/// The blob cache under par's cache directory.
#[derive(Debug)]
pub(crate) struct BlobCache {
    dir: CacheDir,
}

impl BlobCache {
    /// Opens (making it private if needed) `{cache}/blobs/sha256`.
    pub(crate) fn open(cache: &Path) -> io::Result<Self> {
        Ok(Self {
            dir: CacheDir::open(&cache.join("blobs").join("sha256"))?,
        })
    }

    /// The blob `hex` (SHA-256) of `size` bytes, from the cache, or written
    /// there by `fetch` first; at its start.
    pub(crate) fn get_or_fetch<E: From<io::Error>>(
        &self,
        hex: &str,
        size: u64,
        fetch: impl FnOnce(&mut dyn io::Write) -> Result<(), E>,
    ) -> Result<File, E> {
        if let Some(file) = self.cached(hex, size) {
            return Ok(file);
        }
        let _lock = lock_in(self.dir.dir(), &format!("{hex}.lock"), FlockOperation::LockExclusive)?;
        // Another pull may have fetched it while this one waited.
        if let Some(file) = self.cached(hex, size) {
            return Ok(file);
        }
        self.dir.store_from(hex, 0o600, |file| fetch(file))?;
        self.cached(hex, size)
            .ok_or_else(|| io::Error::other(format!("the blob {hex} was not in the cache once written")).into())
    }

    /// The cached blob `hex`, if it is private, `size` bytes long and still
    /// has that digest; a file that does not is removed.
    fn cached(&self, hex: &str, size: u64) -> Option<File> {
        let (file, meta) = self.dir.open_private(hex)?;
        let whole = meta.len() == size
            && file
                .try_clone()
                .ok()
                .and_then(|copy| sha256_of(copy).ok())
                .is_some_and(|found| found == hex);
        if !whole {
            tracing::warn!(
                blob = hex,
                "A cached blob changed since it was fetched: fetching it again"
            );
            let _ = self.dir.dir().remove_file(hex);
            return None;
        }
        let mut file = file;
        file.rewind().ok()?;
        Some(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_fetched_once_and_a_changed_one_again() {
        let cache = tempfile::tempdir().expect("dir");
        let blobs = BlobCache::open(cache.path()).expect("cache");
        let bytes = b"wheel bytes";
        let hex = crate::fs::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes));
        let fetches = std::cell::Cell::new(0);
        let fetch = |out: &mut dyn io::Write| -> io::Result<()> {
            fetches.set(fetches.get() + 1);
            out.write_all(bytes)
        };
        let read = |mut file: File| {
            let mut text = Vec::new();
            io::Read::read_to_end(&mut file, &mut text).expect("read");
            text
        };
        assert_eq!(read(blobs.get_or_fetch(&hex, 11, fetch).expect("fetched")), bytes);
        assert_eq!(read(blobs.get_or_fetch(&hex, 11, fetch).expect("cached")), bytes);
        assert_eq!(fetches.get(), 1);

        let path = cache.path().join("blobs/sha256").join(&hex);
        std::fs::write(&path, b"wheel bytez").expect("tamper");
        assert_eq!(read(blobs.get_or_fetch(&hex, 11, fetch).expect("fetched again")), bytes);
        assert_eq!(fetches.get(), 2);

        let failed = blobs.get_or_fetch(&"0".repeat(64), 3, |out: &mut dyn io::Write| -> io::Result<()> {
            out.write_all(b"ab")?;
            Err(io::Error::other("cut off"))
        });
        assert!(failed.is_err());
        let left: Vec<String> = std::fs::read_dir(cache.path().join("blobs/sha256"))
            .expect("dir")
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".lock"))
            .collect();
        assert_eq!(left, [hex], "only the whole blob");
    }
}
