//! What an offline bundle (`.parb`) may hold, by entry name: the rule the
//! guest applies while it unpacks one, and the host again on what it finds.
//!
//! A bundle is a zip archive of exactly these members: the agent package,
//! its signature when the bundle was made with a key, the lock of what it
//! installs, the lock of its build environment when it builds, its SBOM,
//! under `wheels/` every file the locks name, each by its own file name, and
//! under `editable/` the agent's own editable wheel when `par bundle` could
//! build it, so a load installs it without running the build backend.

use crate::limits::MAX_COMPONENT_BYTES;

/// The agent package, as it was given to `par bundle`.
pub const PACKAGE: &str = "agent.apkg";
/// The package's detached minisign signature.
pub const PACKAGE_SIGNATURE: &str = "agent.apkg.minisig";
/// What the package installs (PEP 751).
pub const LOCK: &str = "pylock.toml";
/// What its build environment installs (PEP 751).
pub const BUILD_LOCK: &str = "pylock.build.toml";
/// The CycloneDX SBOM of the lock.
pub const SBOM: &str = "sbom.cdx.json";
/// The directory of the distribution files the locks name.
pub const FILES_DIR: &str = "wheels";

/// The directory of the agent's editable wheel, built once by `par bundle`:
/// at most one wheel, whose files name the package's tree as
/// [`EDITABLE_TREE`].
pub const EDITABLE_DIR: &str = "editable";
/// Where the editable wheel in [`EDITABLE_DIR`] says the package's tree is:
/// a load replaces it with the tree it publishes. Written where the build
/// wrote the tree it built from, so the same package makes the same bytes.
pub const EDITABLE_TREE: &str = "/.par-bundled-agent-tree";

/// The file name extension that marks a bundle (`AGENT.parb`).
pub const EXTENSION: &str = "parb";

/// Whether `path` names a bundle rather than a package: its extension.
pub fn is_bundle_path(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|extension| extension == EXTENSION)
}

/// The members a bundle may hold besides [`FILES_DIR`]'s files.
pub const MEMBERS: [&str; 5] = [PACKAGE, PACKAGE_SIGNATURE, LOCK, BUILD_LOCK, SBOM];

/// The file name endings of a distribution file: a wheel, or an sdist.
const DISTRIBUTION_SUFFIXES: [&str; 3] = [".whl", ".tar.gz", ".zip"];

/// Whether `relative` (an entry name with any trailing `/` removed) is a
/// member a bundle may hold: one of [`MEMBERS`] (a file), [`FILES_DIR`]
/// or [`EDITABLE_DIR`] (a directory), a distribution file directly under
/// the first, or a wheel directly under the second.
pub fn is_member(relative: &str, is_dir: bool) -> bool {
    if is_dir {
        return relative == FILES_DIR || relative == EDITABLE_DIR;
    }
    if MEMBERS.contains(&relative) {
        return true;
    }
    let under = |dir: &str| relative.strip_prefix(dir).and_then(|rest| rest.strip_prefix('/'));
    under(FILES_DIR).is_some_and(is_distribution_file_name) || under(EDITABLE_DIR).is_some_and(is_wheel_file_name)
}

/// Whether `name` can be a wheel's file name: a distribution file's name
/// ending in `.whl`.
pub fn is_wheel_file_name(name: &str) -> bool {
    is_distribution_file_name(name) && name.ends_with(".whl")
}

/// Whether `name` can be a distribution file's name: one component of
/// letters, digits, `.`, `_`, `-`, `+` and `!`, starting with a letter or
/// digit, ending in `.whl`, `.tar.gz` or `.zip`.
pub fn is_distribution_file_name(name: &str) -> bool {
    name.len() <= MAX_COMPONENT_BYTES
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'!'))
        && DISTRIBUTION_SUFFIXES
            .iter()
            .any(|suffix| name.len() > suffix.len() && name.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_members_and_distribution_files_belong() {
        for member in MEMBERS {
            assert!(is_member(member, false), "{member}");
            assert!(!is_member(member, true), "{member} as a directory");
        }
        assert!(is_member("wheels", true));
        assert!(is_member("wheels/requests-2.31.0-py3-none-any.whl", false));
        assert!(is_member("wheels/torch-2.1.0+cpu-cp311-cp311-linux_x86_64.whl", false));
        assert!(is_member("wheels/pkg-1.0.tar.gz", false));
        assert!(is_member("editable", true));
        assert!(is_member("editable/agent-1.0-0.editable-py3-none-any.whl", false));
        for refused in [
            "wheels",
            "agent.yaml",
            "wheels/sub/x.whl",
            "wheels/.hidden.whl",
            "wheels/x.py",
            "wheels/.whl",
            "wheels/a b.whl",
            "other/x.whl",
            "wheelsx.whl",
            "editable",
            "editable/pkg-1.0.tar.gz",
            "editable/sub/x.whl",
            "editable/.x.whl",
        ] {
            assert!(!is_member(refused, false), "{refused}");
        }
        assert!(!is_member("other", true));
        assert!(!is_distribution_file_name(&format!(
            "{}.whl",
            "a".repeat(MAX_COMPONENT_BYTES)
        )));
    }
}
