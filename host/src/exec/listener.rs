//! The sockets par binds for an agent before it starts, and hands over as
//! descriptors: TCP, or a unix socket at a path. A unix socket's file is
//! made with mode 0660 (connecting needs write permission) in the group the
//! operator names; a file already at the path is removed only when it is a
//! socket nobody serves (a stale one), and par removes the file it made when
//! the agent is gone, unless something else has taken the path since. A
//! missing last directory is made as PAR's supervisor makes `agent_ID/`:
//! mode 0750 in that group, and removed with the socket when left empty.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::types::spawn::{Endpoint, MAX_UNIX_PATH_BYTES};

/// Mode of a unix socket par makes: the owner and the group may connect.
const SOCKET_MODE: u32 = 0o660;
/// Mode of the directory par makes for a unix socket: the group may reach it.
const DIRECTORY_MODE: u32 = 0o750;

/// A listening socket par holds for an agent.
#[derive(Debug)]
pub(crate) enum Listener {
    /// A TCP socket.
    Tcp(TcpListener),
    /// A unix socket, at the path of its [`SocketFile`].
    Unix(UnixListener),
}

impl Listener {
    /// Binds `at`, returning where it is bound (the port chosen, for port 0)
    /// and, for a unix socket, its file.
    pub(crate) fn bind(at: &Endpoint, group: Option<u32>) -> io::Result<(Self, Endpoint, Option<SocketFile>)> {
        match at {
            Endpoint::Tcp(addr) => {
                let listener = TcpListener::bind(addr)?;
                let bound = listener.local_addr()?;
                Ok((Listener::Tcp(listener), Endpoint::Tcp(bound), None))
            }
            Endpoint::Unix(path) => {
                let (listener, file) = bind_unix(path, group)?;
                Ok((Listener::Unix(listener), at.clone(), Some(file)))
            }
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(listener) => listener.as_fd(),
            Listener::Unix(listener) => listener.as_fd(),
        }
    }
}

/// The file of a unix socket par made: removed when dropped, if the path
/// still names that socket, and with it the directory par made for it, if
/// that is empty then.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    _directory: MadeDirectory,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The directory par made for a socket, if it made one: removed when
/// dropped if it is empty (a bind that failed, or the socket gone).
#[derive(Debug)]
struct MadeDirectory(Option<PathBuf>);

impl MadeDirectory {
    /// Makes the directory `path` is in when it is missing and its own
    /// parent exists: mode 0750, in `group` when one is given.
    fn for_socket(path: &Path, group: Option<u32>) -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) else {
            return Ok(Self(None));
        };
        match std::fs::DirBuilder::new().mode(DIRECTORY_MODE).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Self(None)),
            Err(e) => return Err(e),
        }
        let made = Self(Some(dir.to_owned()));
        if let Some(gid) = group {
            std::os::unix::fs::lchown(dir, None, Some(gid))?;
        }
        // The umask may have taken the group's bits.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIRECTORY_MODE))?;
        Ok(made)
    }
}

impl Drop for MadeDirectory {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn bind_unix(path: &Path, group: Option<u32>) -> io::Result<(UnixListener, SocketFile)> {
    let length = path.as_os_str().len();
    if length > MAX_UNIX_PATH_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the path is {length} bytes; a unix socket's may have at most {MAX_UNIX_PATH_BYTES}"),
        ));
    }
    let directory = MadeDirectory::for_socket(path, group)?;
    remove_stale(path)?;
    let listener = UnixListener::bind(path)?;
    let made = std::fs::symlink_metadata(path)?;
    let file = SocketFile {
        path: path.to_owned(),
        dev: made.dev(),
        ino: made.ino(),
        _directory: directory,
    };
    // Before anyone may connect: until now the mode left group and others
    // without write permission, so nobody but par could.
    if let Some(gid) = group {
        std::os::unix::fs::lchown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    Ok((listener, file))
}

/// Removes what is at `path` if it is a socket nobody serves; refuses
/// anything else there.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "something other than a socket is at the path: left as it is",
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a process serves the socket at the path",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_socket_replaces_only_a_stale_socket_and_goes_with_its_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("rest.sock");
        let at = Endpoint::Unix(path.clone());
        drop(UnixListener::bind(&path).expect("a stale socket"));
        let (listener, bound, file) = Listener::bind(&at, None).expect("the stale socket is replaced");
        assert_eq!(bound, at);
        let meta = std::fs::symlink_metadata(&path).expect("the socket");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);

        let served = Listener::bind(&at, None).expect_err("a served socket stays");
        assert_eq!(served.kind(), io::ErrorKind::AddrInUse);
        drop(listener);
        drop(file);
        assert!(!path.exists(), "par's socket file goes with it");

        std::fs::write(&path, "data").expect("a regular file");
        let kept = Listener::bind(&at, None).expect_err("not a socket");
        assert_eq!(kept.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "data");

        std::fs::remove_file(&path).expect("the regular file");
        let agent_dir = dir.path().join("agent_1");
        let at = Endpoint::Unix(agent_dir.join("rest.sock"));
        let (listener, _, file) = Listener::bind(&at, None).expect("its directory is made");
        let meta = std::fs::metadata(&agent_dir).expect("the directory");
        assert_eq!(meta.permissions().mode() & 0o777, 0o750);
        drop((listener, file));
        assert!(!agent_dir.exists(), "the directory par made goes with the socket");
        let deeper = Endpoint::Unix(dir.path().join("a/b/rest.sock"));
        let error = Listener::bind(&deeper, None).expect_err("only the last directory is made");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);

        let long = Endpoint::Unix(dir.path().join("x".repeat(MAX_UNIX_PATH_BYTES)));
        let error = Listener::bind(&long, None).expect_err("too long");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
