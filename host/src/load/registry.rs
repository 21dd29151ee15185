//! Bundles through OCI registries. `par push` unpacks the bundle in the
//! sandbox (as a load does), makes each member a blob named by its SHA-256,
//! uploads only the blobs the registry lacks, and puts the manifest at the
//! tag, after checking that the layers rebuild the bundle byte for byte.
//! `par pull` reads the manifest within its caps, then writes each blob,
//! checked by size and digest, into a bundle beside the destination, and
//! renames it into place only once the whole bundle has the digest the
//! manifest names; the bundle's signature, if pushed, is written beside it.

use std::io::{Read as _, Seek as _};
use std::path::Path;

use par_rules::bundle::{EDITABLE_DIR, FILES_DIR, MEMBERS};

use super::Orchestrator;
use super::bundle::refused;
use super::deploy::{Staged, StagedArchive};
use crate::fs::archive::Archive;
use crate::fs::blob_cache::BlobCache;
use crate::fs::bundle::{BundleWriter, sha256_of};
use crate::fs::root::{open_dir_nofollow, open_file_nofollow};
use crate::fs::staging::Scratch;
use crate::registry::artifact::{self, Artifact, BUNDLE_SIGNATURE, Layer, MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES};
use crate::registry::client::Client;
use crate::registry::reference::{Reference, SCHEME};
use crate::trust::signature::signature_path;
use crate::types::error::LoadError;
use crate::types::package::{AgentPackage, RegistrySource};
use crate::types::registry::{Pulled, Pushed, RegistryError};

impl Orchestrator {
    /// Pushes the bundle `parb` to `target` (`REGISTRY/REPO:TAG`).
    pub(crate) fn push(&self, parb: &Path, target: &str) -> Result<Pushed, LoadError> {
        let config = &self.config.registry;
        let reference = parse(target)?;
        let Some(tag) = reference.tag.clone().filter(|_| reference.digest.is_none()) else {
            return Err(RegistryError::Reference {
                reference: target.to_owned(),
                problem: "a push names a tag, not a digest".into(),
            }
            .into());
        };
        let archive = Archive::open(parb)?;
        let StagedArchive { staging, .. } = match self.stage(&archive, None)? {
            Staged::Fresh(staged) => staged,
            Staged::Unchanged(_) => return Err(LoadError::Internal("a push found a recorded load".into())),
        };
        let unpacked = self.unbundle(parb, &staging)?;
        let tree = staging.tree();
        let mut members: Vec<String> = MEMBERS
            .iter()
            .filter(|member| tree.symlink_metadata(member).is_ok())
            .map(|member| (*member).to_owned())
            .collect();
        members.extend(unpacked.files.keys().map(|name| format!("{FILES_DIR}/{name}")));
        members.extend(
            unpacked
                .editable
                .iter()
                .map(|(name, _)| format!("{EDITABLE_DIR}/{name}")),
        );
        let files_dir = match unpacked.files.is_empty() {
            true => None,
            false => Some(
                open_dir_nofollow(tree, FILES_DIR)
                    .map_err(LoadError::io("cannot read the unpacked bundle", &unpacked.files_dir))?,
            ),
        };
        let open = |member: &str| {
            let opened = match (
                member.strip_prefix(FILES_DIR).and_then(|m| m.strip_prefix('/')),
                &files_dir,
            ) {
                (Some(name), Some(dir)) => open_file_nofollow(dir, name),
                _ => match member.split_once('/') {
                    Some((dir, name)) => open_dir_nofollow(tree, dir).and_then(|dir| open_file_nofollow(&dir, name)),
                    None => open_file_nofollow(tree, member),
                },
            };
            opened.map_err(LoadError::io(
                "cannot read the unpacked bundle",
                staging.tree_path().join(member),
            ))
        };
        let mut layers = Vec::new();
        let mut files = Vec::new();
        for member in &members {
            let unreadable = || LoadError::io("cannot read", staging.tree_path().join(member));
            let file = open(member)?;
            let size = file.metadata().map_err(unreadable())?.len();
            // The distribution files were hashed as the bundle was read.
            let known = member
                .strip_prefix(FILES_DIR)
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|name| unpacked.files.get(name));
            let sha256 = match known {
                Some(sha256) => sha256.clone(),
                None => sha256_of(file.try_clone().map_err(unreadable())?).map_err(unreadable())?,
            };
            layers.push(artifact::layer(member, size, &sha256));
            files.push(file);
        }
        let bundle_sha256 =
            sha256_of(std::fs::File::open(parb).map_err(LoadError::io("cannot read the bundle", parb))?)
                .map_err(LoadError::io("cannot read the bundle", parb))?;
        // The layers must rebuild these very bytes, or a pull could not
        // give back what was signed.
        let rebuilt = tempfile::Builder::new()
            .prefix(".push-")
            .suffix(".parb")
            .tempfile_in(staging.tree_path())
            .map_err(LoadError::io("cannot write under", staging.tree_path()))?;
        let mut writer = BundleWriter::create(rebuilt.path()).map_err(LoadError::io("cannot write", rebuilt.path()))?;
        for (layer, file) in layers.iter().zip(&files) {
            writer
                .add_with(&layer.member, layer.descriptor.size, |out| {
                    let mut file = file.try_clone()?;
                    file.rewind()?;
                    std::io::copy(&mut file, out).map(drop)
                })
                .map_err(LoadError::io("cannot write", rebuilt.path()))?;
        }
        writer.finish().map_err(LoadError::io("cannot write", rebuilt.path()))?;
        let rebuilt_sha256 =
            sha256_of(std::fs::File::open(rebuilt.path()).map_err(LoadError::io("cannot read", rebuilt.path()))?)
                .map_err(LoadError::io("cannot read", rebuilt.path()))?;
        if rebuilt_sha256 != bundle_sha256 {
            return Err(refused(
                parb,
                ".".into(),
                "its members are not laid out as `par bundle` writes them (make it again with `par bundle`)".into(),
            ));
        }
        let signature = signature_path(parb);
        let mut signature_file = None;
        if let Ok(file) = std::fs::File::open(&signature) {
            let mut text = Vec::new();
            file.take(MAX_SIGNATURE_BYTES + 1)
                .read_to_end(&mut text)
                .map_err(LoadError::io("cannot read", &signature))?;
            if text.len() as u64 > MAX_SIGNATURE_BYTES {
                return Err(refused(
                    parb,
                    BUNDLE_SIGNATURE.into(),
                    format!("`{}` is larger than {MAX_SIGNATURE_BYTES} bytes", signature.display()),
                ));
            }
            let sha256 = crate::fs::hex(&<sha2::Sha256 as sha2::Digest>::digest(&text));
            layers.push(artifact::layer(BUNDLE_SIGNATURE, text.len() as u64, &sha256));
            signature_file = Some(signature.clone());
        }
        let artifact = Artifact { layers, bundle_sha256 };
        let mut client = Client::new(&reference, config, true)?;
        let mut uploaded = 0;
        let (empty, config_descriptor) = artifact::empty_config();
        let mut blobs: Vec<(&str, u64, std::fs::File)> = Vec::new();
        for (layer, mut file) in artifact.layers.iter().zip(files) {
            file.rewind()
                .map_err(LoadError::io("cannot read", staging.tree_path().join(&layer.member)))?;
            blobs.push((&layer.descriptor.digest, layer.descriptor.size, file));
        }
        if let (Some(path), Some(layer)) = (&signature_file, artifact.layers.last()) {
            blobs.push((
                &layer.descriptor.digest,
                layer.descriptor.size,
                std::fs::File::open(path).map_err(LoadError::io("cannot read", path))?,
            ));
        }
        let empty_file = tempfile::tempfile_in(staging.tree_path())
            .map_err(LoadError::io("cannot write under", staging.tree_path()))?;
        std::io::Write::write_all(&mut &empty_file, empty)
            .map_err(LoadError::io("cannot write under", staging.tree_path()))?;
        (&empty_file)
            .rewind()
            .map_err(LoadError::io("cannot write under", staging.tree_path()))?;
        blobs.push((&config_descriptor.digest, config_descriptor.size, empty_file));
        let total = blobs.len();
        let mut pushed = std::collections::BTreeSet::new();
        for (digest, size, file) in blobs {
            if !pushed.insert(digest) || client.has_blob(digest)? {
                continue;
            }
            client.push_blob(digest, size, file)?;
            uploaded += 1;
        }
        let manifest = artifact.manifest();
        let manifest_size = manifest.len() as u64;
        let digest = client.push_manifest(Some(&tag), artifact::MANIFEST_MEDIA_TYPE, manifest)?;
        // Where the registry has the referrers API, the signature is also
        // a referrer of the bundle, for tools that look for it there.
        let signature_layer = artifact.layers.last().filter(|layer| layer.member == BUNDLE_SIGNATURE);
        let signature_referrer = match signature_layer {
            Some(layer) if client.has_referrers_api(&digest)? => {
                let referrer = artifact::signature_referrer(layer, &digest, manifest_size);
                Some(client.push_manifest(None, artifact::MANIFEST_MEDIA_TYPE, referrer)?)
            }
            _ => None,
        };
        tracing::info!(reference = %reference, %digest, uploaded, blobs = total, "Bundle pushed");
        Ok(Pushed {
            reference: reference.at_digest(&digest).to_string(),
            digest,
            uploaded,
            blobs: total,
            signature_referrer,
        })
    }

    /// Pulls the bundle at `source` (`REGISTRY/REPO:TAG` or `@sha256:…`)
    /// into `output`.
    pub(crate) fn pull(&self, source: &str, output: &Path) -> Result<Pulled, LoadError> {
        let config = &self.config.registry;
        if !par_rules::bundle::is_bundle_path(output) {
            return Err(LoadError::InvalidInput {
                what: "bundle path",
                detail: format!("`{}` must end in `.{}`", output.display(), par_rules::bundle::EXTENSION),
            });
        }
        let reference = parse(source)?;
        let mut client = Client::new(&reference, config, false)?;
        let (manifest, digest) = client.pull_manifest(artifact::MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES)?;
        let artifact = Artifact::read(&manifest).map_err(|problem| RegistryError::Manifest {
            reference: reference.to_string(),
            problem,
        })?;
        let blobs = match &self.config.component_cache {
            Some(cache) => {
                Some(BlobCache::open(cache).map_err(LoadError::io("cannot open the blob cache under", cache))?)
            }
            None => None,
        };
        let mut writer = BundleWriter::create(output).map_err(LoadError::io("cannot write the bundle", output))?;
        let mut signature: Option<Vec<u8>> = None;
        for Layer { member, descriptor } in &artifact.layers {
            if member == BUNDLE_SIGNATURE {
                if descriptor.size > MAX_SIGNATURE_BYTES {
                    let problem = format!("larger than {MAX_SIGNATURE_BYTES} bytes");
                    return Err(RegistryError::blob(&reference, member, &descriptor.digest, problem).into());
                }
                let mut text = Vec::new();
                client.pull_blob(member, &descriptor.digest, descriptor.size, &mut text)?;
                signature = Some(text);
                continue;
            }
            let mut fetch = |out: &mut dyn std::io::Write| {
                client
                    .pull_blob(member, &descriptor.digest, descriptor.size, out)
                    .map_err(Pulling::Registry)
            };
            let pulled = match &blobs {
                Some(blobs) => {
                    let hex = descriptor.digest.trim_start_matches("sha256:");
                    blobs.get_or_fetch(hex, descriptor.size, fetch).and_then(|mut cached| {
                        writer.add_with(member, descriptor.size, |out| {
                            std::io::copy(&mut cached, out).map(drop).map_err(Pulling::from)
                        })
                    })
                }
                None => writer.add_with(member, descriptor.size, &mut fetch),
            };
            match pulled {
                Ok(()) => {}
                Err(Pulling::Registry(error)) => return Err(error.into()),
                Err(Pulling::Write(error)) => return Err(LoadError::io("cannot write the bundle", output)(error)),
            }
        }
        let written = writer
            .into_temporary()
            .map_err(LoadError::io("cannot write the bundle", output))?;
        let sha256 = sha256_of(written.reopen().map_err(LoadError::io("cannot read", written.path()))?)
            .map_err(LoadError::io("cannot read", written.path()))?;
        if sha256 != artifact.bundle_sha256 {
            return Err(RegistryError::Manifest {
                reference: reference.to_string(),
                problem: format!(
                    "its layers make a bundle of SHA-256 {sha256}, not the {} it names",
                    artifact.bundle_sha256
                ),
            }
            .into());
        }
        let signature_file = signature_path(output);
        match &signature {
            Some(text) => std::fs::write(&signature_file, text)
                .map_err(LoadError::io("cannot write the signature", &signature_file))?,
            None => match std::fs::remove_file(&signature_file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(LoadError::io("cannot remove the old signature", &signature_file)(e));
                }
                _ => {}
            },
        }
        written
            .persist(output)
            .map_err(|e| LoadError::io("cannot write the bundle", output)(e.error))?;
        tracing::info!(reference = %reference, %digest, bundle = %output.display(), "Bundle pulled");
        Ok(Pulled {
            path: output.to_owned(),
            digest,
            signature: signature.map(|_| signature_file),
        })
    }
}

impl Orchestrator {
    /// Loads the bundle at the registry reference `source` (`oci://…`):
    /// pulled into a scratch directory under the root, blobs from the
    /// cache where it has them, then loaded as any bundle, offline; the
    /// package names the reference and the digest it resolved to.
    pub(super) fn load_from_registry(&self, source: &str, app_id: Option<&str>) -> Result<AgentPackage, LoadError> {
        let scratch = Scratch::create(&self.root, "pull-")?;
        let parb = scratch.path().join(format!("bundle.{}", par_rules::bundle::EXTENSION));
        let pulled = self.pull(source, &parb)?;
        let origin = RegistrySource {
            reference: source.trim_start_matches(SCHEME).to_owned(),
            digest: pulled.digest,
        };
        let mut package = self.load_bundle(&parb, app_id, Some(origin.clone()))?;
        // An unchanged redeploy answers with the record of an earlier load
        // of the same bundle, which may have come by another way.
        package.source = Some(origin);
        Ok(package)
    }
}

/// A failed pull of one blob into the bundle.
enum Pulling {
    Registry(RegistryError),
    Write(std::io::Error),
}

impl From<std::io::Error> for Pulling {
    fn from(error: std::io::Error) -> Self {
        Pulling::Write(error)
    }
}

fn parse(text: &str) -> Result<Reference, LoadError> {
    Reference::parse(text).map_err(|problem| {
        RegistryError::Reference {
            reference: text.to_owned(),
            problem,
        }
        .into()
    })
}
