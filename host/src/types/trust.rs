//! Who vouches for a package: the keys a runtime trusts, in minisign's
//! format, what a signature by one of them says, and why one is refused.

use std::fmt;
use std::path::{Path, PathBuf};

/// Most bytes read of a key file: a minisign key file is about 100 (public)
/// or 250 (secret) bytes.
const MAX_KEY_BYTES: u64 = 4 * 1024;

/// A public key whose minisign signatures the loader accepts (see
/// `LoaderConfig::trusted_keys`): with any configured, only packages one
/// of them signed load.
#[derive(Clone)]
pub struct TrustedKey(pub(crate) minisign::PublicKey);

impl TrustedKey {
    /// Reads a minisign public key file (`minisign -G` and `par keygen`
    /// write one: an untrusted comment line, then the key in base64).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        Self::parse(&read_key_file(path)?).map_err(|error| error.in_file(path))
    }

    /// Parses a public key: a key file's text, or the base64 line alone
    /// (what `minisign -P` takes).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let key = match text.lines().count() {
            1 => minisign::PublicKey::from_base64(text),
            _ => minisign::PublicKeyBox::from_string(text).and_then(minisign::PublicKeyBox::into_public_key),
        };
        key.map(Self)
            .map_err(|e| KeyError::new(None, format!("not a minisign public key: {e}")))
    }

    /// The key's id as minisign prints it: 16 hexadecimal digits.
    pub fn id(&self) -> String {
        key_id(self.0.keynum())
    }

    /// The key file's text, as `minisign` writes it.
    pub fn to_file_text(&self) -> String {
        match self.0.to_box() {
            Ok(boxed) => boxed.into_string(),
            Err(_) => format!(
                "untrusted comment: minisign public key {}\n{}\n",
                self.id(),
                self.0.to_base64()
            ),
        }
    }
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedKey({})", self.id())
    }
}

impl PartialEq for TrustedKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bytes() == other.0.to_bytes()
    }
}

impl Eq for TrustedKey {}

/// A secret key to sign packages with (`par sign`): a minisign secret key
/// file, unencrypted or with its password.
pub struct SigningKey(pub(crate) minisign::SecretKey);

impl SigningKey {
    /// Reads a minisign secret key file; `password` opens an encrypted one.
    pub fn from_file(path: &Path, password: Option<String>) -> Result<Self, KeyError> {
        let text = read_key_file(path)?;
        let refused = |e: minisign::PError| KeyError::new(Some(path), format!("not a usable minisign secret key: {e}"));
        let boxed = minisign::SecretKeyBox::from_string(&text).map_err(refused)?;
        let key = match password {
            Some(password) => boxed.into_secret_key(Some(password)),
            None => boxed.into_unencrypted_secret_key(),
        };
        key.map(Self).map_err(refused)
    }

    /// The id of the key pair, as on its public key.
    pub fn id(&self) -> String {
        key_id(self.0.keynum())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.id())
    }
}

/// What a valid signature by a trusted key vouches for: the package's name
/// and version (minisign's trusted comment `name=NAME version=VERSION`),
/// checked against the manifest, and which key signed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signed {
    /// The package's name, as signed.
    pub name: String,
    /// The package's version, as signed.
    pub version: String,
    /// The id of the key that signed.
    pub key_id: String,
    /// The signature file.
    pub signature: PathBuf,
}

impl Signed {
    /// Refuses a manifest that names another package than the signature does.
    pub(crate) fn check(&self, name: &str, version: &str) -> Result<(), SignatureError> {
        if self.name == name && self.version == version {
            return Ok(());
        }
        Err(SignatureError::Invalid {
            path: self.signature.clone(),
            reason: format!(
                "it was made for `{}`, but the manifest says `{}`",
                Self::trusted_comment(&self.name, &self.version),
                Self::trusted_comment(name, version).escape_default()
            ),
        })
    }

    /// The trusted comment a package's signature carries.
    pub fn trusted_comment(name: &str, version: &str) -> String {
        format!("name={name} version={version}")
    }
}

/// A key file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", path.as_ref().map(|p| format!("`{}`: ", p.display())).unwrap_or_default())]
pub struct KeyError {
    /// The key file, when the key came from one.
    pub path: Option<PathBuf>,
    /// Why.
    pub reason: String,
}

impl KeyError {
    pub(crate) fn new(path: Option<&Path>, reason: String) -> Self {
        Self {
            path: path.map(Path::to_owned),
            reason,
        }
    }

    fn in_file(self, path: &Path) -> Self {
        Self {
            path: Some(path.to_owned()),
            ..self
        }
    }
}

/// Why a package's signature was refused: the package is refused before
/// the sandbox reads a byte of it (or, for a name or version the manifest
/// contradicts, before anything is published).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Trusted keys are configured and the package has no signature file.
    #[error(
        "`{}` is not signed: no `{}` beside it (only packages signed by a trusted key load; sign with `par sign` or `minisign -S -t 'name=NAME version=VERSION'`)",
        archive.display(),
        path.display()
    )]
    Missing {
        /// The package.
        archive: PathBuf,
        /// Where its signature was looked for.
        path: PathBuf,
    },
    /// The signature file is not a valid signature of these bytes by a
    /// trusted key, or does not name this package.
    #[error("signature `{}` refused: {reason}", path.display())]
    Invalid {
        /// The signature file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl SignatureError {
    /// A stable, kebab-case name for machine output.
    pub fn kind(&self) -> &'static str {
        match self {
            SignatureError::Missing { .. } => "signature-missing",
            SignatureError::Invalid { .. } => "signature-invalid",
        }
    }
}

/// A key id as minisign prints it: the 8-byte key number, little-endian, in hex.
pub(crate) fn key_id(keynum: &[u8]) -> String {
    let mut bytes = [0u8; 8];
    for (to, from) in bytes.iter_mut().zip(keynum) {
        *to = *from;
    }
    format!("{:016X}", u64::from_le_bytes(bytes))
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    use std::io::Read as _;
    let unreadable = |e: std::io::Error| KeyError::new(Some(path), format!("cannot read: {e}"));
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(MAX_KEY_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_KEY_BYTES {
        return Err(KeyError::new(Some(path), format!("longer than {MAX_KEY_BYTES} bytes")));
    }
    Ok(text)
}
