//! Entry points for the fuzz targets of the host's own readers of untrusted
//! input (what a registry answers), which run outside the sandbox: plain
//! data in and out, no generated or internal types. Not a stable API.

use crate::registry::{artifact, auth, reference};

/// One layer of a bundle's manifest as a pull reads it: member, media
/// type, digest, size.
pub type ManifestLayer = (String, String, String, u64);

/// Reads a registry manifest as a pull does: its layers and the SHA-256 of
/// the bundle they rebuild, or why it is refused.
pub fn read_bundle_manifest(bytes: &[u8]) -> Result<(Vec<ManifestLayer>, String), String> {
    let read = artifact::Artifact::read(bytes)?;
    let layers = read
        .layers
        .into_iter()
        .map(|layer| {
            let descriptor = layer.descriptor;
            (layer.member, descriptor.media_type, descriptor.digest, descriptor.size)
        })
        .collect();
    Ok((layers, read.bundle_sha256))
}

/// The manifest a push writes for `members` (name, size, SHA-256 hex) and
/// the bundle's SHA-256.
pub fn write_bundle_manifest(members: &[(String, u64, String)], bundle_sha256: &str) -> Vec<u8> {
    artifact::Artifact {
        layers: members
            .iter()
            .map(|(member, size, sha256)| artifact::layer(member, *size, sha256))
            .collect(),
        bundle_sha256: bundle_sha256.to_owned(),
    }
    .manifest()
}

/// A reference's parts as par reads them: registry, repository, tag,
/// digest, and the reference written out again.
pub type ReferenceParts = (String, String, Option<String>, Option<String>, String);

/// A registry reference as par reads one.
pub fn read_reference(text: &str) -> Result<ReferenceParts, String> {
    let parsed = reference::Reference::parse(text)?;
    let written = parsed.to_string();
    Ok((parsed.registry, parsed.repository, parsed.tag, parsed.digest, written))
}

/// A `WWW-Authenticate` challenge as par reads one.
pub fn read_challenge(text: &str) -> Option<(String, Vec<(String, String)>)> {
    auth::parse_challenge(text)
}
