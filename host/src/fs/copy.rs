//! Copying a byte range from one file to another: by the kernel
//! (`copy_file_range`) where the file systems allow it, else through a
//! buffer.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;

/// Bytes moved or read at a time through a buffer.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Copies `length` bytes at `offset` of `from` to the current position of
/// `to`; fails if `from` ends first.
pub(crate) fn copy_range(from: &File, offset: u64, to: &File, length: u64) -> io::Result<()> {
    let (mut at, mut left) = (offset, length);
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX);
        match rustix::fs::copy_file_range(from, Some(&mut at), to, None, want) {
            Ok(0) => return Err(ended_early()),
            Ok(n) => left -= n as u64,
            Err(e) if left == length && copy_unsupported(e) => return copy_through_buffer(from, at, to, left),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_through_buffer(from: &File, offset: u64, mut to: &File, length: u64) -> io::Result<()> {
    read_range(from, offset, length, &mut vec![0u8; CHUNK], |bytes| to.write_all(bytes))
}

/// Reads `length` bytes at `offset` of `file` through `buffer`, a buffer at
/// a time, handing each to `each`; fails if the file ends first.
pub(crate) fn read_range(
    file: &File,
    offset: u64,
    length: u64,
    buffer: &mut [u8],
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let (mut at, end) = (offset, offset.saturating_add(length));
    while at < end {
        let want = usize::try_from(end - at).map_or(buffer.len(), |left| left.min(buffer.len()));
        let n = match file.read_at(&mut buffer[..want], at) {
            Ok(0) => return Err(ended_early()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buffer[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// What a copy that found fewer bytes than it was asked for fails with.
pub(crate) fn ended_early() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the file ended before the range did")
}

/// Errors after which a plain read and write does what `copy_file_range` could not.
fn copy_unsupported(error: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [Errno::XDEV, Errno::NOSYS, Errno::OPNOTSUPP, Errno::INVAL].contains(&error)
}
