//! The ways an archive is refused that the guest reports and the host
//! words: one list for both.

use std::fmt;

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Entries in the archive.
    Entries,
    /// Bytes all files expand to.
    TotalBytes,
    /// Bytes one file expands to.
    FileBytes,
    /// Uncompressed:compressed ratio of a large entry.
    CompressionRatio,
    /// Size of `agent.yaml`.
    ManifestBytes,
}

impl LimitKind {
    /// Stable, human-readable name used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Entries => "entry count",
            LimitKind::TotalBytes => "total uncompressed size",
            LimitKind::FileBytes => "file size",
            LimitKind::CompressionRatio => "compression ratio",
            LimitKind::ManifestBytes => "manifest size",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an archive's structures disagree, so that two zip readers could see
/// different files in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inconsistency {
    /// A local header names another file than its central-directory entry.
    LocalName,
    /// A local header's flags differ.
    LocalFlags,
    /// A local header's compression method differs.
    LocalMethod,
    /// A local header's CRC-32 differs.
    LocalCrc,
    /// A local header's sizes differ.
    LocalSizes,
    /// A data descriptor differs from the central directory.
    Descriptor,
    /// A stored entry with a data descriptor.
    StoredWithDescriptor,
    /// A central-directory entry with no local header where it points.
    MissingLocalHeader,
    /// Bytes the central directory does not account for.
    UnlistedBytes,
    /// Two entries' data overlap.
    Overlap,
    /// Bytes after the end-of-central-directory record.
    TrailingBytes,
    /// An offset in the end record or the ZIP64 locator is wrong.
    WrongOffset,
    /// The central directory does not hold the entries the end record declares.
    CentralDirectory,
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Inconsistency::LocalName => "the local header's name differs from the central directory's",
            Inconsistency::LocalFlags => "the local header's flags differ from the central directory's",
            Inconsistency::LocalMethod => "the local header's compression method differs from the central directory's",
            Inconsistency::LocalCrc => "the local header's CRC-32 differs from the central directory's",
            Inconsistency::LocalSizes => "the local header's sizes differ from the central directory's",
            Inconsistency::Descriptor => "the data descriptor differs from the central directory",
            Inconsistency::StoredWithDescriptor => "a stored entry with a data descriptor",
            Inconsistency::MissingLocalHeader => "no local header where the central directory points",
            Inconsistency::UnlistedBytes => "bytes the central directory does not list",
            Inconsistency::Overlap => "entries overlap",
            Inconsistency::TrailingBytes => "bytes after the end of the central directory record",
            Inconsistency::WrongOffset => "an offset in the end record or the ZIP64 locator is wrong",
            Inconsistency::CentralDirectory => "the central directory does not match the end record",
        })
    }
}
