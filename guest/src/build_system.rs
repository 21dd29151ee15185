//! The agent's build system: the `[build-system]` table of `pyproject.toml`
//! (PEP 517/518), read here so the host learns the backend and its
//! requirements without parsing the file itself.

use serde::Deserialize;

/// Most `requires` entries taken from the table.
const MAX_REQUIRES: usize = par_rules::limits::MAX_BUILD_REQUIRES;
/// Most `backend-path` entries taken from the table.
const MAX_BACKEND_PATHS: usize = par_rules::limits::MAX_BACKEND_PATHS;
/// Longest single string taken from the table.
const MAX_STRING: usize = 1024;

/// How the agent's editable wheel is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildSystem {
    /// No `pyproject.toml`, or no `[build-system]` table in it:
    /// setuptools' legacy backend, as pip and uv assume.
    Legacy,
    /// The table as declared.
    Declared {
        /// `requires`: PEP 508 requirement strings.
        requires: Vec<String>,
        /// `build-backend`; `None` means setuptools' legacy backend.
        backend: Option<String>,
        /// `backend-path`: directories in the package the backend lives in.
        backend_path: Vec<String>,
    },
    /// The file or the table cannot be used; why. The installer's own
    /// editable install then reads it and reports the problem.
    Unreadable(String),
}

#[derive(Deserialize)]
struct Pyproject {
    #[serde(rename = "build-system")]
    build_system: Option<Table>,
}

#[derive(Deserialize)]
struct Table {
    requires: Option<Vec<String>>,
    #[serde(rename = "build-backend")]
    build_backend: Option<String>,
    #[serde(rename = "backend-path")]
    backend_path: Option<Vec<String>>,
}

/// Reads the build system from the text of `pyproject.toml` (`None`: no such file).
pub fn read(pyproject: Option<&str>) -> BuildSystem {
    let Some(text) = pyproject else {
        return BuildSystem::Legacy;
    };
    let parsed: Pyproject = match toml::from_str(text) {
        Ok(parsed) => parsed,
        Err(error) => return BuildSystem::Unreadable(format!("pyproject.toml: {}", error.message())),
    };
    let Some(table) = parsed.build_system else {
        return BuildSystem::Legacy;
    };
    let Some(requires) = table.requires else {
        return BuildSystem::Unreadable("pyproject.toml: [build-system] has no `requires`".into());
    };
    let backend_path = table.backend_path.unwrap_or_default();
    let too_long = |s: &String| s.len() > MAX_STRING;
    if requires.len() > MAX_REQUIRES
        || backend_path.len() > MAX_BACKEND_PATHS
        || requires
            .iter()
            .chain(&backend_path)
            .chain(&table.build_backend)
            .any(too_long)
    {
        return BuildSystem::Unreadable("pyproject.toml: [build-system] is larger than par reads".into());
    }
    BuildSystem::Declared {
        requires,
        backend: table.build_backend,
        backend_path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_or_no_table_means_the_legacy_backend() {
        assert_eq!(read(None), BuildSystem::Legacy);
        assert_eq!(read(Some("[tool.black]\nline-length = 100\n")), BuildSystem::Legacy);
        assert_eq!(read(Some("[project]\nname = \"a\"\n")), BuildSystem::Legacy);
    }

    #[test]
    fn a_declared_table_is_taken_as_written() {
        let text = "[build-system]\nrequires = [\"hatchling>=1.20\", \"x; python_version<'4'\"]\nbuild-backend = \"hatchling.build\"\nbackend-path = [\"_build\"]\n";
        assert_eq!(
            read(Some(text)),
            BuildSystem::Declared {
                requires: vec!["hatchling>=1.20".into(), "x; python_version<'4'".into()],
                backend: Some("hatchling.build".into()),
                backend_path: vec!["_build".into()],
            }
        );
        assert_eq!(
            read(Some("[build-system]\nrequires = [\"setuptools\"]\n")),
            BuildSystem::Declared {
                requires: vec!["setuptools".into()],
                backend: None,
                backend_path: Vec::new(),
            }
        );
    }

    #[test]
    fn what_cannot_be_used_says_why() {
        let unreadable = |text: &str| matches!(read(Some(text)), BuildSystem::Unreadable(_));
        assert!(unreadable("[build-system\nrequires = []"), "not TOML");
        assert!(unreadable("[build-system]\nbuild-backend = \"x\"\n"), "no requires");
        assert!(unreadable("[build-system]\nrequires = \"setuptools\"\n"), "wrong type");
        assert!(unreadable("[build-system]\nrequires = [1]\n"), "wrong element type");
        let many = format!(
            "[build-system]\nrequires = [{}]\n",
            vec!["\"a\""; MAX_REQUIRES + 1].join(",")
        );
        assert!(unreadable(&many), "too many requires");
    }
}
