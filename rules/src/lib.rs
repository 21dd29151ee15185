//! The limits and name rules par applies on both sides of its sandbox.
//!
//! The guest applies them while it reads an untrusted archive; the host
//! applies them again to everything the guest hands back, because the guest
//! may be wrong or subverted. Writing each rule and default once, here, keeps
//! the two sides from drifting apart; it does not let either side skip its
//! own check.

pub mod archive;
pub mod bundle;
pub mod env;
pub mod limits;
pub mod names;
