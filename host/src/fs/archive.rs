//! The archive a load reads, opened once. Its digest names the tree and
//! keys the deployment record, so the bytes hashed must be the bytes the
//! guest extracts: both come through this one descriptor, and the guest
//! reads a private copy made (and hashed again) through it. A file
//! rewritten while par reads it cannot publish a tree named after bytes it
//! does not hold; the load is refused instead.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::types::error::LoadError;

/// Bytes read at a time.
const CHUNK: usize = 256 * 1024;

/// An archive opened once, read only through this descriptor.
#[derive(Debug)]
pub(crate) struct Archive {
    file: File,
    path: PathBuf,
}

impl Archive {
    /// Opens `path` (following symlinks: it is the caller's path) and
    /// insists on a regular file, checked on the open descriptor.
    pub(crate) fn open(path: &Path) -> Result<Self, LoadError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .read(true)
            // A FIFO must not block the open; it is refused just below.
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(LoadError::io("cannot open the archive", path))?;
        let meta = file
            .metadata()
            .map_err(LoadError::io("cannot open the archive", path))?;
        if !meta.is_file() {
            return Err(LoadError::InvalidInput {
                what: "archive",
                detail: format!("`{}` is not a regular file", path.display()),
            });
        }
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    /// The path it was opened by, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The SHA-256 of its bytes, hex.
    pub(crate) fn digest(&self) -> Result<String, LoadError> {
        self.copy_to(&mut io::sink())
            .map_err(LoadError::io("cannot read the archive", &self.path))
    }

    /// Copies its bytes into `target` and returns their SHA-256, hex: the
    /// digest of exactly what was copied.
    pub(crate) fn copy_to(&self, target: &mut impl Write) -> io::Result<String> {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; CHUNK];
        let mut offset = 0u64;
        loop {
            let n = match self.file.read_at(&mut buffer, offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buffer[..n]);
            target.write_all(&buffer[..n])?;
            offset += n as u64;
        }
        Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Refuses the load when the bytes copied for the guest are not the
    /// bytes first hashed: the file changed while par read it.
    pub(crate) fn check_unchanged(&self, first: &str, copied: &str) -> Result<(), LoadError> {
        if first == copied {
            return Ok(());
        }
        Err(LoadError::InvalidInput {
            what: "archive",
            detail: format!(
                "`{}` changed while it was read (SHA-256 {first} at first, {copied} when copied); load it again once it is written",
                self.path.display()
            ),
        })
    }
}
