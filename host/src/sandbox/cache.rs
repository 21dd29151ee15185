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

use std::path::Path;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::fs::cache_dir::CacheDir;

/// How long a compiled guest of another par version or engine is kept unwritten.
const STALE_AFTER: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Largest compiled guest read back: far above the real one (a few MiB).
const MAX_COMPILED_BYTES: u64 = 256 * 1024 * 1024;
/// Bytes of the SHA-256 that heads a stored compiled guest.
const DIGEST_BYTES: usize = 32;

/// The guest component, built by `build.rs`.
pub(crate) const GUEST_WASM: &[u8] = include_bytes!(env!("PAR_GUEST_WASM"));
/// Its SHA-256, computed at build time.
pub(crate) const GUEST_SHA256: &str = env!("PAR_GUEST_SHA256");

/// Returns the compiled guest, from the cache when a trustworthy entry exists.
#[allow(
    unsafe_code,
    reason = "wasmtime's `Component::deserialize` trusts its bytes to be code it compiled; it is unsafe to call"
)]
pub(crate) fn load(engine: &Engine, cache_dir: Option<&Path>) -> wasmtime::Result<Component> {
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
                tracing::debug!(path = %cache.path().join(&name).display(), "compiled guest loaded from cache");
                return Ok(component);
            }
            Err(e) => {
                tracing::debug!(path = %cache.path().join(&name).display(), error = %e, "cached guest unusable; recompiling")
            }
        }
    }
    tracing::info!(cache = %cache.path().join(&name).display(), "Compiling the sandbox (first run only)");
    let compiled = engine.precompile_component(GUEST_WASM)?;
    let mut stored = Sha256::digest(&compiled).to_vec();
    stored.extend_from_slice(&compiled);
    if let Err(e) = cache.store(&name, &stored) {
        tracing::debug!(path = %cache.path().join(&name).display(), error = %e, "could not write the component cache");
    }
    remove_stale(&cache, &name, SystemTime::now());
    // SAFETY: `compiled` was produced by this engine a moment ago.
    unsafe { Component::deserialize(engine, &compiled) }
}

/// Removes compiled guests other than `keep` last written more than
/// [`STALE_AFTER`] before `now`. Every par upgrade compiles one of its own
/// (about 2 MB) and nothing else would ever remove the old ones; one still
/// in use is already in memory, and its par compiles it again on its next start.
fn remove_stale(cache: &CacheDir, keep: &str, now: SystemTime) {
    for entry in cache.dir().entries().into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let compiled = name.starts_with("par-guest-") && name.ends_with(".cwasm");
        let stale = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|at| now.duration_since(at.into_std()).is_ok_and(|age| age > STALE_AFTER));
        if compiled && stale && name != keep {
            match cache.dir().remove_file(name) {
                Ok(()) => tracing::debug!(name, "Removed a stale compiled guest"),
                Err(error) => tracing::debug!(name, %error, "Cannot remove a stale compiled guest"),
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

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
        remove_stale(&cache, "par-guest-current.cwasm", SystemTime::now());
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
}
