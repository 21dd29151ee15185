//! Resource limits applied while reading an untrusted archive.
//!
//! Every limit is enforced on bytes actually produced, never on sizes an
//! archive header claims, because headers are attacker-controlled.

pub use par_rules::limits::{Limits, MAX_COMPONENT_BYTES, MAX_PATH_DEPTH};

/// Which limit an archive ran into; carried to the host so the error names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Too many entries in the central directory.
    Entries,
    /// All files together expanded past the total budget.
    TotalBytes,
    /// One file expanded past the per-file budget.
    FileBytes,
    /// One large file compressed suspiciously well (a zip bomb).
    CompressionRatio,
    /// `agent.yaml` is larger than the manifest budget.
    ManifestBytes,
}

impl LimitKind {
    /// Stable, human-readable name used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Entries => "entry count",
            LimitKind::TotalBytes => "total uncompressed size",
            LimitKind::FileBytes => "file size",
            LimitKind::CompressionRatio => "compression ratio",
            LimitKind::ManifestBytes => "manifest size",
        }
    }
}
