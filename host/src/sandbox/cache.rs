//! Cache of the guest compiled to native code.
//!
//! Cranelift takes seconds to compile the guest; the result is stored once,
//! keyed by the component's SHA-256 and the engine's compatibility hash, and
//! later runs map it in (`Component::deserialize_file`). Loading compiled code
//! is only sound if nobody else could have written it, so the cache directory
//! must belong to the current user and be closed to everyone else; otherwise
//! the cache is bypassed and the component compiled in memory.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wasmtime::Engine;
use wasmtime::component::Component;

/// How long a compiled guest of another par version or engine is kept unwritten.
const STALE_AFTER: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The guest component, built by `build.rs`.
pub const GUEST_WASM: &[u8] = include_bytes!(env!("PAR_GUEST_WASM"));
/// Its SHA-256, computed at build time.
pub const GUEST_SHA256: &str = env!("PAR_GUEST_SHA256");

/// Returns the compiled guest, from the cache when a trustworthy entry exists.
pub fn load(engine: &Engine, cache_dir: Option<&Path>) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir.and_then(|dir| trusted_dir(dir).ok()) else {
        tracing::debug!("component cache disabled; compiling the guest in memory");
        return Component::new(engine, GUEST_WASM);
    };
    let path = dir.join(format!("par-guest-{}.cwasm", cache_key(engine)));
    if trusted_file(&path) {
        // SAFETY: the file is ours (owner checked, not writable by others, in a
        // directory only we can write), written by `precompile_component` below.
        // wasmtime still checks its header against this engine's settings.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                tracing::debug!(path = %path.display(), "compiled guest loaded from cache");
                return Ok(component);
            }
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "cached guest unusable; recompiling"),
        }
    }
    tracing::info!(cache = %path.display(), "Compiling the sandbox (first run only)");
    let compiled = engine.precompile_component(GUEST_WASM)?;
    if let Err(e) = store(&dir, &path, &compiled) {
        tracing::debug!(path = %path.display(), error = %e, "could not write the component cache");
    }
    remove_stale(&dir, &path, SystemTime::now());
    // SAFETY: `compiled` was produced by this engine a moment ago.
    unsafe { Component::deserialize(engine, &compiled) }
}

/// Removes compiled guests other than `keep` last written more than
/// [`STALE_AFTER`] before `now`. Every par upgrade compiles one of its own
/// (about 2 MB) and nothing else would ever remove the old ones; one still in
/// use stays mapped, and its par compiles it again on its next start.
fn remove_stale(dir: &Path, keep: &Path, now: SystemTime) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let compiled = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with("par-guest-") && name.ends_with(".cwasm"));
        let stale = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age > STALE_AFTER));
        if compiled && stale && path != keep {
            match fs::remove_file(&path) {
                Ok(()) => tracing::debug!(path = %path.display(), "Removed a stale compiled guest"),
                Err(error) => tracing::debug!(path = %path.display(), %error, "Cannot remove a stale compiled guest"),
            }
        }
    }
}

/// Component hash plus everything about the engine that makes compiled code incompatible.
fn cache_key(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{}-{:016x}", &GUEST_SHA256[..16], hasher.finish())
}

/// Creates the directory (mode 0700) if needed and checks no one else can write to it.
pub(crate) fn trusted_dir(dir: &Path) -> std::io::Result<PathBuf> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    let ours = meta.is_dir() && meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o022 == 0;
    if ours {
        Ok(dir.to_owned())
    } else {
        Err(std::io::Error::other("cache directory is not private to this user"))
    }
}

/// Whether `path` is a regular file of this user that no one else can write.
pub(crate) fn trusted_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| {
        meta.is_file() && meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o022 == 0
    })
}

/// Writes atomically: a temporary file in the same directory, then a rename.
pub(crate) fn store(dir: &Path, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.as_file().set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(compiled)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `name` in `dir`, last written `age` ago.
    fn written(dir: &Path, name: &str, age: Duration) -> PathBuf {
        let path = dir.join(name);
        let file = fs::File::create(&path).expect("create");
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
        remove_stale(dir.path(), &current, SystemTime::now());
        assert!(!stale.exists(), "another version's, unwritten for 31 days");
        for kept in [current, recent, unrelated] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
    }
}
