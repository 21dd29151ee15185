//! Path rules for archive entry names.
//!
//! An entry name is accepted only if it is a plain relative path whose every
//! component is an ordinary file name. Nothing is renamed or "sanitised": a
//! name that needs fixing is refused, so what lands on disk is exactly what the
//! archive says.

use crate::error::EntryProblem;
use crate::limits::{MAX_COMPONENT_BYTES, MAX_PATH_DEPTH};

/// An entry name that passed every rule: relative, no `.`/`..`, no separators other than `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath {
    components: Vec<String>,
    is_dir: bool,
}

impl SafePath {
    /// The components, root first; never empty.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// Whether the name ended with `/` (a directory entry).
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }

    /// The path joined with `/`, without a trailing slash.
    pub fn as_relative(&self) -> String {
        self.components.join("/")
    }
}

/// Checks an entry's raw name against every path rule and returns its components.
pub fn check_entry_name(raw: &[u8]) -> Result<SafePath, EntryProblem> {
    let name = std::str::from_utf8(raw).map_err(|_| EntryProblem::NotUtf8)?;
    if name.chars().any(is_forbidden_char) {
        return Err(EntryProblem::ControlCharacter);
    }
    if name.contains('\\') {
        return Err(EntryProblem::Backslash);
    }
    if name.starts_with('/') {
        return Err(EntryProblem::AbsolutePath);
    }
    let (body, is_dir) = match name.strip_suffix('/') {
        Some(body) => (body, true),
        None => (name, false),
    };
    if body.is_empty() {
        return Err(EntryProblem::EmptyComponent);
    }
    let mut components = Vec::new();
    for (index, component) in body.split('/').enumerate() {
        match component {
            "" => return Err(EntryProblem::EmptyComponent),
            "." => return Err(EntryProblem::CurrentComponent),
            ".." => return Err(EntryProblem::ParentComponent),
            _ => {}
        }
        if index == 0 && is_drive_prefix(component) {
            return Err(EntryProblem::DriveLetter);
        }
        if component.len() > MAX_COMPONENT_BYTES {
            return Err(EntryProblem::ComponentTooLong);
        }
        components.push(component.to_owned());
        if components.len() > MAX_PATH_DEPTH {
            return Err(EntryProblem::TooDeep);
        }
    }
    Ok(SafePath { components, is_dir })
}

/// NUL, C0 and C1 control characters and DEL: never part of an honest file name.
fn is_forbidden_char(c: char) -> bool {
    c.is_control()
}

/// `C:` or `c:anything`: a Windows drive prefix, which would make the path absolute there.
fn is_drive_prefix(component: &str) -> bool {
    let bytes = component.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// Renders a raw entry name for messages: lossy UTF-8 with control characters escaped,
/// so a hostile name cannot forge log lines or terminal sequences.
pub fn display_name(raw: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(lossy.len());
    for c in lossy.chars().take(512) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(name: &[u8]) -> EntryProblem {
        check_entry_name(name).expect_err("name should be refused")
    }

    #[test]
    fn accepts_plain_relative_names() {
        let path = check_entry_name(b"core/langchain_util.py").expect("valid");
        assert_eq!(path.components(), ["core", "langchain_util.py"]);
        assert!(!path.is_dir());
        let dir = check_entry_name(b"ui/static/").expect("valid");
        assert!(dir.is_dir());
        assert_eq!(dir.as_relative(), "ui/static");
        assert!(check_entry_name("donnée/été.py".as_bytes()).is_ok());
        assert!(check_entry_name(b"ab:c").is_ok_and(|p| p.components() == ["ab:c"]));
    }

    #[test]
    fn refuses_each_unsafe_shape() {
        assert_eq!(problem(b"/etc/passwd"), EntryProblem::AbsolutePath);
        assert_eq!(problem(b"../evil.py"), EntryProblem::ParentComponent);
        assert_eq!(problem(b"core/../../evil.py"), EntryProblem::ParentComponent);
        assert_eq!(problem(b"./core.py"), EntryProblem::CurrentComponent);
        assert_eq!(problem(b"core//x.py"), EntryProblem::EmptyComponent);
        assert_eq!(problem(b""), EntryProblem::EmptyComponent);
        assert_eq!(problem(b"/"), EntryProblem::AbsolutePath);
        assert_eq!(problem(b"core\\x.py"), EntryProblem::Backslash);
        assert_eq!(problem(b"C:/Windows/x"), EntryProblem::DriveLetter);
        assert_eq!(problem(b"c:x"), EntryProblem::DriveLetter);
        assert_eq!(problem(b"a\0b"), EntryProblem::ControlCharacter);
        assert_eq!(problem(b"a\x1b[31mb"), EntryProblem::ControlCharacter);
        assert_eq!(problem(b"a\x7fb"), EntryProblem::ControlCharacter);
        assert_eq!(problem("a\u{85}b".as_bytes()), EntryProblem::ControlCharacter);
        assert_eq!(problem(b"\xff\xfe"), EntryProblem::NotUtf8);
    }

    #[test]
    fn enforces_depth_and_component_length() {
        let deep_ok = vec!["d"; MAX_PATH_DEPTH].join("/");
        assert!(check_entry_name(deep_ok.as_bytes()).is_ok());
        let too_deep = vec!["d"; MAX_PATH_DEPTH + 1].join("/");
        assert_eq!(problem(too_deep.as_bytes()), EntryProblem::TooDeep);
        let long_ok = "x".repeat(MAX_COMPONENT_BYTES);
        assert!(check_entry_name(long_ok.as_bytes()).is_ok());
        let too_long = "x".repeat(MAX_COMPONENT_BYTES + 1);
        assert_eq!(problem(too_long.as_bytes()), EntryProblem::ComponentTooLong);
    }

    #[test]
    fn display_name_escapes_controls() {
        assert_eq!(display_name(b"a\nb\x1b"), "a\\nb\\u{1b}");
        assert_eq!(display_name(b"ok/\xff"), "ok/\u{fffd}");
    }

    proptest::proptest! {
        /// No accepted name can resolve outside the root, whatever bytes it holds.
        #[test]
        fn accepted_names_stay_inside_the_root(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Ok(path) = check_entry_name(&raw) {
                let mut depth: i64 = 0;
                for component in path.components() {
                    proptest::prop_assert!(component != ".." && component != "." && !component.is_empty());
                    proptest::prop_assert!(!component.contains('/') && !component.contains('\\'));
                    depth += 1;
                }
                proptest::prop_assert!(depth >= 1);
                let joined = std::path::Path::new("/root").join(path.as_relative());
                proptest::prop_assert!(joined.starts_with("/root"));
                proptest::prop_assert!(joined.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_))));
            }
        }

        /// Names built from a path-ish alphabet exercise `.`, `..`, `/` and `\` far more often.
        #[test]
        fn pathish_names_never_escape(raw in "[a./\\\\:]{0,24}") {
            if let Ok(path) = check_entry_name(raw.as_bytes()) {
                let joined = std::path::Path::new("/root").join(path.as_relative());
                proptest::prop_assert!(joined.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_))));
                proptest::prop_assert!(joined.starts_with("/root"));
            }
        }
    }
}
