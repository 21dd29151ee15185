//! The sockets par binds for an agent before it starts, and hands over as
//! descriptors: TCP, or a unix socket at a path. A unix socket's file is
//! made with mode 0660 (connecting needs write permission) in the group the
//! operator names; a file already at the path is removed only when it is a
//! socket nobody serves (a stale one), and par removes the file it made when
//! the agent is gone, unless something else has taken the path since.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::types::spawn::{Endpoint, MAX_UNIX_PATH_BYTES};

/// Mode of a unix socket par makes: the owner and the group may connect.
const SOCKET_MODE: u32 = 0o660;

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
/// still names that socket.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
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
    remove_stale(path)?;
    let listener = UnixListener::bind(path)?;
    let made = std::fs::symlink_metadata(path)?;
    let file = SocketFile {
        path: path.to_owned(),
        dev: made.dev(),
        ino: made.ino(),
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

        let long = Endpoint::Unix(dir.path().join("x".repeat(MAX_UNIX_PATH_BYTES)));
        let error = Listener::bind(&long, None).expect_err("too long");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
