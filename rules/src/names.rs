//! Which names may become directory names, Python module paths or relative
//! paths inside a package.

use std::path::{Component, Path};

/// Longest package name, version or app id.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest dotted module path or attribute.
pub const MAX_DOTTED_BYTES: usize = 256;

/// Python's keywords: never a module or attribute name.
const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

/// A name usable as one directory-name component (`{name}@{version}`):
/// letters, digits, `.`, `_`, `-` (and `+` when `allow_plus`, for versions),
/// starting with a letter or digit, at most [`MAX_NAME_BYTES`].
pub fn is_safe_component(value: &str, allow_plus: bool) -> bool {
    let mut bytes = value.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    value.len() <= MAX_NAME_BYTES
        && first.is_ascii_alphanumeric()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') || (allow_plus && b == b'+'))
}

/// An ASCII Python identifier that is not a keyword.
pub fn is_identifier(text: &str) -> bool {
    let mut bytes = text.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !KEYWORDS.contains(&text)
}

/// `a.b.c`, each part an identifier, at most [`MAX_DOTTED_BYTES`].
pub fn is_dotted_identifier(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_DOTTED_BYTES && text.split('.').all(is_identifier)
}

/// An entrypoint passed to Python: a dotted module path and an optional
/// attribute that is one identifier.
pub fn is_entrypoint(module: &str, attr: Option<&str>) -> bool {
    is_dotted_identifier(module) && attr.is_none_or(|a| a.len() <= MAX_DOTTED_BYTES && is_identifier(a))
}

/// Most sockets (surfaces) an agent is given, or a package declares.
pub const MAX_SOCKETS: usize = 16;
/// Longest socket name.
pub const MAX_SOCKET_NAME_BYTES: usize = 64;

/// A socket's name (`rest`, `a2a`, `ui`): it becomes part of variable names
/// (`LISTEN_FDNAMES`, `PAR_PORT_<NAME>`), so letters, digits and `_` only.
pub fn is_socket_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SOCKET_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Most names in one list of a manifest's `permissions` or `data_access`.
pub const MAX_LABELS: usize = 256;
/// Longest name in those lists.
pub const MAX_LABEL_BYTES: usize = 256;

/// A name in `permissions` or `data_access` (a permission, a provider, an
/// API): shown to people and passed on, so non-empty, bounded and printable.
pub fn is_label(label: &str) -> bool {
    !label.is_empty() && label.len() <= MAX_LABEL_BYTES && !label.chars().any(char::is_control)
}

/// A relative path made only of normal components: it cannot leave the
/// directory it is joined to.
pub fn is_contained_relative(path: &str) -> bool {
    !path.is_empty() && !path.contains('\0') && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        assert!(is_safe_component("vivid-commenter", false));
        assert!(is_safe_component("1.0.1+build.7", true));
        assert!(!is_safe_component("1.0.1+build.7", false));
        for bad in ["", ".", "..", ".hidden", "a/b", "a@b", "a b", "-x", &"x".repeat(129)] {
            assert!(!is_safe_component(bad, true), "{bad:?}");
        }
    }

    #[test]
    fn identifiers_and_paths() {
        assert!(is_dotted_identifier("core.langchain_util"));
        assert!(!is_dotted_identifier("core;import os"));
        assert!(!is_dotted_identifier("a..b"));
        assert!(!is_dotted_identifier(".core"));
        assert!(!is_dotted_identifier("core..x"));
        assert!(!is_dotted_identifier("lambda"));
        assert!(!is_dotted_identifier("import"));
        assert!(!is_dotted_identifier("1abc"));
        assert!(!is_dotted_identifier("a b"));
        assert!(is_entrypoint("app.main", Some("agent")));
        assert!(is_entrypoint("app.main", None));
        assert!(!is_entrypoint("app.main", Some("a.b")));
        assert!(!is_entrypoint("app main", Some("agent")));
        assert!(is_contained_relative("bin/run.sh"));
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a", "a\0b"] {
            assert!(!is_contained_relative(bad), "{bad:?}");
        }
    }
}
