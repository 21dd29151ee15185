//! Cache of the guest compiled to native code, and the private cache
//! directory it shares with the interpreter answers and build environments.
//!
//! Cranelift takes seconds to compile the guest; the result is stored once,
//! keyed by the component's SHA-256 and the engine's compatibility hash.
//! Loading compiled code is only sound if nobody else could have written it,
//! so the cache directory must belong to the current user and be closed to
//! everyone else, and so must every directory above it (or belong to root,
//! or be sticky like `/tmp`); otherwise the cache is bypassed and the
//! component compiled in memory. Files are read and written through a handle
//! on that directory, never through a symlink, and a compiled guest carries
//! the SHA-256 of its bytes, checked on the bytes read before they are
//! deserialized: what is checked is exactly what is loaded.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::root::open_file_nofollow;

/// How long a compiled guest of another par version or engine is kept unwritten.
const STALE_AFTER: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Largest compiled guest read back: far above the real one (a few MiB).
const MAX_COMPILED_BYTES: u64 = 256 * 1024 * 1024;
/// Bytes of the SHA-256 that heads a stored compiled guest.
const DIGEST_BYTES: usize = 32;

/// The guest component, built by `build.rs`.
pub const GUEST_WASM: &[u8] = include_bytes!(env!("PAR_GUEST_WASM"));
/// Its SHA-256, computed at build time.
pub const GUEST_SHA256: &str = env!("PAR_GUEST_SHA256");

/// Returns the compiled guest, from the cache when a trustworthy entry exists.
pub fn load(engine: &Engine, cache_dir: Option<&Path>) -> wasmtime::Result<Component> {
    let Some(cache) = cache_dir.and_then(|dir| {
        CacheDir::open(dir)
            .inspect_err(|error| tracing::warn!(path = %dir.display(), %error, "Component cache unusable; compiling the sandbox in memory"))
            .ok()
    }) else {
        return Component::new(engine, GUEST_WASM);
    };
    let name = format!("par-guest-{}.cwasm", cache_key(engine));
    if let Some(compiled) = cache.read_private(&name, MAX_COMPILED_BYTES).and_then(verified) {
        // SAFETY: these are the bytes of a file only this user could have
        // written (owner and mode checked on the open file, in a directory
        // only this user can write, under directories no one else can
        // change), written by `precompile_component` below, and their digest
        // matches. wasmtime still checks their header against this engine.
        match unsafe { Component::deserialize(engine, compiled) } {
            Ok(component) => {
                tracing::debug!(path = %cache.path.join(&name).display(), "compiled guest loaded from cache");
                return Ok(component);
            }
            Err(e) => {
                tracing::debug!(path = %cache.path.join(&name).display(), error = %e, "cached guest unusable; recompiling")
            }
        }
    }
    tracing::info!(cache = %cache.path.join(&name).display(), "Compiling the sandbox (first run only)");
    let compiled = engine.precompile_component(GUEST_WASM)?;
    let mut stored = Sha256::digest(&compiled).to_vec();
    stored.extend_from_slice(&compiled);
    if let Err(e) = cache.store(&name, &stored) {
        tracing::debug!(path = %cache.path.join(&name).display(), error = %e, "could not write the component cache");
    }
    cache.remove_stale(&name, SystemTime::now());
    // SAFETY: `compiled` was produced by this engine a moment ago.
    unsafe { Component::deserialize(engine, &compiled) }
}

/// The compiled bytes of a stored guest whose digest matches them.
fn verified(stored: Vec<u8>) -> Option<Vec<u8>> {
    if stored.len() < DIGEST_BYTES {
        return None;
    }
    let (digest, compiled) = stored.split_at(DIGEST_BYTES);
    (Sha256::digest(compiled).as_slice() == digest).then(|| compiled.to_vec())
}

/// Component hash plus everything about the engine that makes compiled code incompatible.
fn cache_key(engine: &Engine) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{}-{:016x}", &GUEST_SHA256[..16], hasher.finish())
}

/// par's own cache directory, checked private, and a handle on it.
#[derive(Debug)]
pub(crate) struct CacheDir {
    path: PathBuf,
    dir: Dir,
}

impl CacheDir {
    /// Creates the directory (mode 0700) if needed and opens it, if it is this
    /// user's and closed to others, and no directory above it can be changed
    /// by anyone but this user or root.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let path = dir.canonicalize()?;
        let user = rustix::process::geteuid().as_raw();
        for ancestor in path.ancestors().skip(1) {
            let meta = std::fs::symlink_metadata(ancestor)?;
            let owner_ok = meta.uid() == user || meta.uid() == 0;
            let closed = meta.mode() & 0o022 == 0 || meta.mode() & 0o1000 != 0;
            if !meta.is_dir() || !owner_ok || !closed {
                return Err(io::Error::other(format!(
                    "`{}` above the cache can be changed by another user",
                    ancestor.display()
                )));
            }
        }
        let handle = Dir::open_ambient_dir(&path, cap_std::ambient_authority())?;
        let meta = handle.dir_metadata()?;
        if meta.uid() != user || meta.mode() & 0o022 != 0 {
            return Err(io::Error::other("the cache directory is not private to this user"));
        }
        Ok(Self { path, dir: handle })
    }

    /// The directory's (canonical) path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The handle on the directory.
    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The bytes of `name` (at most `max`), if it is a regular file of this
    /// user that no one else can write (checked on the open file).
    pub(crate) fn read_private(&self, name: &str, max: u64) -> Option<Vec<u8>> {
        let file = open_file_nofollow(&self.dir, name).ok()?;
        let meta = file.metadata().ok()?;
        {
            use std::os::unix::fs::MetadataExt as _;
            if meta.uid() != rustix::process::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
                return None;
            }
        }
        let mut bytes = Vec::new();
        file.take(max).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Writes `name` atomically (mode 0600): a new temporary file, then a rename.
    pub(crate) fn store(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let temporary = format!(".{name}.{}.tmp", std::process::id());
        let _ = self.dir.remove_file(&temporary);
        let written = self
            .dir
            .open_with(&temporary, OpenOptions::new().write(true).create_new(true).mode(0o600))
            .and_then(|file| {
                let mut file = file.into_std();
                file.write_all(bytes)?;
                file.sync_all()
            })
            .and_then(|()| self.dir.rename(&temporary, &self.dir, name));
        if written.is_err() {
            let _ = self.dir.remove_file(&temporary);
        }
        written
    }

    /// Removes compiled guests other than `keep` last written more than
    /// [`STALE_AFTER`] before `now`. Every par upgrade compiles one of its own
    /// (about 2 MB) and nothing else would ever remove the old ones; one still
    /// in use is already in memory, and its par compiles it again on its next start.
    fn remove_stale(&self, keep: &str, now: SystemTime) {
        for entry in self.dir.entries().into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let compiled = name.starts_with("par-guest-") && name.ends_with(".cwasm");
            let stale = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .is_ok_and(|at| now.duration_since(at.into_std()).is_ok_and(|age| age > STALE_AFTER));
            if compiled && stale && name != keep {
                match self.dir.remove_file(name) {
                    Ok(()) => tracing::debug!(name, "Removed a stale compiled guest"),
                    Err(error) => tracing::debug!(name, %error, "Cannot remove a stale compiled guest"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `name` in `dir`, last written `age` ago.
    fn written(dir: &Path, name: &str, age: Duration) -> PathBuf {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).expect("create");
        file.set_modified(SystemTime::now() - age).expect("age");
        path
    }

    #[test]
    fn only_other_compiled_guests_unwritten_for_long_are_removed() {
        let dir = tempfile::tempdir().expect("dir");
        let day = Duration::from_secs(24 * 60 * 60);
        let current = written(dir.path(), "par-guest-current.cwasm", 40 * day);
        let stale = written(dir.path(), "par-guest-old.cwasm", 31 * day);
        let recent = written(dir.path(), "par-guest-other.cwasm", 29 * day);
        let unrelated = written(dir.path(), "python-identity.txt", 90 * day);
        let cache = CacheDir::open(dir.path()).expect("a private dir");
        cache.remove_stale("par-guest-current.cwasm", SystemTime::now());
        assert!(!stale.exists(), "another version's, unwritten for 31 days");
        for kept in [current, recent, unrelated] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
    }

    #[test]
    fn a_stored_file_is_read_back_only_as_written() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = CacheDir::open(dir.path()).expect("a private dir");
        let mut stored = Sha256::digest(b"compiled").to_vec();
        stored.extend_from_slice(b"compiled");
        cache.store("guest.cwasm", &stored).expect("store");
        let read = cache.read_private("guest.cwasm", MAX_COMPILED_BYTES).expect("read");
        assert_eq!(verified(read), Some(b"compiled".to_vec()));

        // One byte changed after the digest was written: not loaded.
        let mut tampered = stored.clone();
        *tampered.last_mut().expect("bytes") ^= 1;
        std::fs::write(dir.path().join("guest.cwasm"), &tampered).expect("tamper");
        let read = cache.read_private("guest.cwasm", MAX_COMPILED_BYTES).expect("read");
        assert_eq!(verified(read), None);
    }

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

    #[test]
    fn a_directory_above_the_cache_that_others_can_write_disables_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let scratch = tempfile::tempdir().expect("dir");
        let open = scratch.path().join("open");
        std::fs::create_dir(&open).expect("open dir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let error = CacheDir::open(&open.join("par")).expect_err("an ancestor anyone can change");
        assert!(error.to_string().contains("another user"), "{error}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("sticky");
        assert!(CacheDir::open(&open.join("par")).is_ok(), "sticky like /tmp");
    }
}
