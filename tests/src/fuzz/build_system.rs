//! `pyproject.toml`'s `[build-system]` on arbitrary bytes: the guest's TOML
//! reading feeding the host's check of build requirements. Must return,
//! never panic or hang; a declared table stays within the sizes the WIT
//! promises, and no requirement the host accepts for a shared build
//! environment is an option, a path or a URL.

use par::requirements::check_build_requirement;
use par_guest::build_system::{self, BuildSystem};

/// One input.
pub(crate) fn run(data: &[u8]) {
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
                super::requirements::assert_plain_named(requirement);
            }
        }
    }
}
