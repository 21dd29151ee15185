//! The sandboxed half of par: everything that touches untrusted APKG bytes.
//!
//! Built as a `wasm32-wasip2` component (see [`component`], compiled only for
//! wasm) that the host runs under wasmtime with two preopened directories and
//! nothing else. The same pure logic compiles natively so unit tests and
//! fuzzers can call it directly.

pub mod archive;
pub mod build_system;
pub mod crc32;
pub mod deploy;
pub mod dotenv;
mod entry_data;
pub mod error;
pub mod install_plan;
pub mod layout;
pub mod limits;
pub mod manifest;
pub mod path;
pub mod policy;
#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
mod positional;
pub mod pylock;
pub mod seek_buffered;
pub mod yaml_events;

#[cfg(target_arch = "wasm32")]
mod component;

pub use archive::{CopyFailure, ExtractOptions, ExtractReport, NativeWriter, Written, extract, inspect, unbundle};
pub use error::{EntryProblem, GuestError, Inconsistency};
pub use limits::{LimitKind, Limits};
pub use manifest::{Entrypoint, Manifest};
