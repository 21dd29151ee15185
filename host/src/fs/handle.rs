//! Opening names under a directory handle without ever following a
//! symlink: what every file operation under the root and the cache goes
//! through.

use std::io;
use std::path::PathBuf;

use cap_std::fs::Dir;
use rustix::fs::{Mode, OFlags};

/// Opens the directory `name` (one component) in `dir`, never through a symlink.
pub(crate) fn open_dir_nofollow(dir: &Dir, name: &str) -> io::Result<Dir> {
    let fd = rustix::fs::openat(
        dir,
        single(name)?,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Dir::from_std_file(std::fs::File::from(fd)))
}

/// Opens the regular file `name` (one component) in `dir` for reading, never through a symlink.
pub(crate) fn open_file_nofollow(dir: &Dir, name: &str) -> io::Result<std::fs::File> {
    let fd = rustix::fs::openat(
        dir,
        single(name)?,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!("`{name}` is not a regular file")));
    }
    Ok(file)
}

/// The whole of the regular file `name` in `dir` (never through a symlink),
/// refused if it is larger than `max` bytes: what a step wrote for the host.
pub(crate) fn read_bounded(dir: &Dir, name: &str, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_file_nofollow(dir, name)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("`{name}` is larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// `name`, if it is one path component (the kernel follows symlinks in any
/// component but the last, so only single names are opened raw).
fn single(name: &str) -> io::Result<&str> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{name}` is not one path component"),
        ));
    }
    Ok(name)
}

/// The path `/proc/self/fd/N` of a handle: reopening it reaches exactly the
/// directory the handle is on, whatever has been renamed or swapped since.
pub(crate) fn fd_path(dir: &Dir) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}
