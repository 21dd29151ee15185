//! How a bundle travels as an OCI 1.1 artifact: an image manifest of
//! par's `artifactType`, the empty config, and one layer per bundle member
//! in the bundle's own order (so shared wheels are shared blobs, and the
//! layers rebuild the bundle byte for byte), each named by its title
//! annotation; the bundle's signature, when it has one, as one more layer.

use std::collections::{BTreeMap, BTreeSet};

use par_rules::bundle::{self, BUILD_LOCK, EDITABLE_DIR, FILES_DIR, LOCK, PACKAGE, PACKAGE_SIGNATURE, SBOM};
use serde::{Deserialize, Serialize};

use crate::fs::is_sha256_hex;
use crate::registry::reference::is_sha256_digest;

/// The manifest's media type.
pub(crate) const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// What marks the artifact as a par bundle.
pub(crate) const ARTIFACT_TYPE: &str = "application/vnd.par.bundle.v1";
/// What marks the referrer carrying a bundle's signature.
pub(crate) const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.par.signature.v1+minisign";
/// The media type of the referrers API's answer.
pub(crate) const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The title of the layer holding the bundle's own signature.
pub(crate) const BUNDLE_SIGNATURE: &str = "bundle.minisig";
/// The annotation naming a layer's bundle member.
const TITLE: &str = "org.opencontainers.image.title";
/// The annotation holding the SHA-256 of the bundle the layers rebuild.
const BUNDLE_SHA256: &str = "vnd.par.bundle.sha256";
/// The empty config every artifact without one carries.
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";
const EMPTY_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// The largest manifest par reads.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The most layers a bundle's manifest may name.
pub(crate) const MAX_LAYERS: usize = 1024;
/// The largest bundle signature par takes.
pub(crate) const MAX_SIGNATURE_BYTES: u64 = 64 << 10;

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The image manifest of a bundle.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: String,
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// One layer: the member it holds, and its descriptor.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    /// The bundle member (or [`BUNDLE_SIGNATURE`]).
    pub member: String,
    /// Its descriptor.
    pub descriptor: Descriptor,
}

/// A bundle as the registry holds it.
#[derive(Debug)]
pub(crate) struct Artifact {
    /// Its layers, in the bundle's order, the signature last.
    pub layers: Vec<Layer>,
    /// The SHA-256 (hex) of the bundle the layers rebuild.
    pub bundle_sha256: String,
}

/// The media type of the layer holding `member`.
pub(crate) fn media_type(member: &str) -> &'static str {
    match member {
        PACKAGE => "application/vnd.par.apkg.v1+zip",
        PACKAGE_SIGNATURE | BUNDLE_SIGNATURE => "application/vnd.par.signature.v1+minisign",
        LOCK | BUILD_LOCK => "application/vnd.par.pylock.v1+toml",
        SBOM => "application/vnd.cyclonedx+json",
        _ if member.starts_with(EDITABLE_DIR) => "application/vnd.par.editable-wheel.v1",
        _ => "application/vnd.par.distribution.v1",
    }
}

/// The layer of `member` with `size` bytes and SHA-256 `sha256` (hex).
pub(crate) fn layer(member: &str, size: u64, sha256: &str) -> Layer {
    Layer {
        member: member.to_owned(),
        descriptor: Descriptor {
            media_type: media_type(member).to_owned(),
            digest: format!("sha256:{sha256}"),
            size,
            annotations: BTreeMap::from([(TITLE.to_owned(), member.to_owned())]),
        },
    }
}

/// The empty config blob and its descriptor.
pub(crate) fn empty_config() -> (&'static [u8], Descriptor) {
    let descriptor = Descriptor {
        media_type: EMPTY_MEDIA_TYPE.to_owned(),
        digest: EMPTY_DIGEST.to_owned(),
        size: EMPTY.len() as u64,
        annotations: BTreeMap::new(),
    };
    (EMPTY, descriptor)
}

impl Artifact {
    /// The manifest's bytes.
    pub(crate) fn manifest(&self) -> Vec<u8> {
        let manifest = Manifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE.to_owned(),
            artifact_type: Some(ARTIFACT_TYPE.to_owned()),
            config: empty_config().1,
            layers: self.layers.iter().map(|layer| layer.descriptor.clone()).collect(),
            subject: None,
            annotations: BTreeMap::from([(BUNDLE_SHA256.to_owned(), self.bundle_sha256.clone())]),
        };
        // A struct of strings and numbers always serializes.
        serde_json::to_vec(&manifest).unwrap_or_default()
    }

    /// Reads a manifest a registry gave, refusing what is not a bundle
    /// par wrote: another type, too many layers, a layer that is not a
    /// bundle member (or is one twice, or in another order than a bundle's),
    /// of another media type, or with a digest that is not SHA-256.
    pub(crate) fn read(bytes: &[u8]) -> Result<Self, String> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("not an image manifest: {e}"))?;
        if manifest.schema_version != 2 || manifest.media_type != MANIFEST_MEDIA_TYPE {
            return Err(format!(
                "media type `{}`, not an OCI image manifest",
                manifest.media_type
            ));
        }
        if manifest.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
            return Err(format!(
                "artifact type `{}`, not a par bundle (`{ARTIFACT_TYPE}`)",
                manifest.artifact_type.unwrap_or_default()
            ));
        }
        if manifest.layers.len() > MAX_LAYERS {
            return Err(format!("{} layers, more than {MAX_LAYERS}", manifest.layers.len()));
        }
        let bundle_sha256 = manifest
            .annotations
            .get(BUNDLE_SHA256)
            .filter(|hex| is_sha256_hex(hex))
            .ok_or_else(|| format!("no `{BUNDLE_SHA256}` annotation"))?
            .clone();
        let mut seen = BTreeSet::new();
        let mut layers = Vec::new();
        let mut last_rank = (0, String::new());
        for descriptor in manifest.layers {
            let member = descriptor.annotations.get(TITLE).cloned().unwrap_or_default();
            let named = |problem: &str| format!("layer `{member}` ({}): {problem}", descriptor.digest);
            let is_member = member == BUNDLE_SIGNATURE || bundle::is_member(&member, false);
            if !is_member {
                return Err(named("not a member a bundle may hold"));
            }
            if descriptor.media_type != media_type(&member) {
                return Err(named(&format!("media type `{}`", descriptor.media_type)));
            }
            if !is_sha256_digest(&descriptor.digest) {
                return Err(named("not a sha256 digest"));
            }
            if !seen.insert(member.clone()) {
                return Err(named("named twice"));
            }
            let rank = (order(&member), member.clone());
            if rank <= last_rank && !layers.is_empty() {
                return Err(named("out of a bundle's order"));
            }
            last_rank = rank;
            layers.push(Layer { member, descriptor });
        }
        if let Some(missing) = [PACKAGE, LOCK].into_iter().find(|member| !seen.contains(*member)) {
            return Err(format!("no `{missing}` layer"));
        }
        Ok(Self { layers, bundle_sha256 })
    }
}

/// The manifest of the referrer that carries a bundle's `signature` layer,
/// its subject the bundle's manifest (`subject_digest`, `subject_size`
/// bytes), for registries with the OCI 1.1 referrers API.
pub(crate) fn signature_referrer(signature: &Layer, subject_digest: &str, subject_size: u64) -> Vec<u8> {
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.to_owned(),
        artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.to_owned()),
        config: empty_config().1,
        layers: vec![signature.descriptor.clone()],
        subject: Some(Descriptor {
            media_type: MANIFEST_MEDIA_TYPE.to_owned(),
            digest: subject_digest.to_owned(),
            size: subject_size,
            annotations: BTreeMap::new(),
        }),
        annotations: BTreeMap::new(),
    };
    // A struct of strings and numbers always serializes.
    serde_json::to_vec(&manifest).unwrap_or_default()
}

/// Where `member` stands in a bundle: [`bundle::MEMBERS`] in their order,
/// then the distribution files (by name), then the editable wheel, then
/// the bundle's signature.
pub(crate) fn order(member: &str) -> usize {
    match bundle::MEMBERS.iter().position(|m| *m == member) {
        Some(at) => at,
        None if member.starts_with(FILES_DIR) => bundle::MEMBERS.len(),
        None if member.starts_with(EDITABLE_DIR) => bundle::MEMBERS.len() + 1,
        None => bundle::MEMBERS.len() + 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(members: &[&str]) -> Artifact {
        Artifact {
            layers: members.iter().map(|m| layer(m, 1, &"0".repeat(64))).collect(),
            bundle_sha256: "1".repeat(64),
        }
    }

    #[test]
    fn a_written_manifest_reads_back_and_every_other_shape_is_refused() {
        let editable = "editable/agent-1-0.editable-py3-none-any.whl";
        let good = artifact(&[
            PACKAGE,
            LOCK,
            SBOM,
            "wheels/a-1-py3-none-any.whl",
            editable,
            BUNDLE_SIGNATURE,
        ]);
        let read = Artifact::read(&good.manifest()).expect("our own manifest");
        assert_eq!(read.layers.len(), 6);
        assert_eq!(read.bundle_sha256, "1".repeat(64));

        let cases: [(&[&str], &str); 5] = [
            (&[PACKAGE, LOCK, "../etc/passwd"], "not a member"),
            (&[LOCK, PACKAGE], "order"),
            (&[PACKAGE, LOCK, editable, "wheels/a-1-py3-none-any.whl"], "order"),
            (
                &[
                    PACKAGE,
                    LOCK,
                    "wheels/a-1-py3-none-any.whl",
                    "wheels/a-1-py3-none-any.whl",
                ],
                "twice",
            ),
            (&[PACKAGE, SBOM], "no `pylock.toml`"),
        ];
        for (members, problem) in cases {
            let error = Artifact::read(&artifact(members).manifest()).expect_err(problem);
            assert!(error.contains(problem), "{error}");
        }
        let mut many = vec![PACKAGE, LOCK];
        let names: Vec<String> = (0..MAX_LAYERS)
            .map(|i| format!("wheels/a{i:05}-1-py3-none-any.whl"))
            .collect();
        many.extend(names.iter().map(String::as_str));
        let error = Artifact::read(&artifact(&many).manifest()).expect_err("too many");
        assert!(error.contains("layers, more than"), "{error}");

        let text = String::from_utf8(good.manifest()).expect("utf-8");
        for (from, to, problem) in [
            (ARTIFACT_TYPE, "application/vnd.other", "artifact type"),
            (
                "application/vnd.par.apkg.v1+zip",
                "application/octet-stream",
                "media type",
            ),
            ("sha256:0000", "md5:0000", "not a sha256 digest"),
        ] {
            let error = Artifact::read(text.replacen(from, to, 1).as_bytes()).expect_err(problem);
            assert!(error.contains(problem), "{error}");
        }
    }
}
