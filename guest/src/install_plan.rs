//! The install plan: what the package asks to have installed, read from its
//! extracted tree. `requirements.txt` is parsed here (continuations joined,
//! comments dropped, `-r`/`-c` files inlined) so the host receives plain
//! lines it can check one by one, and never has to read the file itself.
//! So are the static `[project].dependencies` of `pyproject.toml` (PAK ships
//! it instead of `requirements.txt`): each becomes a line of the plan, named
//! by its line in `pyproject.toml`, checked and installed as any other.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::build_system::{self, BuildSystem};
use crate::error::GuestError;

/// Largest requirements or pyproject file read.
const MAX_FILE_BYTES: u64 = par_rules::limits::MAX_REQUIREMENTS_FILE_BYTES;
/// Deepest chain of `-r` includes followed.
const MAX_INCLUDE_DEPTH: usize = 8;
/// Most requirement lines accepted in total.
const MAX_LINES: usize = par_rules::limits::MAX_REQUIREMENT_LINES;

/// One logical requirement line and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// File relative to the package root.
    pub file: String,
    /// 1-based line number of the line's start.
    pub line: u32,
    /// The text, trimmed, comments removed.
    pub text: String,
}

/// How the agent itself gets installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfInstall {
    /// No build files: an old package, loaded without being installed.
    None,
    /// `setup.py` at the root.
    SetupPy,
    /// `pyproject.toml` with a `[build-system]` or `[project]` table.
    Pyproject,
}

/// Everything the guest asks the host to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPlan {
    /// Requirements, in file order, includes inlined.
    pub requirements: Vec<Requirement>,
    /// Constraints from `-c` files.
    pub constraints: Vec<Requirement>,
    /// How the agent is installed.
    pub self_install: SelfInstall,
    /// How the agent's editable wheel is built.
    pub build_system: BuildSystem,
}

/// Reads the plan from an extracted package tree.
pub fn plan(tree: &Path) -> Result<InstallPlan, GuestError> {
    let mut plan = InstallPlan {
        requirements: Vec::new(),
        constraints: Vec::new(),
        self_install: SelfInstall::None,
        build_system: BuildSystem::Legacy,
    };
    if is_regular_file(&tree.join("requirements.txt")) {
        let mut chain = Vec::new();
        collect(tree, "requirements.txt", false, &mut chain, &mut plan)?;
    }
    let pyproject = tree.join("pyproject.toml");
    let pyproject = if is_regular_file(&pyproject) {
        Some(read_bounded(&pyproject, "pyproject.toml", 0)?)
    } else {
        None
    };
    plan.self_install = if is_regular_file(&tree.join("setup.py")) {
        SelfInstall::SetupPy
    } else if pyproject.as_deref().is_some_and(pyproject_is_installable) {
        SelfInstall::Pyproject
    } else {
        SelfInstall::None
    };
    plan.build_system = build_system::read(pyproject.as_deref());
    if let Some(text) = &pyproject {
        for (line, text) in project_dependencies(text)? {
            plan.requirements.push(Requirement {
                file: PYPROJECT.to_owned(),
                line,
                text,
            });
            if plan.requirements.len() + plan.constraints.len() > MAX_LINES {
                return Err(invalid(
                    PYPROJECT,
                    line,
                    "",
                    format!("more than {MAX_LINES} requirement lines"),
                ));
            }
        }
    }
    Ok(plan)
}

const PYPROJECT: &str = "pyproject.toml";

#[derive(serde::Deserialize)]
struct ProjectFile {
    project: Option<Project>,
}

#[derive(serde::Deserialize)]
struct Project {
    dependencies: Option<toml::Spanned<toml::Value>>,
    dynamic: Option<Vec<String>>,
}

/// `[project].dependencies`, each with its 1-based line: none when the file
/// is not TOML (the installer reports that when it builds the agent), has
/// no `[project]` table, or leaves the dependencies to the build backend
/// (`dynamic`). Each must be a PEP 508 string, never an installer option.
pub fn project_dependencies(text: &str) -> Result<Vec<(u32, String)>, GuestError> {
    let Ok(ProjectFile { project: Some(project) }) = toml::from_str::<ProjectFile>(text) else {
        return Ok(Vec::new());
    };
    let Some(dependencies) = project.dependencies else {
        return Ok(Vec::new());
    };
    if project.dynamic.iter().flatten().any(|field| field == "dependencies") {
        return Err(invalid(
            PYPROJECT,
            line_at(text, dependencies.span().start),
            "dependencies",
            "`dependencies` is both given and `dynamic`",
        ));
    }
    let line = line_at(text, dependencies.span().start);
    let toml::Value::Array(items) = dependencies.into_inner() else {
        return Err(invalid(
            PYPROJECT,
            line,
            "dependencies",
            "[project].dependencies must be a list of strings",
        ));
    };
    if items.len() > MAX_LINES {
        return Err(invalid(
            PYPROJECT,
            line,
            "",
            format!("more than {MAX_LINES} requirement lines"),
        ));
    }
    // The values carry no spans of their own: find each string in the
    // file, after the one before it, for its line.
    let mut from = 0;
    let mut read = Vec::with_capacity(items.len());
    for item in items {
        let toml::Value::String(requirement) = item else {
            return Err(invalid(
                PYPROJECT,
                line,
                "dependencies",
                "[project].dependencies must be a list of strings",
            ));
        };
        let at = text
            .get(from..)
            .and_then(|rest| rest.find(requirement.as_str()))
            .map_or(from, |i| from + i);
        from = at + requirement.len();
        let line = line_at(text, at);
        let requirement = requirement.trim().to_owned();
        if requirement.is_empty() || requirement.starts_with('-') {
            return Err(invalid(PYPROJECT, line, &requirement, "not a PEP 508 requirement"));
        }
        read.push((line, requirement));
    }
    Ok(read)
}

/// The 1-based line of byte `at` in `text`.
fn line_at(text: &str, at: usize) -> u32 {
    let before = text.get(..at).unwrap_or(text);
    u32::try_from(before.matches('\n').count() + 1).unwrap_or(u32::MAX)
}

fn is_regular_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// A `pyproject.toml` describes an installable project when it has a
/// `[build-system]` or `[project]` table (PEP 517/621); tool-only files do not.
/// Read line by line, so a file that is not valid TOML still goes to the
/// installer, which reports what is wrong with it.
fn pyproject_is_installable(text: &str) -> bool {
    text.lines().any(|line| {
        let table: String = line
            .split('#')
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        table == "[build-system]" || table == "[project]"
    })
}

fn invalid(file: &str, line: u32, text: &str, reason: impl Into<String>) -> GuestError {
    GuestError::RequirementsInvalid {
        file: file.to_owned(),
        line,
        text: text.chars().take(200).collect(),
        reason: reason.into(),
    }
}

fn read_bounded(path: &Path, relative: &str, line: u32) -> Result<String, GuestError> {
    let file = fs::File::open(path).map_err(|e| invalid(relative, line, "", format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(relative, line, "", format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(invalid(
            relative,
            line,
            "",
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    String::from_utf8(bytes).map_err(|_| invalid(relative, line, "", "not UTF-8"))
}

/// Reads one requirements file, appending its lines and inlining includes.
fn collect(
    tree: &Path,
    relative: &str,
    constraints: bool,
    chain: &mut Vec<String>,
    plan: &mut InstallPlan,
) -> Result<(), GuestError> {
    chain.push(relative.to_owned());
    let text = read_bounded(&tree.join(relative), relative, 0)?;
    for (line, logical) in logical_lines(&text) {
        if let Some((include, as_constraints)) = include_target(&logical) {
            let target = resolve_include(relative, include).ok_or_else(|| {
                invalid(
                    relative,
                    line,
                    &logical,
                    "includes may only name files inside the package",
                )
            })?;
            if chain.contains(&target) {
                return Err(invalid(relative, line, &logical, "includes form a cycle"));
            }
            if chain.len() >= MAX_INCLUDE_DEPTH {
                return Err(invalid(relative, line, &logical, "includes nested too deep"));
            }
            if !is_regular_file(&tree.join(&target)) {
                return Err(invalid(
                    relative,
                    line,
                    &logical,
                    "included file not found in the package",
                ));
            }
            collect(tree, &target, constraints || as_constraints, chain, plan)?;
            continue;
        }
        let list = if constraints {
            &mut plan.constraints
        } else {
            &mut plan.requirements
        };
        list.push(Requirement {
            file: relative.to_owned(),
            line,
            text: logical,
        });
        if plan.requirements.len() + plan.constraints.len() > MAX_LINES {
            return Err(invalid(
                relative,
                line,
                "",
                format!("more than {MAX_LINES} requirement lines"),
            ));
        }
    }
    chain.pop();
    Ok(())
}

/// Joins `\` continuations, strips comments and blank lines; numbers are 1-based.
pub fn logical_lines(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(u32, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let (start, mut joined) = pending.take().unwrap_or((number, String::new()));
        if let Some(body) = raw.strip_suffix('\\') {
            joined.push_str(body);
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(raw);
        let without_comment = strip_comment(&joined).trim().to_owned();
        if !without_comment.is_empty() {
            out.push((start, without_comment));
        }
    }
    if let Some((start, joined)) = pending {
        let without_comment = strip_comment(&joined).trim().to_owned();
        if !without_comment.is_empty() {
            out.push((start, without_comment));
        }
    }
    out
}

/// pip's rule: `#` starts a comment at the line start or after whitespace.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// `-r X`, `-rX`, `--requirement X`, `--requirement=X` (and the `-c` forms):
/// the included path and whether it holds constraints.
fn include_target(line: &str) -> Option<(&str, bool)> {
    for (flag, constraints) in [
        ("--requirement", false),
        ("--constraint", true),
        ("-r", false),
        ("-c", true),
    ] {
        if let Some(rest) = line.strip_prefix(flag) {
            let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
            if !rest.is_empty()
                && (flag.len() == 2
                    || line
                        .as_bytes()
                        .get(flag.len())
                        .is_some_and(|b| *b == b'=' || b.is_ascii_whitespace()))
            {
                return Some((rest, constraints));
            }
        }
    }
    None
}

/// Resolves an include relative to the including file's directory; `None` if
/// it is absolute, a URL, or climbs out of the package.
fn resolve_include(including: &str, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with('/') || target.contains('\\') {
        return None;
    }
    let mut parts: Vec<&str> = including.split('/').collect();
    parts.pop();
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => return None,
            normal => parts.push(normal),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, text).expect("write");
        }
        dir
    }

    fn texts(list: &[Requirement]) -> Vec<&str> {
        list.iter().map(|r| r.text.as_str()).collect()
    }

    #[test]
    fn logical_lines_follow_pips_rules() {
        let text = "# header\nrequests>=2 # pinned later\n\nfastapi \\\n  ==0.110\nurl#frag\n";
        assert_eq!(
            logical_lines(text),
            [
                (2, "requests>=2".into()),
                (4, "fastapi   ==0.110".into()),
                (6, "url#frag".into())
            ]
        );
    }

    #[test]
    fn includes_are_inlined_and_constraints_kept_apart() {
        let dir = tree(&[
            (
                "requirements.txt",
                "-r reqs/base.txt\n--constraint=reqs/pins.txt\nhttpx\n",
            ),
            ("reqs/base.txt", "pydantic\n-r more.txt\n"),
            ("reqs/more.txt", "uvicorn\n"),
            ("reqs/pins.txt", "pydantic==2.7\n"),
            ("setup.py", ""),
        ]);
        let plan = plan(dir.path()).expect("plan");
        assert_eq!(texts(&plan.requirements), ["pydantic", "uvicorn", "httpx"]);
        assert_eq!(texts(&plan.constraints), ["pydantic==2.7"]);
        assert_eq!(plan.requirements[1].file, "reqs/more.txt");
        assert_eq!(plan.self_install, SelfInstall::SetupPy);
    }

    #[test]
    fn includes_outside_the_package_or_in_cycles_are_refused() {
        for (text, reason) in [
            ("-r ../../etc/passwd\n", "inside the package"),
            ("-r /etc/passwd\n", "inside the package"),
            ("-c https://example.com/pins.txt\n", "inside the package"),
            ("-r requirements.txt\n", "cycle"),
            ("-r missing.txt\n", "not found"),
        ] {
            let dir = tree(&[("requirements.txt", text)]);
            match plan(dir.path()) {
                Err(GuestError::RequirementsInvalid {
                    file,
                    line,
                    reason: got,
                    ..
                }) => {
                    assert_eq!((file.as_str(), line), ("requirements.txt", 1), "{text}");
                    assert!(got.contains(reason), "{text}: {got}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn pyprojects_dependencies_are_lines_of_the_plan_named_by_their_line() {
        let pyproject = "[project]\nname = \"a\"\nversion = \"1\"\ndependencies = [\n  \"fastapi>=0.100\",\n  \"uvicorn[standard] ; python_version >= '3.9'\",\n]\n";
        let dir = tree(&[("requirements.txt", "httpx==0.28\n"), ("pyproject.toml", pyproject)]);
        let plan = plan(dir.path()).expect("plan");
        let lines: Vec<(&str, u32, &str)> = plan
            .requirements
            .iter()
            .map(|r| (r.file.as_str(), r.line, r.text.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                ("requirements.txt", 1, "httpx==0.28"),
                ("pyproject.toml", 5, "fastapi>=0.100"),
                ("pyproject.toml", 6, "uvicorn[standard] ; python_version >= '3.9'"),
            ]
        );
        for quiet in [
            "[project]\nname = \"a\"\n",
            "[project]\ndynamic = [\"version\"]\ndependencies = []\n",
            "[tool.x]\ndependencies = [\"a\"]\n",
            "not toml [",
        ] {
            assert_eq!(project_dependencies(quiet).expect(quiet), Vec::new(), "{quiet}");
        }
        for (bad, line) in [
            ("[project]\ndependencies = \"fastapi\"\n", 2),
            ("[project]\ndependencies = [1]\n", 2),
            ("[project]\n\ndependencies = [\"a\", \"--index-url=http://x\"]\n", 3),
            ("[project]\ndynamic = [\"dependencies\"]\ndependencies = [\"a\"]\n", 3),
        ] {
            match project_dependencies(bad) {
                Err(GuestError::RequirementsInvalid { file, line: at, .. }) => {
                    assert_eq!((file.as_str(), at), ("pyproject.toml", line), "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn self_install_kind() {
        let none = tree(&[("core/__init__.py", "")]);
        assert_eq!(plan(none.path()).expect("plan").self_install, SelfInstall::None);
        let tool_only = tree(&[("pyproject.toml", "[tool.black]\nline-length = 100\n")]);
        assert_eq!(plan(tool_only.path()).expect("plan").self_install, SelfInstall::None);
        let project = tree(&[("pyproject.toml", "[ project ]\nname = \"a\"\n")]);
        assert_eq!(plan(project.path()).expect("plan").self_install, SelfInstall::Pyproject);
        let build = tree(&[("pyproject.toml", "[build-system]\nrequires = [\"setuptools\"]\n")]);
        assert_eq!(plan(build.path()).expect("plan").self_install, SelfInstall::Pyproject);
    }

    #[test]
    fn the_build_system_comes_from_pyproject_even_beside_setup_py() {
        let setup_only = tree(&[("setup.py", "")]);
        assert_eq!(plan(setup_only.path()).expect("plan").build_system, BuildSystem::Legacy);
        let both = tree(&[
            ("setup.py", ""),
            (
                "pyproject.toml",
                "[build-system]\nrequires = [\"setuptools>=70\", \"cython\"]\n",
            ),
        ]);
        let both = plan(both.path()).expect("plan");
        assert_eq!(both.self_install, SelfInstall::SetupPy);
        assert!(
            matches!(&both.build_system, BuildSystem::Declared { requires, backend: None, .. } if requires.len() == 2),
            "{:?}",
            both.build_system
        );
        let broken = tree(&[("pyproject.toml", "[project]\nname = \n")]);
        let broken = plan(broken.path()).expect("an invalid pyproject.toml is the installer's to report");
        assert_eq!(broken.self_install, SelfInstall::Pyproject);
        assert!(matches!(broken.build_system, BuildSystem::Unreadable(_)));
    }
}
