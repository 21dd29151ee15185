//! Build environments, shared by every load of this user: one venv per
//! interpreter, installer, index settings and list of build requirements,
//! with the backend's bytecode compiled (builds see it read-only, so Python
//! could not cache it itself).
//!
//! Layout: `{cache}/build-envs/{key}/{generation}/`, each generation with a
//! `{generation}.lock` beside it, and `create.lock` for making one. A
//! generation is made under `create.lock` and counts only when its marker
//! (holding the key) is written last, like an agent's venv. Builds bind it
//! read-only: a package's `setup.py` cannot change what the next package's
//! build imports.
//!
//! A generation is never updated in place. Once its marker is older than the
//! configured age, the next build makes a new one beside it, so an open
//! requirement such as `setuptools>=40.8.0` picks up new releases (pip makes a
//! fresh environment for every build); if that fails, the build uses the old
//! one and says so. A build holds a shared lock on its generation's lock file
//! while it runs, and a superseded generation is removed only under that lock
//! taken exclusively: never from under a build. Everything here is done
//! through handles on par's private cache ([`crate::fs::cache_dir::CacheDir`]), never by path;
//! paths are built only for the installer steps' argv.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use cap_std::fs::Dir;
use rustix::fs::FlockOperation;

use super::job::BuildJob;
use crate::fs::cache_dir::CacheDir;
use crate::fs::lock::lock_in;
use crate::fs::root::{open_dir_nofollow, open_file_nofollow};
use crate::fs::venv;
use crate::install::installer::InstallTarget;
use crate::install::step::{StepKind, StepSpec};
use crate::types::error::InstallError;
use std::os::unix::ffi::OsStringExt as _;

/// Bumped when what an environment holds, or how it is laid out, changes meaning.
const LAYOUT: &str = "par-build-env-2";
/// The build requirements, as the installer read them.
const REQUIREMENTS_FILE: &str = ".par-build-requirements.txt";
/// Held exclusively while a generation is made.
const CREATE_LOCK: &str = "create.lock";
/// A generation that cannot be locked after this many listings is treated as absent.
const LEASE_ATTEMPTS: usize = 3;

/// A finished build environment, kept from removal until dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    path: PathBuf,
    _lock: crate::fs::lock::LockFile,
}

impl Lease {
    /// The environment's directory; its `bin/python` runs the build.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Leases a finished build environment for `job`, young enough for the
/// configured age, making one if needed.
pub(crate) fn ensure(job: &BuildJob, cancel: &Arc<AtomicBool>) -> Result<Lease, InstallError> {
    let index_args = job.runner.install().index.args();
    let key = key_of(job);
    let cache = &job.cache_dir;
    let dir = cache.path().join("build-envs").join(&key);
    let handle = cache
        .dir()
        .create_dir_all(format!("build-envs/{key}"))
        .and_then(|()| open_dir_nofollow(&open_dir_nofollow(cache.dir(), "build-envs")?, &key))
        .map_err(|e| host_io("cannot open", &dir, e))?;
    let generations = Generations {
        dir: &dir,
        handle,
        key: &key,
        max_age: job.max_age,
    };
    generations.lease_or_make(SystemTime::now(), |path, env| {
        tracing::info!(path = %path.display(), requires = %job.system.requires.join(" "), "Creating a build environment");
        create(job, (path, env), &index_args, cancel)
    })
}

fn create(
    job: &BuildJob,
    (path, env): (&Path, &Dir),
    index_args: &[OsString],
    cancel: &Arc<AtomicBool>,
) -> Result<(), InstallError> {
    let step = |invocation| StepSpec::new(StepKind::BuildEnv, invocation, path).cancel(cancel.clone());
    job.runner.run(step(job.installer.create_venv(&job.python, path)))?;
    let requirements = path.join(REQUIREMENTS_FILE);
    let text: String = job.system.requires.iter().map(|r| format!("{r}\n")).collect();
    env.write(REQUIREMENTS_FILE, text)
        .map_err(|e| host_io("cannot write", &requirements, e))?;
    let target = InstallTarget::BuildRequirements(&requirements);
    job.runner.run(step(job.installer.install(path, target, index_args)))?;
    Ok(())
}

/// The name of the environment `job` builds in.
pub(crate) fn key_of(job: &BuildJob) -> String {
    key(job, &job.source)
}

/// One generation of a build environment in par's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Generation {
    /// The environment's key (its directory under `build-envs/`).
    pub key: String,
    /// Its directory.
    pub path: PathBuf,
    /// When it was finished (`None`: unfinished, or being made).
    pub finished: Option<SystemTime>,
    /// Its size, as `du` counts it.
    pub bytes: u64,
    /// What removing it gives back: files also linked from elsewhere (the
    /// installer's cache) are not counted.
    pub freed: u64,
}

/// Every generation of every build environment in `cache`.
pub(crate) fn generations(cache: &CacheDir) -> Vec<Generation> {
    let Ok(envs) = open_dir_nofollow(cache.dir(), "build-envs") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for key in names(&envs) {
        let Ok(handle) = open_dir_nofollow(&envs, &key) else {
            continue;
        };
        for name in names(&handle).into_iter().filter(|name| name != USERS) {
            let Ok(env) = open_dir_nofollow(&handle, &name) else {
                continue;
            };
            let mut usage = crate::fs::usage::Usage::default();
            let tally = usage.walk(&handle, &name);
            found.push(Generation {
                key: key.clone(),
                path: cache.path().join("build-envs").join(&key).join(&name),
                finished: venv::finished_at(&env).filter(|_| venv::is_finished(&env, &key)),
                bytes: tally.bytes(),
                freed: usage.removing([&tally]).freed,
            });
        }
    }
    found
}

/// Removes every generation of `key` that no build holds and none is being
/// made beside (else nothing): first its marker, so it is unfinished at
/// once and never leased again, then the rest. Returns what was removed.
pub(crate) fn discard_generations(cache: &CacheDir, key: &str) -> Vec<PathBuf> {
    let dir = cache.path().join("build-envs").join(key);
    let Ok(handle) = open_dir_nofollow(cache.dir(), "build-envs").and_then(|envs| open_dir_nofollow(&envs, key)) else {
        return Vec::new();
    };
    let Ok(_creating) = lock_in(&handle, CREATE_LOCK, FlockOperation::NonBlockingLockExclusive) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for name in names(&handle).into_iter().filter(|name| name != USERS) {
        let lock = format!("{name}.lock");
        let Ok(_held) = lock_in(&handle, &lock, FlockOperation::NonBlockingLockExclusive) else {
            continue;
        };
        let unfinished = open_dir_nofollow(&handle, &name).and_then(|env| venv::unmark(&env));
        match unfinished.and_then(|()| handle.remove_dir_all(&name)) {
            Ok(()) => {
                let _ = handle.remove_file(&lock);
                removed.push(dir.join(&name));
            }
            Err(error) => {
                tracing::warn!(path = %dir.join(&name).display(), %error, "cannot remove a build environment")
            }
        }
    }
    removed
}

/// Where each environment lists the venvs built in it, in any root.
const USERS: &str = "users";

/// Records that the venv at `venv` (finished, its build recorded in it) was
/// built in `key`'s environment: `gc` in any root keeps an environment while
/// a venv it built still names it.
pub(crate) fn add_user(cache: &CacheDir, key: &str, venv: &Path) -> std::io::Result<()> {
    let envs = open_dir_nofollow(cache.dir(), "build-envs")?;
    let handle = open_dir_nofollow(&envs, key)?;
    match handle.create_dir(USERS) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let users = open_dir_nofollow(&handle, USERS)?;
    let name = venv::short_key(&[venv.as_os_str().as_encoded_bytes()]);
    let _ = users.remove_file(&name);
    users.write(&name, venv.as_os_str().as_encoded_bytes())
}

/// The venvs recorded as built in `key`'s environment that still name it;
/// the records of the others are removed on the way.
pub(crate) fn users(cache: &CacheDir, key: &str) -> Vec<PathBuf> {
    let Ok(users) = open_dir_nofollow(cache.dir(), "build-envs")
        .and_then(|envs| open_dir_nofollow(&envs, key))
        .and_then(|handle| open_dir_nofollow(&handle, USERS))
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in users.entries().into_iter().flatten().flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let mut path = Vec::new();
        let read = open_file_nofollow(&users, &name).and_then(|file| {
            use std::io::Read as _;
            file.take(4096).read_to_end(&mut path)
        });
        let venv = PathBuf::from(std::ffi::OsString::from_vec(path));
        if read.is_ok() && venv::names_build_env(&venv, key) {
            found.push(venv);
        } else {
            let _ = users.remove_file(&name);
        }
    }
    found.sort();
    found
}

/// The directories in `dir`, sorted.
fn names(dir: &Dir) -> Vec<String> {
    let mut names: Vec<String> = dir
        .entries()
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The environment's name: everything that decides its contents.
fn key(job: &BuildJob, index_args: &[OsString]) -> String {
    let program = job.installer.program().unwrap_or_default();
    let arg_count = (index_args.len() as u64).to_le_bytes();
    let requires = job.system.requires.join("\n");
    let mut fields: Vec<&[u8]> = vec![
        LAYOUT.as_bytes(),
        job.python_identity.as_bytes(),
        job.installer.name().as_bytes(),
        program.as_os_str().as_encoded_bytes(),
        &arg_count,
    ];
    fields.extend(index_args.iter().map(|arg| arg.as_encoded_bytes()));
    fields.push(requires.as_bytes());
    venv::short_key(&fields)
}

fn host_io(what: &str, path: &Path, e: std::io::Error) -> InstallError {
    InstallError::Host(format!("{what} {}: {e}", path.display()))
}

/// The generations of one key's environment, and the age past which a new one is made.
struct Generations<'a> {
    /// Their directory's path, for argv and messages.
    dir: &'a Path,
    /// A handle on it: how it is read and written.
    handle: Dir,
    key: &'a str,
    max_age: Duration,
}

impl Generations<'_> {
    /// Leases the newest generation if it is young enough; otherwise makes a
    /// new one with `make`, falling back to the newest (if any) when that
    /// fails. Superseded generations no build holds are removed on the way.
    fn lease_or_make(
        &self,
        now: SystemTime,
        make: impl FnOnce(&Path, &Dir) -> Result<(), InstallError>,
    ) -> Result<Lease, InstallError> {
        if let Some(lease) = self.lease_newest()?
            && self.is_fresh(&lease, now)
        {
            self.prune(&lease.path, false);
            return Ok(lease);
        }
        let _creating = lock_in(&self.handle, CREATE_LOCK, FlockOperation::LockExclusive)
            .map_err(|e| host_io("cannot lock", &self.dir.join(CREATE_LOCK), e))?;
        // Another load may have made one while this one waited for the lock.
        let newest = match self.lease_newest()? {
            Some(lease) if self.is_fresh(&lease, now) => return Ok(lease),
            newest => newest,
        };
        if let Some(old) = &newest {
            tracing::info!(path = %old.path.display(), max_age_secs = self.max_age.as_secs(), "Replacing a build environment past its age");
        }
        let name = generation_name(now);
        let path = self.dir.join(&name);
        let env = self
            .handle
            .create_dir(&name)
            .and_then(|()| open_dir_nofollow(&self.handle, &name))
            .map_err(|e| host_io("cannot create", &path, e))?;
        let made = make(&path, &env)
            .and_then(|()| venv::mark_finished(&env, self.key).map_err(|e| host_io("cannot mark finished", &path, e)));
        let kept = match made {
            Ok(()) => {
                drop(newest);
                self.lease(&path)?
                    .ok_or_else(|| InstallError::Host(format!("{} vanished once made", path.display())))
            }
            Err(error) => {
                let _ = self.handle.remove_dir_all(&name);
                newest
                    .inspect(|old| {
                        tracing::warn!(path = %old.path.display(), %error, "Cannot replace an old build environment; building with it");
                    })
                    .ok_or(error)
            }
        };
        self.prune(kept.as_ref().map_or(&path, |lease| &lease.path), true);
        kept
    }

    /// The newest finished generation, share-locked. One removed between
    /// listing and locking is passed over and the directory listed again.
    fn lease_newest(&self) -> Result<Option<Lease>, InstallError> {
        for _ in 0..LEASE_ATTEMPTS {
            let newest = self
                .generations()
                .filter_map(|path| self.finished_at(&path).map(|at| (at, path)))
                .max();
            let Some((_, path)) = newest else {
                return Ok(None);
            };
            if let Some(lease) = self.lease(&path)? {
                return Ok(Some(lease));
            }
        }
        Ok(None)
    }

    /// Share-locks the generation at `path` and checks it is (still) finished.
    fn lease(&self, path: &Path) -> Result<Option<Lease>, InstallError> {
        let lock = lock_in(&self.handle, &lock_name(path), FlockOperation::LockShared)
            .map_err(|e| host_io("cannot lock", path, e))?;
        Ok(self.is_finished(path).then(|| Lease {
            path: path.to_owned(),
            _lock: lock,
        }))
    }

    /// A handle on the generation at `path` (one of this directory's).
    fn open(&self, path: &Path) -> Option<Dir> {
        let name = path.file_name()?.to_str()?;
        open_dir_nofollow(&self.handle, name).ok()
    }

    /// Whether the generation at `path` was finished for this key.
    fn is_finished(&self, path: &Path) -> bool {
        self.open(path).is_some_and(|env| venv::is_finished(&env, self.key))
    }

    /// When the generation at `path` was finished.
    fn finished_at(&self, path: &Path) -> Option<SystemTime> {
        self.open(path).and_then(|env| venv::finished_at(&env))
    }

    /// Whether `lease` was finished no longer than the configured age before `now`.
    fn is_fresh(&self, lease: &Lease, now: SystemTime) -> bool {
        self.finished_at(&lease.path)
            .is_some_and(|at| now.duration_since(at).map_or(true, |age| age <= self.max_age))
    }

    /// Removes every generation but `keep` that no build holds: finished ones
    /// always, unfinished ones only under `create.lock` (else one may be in
    /// the making).
    fn prune(&self, keep: &Path, creating: bool) {
        for path in self.generations().filter(|path| path != keep) {
            if !creating && !self.is_finished(&path) {
                continue;
            }
            let (Some(name), lock) = (path.file_name().and_then(|n| n.to_str()), lock_name(&path)) else {
                continue;
            };
            let Ok(_held) = lock_in(&self.handle, &lock, FlockOperation::NonBlockingLockExclusive) else {
                continue;
            };
            match self
                .handle
                .remove_dir_all(name)
                .and_then(|()| self.handle.remove_file(&lock))
            {
                Ok(()) => tracing::debug!(path = %path.display(), "Removed a superseded build environment"),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "Cannot remove a superseded build environment")
                }
            }
        }
    }

    /// Every generation directory, finished or not.
    fn generations(&self) -> impl Iterator<Item = PathBuf> + '_ {
        names(&self.handle)
            .into_iter()
            .filter(|name| name != USERS)
            .map(|name| self.dir.join(name))
    }
}

/// A name no earlier generation has: the time it is made, in nanoseconds.
fn generation_name(now: SystemTime) -> String {
    let nanos = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos}")
}

/// `{generation}.lock`, beside the generation (not in it: builds see it read-only).
fn lock_name(generation: &Path) -> String {
    format!("{}.lock", generation.file_name().unwrap_or_default().to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const KEY: &str = "0123456789abcdef";
    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// A finished generation made `age` ago.
    fn finished(dir: &Path, name: &str, age: Duration) -> PathBuf {
        let path = dir.join(name);
        fs::create_dir(&path).expect("generation");
        let env = Dir::open_ambient_dir(&path, cap_std::ambient_authority()).expect("open");
        venv::mark_finished(&env, KEY).expect("marker");
        let marker = std::fs::File::options()
            .write(true)
            .open(path.join(".par-complete"))
            .expect("marker");
        marker.set_modified(SystemTime::now() - age).expect("age the marker");
        path
    }

    fn generations(dir: &Path) -> Generations<'_> {
        Generations {
            dir,
            handle: Dir::open_ambient_dir(dir, cap_std::ambient_authority()).expect("open"),
            key: KEY,
            max_age: 7 * DAY,
        }
    }

    fn made(path: &Path, env: &Dir) -> Result<(), InstallError> {
        env.write("made", "").map_err(|e| host_io("cannot write", path, e))
    }

    fn failed(_: &Path, _: &Dir) -> Result<(), InstallError> {
        Err(InstallError::Host("the index is down".into()))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_young_generation_is_used_and_older_ones_removed() {
        let dir = tempfile::tempdir().expect("dir");
        finished(dir.path(), "1", 3 * DAY);
        let young = finished(dir.path(), "2", DAY);
        let lease = generations(dir.path())
            .lease_or_make(SystemTime::now(), |_, _| panic!("nothing to make"))
            .expect("lease");
        assert_eq!(lease.path(), young);
        assert_eq!(names(dir.path()), ["2"], "the superseded generation is gone");
    }

    #[test]
    fn an_old_generation_is_replaced_but_not_from_under_a_build() {
        let dir = tempfile::tempdir().expect("dir");
        let old = finished(dir.path(), "1", 8 * DAY);
        let generations = generations(dir.path());
        let building = generations.lease(&old).expect("lease").expect("finished");
        let lease = generations.lease_or_make(SystemTime::now(), made).expect("lease");
        assert_ne!(lease.path(), old);
        assert!(lease.path().join("made").is_file(), "made with `make`");
        assert!(old.join(".par-complete").is_file(), "a build still holds the old one");
        drop(building);
        drop(lease);
        let again = generations
            .lease_or_make(SystemTime::now(), |_, _| panic!("the new one is young"))
            .expect("lease");
        assert_eq!(names(dir.path()).len(), 1, "released, the old one is removed");
        assert!(again.path().join("made").is_file());
    }

    #[test]
    fn when_a_replacement_fails_the_old_generation_is_used() {
        let dir = tempfile::tempdir().expect("dir");
        let old = finished(dir.path(), "1", 8 * DAY);
        let lease = generations(dir.path())
            .lease_or_make(SystemTime::now(), failed)
            .expect("the old one");
        assert_eq!(lease.path(), old);
        assert_eq!(names(dir.path()), ["1"], "the failed one is removed");
    }

    #[test]
    fn with_nothing_to_fall_back_on_a_failure_is_the_error() {
        let dir = tempfile::tempdir().expect("dir");
        fs::create_dir(dir.path().join("left-by-a-crash")).expect("unfinished");
        let error = generations(dir.path())
            .lease_or_make(SystemTime::now(), failed)
            .expect_err("nothing to use");
        assert!(
            matches!(&error, InstallError::Host(why) if why.contains("index is down")),
            "{error:?}"
        );
        assert!(
            names(dir.path()).is_empty(),
            "the unfinished and the failed generation are removed"
        );
    }
}
