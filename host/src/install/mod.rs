//! Installing an agent: the installer back ends, one installer step, the
//! editable self-install, the base interpreter, and the requirement policy.

pub(crate) mod editable;
pub(crate) mod installer;
pub(crate) mod interpreter;
pub mod requirements;
pub(crate) mod step;
