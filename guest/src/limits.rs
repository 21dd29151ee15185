//! Resource limits applied while reading an untrusted archive.
//!
//! Every limit is enforced on bytes actually produced, never on sizes an
//! archive header claims, because headers are attacker-controlled.

/// Ceilings on what one archive may make the extractor do; the host may tighten or relax each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries (files and directories) the archive may list.
    pub max_entries: u32,
    /// Most bytes all files together may expand to.
    pub max_total_bytes: u64,
    /// Most bytes one file may expand to.
    pub max_file_bytes: u64,
    /// Highest uncompressed:compressed ratio allowed for large entries.
    pub max_ratio: u32,
    /// Entries below this many uncompressed bytes are exempt from the ratio check,
    /// since tiny files compress absurdly well without being bombs.
    pub ratio_min_bytes: u64,
    /// Largest `agent.yaml` accepted, so the YAML parser never sees a huge document.
    pub max_manifest_bytes: u64,
}

/// Deepest path (in components) an entry may have.
pub const MAX_PATH_DEPTH: usize = 32;
/// Longest single path component, in bytes; the common file-system maximum.
pub const MAX_COMPONENT_BYTES: usize = 255;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_total_bytes: 512 * 1024 * 1024,
            max_file_bytes: 256 * 1024 * 1024,
            max_ratio: 100,
            ratio_min_bytes: 1024 * 1024,
            max_manifest_bytes: 1024 * 1024,
        }
    }
}

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
