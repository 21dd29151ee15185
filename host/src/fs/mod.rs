//! Files under the root, all through handles opened once (`root`): staging
//! and publishing trees (`staging`, `publish`), venvs, deployment records, and par's own cache.

pub(crate) mod agents;
pub(crate) mod archive;
pub(crate) mod blob_cache;
pub(crate) mod bundle;
pub(crate) mod cache_dir;
pub(crate) mod copy;
pub(crate) mod dist_store;
pub(crate) mod handle;
pub(crate) mod lock;
pub(crate) mod owner;
pub(crate) mod publish;
pub(crate) mod redeploy;
pub(crate) mod root;
pub(crate) mod seal;
pub(crate) mod staging;
pub(crate) mod tree_writes;
pub(crate) mod usage;
pub(crate) mod venv;
pub(crate) mod write_behind;

/// Lower-case hex: how digests, tags and keys are written under the root.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
