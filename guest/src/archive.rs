//! Reading and extracting an untrusted APKG (a zip archive).
//!
//! Work happens in two passes. The first reads only the central directory and
//! refuses the whole archive if any entry breaks a rule, so nothing is written
//! for an archive that will be refused anyway. The second streams each file
//! out, counting the bytes it actually produces against the limits.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use zip::extra_fields::ExtraField;
use zip::{CompressionMethod, ZipArchive};

use crate::error::{EntryProblem, GuestError};
use crate::limits::{LimitKind, Limits};
use crate::manifest::{self, Manifest};
use crate::path::{SafePath, check_entry_name, display_name};
use crate::policy::{EntryKind, EntryMeta, NameSet, classify};

/// The manifest's fixed name at the archive root.
pub const MANIFEST_NAME: &str = "agent.yaml";

/// How an extraction is allowed to proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Resource ceilings.
    pub limits: Limits,
    /// Apply the entry-name rules. Only a test turns this off, to show that the
    /// sandbox's preopen alone still keeps writes inside the package directory.
    pub enforce_path_rules: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            enforce_path_rules: true,
        }
    }
}

/// What an extraction produced; the host uses it to fix modes and to report.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractReport {
    /// The validated manifest.
    pub manifest: Manifest,
    /// Regular files written.
    pub files: u32,
    /// Directories listed in the archive.
    pub dirs: u32,
    /// Uncompressed bytes written, as counted while writing.
    pub bytes: u64,
    /// Relative paths of files the archive marks executable (to get mode 0755).
    pub executables: Vec<String>,
}

/// Where an entry will be written: a checked path, or (rules off) the raw name.
#[derive(Debug, Clone)]
enum Target {
    Checked(SafePath),
    Unchecked(String),
}

impl Target {
    fn relative(&self) -> String {
        match self {
            Target::Checked(path) => path.as_relative(),
            Target::Unchecked(raw) => raw.trim_end_matches('/').to_owned(),
        }
    }
}

/// One entry that passed the first pass.
#[derive(Debug, Clone)]
struct Planned {
    index: usize,
    display: String,
    target: Target,
    kind: EntryKind,
    compressed_size: u64,
}

/// Validates the archive and parses its manifest without writing anything.
pub fn inspect<R: Read + Seek>(reader: R, limits: &Limits) -> Result<Manifest, GuestError> {
    let mut archive = open(reader, limits)?;
    let plan = plan(&mut archive, limits, true)?;
    read_manifest(&mut archive, &plan, limits)
}

/// Validates the archive, parses its manifest, then writes every entry under `dest`.
pub fn extract<R: Read + Seek>(reader: R, dest: &Path, options: &ExtractOptions) -> Result<ExtractReport, GuestError> {
    let limits = &options.limits;
    let mut archive = open(reader, limits)?;
    let plan = plan(&mut archive, limits, options.enforce_path_rules)?;
    let manifest = read_manifest(&mut archive, &plan, limits)?;
    let mut writer = TreeWriter::new(dest);
    let mut report = ExtractReport {
        manifest,
        files: 0,
        dirs: 0,
        bytes: 0,
        executables: Vec::new(),
    };
    let mut buffer = vec![0u8; 256 * 1024];
    for entry in &plan {
        let relative = entry.target.relative();
        match entry.kind {
            EntryKind::Dir => {
                writer.dir(&relative, &entry.display)?;
                report.dirs += 1;
            }
            EntryKind::File { executable } => {
                let mut file = writer.file(&relative, &entry.display)?;
                let mut data = archive.by_index(entry.index).map_err(|e| corrupt(&entry.display, e))?;
                let written = copy_counted(&mut data, &mut file, entry, limits, report.bytes, &mut buffer)?;
                report.bytes += written;
                report.files += 1;
                if executable {
                    report.executables.push(relative);
                }
            }
        }
    }
    Ok(report)
}

/// Opens the zip after checking the entry count its end record declares, so a
/// central directory with millions of entries is refused before it is parsed.
fn open<R: Read + Seek>(mut reader: R, limits: &Limits) -> Result<ZipArchive<R>, GuestError> {
    if let Some(count) = declared_entry_count(&mut reader)
        && count > u64::from(limits.max_entries)
    {
        return Err(GuestError::LimitExceeded {
            kind: LimitKind::Entries,
            entry: None,
            max: u64::from(limits.max_entries),
        });
    }
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| GuestError::ArchiveUnreadable(e.to_string()))?;
    let archive = ZipArchive::new(reader).map_err(|e| GuestError::ArchiveUnreadable(e.to_string()))?;
    if archive.len() as u64 > u64::from(limits.max_entries) {
        return Err(GuestError::LimitExceeded {
            kind: LimitKind::Entries,
            entry: None,
            max: u64::from(limits.max_entries),
        });
    }
    Ok(archive)
}

/// Reads the total entry count from the end-of-central-directory record (zip64 aware).
/// `None` when no record is found; the zip reader then reports the archive unreadable.
fn declared_entry_count<R: Read + Seek>(reader: &mut R) -> Option<u64> {
    const EOCD: [u8; 4] = *b"PK\x05\x06";
    const ZIP64_LOCATOR: [u8; 4] = *b"PK\x06\x07";
    const ZIP64_EOCD: [u8; 4] = *b"PK\x06\x06";
    let len = reader.seek(SeekFrom::End(0)).ok()?;
    let tail_len = len.min(22 + 65_535 + 20);
    reader.seek(SeekFrom::Start(len - tail_len)).ok()?;
    let mut tail = vec![0u8; usize::try_from(tail_len).ok()?];
    reader.read_exact(&mut tail).ok()?;
    let at = (0..=tail.len().checked_sub(22)?)
        .rev()
        .find(|&i| tail[i..i + 4] == EOCD)?;
    let count = u64::from(u16::from_le_bytes([tail[at + 10], tail[at + 11]]));
    if count != 0xFFFF || at < 20 || tail[at - 20..at - 16] != ZIP64_LOCATOR {
        return Some(count);
    }
    let locator = &tail[at - 20..at];
    let offset = u64::from_le_bytes(locator[8..16].try_into().ok()?);
    reader.seek(SeekFrom::Start(offset)).ok()?;
    let mut record = [0u8; 56];
    reader.read_exact(&mut record).ok()?;
    if record[..4] != ZIP64_EOCD {
        return Some(count);
    }
    Some(u64::from_le_bytes(record[32..40].try_into().ok()?))
}

/// The first pass: every entry's name, kind, compression and uniqueness.
fn plan<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    limits: &Limits,
    enforce_path_rules: bool,
) -> Result<Vec<Planned>, GuestError> {
    let mut names = NameSet::default();
    let mut plan = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let file = archive
            .by_index_raw(index)
            .map_err(|e| GuestError::ArchiveUnreadable(format!("entry #{index}: {e}")))?;
        let raw = file.name_raw().to_vec();
        let display = display_name(&raw);
        let refuse = |problem| GuestError::unsafe_entry(&display, problem);
        let target = if enforce_path_rules {
            let path = check_entry_name(&raw).map_err(refuse)?;
            names.insert(&path).map_err(refuse)?;
            Target::Checked(path)
        } else {
            Target::Unchecked(String::from_utf8_lossy(&raw).into_owned())
        };
        let extra: Vec<(u16, &[u8])> = file
            .extra_data_fields()
            .filter_map(|field| match field {
                ExtraField::Custom(custom) => Some((custom.header_id, &custom.data[..])),
                _ => None,
            })
            .collect();
        let kind = classify(&EntryMeta {
            unix_mode: file.unix_mode(),
            name_is_dir: raw.ends_with(b"/"),
            encrypted: file.encrypted(),
            extra_fields: &extra,
        })
        .map_err(refuse)?;
        if kind != EntryKind::Dir {
            match file.compression() {
                CompressionMethod::Stored | CompressionMethod::Deflated => {}
                other => return Err(refuse(EntryProblem::UnsupportedCompression(format!("{other:?}")))),
            }
            if file.size() > limits.max_file_bytes {
                return Err(GuestError::LimitExceeded {
                    kind: LimitKind::FileBytes,
                    entry: Some(display),
                    max: limits.max_file_bytes,
                });
            }
        }
        let compressed_size = file.compressed_size();
        drop(file);
        plan.push(Planned {
            index,
            display,
            target,
            kind,
            compressed_size,
        });
    }
    Ok(plan)
}

/// Finds `agent.yaml` at the root, reads at most the manifest budget of it, and parses it.
fn read_manifest<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    plan: &[Planned],
    limits: &Limits,
) -> Result<Manifest, GuestError> {
    let entry = plan
        .iter()
        .find(|p| matches!(p.kind, EntryKind::File { .. }) && p.target.relative() == MANIFEST_NAME)
        .ok_or(GuestError::ManifestMissing)?;
    let too_big = || GuestError::LimitExceeded {
        kind: LimitKind::ManifestBytes,
        entry: Some(MANIFEST_NAME.to_owned()),
        max: limits.max_manifest_bytes,
    };
    let file = archive.by_index(entry.index).map_err(|e| corrupt(&entry.display, e))?;
    if file.size() > limits.max_manifest_bytes {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(limits.max_manifest_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| corrupt(&entry.display, e))?;
    if bytes.len() as u64 > limits.max_manifest_bytes {
        return Err(too_big());
    }
    manifest::parse(&bytes)
}

/// Streams one entry into `out`, refusing as soon as the bytes it has produced
/// break the per-file, total or compression-ratio limit.
fn copy_counted(
    data: &mut impl Read,
    out: &mut File,
    entry: &Planned,
    limits: &Limits,
    total_before: u64,
    buffer: &mut [u8],
) -> Result<u64, GuestError> {
    let exceeded = |kind, max| GuestError::LimitExceeded {
        kind,
        entry: Some(entry.display.clone()),
        max,
    };
    let ratio_ceiling = entry.compressed_size.max(1).saturating_mul(u64::from(limits.max_ratio));
    let mut written: u64 = 0;
    loop {
        let n = match data.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(&entry.display, e)),
        };
        written += n as u64;
        if written > limits.max_file_bytes {
            return Err(exceeded(LimitKind::FileBytes, limits.max_file_bytes));
        }
        if total_before + written > limits.max_total_bytes {
            return Err(exceeded(LimitKind::TotalBytes, limits.max_total_bytes));
        }
        if written > limits.ratio_min_bytes && written > ratio_ceiling {
            return Err(exceeded(LimitKind::CompressionRatio, u64::from(limits.max_ratio)));
        }
        out.write_all(&buffer[..n]).map_err(|e| io_error(&entry.display, &e))?;
    }
    Ok(written)
}

/// Creates directories and files under the destination, never overwriting anything.
struct TreeWriter {
    root: PathBuf,
    made: HashSet<PathBuf>,
}

impl TreeWriter {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            made: HashSet::new(),
        }
    }

    fn dir(&mut self, relative: &str, display: &str) -> Result<(), GuestError> {
        let path = self.root.join(relative);
        if self.made.insert(path.clone()) {
            fs::create_dir_all(&path).map_err(|e| io_error(display, &e))?;
        }
        Ok(())
    }

    fn file(&mut self, relative: &str, display: &str) -> Result<File, GuestError> {
        let path = self.root.join(relative);
        if let Some(parent) = path.parent()
            && self.made.insert(parent.to_owned())
        {
            fs::create_dir_all(parent).map_err(|e| io_error(display, &e))?;
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_error(display, &e))
    }
}

fn corrupt(display: &str, error: impl std::fmt::Display) -> GuestError {
    GuestError::unsafe_entry(display, EntryProblem::Corrupt(error.to_string()))
}

fn io_error(display: &str, error: &io::Error) -> GuestError {
    GuestError::Io {
        entry: Some(display.to_owned()),
        message: error.to_string(),
    }
}
