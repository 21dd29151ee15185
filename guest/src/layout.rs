//! One reading of the archive: every byte of it must mean the same thing to
//! every zip reader.
//!
//! A runtime often scans an APKG with another tool before par extracts it.
//! When two zip readers disagree about what an archive holds, the scan
//! checks one set of files and the runtime installs another. Readers that
//! start from the central directory (as par's does) and readers that walk
//! the local headers from the start (as streaming readers do) agree only if
//! the two structures tell the same story, so the archive is refused when:
//!
//! - a local header disagrees with its central-directory entry (name, flags,
//!   method, CRC, sizes), or a data descriptor does, or a stored entry has a
//!   data descriptor (a streaming reader cannot find where its data ends);
//! - a central-directory entry has no local header where it says;
//! - the entries, taken in order, do not tile the bytes from the start of the
//!   file to the central directory: a gap could hide a local entry the
//!   central directory does not list, and an overlap is the overlapping-file
//!   zip bomb;
//! - anything follows the end-of-central-directory record's comment, or the
//!   comment holds a record signature a backward-scanning reader could take
//!   for the real one;
//! - an offset in the end record or the ZIP64 locator is not where the
//!   structure it points at is.

use std::io::{Read, Seek, SeekFrom};

use crate::error::{GuestError, Inconsistency};
use crate::limits::{LimitKind, Limits};
use crate::path::display_name;

const EOCD: [u8; 4] = *b"PK\x05\x06";
const ZIP64_LOCATOR: [u8; 4] = *b"PK\x06\x07";
const ZIP64_EOCD: [u8; 4] = *b"PK\x06\x06";
const CENTRAL: [u8; 4] = *b"PK\x01\x02";
const LOCAL: [u8; 4] = *b"PK\x03\x04";
const DESCRIPTOR: [u8; 4] = *b"PK\x07\x08";
/// General-purpose flag bit 3: CRC and sizes follow the data.
const FLAG_DESCRIPTOR: u16 = 1 << 3;
/// Compression method 0.
const STORED: u16 = 0;
/// The ZIP64 extended-information extra field.
const ZIP64_EXTRA: u16 = 0x0001;

/// What the archive's structures say, once they agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The raw name of every central-directory entry, in order.
    pub names: Vec<Vec<u8>>,
}

/// One central-directory entry.
#[derive(Debug, Clone)]
struct Central {
    name: Vec<u8>,
    flags: u16,
    method: u16,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
    local_offset: u64,
}

/// Reads the archive's end record, central directory and every local header,
/// and refuses it unless they describe the same entries in one tiling of the
/// file. The entry count is checked against the limit before the directory
/// is parsed.
pub fn check<R: Read + Seek>(reader: &mut R, limits: &Limits) -> Result<Layout, GuestError> {
    let len = reader.seek(SeekFrom::End(0)).map_err(unreadable)?;
    let end = End::find(reader, len)?;
    if end.entries > u64::from(limits.max_entries) {
        return Err(GuestError::LimitExceeded {
            kind: LimitKind::Entries,
            entry: None,
            max: u64::from(limits.max_entries),
        });
    }
    let entries = central_directory(reader, &end)?;
    let mut spans = Vec::with_capacity(entries.len());
    for entry in &entries {
        spans.push((entry.local_offset, local_span(reader, entry, end.cd_offset)?, entry));
    }
    spans.sort_by_key(|(start, _, _)| *start);
    let mut expected = 0u64;
    for (start, stop, entry) in &spans {
        if *start < expected {
            return Err(inconsistent(Some(&entry.name), Inconsistency::Overlap));
        }
        if *start > expected {
            return Err(inconsistent(Some(&entry.name), Inconsistency::UnlistedBytes));
        }
        expected = *stop;
    }
    if expected != end.cd_offset {
        return Err(inconsistent(None, Inconsistency::UnlistedBytes));
    }
    Ok(Layout {
        names: entries.into_iter().map(|entry| entry.name).collect(),
    })
}

/// The end record, resolved through the ZIP64 records when present.
#[derive(Debug, Clone, Copy)]
struct End {
    entries: u64,
    cd_offset: u64,
    cd_size: u64,
}

impl End {
    /// Finds the end record, which must end the file, and checks that the
    /// central directory ends exactly where the records after it begin.
    fn find<R: Read + Seek>(reader: &mut R, len: u64) -> Result<Self, GuestError> {
        let tail_len = len.min(22 + 65_535 + 20 + 56);
        let tail_start = len - tail_len;
        let tail = read_at(reader, tail_start, tail_len)?;
        let missing = || GuestError::ArchiveUnreadable("no end of central directory record".into());
        let last = tail.len().checked_sub(22).ok_or_else(missing)?;
        let at = (0..=last)
            .rev()
            .find(|&i| tail.get(i..i + 4) == Some(&EOCD[..]))
            .ok_or_else(missing)?;
        // The last signature in the file must be a record ending the file
        // exactly: otherwise something follows the real record, or a fake
        // one sits in its comment for a backward-scanning reader to take. The
        // bytes between the central directory and this record are accounted
        // for below, so no other record can hide there.
        let record = &tail[at..];
        let comment_len = usize::from(u16_at(record, 20));
        if record.len() != 22 + comment_len {
            return Err(inconsistent(None, Inconsistency::TrailingBytes));
        }
        let eocd_offset = tail_start + at as u64;
        let disks_ok = u16_at(record, 4) == 0 && u16_at(record, 6) == 0 && u16_at(record, 8) == u16_at(record, 10);
        if !disks_ok {
            return Err(inconsistent(None, Inconsistency::WrongOffset));
        }
        let classic = End {
            entries: u64::from(u16_at(record, 10)),
            cd_size: u64::from(u32_at(record, 12)),
            cd_offset: u64::from(u32_at(record, 16)),
        };
        let locator = at.checked_sub(20).map(|l| &tail[l..at]);
        let (end, cd_end) = match locator {
            Some(locator) if locator[..4] == ZIP64_LOCATOR => {
                let locator_offset = eocd_offset - 20;
                let zip64_offset = u64_at(locator, 8);
                if u32_at(locator, 4) != 0 || u32_at(locator, 16) > 1 || zip64_offset >= locator_offset {
                    return Err(inconsistent(None, Inconsistency::WrongOffset));
                }
                let zip64 = read_at(reader, zip64_offset, 56)?;
                let zip64_end = u64_at(&zip64, 4)
                    .checked_add(12)
                    .and_then(|len| zip64_offset.checked_add(len));
                if zip64[..4] != ZIP64_EOCD || zip64_end != Some(locator_offset) {
                    return Err(inconsistent(None, Inconsistency::WrongOffset));
                }
                if u32_at(&zip64, 16) != 0 || u32_at(&zip64, 20) != 0 || u64_at(&zip64, 24) != u64_at(&zip64, 32) {
                    return Err(inconsistent(None, Inconsistency::WrongOffset));
                }
                let end = End {
                    entries: u64_at(&zip64, 32),
                    cd_size: u64_at(&zip64, 40),
                    cd_offset: u64_at(&zip64, 48),
                };
                // A classic field either defers to ZIP64 or says the same.
                let agrees = |classic: u64, zip64: u64, max: u64| classic == max || classic == zip64;
                if !agrees(classic.entries, end.entries, 0xFFFF)
                    || !agrees(classic.cd_size, end.cd_size, 0xFFFF_FFFF)
                    || !agrees(classic.cd_offset, end.cd_offset, 0xFFFF_FFFF)
                {
                    return Err(inconsistent(None, Inconsistency::WrongOffset));
                }
                (end, zip64_offset)
            }
            _ => (classic, eocd_offset),
        };
        if end.cd_offset.checked_add(end.cd_size) != Some(cd_end) {
            return Err(inconsistent(None, Inconsistency::WrongOffset));
        }
        Ok(end)
    }
}

/// Parses exactly `end.entries` records filling exactly `end.cd_size` bytes.
fn central_directory<R: Read + Seek>(reader: &mut R, end: &End) -> Result<Vec<Central>, GuestError> {
    let directory = read_at(reader, end.cd_offset, end.cd_size)?;
    let wrong = || inconsistent(None, Inconsistency::CentralDirectory);
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at < directory.len() {
        let fixed = directory.get(at..at + 46).ok_or_else(wrong)?;
        if fixed[..4] != CENTRAL {
            return Err(wrong());
        }
        let (name_len, extra_len, comment_len) = (
            usize::from(u16_at(fixed, 28)),
            usize::from(u16_at(fixed, 30)),
            usize::from(u16_at(fixed, 32)),
        );
        let name_end = at + 46 + name_len;
        let name = directory.get(at + 46..name_end).ok_or_else(wrong)?.to_vec();
        let extra = directory.get(name_end..name_end + extra_len).ok_or_else(wrong)?;
        let mut entry = Central {
            flags: u16_at(fixed, 8),
            method: u16_at(fixed, 10),
            crc: u32_at(fixed, 16),
            compressed: u64::from(u32_at(fixed, 20)),
            uncompressed: u64::from(u32_at(fixed, 24)),
            local_offset: u64::from(u32_at(fixed, 42)),
            name,
        };
        if u16_at(fixed, 34) != 0 {
            return Err(inconsistent(Some(&entry.name), Inconsistency::WrongOffset));
        }
        let mut zip64 = zip64_values(extra);
        for value in [&mut entry.uncompressed, &mut entry.compressed, &mut entry.local_offset] {
            if *value == 0xFFFF_FFFF {
                *value = zip64
                    .next()
                    .ok_or_else(|| inconsistent(Some(&entry.name), Inconsistency::CentralDirectory))?;
            }
        }
        entries.push(entry);
        at = name_end + extra_len + comment_len;
        if entries.len() as u64 > end.entries {
            return Err(wrong());
        }
    }
    if at != directory.len() || entries.len() as u64 != end.entries {
        return Err(wrong());
    }
    Ok(entries)
}

/// Checks `entry`'s local header (and data descriptor) against it; returns
/// where its bytes end: after the data, or after the descriptor.
fn local_span<R: Read + Seek>(reader: &mut R, entry: &Central, cd_offset: u64) -> Result<u64, GuestError> {
    let refuse = |why| inconsistent(Some(&entry.name), why);
    if entry.local_offset.checked_add(30).is_none_or(|end| end > cd_offset) {
        return Err(refuse(Inconsistency::MissingLocalHeader));
    }
    let fixed = read_at(reader, entry.local_offset, 30)?;
    if fixed[..4] != LOCAL {
        return Err(refuse(Inconsistency::MissingLocalHeader));
    }
    let (name_len, extra_len) = (u64::from(u16_at(&fixed, 26)), u64::from(u16_at(&fixed, 28)));
    let names_end = entry.local_offset + 30 + name_len + extra_len;
    if names_end > cd_offset {
        return Err(refuse(Inconsistency::MissingLocalHeader));
    }
    let variable = read_at(reader, entry.local_offset + 30, name_len + extra_len)?;
    let (name, extra) = variable.split_at(usize::from(u16_at(&fixed, 26)));
    if name != entry.name.as_slice() {
        return Err(refuse(Inconsistency::LocalName));
    }
    let flags = u16_at(&fixed, 6);
    if flags != entry.flags {
        return Err(refuse(Inconsistency::LocalFlags));
    }
    if u16_at(&fixed, 8) != entry.method {
        return Err(refuse(Inconsistency::LocalMethod));
    }
    let crc = u32_at(&fixed, 14);
    let (mut compressed, mut uncompressed) = (u64::from(u32_at(&fixed, 18)), u64::from(u32_at(&fixed, 22)));
    let local_zip64 = compressed == 0xFFFF_FFFF || uncompressed == 0xFFFF_FFFF;
    if local_zip64 {
        let mut values = zip64_values(extra);
        uncompressed = values.next().ok_or_else(|| refuse(Inconsistency::LocalSizes))?;
        compressed = values.next().ok_or_else(|| refuse(Inconsistency::LocalSizes))?;
    }
    let data_end = names_end
        .checked_add(entry.compressed)
        .filter(|end| *end <= cd_offset)
        .ok_or_else(|| refuse(Inconsistency::Overlap))?;
    if flags & FLAG_DESCRIPTOR == 0 {
        if crc != entry.crc {
            return Err(refuse(Inconsistency::LocalCrc));
        }
        if (compressed, uncompressed) != (entry.compressed, entry.uncompressed) {
            return Err(refuse(Inconsistency::LocalSizes));
        }
        return Ok(data_end);
    }
    if entry.method == STORED {
        return Err(refuse(Inconsistency::StoredWithDescriptor));
    }
    // The header may state the values or leave them zero; whatever it states must agree.
    if (crc != 0 && crc != entry.crc)
        || (compressed != 0 && compressed != entry.compressed)
        || (uncompressed != 0 && uncompressed != entry.uncompressed)
    {
        return Err(refuse(Inconsistency::LocalSizes));
    }
    let wide = local_zip64 || entry.compressed >= 0xFFFF_FFFF || entry.uncompressed >= 0xFFFF_FFFF;
    let body = if wide { 20 } else { 12 };
    let available = cd_offset - data_end;
    let head = read_at(reader, data_end, available.min(4 + body))?;
    let signed = head.get(..4) == Some(&DESCRIPTOR[..]);
    let fields = if signed { &head[4..] } else { &head[..] };
    if fields.len() < body as usize {
        return Err(refuse(Inconsistency::Descriptor));
    }
    let (d_crc, d_compressed, d_uncompressed) = if wide {
        (u32_at(fields, 0), u64_at(fields, 4), u64_at(fields, 12))
    } else {
        (
            u32_at(fields, 0),
            u64::from(u32_at(fields, 4)),
            u64::from(u32_at(fields, 8)),
        )
    };
    if (d_crc, d_compressed, d_uncompressed) != (entry.crc, entry.compressed, entry.uncompressed) {
        return Err(refuse(Inconsistency::Descriptor));
    }
    Ok(data_end + if signed { 4 } else { 0 } + body)
}

/// The 8-byte values of the ZIP64 extra field, in order (none if absent).
fn zip64_values(extra: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let mut at = 0usize;
    let mut field: &[u8] = &[];
    while at + 4 <= extra.len() {
        let (id, size) = (u16_at(extra, at), usize::from(u16_at(extra, at + 2)));
        let Some(data) = extra.get(at + 4..at + 4 + size) else {
            break;
        };
        if id == ZIP64_EXTRA {
            field = data;
            break;
        }
        at += 4 + size;
    }
    field.chunks_exact(8).map(|chunk| u64_at(chunk, 0))
}

fn read_at<R: Read + Seek>(reader: &mut R, offset: u64, len: u64) -> Result<Vec<u8>, GuestError> {
    reader.seek(SeekFrom::Start(offset)).map_err(unreadable)?;
    let mut bytes = Vec::new();
    reader.by_ref().take(len).read_to_end(&mut bytes).map_err(unreadable)?;
    if bytes.len() as u64 != len {
        return Err(GuestError::ArchiveUnreadable(format!(
            "the archive ends inside a record at byte {offset}"
        )));
    }
    Ok(bytes)
}

fn unreadable(e: std::io::Error) -> GuestError {
    GuestError::ArchiveUnreadable(e.to_string())
}

fn inconsistent(name: Option<&[u8]>, inconsistency: Inconsistency) -> GuestError {
    GuestError::ArchiveInconsistent {
        entry: name.map(display_name),
        inconsistency,
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut value = [0u8; 8];
    value.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(value)
}
