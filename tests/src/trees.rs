//! Comparing directory trees entry by entry.

use std::fs;
use std::path::Path;

/// Every entry of `expected` missing or different in `actual` (kind, mode,
/// link target, bytes); entries only `actual` has are not looked at.
pub fn differences(expected: &Path, actual: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut found = Vec::new();
    for entry in fs::read_dir(expected).expect("list").flatten() {
        let (want, got) = (entry.path(), actual.join(entry.file_name()));
        let (Ok(want_meta), Ok(got_meta)) = (fs::symlink_metadata(&want), fs::symlink_metadata(&got)) else {
            found.push(format!("{} missing", got.display()));
            continue;
        };
        let kind = |meta: &fs::Metadata| (meta.is_dir(), meta.is_file(), meta.file_type().is_symlink());
        if kind(&want_meta) != kind(&got_meta) || want_meta.permissions().mode() != got_meta.permissions().mode() {
            found.push(format!("{}: kind or mode", got.display()));
        } else if want_meta.file_type().is_symlink() {
            if fs::read_link(&want).ok() != fs::read_link(&got).ok() {
                found.push(format!("{}: link target", got.display()));
            }
        } else if want_meta.is_dir() {
            found.extend(differences(&want, &got));
        } else if fs::read(&want).expect("read") != fs::read(&got).expect("read") {
            found.push(format!("{}: contents", got.display()));
        }
    }
    found
}
