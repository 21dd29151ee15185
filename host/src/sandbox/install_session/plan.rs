//! The guest's install plan, checked before anything runs: no larger than
//! the guest's own limits allow, consistent with the published tree, and
//! every requirement line allowed by the host's policy.

use cap_std::fs::Dir;

use crate::fs::publish::MAX_EXECUTABLE_PATH_BYTES;
use crate::install::editable::BuildSystem;
use crate::install::requirements::{check_build_requirement, check_line};
use crate::install::resolve::Wanted;
use crate::sandbox::bindings::types::{BuildSystem as GuestBuildSystem, InstallPlan, Requirement, SelfInstall};
use crate::types::config::RequirementPolicy;
use crate::types::error::{GuestProtocolError, InstallCall, LoadError, PackageError, RefusedRequirement};
use par_rules::limits::{MAX_BACKEND_PATHS, MAX_BUILD_REQUIRES, MAX_REQUIREMENT_LINES, MAX_REQUIREMENTS_FILE_BYTES};
use par_rules::names::is_safe_component;

/// Longest string in a plan: no line of a requirements file the guest reads is longer.
const MAX_PLAN_STRING_BYTES: usize = MAX_REQUIREMENTS_FILE_BYTES as usize;

/// Refuses a plan larger than the guest's own limits allow, or one whose
/// self-install contradicts the published tree.
pub(super) fn check_plan(plan: &InstallPlan, tree: &Dir) -> Result<(), GuestProtocolError> {
    let call = InstallCall::EnsureVenv;
    let lines = plan.requirements.len() + plan.constraints.len();
    GuestProtocolError::check_size(call, "requirement lines", lines, MAX_REQUIREMENT_LINES)?;
    for line in plan.requirements.iter().chain(&plan.constraints) {
        GuestProtocolError::check_size(
            call,
            "a requirement line's bytes",
            line.text.len(),
            MAX_PLAN_STRING_BYTES,
        )?;
        GuestProtocolError::check_size(
            call,
            "a requirement file name's bytes",
            line.file.len(),
            MAX_EXECUTABLE_PATH_BYTES,
        )?;
    }
    match &plan.build_system {
        GuestBuildSystem::Declared(declared) => {
            GuestProtocolError::check_size(call, "build requirements", declared.requires.len(), MAX_BUILD_REQUIRES)?;
            GuestProtocolError::check_size(call, "backend paths", declared.backend_path.len(), MAX_BACKEND_PATHS)?;
            let strings = declared
                .requires
                .iter()
                .chain(&declared.backend_path)
                .chain(&declared.backend);
            for string in strings {
                GuestProtocolError::check_size(
                    call,
                    "a build-system string's bytes",
                    string.len(),
                    MAX_PLAN_STRING_BYTES,
                )?;
            }
        }
        GuestBuildSystem::Unreadable(why) => {
            GuestProtocolError::check_size(call, "a build-system message's bytes", why.len(), MAX_PLAN_STRING_BYTES)?;
        }
        GuestBuildSystem::Legacy => {}
    }
    let is_file = |name: &str| tree.symlink_metadata(name).is_ok_and(|m| m.is_file());
    let consistent = match plan.self_install {
        SelfInstall::SetupPy => is_file("setup.py"),
        SelfInstall::Pyproject => is_file("pyproject.toml") && !is_file("setup.py"),
        SelfInstall::None => !is_file("setup.py"),
    };
    if !consistent {
        return Err(GuestProtocolError::PlanMismatch(format!(
            "self-install `{:?}` with setup.py {} and pyproject.toml {}",
            plan.self_install,
            if is_file("setup.py") { "present" } else { "absent" },
            if is_file("pyproject.toml") { "present" } else { "absent" },
        )));
    }
    Ok(())
}

/// Checks each line against the policy; the first refusal names its file and line.
pub(super) fn checked_lines(
    lines: &[Requirement],
    policy: RequirementPolicy,
) -> Result<Vec<String>, RefusedRequirement> {
    lines
        .iter()
        .map(|r| {
            let safe_file = r.file.split('/').all(|c| is_safe_component(c, false));
            let verdict = if safe_file {
                check_line(&r.text, policy).map_err(|refusal| refusal.to_string())
            } else {
                Err("the file name is not a plain relative path".into())
            };
            verdict.map(|()| r.text.clone()).map_err(|reason| RefusedRequirement {
                file: r.file.clone(),
                line: r.line,
                text: r.text.chars().take(200).collect(),
                reason,
            })
        })
        .collect()
}

/// What the plan asks to have installed (`par lock`), checked as
/// `ensure-venv` checks it: the plan against the tree, every line against
/// the policy, and the build backend's requirements (those of setuptools'
/// legacy backend for a `setup.py` alone) as par's frontend takes them.
pub(crate) fn wanted(plan: &InstallPlan, tree: &Dir, policy: RequirementPolicy) -> Result<Wanted, LoadError> {
    check_plan(plan, tree)?;
    let requirements = checked_lines(&plan.requirements, policy).map_err(PackageError::RequirementsInvalid)?;
    let constraints = checked_lines(&plan.constraints, policy).map_err(PackageError::RequirementsInvalid)?;
    let build_system = build_system(plan).ok().flatten();
    let build_requires = build_system
        .as_ref()
        .map(|system| system.requires.clone())
        .unwrap_or_default();
    for (n, requirement) in build_requires.iter().enumerate() {
        check_build_requirement(requirement).map_err(|refusal| {
            PackageError::RequirementsInvalid(RefusedRequirement {
                file: "pyproject.toml".into(),
                line: n as u32 + 1,
                text: requirement.chars().take(200).collect(),
                reason: refusal.to_string(),
            })
        })?;
    }
    Ok(Wanted {
        requirements,
        constraints,
        build_requires,
        legacy_build: !matches!(plan.self_install, SelfInstall::None)
            && matches!(plan.build_system, GuestBuildSystem::Legacy),
        build_system,
    })
}

/// What the agent's self-install builds with: `None` for a package that
/// does not install itself, or the guest's reason it could not read one.
pub(super) fn build_system(plan: &InstallPlan) -> Result<Option<BuildSystem>, &str> {
    match (&plan.self_install, &plan.build_system) {
        (SelfInstall::None, _) => Ok(None),
        (_, GuestBuildSystem::Unreadable(why)) => Err(why),
        (_, GuestBuildSystem::Legacy) => Ok(Some(BuildSystem::setuptools_legacy())),
        (_, GuestBuildSystem::Declared(declared)) => Ok(Some(BuildSystem::declared(
            declared.requires.clone(),
            declared.backend.clone(),
            declared.backend_path.clone(),
        ))),
    }
}
