//! `pyproject.toml` on arbitrary bytes: the guest's reading of
//! `[build-system]` feeding the host's check of build requirements, and of
//! `[project].dependencies` feeding the host's line policy. Must return,
//! never panic or hang; a declared table stays within the sizes the WIT
//! promises, no requirement the host accepts for a shared build
//! environment is an option, a path or a URL, and every dependency line the
//! host accepts is as harmless as an accepted `requirements.txt` line.

use par::RequirementPolicy;
use par::requirements::{check_build_requirement, check_line};
use par_guest::build_system::{self, BuildSystem};
use par_guest::install_plan::project_dependencies;

/// One input.
pub(crate) fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(dependencies) = project_dependencies(text) {
        for (line, requirement) in dependencies {
            assert!(line >= 1 && !requirement.is_empty() && !requirement.starts_with('-'));
            if check_line(&requirement, RequirementPolicy::default()).is_ok() {
                super::requirements::assert_harmless(&requirement);
            }
        }
    }
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
