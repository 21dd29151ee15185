//! The paths par writes into files others read as code: an editable
//! wheel's `.pth` line and finder, a venv's activate scripts and uv's
//! scripts. Written as they are, never quoted, so only a path whose every
//! character means itself there is written at all.

use std::path::Path;

/// Whether `path` can be written into a `.pth` line, a Python string
/// literal and a shell script as it is: absolute, and only characters that
/// mean themselves in each.
pub(crate) fn is_plain_path(path: &Path) -> bool {
    path.to_str().is_some_and(|text| {
        text.starts_with('/')
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b'@' | b'='))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_paths_of_plain_characters_are_written_into_a_wheel() {
        for plain in [
            "/srv/par/trees/agent@1.0.0.ab12",
            par_rules::bundle::EDITABLE_TREE,
            "/a/b-c_d+e=f",
        ] {
            assert!(is_plain_path(Path::new(plain)), "{plain}");
        }
        for odd in [
            "relative/tree",
            "/it's",
            "/a\\b",
            "/a b",
            "/a\nb",
            "/caf\u{e9}",
            "/a\"b",
        ] {
            assert!(!is_plain_path(Path::new(odd)), "{odd:?}");
        }
    }
}
