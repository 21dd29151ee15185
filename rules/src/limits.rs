//! Default ceilings on one archive, and the fixed ceilings on what an
//! install plan may hold.

/// Ceilings on what one archive may make the extractor do; the host may
/// tighten or relax each. Every limit is enforced on bytes actually
/// produced, never on sizes an archive header claims.
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
    /// Entries below this many uncompressed bytes are exempt from the ratio check.
    pub ratio_min_bytes: u64,
    /// Largest `agent.yaml` accepted.
    pub max_manifest_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_ratio: DEFAULT_MAX_RATIO,
            ratio_min_bytes: DEFAULT_RATIO_MIN_BYTES,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
        }
    }
}

impl Limits {
    /// The default ceilings on an offline bundle: a package with every
    /// wheel it installs (a CUDA build of torch alone is 2.5 GB).
    pub fn bundle() -> Self {
        Self {
            max_total_bytes: 16 * 1024 * 1024 * 1024,
            max_file_bytes: 4 * 1024 * 1024 * 1024,
            ..Self::default()
        }
    }
}

/// Most entries (files and directories) an archive may list, by default.
pub const DEFAULT_MAX_ENTRIES: u32 = 10_000;
/// Most bytes all files may expand to together, by default.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;
/// Most bytes one file may expand to, by default.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Highest uncompressed:compressed ratio for large entries, by default.
pub const DEFAULT_MAX_RATIO: u32 = 100;
/// Entries smaller than this are exempt from the ratio check, by default:
/// tiny files compress absurdly well without being bombs.
pub const DEFAULT_RATIO_MIN_BYTES: u64 = 1024 * 1024;
/// Largest `agent.yaml` read, by default, so the YAML parser never sees a huge document.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Deepest path (in components) an entry may have.
pub const MAX_PATH_DEPTH: usize = 32;
/// Longest single path component, in bytes; the common file-system maximum.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Largest `requirements.txt` (or file it includes) read: so also the longest line.
pub const MAX_REQUIREMENTS_FILE_BYTES: u64 = 1024 * 1024;
/// Most requirement and constraint lines one plan may hold.
pub const MAX_REQUIREMENT_LINES: usize = 10_000;
/// Largest lock (`pylock.toml`) read for a load.
pub const MAX_LOCK_BYTES: u64 = 16 * 1024 * 1024;
/// Most distributions one lock may name.
pub const MAX_LOCKED_PACKAGES: usize = 10_000;
/// Most `[build-system] requires` entries taken.
pub const MAX_BUILD_REQUIRES: usize = 64;
/// Most `[build-system] backend-path` entries taken.
pub const MAX_BACKEND_PATHS: usize = 16;

/// Largest file the host writes for the guest on a thread of its own
/// (`host-copy.write-file`): small files are where a WASI round trip per
/// file costs most, and a bounded queue of them stays a few MiB.
pub const MAX_WRITE_BEHIND_BYTES: u64 = 64 * 1024;
