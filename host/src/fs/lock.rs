//! Locks under `{root}/locks/`, all `flock`s on files par alone writes: the
//! kernel drops them when their holder dies, so a killed load or `gc` never
//! leaves one held.
//!
//! Two kinds, always taken in this order:
//! - an **app lock** (`{app_id}.lock`): shared by every load and agent start
//!   of the app from the moment it touches the app's trees, venvs, links or
//!   records; exclusive for `gc` and `remove`, which therefore never see a
//!   load half done;
//! - a **package lock** (`{app_id}@{version}.lock`, always with an `@`, so
//!   never an app lock's name): exclusive, so two loads of one package never
//!   interleave their renames.
//!
//! A child holds a copy of every descriptor of the loader from fork to exec,
//! a lock's among them, even one the loader has already let go. Two rules
//! keep such a copy from ever holding a lock par let go:
//! - every lock par holds is a [`LockFile`], whose descriptor is listed
//!   while it is open, and every child par starts closes the listed
//!   descriptors first thing after fork ([`close_held_locks`]). Closing
//!   them at exec would not do: the kernel releases a descriptor's last
//!   copy as the exec returns to user space, after the parent has been told
//!   the exec happened;
//! - every spawn of par's is made under [`spawning`], and a lock tried
//!   without blocking is tried only once no spawn is in flight ([`flock`]),
//!   for a child forked before its copies were closed.
//!
//! A lock refused by a try is then one somebody holds, never one par
//! already let go.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd as _, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use cap_std::fs::{Dir, OpenOptions};
use rustix::fs::FlockOperation;

use crate::fs::root::{Area, RootDir};
use crate::types::error::LoadError;

/// Held shared by every spawn of par's from fork to exec, and exclusively
/// while a lock is tried without blocking.
static SPAWNS: RwLock<()> = RwLock::new(());

/// Held while par starts a child, until the child has exec'd (and so closed
/// its copies of the loader's close-on-exec descriptors).
pub(crate) fn spawning() -> RwLockReadGuard<'static, ()> {
    SPAWNS.read().unwrap_or_else(PoisonError::into_inner)
}

/// `flock(2)`; a non-blocking try waits first for every spawn in flight to
/// exec, so a copy of a descriptor par has closed never makes it fail.
pub(crate) fn flock(file: impl AsFd, operation: FlockOperation) -> rustix::io::Result<()> {
    match operation {
        FlockOperation::NonBlockingLockShared | FlockOperation::NonBlockingLockExclusive => {
            let _no_spawn_in_flight = SPAWNS.write().unwrap_or_else(PoisonError::into_inner);
            rustix::fs::flock(file, operation)
        }
        _ => rustix::fs::flock(file, operation),
    }
}

/// Opens (creating if needed) and locks the file `name` in `dir`.
pub(crate) fn lock_in(dir: &Dir, name: &str, operation: FlockOperation) -> io::Result<LockFile> {
    let file = dir
        .open_with(name, OpenOptions::new().create(true).truncate(false).write(true))?
        .into_std();
    flock(&file, operation)?;
    Ok(LockFile::new(file))
}

/// How many lock descriptors are listed for children to close; a lock
/// beyond them is still covered by [`spawning`].
const MAX_LISTED: usize = 256;

/// The descriptors of the locks par holds (-1: a free slot), read by
/// children between fork and exec, where nothing but atomics and system
/// calls may run.
static HELD: [AtomicI32; MAX_LISTED] = [const { AtomicI32::new(-1) }; MAX_LISTED];

/// A file whose descriptor holds a lock, listed for children to close
/// while it is open (see the module's notes).
#[derive(Debug)]
pub(crate) struct LockFile {
    /// Held open for the lock; closed after [`Drop::drop`] unlists it.
    _file: File,
    slot: Option<usize>,
}

impl LockFile {
    /// Lists `file`'s descriptor: from now on no child par starts keeps a copy.
    pub(crate) fn new(file: File) -> Self {
        let fd = file.as_raw_fd();
        let slot = HELD.iter().position(|slot| {
            slot.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        Self { _file: file, slot }
    }
}

impl Drop for LockFile {
    /// Unlisted before the descriptor closes (as the field drops after
    /// this), so a child never closes a number already reused.
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            HELD[slot].store(-1, Ordering::Release);
        }
    }
}

/// Closes this process's copies of every lock par holds: for a child
/// between fork and exec, which then holds none of them (async-signal-safe:
/// atomic loads and `close(2)`).
#[allow(
    unsafe_code,
    reason = "closes descriptors by number in a child between fork and exec"
)]
pub(crate) fn close_held_locks() {
    for slot in &HELD {
        let fd: RawFd = slot.load(Ordering::Acquire);
        if fd >= 0 {
            // SAFETY: in the child, `fd` is a copy of a descriptor the
            // parent listed while it was open; closing it touches nothing else.
            unsafe { libc::close(fd) };
        }
    }
}

/// An exclusive lock on one package id, held while its tree and link are
/// replaced, so two loads of the same package never interleave their renames.
#[derive(Debug)]
pub(crate) struct PackageLock {
    _file: LockFile,
}

impl PackageLock {
    /// Blocks until `{root}/locks/{package_dir_name}.lock` is ours.
    pub(crate) fn acquire(root: &RootDir, package_dir_name: &str) -> Result<Self, LoadError> {
        let name = format!("{package_dir_name}.lock");
        let file = lock_in(root.dir(Area::Locks), &name, FlockOperation::LockExclusive)
            .map_err(LoadError::io("cannot lock", root.join(Area::Locks, &name)))?;
        Ok(Self { _file: file })
    }
}

/// A lock on everything one app has under the root (see the module's notes).
#[derive(Debug)]
pub(crate) struct AppLock {
    _file: LockFile,
}

impl AppLock {
    /// Blocks until the app's lock is held shared: for a load or an agent start.
    pub(crate) fn shared(root: &RootDir, app_id: &str) -> Result<Self, LoadError> {
        let name = Self::name(app_id);
        let file = lock_in(root.dir(Area::Locks), &name, FlockOperation::LockShared)
            .map_err(LoadError::io("cannot lock", root.join(Area::Locks, &name)))?;
        Ok(Self { _file: file })
    }

    /// Blocks until the app's lock is held exclusively: for `remove`.
    pub(crate) fn exclusive(root: &RootDir, app_id: &str) -> io::Result<Self> {
        let file = lock_in(
            root.dir(Area::Locks),
            &Self::name(app_id),
            FlockOperation::LockExclusive,
        )?;
        Ok(Self { _file: file })
    }

    /// The app's lock held exclusively, or `None` while a load or agent
    /// start holds it: for `gc`, which passes such an app over.
    pub(crate) fn try_exclusive(root: &RootDir, app_id: &str) -> io::Result<Option<Self>> {
        match lock_in(
            root.dir(Area::Locks),
            &Self::name(app_id),
            FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(file) => Ok(Some(Self { _file: file })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn name(app_id: &str) -> String {
        format!("{app_id}.lock")
    }
}
