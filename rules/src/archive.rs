//! The ways an archive is refused that the guest reports and the host
//! words: one list for both, each worded once here.

use std::fmt;

use crate::limits::{MAX_COMPONENT_BYTES, MAX_PATH_DEPTH};

/// Why one archive entry was refused.
///
/// The guest returns these; the WIT carries them across the sandbox boundary
/// as its `entry-problem` variant, and the host turns that back into this
/// type. Its [`Display`](fmt::Display) is the one wording both sides use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryProblem {
    /// The name starts with `/`.
    AbsolutePath,
    /// A `..` component, which could climb out of the package directory.
    ParentComponent,
    /// A `.` component: harmless on its own, but never produced by honest packers.
    CurrentComponent,
    /// `a//b`: an empty component.
    EmptyComponent,
    /// A backslash, which Windows takes for a separator.
    Backslash,
    /// `C:` and the like: a Windows drive prefix.
    DriveLetter,
    /// NUL or another control character.
    ControlCharacter,
    /// The name is not valid UTF-8.
    NotUtf8,
    /// More than [`MAX_PATH_DEPTH`] components.
    TooDeep,
    /// One component longer than [`MAX_COMPONENT_BYTES`] bytes.
    ComponentTooLong,
    /// A symbolic link: it could point anywhere once extracted.
    Symlink,
    /// A hard link (a PKWARE Unix extra field carrying a link target).
    HardLink,
    /// A FIFO, device, socket, or a type bit pattern that is none of these.
    SpecialFile(String),
    /// Collides with the named earlier entry (also after case folding and NFC).
    Duplicate(String),
    /// An encrypted entry: it cannot be inspected, so it is refused.
    Encrypted,
    /// A compression method other than stored or deflate.
    UnsupportedCompression(String),
    /// Damaged data: bad CRC, truncated stream, invalid deflate.
    Corrupt(String),
    /// In a bundle: not one of the members a bundle may hold.
    NotInBundle,
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryProblem::AbsolutePath => f.write_str("absolute path"),
            EntryProblem::ParentComponent => f.write_str("`..` component"),
            EntryProblem::CurrentComponent => f.write_str("`.` component"),
            EntryProblem::EmptyComponent => f.write_str("empty path component"),
            EntryProblem::Backslash => f.write_str("backslash in name"),
            EntryProblem::DriveLetter => f.write_str("drive letter"),
            EntryProblem::ControlCharacter => f.write_str("control character in name"),
            EntryProblem::NotUtf8 => f.write_str("name is not UTF-8"),
            EntryProblem::TooDeep => write!(f, "path too deep (more than {MAX_PATH_DEPTH} components)"),
            EntryProblem::ComponentTooLong => {
                write!(f, "path component too long (more than {MAX_COMPONENT_BYTES} bytes)")
            }
            EntryProblem::Symlink => f.write_str("symbolic link"),
            EntryProblem::HardLink => f.write_str("hard link"),
            EntryProblem::SpecialFile(kind) => write!(f, "special file ({kind})"),
            EntryProblem::Duplicate(first) => write!(f, "duplicate of `{first}`"),
            EntryProblem::Encrypted => f.write_str("encrypted entry"),
            EntryProblem::UnsupportedCompression(method) => write!(f, "unsupported compression method {method}"),
            EntryProblem::Corrupt(message) => write!(f, "corrupt data: {message}"),
            EntryProblem::NotInBundle => f.write_str(
                "not a bundle member (agent.apkg, its .minisig, pylock.toml, pylock.build.toml, sbom.cdx.json, \
                 or a wheel or sdist directly under wheels/)",
            ),
        }
    }
}

impl std::error::Error for EntryProblem {}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// One value of each [`EntryProblem`] variant.
    fn every_entry_problem() -> Vec<EntryProblem> {
        let every = vec![
            EntryProblem::AbsolutePath,
            EntryProblem::ParentComponent,
            EntryProblem::CurrentComponent,
            EntryProblem::EmptyComponent,
            EntryProblem::Backslash,
            EntryProblem::DriveLetter,
            EntryProblem::ControlCharacter,
            EntryProblem::NotUtf8,
            EntryProblem::TooDeep,
            EntryProblem::ComponentTooLong,
            EntryProblem::Symlink,
            EntryProblem::HardLink,
            EntryProblem::SpecialFile("fifo".into()),
            EntryProblem::Duplicate("a.py".into()),
            EntryProblem::Encrypted,
            EntryProblem::UnsupportedCompression("Bzip2".into()),
            EntryProblem::Corrupt("invalid checksum".into()),
            EntryProblem::NotInBundle,
        ];
        // Numbers each variant: a variant added to the enum does not compile
        // here until it is numbered, which is the reminder to list it above.
        let number = |problem: &EntryProblem| match problem {
            EntryProblem::AbsolutePath => 0,
            EntryProblem::ParentComponent => 1,
            EntryProblem::CurrentComponent => 2,
            EntryProblem::EmptyComponent => 3,
            EntryProblem::Backslash => 4,
            EntryProblem::DriveLetter => 5,
            EntryProblem::ControlCharacter => 6,
            EntryProblem::NotUtf8 => 7,
            EntryProblem::TooDeep => 8,
            EntryProblem::ComponentTooLong => 9,
            EntryProblem::Symlink => 10,
            EntryProblem::HardLink => 11,
            EntryProblem::SpecialFile(_) => 12,
            EntryProblem::Duplicate(_) => 13,
            EntryProblem::Encrypted => 14,
            EntryProblem::UnsupportedCompression(_) => 15,
            EntryProblem::Corrupt(_) => 16,
            EntryProblem::NotInBundle => 17,
        };
        let numbers: Vec<usize> = every.iter().map(number).collect();
        assert_eq!(numbers, (0..every.len()).collect::<Vec<_>>(), "one of each, in order");
        every
    }

    #[test]
    fn every_entry_problem_has_its_own_message() {
        let every = every_entry_problem();
        let messages: std::collections::BTreeSet<String> = every.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages.len(),
            every.len(),
            "two variants share a message: {messages:?}"
        );
        for message in &messages {
            assert!(!message.trim().is_empty());
            assert_eq!(message.trim(), message, "no stray whitespace in `{message}`");
        }
    }

    #[test]
    fn size_rules_name_their_limit() {
        assert_eq!(
            EntryProblem::TooDeep.to_string(),
            format!("path too deep (more than {MAX_PATH_DEPTH} components)")
        );
        assert_eq!(
            EntryProblem::ComponentTooLong.to_string(),
            format!("path component too long (more than {MAX_COMPONENT_BYTES} bytes)")
        );
        assert_eq!(
            EntryProblem::Duplicate("a.py".into()).to_string(),
            "duplicate of `a.py`"
        );
    }
}
