//! One hostile archive per rejection rule, with the error each must produce.
//!
//! Shared by the library-level tests (typed errors) and the CLI tests (exit
//! code, JSON error), so both sides check the same catalogue.

use zip::CompressionMethod;

use crate::apkg::{AGENT_YAML, Apkg};
use crate::zip_bytes::ZipBytes;

/// What loading a hostile archive must end with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `PackageError::kind()`, e.g. `unsafe-entry`.
    pub kind: &'static str,
    /// The entry or field the error must name, if any.
    pub subject: Option<String>,
    /// Text the error message must contain (names the rule).
    pub needle: &'static str,
}

/// Limits a case needs instead of the defaults (to keep archives small).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    /// Replaces the total uncompressed budget.
    pub max_total_bytes: Option<u64>,
    /// Replaces the per-file budget.
    pub max_file_bytes: Option<u64>,
}

/// A named hostile archive and its expected refusal.
#[derive(Debug, Clone)]
pub struct HostileCase {
    /// Short name used in assertion messages.
    pub name: &'static str,
    /// The archive.
    pub apkg: Apkg,
    /// The refusal.
    pub expected: Expected,
    /// Non-default limits for this case.
    pub limits: LimitOverrides,
}

fn case(
    name: &'static str,
    apkg: Apkg,
    kind: &'static str,
    subject: Option<&str>,
    needle: &'static str,
) -> HostileCase {
    HostileCase {
        name,
        apkg,
        expected: Expected {
            kind,
            subject: subject.map(str::to_owned),
            needle,
        },
        limits: LimitOverrides::default(),
    }
}

fn unsafe_entry(name: &'static str, apkg: Apkg, entry: &str, needle: &'static str) -> HostileCase {
    case(name, apkg, "unsafe-entry", Some(entry), needle)
}

/// Bytes that deflate cannot shrink (a fixed pseudo-random sequence).
pub fn incompressible(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The full catalogue.
pub fn hostile_cases() -> Vec<HostileCase> {
    let base = Apkg::valid_agent;
    let mut pkware_link = vec![0u8; 12];
    pkware_link.extend_from_slice(b"/etc/passwd");
    let deep = vec!["d"; 33].join("/") + "/x.py";
    let long = format!("{}.py", "x".repeat(253));
    let mut cases = vec![
        unsafe_entry(
            "absolute path",
            base()
                .file("_escape-abs.txt", "x")
                .patch(b"_escape-abs.txt", b"/escape-abs.txt"),
            "/escape-abs.txt",
            "absolute path",
        ),
        unsafe_entry(
            "parent component",
            base()
                .file("xx/xx/escape-parent.txt", "x")
                .patch(b"xx/xx/escape-parent.txt", b"../../escape-parent.txt"),
            "../../escape-parent.txt",
            "`..` component",
        ),
        unsafe_entry(
            "current component",
            base().file("_/core.py", "x").patch(b"_/core.py", b"./core.py"),
            "./core.py",
            "`.` component",
        ),
        unsafe_entry(
            "empty component",
            base().file("core/_x.py", "x").patch(b"core/_x.py", b"core//x.py"),
            "core//x.py",
            "empty path component",
        ),
        unsafe_entry(
            "backslash",
            base()
                .file("xx_escape-bs.txt", "x")
                .patch(b"xx_escape-bs.txt", b"..\\escape-bs.txt"),
            "..\\escape-bs.txt",
            "backslash",
        ),
        unsafe_entry(
            "drive letter",
            base()
                .file("C_/escape-drive.txt", "x")
                .patch(b"C_/escape-drive.txt", b"C:/escape-drive.txt"),
            "C:/escape-drive.txt",
            "drive letter",
        ),
        unsafe_entry(
            "NUL character",
            base().file("evil_nul.py", "x").patch(b"evil_nul.py", b"evil\0nul.py"),
            "evil\\u{0}nul.py",
            "control character",
        ),
        unsafe_entry(
            "control character",
            base().file("evil_esc.py", "x").patch(b"evil_esc.py", b"evil\x1besc.py"),
            "evil\\u{1b}esc.py",
            "control character",
        ),
        unsafe_entry(
            "invalid UTF-8",
            base().file("evil_utf.py", "x").patch(b"evil_utf.py", b"evil\xffutf.py"),
            "evil\u{fffd}utf.py",
            "not UTF-8",
        ),
        unsafe_entry(
            "symlink",
            base().symlink("core/link.py", "/etc/passwd"),
            "core/link.py",
            "symbolic link",
        ),
        unsafe_entry(
            "hard link",
            base().file_with_extra_field("core/hard.py", b"", 0x000d, &pkware_link),
            "core/hard.py",
            "hard link",
        ),
        unsafe_entry("fifo", base().special("core/fifo", 0o010_644), "core/fifo", "fifo"),
        unsafe_entry(
            "character device",
            base().special("core/tty", 0o020_644),
            "core/tty",
            "character device",
        ),
        unsafe_entry(
            "block device",
            base().special("core/sda", 0o060_644),
            "core/sda",
            "block device",
        ),
        unsafe_entry("socket", base().special("core/sock", 0o140_644), "core/sock", "socket"),
        unsafe_entry(
            "duplicate name",
            base()
                .file("core/dupe_a.py", "a")
                .file("core/dupe_b.py", "b")
                .patch(b"core/dupe_b.py", b"core/dupe_a.py"),
            "core/dupe_a.py",
            "duplicate of `core/dupe_a.py`",
        ),
        unsafe_entry(
            "duplicate after case folding",
            base().file("core/Util.py", "a").file("core/util.py", "b"),
            "core/util.py",
            "duplicate of `core/Util.py`",
        ),
        unsafe_entry(
            "duplicate after NFC",
            base().file("core/caf\u{e9}.py", "a").file("core/cafe\u{301}.py", "b"),
            "core/cafe\u{301}.py",
            "duplicate of `core/caf\u{e9}.py`",
        ),
        unsafe_entry(
            "file shadowing a directory",
            base().file("core", "not a directory"),
            "core",
            "duplicate",
        ),
        unsafe_entry("encrypted entry", base().encrypted(), "agent.yaml", "encrypted"),
        unsafe_entry("path too deep", base().file(&deep, "x"), &deep, "too deep"),
        unsafe_entry("component too long", base().file(&long, "x"), &long, "too long"),
        case(
            "too many entries",
            (0..10_001).fold(base(), |apkg, i| apkg.file(&format!("many/{i}.py"), "")),
            "limit-exceeded",
            None,
            "entry count over 10000",
        ),
        case(
            "zip bomb (compression ratio)",
            base().file("core/bomb.bin", vec![0u8; 4 * 1024 * 1024]),
            "limit-exceeded",
            Some("core/bomb.bin"),
            "compression ratio over 100",
        ),
        case(
            "oversized manifest",
            Apkg::agent_with_manifest(&format!("{AGENT_YAML}# {}\n", "x".repeat(1024 * 1024))),
            "limit-exceeded",
            Some("agent.yaml"),
            "manifest size",
        ),
        case(
            "not a zip",
            Apkg::not_a_zip(),
            "archive-unreadable",
            None,
            "archive unreadable",
        ),
        case(
            "manifest missing",
            Apkg::new().file("setup.py", "").file("core/__init__.py", ""),
            "manifest-missing",
            None,
            "agent.yaml",
        ),
        case(
            "manifest without name",
            Apkg::agent_with_manifest("version: 1.0.0\n"),
            "manifest-invalid",
            Some("name"),
            "required",
        ),
        case(
            "manifest name escapes",
            Apkg::agent_with_manifest("name: ../../etc\nversion: 1.0.0\n"),
            "manifest-invalid",
            Some("name"),
            "must start with a letter or digit",
        ),
        case(
            "manifest with a YAML tag",
            Apkg::agent_with_manifest("name: a\nversion: '1'\nexploit: !!python/object:os.system ls\n"),
            "manifest-invalid",
            Some("exploit"),
            "tags are not allowed",
        ),
        case(
            "manifest alias bomb",
            Apkg::agent_with_manifest(&alias_bomb()),
            "manifest-invalid",
            None,
            "repetition limit",
        ),
        case(
            "manifest nested too deep",
            Apkg::agent_with_manifest(&format!(
                "name: a\nversion: '1'\nx: {}{}\n",
                "[".repeat(5000),
                "]".repeat(5000)
            )),
            "manifest-invalid",
            None,
            "recursion limit",
        ),
        case(
            "manifest entrypoint injection",
            Apkg::agent_with_manifest("name: a\nversion: '1'\nentrypoint: \"os;import sys:x\"\n"),
            "manifest-invalid",
            Some("entrypoint"),
            "not a dotted Python identifier",
        ),
    ];
    let mut total = case(
        "total size over budget",
        base()
            .file("data/a.bin", incompressible(600 * 1024))
            .file("data/b.bin", incompressible(600 * 1024)),
        "limit-exceeded",
        Some("data/b.bin"),
        "total uncompressed size over 1048576",
    );
    total.limits.max_total_bytes = Some(1024 * 1024);
    cases.push(total);
    let mut file = case(
        "file over budget",
        base().file("data/big.bin", incompressible(2 * 1024 * 1024)),
        "limit-exceeded",
        Some("data/big.bin"),
        "file size over 1048576",
    );
    file.limits.max_file_bytes = Some(1024 * 1024);
    cases.push(file);
    cases.extend(stored_cases());
    cases.extend(inconsistent_cases());
    cases
}

/// Bytes of `len` with a marker at their middle, for a patch to change.
fn marked(len: usize) -> Vec<u8> {
    let mut bytes = incompressible(len);
    bytes[len / 2..len / 2 + CRC_MARKER.len()].copy_from_slice(CRC_MARKER);
    bytes
}

/// Sixteen bytes found nowhere else in the archive; patched to [`CRC_FORGED`].
const CRC_MARKER: &[u8] = b"par-crc-marker-1";
const CRC_FORGED: &[u8] = b"par-crc-marker-2";

/// Stored entries, small (read by the guest) and big (copied by the host
/// for the guest): bytes that fail their CRC, and sizes over the limits,
/// refused the same way on both paths.
fn stored_cases() -> Vec<HostileCase> {
    let stored =
        |name: &str, bytes: Vec<u8>| Apkg::valid_agent().file_with_method(name, bytes, CompressionMethod::Stored);
    let mut cases = vec![
        unsafe_entry(
            "small stored entry whose bytes fail their CRC",
            stored("data/small.bin", marked(1024)).patch(CRC_MARKER, CRC_FORGED),
            "data/small.bin",
            "Invalid checksum",
        ),
        unsafe_entry(
            "big stored entry whose bytes fail their CRC",
            stored("data/big.bin", marked(3 * 1024 * 1024)).patch(CRC_MARKER, CRC_FORGED),
            "data/big.bin",
            "Invalid checksum",
        ),
    ];
    let mut file = case(
        "big stored file over budget",
        stored("data/big.bin", incompressible(2 * 1024 * 1024)),
        "limit-exceeded",
        Some("data/big.bin"),
        "file size over 1048576",
    );
    file.limits.max_file_bytes = Some(1024 * 1024);
    cases.push(file);
    let whole = stored("data/big.bin", incompressible(256 * 1024)).to_bytes();
    cases.push(case(
        "archive cut short inside a big stored entry",
        Apkg::from_bytes(whole[..whole.len() - 200 * 1024].to_vec()),
        "archive-unreadable",
        None,
        "no end of central directory record",
    ));
    let mut total = case(
        "big stored files over the total budget",
        stored("data/a.bin", incompressible(600 * 1024)).file_with_method(
            "data/b.bin",
            incompressible(600 * 1024),
            CompressionMethod::Stored,
        ),
        "limit-exceeded",
        Some("data/b.bin"),
        "total uncompressed size over 1048576",
    );
    total.limits.max_total_bytes = Some(1024 * 1024);
    cases.push(total);
    cases
}

/// The valid agent with two stored files at its end, whose bytes the
/// inconsistent cases edit.
pub fn layered() -> Apkg {
    Apkg::valid_agent()
        .file_with_method("core/a.py", "A = 1\n", CompressionMethod::Stored)
        .file_with_method("core/b.py", "B = 2\n", CompressionMethod::Stored)
}

/// The valid agent written by a streaming writer: data descriptors throughout.
pub fn streamed() -> Vec<u8> {
    Apkg::valid_agent().streamed()
}

/// Archives whose structures disagree, so that a reader starting from the
/// central directory and one walking the local headers would see different
/// files: each must be refused with its own reason.
fn inconsistent_cases() -> Vec<HostileCase> {
    let edited = |name: &'static str, bytes: Vec<u8>, edit: &dyn Fn(&mut ZipBytes), subject, needle| {
        let mut zip = ZipBytes(bytes);
        edit(&mut zip);
        case(name, Apkg::from_bytes(zip.0), "archive-inconsistent", subject, needle)
    };
    let layered = || layered().to_bytes();
    let xor_u32 = |zip: &mut ZipBytes, at: usize| {
        let value = zip.u32(at) ^ 1;
        zip.set_u32(at, value);
    };
    vec![
        edited(
            "local header names another file",
            layered(),
            &|zip| {
                let at = zip.local("core/a.py") + 30 + 5;
                zip.0[at] = b'c';
            },
            Some("core/a.py"),
            "name differs",
        ),
        edited(
            "local header with other flags",
            layered(),
            &|zip| {
                let at = zip.local("core/a.py") + 6;
                let flags = zip.u16(at) | 0x0002;
                zip.set_u16(at, flags);
            },
            Some("core/a.py"),
            "flags differ",
        ),
        edited(
            "local header with another method",
            layered(),
            &|zip| {
                let at = zip.local("core/a.py") + 8;
                zip.set_u16(at, 8);
            },
            Some("core/a.py"),
            "compression method differs",
        ),
        edited(
            "local header with another CRC",
            layered(),
            &|zip| xor_u32(zip, zip.local("core/a.py") + 14),
            Some("core/a.py"),
            "CRC-32 differs",
        ),
        edited(
            "local header with other sizes",
            layered(),
            &|zip| xor_u32(zip, zip.local("core/a.py") + 22),
            Some("core/a.py"),
            "sizes differ",
        ),
        edited(
            "data descriptor with another CRC",
            streamed(),
            &|zip| xor_u32(zip, zip.local_end("agent.yaml") + 4),
            Some("agent.yaml"),
            "data descriptor differs",
        ),
        case(
            "stored entry with a data descriptor",
            Apkg::from_bytes(
                Apkg::new()
                    .file("agent.yaml", AGENT_YAML)
                    .file_with_method("core/a.py", "A = 1\n", CompressionMethod::Stored)
                    .streamed(),
            ),
            "archive-inconsistent",
            Some("core/a.py"),
            "stored entry with a data descriptor",
        ),
        edited(
            "central entry without its local header",
            layered(),
            &|zip| {
                let at = zip.central("core/b.py") + 42;
                let offset = zip.u32(at) + 1;
                zip.set_u32(at, offset);
            },
            Some("core/b.py"),
            "no local header",
        ),
        edited(
            "local entry the central directory does not list",
            layered(),
            &|zip| {
                zip.unlist("core/b.py");
            },
            None,
            "does not list",
        ),
        edited(
            "overlapping entries",
            layered(),
            &|zip| {
                // core/a.py's data now runs over core/b.py's header and data.
                let data_start =
                    zip.local("core/a.py") + 30 + "core/a.py".len() + zip.u16(zip.local("core/a.py") + 28) as usize;
                let size = (zip.local_end("core/b.py") - data_start) as u32;
                for at in [zip.local("core/a.py") + 18, zip.local("core/a.py") + 22] {
                    zip.set_u32(at, size);
                }
                for at in [zip.central("core/a.py") + 20, zip.central("core/a.py") + 24] {
                    zip.set_u32(at, size);
                }
            },
            Some("core/b.py"),
            "overlap",
        ),
        edited(
            "bytes after the end record",
            layered(),
            &|zip| zip.0.extend_from_slice(b"trailing"),
            None,
            "after the end",
        ),
        edited(
            "end record with a wrong directory offset",
            layered(),
            &|zip| {
                let at = zip.eocd() + 16;
                let offset = zip.u32(at) - 1;
                zip.set_u32(at, offset);
            },
            None,
            "offset",
        ),
        edited(
            "archive behind a prefix",
            layered(),
            &|zip| {
                zip.0.splice(0..0, b"#!/bin/sh\nexit 0\n".iter().copied());
            },
            None,
            "offset",
        ),
        edited(
            "ZIP64 locator pointing off its record",
            layered(),
            &|zip| {
                zip.with_zip64(1);
            },
            None,
            "ZIP64 locator",
        ),
    ]
}

/// The "billion laughs" shape: nine levels of ten-fold aliases.
fn alias_bomb() -> String {
    let mut yaml = String::from("name: a\nversion: '1'\nl0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let prev = format!("*l{}", level - 1);
        let items = [prev.as_str(); 10].join(", ");
        yaml.push_str(&format!("l{level}: &l{level} [{items}]\n"));
    }
    yaml
}
