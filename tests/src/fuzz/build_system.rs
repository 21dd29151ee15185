//! `pyproject.toml`'s `[build-system]` on arbitrary bytes: the guest's TOML
//! reading feeding the host's check of build requirements. Must return,
//! never panic or hang; a declared table stays within the sizes the WIT
//! promises, and no requirement the host accepts for a shared build
//! environment is an option, a path or a URL.

use par::requirements::{RequirementPolicy, check_build_requirement, check_line};
use par_guest::build_system::{self, BuildSystem};

/// One input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let BuildSystem::Declared {
        requires,
        backend,
        backend_path,
    } = build_system::read(Some(text))
    {
        assert!(requires.len() <= 64 && backend_path.len() <= 16);
        assert!(
            requires
                .iter()
                .chain(&backend_path)
                .chain(&backend)
                .all(|s| s.len() <= 1024)
        );
        for requirement in &requires {
            if check_build_requirement(requirement).is_ok() {
                // Everything the requirements target checks holds for it too.
                assert!(
                    check_line(requirement, RequirementPolicy::default()).is_ok(),
                    "{requirement:?}"
                );
                assert!(
                    !requirement.starts_with('-') && !requirement.contains(" -"),
                    "{requirement:?}"
                );
                // Before any marker: a name, maybe extras, and no `@ URL`
                // (packaging's reading), nothing pip would take for a path.
                let head = requirement.split(';').next().unwrap_or("");
                assert!(!head.contains('/') && !head.starts_with('.'), "a path: {requirement:?}");
                let after_name = head.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || "._-".contains(c));
                let after_extras = match after_name.trim_start().strip_prefix('[') {
                    Some(rest) => rest.split_once(']').map_or("", |(_, r)| r),
                    None => after_name,
                };
                assert!(!after_extras.trim_start().starts_with('@'), "a URL: {requirement:?}");
            }
        }
    }
}
