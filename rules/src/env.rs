//! Which environment variables a package may set for its agent: through
//! `agent.yaml`'s `environment` map or its `.env` file. A package may
//! configure its own code; it may not change how processes load code
//! (`LD_PRELOAD`, `PYTHONPATH`), where they look for programs and files
//! (`PATH`, `HOME`), or the variables par itself hands the agent.

/// Why a variable is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvRefusal {
    /// Not a portable name: a letter or `_`, then letters, digits and `_`, at most 128.
    BadName,
    /// It changes how a process or the interpreter loads code.
    LoadsCode,
    /// It says where programs, home or temporary files are: the sandbox decides.
    Location,
    /// par sets it for the agent (`AGENT_PACKAGE_PATH`, `LISTEN_FDS`, `PAR_PORT_…`).
    SetByPar,
}

impl EnvRefusal {
    /// Why, for an error message that names the variable.
    pub fn reason(self) -> &'static str {
        match self {
            EnvRefusal::BadName => "not a variable name (a letter or `_`, then letters, digits and `_`)",
            EnvRefusal::LoadsCode => "it changes how code is loaded",
            EnvRefusal::Location => "the sandbox sets where programs, home and temporary files are",
            EnvRefusal::SetByPar => "par sets it for the agent",
        }
    }
}

/// Longest variable name accepted.
pub const MAX_NAME_BYTES: usize = 128;
/// Largest `.env` file read.
pub const MAX_ENV_FILE_BYTES: u64 = 64 * 1024;
/// Most variables a package's `.env` may set.
pub const MAX_ENV_VARS: usize = 256;
/// Longest value accepted.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;

/// Prefixes (compared without case) of variables that load code.
const LOADS_CODE_PREFIXES: [&str; 5] = ["LD_", "PYTHON", "DYLD_", "MALLOC_", "UV_"];
/// Whole names (compared without case) of variables that load code.
const LOADS_CODE: [&str; 12] = [
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "NLSPATH",
    "BASH_ENV",
    "ENV",
    "IFS",
    "PERL5LIB",
    "PERL5OPT",
    "NODE_OPTIONS",
    "VIRTUAL_ENV",
    "PIP_REQUIRE_VIRTUALENV",
    "HOSTALIASES",
];
/// Whole names (compared without case) that say where things are.
const LOCATIONS: [&str; 6] = ["PATH", "HOME", "TMPDIR", "SHELL", "PWD", "XDG_RUNTIME_DIR"];
/// Prefixes (compared without case) of what par sets for the agent.
const SET_BY_PAR_PREFIXES: [&str; 2] = ["LISTEN_", "PAR_"];
/// Whole names (compared without case) par sets for the agent.
const SET_BY_PAR: [&str; 1] = ["AGENT_PACKAGE_PATH"];

/// Why a package may not set `name`, or `None` when it may.
pub fn package_refusal(name: &str) -> Option<EnvRefusal> {
    let portable = name.len() <= MAX_NAME_BYTES
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !portable {
        return Some(EnvRefusal::BadName);
    }
    let upper = name.to_ascii_uppercase();
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| upper.starts_with(p));
    if starts(&LOADS_CODE_PREFIXES) || LOADS_CODE.contains(&upper.as_str()) {
        Some(EnvRefusal::LoadsCode)
    } else if LOCATIONS.contains(&upper.as_str()) {
        Some(EnvRefusal::Location)
    } else {
        caller_refusal(name)
    }
}

/// Why the caller (the runtime, trusted) may not set `name`: only a bad
/// name, or one par sets itself.
pub fn caller_refusal(name: &str) -> Option<EnvRefusal> {
    let portable = !name.is_empty() && !name.contains(['=', '\0']) && name.len() <= MAX_NAME_BYTES;
    if !portable {
        return Some(EnvRefusal::BadName);
    }
    let upper = name.to_ascii_uppercase();
    let set_by_par = SET_BY_PAR_PREFIXES.iter().any(|p| upper.starts_with(p)) || SET_BY_PAR.contains(&upper.as_str());
    set_by_par.then_some(EnvRefusal::SetByPar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_may_configure_its_own_code() {
        for name in ["LOG_LEVEL", "OPENAI_MODEL", "_private", "feature_x", "PY_DEBUG_LEVEL"] {
            assert_eq!(package_refusal(name), None, "{name}");
        }
    }

    #[test]
    fn a_package_may_not_change_how_code_loads_or_where_things_are() {
        let cases = [
            ("LD_PRELOAD", EnvRefusal::LoadsCode),
            ("ld_library_path", EnvRefusal::LoadsCode),
            ("PYTHONPATH", EnvRefusal::LoadsCode),
            ("PYTHONSTARTUP", EnvRefusal::LoadsCode),
            ("pythonhome", EnvRefusal::LoadsCode),
            ("GLIBC_TUNABLES", EnvRefusal::LoadsCode),
            ("BASH_ENV", EnvRefusal::LoadsCode),
            ("PATH", EnvRefusal::Location),
            ("Home", EnvRefusal::Location),
            ("TMPDIR", EnvRefusal::Location),
            ("LISTEN_FDS", EnvRefusal::SetByPar),
            ("PAR_PORT_HTTP", EnvRefusal::SetByPar),
            ("AGENT_PACKAGE_PATH", EnvRefusal::SetByPar),
            ("", EnvRefusal::BadName),
            ("1ABC", EnvRefusal::BadName),
            ("A=B", EnvRefusal::BadName),
            ("A B", EnvRefusal::BadName),
            ("A\u{0}", EnvRefusal::BadName),
            ("ÄPFEL", EnvRefusal::BadName),
        ];
        for (name, refusal) in cases {
            assert_eq!(package_refusal(name), Some(refusal), "{name:?}");
        }
        assert_eq!(
            package_refusal(&"A".repeat(MAX_NAME_BYTES + 1)),
            Some(EnvRefusal::BadName)
        );
    }

    #[test]
    fn the_caller_may_set_anything_par_does_not_set_itself() {
        for name in ["PYTHONPATH", "LD_PRELOAD", "OPENAI_API_KEY", "PATH"] {
            assert_eq!(caller_refusal(name), None, "{name}");
        }
        for name in ["LISTEN_PID", "PAR_PORT_HTTP", "agent_package_path"] {
            assert_eq!(caller_refusal(name), Some(EnvRefusal::SetByPar), "{name}");
        }
        assert_eq!(caller_refusal("A=B"), Some(EnvRefusal::BadName));
    }
}
