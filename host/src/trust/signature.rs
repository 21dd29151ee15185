//! Minisign signatures over a package's bytes (Ed25519 over the BLAKE2b-512
//! of the file, with a signed trusted comment): checking one against the
//! trusted keys, making one, and making a key pair. The format is
//! minisign's own, so the `minisign` tool signs and verifies the same files.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::types::trust::{KeyError, SignatureError, Signed, SigningKey, TrustedKey, key_id};

/// Most bytes read of a signature file: a minisign signature is about 300.
const MAX_SIGNATURE_BYTES: u64 = 8 * 1024;

/// Where a package's signature lives: beside it, `{archive}.minisig`, as
/// minisign names it.
pub(crate) fn signature_path(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// Checks that `bytes` (the package's bytes, read from its start) carry a
/// valid signature by one of `keys` in the file beside `archive`, whose
/// trusted comment names the package; what it vouches for.
pub(crate) fn verify(bytes: &File, archive: &Path, keys: &[TrustedKey]) -> Result<Signed, SignatureError> {
    let path = signature_path(archive);
    let invalid = |reason: String| SignatureError::Invalid {
        path: path.clone(),
        reason,
    };
    let text = match read_capped(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SignatureError::Missing {
                archive: archive.to_owned(),
                path,
            });
        }
        Err(e) => return Err(invalid(format!("cannot read it: {e}"))),
    };
    let signature =
        minisign::SignatureBox::from_string(&text).map_err(|e| invalid(format!("not a minisign signature: {e}")))?;
    if !signature.is_prehashed() {
        return Err(invalid(
            "a legacy signature (not prehashed); sign again with `par sign` or minisign 0.8 or later".into(),
        ));
    }
    let signer = key_id(signature.keynum());
    let key = keys
        .iter()
        .find(|key| key.0.keynum() == signature.keynum())
        .ok_or_else(|| invalid(format!("signed by key {signer}, which is not a trusted key")))?;
    let comment = signature
        .trusted_comment()
        .map_err(|_| invalid("it has no trusted comment; it must be `name=NAME version=VERSION`".into()))?;
    let (name, version) = claims(&comment).ok_or_else(|| {
        invalid(format!(
            "its trusted comment `{}` is not `name=NAME version=VERSION`",
            comment.escape_default()
        ))
    })?;
    minisign::verify(&key.0, &signature, Positional::new(bytes), true, false, false)
        .map_err(|e| invalid(format!("it does not hold for these bytes: {e}")))?;
    Ok(Signed {
        name,
        version,
        key_id: signer,
        signature: path,
    })
}

/// Signs `bytes` (a package's, from its start) with `key`, for the package
/// `name` at `version`; the signature file's text.
pub(crate) fn sign(bytes: &File, key: &SigningKey, name: &str, version: &str) -> Result<String, KeyError> {
    let comment = Signed::trusted_comment(name, version);
    minisign::sign(None, &key.0, Positional::new(bytes), Some(&comment), None)
        .map(minisign::SignatureBox::into_string)
        .map_err(|e| KeyError::new(None, format!("cannot sign: {e}")))
}

/// Writes `text` as the signature beside `archive`, replacing an older one
/// in one rename.
pub(crate) fn write_signature(archive: &Path, text: &str) -> io::Result<PathBuf> {
    let path = signature_path(archive);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(crate::fs::temporary_name(&name));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&temporary, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map(|()| path)
}

/// Makes a key pair: `{prefix}.key` (the secret key, unencrypted, mode 0600)
/// and `{prefix}.pub`, never over existing files; the public key.
pub fn generate_keys(prefix: &Path) -> Result<TrustedKey, KeyError> {
    let with = |suffix: &str| {
        let mut path = prefix.as_os_str().to_owned();
        path.push(suffix);
        PathBuf::from(path)
    };
    let (secret_path, public_path) = (with(".key"), with(".pub"));
    let pair = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| KeyError::new(None, format!("cannot make a key pair: {e}")))?;
    let secret = pair
        .sk
        .to_box(Some("par secret key"))
        .map_err(|e| KeyError::new(Some(&secret_path), e.to_string()))?
        .into_string();
    let public = TrustedKey(pair.pk);
    write_new(&secret_path, &secret, 0o600)
        .map_err(|e| KeyError::new(Some(&secret_path), format!("cannot write: {e}")))?;
    if let Err(e) = write_new(&public_path, &public.to_file_text(), 0o644) {
        let _ = std::fs::remove_file(&secret_path);
        return Err(KeyError::new(Some(&public_path), format!("cannot write: {e}")));
    }
    Ok(public)
}

fn write_new(path: &Path, text: &str, mode: u32) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?
        .write_all(text.as_bytes())
}

/// The name and version a trusted comment claims: exactly
/// `name=NAME version=VERSION`, both non-empty.
fn claims(comment: &str) -> Option<(String, String)> {
    let mut fields = comment.split(' ');
    let name = fields.next()?.strip_prefix("name=")?;
    let version = fields.next()?.strip_prefix("version=")?;
    (fields.next().is_none() && !name.is_empty() && !version.is_empty()).then(|| (name.to_owned(), version.to_owned()))
}

fn read_capped(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    File::open(path)?
        .take(MAX_SIGNATURE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SIGNATURE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {MAX_SIGNATURE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// Reads a file from its start through positional reads, leaving the
/// descriptor's own offset alone.
struct Positional<'a> {
    file: &'a File,
    at: u64,
}

impl<'a> Positional<'a> {
    fn new(file: &'a File) -> Self {
        Self { file, at: 0 }
    }
}

impl Read for Positional<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buffer, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl Seek for Positional<'_> {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        let target = match position {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::Current(delta) => self.at.checked_add_signed(delta),
            SeekFrom::End(delta) => self.file.metadata()?.len().checked_add_signed(delta),
        };
        self.at = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_name_and_version_make_a_trusted_comment() {
        assert_eq!(claims("name=agent version=1.0"), Some(("agent".into(), "1.0".into())));
        for refused in [
            "",
            "timestamp:1700000000\tfile:agent.apkg",
            "name=agent",
            "version=1.0 name=agent",
            "name= version=1.0",
            "name=agent version=",
            "name=agent version=1.0 extra=1",
            "name=agent  version=1.0",
        ] {
            assert_eq!(claims(refused), None, "{refused:?}");
        }
    }
}
