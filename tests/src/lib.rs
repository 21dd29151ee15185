//! Test support: builds real APKG archives (valid and hostile) with the zip
//! crate, so every test exercises the loader on bytes it has never seen.

pub mod apkg;
pub mod cases;
pub mod workspace;

pub use apkg::Apkg;
pub use cases::{Expected, HostileCase, LimitOverrides, hostile_cases};
pub use workspace::Workspace;
