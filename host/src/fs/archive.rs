//! The archive a load reads, opened once. Its digest names the tree and
//! keys the deployment record, so the bytes hashed must be the bytes the
//! guest extracts. The guest reads a private copy made through the one
//! descriptor (by the kernel where it can: `copy_file_range`), and the
//! digest is of that copy, or, for an archive par has hashed before and
//! that has not changed since, the digest it had then.
//!
//! An archive has not changed when its identity (device, inode, size,
//! modification and change times in nanoseconds) is the one recorded with
//! its digest. The change time cannot be set by a user; par records an
//! identity only on a local file system, only when the file's change time
//! is older than [`ARCHIVE_SETTLE_TIME`] when par took it (so a later write cannot
//! share its clock tick), and only when the identity held from the open
//! until the digest was made. A file rewritten while par copies it is
//! refused: the load cannot publish a tree named after bytes it does not
//! hold.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use cap_std::fs::{OpenOptions, OpenOptionsExt as _};
use sha2::{Digest as _, Sha256};

use crate::fs::copy::{CHUNK, copy_range, read_range};
use crate::fs::hex;
use crate::fs::root::{Area, RootDir, open_file_nofollow};
use crate::fs::seal::Sealed;
use crate::types::config::ARCHIVE_SETTLE_TIME;
use crate::types::error::LoadError;

/// How old a file's change time must be for its identity to be recorded,
/// where the file system keeps whole seconds only.
const SETTLED_COARSE: Duration = Duration::from_secs(2);
/// Local file systems whose change time comes from this machine's clock
/// (`statfs(2)` magic numbers): tmpfs, ext2/3/4, XFS, Btrfs, overlayfs, F2FS.
const LOCAL_FILE_SYSTEMS: [i64; 6] = [0x0102_1994, 0xEF53, 0x5846_5342, 0x9123_683E, 0x794C_7630, 0xF2F5_2010];
/// An identity record is no longer than this.
const MAX_RECORD_BYTES: u64 = 1024;

/// What identifies a file's bytes without reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(file: &File) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// The record's file name.
    fn name(&self) -> String {
        format!("{:x}-{:x}", self.dev, self.ino)
    }

    /// What a record holds besides the digest.
    fn fields(&self) -> String {
        let Self { size, mtime, ctime, .. } = self;
        format!("{size} {}.{:09} {}.{:09}", mtime.0, mtime.1, ctime.0, ctime.1)
    }

    /// Whether the change time was older than the settling time at `taken`.
    fn settled_at(&self, taken: SystemTime) -> bool {
        let (secs, nanos) = self.ctime;
        let (Ok(secs), Ok(nanos)) = (u64::try_from(secs), u32::try_from(nanos)) else {
            return false;
        };
        let changed = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        let settled = if self.mtime.1 == 0 && nanos == 0 {
            SETTLED_COARSE
        } else {
            ARCHIVE_SETTLE_TIME
        };
        taken.duration_since(changed).is_ok_and(|age| age > settled)
    }
}

/// An archive opened once, read only through this descriptor.
#[derive(Debug)]
pub(crate) struct Archive {
    file: File,
    path: PathBuf,
    /// Its identity when it was opened, and when that was.
    opened: Identity,
    opened_at: SystemTime,
    /// Whether it is on a file system whose change times par trusts.
    local: bool,
}

impl Archive {
    /// Opens `path` (following symlinks: it is the caller's path) and
    /// insists on a regular file, checked on the open descriptor.
    pub(crate) fn open(path: &Path) -> Result<Self, LoadError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let opened_at = SystemTime::now();
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
        let opened = Identity::of(&file).map_err(LoadError::io("cannot open the archive", path))?;
        #[allow(
            clippy::useless_conversion,
            reason = "`f_type` is an i64 on 64-bit Linux and narrower elsewhere"
        )]
        let local = rustix::fs::fstatfs(&file).is_ok_and(|fs| LOCAL_FILE_SYSTEMS.contains(&i64::from(fs.f_type)));
        Ok(Self {
            file,
            path: path.to_owned(),
            opened,
            opened_at,
            local,
        })
    }

    /// The path it was opened by, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `check` over the bytes through the one descriptor, then refuses
    /// the load if the file is no longer as it was opened: what `check` read
    /// is the file whose digest par knows.
    pub(crate) fn read_checked<T>(&self, check: impl FnOnce(&File) -> T) -> Result<T, LoadError> {
        let result = check(&self.file);
        match Identity::of(&self.file) {
            Ok(now) if now == self.opened => Ok(result),
            Ok(_) => Err(self.changed()),
            Err(e) => Err(LoadError::io("cannot read the archive", &self.path)(e)),
        }
    }

    /// The digest recorded for this file under the identity it had when
    /// opened, if any: it has not changed since par last hashed it.
    pub(crate) fn known_digest(&self, root: &RootDir) -> Option<String> {
        if !self.local {
            return None;
        }
        let (fields, digest) = read_record(root, &self.opened.name())?;
        (fields == self.opened.fields() && is_sha256_hex(&digest)).then_some(digest)
    }

    /// Records `digest` as the digest of this file's bytes, when the file
    /// qualifies (see the module's notes) and its identity still holds.
    /// A record that cannot be written only means hashing again next time.
    pub(crate) fn remember(&self, root: &RootDir, digest: &str) {
        if !self.local || !self.opened.settled_at(self.opened_at) || Identity::of(&self.file).ok() != Some(self.opened)
        {
            return;
        }
        let name = self.opened.name();
        let content = format!("{} {digest}\n", self.opened.fields());
        let sealed = root.seal().seal(Sealed::ArchiveIdentity, content.as_bytes());
        let archives = root.dir(Area::Archives);
        let temporary = format!(".{name}.{}", std::process::id());
        let written = archives
            .open_with(&temporary, OpenOptions::new().write(true).create_new(true).mode(0o600))
            .and_then(|file| file.into_std().write_all(&sealed))
            .and_then(|()| archives.rename(&temporary, archives, &name));
        if let Err(error) = written {
            let _ = archives.remove_file(&temporary);
            tracing::debug!(path = %root.join(Area::Archives, &name).display(), %error, "cannot record the archive's digest");
        }
    }

    /// Copies its bytes into `target` (by the kernel where the file systems
    /// allow), and refuses the load when the file changed meanwhile.
    pub(crate) fn copy_into(&self, target: &File) -> Result<(), LoadError> {
        self.copy(target, &Progress::default())
    }

    /// [`Self::copy_into`], with a second thread hashing `target` right
    /// behind the copy: its digest is of exactly the bytes copied.
    pub(crate) fn copy_hashed(&self, target: &File) -> Result<PendingDigest, LoadError> {
        let reader = target
            .try_clone()
            .map_err(LoadError::io("cannot hash the copy of", &self.path))?;
        let progress = Arc::new(Progress::default());
        let behind = Arc::clone(&progress);
        let pending = PendingDigest(std::thread::spawn(move || hash_behind(&reader, &behind)));
        self.copy(target, &progress).map(|()| pending)
    }

    fn copy(&self, target: &File, progress: &Progress) -> Result<(), LoadError> {
        let size = self.opened.size;
        let mut copied = 0;
        let outcome = loop {
            if copied == size {
                break Ok(());
            }
            let chunk = (size - copied).min(COPY_CHUNK);
            if let Err(e) = copy_range(&self.file, copied, target, chunk) {
                break Err(e);
            }
            copied += chunk;
            progress.advance(copied, false);
        };
        progress.advance(copied, true);
        match outcome {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(self.changed()),
            Err(e) => return Err(LoadError::io("cannot read the archive", &self.path)(e)),
            Ok(()) => {}
        }
        self.read_checked(|_| ())
    }

    /// The refusal of an archive written to while par read it.
    fn changed(&self) -> LoadError {
        LoadError::InvalidInput {
            what: "archive",
            detail: format!(
                "`{}` changed while it was read; load it again once it is written",
                self.path.display()
            ),
        }
    }
}

/// Bytes copied between two reports to the hashing thread.
const COPY_CHUNK: u64 = 8 * 1024 * 1024;

/// How far the copy has come, for the thread hashing behind it.
#[derive(Debug, Default)]
struct Progress {
    /// Bytes copied, and whether the copy is over.
    state: Mutex<(u64, bool)>,
    moved: Condvar,
}

impl Progress {
    fn advance(&self, copied: u64, over: bool) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = (copied, over);
        self.moved.notify_all();
    }

    /// Waits until more than `hashed` bytes are copied or the copy is over.
    fn wait_past(&self, hashed: u64) -> (u64, bool) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *self
            .moved
            .wait_while(state, |(copied, over)| *copied <= hashed && !*over)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The SHA-256 of a copy, being made on a thread of its own.
#[derive(Debug)]
pub(crate) struct PendingDigest(std::thread::JoinHandle<io::Result<String>>);

/// An archive's digest: known from its identity record, or being made
/// from its copy.
#[derive(Debug)]
pub(crate) enum Digest {
    /// Recorded when par last hashed the unchanged file.
    Known(String),
    /// Being made on a thread of its own.
    Hashing(PendingDigest),
}

impl Digest {
    /// The digest, once it is there: hex.
    pub(crate) fn wait(self) -> io::Result<String> {
        match self {
            Digest::Known(digest) => Ok(digest),
            Digest::Hashing(pending) => pending.wait(),
        }
    }
}

impl PendingDigest {
    /// The digest, once the thread is done: hex.
    pub(crate) fn wait(self) -> io::Result<String> {
        self.0
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the hashing thread panicked")))
    }
}

/// Hashes `copy` as far as the copy has come, until it is over.
fn hash_behind(copy: &File, progress: &Progress) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut hashed = 0u64;
    loop {
        let (copied, over) = progress.wait_past(hashed);
        read_range(copy, hashed, copied.saturating_sub(hashed), &mut buffer, |bytes| {
            hasher.update(bytes);
            Ok(())
        })?;
        hashed = hashed.max(copied);
        if over {
            return Ok(hex(&hasher.finalize()));
        }
    }
}

/// The identity fields and the digest of the sealed record `name`, if par
/// sealed it.
fn read_record(root: &RootDir, name: &str) -> Option<(String, String)> {
    let file = open_file_nofollow(root.dir(Area::Archives), name).ok()?;
    let mut sealed = Vec::new();
    file.take(MAX_RECORD_BYTES).read_to_end(&mut sealed).ok()?;
    let content = std::str::from_utf8(root.seal().unseal(Sealed::ArchiveIdentity, &sealed)?).ok()?;
    let (fields, digest) = content.trim_end().rsplit_once(' ')?;
    Some((fields.to_owned(), digest.to_owned()))
}

/// Removes every identity record whose digest no deployment record and no
/// tree names any more (and any record par did not seal): `gc` calls this,
/// so the records do not outgrow what the root holds.
pub(crate) fn forget_unused(root: &RootDir) {
    let names = |area| -> Vec<String> {
        root.dir(area)
            .entries()
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
            .collect()
    };
    // `{digest}.{app}.json` and `{app}@{version}.{digest}`.
    let mut used: std::collections::HashSet<String> = names(Area::Deployments)
        .iter()
        .filter_map(|name| name.split_once('.').map(|(digest, _)| digest.to_owned()))
        .collect();
    used.extend(
        names(Area::Trees)
            .iter()
            .filter_map(|name| name.rsplit_once('.').map(|(_, digest)| digest.to_owned())),
    );
    let archives = root.dir(Area::Archives);
    for name in names(Area::Archives) {
        let digest = read_record(root, &name).map(|(_, digest)| digest);
        if digest.is_none_or(|digest| !used.contains(&digest)) {
            let _ = archives.remove_file(&name);
        }
    }
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(at: SystemTime, whole_seconds: bool) -> Identity {
        let since = at.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970");
        let nanos = if whole_seconds {
            0
        } else {
            i64::from(since.subsec_nanos())
        };
        let time = (since.as_secs() as i64, nanos);
        Identity {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: time,
            ctime: time,
        }
    }

    #[test]
    fn an_identity_is_settled_once_its_change_time_is_older_than_a_clock_tick_can_hide() {
        let now = SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 500_000_000);
        let just = ARCHIVE_SETTLE_TIME / 2;
        assert!(!changed(now - just, false).settled_at(now), "changed too recently");
        assert!(changed(now - ARCHIVE_SETTLE_TIME * 2, false).settled_at(now));
        assert!(
            !changed(now + just, false).settled_at(now),
            "changed after it was opened"
        );
        // Whole seconds only: a write in the same second keeps the same time.
        let second_ago = now - Duration::from_secs(1);
        assert!(!changed(second_ago, true).settled_at(now));
        assert!(changed(now - Duration::from_secs(3), true).settled_at(now));
    }
}
