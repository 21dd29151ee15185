//! Publishing a package tree a guest extracted: what the guest says about
//! it (its manifest, its executables) is re-checked, the staging tree is
//! renamed into `{root}/trees/` under the app's and the package's locks
//! ([`PublishedTree`]), and the app's link is switched to it only on
//! [`Published::commit`]. The one path both `extract` and `load` publish by.

use std::path::PathBuf;

use cap_std::fs::Dir;

use crate::fs::lock::{AppLock, PackageLock};
use crate::fs::root::{Area, RootDir};
use crate::fs::staging::{PublishedTree, Staging, normalize_modes};
use crate::types::error::{GuestProtocolError, InstallCall, LoadError};
use crate::types::package::Manifest;
use crate::types::trust::Signed;

/// Longest executable path reported (Linux's own `PATH_MAX`).
pub(crate) const MAX_EXECUTABLE_PATH_BYTES: usize = 4096;

/// The published package: its tree is in place, but the app's link is
/// switched to it only by [`Published::commit`]; dropped uncommitted, the
/// tree is removed and the previous deployment is untouched.
#[derive(Debug)]
pub(crate) struct Published {
    /// `{name}@{version}`.
    pub package_id: String,
    /// The app id it was published under.
    pub app_id: String,
    /// `{root}/packages/{app_id}@{version}`: the app's link, switched on commit.
    pub link: PathBuf,
    /// The link's name, `{app_id}@{version}`.
    link_name: String,
    /// `{root}/trees/{app_id}@{version}.{digest}`: the tree this load's venv imports.
    pub path: PathBuf,
    /// The re-checked manifest.
    pub manifest: Manifest,
    tree: PublishedTree,
    /// Held until the load has recorded what it did: no `gc` or `remove`
    /// sees the app's deployment half made, and no other load replaces this
    /// package meanwhile.
    locks: Held,
}

/// The app's lock (shared) and the package's lock, held by a load from
/// publishing until its record is written.
#[derive(Debug)]
pub(crate) struct Held {
    _app: AppLock,
    _package: PackageLock,
}

impl Published {
    /// Re-checks what the guest extracted (manifest, executables, the tree
    /// itself) and renames the staging tree into place under the package lock:
    /// the one path both `extract` and `load` publish by.
    pub(crate) fn publish(root: &RootDir, request: PublishRequest<'_>, staging: Staging) -> Result<Self, LoadError> {
        let PublishRequest {
            app_id,
            digest,
            signed,
            max_entries,
            manifest,
            executables,
        } = request;
        if let Some(signed) = signed {
            signed.check(&manifest.name, &manifest.version)?;
        }
        GuestProtocolError::check_size(
            InstallCall::Publish,
            "executables",
            executables.len(),
            max_entries as usize,
        )?;
        for path in executables {
            GuestProtocolError::check_size(
                InstallCall::Publish,
                "an executable path",
                path.len(),
                MAX_EXECUTABLE_PATH_BYTES,
            )?;
        }
        normalize_modes(staging.tree(), executables)?;
        let app_id = app_id.unwrap_or(&manifest.name).to_owned();
        let dir_name = format!("{app_id}@{}", manifest.version);
        let tree_name = format!("{dir_name}.{}", &digest[..digest.len().min(16)]);
        let link = root.join(Area::Packages, &dir_name);
        let path = root.join(Area::Trees, &tree_name);
        let locks = Held {
            _app: AppLock::shared(root, &app_id)?,
            _package: PackageLock::acquire(root, &dir_name)?,
        };
        let tree = staging.publish(root, &tree_name)?;
        Ok(Self {
            package_id: format!("{}@{}", manifest.name, manifest.version),
            app_id,
            link,
            link_name: dir_name,
            path,
            manifest,
            tree,
            locks,
        })
    }

    /// A handle on the published tree.
    pub(crate) fn open_tree(&self) -> Result<Dir, LoadError> {
        self.tree.open().map_err(LoadError::io("cannot open", &self.path))
    }

    /// Makes this the app's current deployment (see [`PublishedTree::commit`]);
    /// the locks stay held until the caller drops them.
    pub(crate) fn commit(self, root: &RootDir) -> Result<Held, LoadError> {
        self.tree.commit(root, &self.link_name, &self.path)?;
        Ok(self.locks)
    }
}

/// What the guest asks to publish, and what the host checks it against.
#[derive(Debug)]
pub(crate) struct PublishRequest<'a> {
    /// App id chosen by the caller, if any (else the manifest name).
    pub app_id: Option<&'a str>,
    /// The archive's SHA-256.
    pub digest: &'a str,
    /// What the archive's signature vouches for, when one was required:
    /// the manifest must name the same package.
    pub signed: Option<&'a Signed>,
    /// Most entries the archive may list.
    pub max_entries: u32,
    /// The manifest, checked by the host.
    pub manifest: Manifest,
    /// Files the guest says the archive marks executable.
    pub executables: &'a [String],
}
