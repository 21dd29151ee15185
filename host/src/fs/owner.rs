//! Who may change a directory par trusts. par keeps state only in
//! directories this user owns and no one else can write, below directories
//! no one else can change (this user's or root's, closed to others, or
//! sticky like `/tmp`, where others may add entries but not replace this
//! user's). Anything else could be swapped or filled by another local user
//! between par's checks and its use, so it is refused, never repaired.

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

pub(crate) use crate::types::error::UnsafeDir as Unsafe;

/// Either an I/O failure or a directory par may not trust.
#[derive(Debug)]
pub enum Refusal {
    /// The file system failed.
    Io(PathBuf, io::Error),
    /// A directory anyone else could change.
    Unsafe(Unsafe),
}

impl From<Unsafe> for Refusal {
    fn from(value: Unsafe) -> Self {
        Refusal::Unsafe(value)
    }
}

impl From<Refusal> for io::Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Io(_, error) => error,
            Refusal::Unsafe(problem) => io::Error::new(io::ErrorKind::PermissionDenied, problem),
        }
    }
}

/// This process's effective user.
pub(crate) fn this_user() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A file's type, owner and mode: what decides who may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ownership {
    /// It is a directory.
    pub is_dir: bool,
    /// Its owner.
    pub uid: u32,
    /// Its mode bits.
    pub mode: u32,
}

impl Ownership {
    /// Of what `fd` is open on (never through a path someone could swap).
    pub(crate) fn of(fd: impl std::os::fd::AsFd) -> io::Result<Self> {
        let stat = rustix::fs::fstat(fd)?;
        Ok(Self {
            is_dir: rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory,
            uid: stat.st_uid,
            mode: stat.st_mode & 0o7777,
        })
    }

    fn of_path(path: &Path) -> io::Result<Self> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(Self {
            is_dir: meta.is_dir(),
            uid: meta.uid(),
            mode: meta.mode() & 0o7777,
        })
    }
}

/// Checks a directory par keeps state in (its ownership read from an open
/// handle): a directory of this user that nobody else can write.
pub(crate) fn check_private(path: &Path, meta: Ownership) -> Result<(), Unsafe> {
    let user = this_user();
    let reason = if !meta.is_dir {
        Some("is not a directory".to_owned())
    } else if meta.uid != user {
        Some(format!("is owned by uid {}, not by this user (uid {user})", meta.uid))
    } else if meta.mode & 0o022 != 0 {
        Some(format!("has mode {:04o}: others can write to it", meta.mode))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Unsafe {
            path: path.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks a directory above one par keeps state in: this user's or root's,
/// and closed to others unless sticky.
fn check_above(path: &Path) -> Result<(), Refusal> {
    let meta = Ownership::of_path(path).map_err(|e| Refusal::Io(path.to_owned(), e))?;
    let user = this_user();
    let reason = if !meta.is_dir {
        Some("is not a directory".to_owned())
    } else if meta.uid != user && meta.uid != 0 {
        Some(format!(
            "is owned by uid {}, neither this user (uid {user}) nor root, who could swap what lies below it",
            meta.uid
        ))
    } else if meta.mode & 0o022 != 0 && meta.mode & 0o1000 == 0 {
        Some(format!(
            "has mode {:04o}: others can swap what lies below it (and it is not sticky)",
            meta.mode
        ))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Refusal::Unsafe(Unsafe {
            path: path.to_owned(),
            reason,
        })),
        None => Ok(()),
    }
}

/// Opens the directory `path` (canonical, from [`prepare`]) without
/// following a symlink, and checks it with [`check_private`] on the handle.
pub(crate) fn open_private(path: &Path) -> Result<cap_std::fs::Dir, Refusal> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(
        rustix::fs::CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Refusal::Io(path.to_owned(), e.into()))?;
    let ownership = Ownership::of(&fd).map_err(|e| Refusal::Io(path.to_owned(), e))?;
    check_private(path, ownership)?;
    Ok(cap_std::fs::Dir::from_std_file(std::fs::File::from(fd)))
}

/// Makes `path` a directory par can trust, creating what is missing: every
/// directory above it must pass [`check_above`] (missing ones are made 0755),
/// and `path` itself is made with `mode` if missing, or else must already
/// pass [`check_private`]. Creation is exclusive (`mkdir`), so a directory
/// another user made first is checked like any other, never adopted.
/// Returns the canonical path, which is what par opens from then on.
pub(crate) fn prepare(path: &Path, mode: u32) -> Result<PathBuf, Refusal> {
    let io_at = |at: &Path| {
        let at = at.to_owned();
        move |e: io::Error| Refusal::Io(at, e)
    };
    // The longest part of the path that exists, resolved: a symlink on the
    // way is followed once, here, and its target is what gets checked.
    let mut existing = path;
    let mut missing = Vec::new();
    while std::fs::symlink_metadata(existing).is_err() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
            return Err(Refusal::Io(path.to_owned(), io::ErrorKind::NotFound.into()));
        };
        missing.push(name.to_owned());
        existing = parent;
    }
    let mut current = existing.canonicalize().map_err(io_at(existing))?;
    for ancestor in current.ancestors().skip(usize::from(missing.is_empty())) {
        check_above(ancestor)?;
    }
    while let Some(name) = missing.pop() {
        current.push(name);
        let mode = if missing.is_empty() { mode } else { 0o755 };
        match std::fs::DirBuilder::new().mode(mode).create(&current) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Refusal::Io(current, e)),
        }
        if !missing.is_empty() {
            check_above(&current)?;
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_directory_others_can_write_is_refused_above_unless_sticky_and_as_the_directory_always() {
        let scratch = tempfile::tempdir().expect("dir");
        let open = scratch.path().join("open");
        std::fs::create_dir(&open).expect("open dir");
        chmod(&open, 0o777);
        let Err(Refusal::Unsafe(problem)) = prepare(&open.join("root"), 0o755) else {
            panic!("an ancestor anyone can change");
        };
        assert_eq!(problem.path, open.canonicalize().expect("canonical"));
        assert!(problem.reason.contains("0777"), "{problem}");
        assert!(!open.join("root").exists(), "nothing is made below an unsafe directory");

        chmod(&open, 0o1777);
        let root = prepare(&open.join("root"), 0o755).expect("sticky like /tmp");
        let meta = || Ownership::of(std::fs::File::open(&root).expect("open")).expect("stat");
        assert_eq!(meta().mode & 0o022, 0, "made closed to others");
        check_private(&root, meta()).expect("made by this user");

        chmod(&root, 0o777);
        let problem = check_private(&root, meta()).expect_err("others can write");
        assert!(problem.reason.contains("others can write"), "{problem}");
    }

    #[test]
    fn missing_directories_are_made_and_a_symlink_on_the_way_is_resolved_once() {
        let scratch = tempfile::tempdir().expect("dir");
        let real = scratch.path().join("real");
        std::fs::create_dir(&real).expect("real");
        std::os::unix::fs::symlink(&real, scratch.path().join("link")).expect("link");
        let made = prepare(&scratch.path().join("link/a/b/root"), 0o700).expect("made");
        assert_eq!(made, real.canonicalize().expect("canonical").join("a/b/root"));
        assert_eq!(std::fs::metadata(&made).expect("root").mode() & 0o777, 0o700);
    }
}
