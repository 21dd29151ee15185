//! What the host writes into the tree for the guest (the `host-copy`
//! import). Big stored entries: the guest names a byte range of the staged
//! archive and a new file; the host checks both, moves the bytes by the
//! kernel (`copy_file_range`) and checks their CRC-32. Small files: the
//! guest hands over a path and the bytes, and the host writes them behind
//! it on a thread of its own ([`WriteBehind`]). The guest decides what goes
//! where, as it does with its own writes; the host checks the paths and
//! the limits, and spares the bytes a trip or a wait.

use std::fs::File;
use std::io;

use cap_std::fs::{Dir, OpenOptions};
use par_rules::limits::{Limits, MAX_WRITE_BEHIND_BYTES};
use par_rules::names::is_contained_relative;

use crate::fs::copy::{CHUNK, copy_range, read_range};
use crate::fs::write_behind::{WriteBehind, WriteFailure, WriteProblem};

/// Why a copy was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CopyRefusal {
    /// The range does not lie inside the archive.
    OutOfRange,
    /// Over the per-file or the total limit; the limit.
    OverLimit(u64),
    /// The path is not relative and made of normal components, or names an existing file.
    RefusedPath,
    /// The bytes copied have this CRC-32, not the one given.
    ChecksumMismatch(u32),
    /// The host could not read or write.
    Io(String),
}

/// The archive a guest may copy from and the tree it may copy into, with
/// what is left of its limits.
#[derive(Debug)]
pub(crate) struct TreeWrites {
    archive: File,
    archive_len: u64,
    tree: Dir,
    max_file_bytes: u64,
    max_total_bytes: u64,
    /// Files the archive may hold: no more are copied or written, so the
    /// writing thread (whose time is not the guest's) makes no more files
    /// than an honest extraction would.
    max_files: u64,
    /// Bytes copied or queued so far, against the total limit.
    copied: u64,
    /// Files copied or queued so far.
    files: u64,
    /// The thread writing small files, once the first is given.
    behind: Option<WriteBehind>,
}

impl TreeWrites {
    /// Copies from `archive` (the private staged copy) into `tree`, within `limits`.
    pub(crate) fn new(archive: File, tree: Dir, limits: &Limits) -> io::Result<Self> {
        let archive_len = archive.metadata()?.len();
        Ok(Self {
            archive,
            archive_len,
            tree,
            max_file_bytes: limits.max_file_bytes,
            max_total_bytes: limits.max_total_bytes,
            max_files: u64::from(limits.max_entries),
            copied: 0,
            files: 0,
            behind: None,
        })
    }

    /// Queues the new file `path` with `contents` for the writing thread,
    /// once the size, the limits and the path pass; a failure to write it
    /// comes from [`Self::flush`] or [`Self::finish`].
    pub(crate) fn write_file(&mut self, path: String, contents: Vec<u8>) -> Result<(), CopyRefusal> {
        let length = contents.len() as u64;
        if length > MAX_WRITE_BEHIND_BYTES {
            return Err(CopyRefusal::OverLimit(MAX_WRITE_BEHIND_BYTES));
        }
        self.check_length(length)?;
        if !is_contained_relative(&path) {
            return Err(CopyRefusal::RefusedPath);
        }
        let behind = match &mut self.behind {
            Some(behind) => behind,
            empty => {
                let tree = self.tree.try_clone().map_err(|e| CopyRefusal::Io(e.to_string()))?;
                empty.insert(WriteBehind::start(tree).map_err(|e| CopyRefusal::Io(e.to_string()))?)
            }
        };
        behind
            .write(path, contents)
            .map_err(|failure| CopyRefusal::Io(format!("an earlier file was not written: {failure}")))?;
        self.copied += length;
        self.files += 1;
        Ok(())
    }

    /// Waits for every queued file; the first that could not be written.
    pub(crate) fn flush(&self) -> Result<(), WriteFailure> {
        self.behind.as_ref().map_or(Ok(()), WriteBehind::flush)
    }

    /// Waits for every queued file and stops the writing thread: nothing is
    /// written into the tree after this. The first file that failed, if any.
    pub(crate) fn finish(self) -> Result<(), WriteFailure> {
        self.behind.map_or(Ok(()), WriteBehind::finish)
    }

    /// The per-file and the total limit, for one more file of `length` bytes.
    fn check_length(&self, length: u64) -> Result<(), CopyRefusal> {
        if self.files >= self.max_files {
            return Err(CopyRefusal::OverLimit(self.max_files));
        }
        if length > self.max_file_bytes {
            return Err(CopyRefusal::OverLimit(self.max_file_bytes));
        }
        if self.copied.saturating_add(length) > self.max_total_bytes {
            return Err(CopyRefusal::OverLimit(self.max_total_bytes));
        }
        Ok(())
    }

    /// Copies `length` bytes at `offset` of the archive into the new file
    /// `path` of the tree, and checks them against `crc32`; a file whose
    /// bytes fail is removed.
    pub(crate) fn copy(&mut self, offset: u64, length: u64, crc32: u32, path: &str) -> Result<(), CopyRefusal> {
        if offset.checked_add(length).is_none_or(|end| end > self.archive_len) {
            return Err(CopyRefusal::OutOfRange);
        }
        self.check_length(length)?;
        if !is_contained_relative(path) {
            return Err(CopyRefusal::RefusedPath);
        }
        let file = match self
            .tree
            .open_with(path, OpenOptions::new().write(true).create_new(true))
        {
            Ok(file) => file.into_std(),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(CopyRefusal::RefusedPath),
            Err(e) => return Err(CopyRefusal::Io(e.to_string())),
        };
        let checked = copy_range(&self.archive, offset, &file, length)
            .map_err(|e| CopyRefusal::Io(e.to_string()))
            .and_then(|()| match self.crc32(offset, length) {
                Ok(actual) if actual == crc32 => Ok(()),
                Ok(actual) => Err(CopyRefusal::ChecksumMismatch(actual)),
                Err(e) => Err(CopyRefusal::Io(e.to_string())),
            });
        if checked.is_err() {
            drop(file);
            let _ = self.tree.remove_file(path);
        } else {
            self.copied += length;
            self.files += 1;
        }
        checked
    }

    /// The CRC-32 of the archive's bytes in the range, which are the bytes copied.
    fn crc32(&self, offset: u64, length: u64) -> io::Result<u32> {
        let mut hasher = crc32fast::Hasher::new();
        read_range(&self.archive, offset, length, &mut vec![0u8; CHUNK], |bytes| {
            hasher.update(bytes);
            Ok(())
        })?;
        Ok(hasher.finalize())
    }
}

/// Why a file was not written, as the guest's `copy-error`.
pub(crate) fn problem_refusal(problem: &WriteProblem) -> CopyRefusal {
    match problem {
        WriteProblem::Exists => CopyRefusal::RefusedPath,
        WriteProblem::Io(message) => CopyRefusal::Io(message.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive of `bytes` and an empty tree, with `limits`.
    fn copies(bytes: &[u8], limits: Limits) -> (tempfile::TempDir, TreeWrites) {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("archive"), bytes).expect("archive");
        std::fs::create_dir(dir.path().join("tree")).expect("tree");
        let archive = File::open(dir.path().join("archive")).expect("open");
        let tree = Dir::open_ambient_dir(dir.path().join("tree"), cap_std::ambient_authority()).expect("tree");
        let copies = TreeWrites::new(archive, tree, &limits).expect("copies");
        (dir, copies)
    }

    fn crc(bytes: &[u8]) -> u32 {
        crc32fast::hash(bytes)
    }

    #[test]
    fn a_range_is_copied_exactly_into_a_new_file() {
        let bytes: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let (dir, mut copies) = copies(&bytes, Limits::default());
        std::fs::create_dir(dir.path().join("tree/sub")).expect("sub");
        let range = &bytes[1000..501_000];
        copies.copy(1000, 500_000, crc(range), "sub/file.bin").expect("copied");
        assert_eq!(
            std::fs::read(dir.path().join("tree/sub/file.bin")).expect("file"),
            range
        );
    }

    #[test]
    fn bytes_that_fail_their_crc_leave_no_file() {
        let (dir, mut copies) = copies(b"stored bytes", Limits::default());
        let wrong = crc(b"stored bytes") ^ 1;
        assert_eq!(
            copies.copy(0, 12, wrong, "file"),
            Err(CopyRefusal::ChecksumMismatch(crc(b"stored bytes")))
        );
        assert!(!dir.path().join("tree/file").exists());
    }

    #[test]
    fn ranges_paths_and_limits_are_the_hosts_to_check() {
        let limits = Limits {
            max_file_bytes: 8,
            max_total_bytes: 12,
            ..Limits::default()
        };
        let (dir, mut copies) = copies(b"0123456789abcdef", limits);
        let ok = |from: usize, len: usize| crc(&b"0123456789abcdef"[from..from + len]);
        assert_eq!(copies.copy(10, 7, 0, "a"), Err(CopyRefusal::OutOfRange));
        assert_eq!(copies.copy(u64::MAX, 2, 0, "a"), Err(CopyRefusal::OutOfRange));
        assert_eq!(copies.copy(0, 9, ok(0, 9), "a"), Err(CopyRefusal::OverLimit(8)));
        for path in ["", "../out", "/abs", "a/../../out", "./a", "a\0b"] {
            assert_eq!(
                copies.copy(0, 1, ok(0, 1), path),
                Err(CopyRefusal::RefusedPath),
                "{path:?}"
            );
        }
        copies.copy(0, 8, ok(0, 8), "a").expect("within the limits");
        assert_eq!(
            copies.copy(0, 1, ok(0, 1), "a"),
            Err(CopyRefusal::RefusedPath),
            "an existing file"
        );
        assert_eq!(
            copies.copy(0, 5, ok(0, 5), "b"),
            Err(CopyRefusal::OverLimit(12)),
            "the total"
        );
        copies.copy(8, 4, ok(8, 4), "b").expect("the rest of the total");
        std::os::unix::fs::symlink(dir.path().join("outside"), dir.path().join("tree/link")).expect("link");
        assert!(copies.copy(0, 0, ok(0, 0), "link").is_err(), "through a symlink");
        assert!(!dir.path().join("outside").exists(), "written through a symlink");
    }

    #[test]
    fn small_files_are_checked_against_the_shared_limits_then_written_behind() {
        let (_dir, mut small) = copies(b"", Limits::default());
        let over = (MAX_WRITE_BEHIND_BYTES + 1) as usize;
        assert_eq!(
            small.write_file("big".into(), vec![0; over]),
            Err(CopyRefusal::OverLimit(MAX_WRITE_BEHIND_BYTES))
        );
        let (_few_dir, mut few) = copies(
            b"",
            Limits {
                max_entries: 2,
                ..Limits::default()
            },
        );
        few.write_file("one".into(), Vec::new()).expect("first");
        few.copy(0, 0, 0, "two").expect("second");
        assert_eq!(
            few.write_file("three".into(), Vec::new()),
            Err(CopyRefusal::OverLimit(2)),
            "no more files than the archive may hold"
        );
        let limits = Limits {
            max_file_bytes: 8,
            max_total_bytes: 12,
            ..Limits::default()
        };
        let (dir, mut copies) = copies(b"0123456789abcdef", limits);
        assert_eq!(
            copies.write_file("a".into(), vec![0; 9]),
            Err(CopyRefusal::OverLimit(8))
        );
        for path in ["", "../out", "/abs", "a/../../out", "./a", "a\0b"] {
            assert_eq!(
                copies.write_file(path.into(), b"x".to_vec()),
                Err(CopyRefusal::RefusedPath),
                "{path:?}"
            );
        }
        copies
            .write_file("a".into(), b"written!".to_vec())
            .expect("within the limits");
        copies
            .copy(0, 2, crc(b"01"), "b")
            .expect("a copy counts against the same total");
        assert_eq!(
            copies.write_file("c".into(), vec![0; 3]),
            Err(CopyRefusal::OverLimit(12)),
            "the total"
        );
        copies
            .write_file("c".into(), b"ok".to_vec())
            .expect("the rest of the total");
        copies.finish().expect("all written");
        assert_eq!(std::fs::read(dir.path().join("tree/a")).expect("a"), b"written!");
        assert_eq!(std::fs::read(dir.path().join("tree/c")).expect("c"), b"ok");
        assert!(!dir.path().join("out").exists());
    }
}
