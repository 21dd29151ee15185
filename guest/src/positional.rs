//! Writing extracted files inside the sandbox with wasi:filesystem's
//! positional `write`. std's `File::write` on wasip2 goes through an output
//! stream, and wasmtime hands every stream write to a thread pool and waits
//! for it (about six futex calls per file); a positional write on a
//! descriptor runs inline on the calling thread. Files are opened relative
//! to the preopened package directory, so the host's capability checks
//! (no `..` out of it, no absolute paths) apply exactly as before.

use std::io;
use std::path::Path;

use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

/// The preopened directory files are created in.
pub(crate) struct Dir(Descriptor);

impl Dir {
    /// The preopen mounted at `root`, if `root` is one.
    pub(crate) fn preopened(root: &Path) -> Option<Self> {
        let root = root.to_str()?;
        get_directories()
            .into_iter()
            .find(|(_, path)| path == root)
            .map(|(descriptor, _)| Self(descriptor))
    }

    /// Creates `relative` (never an existing file) for writing.
    pub(crate) fn create(&self, relative: &str) -> io::Result<File> {
        self.0
            .open_at(
                PathFlags::empty(),
                relative,
                OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                DescriptorFlags::WRITE,
            )
            .map(|descriptor| File { descriptor, offset: 0 })
            .map_err(to_io)
    }
}

/// A file being written from its start.
pub(crate) struct File {
    descriptor: Descriptor,
    offset: u64,
}

impl io::Write for File {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let written = self.descriptor.write(buffer, self.offset).map_err(to_io)?;
        self.offset += written;
        Ok(written as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn to_io(code: ErrorCode) -> io::Error {
    let kind = match code {
        ErrorCode::Exist => io::ErrorKind::AlreadyExists,
        ErrorCode::NoEntry => io::ErrorKind::NotFound,
        ErrorCode::Access | ErrorCode::NotPermitted => io::ErrorKind::PermissionDenied,
        ErrorCode::InsufficientSpace => io::ErrorKind::StorageFull,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{code:?}"))
}
