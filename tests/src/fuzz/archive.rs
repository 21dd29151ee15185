//! The extractor on arbitrary archive bytes, into a scratch directory: it must
//! return an error or a report, never panic, and never write outside. And
//! one reading of the archive: whatever it accepts, a reader that walks the
//! local headers from the first byte, as a streaming scanner does, must see
//! the same entries with the same bytes. The same bytes read as an offline
//! bundle: nothing but the members a bundle may hold is ever written.

use std::io::{Cursor, Read};
use std::path::Path;

use par_guest::{ExtractOptions, ExtractReport, Limits, extract, inspect, unbundle};

/// One input.
pub(crate) fn run(data: &[u8]) {
    let limits = Limits {
        max_total_bytes: 8 * 1024 * 1024,
        max_file_bytes: 4 * 1024 * 1024,
        ..Limits::default()
    };
    let _ = inspect(Cursor::new(data), &limits);
    let Ok(scratch) = tempfile::tempdir() else {
        return;
    };
    let dest = scratch.path().join("package");
    if std::fs::create_dir(&dest).is_err() {
        return;
    }
    let options = ExtractOptions {
        limits,
        enforce_path_rules: true,
    };
    let extracted = extract(Cursor::new(data), &dest, &options);
    let outside: Vec<_> = std::fs::read_dir(scratch.path())
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        outside,
        [std::ffi::OsString::from("package")],
        "written outside the package dir"
    );
    if let Ok(report) = extracted {
        assert_streaming_reader_agrees(data, &dest, &report);
    }
    let bundle = scratch.path().join("bundle");
    if std::fs::create_dir(&bundle).is_ok() && unbundle(Cursor::new(data), &bundle, &limits, None).is_ok() {
        assert_only_bundle_members(&bundle, "");
    }
}

/// Everything under `dir` (at `prefix` in the bundle) is a member a bundle may hold.
fn assert_only_bundle_members(dir: &Path, prefix: &str) {
    for entry in std::fs::read_dir(dir).expect("the unpacked bundle").flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        assert!(
            par_rules::bundle::is_member(&name, is_dir),
            "unbundle wrote `{name}`, which no bundle may hold"
        );
        if is_dir {
            assert_only_bundle_members(&entry.path(), &format!("{name}/"));
        }
    }
}

/// The entries a reader walking the local headers in order sees, stopping
/// at the first thing that is not a local header; `None` where such a reader
/// could not go on (an entry it cannot delimit or decode).
fn streamed_entries(data: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?));
    let mut entries = Vec::new();
    let mut at = 0usize;
    while data.get(at..at + 4) == Some(b"PK\x03\x04") {
        let (flags, method) = (u16_at(at + 6)?, u16_at(at + 8)?);
        let (name_len, extra_len) = (usize::from(u16_at(at + 26)?), usize::from(u16_at(at + 28)?));
        let name = data.get(at + 30..at + 30 + name_len)?.to_vec();
        let start = at + 30 + name_len + extra_len;
        let described = flags & 0x0008 != 0;
        let (content, consumed) = match method {
            0 if !described => {
                let size = usize::try_from(u32_at(at + 18)?).ok()?;
                (data.get(start..start.checked_add(size)?)?.to_vec(), size)
            }
            8 => {
                // Deflate delimits itself: what it consumes is the entry's data.
                let mut inflater = flate2::bufread::DeflateDecoder::new(data.get(start..)?);
                let mut content = Vec::new();
                inflater.read_to_end(&mut content).ok()?;
                let consumed = usize::try_from(inflater.total_in()).ok()?;
                (content, consumed)
            }
            _ => return None,
        };
        at = start + consumed;
        if described {
            if data.get(at..at + 4) == Some(b"PK\x07\x08") {
                at += 4;
            }
            at += 12;
        }
        entries.push((name, content));
    }
    Some(entries)
}

/// Everything par accepted, a streaming reader sees alike: the same entries,
/// in any order, each file with the bytes par wrote.
fn assert_streaming_reader_agrees(data: &[u8], dest: &Path, report: &ExtractReport) {
    let streamed = streamed_entries(data).expect("par accepted an archive a streaming reader cannot read");
    assert_eq!(
        streamed.len() as u64,
        u64::from(report.files) + u64::from(report.dirs),
        "a streaming reader sees another number of entries"
    );
    for (name, content) in streamed {
        let name = String::from_utf8(name).expect("par accepted a name that is not UTF-8");
        let path = dest.join(name.trim_end_matches('/'));
        if path.is_dir() {
            assert!(
                content.is_empty(),
                "`{name}` is a directory to par, a file with data to a stream"
            );
        } else {
            let written = std::fs::read(&path).unwrap_or_else(|e| panic!("`{name}`, streamed, was not extracted: {e}"));
            assert!(written == content, "`{name}` has other bytes when streamed");
        }
    }
}
