//! Resource limits applied while reading an untrusted archive.
//!
//! Every limit is enforced on bytes actually produced, never on sizes an
//! archive header claims, because headers are attacker-controlled.

pub use par_rules::limits::{Limits, MAX_COMPONENT_BYTES, MAX_PATH_DEPTH, MAX_WRITE_BEHIND_BYTES};

pub use par_rules::archive::LimitKind;
