//! Reading and extracting an untrusted APKG (a zip archive).
//!
//! Work happens in two passes. The first reads only the central directory and
//! refuses the whole archive if any entry breaks a rule, so nothing is written
//! for an archive that will be refused anyway. The second streams each file
//! out, counting the bytes it actually produces against the limits.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use zip::extra_fields::ExtraField;
use zip::{CompressionMethod, ZipArchive};

use crate::deploy::{self, DEPLOY_NAME};
use crate::entry_data::{Declared, EntryData, Inflater};
use crate::error::{EntryProblem, GuestError};
use crate::layout;
use crate::limits::{LimitKind, Limits, MAX_WRITE_BEHIND_BYTES};
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

/// How often [`extract_with_progress`] reports: every this many entries written.
pub const PROGRESS_EVERY: usize = 256;

/// Stored entries at least this big are handed to a [`StoredCopier`], if
/// there is one: below it, the call costs more than the bytes.
pub const NATIVE_COPY_MIN_BYTES: u64 = 64 * 1024;

/// Writes done outside the guest by the host (its `host-copy` import):
/// stored entries' bytes copied from the archive, and small files written
/// behind the guest while it goes on.
pub trait NativeWriter {
    /// Copies `length` bytes at `offset` of the archive into the new file
    /// `relative` under the destination, checked against `crc32`.
    fn copy(&mut self, offset: u64, length: u64, crc32: u32, relative: &str) -> Result<(), CopyFailure>;
    /// Has the new file `relative` written with `contents`, perhaps after
    /// this returns.
    fn write_file(&mut self, relative: &str, contents: &[u8]) -> Result<(), CopyFailure>;
    /// Waits for every file given to [`Self::write_file`]; the first that
    /// failed, by its relative path.
    fn flush(&mut self) -> Result<(), (String, CopyFailure)>;
}

/// Why a [`NativeWriter`] did not copy or write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFailure {
    /// The bytes do not have the entry's CRC-32.
    Checksum,
    /// The range runs past the end of the archive.
    OutOfRange,
    /// Anything else, in the copier's words.
    Other(String),
}

/// Validates the archive, parses its manifest, then writes every entry under `dest`.
pub fn extract<R: Read + Seek>(reader: R, dest: &Path, options: &ExtractOptions) -> Result<ExtractReport, GuestError> {
    extract_with_progress(reader, dest, options, &mut |_, _| {}, None)
}

/// [`extract`], calling `progress(written, total)` once the writing starts
/// and after every [`PROGRESS_EVERY`] entries, so a long extraction shows it
/// is under way, and handing big stored entries and small files to `native`.
pub fn extract_with_progress<R: Read + Seek>(
    reader: R,
    dest: &Path,
    options: &ExtractOptions,
    progress: &mut dyn FnMut(usize, usize),
    native: Option<&mut dyn NativeWriter>,
) -> Result<ExtractReport, GuestError> {
    let limits = &options.limits;
    let mut archive = open(reader, limits)?;
    let plan = plan(&mut archive, limits, options.enforce_path_rules)?;
    let manifest = read_manifest(&mut archive, &plan, limits)?;
    let written = write_entries(&mut archive, &plan, dest, limits, progress, native)?;
    Ok(ExtractReport {
        manifest,
        files: written.files,
        dirs: written.dirs,
        bytes: written.bytes,
        executables: written.executables,
    })
}

/// Validates an offline bundle (every entry one of the members
/// [`par_rules::bundle`] names, and every rule of an APKG's entries), then
/// writes its members under `dest`. A bundle has no manifest: the package
/// inside it is read as any other, after the host has checked the rest.
pub fn unbundle<R: Read + Seek>(
    reader: R,
    dest: &Path,
    limits: &Limits,
    native: Option<&mut dyn NativeWriter>,
) -> Result<Written, GuestError> {
    let mut archive = open(reader, limits)?;
    let plan = plan(&mut archive, limits, true)?;
    if let Some(entry) = plan
        .iter()
        .find(|entry| !par_rules::bundle::is_member(&entry.target.relative(), entry.kind == EntryKind::Dir))
    {
        return Err(GuestError::unsafe_entry(&entry.display, EntryProblem::NotInBundle));
    }
    write_entries(&mut archive, &plan, dest, limits, &mut |_, _| {}, native)
}

/// What the second pass wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Regular files written.
    pub files: u32,
    /// Directories listed in the archive.
    pub dirs: u32,
    /// Uncompressed bytes written, as counted while writing.
    pub bytes: u64,
    /// Relative paths of files the archive marks executable.
    pub executables: Vec<String>,
}

/// The second pass: every planned entry written under `dest`, its bytes
/// counted against `limits` as they come out.
fn write_entries<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    plan: &[Planned],
    dest: &Path,
    limits: &Limits,
    progress: &mut dyn FnMut(usize, usize),
    mut native: Option<&mut dyn NativeWriter>,
) -> Result<Written, GuestError> {
    let mut writer = TreeWriter::new(dest);
    let mut report = Written::default();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut small = Vec::new();
    let mut inflater = Inflater::default();
    for (written, entry) in plan.iter().enumerate() {
        if written % PROGRESS_EVERY == 0 {
            progress(written, plan.len());
        }
        let relative = entry.target.relative();
        match entry.kind {
            EntryKind::Dir => {
                writer.dir(&relative, &entry.display)?;
                report.dirs += 1;
            }
            EntryKind::File { executable } => {
                let raw = archive
                    .by_index_raw(entry.index)
                    .map_err(|e| corrupt(&entry.display, e))?;
                let declared = Declared {
                    method: raw.compression(),
                    size: raw.size(),
                    crc32: raw.crc32(),
                    encrypted: raw.encrypted(),
                };
                let copy_from = raw
                    .data_start()
                    .filter(|_| is_native_copy(&declared, raw.compressed_size()));
                // With the path rules off (a test's switch), every write goes
                // through WASI, so the preopen alone is what confines it.
                let checked = matches!(entry.target, Target::Checked(_));
                let written = match (copy_from, native.as_deref_mut().filter(|_| checked)) {
                    (Some(offset), Some(native)) => {
                        check_size(declared.size, entry, limits, report.bytes)?;
                        writer.parent(&relative, &entry.display)?;
                        native
                            .copy(offset, declared.size, declared.crc32, &relative)
                            .map_err(|failure| copy_failed(&entry.display, failure))?;
                        declared.size
                    }
                    (None, Some(native)) if declared.size <= MAX_WRITE_BEHIND_BYTES => {
                        writer.parent(&relative, &entry.display)?;
                        small.clear();
                        let mut data =
                            EntryData::new(raw, declared, &mut inflater).map_err(|e| corrupt(&entry.display, e))?;
                        // No more than the declared size comes out: `EntryData` refuses more.
                        let written = copy_counted(&mut data, &mut small, entry, limits, report.bytes, &mut buffer)?;
                        if let Err(failure) = native.write_file(&relative, &small) {
                            return Err(write_failed(native, plan, &entry.display, failure));
                        }
                        written
                    }
                    _ => {
                        let mut file = writer.file(&relative, &entry.display)?;
                        let mut data =
                            EntryData::new(raw, declared, &mut inflater).map_err(|e| corrupt(&entry.display, e))?;
                        copy_counted(&mut data, file.as_mut(), entry, limits, report.bytes, &mut buffer)?
                    }
                };
                report.bytes += written;
                report.files += 1;
                if executable {
                    report.executables.push(relative);
                }
            }
        }
    }
    if let Some(native) = native
        && let Err((relative, failure)) = native.flush()
    {
        return Err(copy_failed(&display_of(plan, &relative), failure));
    }
    Ok(report)
}

/// A refused `write_file`, as the error of the entry at fault: an earlier
/// file whose writing failed, if `flush` names one, else this one.
fn write_failed(native: &mut dyn NativeWriter, plan: &[Planned], display: &str, failure: CopyFailure) -> GuestError {
    match native.flush() {
        Err((relative, earlier)) => copy_failed(&display_of(plan, &relative), earlier),
        Ok(()) => copy_failed(display, failure),
    }
}

/// The entry name of the file written at `relative`, for errors; the path
/// itself if no entry has it.
fn display_of(plan: &[Planned], relative: &str) -> String {
    plan.iter()
        .find(|entry| entry.target.relative() == relative)
        .map_or_else(|| relative.to_owned(), |entry| entry.display.clone())
}

/// Opens the zip once its layout holds together ([`layout::check`], which
/// also refuses an entry count over the limit before the directory is
/// parsed), so the central directory read here is the only reading there is.
fn open<R: Read + Seek>(mut reader: R, limits: &Limits) -> Result<ZipArchive<R>, GuestError> {
    let layout = layout::check(&mut reader, limits)?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| GuestError::ArchiveUnreadable(e.to_string()))?;
    let archive = ZipArchive::new(reader).map_err(|e| GuestError::ArchiveUnreadable(e.to_string()))?;
    // The zip reader keys entries by name, so a repeated name silently
    // collapses into one entry. Count them ourselves and name the repeat.
    if layout.names.len() != archive.len() {
        let mut seen = HashSet::new();
        let repeated = layout.names.iter().find(|name| !seen.insert(name.as_slice()));
        return Err(match repeated {
            Some(name) => {
                let display = display_name(name);
                GuestError::unsafe_entry(&display, EntryProblem::Duplicate(display.clone()))
            }
            None => GuestError::ArchiveUnreadable(format!(
                "the central directory lists {} entries but {} could be read",
                layout.names.len(),
                archive.len()
            )),
        });
    }
    Ok(archive)
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

/// Finds `agent.yaml` at the root and parses it, with `deploy.json` beside
/// it when there is one; each read within the manifest budget.
fn read_manifest<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    plan: &[Planned],
    limits: &Limits,
) -> Result<Manifest, GuestError> {
    let bytes = read_root_file(archive, plan, MANIFEST_NAME, limits)?.ok_or(GuestError::ManifestMissing)?;
    let mut manifest = manifest::parse(&bytes)?;
    manifest.deploy = read_root_file(archive, plan, DEPLOY_NAME, limits)?
        .map(|bytes| deploy::parse(&bytes))
        .transpose()?;
    Ok(manifest)
}

/// The bytes of the regular file `name` at the archive root, if there is
/// one, read only up to the manifest budget.
fn read_root_file<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    plan: &[Planned],
    name: &str,
    limits: &Limits,
) -> Result<Option<Vec<u8>>, GuestError> {
    let Some(entry) = plan
        .iter()
        .find(|p| matches!(p.kind, EntryKind::File { .. }) && p.target.relative() == name)
    else {
        return Ok(None);
    };
    let too_big = || GuestError::LimitExceeded {
        kind: LimitKind::ManifestBytes,
        entry: Some(name.to_owned()),
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
    Ok(Some(bytes))
}

/// Whether an entry's bytes can be copied as they lie in the archive: stored,
/// not encrypted, as long in the archive as declared, and big enough.
fn is_native_copy(declared: &Declared, compressed_size: u64) -> bool {
    declared.method == CompressionMethod::Stored
        && !declared.encrypted
        && compressed_size == declared.size
        && declared.size >= NATIVE_COPY_MIN_BYTES
}

/// The per-file and total limits for an entry of `size` bytes copied whole.
fn check_size(size: u64, entry: &Planned, limits: &Limits, total_before: u64) -> Result<(), GuestError> {
    let exceeded = |kind, max| GuestError::LimitExceeded {
        kind,
        entry: Some(entry.display.clone()),
        max,
    };
    if size > limits.max_file_bytes {
        return Err(exceeded(LimitKind::FileBytes, limits.max_file_bytes));
    }
    if total_before.saturating_add(size) > limits.max_total_bytes {
        return Err(exceeded(LimitKind::TotalBytes, limits.max_total_bytes));
    }
    Ok(())
}

/// A copy that failed, as the entry's error: bytes that are not the entry's
/// are a corrupt entry, as the guest's own reading would say.
fn copy_failed(display: &str, failure: CopyFailure) -> GuestError {
    match failure {
        CopyFailure::Checksum => corrupt(display, "Invalid checksum"),
        CopyFailure::OutOfRange => corrupt(display, "the entry's data runs past the end of the archive"),
        CopyFailure::Other(message) => GuestError::Io {
            entry: Some(display.to_owned()),
            message,
        },
    }
}

/// Streams one entry into `out`, refusing as soon as the bytes it has produced
/// break the per-file, total or compression-ratio limit.
fn copy_counted(
    data: &mut impl Read,
    out: &mut dyn Write,
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
    /// Relative directories made so far.
    made: HashSet<String>,
    /// Inside the sandbox: the preopened destination, written positionally.
    #[cfg(all(target_arch = "wasm32", target_env = "p2"))]
    preopen: Option<crate::positional::Dir>,
}

impl TreeWriter {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            made: HashSet::new(),
            #[cfg(all(target_arch = "wasm32", target_env = "p2"))]
            preopen: crate::positional::Dir::preopened(root),
        }
    }

    fn dir(&mut self, relative: &str, display: &str) -> Result<(), GuestError> {
        self.make(relative, display)
    }

    /// Makes the directory `relative` goes in.
    fn parent(&mut self, relative: &str, display: &str) -> Result<(), GuestError> {
        match relative.rsplit_once('/') {
            Some((parent, _)) => self.make(parent, display),
            None => Ok(()),
        }
    }

    /// Makes the directory `relative` and those above it, once.
    fn make(&mut self, relative: &str, display: &str) -> Result<(), GuestError> {
        if !self.made.contains(relative) {
            fs::create_dir_all(self.root.join(relative)).map_err(|e| io_error(display, &e))?;
            self.made.insert(relative.to_owned());
        }
        Ok(())
    }

    fn file(&mut self, relative: &str, display: &str) -> Result<Box<dyn Write>, GuestError> {
        self.parent(relative, display)?;
        #[cfg(all(target_arch = "wasm32", target_env = "p2"))]
        if let Some(preopen) = &self.preopen {
            let file = preopen.create(relative).map_err(|e| io_error(display, &e))?;
            return Ok(Box::new(file));
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.root.join(relative))
            .map_err(|e| io_error(display, &e))?;
        Ok(Box::new(file))
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
