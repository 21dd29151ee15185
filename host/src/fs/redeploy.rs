//! Recognising a redeploy of an unchanged package, so it costs next to nothing.
//!
//! After a successful load the host records, outside anything a package or
//! an installer step can write (`{root}/deployments/`), and sealed with the
//! root's key (`crate::fs::seal`), what it did: the
//! APKG's SHA-256, a fingerprint of every setting that shapes a load, the
//! resulting [`AgentPackage`], the venv's key, and the size, mtime and mode
//! of every entry of the published tree. A later load of the same bytes with
//! the same settings, whose tree is exactly as recorded and whose venv still
//! carries that key, is answered from the record: no sandbox run, no
//! extraction, no installer. Anything else (a changed setting, a file added,
//! touched or removed, a venv rebuilt) takes the full path, which rewrites
//! the record.

use std::io::Read;

use std::time::SystemTime;

use cap_std::fs::{Dir, MetadataExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fs::hex;
use crate::fs::root::{Area, RootDir, open_dir_nofollow, open_file_nofollow};
use crate::fs::seal::Sealed;
use crate::fs::venv;
use crate::types::package::AgentPackage;

/// Largest record read back: far above any real tree listing.
const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

/// What a successful load left behind, as the host saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Deployment {
    /// Fingerprint of the settings the load ran with.
    settings: String,
    /// The venv key its marker holds.
    venv_key: String,
    /// The result the load returned.
    package: AgentPackage,
    /// Every entry of the published tree, sorted by path.
    tree: Vec<TreeEntry>,
}

/// One file or directory of a published tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TreeEntry {
    path: String,
    size: u64,
    mtime_ns: i128,
    mode: u32,
}

/// A fingerprint of the settings that shape a load, from their debug form.
pub(crate) fn settings_fingerprint(parts: &[&dyn std::fmt::Debug]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        let text = format!("{part:?}");
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    hex(&hasher.finalize())
}

/// `{digest}.{app_id or _}.json`, in `{root}/deployments/`.
fn record_name(digest: &str, app_id: Option<&str>) -> String {
    format!("{digest}.{}.json", app_id.unwrap_or("_"))
}

impl Deployment {
    /// Describes a load that just succeeded; reads the published tree (through
    /// its handle) as it is now.
    pub(crate) fn new(settings: String, venv_key: String, package: AgentPackage, tree: &Dir) -> std::io::Result<Self> {
        let tree = list_tree(tree)?;
        Ok(Self {
            settings,
            venv_key,
            package,
            tree,
        })
    }

    /// The app the load was for.
    pub(crate) fn app_id(&self) -> &str {
        &self.package.app_id
    }

    /// The result the load returned.
    pub(crate) fn package(&self) -> &AgentPackage {
        &self.package
    }

    /// Every record under the root, each with its file name and when it was
    /// last loaded (the record's mtime: written by a full load, touched by an
    /// unchanged one). Records that cannot be read are listed as `None`.
    pub(crate) fn all(root: &RootDir) -> Vec<(String, Option<Self>, SystemTime)> {
        let deployments = root.dir(Area::Deployments);
        let Ok(entries) = deployments.entries() else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_str()?.to_owned();
                if name.starts_with('.') || !name.ends_with(".json") {
                    return None;
                }
                let loaded = entry.metadata().and_then(|m| m.modified()).ok()?.into_std();
                Some((name.clone(), read_record(root, &name), loaded))
            })
            .collect()
    }

    /// Marks the record as loaded now: an unchanged redeploy counts as a use.
    pub(crate) fn touch(root: &RootDir, digest: &str, app_id: Option<&str>) -> std::io::Result<()> {
        let file = open_file_nofollow(root.dir(Area::Deployments), &record_name(digest, app_id))?;
        file.set_modified(SystemTime::now())
    }

    /// Writes the record (atomically: a temporary file renamed into place).
    pub(crate) fn save(&self, root: &RootDir, digest: &str, app_id: Option<&str>) -> std::io::Result<()> {
        let deployments = root.dir(Area::Deployments);
        let name = record_name(digest, app_id);
        let temporary = crate::fs::temporary_name(&name);
        let written = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| deployments.write(&temporary, root.seal().seal(Sealed::Deployment, &bytes)))
            .and_then(|()| deployments.rename(&temporary, deployments, &name));
        if written.is_err() {
            let _ = deployments.remove_file(&temporary);
        }
        written
    }

    /// The record of an earlier load of this archive under this app id, if any.
    pub(crate) fn find(root: &RootDir, digest: &str, app_id: Option<&str>) -> Option<Self> {
        read_record(root, &record_name(digest, app_id))
    }

    /// The published package's link name, `{app_id}@{version}`: what to lock.
    pub(crate) fn package_dir_name(&self) -> Option<String> {
        Some(self.package.link.file_name()?.to_str()?.to_owned())
    }

    /// The recorded result, if the settings are the same and the tree and
    /// venv under `root` are exactly as that load left them.
    pub(crate) fn unchanged(self, root: &RootDir, settings: &str) -> Option<AgentPackage> {
        let tree = root.name_in(&self.package.path, Area::Trees)?;
        let venv_name = root.name_in(&self.package.venv_path, Area::Venvs)?;
        root.name_in(&self.package.link, Area::Packages)?;
        let unchanged = self.settings == settings
            && open_dir_nofollow(root.dir(Area::Venvs), venv_name)
                .is_ok_and(|venv| venv::is_ready(&venv, &venv::sealed_marker(root.seal(), venv_name, &self.venv_key)))
            && open_dir_nofollow(root.dir(Area::Trees), tree)
                .and_then(|tree| list_tree(&tree))
                .is_ok_and(|tree| tree == self.tree);
        unchanged.then_some(self.package)
    }
}

/// The record `name` under the root, if it is a regular file whose seal
/// holds and that parses.
fn read_record(root: &RootDir, name: &str) -> Option<Deployment> {
    let mut text = Vec::new();
    open_file_nofollow(root.dir(Area::Deployments), name)
        .ok()?
        .take(MAX_RECORD_BYTES)
        .read_to_end(&mut text)
        .ok()?;
    serde_json::from_slice(root.seal().unseal(Sealed::Deployment, &text)?).ok()
}

/// Every entry of the tree (never following symlinks), sorted by path.
fn list_tree(tree: &Dir) -> std::io::Result<Vec<TreeEntry>> {
    let mut entries = Vec::new();
    let mut pending = vec![(tree.try_clone()?, String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in dir.entries()? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata()?;
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            entries.push(TreeEntry {
                path: path.clone(),
                size: if meta.is_dir() { 0 } else { meta.len() },
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                mode: meta.mode(),
            });
            if meta.is_dir() {
                pending.push((open_dir_nofollow(&dir, &name)?, path));
            }
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn list(path: &std::path::Path) -> std::io::Result<Vec<TreeEntry>> {
        list_tree(&Dir::open_ambient_dir(path, cap_std::ambient_authority())?)
    }

    #[test]
    fn the_tree_listing_sees_every_change() {
        let dir = tempfile::tempdir().expect("dir");
        fs::create_dir(dir.path().join("core")).expect("mkdir");
        fs::write(dir.path().join("core/a.py"), "a = 1\n").expect("write");
        let before = list(dir.path()).expect("list");
        assert_eq!(before.len(), 2);
        assert_eq!(list(dir.path()).expect("list"), before, "listing is stable");

        fs::write(dir.path().join("core/b.py"), "").expect("add");
        assert_ne!(list(dir.path()).expect("list"), before, "an added file");
        fs::remove_file(dir.path().join("core/b.py")).expect("remove");

        let file = fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("core/a.py"))
            .expect("open");
        file.set_modified(std::time::SystemTime::UNIX_EPOCH).expect("touch");
        assert_ne!(list(dir.path()).expect("list"), before, "same size, new mtime");

        std::os::unix::fs::symlink("/etc", dir.path().join("link")).expect("symlink");
        assert!(
            list(dir.path()).expect("list").iter().any(|e| e.path == "link"),
            "a symlink is listed, not followed"
        );
    }

    #[test]
    fn settings_fingerprint_changes_with_any_part() {
        let a = settings_fingerprint(&[&1, &"pip"]);
        assert_eq!(a, settings_fingerprint(&[&1, &"pip"]));
        assert_ne!(a, settings_fingerprint(&[&1, &"uv"]));
        assert_ne!(a, settings_fingerprint(&[&"1pip"]));
    }
}
