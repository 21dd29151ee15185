//! par's seal on the state it trusts: a venv's marker, a deployment record,
//! an agent record. Each carries an HMAC-SHA256 under a key that only the
//! loader's user can read (`{root}/seal.key`, 0600, made once), over what
//! it says and what it is for. A file anyone else wrote (into a root that
//! was theirs first, through a step that could write a venv, by hand) has
//! no valid seal and counts as absent: a venv is rebuilt, a record ignored.

use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::fs::handle::open_file_nofollow;
use crate::fs::hex;
use crate::fs::owner::this_user;

/// The key's file name, directly under the root.
pub(crate) const KEY_FILE: &str = "seal.key";
/// The key's length in bytes.
const KEY_BYTES: usize = 32;
/// Hex digits of a tag.
const TAG_HEX: usize = 64;

/// What a sealed file is: part of what is sealed, so a seal on one kind of
/// file never vouches for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sealed {
    /// A finished venv's marker.
    VenvMarker,
    /// A deployment record.
    Deployment,
    /// A running agent's record.
    Agent,
    /// An archive's identity on disk and its digest.
    ArchiveIdentity,
}

impl Sealed {
    fn label(self) -> &'static [u8] {
        match self {
            Sealed::VenvMarker => b"par venv marker v1",
            Sealed::Deployment => b"par deployment record v1",
            Sealed::Agent => b"par agent record v1",
            Sealed::ArchiveIdentity => b"par archive identity v1",
        }
    }
}

/// The root's key.
#[derive(Clone)]
pub(crate) struct Seal {
    key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(..)")
    }
}

impl Seal {
    /// Reads the root's key, making it first if the root has none. The file
    /// must be this user's, a regular file, closed to everyone else.
    pub(crate) fn open(root: &Dir) -> io::Result<Self> {
        match Self::read(root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Self::create(root)?;
                Self::read(root)
            }
            other => other,
        }
    }

    fn read(root: &Dir) -> io::Result<Self> {
        let file = open_file_nofollow(root, KEY_FILE)?;
        let meta = file.metadata()?;
        if meta.uid() != this_user() || meta.mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "`{KEY_FILE}` is owned by uid {} with mode {:04o}; it must be this user's and closed to others",
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            ));
        }
        let mut key = [0u8; KEY_BYTES];
        let mut read = Vec::with_capacity(KEY_BYTES + 1);
        file.take(KEY_BYTES as u64 + 1).read_to_end(&mut read)?;
        if read.len() != KEY_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("`{KEY_FILE}` is not a key"),
            ));
        }
        key.copy_from_slice(&read);
        Ok(Self { key })
    }

    /// Writes a new key under a temporary name and links it into place: of
    /// two loaders making one at once, one wins and both read the winner's.
    fn create(root: &Dir) -> io::Result<()> {
        let mut key = [0u8; KEY_BYTES];
        rustix::rand::getrandom(&mut key, rustix::rand::GetRandomFlags::empty())?;
        let temporary = crate::fs::temporary_name(KEY_FILE);
        let _ = root.remove_file(&temporary);
        let written = root
            .open_with(&temporary, OpenOptions::new().write(true).create_new(true).mode(0o600))
            .and_then(|file| {
                let mut file = file.into_std();
                file.write_all(&key)?;
                file.sync_all()
            })
            .and_then(|()| match root.hard_link(&temporary, root, KEY_FILE) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            });
        let _ = root.remove_file(&temporary);
        written
    }

    fn mac(&self, kind: Sealed, content: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(&(kind.label().len() as u64).to_le_bytes());
        mac.update(kind.label());
        mac.update(content);
        mac
    }

    /// The tag of `content` as `kind`, in hex.
    pub(crate) fn tag(&self, kind: Sealed, content: &[u8]) -> String {
        hex(&self.mac(kind, content).finalize().into_bytes())
    }

    /// Whether `tag` (hex) is `content`'s tag as `kind` (compared in constant time).
    pub(crate) fn verify(&self, kind: Sealed, content: &[u8], tag: &str) -> bool {
        let Some(bytes) = unhex(tag) else {
            return false;
        };
        self.mac(kind, content).verify_slice(&bytes).is_ok()
    }

    /// `content` with its tag on a first line: what a sealed file holds.
    pub(crate) fn seal(&self, kind: Sealed, content: &[u8]) -> Vec<u8> {
        let mut sealed = self.tag(kind, content).into_bytes();
        sealed.push(b'\n');
        sealed.extend_from_slice(content);
        sealed
    }

    /// The content of a sealed file, if its seal holds.
    pub(crate) fn unseal<'a>(&self, kind: Sealed, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let (tag, content) = sealed.split_at_checked(TAG_HEX)?;
        let content = content.strip_prefix(b"\n")?;
        self.verify(kind, content, std::str::from_utf8(tag).ok()?)
            .then_some(content)
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != TAG_HEX {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn root() -> (tempfile::TempDir, Dir) {
        let scratch = tempfile::tempdir().expect("dir");
        let dir = Dir::open_ambient_dir(scratch.path(), cap_std::ambient_authority()).expect("open");
        (scratch, dir)
    }

    #[test]
    fn a_seal_holds_only_for_the_same_content_kind_and_key() {
        let (_scratch, dir) = root();
        let seal = Seal::open(&dir).expect("made");
        let again = Seal::open(&dir).expect("read back");
        let sealed = seal.seal(Sealed::Deployment, b"{\"a\":1}");
        assert_eq!(again.unseal(Sealed::Deployment, &sealed), Some(&b"{\"a\":1}"[..]));
        assert_eq!(seal.unseal(Sealed::Agent, &sealed), None, "another kind");
        let mut forged = sealed.clone();
        *forged.last_mut().expect("content") = b'2';
        assert_eq!(seal.unseal(Sealed::Deployment, &forged), None, "changed content");
        assert_eq!(seal.unseal(Sealed::Deployment, b"{\"a\":1}"), None, "no seal");

        let (_other_scratch, other) = root();
        let other = Seal::open(&other).expect("another root's key");
        assert_eq!(other.unseal(Sealed::Deployment, &sealed), None, "another key");
    }

    #[test]
    fn a_key_others_can_read_or_that_is_a_symlink_is_refused() {
        let (scratch, dir) = root();
        Seal::open(&dir).expect("made");
        let key = scratch.path().join(KEY_FILE);
        assert_eq!(std::fs::metadata(&key).expect("key").mode() & 0o777, 0o600);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(Seal::open(&dir).is_err(), "a key others can read");

        std::fs::remove_file(&key).expect("remove");
        let outside = scratch.path().join("outside");
        std::fs::write(&outside, [7u8; KEY_BYTES]).expect("outside");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::symlink(&outside, &key).expect("plant");
        assert!(Seal::open(&dir).is_err(), "a key read through a symlink");
    }
}
