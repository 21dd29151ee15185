//! The host's own checks on values that come back from the guest.
//!
//! The guest applies the same rules, but the guest runs untrusted input and
//! could be wrong or subverted; the host re-checks before using a value in a
//! path or a command line.

use std::path::{Component, Path};

/// Longest name, version or app id accepted.
const MAX_COMPONENT: usize = 128;

/// A name usable as one directory-name component: letters, digits, `.`, `_`, `-`
/// (and `+` when `allow_plus`), starting with a letter or digit.
pub fn is_safe_component(value: &str, allow_plus: bool) -> bool {
    let mut bytes = value.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    value.len() <= MAX_COMPONENT
        && first.is_ascii_alphanumeric()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') || (allow_plus && b == b'+'))
}

/// `a.b.c`, each part an ASCII Python identifier that is not a keyword.
pub fn is_dotted_identifier(value: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
        "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
        "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
    ];
    !value.is_empty()
        && value.len() <= 256
        && value.split('.').all(|part| {
            let mut bytes = part.bytes();
            bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !KEYWORDS.contains(&part)
        })
}

/// An entrypoint the host will pass to Python: a dotted module path and an
/// optional attribute that is a single identifier.
pub fn is_entrypoint(module: &str, attr: Option<&str>) -> bool {
    is_dotted_identifier(module) && attr.is_none_or(|a| !a.contains('.') && is_dotted_identifier(a))
}

/// A relative path made only of normal components: it cannot leave the directory it is joined to.
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
        assert!(!is_dotted_identifier("lambda"));
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
