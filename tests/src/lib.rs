//! Test support: builds real APKG archives (valid and hostile) with the zip
//! crate, so every test exercises the loader on bytes it has never seen.

pub mod agent;
pub mod apkg;
pub mod binary;
pub mod cases;
pub mod fuzz;
pub mod hostile_registry;
pub mod index_trap;
mod loopback;
pub mod machine;
pub mod registry;
pub mod simple_index;
pub mod tools;
pub mod trees;
pub mod workspace;
pub mod zip_bytes;

pub use apkg::Apkg;
pub use cases::{Expected, HostileCase, LimitOverrides, hostile_cases};
pub use workspace::Workspace;

/// Fails with every collected failure listed, so one run shows them all.
pub fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
