//! Files under the root, all through handles opened once (`root`): staging
//! and publishing trees (`staging`, `publish`), venvs, deployment records, and par's own cache.

pub mod agents;
pub mod archive;
pub mod cache_dir;
pub mod handle;
pub mod lock;
pub mod owner;
pub mod publish;
pub mod redeploy;
pub mod root;
pub mod seal;
pub mod staging;
pub mod usage;
pub mod venv;
