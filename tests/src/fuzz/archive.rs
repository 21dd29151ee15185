//! The extractor on arbitrary archive bytes, into a scratch directory: it must
//! return an error or a report, never panic, and never write outside.

use std::io::Cursor;

use par_guest::{ExtractOptions, Limits, extract, inspect};

/// One input.
pub fn run(data: &[u8]) {
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
    let _ = extract(Cursor::new(data), &dest, &options);
    let outside: Vec<_> = std::fs::read_dir(scratch.path())
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        outside,
        [std::ffi::OsString::from("package")],
        "written outside the package dir"
    );
}
