//! The host's policy for requirement lines.
//!
//! The guest hands over `requirements.txt` as checked-nothing text lines; the
//! host decides here which ones reach the installer. Refused unless the host
//! configuration allows them: options that change where packages come from
//! (`--index-url`, `--extra-index-url`, `--no-index`, `--find-links`,
//! `--trusted-host`) and direct URLs. Always refused: `-r`/`-c` (the guest
//! inlines includes), paths that are absolute or climb out of the package,
//! control characters, and every option not on the allow-list.

use std::path::{Component, Path};

/// What the operator allows beyond the safe default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequirementPolicy {
    /// Let packages name their own index or find-links locations.
    pub allow_index_options: bool,
    /// Let packages install from URLs (`pkg @ https://…`, `git+https://…`).
    pub allow_direct_urls: bool,
}

/// Options that change where packages come from.
const INDEX_OPTIONS: &[&str] = &[
    "-i",
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "-f",
    "--find-links",
    "--trusted-host",
];
/// Options harmless to let a package choose.
const SAFE_OPTIONS: &[&str] = &[
    "--pre",
    "--prefer-binary",
    "--only-binary",
    "--no-binary",
    "--require-hashes",
];

/// Checks one logical line; the error says why it is refused.
pub fn check_line(line: &str, policy: RequirementPolicy) -> Result<(), String> {
    if line.chars().any(char::is_control) {
        return Err("control characters are not allowed".into());
    }
    let (first, rest) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
        Some((first, rest)) if line.starts_with('-') => (first, rest.trim()),
        _ => (line, ""),
    };
    if line.starts_with('-') {
        return check_option(first, rest, policy);
    }
    let (requirement, hashes) = match line.find(" --") {
        Some(at) => (line[..at].trim(), line[at..].trim()),
        None => (line.trim(), ""),
    };
    for option in hashes.split_whitespace() {
        if !(option.starts_with("--hash=") || option.starts_with("sha256:") || option == "--hash") {
            return Err(format!("option `{option}` is not allowed after a requirement"));
        }
    }
    check_requirement(requirement, policy)
}

fn check_option(name: &str, value: &str, policy: RequirementPolicy) -> Result<(), String> {
    match name {
        "-r" | "--requirement" | "-c" | "--constraint" => {
            Err("includes must be resolved inside the package before they reach the host".into())
        }
        "-e" | "--editable" => check_local_path(value, false),
        _ if INDEX_OPTIONS.contains(&name) => {
            if policy.allow_index_options {
                Ok(())
            } else {
                Err(format!(
                    "`{name}` would change where packages come from; the host configuration does not allow it"
                ))
            }
        }
        _ if SAFE_OPTIONS.contains(&name) => Ok(()),
        _ => Err(format!("option `{name}` is not allowed")),
    }
}

fn is_direct_url(requirement: &str) -> bool {
    requirement.contains("://")
        || ["git+", "hg+", "svn+", "bzr+", "file:"]
            .iter()
            .any(|p| requirement.starts_with(p))
        || requirement
            .split_once('@')
            .is_some_and(|(_, after)| after.contains(':'))
}

fn looks_like_path(requirement: &str) -> bool {
    requirement.starts_with('.')
        || requirement.starts_with('/')
        || requirement.contains('/')
        || requirement.contains('\\')
        || [".whl", ".tar.gz", ".zip", ".tgz"]
            .iter()
            .any(|ext| requirement.ends_with(ext))
}

fn check_requirement(requirement: &str, policy: RequirementPolicy) -> Result<(), String> {
    if is_direct_url(requirement) {
        return if policy.allow_direct_urls {
            Ok(())
        } else {
            Err("direct URLs are not allowed by the host configuration".into())
        };
    }
    if looks_like_path(requirement) {
        return check_local_path(requirement, true);
    }
    let name_ok = requirement.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if name_ok {
        Ok(())
    } else {
        Err("not a requirement specifier".into())
    }
}

/// A local path must be relative and stay inside the package (the installer
/// runs with the package as its working directory). The path is cut the way
/// pip cuts it: environment markers after the first `;` (not for `-e`,
/// whose value pip takes whole), then extras only when the rest ends in
/// `[…]` (so `a[x]/../../b` is a path that climbs out, not `a` with extras).
fn check_local_path(path: &str, markers: bool) -> Result<(), String> {
    let path = match markers {
        true => path.split_once(';').map_or(path, |(p, _)| p).trim(),
        false => path.trim(),
    };
    let path = match path.strip_suffix(']').and_then(|p| p.rsplit_once('[')) {
        Some((p, extras)) if !extras.contains(']') => p.trim(),
        _ => path,
    };
    if path.is_empty() || path.contains('\\') || path.contains("://") {
        return Err("not a usable local path".into());
    }
    let inside = Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if inside {
        Ok(())
    } else {
        Err("local paths must stay inside the package".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &str) -> String {
        check_line(line, RequirementPolicy::default()).expect_err(line)
    }

    #[test]
    fn ordinary_requirements_pass() {
        for line in [
            "requests",
            "fastapi==0.110.0",
            "pydantic[email]>=2,<3",
            "uvicorn ; python_version >= \"3.8\"",
            "./vendor/helper",
            "vendor/helper-1.0-py3-none-any.whl",
            "-e ./vendor/editable",
            "--prefer-binary",
            "httpx==0.27.0 --hash=sha256:abc123",
        ] {
            assert_eq!(check_line(line, RequirementPolicy::default()), Ok(()), "{line}");
        }
    }

    #[test]
    fn risky_lines_are_refused_with_a_reason() {
        assert!(refused("--index-url https://evil.example/simple").contains("where packages come from"));
        assert!(refused("-i https://evil.example/simple").contains("where packages come from"));
        assert!(refused("--extra-index-url=https://evil.example").contains("where packages come from"));
        assert!(refused("--find-links /tmp/wheels").contains("where packages come from"));
        assert!(refused("--trusted-host evil.example").contains("where packages come from"));
        assert!(refused("evil @ https://evil.example/evil.whl").contains("direct URLs"));
        assert!(refused("git+https://evil.example/repo.git").contains("direct URLs"));
        assert!(refused("../outside").contains("inside the package"));
        assert!(refused("/etc/passwd").contains("inside the package"));
        assert!(refused("-e ../../outside").contains("inside the package"));
        // Found by the requirements fuzz target: extras cut at the first `[`
        // hid a path that climbs out.
        assert!(refused("a[x]/../../outside").contains("inside the package"));
        assert!(refused("-e vendor[x]/../../../outside").contains("inside the package"));
        assert!(refused("-r other.txt").contains("includes"));
        assert!(refused("--global-option=--evil").contains("not allowed"));
        assert!(refused("requests --install-option=x").contains("not allowed"));
    }

    #[test]
    fn configuration_can_allow_indexes_and_urls() {
        let open = RequirementPolicy {
            allow_index_options: true,
            allow_direct_urls: true,
        };
        assert_eq!(check_line("--index-url https://mirror.example/simple", open), Ok(()));
        assert_eq!(check_line("pkg @ https://mirror.example/pkg.whl", open), Ok(()));
        assert!(check_line("../outside", open).is_err());
    }
}
