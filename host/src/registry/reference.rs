//! A registry reference, `REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`, parsed
//! strictly: the registry is always named (no default registry a typo could
//! reach; a host has a `.` or a port, or is `localhost`, as Docker reads
//! one), the repository and tag follow the distribution spec's grammar.

use std::fmt;

use crate::fs::{hex, is_sha256_hex};

/// The scheme that marks a reference where a package path could stand.
pub(crate) const SCHEME: &str = "oci://";

/// A parsed registry reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// `HOST[:PORT]`.
    pub registry: String,
    /// The repository's path.
    pub repository: String,
    /// The tag, when given.
    pub tag: Option<String>,
    /// The manifest digest (`sha256:…`), when given.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `text` (with or without `oci://`); the error says what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.strip_prefix(SCHEME).unwrap_or(text);
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                if !is_sha256_digest(digest) {
                    return Err(format!(
                        "`{digest}` is not a digest (sha256: and 64 lowercase hex digits)"
                    ));
                }
                (rest, Some(digest.to_owned()))
            }
            None => (text, None),
        };
        let (registry, path) = rest
            .split_once('/')
            .ok_or("no registry: write REGISTRY/REPOSITORY:TAG")?;
        // Docker's rule: a first component without `.` or `:` (other than
        // `localhost`) is a path, not a host; par has no default registry.
        if !(registry.contains(['.', ':']) || registry == "localhost") {
            return Err(format!(
                "no registry (`{registry}` is not a host): write REGISTRY/REPOSITORY:TAG"
            ));
        }
        if !registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        {
            return Err(format!("`{registry}` is not a registry host"));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) => (repository, Some(tag)),
            None => (path, None),
        };
        if !is_repository(repository) {
            return Err(format!(
                "`{repository}` is not a repository (lowercase components of letters and digits, joined by `.`, `_`, `-` and `/`)"
            ));
        }
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return Err(format!("`{tag}` is not a tag"));
        }
        if tag.is_none() && digest.is_none() {
            return Err("no tag or digest: write REGISTRY/REPOSITORY:TAG or @sha256:…".into());
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// What the registry's manifest endpoint takes: the digest if known, else the tag.
    pub(crate) fn manifest_reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or_default()
    }

    /// The same repository at `digest`.
    pub(crate) fn at_digest(&self, digest: &str) -> Self {
        Self {
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether `text` is `sha256:` and 64 lowercase hex digits.
pub(crate) fn is_sha256_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(is_sha256_hex)
}

/// The digest the distribution spec names `bytes` by: `sha256:` and their SHA-256 in hex.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes)))
}

/// The distribution spec's repository name: `/`-joined components of
/// lowercase letters and digits, separated inside by `.`, `_`, `__` or `-`s.
fn is_repository(text: &str) -> bool {
    text.len() <= 255
        && text.split('/').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
                && !component.contains("..")
        })
}

/// The distribution spec's tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_tag(text: &str) -> bool {
    text.len() <= 128
        && text.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_registry_and_a_tag_or_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let parsed = Reference::parse("oci://127.0.0.1:5000/agents/web:1.0").expect("a tag");
        assert_eq!(
            (
                parsed.registry.as_str(),
                parsed.repository.as_str(),
                parsed.tag.as_deref()
            ),
            ("127.0.0.1:5000", "agents/web", Some("1.0"))
        );
        assert_eq!(parsed.to_string(), "127.0.0.1:5000/agents/web:1.0");
        let pinned = Reference::parse(&format!("ghcr.io/acme/web@{digest}")).expect("a digest");
        assert_eq!(pinned.manifest_reference(), digest);
        for bad in [
            "web:1.0",
            "agents/web:1",
            "ghcr.io/web",
            "ghcr.io/Web:1",
            "ghcr.io/a//b:1",
            "ghcr.io/a/../b:1",
            "ghcr.io/web:-x",
            "ghcr.io/web@sha256:ABC",
            "gh cr.io/web:1",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
