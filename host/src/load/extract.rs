//! `inspect` and `extract`: the sandbox reads the archive; only `extract`
//! publishes a tree, and neither touches a venv or an installer.

use std::path::Path;
use std::time::Instant;

use super::{Orchestrator, check_app_id, explain_disk_full};
use crate::fs::archive::Archive;
use crate::fs::publish::{PublishRequest, Published};
use crate::fs::staging::Staging;
use crate::sandbox::{Preopens, StagedPreopens};
use crate::trust::signature;
use crate::types::error::LoadError;
use crate::types::package::{ExtractedPackage, Manifest};
use crate::types::trust::{Signed, SigningKey};

impl Orchestrator {
    /// Validates the archive in the sandbox and returns its manifest; publishes nothing.
    pub(crate) fn inspect(&self, apkg: &Path) -> Result<Manifest, LoadError> {
        let archive = Archive::open(apkg)?;
        tracing::info!(apkg = %archive.path().display(), "Inspecting agent package");
        let staging = Staging::create_unhashed(&self.root, &archive)?;
        self.inspect_staged(&staging)
    }

    /// Checks the archive's signature against the trusted keys, then that
    /// its manifest (read in the sandbox) names the package it was signed
    /// for (see [`crate::PackageLoader::verify`]).
    pub(crate) fn verify(&self, apkg: &Path) -> Result<Signed, LoadError> {
        if self.config.trusted_keys.is_empty() {
            return Err(LoadError::InvalidInput {
                what: "trusted keys",
                detail: "none given: a signature is verified against at least one".into(),
            });
        }
        let archive = Archive::open(apkg)?;
        let staging = Staging::create_unhashed(&self.root, &archive)?;
        let signed = self.verify_signature(archive.path(), &staging.archive_copy()?)?;
        let manifest = self.inspect_staged(&staging)?;
        signed.check(&manifest.name, &manifest.version)?;
        Ok(signed)
    }

    /// Signs the archive for the package its manifest (read in the sandbox
    /// from the same bytes) names, and writes the signature beside it (see
    /// [`crate::PackageLoader::sign`]).
    pub(crate) fn sign(&self, apkg: &Path, key: &SigningKey) -> Result<Signed, LoadError> {
        let archive = Archive::open(apkg)?;
        let staging = Staging::create_unhashed(&self.root, &archive)?;
        let manifest = self.inspect_staged(&staging)?;
        let text = signature::sign(&staging.archive_copy()?, key, &manifest.name, &manifest.version).map_err(|e| {
            LoadError::InvalidInput {
                what: "signing key",
                detail: e.to_string(),
            }
        })?;
        let path = signature::write_signature(archive.path(), &text).map_err(LoadError::io(
            "cannot write the signature",
            signature::signature_path(archive.path()),
        ))?;
        tracing::info!(key = %key.id(), signature = %path.display(), "Package signed");
        Ok(Signed {
            name: manifest.name,
            version: manifest.version,
            key_id: key.id(),
            signature: path,
        })
    }

    /// Runs the guest's `inspect` on a staged copy.
    pub(super) fn inspect_staged(&self, staging: &Staging) -> Result<Manifest, LoadError> {
        let archive_dir = staging.archive_preopen();
        let preopens = Preopens {
            archive_dir: Some(&archive_dir),
            package_dir: None,
            package_writable: false,
        };
        self.sandbox.inspect(preopens, &self.archive_rules())
    }

    /// Extracts and publishes the tree, without a venv (see [`crate::PackageLoader::extract`]).
    pub(crate) fn extract(&self, apkg: &Path, app_id: Option<&str>) -> Result<ExtractedPackage, LoadError> {
        if let Some(app_id) = app_id {
            check_app_id(app_id)?;
        }
        let archive = Archive::open(apkg)?;
        self.check_free_space()?;
        let root = &self.root;
        tracing::info!(apkg = %archive.path().display(), "Loading agent package");
        let started = Instant::now();
        // An archive par has not hashed before is hashed on a thread of its
        // own, behind the copy and while the guest extracts it.
        let (staging, digest) = Staging::create(root, &archive, archive.known_digest(root))?;
        let signed = self.check_signature(archive.path(), &staging.archive_copy()?)?;
        let rules = self.archive_rules();
        let copies = staging.tree_writes(&rules.limits)?;
        let preopens = StagedPreopens::of(&staging);
        tracing::info!(staging = %staging.tree_path().display(), "Extracting package");
        let report = self.sandbox.extract(preopens.writable(), &rules, Some(copies));
        let digest = digest
            .wait()
            .map_err(LoadError::io("cannot hash the staged copy of", archive.path()));
        let report = report.map_err(|e| explain_disk_full(e, root.path(), false))?;
        let digest = digest?;
        archive.remember(root, &digest);
        let request = PublishRequest {
            app_id,
            digest: &digest,
            signed: signed.as_ref(),
            max_entries: self.config.limits.max_entries,
            manifest: report.manifest,
            executables: &report.executables,
        };
        let published = Published::publish(root, request, staging)?;
        tracing::info!(
            package_id = %published.package_id,
            path = %published.path.display(),
            files = report.files,
            bytes = report.bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Package extracted"
        );
        let package = ExtractedPackage {
            package_id: published.package_id.clone(),
            app_id: published.app_id.clone(),
            path: published.path.clone(),
            link: published.link.clone(),
            manifest: published.manifest.clone(),
            files: report.files,
            dirs: report.dirs,
            bytes: report.bytes,
            signed,
        };
        published.commit(root)?;
        Ok(package)
    }
}
