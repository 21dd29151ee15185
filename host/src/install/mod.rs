//! Installing an agent: the installer back ends, one installer step, the
//! editable self-install, the base interpreter, and the requirement policy.

pub mod editable;
pub mod installer;
pub mod interpreter;
pub mod requirements;
pub mod step;
