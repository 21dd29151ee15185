//! Installing an agent: the installer back ends, one installer step, the
//! editable self-install, the base interpreter, the requirement policy, and
//! the lock of what was installed or would be, and its SBOM.

pub(crate) mod editable;
pub(crate) mod file_url;
pub(crate) mod installed_template;
pub(crate) mod installer;
pub(crate) mod interpreter;
pub(crate) mod plain_path;
pub(crate) mod pylock;
pub mod requirements;
pub(crate) mod resolve;
pub(crate) mod sbom;
pub(crate) mod step;
pub(crate) mod uv_fetch;
pub(crate) mod venv_template;
